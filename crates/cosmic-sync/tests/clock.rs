//! Skewed clocks on real nodes (real libp2p swarms on loopback, real redb stores, real
//! replicators), each store running on an injected wall clock: a node an hour ahead cannot
//! take over fields, its entries are refused with a visible reason until they are within
//! the allowed drift; a node behind by less than the drift converges and its clock catches
//! up; a node an hour behind two peers follows their clocks and converges; a node an hour
//! behind its only peer (which cannot outvote it) loses none of its writes, refuses the
//! other's (saying why) and converges once its clock is set right.

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use cosmic_auth::{AuthorKey, PublicKey, SpaceKey, SpaceMode};
use cosmic_store::{Clock, Hlc, Options, SystemClock, Value};
use cosmic_sync::SyncEvent;

mod common;

use common::Node;

/// Clock tests wait longer than the kit's default: convergence follows a clock change.
const DEADLINE: Duration = Duration::from_secs(40);
const HOUR_MS: i64 = 3_600_000;

/// The system clock shifted by an adjustable offset.
#[derive(Debug, Default)]
struct SkewedClock {
    offset_ms: AtomicI64,
}

impl SkewedClock {
    fn new(offset_ms: i64) -> Arc<SkewedClock> {
        Arc::new(SkewedClock { offset_ms: AtomicI64::new(offset_ms) })
    }

    fn set(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::SeqCst);
    }
}

