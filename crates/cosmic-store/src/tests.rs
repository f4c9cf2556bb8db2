use std::io::BufRead as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use expect_test::expect;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use redb::StorageBackend;
use serde_json::json;
use tokio_stream::StreamExt as _;

use cosmic_auth::{AuthorKey, PublicKey, Right, SignedStatement, SpaceKey, SpaceMode, Timestamp};

use crate::*;

/// A wall clock tests can set and skew.
#[derive(Debug)]
struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const NOW: u64 = 1_780_000_000_000;

fn options_at(millis: u64) -> (Options, Arc<TestClock>) {
    let clock = Arc::new(TestClock(AtomicU64::new(millis)));
    let options = Options { clock: clock.clone(), ..Options::default() };
    (options, clock)
}

fn key(seed: u8) -> AuthorKey {
    AuthorKey::from_secret_bytes(&[seed; 32])
}

fn space_key(seed: u8) -> SpaceKey {
    SpaceKey::from_secret_bytes(&[seed; 32])
}

fn open(dir: &Path) -> Store {
    Store::open(dir.join("store.redb"), options_at(NOW).0).unwrap()
}

fn open_space(store: &Store, mode: SpaceMode) -> PublicKey {
    store.create_space(&space_key(1), mode).unwrap().space
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

// ---- encoding ----

#[test]
fn entry_encoding_is_pinned() {
    let entry = Entry::sign(
        &key(2),
        space_key(1).id(),
        "users/alice",
        "name",
        Value::String("Alice".into()),
        Hlc::new(1_700_000_000_000, 7),
    )
    .unwrap();
    expect!["018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c000b75736572732f616c69636500046e616d650000018bcfe56800000000078139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940500000005416c696365"]
    .assert_eq(&hex(&entry.encode()[..entry.encode().len() - 64]));
    expect!["ee6a90f3b9ba2d19680ff18aea016c44aee717651fa08f5f3188ca1fe25b7f8494e0cfcd291b6b3bf5aff86c8c59061f51a07c3d6fd4d02dd5b6ad2f5516900d"].assert_eq(&hex(&entry.signature.to_bytes()));
    expect!["31bc4690dbc6864aa018d06a2e85557cd7d4bd4494d7430ba22c08d54dd4440a"]
        .assert_eq(&hex(&entry.hash()));
    assert_eq!(Entry::decode(&entry.encode()).unwrap(), entry);
    entry.verify().unwrap();
}

#[test]
fn every_value_kind_round_trips() {
    let cid = Value::blob_link_str("bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi")
        .unwrap();
    let values = [
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(-5),
        Value::float(1.5).unwrap(),
        Value::String("héllo".into()),
        Value::Bytes(vec![0, 1, 255]),
        Value::DocLink("users/bob".into()),
        cid,
    ];
    for value in values {
        let entry =
            Entry::sign(&key(2), space_key(1).id(), "d", "f", value, Hlc::new(1, 0)).unwrap();
        assert_eq!(Entry::decode(&entry.encode()).unwrap(), entry);
        let json = entry.value.to_json();
        assert!(!json.is_null() || entry.value.is_null(), "{json}");
    }
}

#[test]
fn floats_are_canonical() {
    assert_eq!(Value::float(-0.0).unwrap().encode(), Value::float(0.0).unwrap().encode());
    let error = Value::float(f64::NAN).unwrap_err();
    assert_eq!(error.to_string(), "invalid value: a float must be finite, not NaN");
    assert!(Value::float(f64::NEG_INFINITY).is_err());
    assert!(Value::Float(-0.0).validate().is_err());
    // A NaN smuggled into an encoding is refused on decode.
    let entry =
        Entry::sign(&key(2), space_key(1).id(), "d", "f", Value::Float(1.0), Hlc::new(1, 0))
            .unwrap();
    let mut bytes = entry.encode();
    let at = bytes.len() - 64 - 8;
    bytes[at..at + 8].copy_from_slice(&f64::NAN.to_bits().to_be_bytes());
    assert!(matches!(Entry::decode(&bytes), Err(Error::InvalidValue { .. })));
}

#[test]
fn bad_bytes_are_decode_errors() {
    let entry =
        Entry::sign(&key(2), space_key(1).id(), "d", "f", Value::Int(1), Hlc::new(1, 0)).unwrap();
    let bytes = entry.encode();
    for cut in 0..bytes.len() {
        assert!(Entry::decode(&bytes[..cut]).is_err(), "prefix of {cut} bytes");
    }
    let mut versioned = bytes.clone();
    versioned[0] = 9;
    let error = Entry::decode(&versioned).unwrap_err();
    assert_eq!(error.to_string(), "cannot decode entry: unsupported entry version 9");
    let mut trailing = bytes;
    trailing.push(0);
    assert!(Entry::decode(&trailing).is_err());
    assert!(Value::blob_link(vec![1, 2, 3]).is_err());
}

#[test]
fn keys_are_validated() {
    let cases = [
        ("", "invalid document key \"\": it is empty"),
        ("a//b", "invalid document key \"a//b\": it has an empty segment"),
        ("/a", "invalid document key \"/a\": it has an empty segment"),
        ("a/", "invalid document key \"a/\": it has an empty segment"),
        ("a\0b", "invalid document key \"a\\0b\": it contains a control character"),
    ];
    for (key, message) in cases {
        assert_eq!(validate_doc_key(key).unwrap_err().to_string(), message);
    }
    assert!(validate_doc_key(&"x".repeat(513)).is_err());
    validate_doc_key("users/alice/address").unwrap();
    assert_eq!(
        validate_field("a/b").unwrap_err().to_string(),
        "invalid field name \"a/b\": it contains '/'"
    );
    assert!(validate_field("").is_err());
}

// ---- clock ----

#[test]
fn clock_is_monotonic_across_restarts_and_follows_entries_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let (options, clock) = options_at(NOW);
    let store = Store::open(&path, options.clone()).unwrap();
    let space = open_space(&store, SpaceMode::Open);
    // An entry from a peer a little ahead moves the clock forward.
    let ahead = Hlc::new(NOW + 30_000, 3);
    let entry = Entry::sign(&key(3), space, "d", "f", Value::Int(1), ahead).unwrap();
    assert!(matches!(store.insert(entry).unwrap(), Inserted::Applied { .. }));
    assert_eq!(store.clock(), ahead);
    // The wall clock goes back; the store still stamps after everything it saw.
    clock.0.store(NOW - 1_000_000, Ordering::SeqCst);
    store.write(&key(2), &space, "d", vec![("g".into(), Value::Int(2))]).unwrap();
    let written = store.get_entry(&space, "d", "g").unwrap().unwrap();
    assert_eq!(written.hlc, Hlc::new(NOW + 30_000, 4));
    drop(store);
    let store = Store::open(&path, options).unwrap();
    assert_eq!(store.clock(), Hlc::new(NOW + 30_000, 4));
    store.write(&key(2), &space, "d", vec![("h".into(), Value::Int(3))]).unwrap();
    assert!(store.get_entry(&space, "d", "h").unwrap().unwrap().hlc > written.hlc);
}

#[test]
fn concurrent_writes_get_distinct_stamps_and_the_clock_keeps_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let (options, _clock) = options_at(NOW);
    let store = Store::open(&path, options.clone()).unwrap();
    let space = open_space(&store, SpaceMode::Open);
    // Writers stamp and sign outside the writer lock: the stamps must still be unique.
    let threads: Vec<_> = (0..4u8)
        .map(|writer| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let fields = (0..20).map(|f| (format!("f{f}"), Value::Int(f))).collect();
                    let written = store.write(&key(2), &space, &format!("w{writer}/{i}"), fields);
                    assert!(written.unwrap().iter().all(|w| matches!(w, Inserted::Applied { .. })));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let changes = store.changes_since(&space, 0, usize::MAX).unwrap();
    assert_eq!(changes.len(), 4 * 25 * 20);
    let stamps: std::collections::BTreeSet<Hlc> =
        changes.iter().map(|change| change.entry.hlc).collect();
    assert_eq!(stamps.len(), changes.len(), "two fields got the same stamp");
    let latest = *stamps.last().unwrap();
    assert_eq!(store.clock(), latest);
    drop(store);
    let store = Store::open(&path, options).unwrap();
    assert_eq!(store.clock(), latest, "the clock is saved with the last commit");
}

