//! Sealed revocations: what they keep, what they cut off whatever time it claims, and
//! their encoding.

use super::*;

/// A space, its authors, and the item check as a store makes it.
struct Setup {
    space: SpaceKey,
    authors: Vec<AuthorKey>,
}

impl Setup {
    fn new(n_authors: usize) -> Setup {
        Setup {
            space: SpaceKey::generate(),
            authors: (0..n_authors).map(|_| AuthorKey::generate()).collect(),
        }
    }

    fn id(&self, index: usize) -> AuthorId {
        self.authors[index].public()
    }

    fn item_check(
        &self,
        author: usize,
        at: u64,
        item: ItemId,
        statements: &[SignedStatement],
    ) -> Result<(), AccessDenied> {
        check_item_access(
            &self.space.id(),
            SpaceMode::Restricted,
            &self.id(author),
            Right::Write,
            Timestamp(at),
            &item,
            statements.iter().map(SignedStatement::statement),
        )
    }
}

fn item(byte: u8) -> ItemId {
    [byte; 16]
}

#[test]
fn a_sealed_revocation_keeps_what_it_lists_and_refuses_what_is_dated_back() {
    let s = Setup::new(1);
    let statements = [
        s.space.grant(s.id(0), Right::Write, Timestamp(10), None),
        s.space.seal(s.id(0), Timestamp(100), vec![item(1)]).unwrap(),
    ];
    // Kept: the entry the revoker held when it revoked.
    s.item_check(0, 50, item(1), &statements).unwrap();
    // Written after the revocation and dated before it: refused, whatever time it claims.
    for at in [11, 50, 99] {
        assert_eq!(
            s.item_check(0, at, item(2), &statements),
            Err(AccessDenied::NotKept { by: s.space.id(), at: Timestamp(100) })
        );
    }
    // Dated at or after the revocation: revoked as before, kept or not.
    assert_eq!(
        s.item_check(0, 100, item(1), &statements),
        Err(AccessDenied::Revoked { by: s.space.id(), at: Timestamp(100) })
    );
    // The same statements in the other order decide the same.
    let reversed = [statements[1].clone(), statements[0].clone()];
    assert!(s.item_check(0, 50, item(2), &reversed).is_err());
    s.item_check(0, 50, item(1), &reversed).unwrap();
    // A later grant gives rights back from its own time only.
    let mut regranted = statements.to_vec();
    regranted.push(s.space.grant(s.id(0), Right::Write, Timestamp(200), None));
    s.item_check(0, 250, item(3), &regranted).unwrap();
    assert!(s.item_check(0, 150, item(3), &regranted).is_err());
    assert!(s.item_check(0, 50, item(3), &regranted).is_err());
}

#[test]
fn an_unsealed_revocation_still_counts_only_from_its_time() {
    let s = Setup::new(1);
    let statements = [
        s.space.grant(s.id(0), Right::Write, Timestamp(10), None),
        s.space.revoke(s.id(0), Timestamp(100)),
    ];
    s.item_check(0, 50, item(2), &statements).unwrap();
    assert!(s.item_check(0, 100, item(2), &statements).is_err());
}

#[test]
fn a_revoked_admins_grants_dated_back_give_nothing_new() {
    // space -> a0 (admin) -> a1 (write); a0 is revoked, sealed, keeping a1's one entry.
    let s = Setup::new(3);
    let space = s.space.id();
    let mut statements = vec![
        s.space.grant(s.id(0), Right::Admin, Timestamp(10), None),
        s.authors[0].grant(space, s.id(1), Right::Write, Timestamp(20), None),
        s.space.seal(s.id(0), Timestamp(100), vec![item(1)]).unwrap(),
    ];
    s.item_check(1, 30, item(1), &statements).unwrap();
    // a1's entry the revoker never saw, dated before the revocation: cut off too, since
    // its right rests on a0's revoked grant.
    assert_eq!(
        s.item_check(1, 30, item(4), &statements),
        Err(AccessDenied::ChainBroken { issuer: s.id(0) })
    );
    // The revoked admin dates a grant to a new author back: refused by the issuer rule,
    // since the sealed revocation does not keep it ...
    let backdated = s.authors[0].grant(space, s.id(2), Right::Write, Timestamp(40), None);
    let held = || statements.iter().map(SignedStatement::statement);
    assert_eq!(
        check_issuer(backdated.statement(), &item(6), held()),
        Err(AccessDenied::NotKept { by: s.space.id(), at: Timestamp(100) })
    );
    // ... but a grant of the admin's that the revocation keeps stays keepable ...
    let sealed_keeping = s.space.seal(s.id(0), Timestamp(100), vec![item(1), item(6)]).unwrap();
    let keeping = [statements[0].clone(), statements[1].clone(), sealed_keeping];
    let held_keeping = keeping.iter().map(SignedStatement::statement);
    check_issuer(backdated.statement(), &item(6), held_keeping).unwrap();
    // ... and, held anyway (taken in before the revocation came), the grant gives nothing.
    statements.push(backdated);
    for at in [41, 60, 99] {
        assert!(s.item_check(2, at, item(5), &statements).is_err());
    }
    // Without the revocation the same grant would have counted.
    let unrevoked: Vec<_> = statements
        .iter()
        .filter(|signed| matches!(signed.statement(), Statement::Grant(_)))
        .cloned()
        .collect();
    s.item_check(2, 60, item(5), &unrevoked).unwrap();
}

