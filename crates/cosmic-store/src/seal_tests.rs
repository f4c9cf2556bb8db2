//! Sealed revocations in the store: backdated entries refused, entries held already cut
//! off when the revocation comes later, and every count and aggregate as if the cut-off
//! entries had never come.

use std::path::Path;

use cosmic_auth::{
    AccessDenied, AuthorKey, PublicKey, Right, SignedStatement, SpaceKey, SpaceMode, Timestamp,
};

use crate::*;

const NOW: u64 = 1_780_000_000_000;

fn open(dir: &Path, name: &str) -> Store {
    Store::open(dir.join(name), Options::default()).unwrap()
}

/// A store holding a restricted space in which `writer` may write from `NOW - 10_000`.
fn restricted(dir: &Path, name: &str, owner: &SpaceKey, writer: &AuthorKey) -> (Store, PublicKey) {
    let store = open(dir, name);
    let space = store.create_space(owner, SpaceMode::Restricted).unwrap().space;
    store
        .insert_statement(&owner.grant(
            writer.public(),
            Right::Write,
            Timestamp(NOW - 10_000),
            None,
        ))
        .unwrap();
    (store, space)
}

fn entry(
    author: &AuthorKey,
    space: PublicKey,
    doc: &str,
    field: &str,
    value: Value,
    millis: u64,
) -> Entry {
    Entry::sign(author, space, doc, field, value, Hlc { millis, counter: 0 }).unwrap()
}

fn space_info(store: &Store, space: &PublicKey) -> SpaceInfo {
    store.list_spaces().unwrap().into_iter().find(|info| info.space == *space).unwrap()
}

#[test]
fn a_backdated_entry_is_refused_after_a_sealed_revocation_and_cut_off_if_held_before() {
    let dir = tempfile::tempdir().unwrap();
    let owner = SpaceKey::generate();
    let writer = AuthorKey::generate();
    let (revoker, space) = restricted(dir.path(), "a.redb", &owner, &writer);
    let (late, _) = restricted(dir.path(), "b.redb", &owner, &writer);
    // An entry both hold when the revocation is signed: kept.
    let before = entry(&writer, space, "d", "kept", Value::Int(1), NOW - 5_000);
    for store in [&revoker, &late] {
        store.insert(before.clone()).unwrap();
    }
    let kept = revoker.kept_items(&space, &writer.public(), Timestamp(NOW)).unwrap();
    assert_eq!(kept, vec![before.item_id()]);
    let sealed = owner.seal(writer.public(), Timestamp(NOW), kept).unwrap();
    // Written after the revocation, dated before it.
    let backdated = entry(&writer, space, "d", "late", Value::Int(2), NOW - 4_000);

    // The revoker has the revocation first: the backdated entry is refused, with its reason.
    revoker.insert_statement(&sealed).unwrap();
    let error = revoker.insert(backdated.clone()).unwrap_err();
    let Error::AccessDenied { reason, .. } = &error else { panic!("{error}") };
    assert_eq!(**reason, AccessDenied::NotKept { by: space, at: Timestamp(NOW) });
    assert_eq!(revoker.refusals().revoked, 1);
    assert!(revoker.get_entry(&space, "d", "late").unwrap().is_none());

    // The other store took the entry in before it heard of the revocation: cut off then.
    late.insert(backdated.clone()).unwrap();
    assert!(late.get_entry(&space, "d", "late").unwrap().is_some());
    late.insert_statement(&sealed).unwrap();
    assert!(late.get_entry(&space, "d", "late").unwrap().is_none());
    assert_eq!(late.refusals().cut_off, 1);
    assert_eq!(late.get_entry(&space, "d", "kept").unwrap(), Some(before));

    // Both hold the same now, whatever the order.
    assert_eq!(
        late.fingerprint(&space, None, None).unwrap(),
        revoker.fingerprint(&space, None, None).unwrap()
    );
    assert_eq!(late.state_hash(&space).unwrap(), revoker.state_hash(&space).unwrap());
    assert!(matches!(late.insert(backdated), Err(Error::AccessDenied { .. })));
}

