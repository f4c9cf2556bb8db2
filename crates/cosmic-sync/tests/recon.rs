//! Reconciliation between two real stores in lockstep, and the wire formats' limits.

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use cosmic_auth::{AuthorKey, PublicKey, Right, SignedStatement, SpaceKey, SpaceMode, Timestamp};
use cosmic_store::{Entry, Fingerprint, Hlc, Options, Origin, RangeKey, Store, Value};
use cosmic_sync::recon::{self, Limits, Opening, Session};
use cosmic_sync::wire::{self, Message, Part, Range, WireError};

const LIMIT: usize = 4 * 1024 * 1024;
const NOW: u64 = 1_780_000_000_000;

fn store(name: &str) -> Store {
    let options = Options {
        max_clock_drift: std::time::Duration::from_secs(u64::MAX / 4_000),
        ..Options::default()
    };
    Store::open_in_memory(name, options).unwrap()
}

fn entries(
    space: PublicKey,
    author: &AuthorKey,
    range: std::ops::Range<u32>,
    tag: i64,
) -> Vec<Entry> {
    range
        .map(|n| {
            let doc = format!("docs/{:06}", n / 4);
            let field = format!("f{}", n % 4);
            Entry::sign(author, space, &doc, &field, Value::Int(tag), Hlc::new(NOW, n)).unwrap()
        })
        .collect()
}

#[derive(Debug, Default)]
struct Totals {
    rounds: u64,
    bytes: u64,
    entries: u64,
}

/// Runs one session from `a` to `b` through the wire encoding; returns its totals.
fn reconcile(a: &Store, b: &Store, space: PublicKey, limits: Limits) -> Totals {
    reconcile_opening(a, b, space, limits, Opening::Split)
}

/// [`reconcile`], the session opening as `opening` says.
fn reconcile_opening(
    a: &Store,
    b: &Store,
    space: PublicKey,
    limits: Limits,
    opening: Opening,
) -> Totals {
    let (mut session, mut message) = Session::start_with(a, space, limits, 1000, opening).unwrap();
    let mut totals = Totals::default();
    loop {
        let bytes = message.encode(LIMIT).unwrap();
        totals.bytes += bytes.len() as u64;
        let request = Message::decode(&bytes, LIMIT).unwrap();
        let (reply, step) =
            recon::respond(b, &request, &Origin::Peer("a".into()), &limits).unwrap();
        assert!(step.rejected.is_empty(), "{:?}", step.rejected);
        let bytes = reply.encode(LIMIT).unwrap();
        totals.bytes += bytes.len() as u64;
        totals.entries += step.entries_received + step.entries_sent;
        let reply = Message::decode(&bytes, LIMIT).unwrap();
        let (next, step) = session.on_reply(a, &reply, &Origin::Peer("b".into())).unwrap();
        totals.entries += step.entries_received;
        match next {
            Some(next) => message = next,
            None => break,
        }
    }
    assert!(session.converged());
    totals.rounds = session.rounds();
    totals
}

/// Two stores holding `n` shared entries, each with `d / 2` entries the other lacks or
/// holds differently.
fn pair(n: u32, d: u32) -> (Store, Store, PublicKey) {
    let (a, b) = (store("a"), store("b"));
    let space = a.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    b.insert_space_record(&a.space_record(&space).unwrap().unwrap()).unwrap();
    let author = AuthorKey::generate();
    let shared = entries(space, &author, 0..n, 0);
    a.insert_batch(shared.clone()).unwrap();
    b.insert_batch(shared).unwrap();
    // Differences spread over the key space: new fields on each side, and updates.
    let step = (n / d.max(1)).max(1);
    for i in 0..d {
        let at = (i * step) % n;
        let entry = Entry::sign(
            &author,
            space,
            &format!("docs/{:06}", at / 4),
            &format!("f{}", at % 4),
            Value::Int(i64::from(i) + 1),
            Hlc::new(NOW + 1, i),
        )
        .unwrap();
        if i % 2 == 0 {
            a.insert(entry).unwrap();
        } else {
            b.insert(entry).unwrap();
        }
    }
    (a, b, space)
}