#[test]
fn entries_too_far_in_the_future_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let future = Hlc::new(NOW + 61_000, 0);
    let entry = Entry::sign(&key(3), space, "d", "f", Value::Int(1), future).unwrap();
    let error = store.insert(entry).unwrap_err();
    assert_eq!(
        error.to_string(),
        "entry \"d\"/\"f\" is stamped 61000 ms in the future, more than the allowed clock \
         drift of 60000 ms"
    );
    assert_eq!(store.get_entry(&space, "d", "f").unwrap(), None);
    assert_eq!(store.clock().millis, 0, "a refused entry does not move the clock");
}

#[test]
fn a_time_floor_moves_stamping_and_the_drift_check_together() {
    let dir = tempfile::tempdir().unwrap();
    let (options, clock) = options_at(NOW);
    let store = Store::open(dir.path().join("store.redb"), options).unwrap();
    let space = open_space(&store, SpaceMode::Open);
    let hour = 3_600_000;
    let future = Hlc::new(NOW + hour, 0);
    let entry = Entry::sign(&key(3), space, "d", "f", Value::Int(1), future).unwrap();
    assert!(matches!(store.insert(entry.clone()), Err(Error::ClockDrift { .. })));

    let at = std::time::Instant::now();
    store.set_time_floor(Some(TimeFloor { millis: NOW + hour, at }));
    let correction = store.clock_correction().as_millis();
    assert!((3_600_000..3_660_000).contains(&correction), "{correction}");
    assert!(store.now_millis() >= NOW + hour);
    assert_eq!(store.wall_clock_millis(), NOW);
    assert!(matches!(store.insert(entry).unwrap(), Inserted::Applied { .. }));
    store.write(&key(4), &space, "d", vec![("g".to_owned(), Value::Int(2))]).unwrap();
    let stamped = store.get_entry(&space, "d", "g").unwrap().unwrap().hlc;
    assert!(stamped > future, "a local write is stamped after what was seen: {stamped}");

    // The wall clock is set right (past the floor): the floor stops mattering.
    clock.0.store(NOW + 2 * hour, Ordering::SeqCst);
    assert_eq!(store.clock_correction(), Duration::ZERO);

    // Cleared, and the wall clock back where it was: the drift is judged against it again.
    store.set_time_floor(None);
    clock.0.store(NOW, Ordering::SeqCst);
    let later = Hlc::new(NOW + hour + 1, 0);
    let entry = Entry::sign(&key(3), space, "d", "h", Value::Int(3), later).unwrap();
    assert!(matches!(store.insert(entry), Err(Error::ClockDrift { .. })));
}

// ---- merge ----

#[test]
fn merge_keeps_the_greatest_of_hlc_author_value_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let sign = |seed, millis, value| {
        Entry::sign(&key(seed), space, "d", "f", value, Hlc::new(millis, 0)).unwrap()
    };
    let old = sign(2, 10, Value::Int(1));
    let new = sign(2, 20, Value::Int(2));
    assert!(matches!(store.insert(new.clone()).unwrap(), Inserted::Applied { .. }));
    assert_eq!(store.insert(old).unwrap(), Inserted::Superseded);
    assert_eq!(store.insert(new.clone()).unwrap(), Inserted::Duplicate);
    // Same hlc: the greater author wins, whatever the order.
    let (a, b) = (sign(2, 30, Value::Int(3)), sign(3, 30, Value::Int(4)));
    let winner = if a.author > b.author { a.clone() } else { b.clone() };
    store.insert(a).unwrap();
    store.insert(b).unwrap();
    assert_eq!(store.get_entry(&space, "d", "f").unwrap().unwrap(), winner);
}

fn arbitrary_entries(space: PublicKey) -> impl Strategy<Value = Vec<Entry>> {
    let one = (0u8..3, 0u8..4, 0u8..3, 0u64..4, 0u32..2, 0i64..3, any::<bool>());
    proptest::collection::vec(one, 1..24).prop_map(move |specs| {
        specs
            .into_iter()
            .map(|(doc, field, author, millis, counter, value, delete)| {
                let value = if delete { Value::Null } else { Value::Int(value) };
                Entry::sign(
                    &key(10 + author),
                    space,
                    &format!("doc{doc}"),
                    &format!("f{field}"),
                    value,
                    Hlc::new(NOW - 100 + millis, counter),
                )
                .unwrap()
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_order_and_any_duplication_gives_the_same_state(
        (entries, order, dups) in arbitrary_entries(space_key(1).id()).prop_flat_map(|entries| {
            let n = entries.len();
            (Just(entries), Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
             proptest::collection::vec(0..n, 0..8))
        })
    ) {
        let dir = tempfile::tempdir().unwrap();
        let one = Store::open(dir.path().join("one.redb"), options_at(NOW).0).unwrap();
        let two = Store::open(dir.path().join("two.redb"), options_at(NOW).0).unwrap();
        let space = open_space(&one, SpaceMode::Open);
        open_space(&two, SpaceMode::Open);
        one.insert_batch(entries.clone()).unwrap();
        let mut shuffled: Vec<Entry> = order.iter().map(|&i| entries[i].clone()).collect();
        shuffled.extend(dups.iter().map(|&i| entries[i].clone()));
        // One at a time, in another order, with duplicates.
        for entry in shuffled {
            two.insert(entry).unwrap();
        }
        prop_assert_eq!(one.state_hash(&space).unwrap(), two.state_hash(&space).unwrap());
        prop_assert_eq!(
            one.fingerprint(&space, None, None).unwrap(),
            two.fingerprint(&space, None, None).unwrap()
        );
        prop_assert_eq!(one.list_spaces().unwrap(), two.list_spaces().unwrap());
        prop_assert_eq!(
            one.list_docs(&space, "", None, 100).unwrap(),
            two.list_docs(&space, "", None, 100).unwrap()
        );
    }
}

#[test]
fn bad_signatures_and_unknown_spaces_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let mut forged =
        Entry::sign(&key(2), space, "d", "f", Value::Int(1), Hlc::new(NOW, 0)).unwrap();
    forged.value = Value::Int(2);
    let good = Entry::sign(&key(2), space, "d", "g", Value::Int(1), Hlc::new(NOW, 0)).unwrap();
    let results = store.insert_batch(vec![forged, good]).unwrap();
    assert!(matches!(&results[0], Err(Error::BadSignature { .. })), "{results:?}");
    assert!(matches!(&results[1], Ok(Inserted::Applied { seq: 1 })), "{results:?}");
    assert_eq!(store.get_entry(&space, "d", "f").unwrap(), None);
    let elsewhere = key(9).public();
    let entry = Entry::sign(&key(2), elsewhere, "d", "f", Value::Int(1), Hlc::new(NOW, 0)).unwrap();
    let error = store.insert(entry).unwrap_err();
    assert_eq!(error.to_string(), format!("unknown space {elsewhere}"));
    assert_eq!(store.n_entries().unwrap(), 1);
    assert_eq!(store.last_seq(), 1);
}

/// A batch large enough to be checked on every core, in batch checks: forged entries
/// in any chunk are refused one by one and counted, every other entry is applied.
#[test]
fn forged_entries_in_a_large_batch_are_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let authors = [key(2), key(3), key(4)];
    let mut batch: Vec<Entry> = (0..300u64)
        .map(|n| {
            let author = &authors[n as usize % authors.len()];
            let field = format!("f{n}");
            Entry::sign(author, space, "d", &field, Value::Int(n as i64), Hlc::new(NOW, 0)).unwrap()
        })
        .collect();
    let forged = [0, 149, 150, 299];
    for index in forged {
        batch[index].value = Value::Int(-1);
    }
    // A malformed one too: it is refused for its structure, not checked as a signature.
    batch[7].field = String::new();
    let results = store.insert_batch_from(batch, Origin::Peer("p".into())).unwrap();
    for (index, result) in results.iter().enumerate() {
        if forged.contains(&index) {
            assert!(matches!(result, Err(Error::BadSignature { .. })), "{index}: {result:?}");
        } else if index == 7 {
            assert!(result.is_err() && !matches!(result, Err(Error::BadSignature { .. })));
        } else {
            assert!(matches!(result, Ok(Inserted::Applied { .. })), "{index}: {result:?}");
        }
    }
    assert_eq!(store.n_entries().unwrap(), 295);
    assert_eq!(store.get_entry(&space, "d", "f149").unwrap(), None);
    assert_eq!(store.refusals().bad_signature, 4);
    assert_eq!(store.refusals().malformed, 1);
}

#[test]
fn entries_signed_elsewhere_are_inserted_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Restricted);
    let owner = space_key(1);
    let (writer, stranger) = (key(2), key(3));
    store
        .insert_statement(&owner.grant(writer.public(), Right::Write, Timestamp(0), None))
        .unwrap();
    let sign = |author: &AuthorKey, field: &str, millis: u64| {
        Entry::sign(author, space, "d", field, Value::Int(1), Hlc::new(millis, 0)).unwrap()
    };
    let good = vec![sign(&writer, "a", NOW - 5), sign(&writer, "b", NOW - 4)];
    // One entry of an author without a right, one too far ahead, one with a forged
    // signature: each fails the whole batch, and nothing of it is stored.
    let mut forged = sign(&writer, "c", NOW - 3);
    forged.value = Value::Int(2);
    for (bad, expected) in [
        (sign(&stranger, "c", NOW - 3), "AccessDenied"),
        (sign(&writer, "c", NOW + 3_600_000), "ClockDrift"),
        (forged, "BadSignature"),
    ] {
        let mut batch = good.clone();
        batch.insert(1, bad);
        let error = store.insert_all(batch).unwrap_err();
        assert!(format!("{error:?}").starts_with(expected), "{expected}: {error:?}");
        assert_eq!(store.n_entries().unwrap(), 0, "{expected}: the batch left entries behind");
        assert_eq!(store.last_seq(), 0);
    }
    // Each refusal is counted by its reason, for the node's metrics.
    let refusals = store.refusals();
    assert_eq!(
        (refusals.no_right, refusals.clock_drift, refusals.bad_signature, refusals.malformed),
        (1, 1, 1, 0),
        "{refusals:?}"
    );
    let inserted = store.insert_all(good.clone()).unwrap();
    assert!(inserted.iter().all(|i| matches!(i, Inserted::Applied { .. })), "{inserted:?}");
    assert_eq!(store.insert_all(good).unwrap(), vec![Inserted::Duplicate, Inserted::Duplicate]);
    assert_eq!(store.n_entries().unwrap(), 2);
}

