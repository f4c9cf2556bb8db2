//! Unit and property tests for the whole crate.

use proptest::prelude::*;

use crate::*;

fn fast_keystore() -> (tempfile::TempDir, Keystore) {
    let dir = tempfile::tempdir().unwrap();
    let keystore =
        Keystore::open_with_params(dir.path().join("keys"), KdfParams::INSECURE_FOR_TESTS).unwrap();
    (dir, keystore)
}

// Item 1: one node identity.

#[test]
fn node_key_gives_same_public_key_to_libp2p_and_iroh() {
    let secret = [42u8; 32];
    let node = NodeKey::from_secret_bytes(secret);
    let libp2p_public = node.to_libp2p_keypair().public().try_into_ed25519().unwrap().to_bytes();
    let iroh_public = iroh_base::SecretKey::from_bytes(&node.secret_bytes()).public();
    assert_eq!(&libp2p_public, node.public().as_bytes());
    assert_eq!(iroh_public.as_bytes(), node.public().as_bytes());
    assert_eq!(node.peer_id(), node.to_libp2p_keypair().public().to_peer_id());
    // The buffer wiped by libp2p was a copy: the key still works.
    assert_eq!(*node.secret_bytes(), secret);
}

#[test]
fn node_key_file_round_trip_and_no_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let created = NodeKey::create_file(&path).unwrap();
    let loaded = NodeKey::load_file(&path).unwrap();
    assert_eq!(created.public(), loaded.public());
    assert!(matches!(NodeKey::create_file(&path), Err(Error::KeyFileExists { .. })));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "temporary files must be cleaned up");
}

#[test]
fn node_key_file_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    NodeKey::create_file(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("truncated", text[..30].to_owned()),
        ("foreign", "hello world\n".to_owned()),
        ("version", text.replace("v1", "v9")),
        ("empty", String::new()),
        ("short secret", text[..text.len() - 5].to_owned() + "\n"),
    ];
    for (name, content) in cases {
        std::fs::write(&path, content).unwrap();
        let error = NodeKey::load_file(&path).unwrap_err();
        assert!(matches!(error, Error::InvalidNodeKeyFile { .. }), "{name}: {error}");
        assert!(error.to_string().contains("node.key"), "{name}: {error}");
    }
    let missing = NodeKey::load_file(dir.path().join("missing")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }));
}

#[test]
fn debug_never_shows_secrets() {
    let node = NodeKey::from_secret_bytes([9u8; 32]);
    let author = AuthorKey::from_secret_bytes(&[9u8; 32]);
    let secret_text = data_encoding::BASE32_NOPAD.encode(&[9u8; 32]).to_ascii_lowercase();
    for debug in [format!("{node:?}"), format!("{author:?}"), format!("{:?}", SpaceKey::generate())]
    {
        assert!(!debug.contains(&secret_text), "{debug}");
        assert!(!debug.contains("0909090909"), "{debug}");
    }
}

// Item 5: text form.

#[test]
fn public_key_text_form_is_strict() {
    let key = AuthorKey::generate().public();
    let text = key.to_string();
    assert_eq!(text.len(), 52);
    assert!(text.bytes().all(|byte| byte.is_ascii_lowercase() || (b'2'..=b'7').contains(&byte)));
    assert_eq!(text.parse::<PublicKey>().unwrap(), key);
    for bad in
        [text.to_ascii_uppercase(), text[..51].to_owned(), format!("{text}="), "1".repeat(52)]
    {
        let error = bad.parse::<PublicKey>().unwrap_err();
        assert!(error.to_string().contains("expected 52 lowercase base32"), "{error}");
    }
    // A non-zero trailing bit is a second spelling of the same bytes: rejected.
    let last = text.as_bytes()[51];
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let index = alphabet.iter().position(|&c| c == last).unwrap();
    let mut other = text.clone().into_bytes();
    other[51] = alphabet[index ^ 1];
    assert!(String::from_utf8(other).unwrap().parse::<PublicKey>().is_err());
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json, format!("\"{text}\""));
    assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
}

#[test]
fn weak_public_keys_are_rejected() {
    // The identity point (small order).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(matches!(PublicKey::from_bytes(&identity), Err(Error::InvalidPublicKey { .. })));
}