#[test]
fn two_stores_converge_to_the_same_winners() {
    let (a, b, space) = pair(2_000, 50);
    assert_ne!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
    let totals = reconcile(&a, &b, space, Limits::default());
    assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
    assert!(totals.entries >= 50, "{totals:?}");
    // A second session finds nothing to do, in one round.
    let again = reconcile(&a, &b, space, Limits::default());
    assert_eq!((again.rounds, again.entries), (1, 0));
}

/// The initiator splits at once, and the first split is wide enough for two more to reach
/// listings: split, split, split and list, entries and wants, entries: three rounds.
#[test]
fn a_few_differences_settle_in_three_rounds_and_equal_stores_in_one() {
    // Small limits, so that a small store needs a wide first split: two splits of 4 take
    // 64 items to listings of 4; 5,000 items take a first split of 79.
    let limits = Limits { max_items: 4, branches: 4, budget: 1024 * 1024 };
    assert_eq!(limits.branches_for(5_000), 79);
    assert_eq!(limits.branches_for(64), 4);
    let (a, b, space) = pair(5_000, 6);
    let totals = reconcile(&a, &b, space, limits);
    assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
    assert_eq!(totals.rounds, 3, "{totals:?}");
    let again = reconcile(&a, &b, space, limits);
    assert_eq!((again.rounds, again.entries), (1, 0), "{again:?}");
    // With the default limits, the first split of 1,000,000 items is 123 parts of
    // 8,131: two splits of 16 then leave listings of at most 32.
    assert_eq!(Limits::default().branches_for(1_000_000), 123);
    assert_eq!(Limits::default().branches_for(100), 16);
}

/// Opening with the whole space's fingerprint costs one round more when the stores differ
/// and far fewer bytes when they do not.
#[test]
fn opening_with_the_whole_fingerprint_trades_a_round_for_bytes() {
    let limits = Limits { max_items: 4, branches: 4, budget: 1024 * 1024 };
    let (a, b, space) = pair(5_000, 6);
    let whole = reconcile_opening(&a, &b, space, limits, Opening::Whole);
    assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
    assert_eq!(whole.rounds, 4, "{whole:?}");
    let equal_split = reconcile_opening(&a, &b, space, limits, Opening::Split);
    let equal_whole = reconcile_opening(&a, &b, space, limits, Opening::Whole);
    assert_eq!((equal_split.rounds, equal_whole.rounds), (1, 1));
    assert!(equal_whole.bytes * 4 < equal_split.bytes, "{equal_whole:?} {equal_split:?}");
}

#[test]
fn bytes_grow_with_differences_times_log_n_not_with_n() {
    let limits = Limits::default();
    let (a, b, space) = pair(4_000, 10);
    let small = reconcile(&a, &b, space, limits);
    let (a, b, space) = pair(64_000, 10);
    let large = reconcile(&a, &b, space, limits);
    assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
    // 16 times the items: one more level of splitting, not 16 times the bytes.
    assert!(large.bytes < small.bytes * 3, "small {small:?} large {large:?}");
    // And far less than sending the items: 64,000 hashes alone are 2 MB.
    assert!(large.bytes < 200_000, "{large:?}");
}

#[test]
fn a_new_peer_catches_up_completely_within_the_message_budget() {
    let a = store("a");
    let b = store("b"); // knows nothing, not even the space record
    let space = a.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    a.insert_batch(entries(space, &AuthorKey::generate(), 0..5_000, 7)).unwrap();
    let limits = Limits { budget: 64 * 1024, ..Limits::default() };
    let totals = reconcile(&b, &a, space, limits);
    assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
    assert!(totals.rounds > 3, "a 64 KiB budget needs several rounds: {totals:?}");
}

/// A peer that holds nothing of a range is handed the range's entries at once: no
/// splitting and listing first, so catching up takes one round per message budget of
/// entries, and hardly a byte more than the entries; whichever side starts.
#[test]
fn a_peer_with_nothing_is_handed_whole_ranges() {
    let limits = Limits { budget: 64 * 1024, ..Limits::default() };
    for empty_side_starts in [true, false] {
        let (a, b) = (store("a"), store("b"));
        let space = a.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
        let written = entries(space, &AuthorKey::generate(), 0..5_000, 7);
        let size: usize = written.iter().map(|entry| entry.encode().len()).sum();
        a.insert_batch(written).unwrap();
        let totals = if empty_side_starts {
            reconcile(&b, &a, space, limits)
        } else {
            reconcile(&a, &b, space, limits)
        };
        assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
        assert_eq!(b.n_entries().unwrap(), 5_000);
        let budgets = size.div_ceil(limits.budget) as u64;
        assert!(totals.rounds <= budgets + 2, "{budgets} budgets of entries: {totals:?}");
        assert!(totals.bytes < size as u64 * 21 / 20, "{size} bytes of entries: {totals:?}");
    }
}