#[test]
fn restricted_spaces_need_a_capability() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Restricted);
    let owner = space_key(1);
    let author = key(2);
    let write =
        |store: &Store| store.write(&author, &space, "d", vec![("f".into(), Value::Int(1))]);
    let error = write(&store).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("author {} may not write to space {space}", author.public())
    );
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(source.contains("holds no capability"), "{source}");
    assert_eq!(store.n_entries().unwrap(), 0);
    // The space key itself may write.
    let owner_as_author = AuthorKey::from_secret_bytes(&owner.secret_bytes());
    store.write(&owner_as_author, &space, "d", vec![("f".into(), Value::Int(0))]).unwrap();
    // A statement with a broken signature is refused and not stored.
    let grant = owner.grant(author.public(), Right::Write, Timestamp(0), None);
    let forged = SignedStatement::from_parts(grant.statement().clone(), key(5).sign(b"x"));
    assert!(matches!(store.insert_statement(&forged), Err(Error::BadStatement { .. })));
    // A grant by someone who is not an admin is refused; a read grant and an expired grant
    // are kept but do not help.
    let powerless = key(5).grant(space, author.public(), Right::Write, Timestamp(0), None);
    assert!(matches!(store.insert_statement(&powerless), Err(Error::UnauthorizedStatement { .. })));
    store.insert_statement(&owner.grant(author.public(), Right::Read, Timestamp(0), None)).unwrap();
    store
        .insert_statement(&owner.grant(
            author.public(),
            Right::Write,
            Timestamp(0),
            Some(Timestamp(NOW - 10)),
        ))
        .unwrap();
    assert!(matches!(write(&store), Err(Error::AccessDenied { .. })));
    assert!(store.insert_statement(&grant).unwrap());
    assert!(!store.insert_statement(&grant).unwrap(), "statements are idempotent");
    write(&store).unwrap();
    assert_eq!(store.statements(&space).unwrap().len(), 3);
    // Opening the space up later lets anyone in.
    store.create_space(&owner, SpaceMode::Open).unwrap();
    store.write(&key(7), &space, "d", vec![("g".into(), Value::Int(1))]).unwrap();
}

#[test]
fn powerless_statements_are_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Restricted);
    let (stranger, author) = (key(5), key(2));
    let before = store.state_hash(&space).unwrap();
    let seq = store.last_seq();
    for statement in [
        stranger.grant(space, stranger.public(), Right::Admin, Timestamp(1), None),
        stranger.grant(space, author.public(), Right::Write, Timestamp(1), None),
        stranger.revoke(space, author.public(), Timestamp(1)),
    ] {
        let error = store.insert_statement(&statement).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "issuer {} may not issue capability statements in space {space}",
                stranger.public()
            )
        );
        assert!(
            matches!(error, Error::UnauthorizedStatement { issuer, .. } if issuer == stranger.public())
        );
    }
    assert!(store.statements(&space).unwrap().is_empty());
    assert_eq!(store.state_hash(&space).unwrap(), before);
    assert_eq!(store.last_seq(), seq);
    // A write grant does not make its holder an issuer either.
    store
        .insert_statement(&space_key(1).grant(author.public(), Right::Write, Timestamp(1), None))
        .unwrap();
    let by_writer = author.grant(space, key(6).public(), Right::Read, Timestamp(2), None);
    let error = store.insert_statement(&by_writer).unwrap_err();
    let reason = std::error::Error::source(&error).unwrap().to_string();
    assert!(reason.contains("unknown in the space"), "{reason}");
    assert_eq!(store.statements(&space).unwrap().len(), 1);
}

#[test]
fn admins_may_issue_while_their_own_grant_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Restricted);
    let (admin, deputy, writer) = (key(3), key(4), key(2));
    store
        .insert_statement(&space_key(1).grant(
            admin.public(),
            Right::Admin,
            Timestamp(10),
            Some(Timestamp(NOW)),
        ))
        .unwrap();
    // Delegated admin, then a writer two links from the space key.
    assert!(
        store
            .insert_statement(&admin.grant(
                space,
                deputy.public(),
                Right::Admin,
                Timestamp(20),
                None
            ))
            .unwrap()
    );
    let grant = deputy.grant(space, writer.public(), Right::Write, Timestamp(30), None);
    assert!(store.insert_statement(&grant).unwrap());
    assert!(!store.insert_statement(&grant).unwrap(), "statements are idempotent");
    store.write(&writer, &space, "d", vec![("f".into(), Value::Int(1))]).unwrap();
    // Revocations by an admin are kept too.
    assert!(store.insert_statement(&admin.revoke(space, writer.public(), Timestamp(40))).unwrap());
    // Outside its grant's validity the admin may issue nothing: before it, or after it ended.
    for issued_at in [Timestamp(5), Timestamp(NOW + 1)] {
        let early_or_late = admin.grant(space, key(7).public(), Right::Read, issued_at, None);
        assert!(matches!(
            store.insert_statement(&early_or_late),
            Err(Error::UnauthorizedStatement { .. })
        ));
    }
    assert_eq!(store.statements(&space).unwrap().len(), 4);
}