impl Clock for SkewedClock {
    fn now_millis(&self) -> u64 {
        let now = SystemClock.now_millis();
        now.saturating_add_signed(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// Polls `condition` until it holds, failing after [`DEADLINE`].
async fn eventually(what: &str, condition: impl AsyncFnMut() -> bool) {
    common::eventually_within(what, DEADLINE, condition).await;
}

/// A kit node whose store runs on a [`SkewedClock`].
struct Skewed {
    node: Node,
    clock: Arc<SkewedClock>,
}

impl std::ops::Deref for Skewed {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Skewed {
    async fn stop(self) {
        self.node.stop().await;
    }
}

async fn start(dir: &Path, offset_ms: i64) -> Skewed {
    let clock = SkewedClock::new(offset_ms);
    let options = Options { clock: clock.clone(), ..Options::default() };
    let node = Node::builder()
        .dir(dir)
        .store_options(options)
        .reconcile_every(Duration::from_millis(300))
        .start()
        .await;
    Skewed { node, clock }
}

fn write(node: &Node, author: &AuthorKey, space: &PublicKey, doc: &str, value: &str) -> Hlc {
    let fields = vec![("v".to_owned(), Value::String(value.to_owned()))];
    node.store.write(author, space, doc, fields).unwrap();
    node.store.get_entry(space, doc, "v").unwrap().unwrap().hlc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_an_hour_ahead_is_refused_until_within_drift() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let honest = start(dirs[0].path(), 0).await;
    let ahead = start(dirs[1].path(), HOUR_MS).await;
    let mut events = honest.bus.subscribe::<SyncEvent>();
    let space = honest.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    for node in [&honest, &ahead] {
        node.replicator.join(space).await.unwrap();
    }
    ahead.dial(&honest).await;
    eventually("the space to reach the node ahead", async || ahead.state(&space).is_some()).await;

    // The honest node writes a field; the node ahead overwrites it, stamped an hour ahead.
    let author = AuthorKey::generate();
    write(&honest, &author, &space, "doc", "honest");
    eventually("the honest write to reach the node ahead", async || {
        ahead.value(&space, "doc", "v") == Some(Value::String("honest".into()))
    })
    .await;
    let stamped = write(&ahead, &AuthorKey::generate(), &space, "doc", "from the future");
    assert!(stamped.millis >= SystemClock.now_millis() + 3_500_000, "{stamped}");
    write(&ahead, &AuthorKey::generate(), &space, "other", "from the future");

    // The honest node refuses both, with a reason naming the drift, and keeps its value.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let reason = loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await;
        match event.expect("an EntryRejected event for the entry from the future").unwrap() {
            SyncEvent::EntryRejected { space: s, peer, reason } if reason.contains("doc/v") => {
                assert_eq!(s, space);
                assert_eq!(peer, ahead.net.peer_id());
                break reason;
            }
            _ => {}
        }
    };
    assert!(reason.contains("in the future, more than the allowed clock drift"), "{reason}");
    // Both entries are counted as refused, however they came (in one gossip batch or two,
    // in a session either node started).
    eventually("the refusals to show in the metrics", async || {
        honest.store.refusals().clock_drift >= 2
    })
    .await;
    // Several reconciliation rounds later, still refused: nothing from the future is stored
    // and the honest clock did not jump ahead.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(honest.value(&space, "doc", "v"), Some(Value::String("honest".into())));
    assert_eq!(honest.value(&space, "other", "v"), None);
    assert!(honest.store.clock().millis < SystemClock.now_millis() + 60_000);
    let later = write(&honest, &author, &space, "doc", "honest again");
    assert!(later < stamped, "the honest node's own clock stays honest");

    // An hour passes (the honest clock catches up): the entries are valid now and accepted.
    honest.clock.set(HOUR_MS);
    eventually("the node ahead to be accepted once within drift", async || {
        honest.value(&space, "other", "v") == Some(Value::String("from the future".into()))
    })
    .await;
    eventually("both nodes to converge", async || {
        honest.state(&space).is_some() && honest.state(&space) == ahead.state(&space)
    })
    .await;
    assert_eq!(honest.value(&space, "doc", "v"), Some(Value::String("from the future".into())));
    for node in [honest, ahead] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_within_the_drift_converges_and_its_clock_catches_up() {
    // Two nodes: with a single peer the node behind keeps its own wall clock (one peer
    // cannot outvote it), so this is the hybrid logical clock alone at work.
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = start(dirs[0].path(), 0).await;
    // 45 s behind: the others' entries are 45 s in its future, within the 60 s drift.
    let behind = start(dirs[1].path(), -45_000).await;
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    for node in [&a, &behind] {
        node.replicator.join(space).await.unwrap();
    }
    behind.dial(&a).await;
    eventually("every node to learn the space", async || {
        [&a, &behind].iter().all(|node| node.state(&space).is_some())
    })
    .await;

    // A field of its own, stamped in the past: not refused, not lost.
    let late = AuthorKey::generate();
    let old = write(&behind, &late, &space, "behind-own", "kept");
    assert!(old.millis + 40_000 < SystemClock.now_millis(), "{old}");

    // A shared field written by A: once the node behind has seen it, its HLC catches up
    // and its next write to the field wins everywhere despite its wall clock.
    let seen = write(&a, &AuthorKey::generate(), &space, "shared", "by a");
    eventually("A's write to reach the node behind", async || {
        behind.value(&space, "shared", "v") == Some(Value::String("by a".into()))
    })
    .await;
    assert!(behind.store.clock() >= seen, "the node behind's clock follows what it saw");
    let newer = write(&behind, &late, &space, "shared", "by the node behind");
    assert!(newer > seen, "{newer} after {seen}");

    // Concurrent writes from both to more fields.
    for i in 0..10 {
        let doc = format!("doc{i}");
        write(&a, &AuthorKey::generate(), &space, &doc, "a");
        write(&behind, &late, &space, &doc, "behind");
    }
    eventually("the two nodes to converge", async || {
        let first = a.state(&space);
        first.is_some() && behind.state(&space) == first
    })
    .await;
    for node in [&a, &behind] {
        assert_eq!(node.value(&space, "behind-own", "v"), Some(Value::String("kept".into())));
        assert_eq!(
            node.value(&space, "shared", "v"),
            Some(Value::String("by the node behind".into()))
        );
    }
    assert_eq!(behind.store.clock_correction(), Duration::ZERO, "a single peer moved it");
    for node in [a, behind] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_an_hour_behind_two_peers_follows_them_and_converges() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = start(dirs[0].path(), 0).await;
    let b = start(dirs[1].path(), 0).await;
    let behind = start(dirs[2].path(), -HOUR_MS).await;
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    for node in [&a, &b, &behind] {
        node.replicator.join(space).await.unwrap();
    }
    // A writes before the nodes meet: an hour in the future of the node behind.
    write(&a, &AuthorKey::generate(), &space, "from-a", "now");
    b.dial(&a).await;
    behind.dial(&a).await;
    behind.dial(&b).await;

    // Both peers report clocks an hour ahead of its own: it takes their word (the lesser
    // of the two readings, give or take the round trip) and converges without anyone
    // touching its clock.
    eventually("the node behind to follow its peers' clocks", async || {
        behind.store.clock_correction() > Duration::from_millis(3_590_000)
    })
    .await;
    let correction = behind.store.clock_correction();
    assert!(correction < Duration::from_millis(3_610_000), "{correction:?}");
    for node in [&a, &b] {
        assert_eq!(node.store.clock_correction(), Duration::ZERO, "honest nodes keep theirs");
    }
    eventually("the three nodes to converge", async || {
        let first = a.state(&space);
        first.is_some() && b.state(&space) == first && behind.state(&space) == first
    })
    .await;
    assert_eq!(behind.value(&space, "from-a", "v"), Some(Value::String("now".into())));

    // Its new writes are stamped in the present, not an hour ago, and reach everyone.
    let stamped = write(&behind, &AuthorKey::generate(), &space, "shared", "by the node behind");
    let now = SystemClock.now_millis();
    assert!(stamped.millis.abs_diff(now) < 5_000, "{stamped} at {now}");
    eventually("its write to reach everyone", async || {
        [&a, &b, &behind].iter().all(|node| {
            node.value(&space, "shared", "v") == Some(Value::String("by the node behind".into()))
        })
    })
    .await;

    // Its clock is set right: the peers no longer vote for a correction.
    behind.clock.set(0);
    eventually("the correction to be dropped", async || {
        behind.store.clock_correction() == Duration::ZERO
    })
    .await;
    for node in [a, b, behind] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_an_hour_behind_its_only_peer_keeps_its_writes_and_converges_once_its_clock_is_set()
{
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = start(dirs[0].path(), 0).await;
    let behind = start(dirs[1].path(), -HOUR_MS).await;
    let mut events = behind.bus.subscribe::<SyncEvent>();
    let space = behind.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    for node in [&a, &behind] {
        node.replicator.join(space).await.unwrap();
    }
    behind.dial(&a).await;
    eventually("the space to reach A", async || a.state(&space).is_some()).await;

    // Its writes, stamped an hour in the past, reach A: nothing is lost.
    let author = AuthorKey::generate();
    let old = write(&behind, &author, &space, "behind-own", "kept");
    assert!(old.millis + 3_500_000 < SystemClock.now_millis(), "{old}");
    eventually("the write from the past to reach A", async || {
        a.value(&space, "behind-own", "v") == Some(Value::String("kept".into()))
    })
    .await;

    // A's writes are an hour in its future: it refuses them, and says why.
    write(&a, &AuthorKey::generate(), &space, "from-a", "now");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await;
        match event.expect("the node behind to report why it refuses A's entry").unwrap() {
            SyncEvent::EntryRejected { reason, .. } if reason.contains("from-a/v") => {
                assert!(reason.contains("more than the allowed clock drift"), "{reason}");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(behind.value(&space, "from-a", "v"), None);

    // Its clock is set right: it takes A's entries and both converge, with every write.
    behind.clock.set(0);
    eventually("both nodes to converge once the clock is set", async || {
        behind.state(&space).is_some() && behind.state(&space) == a.state(&space)
    })
    .await;
    for node in [&a, &behind] {
        assert_eq!(node.value(&space, "behind-own", "v"), Some(Value::String("kept".into())));
        assert_eq!(node.value(&space, "from-a", "v"), Some(Value::String("now".into())));
    }
    for node in [a, behind] {
        node.stop().await;
    }
}