// Item 3: signing.

#[test]
fn sign_verify_and_batch() {
    let keys: Vec<AuthorKey> = (0..10).map(|_| AuthorKey::generate()).collect();
    let messages: Vec<Vec<u8>> = (0..10u8).map(|index| vec![index; 40]).collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let publics: Vec<PublicKey> = keys.iter().map(AuthorKey::public).collect();
    let mut signatures: Vec<Signature> =
        keys.iter().zip(&messages).map(|(key, message)| key.sign(message)).collect();
    verify(&publics[0], &messages[0], &signatures[0]).unwrap();
    assert!(verify(&publics[1], &messages[0], &signatures[0]).is_err());
    verify_batch(&message_refs, &publics, &signatures).unwrap();
    signatures[6] = keys[6].sign(b"something else");
    assert!(matches!(
        verify_batch(&message_refs, &publics, &signatures),
        Err(Error::BadSignatureInBatch { index: 6 })
    ));
    assert!(matches!(
        verify_batch(&message_refs[..3], &publics, &signatures),
        Err(Error::BatchLengthMismatch { .. })
    ));
    verify_batch(&[], &[], &[]).unwrap();
    let signature = signatures[0];
    assert_eq!(Signature::from_slice(&signature.to_bytes()).unwrap(), signature);
    assert!(Signature::from_slice(&[0u8; 63]).is_err());
    let json = serde_json::to_string(&signature).unwrap();
    assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), signature);
}

/// A signature by `secret` over `message` whose `R` is `[r]B + torsion`: valid under the
/// cofactored equation of ZIP 215, refused by checks that compare `R` exactly.
fn torsion_signature(
    secret: curve25519_dalek::Scalar,
    r: curve25519_dalek::Scalar,
    torsion: curve25519_dalek::EdwardsPoint,
    message: &[u8],
) -> (PublicKey, Signature) {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
    use sha2::{Digest, Sha512};
    let public = (secret * B).compress().to_bytes();
    let big_r = (r * B + torsion).compress().to_bytes();
    let mut hash = Sha512::new();
    hash.update(big_r);
    hash.update(public);
    hash.update(message);
    let k = curve25519_dalek::Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    let s = r + k * secret;
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&big_r);
    bytes[32..].copy_from_slice(s.as_bytes());
    (PublicKey::from_bytes(&public).unwrap(), Signature::from_bytes(&bytes))
}

#[test]
fn rfc_8032_test_vector_verifies() {
    let hex = |text: &str| data_encoding::HEXLOWER.decode(text.as_bytes()).unwrap();
    let secret: [u8; 32] =
        hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").try_into().unwrap();
    let public: [u8; 32] =
        hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").try_into().unwrap();
    let signature: [u8; 64] = hex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    )
    .try_into()
    .unwrap();
    let key = AuthorKey::from_secret_bytes(&secret);
    assert_eq!(key.public().as_bytes(), &public);
    assert_eq!(key.sign(b"").to_bytes(), signature);
    let public = PublicKey::from_bytes(&public).unwrap();
    verify(&public, b"", &Signature::from_bytes(&signature)).unwrap();
    assert!(verify(&public, b"x", &Signature::from_bytes(&signature)).is_err());
}