#[test]
fn a_batch_resolves_grants_that_come_before_their_issuers_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Restricted);
    let (a0, a1, a2, writer, stranger) = (key(3), key(4), key(5), key(2), key(9));
    // A chain space -> a0 -> a1 -> a2 -> writer listed backwards, with a duplicate, a
    // powerless grant and a forged signature mixed in.
    let chain = [
        space_key(1).grant(a0.public(), Right::Admin, Timestamp(1), None),
        a0.grant(space, a1.public(), Right::Admin, Timestamp(2), None),
        a1.grant(space, a2.public(), Right::Admin, Timestamp(3), None),
        a2.grant(space, writer.public(), Right::Write, Timestamp(4), None),
    ];
    let powerless = stranger.grant(space, writer.public(), Right::Admin, Timestamp(4), None);
    let forged = SignedStatement::from_parts(chain[0].statement().clone(), stranger.sign(b"x"));
    let mut batch: Vec<SignedStatement> = chain.iter().rev().cloned().collect();
    batch.extend([powerless, forged, chain[3].clone()]);
    let results = store.insert_statements(&batch).unwrap();
    assert!(results[1..4].iter().all(|result| matches!(result, Ok(true))), "{results:?}");
    assert!(matches!(results[4], Err(Error::UnauthorizedStatement { .. })), "{results:?}");
    assert!(matches!(results[5], Err(Error::BadStatement { .. })), "{results:?}");
    // Of the two copies of the last link, one is new and the other held by then.
    let copies = [&results[0], &results[6]];
    assert!(matches!(copies, [Ok(true), Ok(false)] | [Ok(false), Ok(true)]), "{results:?}");
    let mut held = store.statements(&space).unwrap();
    let mut expected = chain.to_vec();
    held.sort_by_key(SignedStatement::to_bytes);
    expected.sort_by_key(SignedStatement::to_bytes);
    assert_eq!(held, expected);
    store.write(&writer, &space, "d", vec![("f".into(), Value::Int(1))]).unwrap();
    // Offered again, the same batch writes nothing.
    let seq = store.last_seq();
    let again = store.insert_statements(&batch).unwrap();
    assert!(again[..4].iter().all(|result| matches!(result, Ok(false))), "{again:?}");
    assert_eq!(store.last_seq(), seq);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Two stores that are offered the same statements, one at a time in different orders
    /// and again until nothing changes (as reconciliation does), keep the same ones.
    #[test]
    fn kept_statements_do_not_depend_on_arrival_order(
        order in Just((0..9usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let space_id = space_key(1).id();
        let keys: Vec<AuthorKey> = (3..7).map(key).collect();
        let statements = vec![
            space_key(1).grant(keys[0].public(), Right::Admin, Timestamp(10), Some(Timestamp(50))),
            keys[0].grant(space_id, keys[1].public(), Right::Admin, Timestamp(20), None),
            keys[1].grant(space_id, keys[2].public(), Right::Write, Timestamp(30), None),
            space_key(1).revoke(keys[0].public(), Timestamp(25)),
            keys[0].grant(space_id, keys[3].public(), Right::Admin, Timestamp(40), None),
            keys[3].grant(space_id, keys[2].public(), Right::Read, Timestamp(45), None),
            keys[0].grant(space_id, keys[2].public(), Right::Write, Timestamp(60), None),
            keys[2].grant(space_id, keys[3].public(), Right::Admin, Timestamp(35), None),
            keys[3].grant(space_id, keys[3].public(), Right::Admin, Timestamp(1), None),
        ];
        let kept = |order: &[usize]| {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            open_space(&store, SpaceMode::Restricted);
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
            let mut held = store.statements(&space_id).unwrap();
            held.sort_by_key(SignedStatement::to_bytes);
            held
        };
        let in_order = kept(&(0..statements.len()).collect::<Vec<_>>());
        // Kept: the first grant, k0's grant to k1 (before k0's revocation), the revocation.
        // k1's grant rests on k0 being admin at 30, after k0's revocation; k0's grant at 40
        // comes after it; k3's grant rests on that; the last three have no valid issuer.
        // Whatever the order, a grant taken in before the revocation came is removed then.
        prop_assert_eq!(in_order.len(), 3, "{:?}", in_order);
        prop_assert_eq!(kept(&order), in_order);
    }
}

// ---- queries ----

#[test]
fn nested_json_becomes_linked_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let cid = "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi";
    let object = json!({
        "name": "Alice",
        "age": 42,
        "score": 1.5,
        "address": {"city": "Lyon", "geo": {"lat": 45}},
        "friend": {"#": "users/bob"},
        "avatar": {"/": cid},
        "raw": {"/": {"bytes": "AAEC"}},
    });
    store.write_json(&key(2), &space, "users/alice", &object).unwrap();
    let alice = store.get_doc(&space, "users/alice").unwrap().unwrap();
    assert_eq!(alice["address"].value, Value::DocLink("users/alice/address".into()));
    assert_eq!(alice["address"].author, key(2).public());
    assert_eq!(alice["raw"].value, Value::Bytes(vec![0, 1, 2]));
    assert_eq!(
        store.get_json(&space, "users/alice", 0).unwrap().unwrap()["address"],
        json!({"#": "users/alice/address"})
    );
    let deep = store.get_json(&space, "users/alice", 5).unwrap().unwrap();
    assert_eq!(deep["address"], json!({"city": "Lyon", "geo": {"lat": 45}}));
    assert_eq!(deep["friend"], json!({"#": "users/bob"}), "a missing target stays a link");
    assert_eq!(deep["avatar"], json!({"/": cid}));
    assert_eq!(deep["raw"], json!({"/": {"bytes": "AAEC"}}));
    let one_level = store.get_json(&space, "users/alice", 1).unwrap().unwrap();
    assert_eq!(one_level["address"]["geo"], json!({"#": "users/alice/address/geo"}));

    let error = store.write_json(&key(2), &space, "users/x", &json!({"a": [1]})).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid value: field \"a\" of \"users/x\": arrays are not supported"
    );
    assert!(store.write_json(&key(2), &space, "users/x", &json!({"a/b": 1})).is_err());
    assert!(store.write_json(&key(2), &space, "users//x", &json!({"a": 1})).is_err());
}

#[test]
fn deletes_hide_fields_and_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let author = key(2);
    store.write_json(&author, &space, "d", &json!({"a": 1, "b": 2})).unwrap();
    store.write_json(&author, &space, "d", &json!({"a": null})).unwrap();
    let doc = store.get_doc(&space, "d").unwrap().unwrap();
    assert_eq!(doc.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(store.list_spaces().unwrap()[0].n_docs, 1);
    store.write_json(&author, &space, "d", &json!({"b": null})).unwrap();
    assert_eq!(store.get_doc(&space, "d").unwrap(), None);
    assert_eq!(store.list_docs(&space, "", None, 10).unwrap(), Vec::<String>::new());
    let info = &store.list_spaces().unwrap()[0];
    assert_eq!((info.n_entries, info.n_docs), (2, 0));
    // The tombstone is still an entry that wins merges and syncs.
    assert_eq!(store.get_entry(&space, "d", "a").unwrap().unwrap().value, Value::Null);
}

#[test]
fn documents_list_by_prefix_with_pagination() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let other = store.create_space(&space_key(4), SpaceMode::Open).unwrap().space;
    for doc in ["users/a", "users/b", "users/b/address", "users/c", "usersx", "posts/1"] {
        store.write_json(&key(2), &space, doc, &json!({"v": 1})).unwrap();
    }
    store.write_json(&key(2), &other, "users/z", &json!({"v": 1})).unwrap();
    let first = store.list_docs(&space, "users/", None, 2).unwrap();
    assert_eq!(first, ["users/a", "users/b"]);
    let next = store.list_docs(&space, "users/", Some("users/b"), 10).unwrap();
    assert_eq!(next, ["users/b/address", "users/c"]);
    assert_eq!(store.list_docs(&space, "", None, 100).unwrap().len(), 6);
    let spaces = store.list_spaces().unwrap();
    assert_eq!(spaces.len(), 2);
    let mine = spaces.iter().find(|info| info.space == space).unwrap();
    assert_eq!((mine.n_entries, mine.n_docs, mine.mode), (6, 6, SpaceMode::Open));
}