#[test]
fn an_admins_sealed_revocation_ends_only_the_grants_it_issued() {
    let s = Setup::new(2);
    let space = s.space.id();
    let statements = [
        s.space.grant(s.id(0), Right::Admin, Timestamp(10), None),
        s.authors[0].grant(space, s.id(1), Right::Write, Timestamp(20), None),
        s.space.grant(s.id(1), Right::Write, Timestamp(20), None),
        s.authors[0].seal(space, s.id(1), Timestamp(100), Vec::new()).unwrap(),
    ];
    // The space key's own grant to a1 still stands, before and after.
    s.item_check(1, 50, item(7), &statements).unwrap();
    s.item_check(1, 150, item(7), &statements).unwrap();
    // With only the admin's grant, the same entry is cut off.
    let only_admins = [statements[0].clone(), statements[1].clone(), statements[3].clone()];
    assert_eq!(
        s.item_check(1, 50, item(7), &only_admins),
        Err(AccessDenied::NotKept { by: s.id(0), at: Timestamp(100) })
    );
}

#[test]
fn sealed_revocations_encode_sorted_and_bounded() {
    let s = Setup::new(1);
    let sealed = s.space.seal(s.id(0), Timestamp(5), vec![item(9), item(3), item(9)]).unwrap();
    let Statement::Revoke(revocation) = sealed.statement() else { panic!("a revocation") };
    assert_eq!(revocation.kept, Some(vec![item(3), item(9)]));
    let bytes = sealed.to_bytes();
    assert_eq!(bytes[1], 3, "kind 3: sealed revocation");
    let decoded = SignedStatement::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, sealed);
    decoded.verify().unwrap();
    // An empty list is a seal too: it keeps nothing.
    let empty = s.space.seal(s.id(0), Timestamp(5), Vec::new()).unwrap();
    assert_eq!(SignedStatement::from_bytes(&empty.to_bytes()).unwrap(), empty);
    // Decoding errors: cut short, ids out of order, a count over the limit.
    let statement_bytes = sealed.statement().to_bytes();
    assert!(matches!(
        Statement::from_bytes(&statement_bytes[..statement_bytes.len() - 1]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut swapped = statement_bytes.clone();
    let ids = COMMON_LEN + 4;
    swapped[ids..ids + 16].copy_from_slice(&item(9));
    swapped[ids + 16..ids + 32].copy_from_slice(&item(3));
    assert_eq!(Statement::from_bytes(&swapped), Err(DecodeError::KeptNotSorted));
    let mut too_many = statement_bytes[..COMMON_LEN].to_vec();
    too_many.extend_from_slice(&(MAX_KEPT as u32 + 1).to_be_bytes());
    assert_eq!(Statement::from_bytes(&too_many), Err(DecodeError::TooManyKept(MAX_KEPT + 1)));
    // Signing refuses a list over the limit.
    let over: Vec<ItemId> = (0..=MAX_KEPT as u32)
        .map(|n| {
            let mut id = [0; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            id
        })
        .collect();
    assert!(matches!(
        s.space.seal(s.id(0), Timestamp(5), over),
        Err(Error::TooManyKept { count, max: MAX_KEPT }) if count == MAX_KEPT + 1
    ));
    // Any change to the list breaks the signature.
    let mut changed = bytes.clone();
    changed[ids + 5] ^= 1;
    let changed = SignedStatement::from_bytes(&changed).unwrap();
    assert!(changed.verify().is_err());
}
