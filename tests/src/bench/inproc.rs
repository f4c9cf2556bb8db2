//! In-process groups on real redb files: local store writes and reads (`store`), and the
//! bytes of range-based reconciliation between two large stores (`recon`), driven through
//! the wire encoding in lockstep without a network.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, ensure};
use cosmic_auth::{AuthorKey, PublicKey, SpaceKey, SpaceMode};
use cosmic_store::{Entry, Hlc, Options as StoreOptions, Origin, Store, Value};
use cosmic_sync::recon::{self, Limits, Session};
use cosmic_sync::wire::Message;

use super::{Better, Figure, Options};

/// The largest message the lockstep reconciliation encodes (as the node's default).
const MESSAGE_LIMIT: usize = 4 * 1024 * 1024;

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Signed entries `range` of a space: 8 integer fields per document.
fn entries(
    author: &AuthorKey,
    space: PublicKey,
    range: std::ops::Range<u32>,
    millis: u64,
) -> anyhow::Result<Vec<Entry>> {
    range
        .map(|n| {
            let doc = format!("docs/{:07}", n / 8);
            let field = format!("f{}", n % 8);
            Entry::sign(author, space, &doc, &field, Value::Int(i64::from(n)), Hlc::new(millis, n))
                .context("sign an entry")
        })
        .collect()
}

/// A new store file in `dir` with one open space.
fn fresh(dir: &Path, name: &str) -> anyhow::Result<(Store, PublicKey)> {
    let store = Store::open(dir.join(name), StoreOptions::default())?;
    let space = store.create_space(&SpaceKey::generate(), SpaceMode::Open)?.space;
    Ok((store, space))
}

/// Fills `store` with `n` entries in batches of 10,000.
fn fill(store: &Store, author: &AuthorKey, space: PublicKey, n: u32) -> anyhow::Result<()> {
    let millis = now_millis();
    let mut at = 0;
    while at < n {
        let end = (at + 10_000).min(n);
        for result in store.insert_batch(entries(author, space, at..end, millis)?)? {
            result?;
        }
        at = end;
    }
    Ok(())
}

/// The `store` group: durable single writes, batched inserts and document reads.
pub fn store(options: Options, emit: &mut dyn FnMut(Figure)) -> anyhow::Result<()> {
    let runs = options.runs();
    let writes = options.pick(500, 100);
    let batches = options.pick(30u32, 5);
    let read_space = options.pick(100_000u32, 10_000);
    let reads = options.pick(20_000u32, 2_000);
    let author = AuthorKey::generate();

    let mut single = Vec::new();
    let mut batched = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let (store, space) = fresh(dir.path(), "single.redb")?;
        let started = Instant::now();
        for i in 0..writes {
            store.write(
                &author,
                &space,
                &format!("docs/{i}"),
                vec![("f".into(), Value::Int(1))],
            )?;
        }
        single.push(f64::from(writes) / started.elapsed().as_secs_f64());

        let (store, space) = fresh(dir.path(), "batched.redb")?;
        let millis = now_millis();
        let prepared: Vec<Vec<Entry>> = (0..batches)
            .map(|b| entries(&author, space, b * 1000..(b + 1) * 1000, millis))
            .collect::<anyhow::Result<_>>()?;
        let started = Instant::now();
        for batch in prepared {
            for result in store.insert_batch(batch)? {
                result?;
            }
        }
        batched.push(f64::from(batches * 1000) / started.elapsed().as_secs_f64());
    }
    emit(Figure::new(
        "store",
        "durable single write",
        "writes/s",
        Better::Higher,
        single,
        format!(
            "Store::write of one field to a new document, one at a time, each its own fsynced \
             transaction; {writes} writes per run into a fresh redb file"
        ),
    ));
    emit(Figure::new(
        "store",
        "batched insert, 1,000 per transaction",
        "entries/s",
        Better::Higher,
        batched,
        format!(
            "Store::insert_batch of {batches} batches of 1,000 pre-signed entries (signatures \
             are checked on insert) into a fresh redb file"
        ),
    ));

    let dir = tempfile::tempdir()?;
    let (store, space) = fresh(dir.path(), "read.redb")?;
    fill(&store, &author, space, read_space)?;
    let n_docs = read_space / 8;
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for run in 0..runs {
        let mut samples = Vec::with_capacity(reads as usize);
        for i in 0..reads {
            let doc = format!("docs/{:07}", (i.wrapping_mul(7919) + run as u32 * 13) % n_docs);
            let started = Instant::now();
            let found = store.get_doc(&space, &doc)?;
            samples.push(started.elapsed().as_secs_f64() * 1e6);
            ensure!(found.is_some(), "document {doc} missing");
        }
        p50.push(super::quantile(&samples, 0.5));
        p99.push(super::quantile(&samples, 0.99));
    }
    let method = format!(
        "Store::get_doc (8 fields) of documents spread over a space of {read_space} entries, \
         {reads} reads per run, in-process"
    );
    emit(Figure::new("store", "read latency p50", "µs", Better::Lower, p50, method.clone()));
    emit(Figure::new("store", "read latency p99", "µs", Better::Lower, p99, method));
    Ok(())
}