#[test]
fn a_cut_off_leaves_every_count_and_aggregate_as_if_the_entries_never_came() {
    let dir = tempfile::tempdir().unwrap();
    let owner = SpaceKey::generate();
    let writer = AuthorKey::generate();
    let other = AuthorKey::generate();
    let (never, space) = restricted(dir.path(), "never.redb", &owner, &writer);
    let (held, _) = restricted(dir.path(), "held.redb", &owner, &writer);
    for store in [&never, &held] {
        store
            .insert_statement(&owner.grant(
                other.public(),
                Right::Write,
                Timestamp(NOW - 10_000),
                None,
            ))
            .unwrap();
    }
    let valid = valid_entries(&other, space);
    for store in [&never, &held] {
        for result in store.insert_batch(valid.clone()).unwrap() {
            result.unwrap();
        }
    }
    let sealed = owner.seal(writer.public(), Timestamp(NOW), Vec::new()).unwrap();
    let (backdated, cid) = backdated_entries(&writer, space);
    for result in held.insert_batch(backdated.clone()).unwrap() {
        result.unwrap();
    }
    assert!(!held.blob_link_spaces(&cid).unwrap().is_empty());
    never.insert_statement(&sealed).unwrap();
    held.insert_statement(&sealed).unwrap();
    assert!(held.refusals().cut_off > 0);

    // The replaced winners are gone from `held` (stores keep winners only); bring them
    // back as reconciliation would, then both must be equal in every respect.
    for result in held.insert_batch(valid.clone()).unwrap() {
        result.unwrap();
    }
    for result in held.insert_batch(backdated).unwrap() {
        assert!(matches!(result, Err(Error::AccessDenied { .. })));
    }
    assert_eq!(space_info(&held, &space), space_info(&never, &space));
    assert_eq!(held.n_entries().unwrap(), never.n_entries().unwrap());
    assert_eq!(held.author_usage(&space, &writer.public()).unwrap(), 0);
    assert_eq!(
        held.author_usage(&space, &other.public()).unwrap(),
        never.author_usage(&space, &other.public()).unwrap()
    );
    assert!(held.blob_link_spaces(&cid).unwrap().is_empty());
    assert_eq!(held.state_hash(&space).unwrap(), never.state_hash(&space).unwrap());
    assert_same_aggregates(&held, &never, &space);
    // And it survives a reopen (the aggregates are on disk, not only in a cache).
    drop(held);
    let held = open(dir.path(), "held.redb");
    assert_eq!(
        held.fingerprint(&space, None, None).unwrap(),
        never.fingerprint(&space, None, None).unwrap()
    );
}

/// The fingerprint of every range, read from the buckets, agrees between two stores.
fn assert_same_aggregates(held: &Store, never: &Store, space: &PublicKey) {
    // Aggregates: the fingerprint of every range, read from the buckets, agrees.
    let keys: Vec<Option<RangeKey>> = std::iter::once(None)
        .chain(
            (0..50)
                .step_by(7)
                .map(|n| Some(RangeKey { doc: format!("doc{n}"), field: format!("f{}", n * 3) })),
        )
        .chain([Some(RangeKey { doc: "new".into(), field: String::new() })])
        .collect();
    for start in &keys {
        for end in &keys {
            assert_eq!(
                held.fingerprint(space, start.as_ref(), end.as_ref()).unwrap(),
                never.fingerprint(space, start.as_ref(), end.as_ref()).unwrap(),
                "range {start:?}..{end:?}"
            );
        }
    }
}

/// Entries of another author, some of which the cut-off entries will have replaced.
fn valid_entries(other: &AuthorKey, space: PublicKey) -> Vec<Entry> {
    (0..400u64)
        .map(|n| {
            let (doc, field) = (format!("doc{}", n % 50), format!("f{n}"));
            entry(other, space, &doc, &field, Value::Int(n as i64), NOW - 9_000)
        })
        .collect()
}

/// Hundreds of entries dated back (so that some are bucket boundaries at every level they
/// can be): new documents, new fields, replaced fields, blob links, deletions; and the
/// CID bytes of the blob they link.
fn backdated_entries(writer: &AuthorKey, space: PublicKey) -> (Vec<Entry>, Vec<u8>) {
    let cid = "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi";
    let link = Value::blob_link_str(cid).unwrap();
    let Value::BlobLink(cid) = link.clone() else { unreachable!() };
    let mut backdated = Vec::new();
    for n in 0..600u64 {
        let (doc, field, value) = match n % 4 {
            0 => (format!("new{n}"), "g".to_owned(), Value::Int(1)),
            1 => (format!("doc{}", n % 50), format!("h{n}"), link.clone()),
            2 => (format!("doc{}", n % 50), format!("f{}", n % 400), Value::Int(-1)),
            _ => (format!("doc{}", n % 50), format!("f{}", n % 400), Value::Null),
        };
        backdated.push(entry(writer, space, &doc, &field, value, NOW - 1_000 + n));
    }
    (backdated, cid)
}