#[test]
fn invalid_entries_in_a_reconciliation_are_refused_and_reported() {
    let (a, b) = (store("a"), store("b"));
    let space = a.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    b.insert_space_record(&a.space_record(&space).unwrap().unwrap()).unwrap();
    let mut forged = entries(space, &AuthorKey::generate(), 0..1, 1).remove(0);
    forged.value = Value::Int(666);
    let other_space = SpaceKey::generate().id();
    let foreign = entries(other_space, &AuthorKey::generate(), 0..1, 1).remove(0);
    let message = Message {
        space,
        parts: vec![
            Part::Entry(forged.encode()),
            Part::Entry(foreign.encode()),
            Part::Entry(vec![1, 2, 3]),
        ],
    };
    let (_, step) =
        recon::respond(&b, &message, &Origin::Peer("x".into()), &Limits::default()).unwrap();
    assert_eq!(step.entries_received, 3);
    assert_eq!(step.entries_applied, 0);
    assert_eq!(step.rejected.len(), 3, "{:?}", step.rejected);
    assert!(b.recon_items(&space, None, None, 10).unwrap().is_empty());
}

/// A restricted space on a fresh store `a` with the chain space key -> admin -> deputy
/// (admin) -> writer (write) and entries by the writer; `b` holds only the record.
fn restricted_chain() -> (Store, Store, PublicKey, Vec<SignedStatement>) {
    let (a, b) = (store("a"), store("b"));
    let space_key = SpaceKey::generate();
    let space = a.create_space(&space_key, SpaceMode::Restricted).unwrap().space;
    b.insert_space_record(&a.space_record(&space).unwrap().unwrap()).unwrap();
    let (admin, deputy, writer) =
        (AuthorKey::generate(), AuthorKey::generate(), AuthorKey::generate());
    let chain = vec![
        space_key.grant(admin.public(), Right::Admin, Timestamp(1), None),
        admin.grant(space, deputy.public(), Right::Admin, Timestamp(2), None),
        deputy.grant(space, writer.public(), Right::Write, Timestamp(3), None),
    ];
    for statement in &chain {
        a.insert_statement(statement).unwrap();
    }
    a.insert_batch(entries(space, &writer, 0..8, 1)).unwrap();
    (a, b, space, chain)
}

fn space_message(space: PublicKey, record: &Store, statements: &[SignedStatement]) -> Message {
    let record = record.space_record(&space).unwrap().unwrap().encode();
    let statements = statements.iter().map(SignedStatement::to_bytes).collect();
    Message { space, parts: vec![Part::Space { record, statements }] }
}