/// One reconciliation session between `a` and `b` in lockstep through the wire encoding:
/// `(bytes both ways, rounds)`.
fn reconcile(a: &Store, b: &Store, space: PublicKey) -> anyhow::Result<(u64, u64)> {
    let limits = Limits::default();
    let (mut session, mut message) = Session::start(a, space, limits, 10_000)?;
    let mut bytes = 0u64;
    loop {
        let encoded = message.encode(MESSAGE_LIMIT)?;
        bytes += encoded.len() as u64;
        let request = Message::decode(&encoded, MESSAGE_LIMIT)?;
        let (reply, _) = recon::respond(b, &request, &Origin::Peer("a".into()), &limits)?;
        let encoded = reply.encode(MESSAGE_LIMIT)?;
        bytes += encoded.len() as u64;
        let reply = Message::decode(&encoded, MESSAGE_LIMIT)?;
        let (next, _) = session.on_reply(a, &reply, &Origin::Peer("b".into()))?;
        match next {
            Some(next) => message = next,
            None => break,
        }
    }
    Ok((bytes, session.rounds()))
}

/// The `recon` group: two stores share `n` entries (1,000,000 in the full run) and differ
/// in 10 or 1,000 fields spread over the space, half on each side.
pub fn recon(options: Options, emit: &mut dyn FnMut(Figure)) -> anyhow::Result<()> {
    let n = options.pick(1_000_000u32, 20_000);
    let dir = tempfile::tempdir()?;
    let author = AuthorKey::generate();
    let started = Instant::now();
    {
        let (a, space) = fresh(dir.path(), "a.redb")?;
        fill(&a, &author, space, n)?;
    }
    // B starts as a byte copy of A: the same entries without signing them twice.
    std::fs::copy(dir.path().join("a.redb"), dir.path().join("b.redb"))?;
    let a = Store::open(dir.path().join("a.redb"), StoreOptions::default())?;
    let b = Store::open(dir.path().join("b.redb"), StoreOptions::default())?;
    let space = a.list_spaces()?.first().context("the space")?.space;
    eprintln!("recon: two stores of {n} entries in {:.0}s", started.elapsed().as_secs_f64());
    ensure!(a.state_hash(&space)? == b.state_hash(&space)?, "the copies differ");
    let (bytes, _) = reconcile(&a, &b, space)?;
    emit(Figure::new(
        "recon",
        format!("0 differences in {n} entries"),
        "bytes",
        Better::Lower,
        vec![bytes as f64],
        "One session between equal stores: the first fingerprint and its answer",
    ));

    let millis = now_millis() + 1;
    let mut counter = 0u32;
    for d in [10u32, 1000] {
        let mut bytes_runs = Vec::new();
        let mut rounds_runs = Vec::new();
        for run in 0..options.runs() as u32 {
            for i in 0..d {
                let at = (i * (n / d) + 7 + run * 101) % n;
                let entry = Entry::sign(
                    &author,
                    space,
                    &format!("docs/{:07}", at / 8),
                    &format!("f{}", at % 8),
                    Value::Int(-1 - i64::from(counter)),
                    Hlc::new(millis, counter),
                )?;
                counter += 1;
                let target = if i % 2 == 0 { &a } else { &b };
                target.insert(entry)?;
            }
            let (bytes, rounds) = reconcile(&a, &b, space)?;
            ensure!(a.state_hash(&space)? == b.state_hash(&space)?, "not reconciled");
            bytes_runs.push(bytes as f64);
            rounds_runs.push(rounds as f64);
        }
        let method = format!(
            "Two redb stores sharing {n} entries (8 fields per document) differ in {d} fields \
             spread over the space, half newer on each side; one reconciliation session \
             (cosmic-sync recon state machine) runs in lockstep through the wire encoding; \
             bytes of every encoded message both ways; afterwards the state hashes are equal"
        );
        emit(Figure::new(
            "recon",
            format!("{d} differences in {n} entries"),
            "bytes",
            Better::Lower,
            bytes_runs,
            method.clone(),
        ));
        emit(Figure::new(
            "recon",
            format!("{d} differences in {n} entries, rounds"),
            "rounds",
            Better::Lower,
            rounds_runs,
            method,
        ));
    }
    Ok(())
}