#[test]
fn oversized_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut options, _) = options_at(NOW);
    options.max_value_size = 100;
    let store = Store::open(dir.path().join("s.redb"), options).unwrap();
    let space = open_space(&store, SpaceMode::Open);
    let error = store
        .write(&key(2), &space, "d", vec![("f".into(), Value::Bytes(vec![0; 100]))])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "value of field \"f\" is 105 bytes, more than the limit of 100 bytes"
    );
    let entry = Entry::sign(&key(2), space, "d", "f", Value::Bytes(vec![0; 200]), Hlc::new(NOW, 0))
        .unwrap();
    assert!(matches!(store.insert(entry), Err(Error::ValueTooLarge { .. })));
    assert_eq!(store.n_entries().unwrap(), 0);
}

// ---- change tracking ----

#[test]
fn changes_since_keeps_only_current_winners() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let author = key(2);
    store.write_json(&author, &space, "d", &json!({"a": 1, "b": 2})).unwrap();
    store.write_json(&author, &space, "d", &json!({"a": 3})).unwrap();
    let changes = store.changes_since(&space, 0, 10).unwrap();
    let summary: Vec<_> = changes.iter().map(|c| (c.seq, c.entry.field.as_str())).collect();
    assert_eq!(summary, [(2, "b"), (3, "a")]);
    assert_eq!(store.changes_since(&space, 2, 10).unwrap().len(), 1);
    assert_eq!(store.changes_since(&space, 0, 1).unwrap().len(), 1);
    assert!(store.changes_since(&key(9).public(), 0, 10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_switch_from_stored_to_live_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let writers = 3;
    let per_writer = 40;
    fn write(store: &Store, space: PublicKey, writer: u8, i: usize) {
        let batch = vec![(format!("f{i}"), Value::Int(i as i64))];
        store.write(&key(20 + writer), &space, &format!("w{writer}"), batch).unwrap();
    }
    // Some changes exist before the subscription starts.
    for i in 0..10 {
        write(&store, space, 0, 1000 + i);
    }
    let mut subscription = store.subscribe(&space, 3).unwrap();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            for i in 0..per_writer {
                write(&store, space, writer, i);
            }
        }));
    }
    let expected: Vec<u64> = (4..=10 + (writers as u64) * per_writer as u64).collect();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.len() < expected.len() {
            let change = subscription.next().await.unwrap().unwrap();
            seen.push(change.seq);
        }
    })
    .await
    .unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(seen, expected);
    // Outside a runtime, subscribing is an error, not a panic.
    let outside = std::thread::spawn({
        let store = store.clone();
        move || store.subscribe(&space, 0).map(drop)
    });
    assert!(matches!(outside.join().unwrap(), Err(Error::Task { .. })));
    // Nothing more arrives.
    let extra = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await;
    assert!(extra.is_err(), "unexpected change {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_too_slow_for_live_changes_reads_them_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let other = store.create_space(&space_key(2), SpaceMode::Open).unwrap().space;
    let author = key(2);
    let fields = |n: usize, tag: &str| -> Vec<(String, Value)> {
        (0..n).map(|i| (format!("{tag}{i}"), Value::Int(i as i64))).collect()
    };
    let seq_of = |written: Vec<Inserted>| match written[..] {
        [Inserted::Applied { seq }] => seq,
        _ => panic!("one applied field expected, not {written:?}"),
    };
    let mut subscription = store.subscribe(&space, 0).unwrap();
    // Caught up (nothing stored yet): from here on, changes come live.
    let first = seq_of(store.write(&author, &space, "d", fields(1, "first")).unwrap());
    let change = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await;
    assert_eq!(change.unwrap().unwrap().unwrap().seq, first);
    // Nothing more: the subscription has read the store to its end and now waits for
    // live changes.
    let nothing = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await;
    assert!(nothing.is_err(), "unexpected change {nothing:?}");
    // While nobody reads: a large commit, more commits than a live channel holds, some of
    // another space between them, and a few more after the overflow.
    store.write(&author, &space, "d", fields(5000, "a")).unwrap();
    store.write(&author, &other, "d", fields(10, "x")).unwrap();
    for i in 0..300 {
        store.write(&author, &space, "d", vec![(format!("c{i}"), Value::Int(i))]).unwrap();
    }
    store.write(&author, &space, "d", fields(3, "b")).unwrap();
    // Two fields superseded: the log keeps their latest change only.
    store.write(&author, &space, "d", fields(2, "a")).unwrap();
    let stored = store.changes_since(&space, first, usize::MAX).unwrap();
    let expected: Vec<u64> = stored.iter().map(|change| change.seq).collect();
    assert_eq!(expected.len(), 5303);
    // The changes of the commits the channel held come live (the first fields "a0", "a1"
    // among them, superseded since); the rest from the store, which keeps only the
    // latest change of each field.
    let mut seen: Vec<Change> = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.last().is_none_or(|change| change.seq < *expected.last().unwrap()) {
            let change = subscription.next().await.unwrap().unwrap();
            assert_eq!(change.entry.space, space);
            seen.push(change);
        }
    })
    .await
    .unwrap();
    // In order, without gap or duplicate: the overflow cost reads, not changes.
    assert!(seen.windows(2).all(|pair| pair[0].seq < pair[1].seq), "out of order");
    let seen_seqs: std::collections::BTreeSet<u64> = seen.iter().map(|c| c.seq).collect();
    let missing = expected.iter().filter(|seq| !seen_seqs.contains(seq)).count();
    assert_eq!(missing, 0, "{missing} changes never arrived");
    let extra: Vec<&str> = seen
        .iter()
        .filter(|change| !expected.contains(&change.seq))
        .map(|change| change.entry.field.as_str())
        .collect();
    assert_eq!(extra, ["a0", "a1"]);
    // And live again afterwards.
    let last = seq_of(store.write(&author, &space, "d", fields(1, "last")).unwrap());
    let change = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await;
    assert_eq!(change.unwrap().unwrap().unwrap().seq, last);
}

// ---- reconciliation ----

fn naive(items: &[ReconItem], lo: Option<&RangeKey>, hi: Option<&RangeKey>) -> Fingerprint {
    let mut fingerprint = Fingerprint::EMPTY;
    for item in items {
        let position = RangeKey { doc: item.doc.clone(), field: item.field.clone() };
        if lo.is_some_and(|lo| position < *lo) || hi.is_some_and(|hi| position >= *hi) {
            continue;
        }
        fingerprint.insert(&item.hash);
    }
    fingerprint
}