#[test]
fn a_chain_delivered_in_reverse_order_across_two_sessions_ends_up_complete() {
    let (a, b, space, chain) = restricted_chain();
    // First session: only the lower links arrive, last first (from a peer that had the
    // rest to give but did not). Neither issuer is an admin yet, so nothing is kept.
    let tail: Vec<SignedStatement> = chain[1..].iter().rev().cloned().collect();
    let (_, step) = recon::respond(
        &b,
        &space_message(space, &a, &tail),
        &Origin::Peer("a".into()),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(step.rejected.len(), 2, "{:?}", step.rejected);
    assert!(
        step.rejected.iter().all(|reason| reason.contains("may not issue")),
        "{:?}",
        step.rejected
    );
    assert!(b.statements(&space).unwrap().is_empty());
    // Second session: the statements differ, so all of them cross again, and the whole
    // chain (in hash order) is taken in one batch, with the writer's entries.
    reconcile(&a, &b, space, Limits::default());
    assert_eq!(b.statements(&space).unwrap().len(), 3);
    assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
}

/// The space parts of a session's messages: (sent by the opener, sent by the answerer),
/// each counted by kind, and how many rounds it took.
fn space_traffic(a: &Store, b: &Store, space: PublicKey) -> ((usize, usize), u64) {
    let limits = Limits::default();
    let (mut session, mut message) = Session::start(a, space, limits, 100).unwrap();
    let (mut from_a, mut from_b) = (0, 0);
    let is_space = |part: &Part| matches!(part, Part::Space { .. });
    loop {
        from_a += message.parts.iter().filter(|part| is_space(part)).count();
        let origin = Origin::Peer("a".into());
        let (reply, _) = recon::respond(b, &message, &origin, &limits).unwrap();
        from_b += reply.parts.iter().filter(|part| is_space(part)).count();
        let (next, _) = session.on_reply(a, &reply, &Origin::Peer("b".into())).unwrap();
        match next {
            Some(next) => message = next,
            None => return ((from_a, from_b), session.rounds()),
        }
    }
}

#[test]
fn statements_cross_only_when_the_two_sides_hold_different_ones() {
    let (a, b, space, chain) = restricted_chain();
    // b lacks the chain: a's opening digest differs, so b sends its own record and asks for
    // a's, which comes in the next message with the entries.
    assert_eq!(space_traffic(&a, &b, space).0, (1, 1));
    assert_eq!(b.statements(&space).unwrap().len(), chain.len());
    assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
    // Now they agree: no record or statement crosses either way, in one round.
    assert_eq!(space_traffic(&a, &b, space), ((0, 0), 1));
    assert_eq!(space_traffic(&b, &a, space), ((0, 0), 1));
    // A statement only the answerer holds: it sends its own and asks for the opener's;
    // then both hold it.
    let (a, b) = (store("a2"), store("b2"));
    let space_key = SpaceKey::generate();
    let space = a.create_space(&space_key, SpaceMode::Restricted).unwrap().space;
    b.insert_space_record(&a.space_record(&space).unwrap().unwrap()).unwrap();
    let first = space_key.grant(AuthorKey::generate().public(), Right::Read, Timestamp(1), None);
    for store in [&a, &b] {
        store.insert_statement(&first).unwrap();
    }
    let only_b = space_key.grant(AuthorKey::generate().public(), Right::Read, Timestamp(2), None);
    b.insert_statement(&only_b).unwrap();
    let ((from_a, from_b), rounds) = space_traffic(&a, &b, space);
    assert_eq!((from_a, from_b, rounds), (1, 1, 2), "one round more for the statements");
    assert_eq!(a.statements(&space).unwrap().len(), 2);
    assert_eq!(space_traffic(&a, &b, space), ((0, 0), 1));
}

#[test]
fn one_batch_takes_a_whole_chain_listed_backwards() {
    let (a, b, space, mut chain) = restricted_chain();
    chain.reverse();
    let (_, step) = recon::respond(
        &b,
        &space_message(space, &a, &chain),
        &Origin::Peer("a".into()),
        &Limits::default(),
    )
    .unwrap();
    assert!(step.rejected.is_empty(), "{:?}", step.rejected);
    assert_eq!(b.statements(&space).unwrap().len(), 3);
    // Only the entries were left to send.
    let totals = reconcile(&a, &b, space, Limits::default());
    assert_eq!(totals.entries, 8, "{totals:?}");
    assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
}

#[test]
fn every_part_round_trips() {
    let space = SpaceKey::generate().id();
    let key = RangeKey { doc: "users/alice".into(), field: "name".into() };
    let entry = entries(space, &AuthorKey::generate(), 0..1, 1).remove(0);
    let message = Message {
        space,
        parts: vec![
            Part::Space { record: vec![1, 2, 3], statements: vec![vec![4], vec![5, 6]] },
            // A message carries the first 12 bytes of a sum (wire::RUN_SUM_LEN).
            Part::Fingerprint(Range::ALL, Fingerprint { sum: carried([7; 32]), count: 9 }),
            Part::Items(
                Range { lower: Some(key.clone()), upper: None },
                vec![(key.clone(), [8; 32])],
            ),
            Part::Want(key.clone()),
            Part::Hashes(Range { lower: None, upper: Some(key.clone()) }, vec![[1; 8], [2; 8]]),
            Part::WantHashes(Range { lower: Some(key), upper: None }, vec![[2; 8]]),
            Part::Hashes(Range::ALL, vec![]),
            Part::Entry(entry.encode()),
            Part::Clock(1_780_000_000_123),
            Part::SpaceDigest([3; 16]),
            Part::WantSpace,
        ],
    };
    let bytes = message.encode(LIMIT).unwrap();
    assert_eq!(bytes.len(), message.encoded_len());
    assert_eq!(Message::decode(&bytes, LIMIT).unwrap(), message);
    let single = wire::decode_gossip(&wire::encode_gossip(&entry), LIMIT).unwrap();
    assert_eq!(single, wire::Gossip { sequence: None, entries: vec![entry.clone()] });
}

#[test]
fn gossip_batches_round_trip_and_a_bad_batch_is_refused_whole() {
    let store = Store::open_in_memory("a", Options::default()).unwrap();
    let space = store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    let author = AuthorKey::generate();
    let entries: Vec<Entry> = (0..3)
        .map(|n| {
            Entry::sign(&author, space, "doc", &format!("f{n}"), Value::Int(n), Hlc::new(1, 0))
                .unwrap()
        })
        .collect();
    let encoded: Vec<Vec<u8>> = entries.iter().map(Entry::encode).collect();
    let sequence = wire::Sequence { stream: 7, seq: 42 };
    let bytes = wire::encode_gossip_batch(sequence, &encoded);
    let expected_len = wire::GOSSIP_BATCH_HEADER
        + encoded.iter().map(|e| e.len() + wire::GOSSIP_BATCH_PER_ENTRY).sum::<usize>();
    assert_eq!(bytes.len(), expected_len, "the framing constants tell the true size");
    let gossip = wire::decode_gossip(&bytes, LIMIT).unwrap();
    assert_eq!(gossip, wire::Gossip { sequence: Some(sequence), entries: entries.clone() });

    // Over the limit: refused before any entry is read.
    let error = wire::decode_gossip(&bytes, bytes.len() - 1).unwrap_err();
    assert!(matches!(error, WireError::TooLarge { .. }), "{error}");
    // One damaged entry makes the whole batch malformed, naming the entry.
    let mut damaged = encoded.clone();
    damaged[1][0] ^= 0xff;
    let error =
        wire::decode_gossip(&wire::encode_gossip_batch(sequence, &damaged), LIMIT).unwrap_err();
    assert!(error.to_string().contains("entry 1 of the batch"), "{error}");
    // A count that cannot fit, an empty batch, number 0 and trailing bytes.
    let mut lying = bytes[..18].to_vec();
    lying.extend_from_slice(&u32::MAX.to_be_bytes());
    let error = wire::decode_gossip(&lying, LIMIT).unwrap_err();
    assert!(error.to_string().contains("cannot fit"), "{error}");
    let empty = wire::encode_gossip_batch(sequence, &[]);
    let error = wire::decode_gossip(&empty, LIMIT).unwrap_err();
    assert!(error.to_string().contains("no entries"), "{error}");
    let zero = wire::encode_gossip_batch(wire::Sequence { stream: 7, seq: 0 }, &encoded);
    let error = wire::decode_gossip(&zero, LIMIT).unwrap_err();
    assert!(error.to_string().contains("number 0"), "{error}");
    let mut trailing = bytes.clone();
    trailing.push(0);
    let error = wire::decode_gossip(&trailing, LIMIT).unwrap_err();
    assert!(error.to_string().contains("after the last entry"), "{error}");
}

#[test]
fn bad_bytes_get_clear_errors() {
    let space = SpaceKey::generate().id();
    let message =
        Message { space, parts: vec![Part::Want(RangeKey { doc: "d".into(), field: "f".into() })] };
    let bytes = message.encode(LIMIT).unwrap();

    let error = Message::decode(&bytes, 10).unwrap_err();
    assert!(matches!(error, WireError::TooLarge { .. }), "{error}");
    assert!(matches!(message.encode(10), Err(WireError::TooLarge { .. })));

    let mut wrong_version = bytes.clone();
    wrong_version[0] = 9;
    let error = Message::decode(&wrong_version, LIMIT).unwrap_err();
    assert_eq!(
        error.to_string(),
        "reconciliation message has version 9, this node reads version 1"
    );

    let error = Message::decode(&bytes[..bytes.len() - 1], LIMIT).unwrap_err();
    assert!(error.to_string().contains("truncated"), "{error}");

    let mut trailing = bytes.clone();
    trailing.push(0);
    let error = Message::decode(&trailing, LIMIT).unwrap_err();
    assert!(error.to_string().contains("1 trailing bytes"), "{error}");

    let mut lying = bytes[..33].to_vec();
    lying.extend_from_slice(&u32::MAX.to_be_bytes());
    let error = Message::decode(&lying, LIMIT).unwrap_err();
    assert!(error.to_string().contains("cannot fit"), "{error}");

    // A listing of hashes (part 9) that claims more than the message holds.
    let listing = Message { space, parts: vec![Part::Hashes(Range::ALL, vec![[1; 8], [2; 8]])] };
    let mut lying = listing.encode(LIMIT).unwrap();
    assert_eq!(lying[37..40], [9, 0, 0], "part 9, two open bounds");
    lying[40] = 3;
    let error = Message::decode(&lying, LIMIT).unwrap_err();
    assert_eq!(error.to_string(), "malformed reconciliation message: 3 hashes cannot fit");

    let mut unknown = bytes.clone();
    unknown[37] = 42;
    let error = Message::decode(&unknown, LIMIT).unwrap_err();
    assert!(error.to_string().contains("unknown part 42"), "{error}");

    for (bytes, expected) in [
        (vec![], "malformed gossip message: empty"),
        (vec![2, 1], "gossip message has version 2, this node reads version 1"),
        (vec![1, 7], "malformed gossip message: unknown kind 7"),
    ] {
        assert_eq!(wire::decode_gossip(&bytes, LIMIT).unwrap_err().to_string(), expected);
    }
    let error = wire::decode_gossip(&[1, 1, 0], LIMIT).unwrap_err();
    assert!(error.to_string().starts_with("malformed gossip message: "), "{error}");
    let error = wire::decode_gossip(&[1; 100], 50).unwrap_err();
    assert_eq!(error.to_string(), "gossip message of 100 bytes is over the limit of 50 bytes");
}

/// `sum` as a message carries it: its first `wire::RUN_SUM_LEN` bytes, zero after.
fn carried(sum: [u8; 32]) -> [u8; 32] {
    let mut out = [0; 32];
    out[..wire::RUN_SUM_LEN].copy_from_slice(&sum[..wire::RUN_SUM_LEN]);
    out
}

/// The size of a part as older nodes wrote it (parts 2 and 3): full bounds and keys, a
/// 64-bit count.
fn old_len(part: &Part) -> usize {
    let key = |key: &RangeKey| 4 + key.doc.len() + key.field.len();
    let bound = |bound: &Option<RangeKey>| 1 + bound.as_ref().map_or(0, key);
    match part {
        Part::Fingerprint(range, _) => 1 + bound(&range.lower) + bound(&range.upper) + 40,
        Part::Items(range, items) => {
            1 + bound(&range.lower)
                + bound(&range.upper)
                + 4
                + items.iter().map(|(k, _)| key(k) + 32).sum::<usize>()
        }
        _ => unreachable!(),
    }
}

/// A split's fingerprints travel as one run that sends each bound once, and listed keys as
/// the bytes they share with the key before: what they say decodes unchanged, in far fewer
/// bytes than one part each with full keys.
#[test]
fn runs_of_fingerprints_and_listed_keys_are_compressed_and_decode_unchanged() {
    let space = SpaceKey::generate().id();
    let key = |n: u32| RangeKey { doc: format!("docs/{:06}", n / 4), field: format!("f{}", n % 4) };
    let mut bounds = vec![None];
    bounds.extend((1..16).map(|n| Some(key(n * 62_500))));
    bounds.push(None);
    let split: Vec<Part> = bounds
        .windows(2)
        .enumerate()
        .map(|(n, pair)| {
            let range = Range { lower: pair[0].clone(), upper: pair[1].clone() };
            Part::Fingerprint(range, Fingerprint { sum: carried([n as u8; 32]), count: 62_500 })
        })
        .collect();
    let listing = Part::Items(
        Range { lower: Some(key(100)), upper: Some(key(132)) },
        (100..132).map(|n| (key(n), [n as u8; 32])).collect(),
    );
    // A fingerprint that does not follow on from the one before starts a run of its own.
    let apart = Part::Fingerprint(
        Range { lower: Some(key(5)), upper: Some(key(6)) },
        Fingerprint { sum: carried([1; 32]), count: 1 },
    );
    let mut parts = split.clone();
    parts.extend([apart.clone(), listing.clone(), apart]);
    let message = Message { space, parts };
    let bytes = message.encode(LIMIT).unwrap();
    assert_eq!(bytes.len(), message.encoded_len());
    assert_eq!(Message::decode(&bytes, LIMIT).unwrap(), message);
    let size = |parts: Vec<Part>| Message { space, parts }.encode(LIMIT).unwrap().len() - 37;
    let old_split: usize = split.iter().map(old_len).sum();
    let new_split = size(split);
    assert!(
        new_split * 10 < old_split * 6,
        "a split: {new_split} bytes, one part each {old_split}"
    );
    let old_listing = old_len(&listing);
    let new_listing = size(vec![listing]);
    assert!(new_listing * 10 < old_listing * 8, "{new_listing} bytes, full keys {old_listing}");
}

/// Entries of the message's space travel without their space id (part 12), and come out
/// whole; an entry of another space keeps it (part 5), and is refused as before.
#[test]
fn entries_travel_without_the_space_id_the_message_names() {
    let space = SpaceKey::generate().id();
    let author = AuthorKey::generate();
    let ours = entries(space, &author, 0..1, 1).remove(0).encode();
    let theirs = entries(SpaceKey::generate().id(), &author, 0..1, 1).remove(0).encode();
    let size = |entry: &Vec<u8>| {
        let message = Message { space, parts: vec![Part::Entry(entry.clone())] };
        let bytes = message.encode(LIMIT).unwrap();
        assert_eq!(Message::decode(&bytes, LIMIT).unwrap(), message);
        bytes.len() - 37
    };
    assert_eq!(size(&ours), 1 + 2 + ours.len() - 32, "tag, length, entry without its space");
    assert_eq!(size(&theirs), 1 + 4 + theirs.len());
}

/// What older nodes wrote (a fingerprint and a listing each in its own part, with full
/// keys) still reads.
#[test]
fn parts_as_older_nodes_wrote_them_still_decode() {
    let space = SpaceKey::generate().id();
    let mut bytes = vec![1];
    bytes.extend_from_slice(space.as_bytes());
    bytes.extend_from_slice(&2u32.to_be_bytes());
    bytes.extend_from_slice(&[2, 0, 0]);
    bytes.extend_from_slice(&[7; 32]);
    bytes.extend_from_slice(&9u64.to_be_bytes());
    bytes.extend_from_slice(&[3, 0, 0]);
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&[0, 1, b'd', 0, 1, b'f']);
    bytes.extend_from_slice(&[8; 32]);
    let key = RangeKey { doc: "d".into(), field: "f".into() };
    assert_eq!(
        Message::decode(&bytes, LIMIT).unwrap().parts,
        vec![
            // Part 2 carries the whole sum; only the bytes every part carries are kept.
            Part::Fingerprint(Range::ALL, Fingerprint { sum: carried([7; 32]), count: 9 }),
            Part::Items(Range::ALL, vec![(key.clone(), [8; 32])]),
        ]
    );
    // A run as the version before wrote it (part 7): tagged bounds, 16 bytes of each sum.
    let mut bytes = vec![1];
    bytes.extend_from_slice(space.as_bytes());
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&[7, 0, 2, 1, 0, 1, b'd', 1, b'f']);
    bytes.extend_from_slice(&[5; 16]);
    bytes.extend_from_slice(&[3, 0]);
    bytes.extend_from_slice(&[6; 16]);
    bytes.push(4);
    assert_eq!(
        Message::decode(&bytes, LIMIT).unwrap().parts,
        vec![
            Part::Fingerprint(
                Range { lower: None, upper: Some(key.clone()) },
                Fingerprint { sum: carried([5; 32]), count: 3 }
            ),
            Part::Fingerprint(
                Range { lower: Some(key), upper: None },
                Fingerprint { sum: carried([6; 32]), count: 4 }
            ),
        ]
    );
}

