//! Replication figures between real nodes, and reconciliation cost in a large space.
//!
//! Plain main (run with `cargo bench -p cosmic-sync --bench replication`, release):
//! - **latency**: two nodes in one process (TCP on 127.0.0.1, redb files on disk); one
//!   `Store::write` on A at a time, timed from the call to the `SyncEvent::Applied` event
//!   with a peer origin on B's bus (so it includes A's fsync, gossip, B's checks and B's
//!   fsync);
//! - **throughput**: A inserts entries in batches of 500 as fast as it can; the clock stops
//!   when B holds all of them (gossip, plus reconciliation for what gossip dropped);
//! - **catch-up**: A holds 100,000 entries, B joins the space knowing nothing; timed from
//!   the dial to equal state hashes, with the bytes of the reconciliation sessions;
//! - **reconciliation**: two stores sharing 1,000,000 entries differ in 10 or 1,000
//!   fields; one session in lockstep through the wire encoding; bytes and rounds.

#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]
#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::path::Path;
use std::time::{Duration, Instant};

use cosmic_auth::{AuthorKey, PublicKey, SpaceKey, SpaceMode};
use cosmic_events::Bus;
use cosmic_net::{Config, Keypair, Net};
use cosmic_store::{Entry, Hlc, Options, Origin, Store, Value};
use cosmic_sync::recon::{self, Limits, Session};
use cosmic_sync::wire::Message;
use cosmic_sync::{Replicator, SyncEvent, SyncOptions};

const LIMIT: usize = 4 * 1024 * 1024;

struct Node {
    net: Net,
    store: Store,
    bus: Bus,
    replicator: Replicator,
}

async fn node(dir: &Path) -> Node {
    let bus = Bus::with_capacity(16 * 1024);
    let mut config = Config::local();
    config.inbound_request_rate = 1_000_000;
    let net = Net::spawn(Keypair::generate_ed25519(), config, bus.clone()).await.unwrap();
    let store = Store::open(dir.join("store.redb"), Options::default()).unwrap();
    let options =
        SyncOptions { reconcile_interval: Duration::from_secs(1), ..SyncOptions::default() };
    let replicator = Replicator::spawn(options, net.clone(), store.clone(), bus.clone(), None, dir)
        .await
        .unwrap();
    Node { net, store, bus, replicator }
}

async fn wait_equal(a: &Store, b: &Store, space: &PublicKey) {
    loop {
        if b.space_record(space).unwrap().is_some()
            && a.state_hash(space).unwrap() == b.state_hash(space).unwrap()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn entries(
    author: &AuthorKey,
    space: PublicKey,
    range: std::ops::Range<u32>,
    millis: u64,
) -> Vec<Entry> {
    range
        .map(|n| {
            let doc = format!("docs/{:07}", n / 8);
            let field = format!("f{}", n % 8);
            Entry::sign(author, space, &doc, &field, Value::Int(i64::from(n)), Hlc::new(millis, n))
                .unwrap()
        })
        .collect()
}

fn now_millis() -> u64 {
    u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap()
}

async fn pair() -> (Node, Node, PublicKey, tempfile::TempDir, tempfile::TempDir) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path()).await;
    let b = node(db.path()).await;
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    a.replicator.join(space).await.unwrap();
    b.replicator.join(space).await.unwrap();
    (a, b, space, da, db)
}

async fn latency() {
    let (a, b, space, _da, _db) = pair().await;
    b.net.dial(a.net.listen_addrs().await.unwrap().remove(0)).await.unwrap();
    wait_equal(&a.store, &b.store, &space).await;
    let author = AuthorKey::generate();
    let mut events = b.bus.subscribe::<SyncEvent>();
    let mut samples = Vec::new();
    for i in 0..1200u32 {
        let started = Instant::now();
        let store = a.store.clone();
        let doc = format!("lat/{i}");
        let write_doc = doc.clone();
        let author = author.clone();
        tokio::task::spawn_blocking(move || {
            store.write(&author, &space, &write_doc, vec![("v".into(), Value::Int(1))]).unwrap();
        })
        .await
        .unwrap();
        let arrived = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(SyncEvent::Applied { doc: got, origin: Origin::Peer(_), .. }) =
                    events.recv().await
                    && got == doc
                {
                    return;
                }
            }
        })
        .await;
        if arrived.is_ok() && i >= 200 {
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "write-to-event latency: n={} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

async fn throughput() {
    let (a, b, space, _da, _db) = pair().await;
    b.net.dial(a.net.listen_addrs().await.unwrap().remove(0)).await.unwrap();
    wait_equal(&a.store, &b.store, &space).await;
    // Let the gossip mesh form.
    a.store
        .write(&AuthorKey::generate(), &space, "warm", vec![("v".into(), Value::Int(1))])
        .unwrap();
    wait_equal(&a.store, &b.store, &space).await;
    let author = AuthorKey::generate();
    let total = 20_000u32;
    let millis = now_millis();
    let batches: Vec<Vec<Entry>> =
        (0..total / 500).map(|i| entries(&author, space, i * 500..(i + 1) * 500, millis)).collect();
    let started = Instant::now();
    let store = a.store.clone();
    tokio::task::spawn_blocking(move || {
        for batch in batches {
            store.insert_batch(batch).unwrap();
        }
    })
    .await
    .unwrap();
    let written = started.elapsed();
    wait_equal(&a.store, &b.store, &space).await;
    let elapsed = started.elapsed();
    let mb = b.replicator.metrics();
    println!(
        "sustained A->B: {total} entries in {:.2} s = {:.0} entries/s (A's inserts alone {:.2} s); \
         B took {} by gossip, {} by reconciliation",
        elapsed.as_secs_f64(),
        f64::from(total) / elapsed.as_secs_f64(),
        written.as_secs_f64(),
        mb.gossip_entries_accepted,
        mb.recon.entries_applied
    );
}

async fn catch_up() {
    let (a, b, space, _da, _db) = pair().await;
    let author = AuthorKey::generate();
    let millis = now_millis();
    let store = a.store.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..100u32 {
            store.insert_batch(entries(&author, space, i * 1000..(i + 1) * 1000, millis)).unwrap();
        }
    })
    .await
    .unwrap();
    // Let A's change feed finish publishing (to nobody) before B connects.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    b.net.dial(a.net.listen_addrs().await.unwrap().remove(0)).await.unwrap();
    wait_equal(&a.store, &b.store, &space).await;
    let elapsed = started.elapsed();
    let (ma, mb) = (a.replicator.metrics(), b.replicator.metrics());
    let bytes = ma.recon.bytes_sent
        + ma.recon.bytes_received
        + mb.recon.bytes_sent
        + mb.recon.bytes_received;
    println!(
        "catch-up of 100,000 entries: {:.2} s, {:.1} MB exchanged ({} bytes/entry), sessions a {} b {}, rounds a {} b {}",
        elapsed.as_secs_f64(),
        bytes as f64 / 1e6,
        bytes / 100_000,
        ma.sessions,
        mb.sessions,
        ma.recon.rounds,
        mb.recon.rounds
    );
}