#[test]
fn a_revoked_admins_grant_dated_back_is_refused_or_cut_off_with_what_rested_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let owner = SpaceKey::generate();
    let admin = AuthorKey::generate();
    let (early, late) = (AuthorKey::generate(), AuthorKey::generate());
    let stores: Vec<(Store, PublicKey)> = ["revoker.redb", "late.redb"]
        .iter()
        .map(|name| restricted(dir.path(), name, &owner, &admin))
        .collect();
    let space = stores[0].1;
    let admin_grant = owner.grant(admin.public(), Right::Admin, Timestamp(NOW - 10_000), None);
    let early_grant =
        admin.grant(space, early.public(), Right::Write, Timestamp(NOW - 9_000), None);
    let early_entry = entry(&early, space, "d", "early", Value::Int(1), NOW - 8_000);
    for (store, _) in &stores {
        store.insert_statements(&[admin_grant.clone(), early_grant.clone()]).unwrap();
        store.insert(early_entry.clone()).unwrap();
    }
    let revoker = &stores[0].0;
    let kept = revoker.kept_items(&space, &admin.public(), Timestamp(NOW)).unwrap();
    assert_eq!(kept.len(), 2, "the admin's grant to `early` and `early`'s entry");
    let sealed = owner.seal(admin.public(), Timestamp(NOW), kept).unwrap();
    // After the revocation, the admin dates a grant back, and its grantee an entry.
    let backdated = admin.grant(space, late.public(), Right::Write, Timestamp(NOW - 7_000), None);
    let late_entry = entry(&late, space, "d", "late", Value::Int(2), NOW - 6_000);

    // The revoker holds the revocation first: the grant is refused with its reason.
    revoker.insert_statement(&sealed).unwrap();
    let error = revoker.insert_statement(&backdated).unwrap_err();
    let Error::UnauthorizedStatement { reason, .. } = &error else { panic!("{error}") };
    assert_eq!(**reason, AccessDenied::NotKept { by: space, at: Timestamp(NOW) });
    assert_eq!(revoker.refusals().statements_refused, 1);
    assert!(matches!(revoker.insert(late_entry.clone()), Err(Error::AccessDenied { .. })));

    // The other store took both in first: the revocation removes them.
    let other = &stores[1].0;
    other.insert_statement(&backdated).unwrap();
    other.insert(late_entry).unwrap();
    other.insert_statement(&sealed).unwrap();
    assert_eq!(other.refusals().statements_cut_off, 1);
    assert_eq!(other.refusals().cut_off, 1);
    assert!(other.get_entry(&space, "d", "late").unwrap().is_none());
    assert_eq!(other.get_entry(&space, "d", "early").unwrap(), Some(early_entry));
    let sorted = |store: &Store| {
        let mut held = store.statements(&space).unwrap();
        held.sort_by_key(SignedStatement::to_bytes);
        held
    };
    assert_eq!(sorted(other), sorted(revoker));
    assert_eq!(other.state_hash(&space).unwrap(), revoker.state_hash(&space).unwrap());
}