#[test]
fn fingerprints_from_aggregates_match_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let author = key(2);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    // 6,000 fields in a shuffled insertion order, then rewrites: enough for level-2 buckets
    // (one key in 4,096) and many level-1 ones.
    let mut keys: Vec<(String, String)> = (0..3000)
        .flat_map(|doc| [0, 1].map(|f| (format!("doc{doc:05}"), format!("f{f}"))))
        .collect();
    let permutation = Just(keys.clone()).prop_shuffle().new_tree(&mut runner).unwrap().current();
    keys = permutation;
    let entries: Vec<Entry> = keys
        .iter()
        .enumerate()
        .map(|(i, (doc, field))| {
            Entry::sign(
                &author,
                space,
                doc,
                field,
                Value::Int(i as i64),
                Hlc::new(NOW - 1000, i as u32),
            )
            .unwrap()
        })
        .collect();
    for chunk in entries.chunks(1000) {
        store.insert_batch(chunk.to_vec()).unwrap();
    }
    store.write_json(&author, &space, "doc00007", &json!({"f0": "rewritten", "f9": true})).unwrap();
    let items = store.recon_items(&space, None, None, usize::MAX).unwrap();
    assert_eq!(items.len(), 6001);
    assert!(
        items
            .windows(2)
            .all(|pair| (&pair[0].doc, &pair[0].field) < (&pair[1].doc, &pair[1].field))
    );
    assert_eq!(store.fingerprint(&space, None, None).unwrap(), naive(&items, None, None));
    let bounds = (0usize..=6001, 0usize..=6001);
    for _ in 0..200 {
        let (a, b) = bounds.new_tree(&mut runner).unwrap().current();
        let at = |i: usize| {
            items.get(i).map(|item| RangeKey { doc: item.doc.clone(), field: item.field.clone() })
        };
        let (lo, hi) = (at(a.min(b)), at(a.max(b)));
        let got = store.fingerprint(&space, lo.as_ref(), hi.as_ref()).unwrap();
        assert_eq!(got, naive(&items, lo.as_ref(), hi.as_ref()), "range {a}..{b}");
        if let (Some(lo), Some(hi)) = (&lo, &hi) {
            let listed = store.recon_items(&space, Some(lo), Some(hi), usize::MAX).unwrap();
            assert_eq!(listed.len() as u64, got.count);
        }
    }
    // Seeking by offset agrees with the sorted list, from any start.
    for _ in 0..100 {
        let (a, b) = bounds.new_tree(&mut runner).unwrap().current();
        let start =
            items.get(a).map(|item| RangeKey { doc: item.doc.clone(), field: item.field.clone() });
        let start = if a == 6001 { None } else { start };
        let base = if start.is_some() { a } else { 0 };
        let got = store.nth_item(&space, start.as_ref(), b as u64).unwrap();
        let expected = items
            .get(base + b)
            .map(|item| RangeKey { doc: item.doc.clone(), field: item.field.clone() });
        assert_eq!(got, expected, "start {a}, offset {b}");
    }
    assert_eq!(store.nth_item(&space, None, 6000).unwrap().unwrap().doc, "doc02999");
    assert_eq!(store.nth_item(&space, None, 6001).unwrap(), None);
    // Positions between items work too.
    let lo = RangeKey { doc: "doc001".into(), field: String::new() };
    let hi = RangeKey { doc: "doc002".into(), field: String::new() };
    let got = store.fingerprint(&space, Some(&lo), Some(&hi)).unwrap();
    assert_eq!(got.count, 200);
    assert_eq!(got, naive(&items, Some(&lo), Some(&hi)));
}

// ---- files and durability ----

#[test]
fn corrupt_or_foreign_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.redb");
    std::fs::write(&foreign, b"this is not a database, just some text that is long enough")
        .unwrap();
    let error = Store::open(&foreign, Options::default()).unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
    assert!(error.to_string().contains(&foreign.display().to_string()), "{error}");

    let damaged = dir.path().join("damaged.redb");
    let store = Store::open(&damaged, options_at(NOW).0).unwrap();
    let space = open_space(&store, SpaceMode::Open);
    store.write_json(&key(2), &space, "d", &json!({"a": 1})).unwrap();
    drop(store);
    let mut bytes = std::fs::read(&damaged).unwrap();
    for byte in bytes.iter_mut().take(512) {
        *byte ^= 0x5a;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let error = Store::open(&damaged, Options::default()).unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
    assert!(error.to_string().contains(&damaged.display().to_string()), "{error}");
}

#[test]
fn newer_schema_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(Store::open(&path, Options::default()).unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(crate::schema::META)
            .unwrap()
            .insert("schema_version", 9u64.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let error = Store::open(&path, Options::default()).unwrap_err();
    assert!(
        error.to_string().ends_with("has schema version 9, newer than the supported 3"),
        "{error}"
    );
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let error = Store::open(dir.path().join("store.redb"), Options::default()).unwrap_err();
    assert!(matches!(error, Error::AlreadyOpen { .. }), "{error:?}");
}

const KILL_WRITER_ENV: &str = "COSMIC_STORE_KILL_WRITER";

/// In the child: write entries forever from four threads at once (so that writers share
/// syncs), printing each acknowledged document and its number of fields.
fn kill_writer(path: &str) {
    let store = Store::open(path, Options::default()).unwrap();
    let space = store.create_space(&space_key(1), SpaceMode::Open).unwrap().space;
    let stdout = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let (store, stdout) = (&store, &stdout);
            scope.spawn(move || {
                for i in 0u64.. {
                    let doc = format!("d{thread}-{i}");
                    let value = Value::Int(i as i64);
                    // Alternate single durable writes and batches.
                    let fields = if i % 2 == 0 {
                        store.write(&key(2), &space, &doc, vec![("f".into(), value)]).unwrap();
                        1
                    } else {
                        let batch: Vec<Entry> = (0..20)
                            .map(|j| {
                                let field = format!("b{j}");
                                let hlc = Hlc::new(1, 0);
                                Entry::sign(&key(2), space, &doc, &field, value.clone(), hlc)
                                    .unwrap()
                            })
                            .collect();
                        store.insert_batch(batch).unwrap();
                        20
                    };
                    use std::io::Write as _;
                    let mut stdout = stdout.lock().unwrap();
                    writeln!(stdout, "ack {doc} {fields}").unwrap();
                    stdout.flush().unwrap();
                }
            });
        }
    });
}

