//! Real nodes on loopback: real libp2p swarms, real redb stores, real replicators.

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::path::Path;
use std::time::Duration;

use cosmic_auth::{AuthorKey, PublicKey, Right, SpaceKey, SpaceMode, Timestamp};
use cosmic_events::Bus;
use cosmic_net::{Config, GossipSeen, Keypair, Net, TopicSubscribed};
use cosmic_store::{Entry, Hlc, Options, Origin, Value};
use cosmic_sync::{Replicator, SyncEvent, SyncOptions, space_topic, wire};

mod common;

use common::{DEADLINE, Node, all_equal, dirs, eventually, publish_until_sent};

/// A node in `dir`, which outlives it (for a restart).
async fn node_in(dir: &Path) -> Node {
    Node::builder().dir(dir).start().await
}

/// A node started again on its dir and key.
async fn start(dir: &Path, keypair: Keypair) -> Node {
    Node::builder().dir(dir).keypair(keypair).start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_writing_the_same_fields_end_with_the_same_winners() {
    let dirs = dirs(3);
    let a = node_in(dirs[0].path()).await;
    let b = node_in(dirs[1].path()).await;
    let c = node_in(dirs[2].path()).await;
    let mut applied_on_b = b.bus.subscribe::<SyncEvent>();
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    for node in [&a, &b, &c] {
        assert!(node.replicator.join(space).await.unwrap());
        assert!(!node.replicator.join(space).await.unwrap(), "joining twice changes nothing");
    }
    b.dial(&a).await;
    c.dial(&b).await;
    c.dial(&a).await;
    eventually("every node to learn the space", async || {
        [&a, &b, &c].iter().all(|node| node.state(&space).is_some())
    })
    .await;

    // The same fields, written concurrently by three authors.
    let writers: Vec<_> = [&a, &b, &c]
        .into_iter()
        .enumerate()
        .map(|(i, node)| {
            let store = node.store.clone();
            tokio::task::spawn_blocking(move || {
                let author = AuthorKey::generate();
                // One document of its own, so every node must apply remote changes even
                // if its writes win every shared field.
                let own = vec![("by".to_owned(), Value::Int(i as i64))];
                store.write(&author, &space, &format!("own{i}"), own).unwrap();
                for round in 0..20 {
                    let doc = format!("doc{}", round % 5);
                    let fields = (0..3)
                        .map(|f| (format!("f{f}"), Value::Int(i64::from(round * 10 + i as i32))))
                        .collect();
                    store.write(&author, &space, &doc, fields).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    eventually("the three nodes to converge", async || all_equal(&[&a, &b, &c], &space)).await;
    for doc in 0..5 {
        let doc = format!("doc{doc}");
        let winner = a.store.get_doc(&space, &doc).unwrap();
        assert_eq!(winner, b.store.get_doc(&space, &doc).unwrap());
        assert_eq!(winner, c.store.get_doc(&space, &doc).unwrap());
    }

    // B reported changes with their origin: its own, and ones from the other peers (the
    // events follow the store's change feed, so they may trail the state a little).
    let mut local = false;
    let mut remote = false;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(local && remote) {
        let event = tokio::time::timeout_at(deadline, applied_on_b.recv()).await;
        let event = event.expect("B to report local and remote changes").unwrap();
        if let SyncEvent::Applied { origin, space: s, .. } = event {
            assert_eq!(s, space);
            match origin {
                Origin::Local => local = true,
                Origin::Peer(peer) => {
                    assert!(
                        peer == a.net.peer_id().to_string() || peer == c.net.peer_id().to_string()
                    );
                    remote = true;
                }
            }
        }
    }
    assert!(local && remote, "B saw local {local} and remote {remote} changes");
    let metrics = b.replicator.metrics();
    assert!(metrics.gossip_published > 0, "{metrics:?}");
    for node in [a, b, c] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_during_10000_writes_catches_up_after_restart() {
    let dirs = dirs(2);
    let a = node_in(dirs[0].path()).await;
    let b = node_in(dirs[1].path()).await;
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    a.replicator.join(space).await.unwrap();
    b.replicator.join(space).await.unwrap();
    b.dial(&a).await;
    a.store
        .write_json(&AuthorKey::generate(), &space, "before", &serde_json::json!({"x": 1}))
        .unwrap();
    eventually("B to sync before stopping", async || all_equal(&[&a, &b], &space)).await;
    let a_peer = a.net.listen_addrs().await.unwrap().remove(0);
    let (b_dir, b_key) = b.stop().await;

    // 10,000 writes while B is down, in batches.
    let author = AuthorKey::generate();
    let store = a.store.clone();
    tokio::task::spawn_blocking(move || {
        let millis = store.clock().millis.max(1);
        for batch in 0..10 {
            let entries = (0..1000)
                .map(|i| {
                    let n = batch * 1000 + i;
                    let hlc = Hlc::new(millis, n);
                    Entry::sign(
                        &author,
                        space,
                        &format!("docs/{}", n / 10),
                        &format!("f{}", n % 10),
                        Value::Int(i64::from(n)),
                        hlc,
                    )
                    .unwrap()
                })
                .collect();
            for result in store.insert_batch(entries).unwrap() {
                result.unwrap();
            }
        }
    })
    .await
    .unwrap();

    let b = start(&b_dir, b_key).await;
    assert_eq!(b.replicator.joined(), vec![space], "the joined space survived the restart");
    b.net.dial(a_peer).await.unwrap();
    eventually("B to catch up", async || all_equal(&[&a, &b], &space)).await;
    assert_eq!(b.store.list_spaces().unwrap()[0].n_entries, 10_001);
    // The catch-up came by reconciliation, started by either side when they connected,
    // and by the gossip of A's change feed if it was still draining. A session's counters
    // are added when it ends, and one may still be ending after convergence.
    let accounted = async || {
        let (ma, mb) = (a.replicator.metrics(), b.replicator.metrics());
        ma.recon.entries_sent + mb.recon.entries_received + mb.gossip_entries_accepted >= 10_000
    };
    eventually("the sessions' counters to account for every entry", accounted).await;
    let (ma, mb) = (a.replicator.metrics(), b.replicator.metrics());
    let moved = ma.recon.entries_sent + mb.recon.entries_received;
    assert!(moved > 5_000, "sessions moved {moved} entries: {ma:?} {mb:?}");
    assert!(ma.recon.bytes_sent + mb.recon.bytes_received > 0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_heals_converges() {
    let dirs = dirs(4);
    let mut nodes = Vec::new();
    for dir in &dirs {
        nodes.push(node_in(dir.path()).await);
    }
    let space = nodes[0].store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    // Every node holds the space from the start (as if it had synced once before).
    let record = nodes[0].store.space_record(&space).unwrap().unwrap();
    for node in &nodes {
        node.store.insert_space_record(&record).unwrap();
        node.replicator.join(space).await.unwrap();
    }
    // Two groups: {0, 1} and {2, 3}; both keep writing, also to the same fields.
    nodes[1].dial(&nodes[0]).await;
    nodes[3].dial(&nodes[2]).await;
    for (i, node) in nodes.iter().enumerate() {
        let author = AuthorKey::generate();
        for round in 0..10 {
            let object = serde_json::json!({"shared": i * 100 + round, format!("own{i}"): round});
            node.store.write_json(&author, &space, &format!("doc{}", round % 3), &object).unwrap();
        }
    }
    eventually("each group to converge", async || {
        all_equal(&[&nodes[0], &nodes[1]], &space) && all_equal(&[&nodes[2], &nodes[3]], &space)
    })
    .await;
    assert_ne!(nodes[0].state(&space), nodes[2].state(&space));
    // Heal.
    nodes[1].dial(&nodes[2]).await;
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("everyone to converge after healing", async || all_equal(&all, &space)).await;
    for node in nodes {
        node.stop().await;
    }
}

/// A restricted space held by `a`, `b` and `c` in a line (a - b - c), an authorised author,
/// and a raw network node `mallory` connected to `b` only, subscribed to the space topic.
struct Restricted {
    nodes: Vec<Node>,
    space: PublicKey,
    writer: AuthorKey,
    mallory: Net,
    _dirs: Vec<tempfile::TempDir>,
}

async fn restricted() -> Restricted {
    let dirs = dirs(3);
    let mut nodes = Vec::new();
    for dir in &dirs {
        nodes.push(node_in(dir.path()).await);
    }
    let space_key = SpaceKey::generate();
    let writer = AuthorKey::generate();
    let space = nodes[0].store.create_space(&space_key, SpaceMode::Restricted).unwrap().space;
    nodes[0]
        .store
        .insert_statement(&space_key.grant(writer.public(), Right::Write, Timestamp(0), None))
        .unwrap();
    for node in &nodes {
        // Every node speaks for the writer, whose right includes reading.
        node.replicator.speak_for(writer.clone());
        node.replicator.join(space).await.unwrap();
    }
    nodes[1].dial(&nodes[0]).await;
    nodes[2].dial(&nodes[1]).await;
    let mallory_bus = Bus::new();
    let mut subscribed = mallory_bus.subscribe::<TopicSubscribed>();
    let mallory =
        Net::spawn(Keypair::generate_ed25519(), Config::local(), mallory_bus).await.unwrap();
    mallory.subscribe(&space_topic(&space)).await.unwrap();
    mallory.dial(nodes[1].net.listen_addrs().await.unwrap().remove(0)).await.unwrap();
    let b = nodes[1].net.peer_id();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = subscribed.recv().await.unwrap();
            if event.peer_id == b {
                break;
            }
        }
    })
    .await
    .unwrap();
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("the space to reach every node", async || all_equal(&all, &space)).await;
    Restricted { nodes, space, writer, mallory, _dirs: dirs }
}

impl Restricted {
    /// Publishes `bad` from mallory, then a valid entry as a control, and checks that the
    /// control reached every node while `bad` was stored nowhere and reached neither `a`
    /// nor `c` (so `b` did not forward it), and that `b` counted it against mallory.
    /// The documents `kept` (valid entries that came in the same batch as the bad one)
    /// must reach every node all the same.
    async fn check_rejected(self, bad: Vec<u8>, kept: &[&str]) {
        let mut seen_on_a = self.nodes[0].bus.subscribe::<GossipSeen>();
        let mut seen_on_c = self.nodes[2].bus.subscribe::<GossipSeen>();
        let mut rejected_on_b = self.nodes[1].bus.subscribe::<SyncEvent>();
        let topic = space_topic(&self.space);
        publish_until_sent(&self.mallory, &topic, bad.clone()).await;
        let now = self.nodes[1].store.clock().millis.max(1);
        let control = Entry::sign(
            &self.writer,
            self.space,
            "control",
            "ok",
            Value::Bool(true),
            Hlc::new(now, 0),
        )
        .unwrap();
        publish_until_sent(&self.mallory, &topic, wire::encode_gossip(&control)).await;
        eventually("the control entry (and the kept ones) to reach every node", async || {
            self.nodes.iter().all(|node| {
                std::iter::once("control")
                    .chain(kept.iter().copied())
                    .all(|doc| node.store.get_doc(&self.space, doc).unwrap().is_some())
            })
        })
        .await;
        for node in &self.nodes {
            assert!(
                node.store.get_doc(&self.space, "bad").unwrap().is_none(),
                "a bad entry was stored"
            );
        }
        // Mallory may have found a and c through the DHT and sent it to them directly; no
        // honest node may have forwarded it.
        for seen in [&mut seen_on_a, &mut seen_on_c] {
            while let Ok(Some(message)) = seen.try_recv() {
                if message.data.as_ref() == bad.as_slice() {
                    assert_eq!(message.propagation_source, self.mallory.peer_id(), "forwarded");
                }
            }
        }
        let b = &self.nodes[1];
        // An entry lacking a capability is judged after a reconciliation with its sender.
        // Wait for the event itself: the metric is counted just before it is published.
        let reason = tokio::time::timeout(DEADLINE, async {
            loop {
                match rejected_on_b.recv().await {
                    Ok(SyncEvent::EntryRejected { peer, reason, .. }) => {
                        assert_eq!(peer, self.mallory.peer_id());
                        return reason;
                    }
                    Ok(_) | Err(cosmic_events::RecvError::Lagged { .. }) => {}
                    Err(error) => panic!("b's bus closed: {error}"),
                }
            }
        })
        .await
        .expect("an EntryRejected event on b");
        assert!(b.replicator.metrics().gossip_rejected >= 1);
        let mallory = self.mallory.peer_id();
        // The strike follows the event (the verdict is reported to gossipsub after it).
        eventually("mallory to be struck on b", async || {
            let peers = b.net.peers().await.unwrap();
            peers.into_iter().any(|p| p.peer_id == mallory && p.strikes >= 1)
        })
        .await;
        self.mallory.shutdown().await.unwrap();
        for node in self.nodes {
            node.stop().await;
        }
        eprintln!("rejected: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_from_an_author_without_capability_is_rejected_and_never_forwarded() {
    let setup = restricted().await;
    let intruder = AuthorKey::generate();
    let now = setup.nodes[1].store.clock().millis.max(1);
    let bad =
        Entry::sign(&intruder, setup.space, "bad", "x", Value::Int(1), Hlc::new(now, 0)).unwrap();
    // Straight into a store, it is refused too.
    let error = setup.nodes[0].store.insert(bad.clone()).unwrap_err();
    assert!(matches!(error, cosmic_store::Error::AccessDenied { .. }), "{error}");
    setup.check_rejected(wire::encode_gossip(&bad), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_signature_is_rejected() {
    let setup = restricted().await;
    let now = setup.nodes[1].store.clock().millis.max(1);
    let mut forged =
        Entry::sign(&setup.writer, setup.space, "bad", "x", Value::Int(1), Hlc::new(now, 0))
            .unwrap();
    forged.value = Value::Int(666);
    setup.check_rejected(wire::encode_gossip(&forged), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_forged_entry_has_only_that_entry_rejected() {
    let setup = restricted().await;
    let now = setup.nodes[1].store.clock().millis.max(1);
    let sign = |doc: &str, value: i64| {
        Entry::sign(&setup.writer, setup.space, doc, "x", Value::Int(value), Hlc::new(now, 0))
            .unwrap()
    };
    let mut forged = sign("bad", 1);
    forged.value = Value::Int(666);
    let batch = [sign("good1", 1), forged, sign("good2", 2)];
    let encoded: Vec<Vec<u8>> = batch.iter().map(Entry::encode).collect();
    let bytes = wire::encode_gossip_batch(wire::Sequence { stream: 1, seq: 1 }, &encoded);
    // The batch is rejected (not forwarded, mallory struck), its valid entries kept.
    setup.check_rejected(bytes, &["good1", "good2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_batch_is_rejected_whole() {
    let setup = restricted().await;
    let now = setup.nodes[1].store.clock().millis.max(1);
    // A valid entry, then bytes that are no entry: nothing of the batch is stored, not
    // even the valid entry (named "bad" so that the check looks for it everywhere).
    let valid =
        Entry::sign(&setup.writer, setup.space, "bad", "x", Value::Int(1), Hlc::new(now, 0))
            .unwrap();
    let encoded = vec![valid.encode(), b"no entry at all".to_vec()];
    let bytes = wire::encode_gossip_batch(wire::Sequence { stream: 1, seq: 1 }, &encoded);
    setup.check_rejected(bytes, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_spaces_survive_a_restart_and_leaving_undoes_joining() {
    let dirs = dirs(2);
    let a = node_in(dirs[0].path()).await;
    let b = node_in(dirs[1].path()).await;
    let mut topics_on_a = a.bus.subscribe::<cosmic_net::TopicUnsubscribed>();
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    let other = SpaceKey::generate().id();
    a.replicator.join(space).await.unwrap();
    b.replicator.join(space).await.unwrap();
    b.replicator.join(other).await.unwrap();
    b.replicator.set_blob_policy(&other, cosmic_sync::BlobPolicy::Eager).unwrap();
    b.dial(&a).await;
    eventually("B to get the space", async || all_equal(&[&a, &b], &space)).await;
    let topic = space_topic(&space);
    let b_id = b.net.peer_id();

    let (b_dir, b_key) = b.stop().await;
    let b = start(&b_dir, b_key).await;
    let mut joined = vec![space, other];
    joined.sort();
    assert_eq!(b.replicator.joined(), joined);
    assert_eq!(b.replicator.blob_policy(&other), Some(cosmic_sync::BlobPolicy::Eager));
    b.dial(&a).await;
    // Leaving: the topic is unsubscribed (A sees it) and the choice survives a restart.
    assert!(b.replicator.leave(space).await.unwrap());
    assert!(!b.replicator.leave(space).await.unwrap());
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = topics_on_a.recv().await.unwrap();
            if event.peer_id == b_id && event.topic == topic {
                break;
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(
        b.replicator.sync_now(space).await,
        Err(cosmic_sync::Error::NotJoined { .. })
    ));
    let (b_dir, b_key) = b.stop().await;
    let b = start(&b_dir, b_key).await;
    assert_eq!(b.replicator.joined(), vec![other]);
    // A damaged state file is an error naming it, not a silent reset.
    b.stop().await;
    std::fs::write(b_dir.join(cosmic_sync::STATE_FILE), b"{not json").unwrap();
    let bus = Bus::new();
    let net = Net::spawn(Keypair::generate_ed25519(), Config::local(), bus.clone()).await.unwrap();
    let store = common::open_store(&b_dir, Options::default()).await;
    let error = Replicator::spawn(SyncOptions::default(), net.clone(), store, bus, None, &b_dir)
        .await
        .unwrap_err();
    assert!(error.to_string().contains(cosmic_sync::STATE_FILE), "{error}");
    net.shutdown().await.unwrap();
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_reconciles_on_demand_and_reports_stats() {
    let dirs = dirs(2);
    let a = node_in(dirs[0].path()).await;
    let b = node_in(dirs[1].path()).await;
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    a.replicator.join(space).await.unwrap();
    b.replicator.join(space).await.unwrap();
    b.dial(&a).await;
    eventually("B to get the space", async || all_equal(&[&a, &b], &space)).await;
    // Once A knows B subscribes to the space, sync_now reconciles with it.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let sessions = loop {
        let sessions = a.replicator.sync_now(space).await.unwrap();
        if !sessions.is_empty() {
            break sessions;
        }
        assert!(tokio::time::Instant::now() < deadline, "A never saw B in the space");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sessions[0].peer, b.net.peer_id());
    let stats = sessions[0].result.clone().unwrap();
    assert!(stats.converged && stats.rounds >= 1 && stats.bytes_sent > 0, "{stats:?}");
    let metrics = a.replicator.metrics();
    assert!(metrics.sessions >= 1 && metrics.recon.bytes_sent >= stats.bytes_sent, "{metrics:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_into_a_slow_follower_converges_without_waiting_for_the_timer() {
    // B judges gossip through a queue of one message: a flood from A overflows it again
    // and again. Periodic reconciliation is an hour away, so only the repairs that the
    // detected losses start can bring the lost batches. COSMIC_FLOOD_ENTRIES scales the
    // flood (the figure is 200,000, for a release build).
    let total: usize =
        std::env::var("COSMIC_FLOOD_ENTRIES").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let dirs = dirs(2);
    let hourly =
        SyncOptions { reconcile_interval: Duration::from_secs(3600), ..SyncOptions::default() };
    let slow = SyncOptions { gossip_queue_len: 1, ..hourly.clone() };
    let mut nodes = Vec::new();
    for (dir, options) in [(dirs[0].path(), hourly), (dirs[1].path(), slow)] {
        nodes.push(Node::builder().dir(dir).sync_options(options).start().await);
    }
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    a.replicator.join(space).await.unwrap();
    b.replicator.join(space).await.unwrap();
    b.dial(&a).await;
    eventually("B to learn the space", async || b.state(&space).is_some()).await;

    // Four writers, documents of 100 fields each, as fast as A's store takes them.
    let docs_per_writer = total.div_ceil(400);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = a.store.clone();
            tokio::task::spawn_blocking(move || {
                let author = AuthorKey::generate();
                for d in 0..docs_per_writer {
                    let fields =
                        (0..100).map(|f| (format!("f{f}"), Value::Int(f * 7 + d as i64))).collect();
                    store.write(&author, &space, &format!("flood/{w}/{d}"), fields).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let last_write = tokio::time::Instant::now();
    let deadline = last_write + DEADLINE;
    while !all_equal(&[&a, &b], &space) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B did not converge: {:?}",
            b.replicator.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = last_write.elapsed();
    let metrics = b.replicator.metrics();
    let lost = metrics.gossip_lost;
    assert!(lost.total() > 0, "the flood never overflowed B's queue: {metrics:?}");
    assert!(metrics.loss_repairs > 0, "no loss was repaired: {metrics:?}");
    assert!(b.net.stats().await.unwrap().gossip_dropped_inbound > 0, "nothing was dropped");
    let published = a.replicator.metrics();
    assert!(
        published.gossip_published < published.gossip_entries_published,
        "writes that commit together leave in one batch: {published:?}"
    );
    println!(
        "{total} entries: B converged {after:?} after the last write; lost {lost:?}, \
         {} repairs, A published {} batches of {} entries",
        metrics.loss_repairs, published.gossip_published, published.gossip_entries_published
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_after_unpublished_writes_receives_them_once() {
    const N: usize = 3_000;
    let dirs = dirs(2);
    let hour = Duration::from_secs(3600);
    let a = Node::builder().dir(dirs[0].path()).reconcile_every(hour).start().await;
    let b = Node::builder().dir(dirs[1].path()).reconcile_every(hour).start().await;
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    a.replicator.join(space).await.unwrap();
    // Written while nobody follows the space: the gossip goes nowhere.
    let author = AuthorKey::generate();
    for chunk in 0..N / 100 {
        let fields: Vec<(String, Value)> = (0..100)
            .map(|i| (format!("f{i}"), Value::Int(i64::try_from(chunk * 100 + i).unwrap())))
            .collect();
        a.store.write(&author, &space, &format!("doc{chunk}"), fields).unwrap();
    }
    b.dial(&a).await;
    b.replicator.join(space).await.unwrap();
    eventually("B to catch up", async || all_equal(&[&a, &b], &space)).await;
    // Let any second session (one that would carry everything again) run its course.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (on_a, on_b) = (a.replicator.metrics(), b.replicator.metrics());
    let carried = on_a.recon.entries_sent + on_b.recon.entries_received;
    assert!(
        (N as u64..N as u64 + 100).contains(&carried),
        "B should receive the {N} entries once, but sessions carried {carried}: A {on_a:?}, B {on_b:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bystander_sees_topics_that_do_not_reveal_the_space_id() {
    let dirs = dirs(3);
    let a = node_in(dirs[0].path()).await;
    let b = node_in(dirs[1].path()).await;
    let bystander = node_in(dirs[2].path()).await;
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    a.replicator.join(space).await.unwrap();
    b.replicator.join(space).await.unwrap();
    b.dial(&a).await;
    bystander.dial(&a).await;
    eventually("B to get the space", async || all_equal(&[&a, &b], &space)).await;
    // The bystander joined nothing, yet hears every topic A subscribes to.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let topics = loop {
        let peers = bystander.net.peers().await.unwrap();
        let topics: Vec<String> = peers
            .into_iter()
            .filter(|peer| peer.peer_id == a.net.peer_id())
            .flat_map(|peer| peer.topics)
            .collect();
        if !topics.is_empty() {
            break topics;
        }
        assert!(tokio::time::Instant::now() < deadline, "the bystander never saw A's topics");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(topics, vec![space_topic(&space)]);
    let id = space.to_string();
    let hex: String = space.as_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    for topic in &topics {
        assert!(!topic.contains(&id) && !topic.contains(&hex), "{topic} reveals {id}");
    }
    a.stop().await;
    b.stop().await;
    bystander.stop().await;
}

/// A node's network dials its bootstrap peers as soon as it starts, before its replicator
/// exists: the replicator still exchanges bindings with them at once, not at the first
/// session (none runs here: no space is joined).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_connected_before_the_replicator_starts_are_bound_at_once() {
    let a = Node::new().await;
    let alice = AuthorKey::generate();
    a.replicator.speak_for(alice.clone());
    let listening = a.net.listen_addrs().await.unwrap().remove(0);
    let mut config = Config::local();
    config.bootstrap = vec![format!("{listening}/p2p/{}", a.net.peer_id()).parse().unwrap()];
    let bus = Bus::new();
    let net = Net::spawn(Keypair::generate_ed25519(), config, bus.clone()).await.unwrap();
    eventually("b's network to connect to a", async || {
        net.connected_peers().await.unwrap().contains(&a.net.peer_id())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path(), Options::default()).await;
    let options =
        SyncOptions { reconcile_interval: Duration::from_secs(3600), ..SyncOptions::default() };
    let b = Replicator::spawn(options, net.clone(), store, bus, None, dir.path()).await.unwrap();
    eventually("b to learn whom a speaks for", async || {
        b.peer_authors(&a.net.peer_id()) == vec![alice.public()]
    })
    .await;
    let metrics = b.metrics();
    assert_eq!((metrics.sessions, metrics.sessions_failed), (0, 0), "a session ran");
    b.shutdown().await;
    net.shutdown().await.unwrap();
    a.stop().await;
}

/// A session that found the stores equal makes the next one with that peer open with the
/// whole space's fingerprint instead of its split: fewer bytes while nothing differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_session_that_found_nothing_the_next_opens_with_one_fingerprint() {
    let dirs = dirs(2);
    let a = node_in(dirs[0].path()).await;
    let b = node_in(dirs[1].path()).await;
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    let author = AuthorKey::generate();
    for n in 0..200 {
        let entry =
            Entry::sign(&author, space, &format!("doc{n:03}"), "f", Value::Int(n), Hlc::new(1, 0))
                .unwrap();
        a.store.insert(entry).unwrap();
    }
    a.replicator.join(space).await.unwrap();
    b.replicator.join(space).await.unwrap();
    b.dial(&a).await;
    eventually("B to get the space", async || all_equal(&[&a, &b], &space)).await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let stats = a.replicator.sync_with(space, b.net.peer_id()).await.unwrap();
        assert!(stats.converged && stats.entries_sent == 0, "{stats:?}");
        sessions.push(stats);
    }
    // The first may open either way (B's own catch-up may have been A's last session);
    // the second follows one that found nothing: one fingerprint, one round.
    let (first, second) = (&sessions[0], &sessions[1]);
    assert_eq!(second.rounds, 1, "{second:?}");
    assert!(second.bytes_sent < 200, "{second:?}");
    assert!(second.bytes_sent <= first.bytes_sent, "{first:?} then {second:?}");
    a.stop().await;
    b.stop().await;
}