/// Batch and single checks must agree on every input, or two nodes could decide
/// differently about the same entry. Signatures with a torsion component are where
/// cofactorless batch checks (random weights divisible by 8) and strict single checks
/// part ways; under ZIP 215 both accept them, every time.
#[test]
fn batch_and_single_checks_agree_on_crafted_signatures() {
    use curve25519_dalek::constants::EIGHT_TORSION;
    let scalar = |seed: u8| curve25519_dalek::Scalar::from_bytes_mod_order([seed; 32]);
    let message = b"an entry".to_vec();
    // Mixed-order R, and R of small order (r = 0: R is the torsion point alone).
    let (mixed_key, mixed) = torsion_signature(scalar(7), scalar(9), EIGHT_TORSION[1], &message);
    let (small_key, small) = torsion_signature(scalar(8), scalar(0), EIGHT_TORSION[3], &message);
    // They are edge cases for real: ed25519-dalek's strict check refuses both.
    for (key, signature) in [(&mixed_key, &mixed), (&small_key, &small)] {
        let dalek = ed25519_dalek::VerifyingKey::from_bytes(key.as_bytes()).unwrap();
        let dalek_signature = ed25519_dalek::Signature::from_bytes(&signature.to_bytes());
        assert!(dalek.verify_strict(&message, &dalek_signature).is_err());
        verify(key, &message, signature).unwrap();
    }
    let honest = AuthorKey::generate();
    let good = honest.sign(&message);
    let forged = honest.sign(b"another entry");
    let keys = [honest.public(), mixed_key, small_key, honest.public()];
    let signatures = [good, mixed, small, forged];
    let messages: Vec<&[u8]> = vec![&message; 4];
    let single: Vec<bool> =
        keys.iter().zip(&signatures).map(|(k, s)| verify(k, &message, s).is_ok()).collect();
    assert_eq!(single, [true, true, true, false]);
    // The batch weights are random: the verdict must not depend on them.
    for _ in 0..64 {
        assert_eq!(verify_each(&messages, &keys, &signatures).unwrap(), single);
        assert_eq!(verify_each(&messages[..3], &keys[..3], &signatures[..3]).unwrap(), [true; 3]);
    }
    // A batch of one is a single check, with the same verdict.
    for index in 0..4 {
        let one = verify_each(&messages[..1], &keys[index..=index], &signatures[index..=index]);
        assert_eq!(one.unwrap(), [single[index]]);
    }
    assert!(verify_each(&[], &[], &[]).unwrap().is_empty());
}

// Item 2: keystore.

#[test]
fn keystore_round_trip() {
    let (_dir, keystore) = fast_keystore();
    let alice = keystore.create("alice", "correct horse").unwrap();
    let bob = keystore.create("bob", "battery staple").unwrap();
    let listed = keystore.list().unwrap().identities;
    assert_eq!(
        listed,
        vec![
            IdentityInfo { alias: "alice".into(), public: alice.public() },
            IdentityInfo { alias: "bob".into(), public: bob.public() },
        ]
    );
    assert_eq!(keystore.unlock("alice", "correct horse").unwrap().public(), alice.public());
    assert!(matches!(keystore.create("alice", "x"), Err(Error::IdentityExists { .. })));

    keystore.change_passphrase("alice", "correct horse", "new phrase").unwrap();
    assert!(matches!(
        keystore.unlock("alice", "correct horse"),
        Err(Error::WrongPassphrase { .. })
    ));
    assert_eq!(keystore.unlock("alice", "new phrase").unwrap().public(), alice.public());

    let exported = keystore.export("alice").unwrap();
    let (_other_dir, other) = fast_keystore();
    assert_eq!(other.import("alice-copy", &exported).unwrap(), alice.public());
    assert_eq!(other.unlock("alice-copy", "new phrase").unwrap().public(), alice.public());

    keystore.delete("bob").unwrap();
    assert!(matches!(
        keystore.unlock("bob", "battery staple"),
        Err(Error::IdentityNotFound { .. })
    ));
    assert!(matches!(keystore.delete("bob"), Err(Error::IdentityNotFound { .. })));
    assert_eq!(keystore.list().unwrap().identities.len(), 1);
    for bad in ["", "../evil", ".hidden", "Upper", "a/b"] {
        assert!(matches!(keystore.create(bad, "x"), Err(Error::InvalidAlias { .. })), "{bad}");
    }
}