fn reconcile(a: &Store, b: &Store, space: PublicKey) -> (u64, u64, u64) {
    let limits = Limits::default();
    let (mut session, mut message) = Session::start(a, space, limits, 10_000).unwrap();
    let (mut bytes, mut entries) = (0u64, 0u64);
    loop {
        let encoded = message.encode(LIMIT).unwrap();
        bytes += encoded.len() as u64;
        let request = Message::decode(&encoded, LIMIT).unwrap();
        let (reply, step) =
            recon::respond(b, &request, &Origin::Peer("a".into()), &limits).unwrap();
        entries += step.entries_received + step.entries_sent;
        let encoded = reply.encode(LIMIT).unwrap();
        bytes += encoded.len() as u64;
        let reply = Message::decode(&encoded, LIMIT).unwrap();
        let (next, _) = session.on_reply(a, &reply, &Origin::Peer("b".into())).unwrap();
        match next {
            Some(next) => message = next,
            None => break,
        }
    }
    (bytes, session.rounds(), entries)
}

fn large_space() {
    let n = 1_000_000u32;
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path().join("a.redb"), Options::default()).unwrap();
    let b = Store::open(dir.path().join("b.redb"), Options::default()).unwrap();
    let space = a.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    b.insert_space_record(&a.space_record(&space).unwrap().unwrap()).unwrap();
    let author = AuthorKey::generate();
    let millis = now_millis();
    let started = Instant::now();
    for chunk in 0..n / 20_000 {
        let batch = entries(&author, space, chunk * 20_000..(chunk + 1) * 20_000, millis);
        a.insert_batch(batch.clone()).unwrap();
        b.insert_batch(batch).unwrap();
    }
    println!("(filled two stores with {n} entries in {:.0} s)", started.elapsed().as_secs_f64());
    let mut done = 0u32;
    for d in [10u32, 1000] {
        // d differences spread over the space, half on each side.
        for i in 0..d {
            let at = (i * (n / d) + 7) % n;
            let entry = Entry::sign(
                &author,
                space,
                &format!("docs/{:07}", at / 8),
                &format!("f{}", at % 8),
                Value::Int(-1 - i64::from(done + i)),
                Hlc::new(millis + 1, done + i),
            )
            .unwrap();
            if i % 2 == 0 {
                a.insert(entry).unwrap();
            } else {
                b.insert(entry).unwrap();
            }
        }
        done += d;
        let started = Instant::now();
        let (bytes, rounds, moved) = reconcile(&a, &b, space);
        assert_eq!(a.state_hash(&space).unwrap(), b.state_hash(&space).unwrap());
        println!(
            "reconcile {d} differences in {n} entries: {bytes} bytes ({:.0} per difference), {rounds} rounds, {moved} entries, {:.2} s",
            bytes as f64 / f64::from(d),
            started.elapsed().as_secs_f64()
        );
    }
    let (bytes, rounds, _) = reconcile(&a, &b, space);
    println!("reconcile 0 differences in {n} entries: {bytes} bytes, {rounds} rounds");
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let only = std::env::args().nth(1).filter(|arg| !arg.starts_with('-'));
    let run = |name: &str| only.as_deref().is_none_or(|only| only == name);
    if run("latency") {
        runtime.block_on(latency());
    }
    if run("throughput") {
        runtime.block_on(throughput());
    }
    if run("catchup") {
        runtime.block_on(catch_up());
    }
    if run("recon") {
        large_space();
    }
}