#[test]
fn bad_runs_and_compressed_keys_get_clear_errors() {
    let space = SpaceKey::generate().id();
    let message = |part: &[u8]| {
        let mut bytes = vec![1];
        bytes.extend_from_slice(space.as_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(part);
        bytes
    };
    let mut after_the_end = vec![7, 0, 2, 0];
    after_the_end.extend_from_slice(&[0; 16]);
    after_the_end.extend_from_slice(&[1, 0]);
    after_the_end.extend_from_slice(&[0; 17]);
    let mut too_long = vec![8, 0, 0, 1, 0, 0x84, 0x05];
    too_long.extend_from_slice(&[b'a'; 644]);
    too_long.extend_from_slice(&[0; 33]);
    let mut not_utf8 = vec![8, 0, 0, 1, 0, 1, 0xff, 1, b'f'];
    not_utf8.extend_from_slice(&[0; 32]);
    let mut over_64_bits = vec![8, 0, 0];
    over_64_bits.extend_from_slice(&[0xff; 10]);
    over_64_bits.extend_from_slice(&[0; 40]);
    let mut shares_more = vec![8, 0, 0, 1, 3, 1, b'd', 1, b'f'];
    shares_more.extend_from_slice(&[0; 32]);
    // Part 11: the bound after an open lower bound cannot share a byte with it.
    let mut run_shares_more = vec![11, 0, 1, 2, 1, b'd', 1, b'f'];
    run_shares_more.extend_from_slice(&[0; 13]);
    let mut short_entry = vec![12, 95];
    short_entry.extend_from_slice(&[1; 95]);
    for (part, expected) in [
        (vec![7, 0, 0], "a run of 0 ranges"),
        (vec![11, 0, 0], "a run of 0 ranges"),
        (run_shares_more, "a key shares more than the key before holds"),
        (short_entry, "an entry of 95 bytes"),
        (after_the_end, "a run goes on after the end of the space"),
        (shares_more, "a key shares more than the key before holds"),
        (too_long, "a document key over the length limit"),
        (not_utf8, "a key is not utf-8"),
        (over_64_bits, "a number over 64 bits"),
    ] {
        let error = Message::decode(&message(&part), LIMIT).unwrap_err();
        assert_eq!(error.to_string(), format!("malformed reconciliation message: {expected}"));
    }
}

/// Shared prefixes cannot make a small message expand to many times its size: keys that
/// would are refused, and a sender writes such keys whole, so its messages still read.
#[test]
fn keys_cannot_expand_a_message_many_times_over() {
    let space = SpaceKey::generate().id();
    // Each item shares a 500-byte document key with the one before: 35 bytes on the wire
    // for 500 bytes of key.
    let mut part = vec![8, 0, 0];
    let items = 2_000usize;
    part.extend_from_slice(&[0xd0, 0x0f]); // 2,000 as LEB128
    part.extend_from_slice(&[0, 0x80 | (500 & 0x7f) as u8, (500 >> 7) as u8]);
    part.extend_from_slice(&[b'a'; 500]);
    part.extend_from_slice(&[0]);
    part.extend_from_slice(&[0; 32]);
    for _ in 1..items {
        part.extend_from_slice(&[0xf4, 0x03, 0, 0]); // shares all 500 bytes, adds nothing
        part.extend_from_slice(&[0; 32]);
    }
    let mut bytes = vec![1];
    bytes.extend_from_slice(space.as_bytes());
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&part);
    let error = Message::decode(&bytes, LIMIT).unwrap_err();
    assert_eq!(
        error.to_string(),
        "malformed reconciliation message: keys expand to many times the message's size"
    );
    // The same keys from our encoder: it writes them whole once sharing would go over.
    let key = RangeKey { doc: "a".repeat(500), field: String::new() };
    let listing = (0..items).map(|n| (key.clone(), [n as u8; 32])).collect();
    let message = Message { space, parts: vec![Part::Items(Range::ALL, listing)] };
    let bytes = message.encode(LIMIT).unwrap();
    assert_eq!(Message::decode(&bytes, LIMIT).unwrap(), message);
}