/// Runs the test `test` of this binary again as a child process, with `env` set to
/// `path`: the child plays the writer, its stdout piped here.
fn spawn_writer(test: &str, env: &str, path: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILLs `child` and reaps it.
fn kill_9(child: &mut std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let Ok(path) = std::env::var(KILL_WRITER_ENV) {
        kill_writer(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut child =
        spawn_writer("tests::acknowledged_writes_survive_kill_9", KILL_WRITER_ENV, &path);
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::sync_channel(1024);
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(ack) = line.strip_prefix("ack ") {
                let (doc, fields) = ack.split_once(' ').unwrap();
                if sender.send((doc.to_owned(), fields.parse::<usize>().unwrap())).is_err() {
                    break;
                }
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 400 {
        acked
            .push(receiver.recv_timeout(Duration::from_secs(30)).expect("the writer acknowledges"));
    }
    kill_9(&mut child);
    reader.join().unwrap();
    acked.extend(receiver.try_iter());

    let store = Store::open(&path, Options::default()).unwrap();
    let space = space_key(1).id();
    for (name, fields) in &acked {
        let doc = store.get_doc(&space, name).unwrap();
        let doc = doc.unwrap_or_else(|| panic!("acknowledged write {name} is lost"));
        assert_eq!(doc.len(), *fields);
    }
    // The store is consistent and writable after the crash.
    let items = store.recon_items(&space, None, None, usize::MAX).unwrap();
    assert_eq!(store.fingerprint(&space, None, None).unwrap(), naive(&items, None, None));
    assert!(store.n_entries().unwrap() >= acked.len() as u64);
    store.write(&key(2), &space, "after", vec![("f".into(), Value::Bool(true))]).unwrap();
}

// ---- eventual durability ----

fn eventual() -> Options {
    Options { durability: Durability::Eventual, ..options_at(NOW).0 }
}

#[test]
fn eventual_writes_are_kept_by_a_clean_close_and_sequence_numbers_never_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = Store::open(&path, eventual()).unwrap();
    let space = open_space(&store, SpaceMode::Open);
    for i in 0..50 {
        store.write(&key(2), &space, &format!("d{i}"), vec![("f".into(), Value::Int(i))]).unwrap();
    }
    let last = store.last_seq();
    drop(store);

    let store = Store::open(&path, eventual()).unwrap();
    for i in 0..50 {
        assert!(store.get_doc(&space, &format!("d{i}")).unwrap().is_some(), "write {i} lost");
    }
    // A clean close hands back the unused reserved numbers: no gap.
    assert_eq!(store.last_seq(), last);
    store.write(&key(2), &space, "after", vec![("f".into(), Value::Bool(true))]).unwrap();
    assert!(store.last_seq() > last);
    store.flush().unwrap();
}

const EVENTUAL_WRITER_ENV: &str = "COSMIC_STORE_EVENTUAL_WRITER";

/// In the child: 40 writes, a pause longer than the flush interval, then writes forever;
/// each acknowledged one printed with its sequence number.
fn eventual_writer(path: &str) {
    use std::io::Write as _;
    let store = Store::open(path, eventual()).unwrap();
    let space = store.create_space(&space_key(1), SpaceMode::Open).unwrap().space;
    let mut stdout = std::io::stdout();
    for i in 0u64.. {
        store.write(&key(2), &space, &format!("d{i}"), vec![("f".into(), Value::Int(1))]).unwrap();
        writeln!(stdout, "ack {i} {}", store.last_seq()).unwrap();
        if i == 39 {
            std::thread::sleep(FLUSH_INTERVAL * 3);
            writeln!(stdout, "rested").unwrap();
        }
        stdout.flush().unwrap();
    }
}

#[test]
fn eventual_writes_older_than_the_flush_interval_survive_kill_9() {
    if let Ok(path) = std::env::var(EVENTUAL_WRITER_ENV) {
        eventual_writer(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let test = "tests::eventual_writes_older_than_the_flush_interval_survive_kill_9";
    let mut child = spawn_writer(test, EVENTUAL_WRITER_ENV, &path);
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    let mut rested = false;
    // Kill it some writes after the pause, in the middle of its stream of writes.
    while acked.len() < 200 {
        let line = lines.next().expect("the writer goes on").unwrap();
        if line == "rested" {
            rested = true;
        } else if let Some(rest) = line.strip_prefix("ack ") {
            let (i, seq) = rest.split_once(' ').unwrap();
            acked.push((i.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap(), rested));
        }
    }
    kill_9(&mut child);

    // The file opens cleanly; every write acknowledged before the pause is there.
    let store = Store::open(&path, eventual()).unwrap();
    let space = space_key(1).id();
    for (i, _, after_pause) in &acked {
        let held = store.get_doc(&space, &format!("d{i}")).unwrap().is_some();
        assert!(held || *after_pause, "write {i}, made before the pause, is lost");
    }
    let items = store.recon_items(&space, None, None, usize::MAX).unwrap();
    assert_eq!(store.fingerprint(&space, None, None).unwrap(), naive(&items, None, None));
    // No sequence number handed out before the crash is handed out again.
    let max_acked = acked.iter().map(|(_, seq, _)| *seq).max().unwrap();
    store.write(&key(2), &space, "after", vec![("f".into(), Value::Bool(true))]).unwrap();
    assert!(store.last_seq() > max_acked, "{} after {max_acked}", store.last_seq());
}

/// A storage backend that fails every write, sync and resize once its budget of such
/// operations is spent, like a disk that fills up or a device that fails.
#[derive(Debug)]
struct FailingBackend {
    inner: Arc<redb::backends::InMemoryBackend>,
    budget: Arc<AtomicI64>,
}

impl FailingBackend {
    fn spend(&self) -> std::io::Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        Ok(())
    }
}

impl StorageBackend for FailingBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.spend()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.spend()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.spend()?;
        self.inner.write(offset, data)
    }
}

#[test]
fn a_failing_disk_fails_the_write_and_loses_nothing_committed() {
    let label = Path::new("memory");
    let mut failures_seen = 0;
    for budget in (0..120).step_by(7) {
        let storage = Arc::new(redb::backends::InMemoryBackend::new());
        let unlimited = Arc::new(AtomicI64::new(i64::MAX));
        let backend = FailingBackend { inner: storage.clone(), budget: unlimited.clone() };
        let store = Store::open_with_backend(backend, label, options_at(NOW).0).unwrap();
        let space = open_space(&store, SpaceMode::Open);
        for i in 0..5 {
            store.write_json(&key(2), &space, &format!("before{i}"), &json!({"v": i})).unwrap();
        }
        // The disk fills up after `budget` more I/O operations.
        unlimited.store(budget, Ordering::SeqCst);
        let mut committed = 0;
        for i in 0..30 {
            match store.write_json(&key(2), &space, &format!("during{i}"), &json!({"v": i})) {
                Ok(_) => committed += 1,
                Err(error) => {
                    assert!(matches!(error, Error::Io { .. }), "{error:?}");
                    assert!(
                        error.to_string().starts_with("i/o error on database memory"),
                        "{error}"
                    );
                    failures_seen += 1;
                    break;
                }
            }
        }
        drop(store);
        // Space is freed: the database reopens (repairing if needed) with every write that
        // was acknowledged.
        let backend = FailingBackend { inner: storage, budget: Arc::new(AtomicI64::new(i64::MAX)) };
        let store = Store::open_with_backend(backend, label, options_at(NOW).0).unwrap();
        for i in 0..5 {
            assert!(
                store.get_doc(&space, &format!("before{i}")).unwrap().is_some(),
                "budget {budget}"
            );
        }
        for i in 0..committed {
            assert!(
                store.get_doc(&space, &format!("during{i}")).unwrap().is_some(),
                "budget {budget}"
            );
        }
        let items = store.recon_items(&space, None, None, usize::MAX).unwrap();
        assert_eq!(store.fingerprint(&space, None, None).unwrap(), naive(&items, None, None));
        assert_eq!(store.changes_since(&space, 0, 1000).unwrap().len(), items.len());
        store.write_json(&key(2), &space, "after", &json!({"v": 1})).unwrap();
    }
    assert!(failures_seen > 10, "only {failures_seen} budgets hit a failure");
}

#[test]
fn large_batches_check_signatures_in_parallel_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let entries: Vec<Entry> = (0..300)
        .map(|i| {
            let mut entry = Entry::sign(
                &key(2),
                space,
                &format!("d{i:03}"),
                "f",
                Value::Int(i),
                Hlc::new(NOW, 0),
            )
            .unwrap();
            if i % 37 == 5 {
                entry.value = Value::Int(-1);
            }
            entry
        })
        .collect();
    let results = store.insert_batch(entries).unwrap();
    assert_eq!(results.len(), 300);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.is_err(), i % 37 == 5, "entry {i}: {result:?}");
    }
    assert_eq!(store.n_entries().unwrap(), 300 - 8);
}

#[test]
fn the_store_is_shareable_across_threads() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Store>();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let clone = store.clone();
    std::thread::spawn(move || {
        clone.write(&key(2), &space, "d", vec![("f".into(), Value::Bool(true))]).unwrap();
    })
    .join()
    .unwrap();
    assert!(store.get_doc(&space, "d").unwrap().is_some());
}

/// Where the committed schema-v1 database lives; regenerate it (only when the format is
/// meant to change, with a migration) with `COSMIC_STORE_WRITE_V1_FIXTURE=1`.
const V1_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata/v1.redb");

fn fill_v1_fixture(store: &Store) {
    let space = open_space(store, SpaceMode::Restricted);
    store
        .insert_statement(&space_key(1).grant(key(2).public(), Right::Write, Timestamp(0), None))
        .unwrap();
    let object = json!({"name": "Alice", "age": 42, "address": {"city": "Lyon"}, "gone": null});
    store.write_json(&key(2), &space, "users/alice", &object).unwrap();
    store.write_json(&key(2), &space, "users/alice", &json!({"age": 43})).unwrap();
}