#[test]
fn a_revoked_admin_cannot_revoke_what_the_space_keys_seal_kept() {
    let dir = tempfile::tempdir().unwrap();
    let owner = SpaceKey::generate();
    let admin = AuthorKey::generate();
    let grantee = AuthorKey::generate();
    let stores: Vec<(Store, PublicKey)> = ["revoker.redb", "late.redb"]
        .iter()
        .map(|name| restricted(dir.path(), name, &owner, &admin))
        .collect();
    let space = stores[0].1;
    let admin_grant = owner.grant(admin.public(), Right::Admin, Timestamp(NOW - 10_000), None);
    let to_grantee =
        admin.grant(space, grantee.public(), Right::Write, Timestamp(NOW - 9_000), None);
    let written = entry(&grantee, space, "d", "f", Value::Int(1), NOW - 8_000);
    for (store, _) in &stores {
        store.insert_statements(&[admin_grant.clone(), to_grantee.clone()]).unwrap();
        store.insert(written.clone()).unwrap();
    }
    let revoker = &stores[0].0;
    let kept = revoker.kept_items(&space, &admin.public(), Timestamp(NOW)).unwrap();
    let sealed = owner.seal(admin.public(), Timestamp(NOW), kept).unwrap();
    // Once revoked, the admin signs a sealed revocation of its grantee keeping nothing,
    // dated back, to wipe what the owner's seal kept.
    let spite = admin.seal(space, grantee.public(), Timestamp(NOW - 1_000), Vec::new()).unwrap();

    revoker.insert_statement(&sealed).unwrap();
    let error = revoker.insert_statement(&spite).unwrap_err();
    assert!(matches!(error, Error::UnauthorizedStatement { .. }), "{error}");
    assert!(revoker.get_entry(&space, "d", "f").unwrap().is_some());

    // A node that took the spiteful revocation in first loses the entry for a while; the
    // owner's seal removes the revocation, and the entry comes back from any peer that
    // holds it (here offered again, as reconciliation does).
    let other = &stores[1].0;
    other.insert_statement(&spite).unwrap();
    assert!(other.get_entry(&space, "d", "f").unwrap().is_none());
    other.insert_statement(&sealed).unwrap();
    assert_eq!(other.refusals().statements_cut_off, 1);
    assert!(matches!(other.insert(written.clone()), Ok(Inserted::Applied { .. })));
    assert_eq!(other.state_hash(&space).unwrap(), revoker.state_hash(&space).unwrap());
}

/// Admins revoking each other's chains, and the space key sealing one of them: every
/// arrival order keeps the same statements.
mod arrival_order {
    use proptest::prelude::*;

    use super::*;

    fn statements() -> Vec<SignedStatement> {
        let owner = SpaceKey::from_secret_bytes(&[1; 32]);
        let space = owner.id();
        let [a, b, p, q] = [11u8, 12, 13, 14].map(|seed| AuthorKey::from_secret_bytes(&[seed; 32]));
        let t = Timestamp;
        vec![
            owner.grant(a.public(), Right::Admin, t(0), Some(t(15))),
            owner.grant(b.public(), Right::Admin, t(0), Some(t(5))),
            owner.grant(b.public(), Right::Admin, t(20), None),
            a.grant(space, p.public(), Right::Admin, t(1), None),
            p.grant(space, b.public(), Right::Admin, t(2), None),
            b.grant(space, q.public(), Right::Admin, t(3), None),
            q.grant(space, a.public(), Right::Admin, t(4), None),
            b.seal(space, q.public(), t(10), Vec::new()).unwrap(),
            a.seal(space, p.public(), t(30), Vec::new()).unwrap(),
            owner.seal(q.public(), t(45), Vec::new()).unwrap(),
        ]
    }

    fn kept(order: &[usize], statements: &[SignedStatement]) -> Vec<SignedStatement> {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "order.redb");
        let owner = SpaceKey::from_secret_bytes(&[1; 32]);
        store.create_space(&owner, SpaceMode::Restricted).unwrap();
        loop {
            let mut new = 0;
            for &idx in order {
                if matches!(store.insert_statement(&statements[idx]), Ok(true)) {
                    new += 1;
                }
            }
            if new == 0 {
                break;
            }
        }
        let mut held = store.statements(&owner.id()).unwrap();
        held.sort_by_key(SignedStatement::to_bytes);
        held
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn the_statements_kept_do_not_depend_on_arrival_order(
            order in Just((0..10usize).collect::<Vec<_>>()).prop_shuffle(),
        ) {
            let statements = statements();
            let in_order = kept(&(0..statements.len()).collect::<Vec<_>>(), &statements);
            // Q's grant to A is cut by the owner's seal of Q, and with it A's revocation
            // (A is admin at 30 only through it); everything else stays.
            let mut expected: Vec<SignedStatement> = [0, 1, 2, 3, 4, 5, 7, 9]
                .iter()
                .map(|&idx| statements[idx].clone())
                .collect();
            expected.sort_by_key(SignedStatement::to_bytes);
            prop_assert_eq!(&in_order, &expected);
            prop_assert_eq!(kept(&order, &statements), in_order);
        }
    }
}