#[test]
fn keystore_detects_damaged_files() {
    let (_dir, keystore) = fast_keystore();
    keystore.create("alice", "pass").unwrap();
    let good = keystore.export("alice").unwrap();
    let path = keystore.dir().join("alice.identity");

    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert!(matches!(keystore.unlock("alice", "pass"), Err(Error::CorruptIdentity { .. })));

    std::fs::write(&path, b"-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    let error = keystore.unlock("alice", "pass").unwrap_err();
    assert!(matches!(error, Error::CorruptIdentity { .. }), "{error}");
    // One damaged file is reported by path and does not hide the others.
    keystore.create("bob", "pass").unwrap();
    let listing = keystore.list().unwrap();
    let aliases: Vec<_> = listing.identities.iter().map(|info| info.alias.as_str()).collect();
    assert_eq!(aliases, ["bob"]);
    assert_eq!(listing.damaged.len(), 1, "{:?}", listing.damaged);
    let reason = listing.damaged[0].to_string();
    assert!(reason.contains("alice.identity"), "{reason}");

    let mut wrong_version = good.clone();
    wrong_version[8] = 2;
    std::fs::write(&path, &wrong_version).unwrap();
    assert!(matches!(
        keystore.unlock("alice", "pass"),
        Err(Error::UnsupportedIdentityVersion { version: 2, .. })
    ));

    // Every single flipped byte is detected: never a silently wrong key.
    for index in 0..good.len() {
        let mut flipped = good.clone();
        flipped[index] ^= 0x01;
        std::fs::write(&path, &flipped).unwrap();
        assert!(keystore.unlock("alice", "pass").is_err(), "flipped byte {index}");
    }
    // Absurd Argon2 memory in a foreign file is refused, not allocated.
    let mut greedy = good.clone();
    greedy[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    keystore.import("greedy", &greedy).unwrap();
    assert!(matches!(keystore.unlock("greedy", "pass"), Err(Error::InvalidKdfParams { .. })));

    std::fs::write(&path, &good).unwrap();
    assert!(matches!(keystore.unlock("alice", "nope"), Err(Error::WrongPassphrase { .. })));
    assert!(keystore.import("bad", &good[..50]).is_err());
}

#[test]
fn default_kdf_params_are_strong() {
    let params = KdfParams::default();
    assert_eq!((params.m_cost, params.t_cost, params.p_cost), (64 * 1024, 3, 1));
}

// Item 4: capabilities.

struct World {
    space: SpaceKey,
    authors: Vec<AuthorKey>,
}

fn world(n_authors: usize) -> World {
    World {
        space: SpaceKey::generate(),
        authors: (0..n_authors).map(|_| AuthorKey::generate()).collect(),
    }
}

impl World {
    fn id(&self, index: usize) -> AuthorId {
        self.authors[index].public()
    }

    fn check(
        &self,
        author: usize,
        right: Right,
        at: u64,
        statements: &[SignedStatement],
    ) -> Result<(), AccessDenied> {
        check_access(
            &self.space.id(),
            SpaceMode::Restricted,
            &self.id(author),
            right,
            Timestamp(at),
            statements,
        )
    }
}

#[test]
fn space_key_is_admin_and_open_spaces_allow_writes() {
    let w = world(1);
    let space = w.space.id();
    check_access(&space, SpaceMode::Restricted, &space, Right::Admin, Timestamp(0), &[]).unwrap();
    check_access(&space, SpaceMode::Open, &w.id(0), Right::Write, Timestamp(0), &[]).unwrap();
    assert_eq!(
        check_access(&space, SpaceMode::Open, &w.id(0), Right::Admin, Timestamp(0), &[]),
        Err(AccessDenied::NoCapability { author: w.id(0), space })
    );
    assert_eq!(
        w.check(0, Right::Read, 0, &[]),
        Err(AccessDenied::NoCapability { author: w.id(0), space })
    );
}

#[test]
fn rights_are_ordered() {
    let w = world(2);
    let statements = [
        w.space.grant(w.id(0), Right::Admin, Timestamp(1), None),
        w.space.grant(w.id(1), Right::Read, Timestamp(1), None),
    ];
    for right in [Right::Read, Right::Write, Right::Admin] {
        w.check(0, right, 5, &statements).unwrap();
    }
    w.check(1, Right::Read, 5, &statements).unwrap();
    assert_eq!(
        w.check(1, Right::Write, 5, &statements),
        Err(AccessDenied::InsufficientRight { held: Right::Read, needed: Right::Write })
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let w = world(1);
    let statements = [w.space.grant(w.id(0), Right::Write, Timestamp(10), Some(Timestamp(20)))];
    w.check(0, Right::Write, 20, &statements).unwrap();
    assert_eq!(
        w.check(0, Right::Write, 21, &statements),
        Err(AccessDenied::Expired { not_after: Timestamp(20) })
    );
    assert_eq!(
        w.check(0, Right::Write, 9, &statements),
        Err(AccessDenied::NotYetValid { issued_at: Timestamp(10) })
    );
}

#[test]
fn wrong_signer_and_unknown_signer() {
    let w = world(3);
    // Issuer field says the space key, but author 2 signed it.
    let forged_statement = Statement::Grant(Grant {
        space: w.space.id(),
        issuer: w.space.id(),
        subject: w.id(0),
        right: Right::Write,
        issued_at: Timestamp(1),
        not_after: None,
    });
    assert!(matches!(
        SignedStatement::sign(forged_statement.clone(), &w.authors[2]),
        Err(Error::IssuerMismatch { .. })
    ));
    let forged = SignedStatement::from_parts(forged_statement, w.authors[2].sign(b"anything"));
    assert!(forged.verify().is_err());
    assert_eq!(
        w.check(0, Right::Write, 5, &[forged]),
        Err(AccessDenied::InvalidSignature { author: w.id(0) })
    );
    // A well-signed grant from an author with no rights in the space.
    let stranger = w.authors[2].grant(w.space.id(), w.id(1), Right::Write, Timestamp(1), None);
    assert_eq!(
        w.check(1, Right::Write, 5, &[stranger]),
        Err(AccessDenied::UnknownSigner { issuer: w.id(2) })
    );
    // A grant for another space does not count here.
    let other_space = SpaceKey::generate();
    let elsewhere = other_space.grant(w.id(0), Right::Write, Timestamp(1), None);
    assert!(matches!(
        w.check(0, Right::Write, 5, &[elsewhere]),
        Err(AccessDenied::NoCapability { .. })
    ));
}

#[test]
fn revocation_and_re_grant() {
    let w = world(1);
    let mut statements = vec![
        w.space.grant(w.id(0), Right::Write, Timestamp(10), None),
        w.space.revoke(w.id(0), Timestamp(20)),
    ];
    w.check(0, Right::Write, 15, &statements).unwrap();
    assert_eq!(
        w.check(0, Right::Write, 25, &statements),
        Err(AccessDenied::Revoked { by: w.space.id(), at: Timestamp(20) })
    );
    statements.push(w.space.grant(w.id(0), Right::Read, Timestamp(30), None));
    w.check(0, Right::Read, 35, &statements).unwrap();
    assert!(w.check(0, Right::Write, 35, &statements).is_err());
}

#[test]
fn admin_chain_of_depth_three_and_cascading_revocation() {
    // space -> a0 (admin) -> a1 (admin) -> a2 (admin) -> a3 (write)
    let w = world(4);
    let space = w.space.id();
    let mut statements = vec![
        w.space.grant(w.id(0), Right::Admin, Timestamp(1), None),
        w.authors[0].grant(space, w.id(1), Right::Admin, Timestamp(2), None),
        w.authors[1].grant(space, w.id(2), Right::Admin, Timestamp(3), None),
        w.authors[2].grant(space, w.id(3), Right::Write, Timestamp(4), None),
    ];
    w.check(3, Right::Write, 10, &statements).unwrap();
    w.check(2, Right::Admin, 10, &statements).unwrap();
    assert!(w.check(3, Right::Admin, 10, &statements).is_err());
    // Only the space key or the issuing admin may revoke: a sibling admin's revocation of
    // a grant it did not issue changes nothing.
    statements.push(w.authors[2].revoke(space, w.id(1), Timestamp(5)));
    w.check(3, Right::Write, 10, &statements).unwrap();
    // Revoking the middle link breaks everything below it, including later grants.
    statements.push(w.space.revoke(w.id(1), Timestamp(6)));
    statements.push(w.authors[1].grant(space, w.id(3), Right::Admin, Timestamp(7), None));
    assert_eq!(
        w.check(3, Right::Write, 10, &statements),
        Err(AccessDenied::ChainBroken { issuer: w.id(2) })
    );
    assert!(w.check(3, Right::Admin, 10, &statements).is_err());
    w.check(0, Right::Admin, 10, &statements).unwrap();
}

#[test]
fn expiry_of_an_intermediate_link() {
    let w = world(2);
    let space = w.space.id();
    let statements = [
        w.space.grant(w.id(0), Right::Admin, Timestamp(1), Some(Timestamp(50))),
        w.authors[0].grant(space, w.id(1), Right::Write, Timestamp(2), None),
    ];
    w.check(1, Right::Write, 50, &statements).unwrap();
    assert_eq!(
        w.check(1, Right::Write, 51, &statements),
        Err(AccessDenied::ChainBroken { issuer: w.id(0) })
    );
}

#[test]
fn delegation_loop_terminates_and_is_rejected() {
    let w = world(3);
    let space = w.space.id();
    let statements = [
        w.authors[0].grant(space, w.id(1), Right::Admin, Timestamp(1), None),
        w.authors[1].grant(space, w.id(0), Right::Admin, Timestamp(1), None),
        w.authors[1].grant(space, w.id(2), Right::Write, Timestamp(1), None),
    ];
    assert_eq!(
        w.check(2, Right::Write, 5, &statements),
        Err(AccessDenied::DelegationLoop { issuer: w.id(1) })
    );
    assert!(w.check(0, Right::Admin, 5, &statements).is_err());
}

/// `check_issuer` over the statements of `held`, as a store calls it (the id here is
/// from SHA-256; a store takes BLAKE3, which only matters to sealed revocations).
fn may_issue(statement: &SignedStatement, held: &[SignedStatement]) -> Result<(), AccessDenied> {
    let id = test_id(statement);
    check_issuer(statement.statement(), &id, held.iter().map(SignedStatement::statement))
}

/// A statement id for tests.
pub(crate) fn test_id(statement: &SignedStatement) -> ItemId {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(statement.to_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

#[test]
fn issuers_must_hold_admin_at_the_statements_own_time() {
    let w = world(4);
    let space = w.space.id();
    // The space key may issue anything, with nothing held.
    may_issue(&w.space.grant(w.id(0), Right::Admin, Timestamp(10), Some(Timestamp(50))), &[])
        .unwrap();
    may_issue(&w.space.revoke(w.id(0), Timestamp(10)), &[]).unwrap();
    // A stranger may issue nothing: not a grant, not a revocation, not to itself.
    let stranger = w.authors[3].grant(space, w.id(3), Right::Admin, Timestamp(1), None);
    assert_eq!(may_issue(&stranger, &[]), Err(AccessDenied::UnknownSigner { issuer: w.id(3) }));
    // Holding its own self-issued grant (were it kept) only makes a loop.
    assert_eq!(
        may_issue(&w.authors[3].revoke(space, w.id(0), Timestamp(1)), &[stranger]),
        Err(AccessDenied::DelegationLoop { issuer: w.id(3) })
    );
    // An admin may issue while its grant is valid, judged at the statement's time.
    let held = vec![
        w.space.grant(w.id(0), Right::Admin, Timestamp(10), Some(Timestamp(50))),
        w.authors[0].grant(space, w.id(1), Right::Admin, Timestamp(20), None),
    ];
    may_issue(&held[1], &held[..1]).unwrap();
    may_issue(&w.authors[1].grant(space, w.id(2), Right::Write, Timestamp(30), None), &held)
        .unwrap();
    may_issue(&w.authors[0].revoke(space, w.id(2), Timestamp(50)), &held).unwrap();
    assert_eq!(
        may_issue(&w.authors[0].grant(space, w.id(2), Right::Write, Timestamp(9), None), &held),
        Err(AccessDenied::NotYetValid { issued_at: Timestamp(10) })
    );
    assert_eq!(
        may_issue(&w.authors[0].grant(space, w.id(2), Right::Write, Timestamp(51), None), &held),
        Err(AccessDenied::Expired { not_after: Timestamp(50) })
    );
    // Below an expired link, the chain is broken.
    assert_eq!(
        may_issue(&w.authors[1].grant(space, w.id(2), Right::Write, Timestamp(60), None), &held),
        Err(AccessDenied::ChainBroken { issuer: w.id(1) })
    );
    // A write grant does not make its holder an issuer.
    let writer = vec![w.space.grant(w.id(2), Right::Write, Timestamp(1), None)];
    assert!(
        may_issue(&w.authors[2].grant(space, w.id(3), Right::Read, Timestamp(5), None), &writer)
            .is_err()
    );
    // Loops that do not reach the space key give nothing.
    let looped = vec![
        w.authors[2].grant(space, w.id(3), Right::Admin, Timestamp(1), None),
        w.authors[3].grant(space, w.id(2), Right::Admin, Timestamp(1), None),
    ];
    assert_eq!(
        may_issue(&w.authors[3].grant(space, w.id(0), Right::Read, Timestamp(5), None), &looped),
        Err(AccessDenied::DelegationLoop { issuer: w.id(3) })
    );
}

#[test]
fn a_revoked_admin_may_not_issue_grants_from_its_revocation_on() {
    let w = world(2);
    let space = w.space.id();
    let admin = w.space.grant(w.id(0), Right::Admin, Timestamp(10), None);
    let revoked = w.space.revoke(w.id(0), Timestamp(20));
    let before = w.authors[0].grant(space, w.id(1), Right::Write, Timestamp(15), None);
    let after = w.authors[0].grant(space, w.id(1), Right::Write, Timestamp(25), None);
    // A grant dated before the (unsealed) revocation is kept either way...
    for held in [vec![admin.clone()], vec![admin.clone(), revoked.clone()]] {
        may_issue(&before, &held).unwrap();
    }
    // ...one dated after it only while the revocation is not held (a store that receives
    // the revocation later removes it) ...
    may_issue(&after, std::slice::from_ref(&admin)).unwrap();
    assert_eq!(
        may_issue(&after, &[admin.clone(), revoked.clone()]),
        Err(AccessDenied::Revoked { by: space, at: Timestamp(20) })
    );
    // ...and so do its revocations: from then on it may end nothing either (before then
    // it still may, the revocation being unsealed).
    let held = [admin.clone(), revoked.clone()];
    assert_eq!(
        may_issue(&w.authors[0].revoke(space, w.id(1), Timestamp(30)), &held),
        Err(AccessDenied::Revoked { by: space, at: Timestamp(20) })
    );
    may_issue(&w.authors[0].revoke(space, w.id(1), Timestamp(18)), &held).unwrap();
    let all = [admin, revoked, before, after];
    assert!(w.check(1, Right::Write, 30, &all).is_err());
}

#[test]
fn statement_decode_errors() {
    let w = world(1);
    let signed = w.space.grant(w.id(0), Right::Write, Timestamp(1), Some(Timestamp(9)));
    let bytes = signed.to_bytes();
    assert_eq!(SignedStatement::from_bytes(&bytes).unwrap(), signed);
    assert!(matches!(
        SignedStatement::from_bytes(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(SignedStatement::from_bytes(&[]), Err(DecodeError::Truncated { .. })));
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(SignedStatement::from_bytes(&longer), Err(DecodeError::TrailingBytes(1)));
    let mut version = bytes.clone();
    version[0] = 2;
    assert_eq!(SignedStatement::from_bytes(&version), Err(DecodeError::UnsupportedVersion(2)));
    let mut kind = bytes.clone();
    kind[1] = 9;
    assert_eq!(SignedStatement::from_bytes(&kind), Err(DecodeError::UnknownKind(9)));
    let mut right = bytes.clone();
    right[106] = 0;
    assert_eq!(SignedStatement::from_bytes(&right), Err(DecodeError::UnknownRight(0)));
    let mut flag = bytes.clone();
    flag[107] = 7;
    assert_eq!(SignedStatement::from_bytes(&flag), Err(DecodeError::InvalidExpiryFlag(7)));
    let revocation = w.space.revoke(w.id(0), Timestamp(3));
    let statement_bytes = revocation.statement().to_bytes();
    assert_eq!(Statement::from_bytes(&statement_bytes).unwrap(), *revocation.statement());
}

fn arbitrary_statement() -> impl Strategy<Value = (usize, u8, u64, Option<u64>)> {
    (0usize..2, 1u8..=3, any::<u64>(), proptest::option::of(any::<u64>()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any change to a signed statement's bytes or signature fails decoding or verification.
    #[test]
    fn any_change_breaks_a_signed_statement(
        (kind, right, issued_at, not_after) in arbitrary_statement(),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let space = SpaceKey::from_secret_bytes(&[1u8; 32]);
        let subject = AuthorKey::from_secret_bytes(&[2u8; 32]).public();
        let right = match right { 1 => Right::Read, 2 => Right::Write, _ => Right::Admin };
        let signed = if kind == 0 {
            space.grant(subject, right, Timestamp(issued_at), not_after.map(Timestamp))
        } else {
            space.revoke(subject, Timestamp(issued_at))
        };
        let bytes = signed.to_bytes();
        prop_assert!(SignedStatement::from_bytes(&bytes).unwrap().verify().is_ok());
        let mut changed = bytes.clone();
        let index = position.index(changed.len());
        changed[index] ^= flip;
        if let Ok(decoded) = SignedStatement::from_bytes(&changed) {
            prop_assert!(decoded.verify().is_err());
        }
    }

    /// Encoding then decoding a statement gives it back.
    #[test]
    fn statement_round_trip((kind, right, issued_at, not_after) in arbitrary_statement()) {
        let space = SpaceKey::from_secret_bytes(&[3u8; 32]);
        let subject = AuthorKey::from_secret_bytes(&[4u8; 32]).public();
        let right = match right { 1 => Right::Read, 2 => Right::Write, _ => Right::Admin };
        let signed = if kind == 0 {
            space.grant(subject, right, Timestamp(issued_at), not_after.map(Timestamp))
        } else {
            space.revoke(subject, Timestamp(issued_at))
        };
        prop_assert_eq!(SignedStatement::from_bytes(&signed.to_bytes()).unwrap(), signed);
    }

    /// Decoding arbitrary bytes never panics.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = SignedStatement::from_bytes(&bytes);
        let _ = Statement::from_bytes(&bytes);
    }
}

#[test]
fn delegation_chains_longer_than_the_limit_grant_nothing_whatever_the_order() {
    // Authors 0..=7 form a chain of admins: the space key grants 0, 0 grants 1, and so on.
    let w = world(10);
    let t = Timestamp(1);
    let mut statements = vec![w.space.grant(w.id(0), Right::Admin, t, None)];
    for index in 1..8 {
        statements.push(w.authors[index - 1].grant(
            w.space.id(),
            w.id(index),
            Right::Admin,
            t,
            None,
        ));
    }
    // Author 6 is the admin at depth 7, the deepest allowed: its write grant to author 8
    // is the eighth grant of the chain.
    statements.push(w.authors[6].grant(w.space.id(), w.id(8), Right::Write, t, None));
    // Author 7 is admin at depth 8: nothing it grants is valid.
    statements.push(w.authors[7].grant(w.space.id(), w.id(9), Right::Write, t, None));
    assert_eq!(MAX_DELEGATION_DEPTH, 8);
    w.check(8, Right::Write, 5, &statements).unwrap();
    w.check(6, Right::Admin, 5, &statements).unwrap();
    let too_deep = AccessDenied::ChainTooDeep { issuer: w.id(7), limit: MAX_DELEGATION_DEPTH };
    assert_eq!(w.check(9, Right::Write, 5, &statements), Err(too_deep.clone()));
    assert!(too_deep.to_string().contains("more than 8 grants"), "{too_deep}");
    // The same decision in any order, and when deciding whether to keep a statement.
    let mut reversed = statements.clone();
    reversed.reverse();
    assert_eq!(w.check(9, Right::Write, 5, &reversed), Err(too_deep.clone()));
    let last = statements.last().unwrap().statement().clone();
    let held: Vec<Statement> = statements.iter().map(|s| s.statement().clone()).collect();
    let id = test_id(statements.last().unwrap());
    assert_eq!(check_issuer(&last, &id, held.iter()), Err(too_deep));
    // A shorter chain to the same admin, added later, makes its grants valid.
    statements.push(w.space.grant(w.id(7), Right::Admin, t, None));
    w.check(9, Right::Write, 5, &statements).unwrap();
}