#[test]
fn a_schema_v1_database_still_opens() {
    if std::env::var_os("COSMIC_STORE_WRITE_V1_FIXTURE").is_some() {
        let _ = std::fs::remove_file(V1_FIXTURE);
        let store = Store::open(V1_FIXTURE, options_at(NOW).0).unwrap();
        fill_v1_fixture(&store);
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("v1.redb");
    std::fs::copy(V1_FIXTURE, &copy).unwrap();
    let old = Store::open(&copy, options_at(NOW).0).unwrap();
    let fresh = open(dir.path());
    fill_v1_fixture(&fresh);
    let space = space_key(1).id();
    assert_eq!(old.state_hash(&space).unwrap(), fresh.state_hash(&space).unwrap());
    assert_eq!(
        old.fingerprint(&space, None, None).unwrap(),
        fresh.fingerprint(&space, None, None).unwrap()
    );
    assert_eq!(
        old.changes_since(&space, 0, 100).unwrap(),
        fresh.changes_since(&space, 0, 100).unwrap()
    );
    assert_eq!(old.list_spaces().unwrap(), fresh.list_spaces().unwrap());
    assert_eq!(old.clock(), fresh.clock());
    let alice = old.get_json(&space, "users/alice", 1).unwrap().unwrap();
    assert_eq!(alice, json!({"name": "Alice", "age": 43, "address": {"city": "Lyon"}}));
    assert!(old.changes_since(&space, 0, 100).unwrap().iter().all(|c| c.origin == Origin::Local));
    old.write_json(&key(2), &space, "users/bob", &json!({"name": "Bob"})).unwrap();
    drop(old);
    // Reopened at the current schema version, it keeps reading.
    let again = Store::open(&copy, options_at(NOW).0).unwrap();
    assert!(again.get_doc(&space, "users/bob").unwrap().is_some());
}

#[test]
fn changes_record_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let peer = Origin::Peer("12D3KooWExamplePeer".into());
    store.write(&key(2), &space, "a", vec![("x".into(), Value::Int(1))]).unwrap();
    let entry = Entry::sign(&key(3), space, "b", "y", Value::Int(2), Hlc::new(NOW, 0)).unwrap();
    assert!(matches!(
        store.insert_from(entry.clone(), peer.clone()).unwrap(),
        Inserted::Applied { .. }
    ));
    let other = Entry::sign(&key(3), space, "c", "z", Value::Int(3), Hlc::new(NOW, 1)).unwrap();
    store.insert(other).unwrap();
    let origins: Vec<Origin> =
        store.changes_since(&space, 0, 10).unwrap().into_iter().map(|c| c.origin).collect();
    assert_eq!(origins, vec![Origin::Local, peer.clone(), Origin::Local]);
    // A later winner from another peer replaces the change and its origin.
    let newer = Entry::sign(&key(4), space, "b", "y", Value::Int(5), Hlc::new(NOW, 9)).unwrap();
    let second = Origin::Peer("12D3KooWSecond".into());
    store.insert_batch_from(vec![newer], second.clone()).unwrap();
    let last = store.changes_since(&space, 0, 10).unwrap().pop().unwrap();
    assert_eq!((last.entry.doc.as_str(), last.origin), ("b", second));
    // An origin that is too long is refused and writes nothing.
    let long = Origin::Peer("x".repeat(MAX_ORIGIN_LEN + 1));
    let entry = Entry::sign(&key(3), space, "d", "w", Value::Int(4), Hlc::new(NOW, 2)).unwrap();
    let error = store.insert_from(entry, long).unwrap_err();
    assert!(error.to_string().contains("origin peer id"), "{error}");
    assert!(store.get_doc(&space, "d").unwrap().is_none());
}

#[test]
fn an_in_memory_store_merges_like_a_file() {
    let store = Store::open_in_memory("memory", options_at(NOW).0).unwrap();
    let space = open_space(&store, SpaceMode::Open);
    store.write(&key(2), &space, "a", vec![("x".into(), Value::Int(1))]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = open(dir.path());
    open_space(&file, SpaceMode::Open);
    for change in store.changes_since(&space, 0, 10).unwrap() {
        file.insert(change.entry).unwrap();
    }
    assert_eq!(store.state_hash(&space).unwrap(), file.state_hash(&space).unwrap());
    assert_eq!(store.path(), Path::new("memory"));
}

#[test]
fn blob_links_are_indexed_by_space_as_winners_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = open(dir.path());
    let space = open_space(&store, SpaceMode::Open);
    let other = store.create_space(&space_key(7), SpaceMode::Open).unwrap().space;
    let cid = "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi";
    let link = Value::blob_link_str(cid).unwrap();
    let Value::BlobLink(bytes) = link.clone() else { unreachable!() };
    let set = |store: &Store, space: &PublicKey, doc: &str, value: Value| {
        store.write(&key(2), space, doc, vec![("file".into(), value)]).unwrap();
    };
    assert!(store.blob_link_spaces(&bytes).unwrap().is_empty());
    set(&store, &space, "a", link.clone());
    set(&store, &space, "b", link.clone());
    set(&store, &other, "c", link.clone());
    let mut both = vec![space, other];
    both.sort();
    assert_eq!(store.blob_link_spaces(&bytes).unwrap(), both);
    // Overwritten in one document of `space`: still linked there by the other.
    set(&store, &space, "a", Value::Int(1));
    assert_eq!(store.blob_link_spaces(&bytes).unwrap(), both);
    // Deleted there too: linked from `other` only; a superseded older link changes nothing.
    set(&store, &space, "b", Value::Null);
    let stale = Entry::sign(&key(3), space, "b", "file", link.clone(), Hlc::new(1, 0)).unwrap();
    assert!(matches!(store.insert(stale).unwrap(), Inserted::Superseded));
    assert_eq!(store.blob_link_spaces(&bytes).unwrap(), vec![other]);

    // A schema-2 file has no indexes: opening it builds them from the winning entries.
    let usage = |store: &Store| store.author_usage(&other, &key(2).public()).unwrap();
    let used = usage(&store);
    assert!(used > 0);
    drop(store);
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(schema::BLOB_LINKS).unwrap();
        txn.delete_table(schema::AUTHOR_BYTES).unwrap();
        let mut meta = txn.open_table(schema::META).unwrap();
        meta.insert("schema_version", 2u64.to_be_bytes().as_slice()).unwrap();
        drop(meta);
        txn.commit().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.blob_link_spaces(&bytes).unwrap(), vec![other]);
    assert_eq!(usage(&store), used, "the migration counts every author's bytes again");
    set(&store, &space, "d", link);
    assert_eq!(store.blob_link_spaces(&bytes).unwrap(), both);
}

#[test]
fn an_author_over_its_quota_in_an_open_space_is_refused_and_may_still_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options_at(NOW).0;
    options.author_quota = 2_000;
    let store = Store::open(dir.path().join("store.redb"), options).unwrap();
    let space = open_space(&store, SpaceMode::Open);
    let big = Value::String("x".repeat(400));
    let put = |author: u8, doc: &str, value: Value| {
        store.write(&key(author), &space, doc, vec![("f".into(), value)])
    };
    let mut written = 0;
    let error = loop {
        match put(2, &format!("d{written}"), big.clone()) {
            Ok(_) => written += 1,
            Err(error) => break error,
        }
        assert!(written < 10, "the quota never bit");
    };
    assert!(matches!(error, Error::QuotaExceeded { limit: 2_000, .. }), "{error}");
    assert!(error.to_string().contains("over its quota of 2000 bytes"), "{error}");
    assert!(store.get_doc(&space, &format!("d{written}")).unwrap().is_none(), "stored anyway");
    let used = store.author_usage(&space, &key(2).public()).unwrap();
    assert!(used <= 2_000 && used > 1_500, "{used}");
    // Another author is not held back; a smaller value or a deletion passes, and the
    // bytes they free can be used again.
    put(3, "other", big.clone()).unwrap();
    put(2, "d0", Value::Int(1)).unwrap();
    put(2, "d1", Value::Null).unwrap();
    assert!(store.author_usage(&space, &key(2).public()).unwrap() < used);
    put(2, &format!("d{written}"), big.clone()).unwrap();
    let mut more = 0;
    while put(2, &format!("more{more}"), big.clone()).is_ok() {
        more += 1;
        assert!(more < 10, "the quota never bit again");
    }
    assert_eq!(store.refusals().quota, 0, "local writes are not refusals from elsewhere");
    // From elsewhere: refused the same way, and counted.
    let entry = Entry::sign(&key(2), space, "late", "f", big.clone(), Hlc::new(NOW, 99)).unwrap();
    let error = store.insert_from(entry, Origin::Peer("12D3KooWPeer".into())).unwrap_err();
    assert!(matches!(error, Error::QuotaExceeded { .. }), "{error}");
    assert_eq!(store.refusals().quota, 1);
    // Restricted spaces have no quota: who writes there is granted.
    let restricted = store.create_space(&space_key(7), SpaceMode::Restricted).unwrap().space;
    let grant = space_key(7).grant(key(2).public(), Right::Write, Timestamp(0), None);
    store.insert_statement(&grant).unwrap();
    for doc in 0..10 {
        let fields = vec![("f".into(), big.clone())];
        store.write(&key(2), &restricted, &format!("r{doc}"), fields).unwrap();
    }
}
