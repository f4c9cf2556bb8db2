//! Hostile peers against real nodes on loopback (real swarms, redb stores, replicators):
//! a peer flooding gossip, replaying old entries, forging capabilities and signatures
//! over reconciliation, presenting bad peer bindings or reading a restricted space without
//! a right, and the honest cases that must not be punished.

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::time::Duration;

use cosmic_auth::{AuthorKey, PeerBinding, PublicKey, Right, SpaceKey, SpaceMode, Timestamp};
use cosmic_events::Bus;
use cosmic_net::{Config, GossipSeen, Keypair, Net, PeerBanned, PeerId, TopicSubscribed};
use cosmic_store::{Entry, Hlc, Store, Value};
use cosmic_sync::wire::{self, Message, Part};
use cosmic_sync::{BIND_PROTOCOL, RECON_PROTOCOL, SyncEvent, space_topic};

mod common;

use common::{DEADLINE, Node, eventually, publish_until_sent};

/// A node whose periodic reconciliation is far off, so that within a test only gossip,
/// subscriptions and catch-ups move entries.
async fn node() -> Node {
    Node::builder().reconcile_every(Duration::from_secs(600)).start().await
}

/// The strikes `node` holds against `peer`.
async fn strikes_of(node: &Node, peer: PeerId) -> u32 {
    let peers = node.net.peers().await.unwrap();
    peers.iter().find(|info| info.peer_id == peer).map_or(0, |info| info.strikes)
}

/// Signs an entry by `author` stamped now by `store`'s clock.
fn entry(store: &Store, author: &AuthorKey, space: PublicKey, doc: &str, value: i64) -> Entry {
    let now = store.clock().millis.max(1);
    Entry::sign(author, space, doc, "v", Value::Int(value), Hlc::new(now, 0)).unwrap()
}

/// A restricted space created on the first of `nodes` with one authorised writer,
/// joined by every node; the nodes are dialled in a line and synced.
async fn restricted_line(nodes: &[&Node]) -> (PublicKey, SpaceKey, AuthorKey) {
    let space_key = SpaceKey::generate();
    let writer = AuthorKey::generate();
    let space = nodes[0].store.create_space(&space_key, SpaceMode::Restricted).unwrap().space;
    let grant = space_key.grant(writer.public(), Right::Write, Timestamp(0), None);
    nodes[0].store.insert_statement(&grant).unwrap();
    nodes[0].store.insert(entry(&nodes[0].store, &writer, space, "first", 1)).unwrap();
    for node in nodes {
        // Every node speaks for the writer, whose right includes reading.
        node.replicator.speak_for(writer.clone());
        node.replicator.join(space).await.unwrap();
    }
    for pair in nodes.windows(2) {
        pair[1].dial(pair[0]).await;
    }
    eventually("the space to reach every node", async || {
        let first = nodes[0].state(&space);
        nodes.iter().all(|node| node.state(&space) == first && node.has(&space, "first"))
    })
    .await;
    (space, space_key, writer)
}

/// A raw network node subscribed to the space's topic and connected to `target`.
async fn mallory(space: &PublicKey, target: &Node) -> Net {
    let bus = Bus::new();
    let mut subscribed = bus.subscribe::<TopicSubscribed>();
    let net = Net::spawn(Keypair::generate_ed25519(), Config::local(), bus).await.unwrap();
    net.subscribe(&space_topic(space)).await.unwrap();
    net.dial(target.net.listen_addrs().await.unwrap().remove(0)).await.unwrap();
    let target = target.net.peer_id();
    tokio::time::timeout(DEADLINE, async {
        while subscribed.recv().await.unwrap().peer_id != target {}
    })
    .await
    .unwrap();
    net
}

/// Presents to `target` a binding of `net`'s node to `author`, valid for an hour.
async fn present_binding(net: &Net, target: &Node, author: &AuthorKey) {
    let node = cosmic_auth::node_key_of(&net.peer_id()).unwrap();
    let binding = PeerBinding::sign(author, &node, Timestamp(Timestamp::now().0 + 3_600_000));
    let request = net.request(target.net.peer_id(), BIND_PROTOCOL, binding.to_bytes());
    tokio::time::timeout(DEADLINE, request).await.unwrap().unwrap();
}

/// Publishes `data` from `net` until it is sent (true), or until `target` has banned a
/// peer (false).
async fn publish_unless_banned(net: &Net, target: &Node, topic: &str, data: Vec<u8>) -> bool {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while let Err(error) = net.publish(topic, data.clone()).await {
        if target.net.stats().await.unwrap().banned_peers >= 1 {
            return false;
        }
        assert!(tokio::time::Instant::now() < deadline, "publishing failed: {error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The gossip messages `subscriber` saw that carry `data` and came from `from`.
fn forwarded(
    subscriber: &mut cosmic_events::Subscriber<GossipSeen>,
    from: PeerId,
    data: &[Vec<u8>],
) -> usize {
    let mut count = 0;
    while let Ok(Some(message)) = subscriber.try_recv() {
        if message.propagation_source == from && data.iter().any(|d| d == &message.data[..]) {
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_space_moves_by_reconciliation_only_with_grants_before_entries() {
    let (a, b, c) = (node().await, node().await, node().await);
    let (space, space_key, _writer) = restricted_line(&[&a, &b, &c]).await;
    let mut rejected_on_c = c.bus.subscribe::<SyncEvent>();

    // A new writer is granted on a; the grant reaches b but not c (grants travel by
    // reconciliation only, and c's next one is far off).
    let newcomer = AuthorKey::generate();
    let grant = space_key.grant(newcomer.public(), Right::Write, Timestamp(0), None);
    a.store.insert_statement(&grant).unwrap();
    b.store.insert_statement(&grant).unwrap();
    a.store.insert(entry(&a.store, &newcomer, space, "early", 7)).unwrap();

    // A restricted space is never gossiped (a topic reaches every subscriber): the change
    // is pushed to each reader peer by reconciliation, which carries the grant before the
    // entry, so nothing waits for its capability and nobody is blamed.
    eventually("the early entry to reach c", async || c.has(&space, "early")).await;
    for node in [&a, &b, &c] {
        let metrics = node.replicator.metrics();
        assert_eq!(metrics.gossip_published, 0, "{metrics:?}");
        assert_eq!(metrics.gossip_deferred, 0, "{metrics:?}");
        assert_eq!(metrics.gossip_rejected, 0, "{metrics:?}");
    }
    for honest in [&a, &b] {
        assert_eq!(strikes_of(&c, honest.net.peer_id()).await, 0, "an honest peer was struck");
    }
    while let Ok(Some(event)) = rejected_on_c.try_recv() {
        assert!(!matches!(event, SyncEvent::EntryRejected { .. }), "{event:?}");
    }
    eventually("every node to agree", async || {
        a.state(&space) == b.state(&space) && b.state(&space) == c.state(&space)
    })
    .await;
    for node in [a, b, c] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_without_a_capability_are_held_in_bounds_then_rejected_and_struck() {
    let (a, b) = (node().await, node().await);
    let (space, _space_key, writer) = restricted_line(&[&a, &b]).await;
    let mallory = mallory(&space, &b).await;
    let mut seen_on_a = a.bus.subscribe::<GossipSeen>();
    let topic = space_topic(&space);

    // More unauthorised entries than may be held for one peer.
    let intruder = AuthorKey::generate();
    let mut sent = Vec::new();
    for index in 0..300 {
        let bad =
            wire::encode_gossip(&entry(&b.store, &intruder, space, &format!("bad{index}"), 1));
        // On a slow machine b may judge (and strike) early entries fast enough to ban
        // mallory before it has sent them all: containment too.
        if !publish_unless_banned(&mallory, &b, &topic, bad.clone()).await {
            break;
        }
        sent.push(bad);
        assert!(b.replicator.deferred_entries() <= 128, "the held entries grow without bound");
    }
    eventually("b to judge the held entries", async || {
        b.replicator.metrics().gossip_rejected >= 1 && b.replicator.deferred_entries() == 0
    })
    .await;
    let banned = b.net.stats().await.unwrap().banned_peers == 1;
    assert!(banned || strikes_of(&b, mallory.peer_id()).await >= 1);
    for index in 0..300 {
        assert!(!b.has(&space, &format!("bad{index}")), "an unauthorised entry was stored");
    }
    assert_eq!(forwarded(&mut seen_on_a, b.net.peer_id(), &sent), 0, "b forwarded one");

    // Honest writes still flow both ways.
    a.store.insert(entry(&a.store, &writer, space, "after", 2)).unwrap();
    eventually("a fresh write to reach b", async || b.has(&space, "after")).await;
    mallory.shutdown().await.unwrap();
    for node in [a, b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_garbage_gossip_is_contained() {
    let (a, b) = (node().await, node().await);
    let (space, _space_key, writer) = restricted_line(&[&a, &b]).await;
    let mallory = mallory(&space, &b).await;
    let mut seen_on_a = a.bus.subscribe::<GossipSeen>();
    let mut banned = b.bus.subscribe::<PeerBanned>();
    let before = b.state(&space);
    let topic = space_topic(&space);

    // Distinct garbage, as fast as mallory can publish it, until b cuts it off.
    const FLOOD: usize = 500;
    let mut sent = Vec::new();
    for index in 0..FLOOD {
        let mut garbage = vec![wire::WIRE_VERSION, 1];
        garbage.extend_from_slice(&(index as u64).to_be_bytes());
        if mallory.publish(&topic, garbage.clone()).await.is_err() {
            break;
        }
        sent.push(garbage);
    }
    // b rejects what reaches it, and either bans mallory (ban_threshold strikes) or
    // gossipsub graylists it first (its score for invalid messages): either way mallory
    // ends up cut off, with far fewer messages judged than sent.
    eventually("b to cut mallory off", async || {
        let peers = b.net.peers().await.unwrap();
        let info = peers.iter().find(|info| info.peer_id == mallory.peer_id());
        let banned = b.net.stats().await.unwrap().banned_peers == 1;
        let graylisted = info.and_then(|info| info.gossip_score).is_some_and(|score| score < -80.0);
        banned || graylisted
    })
    .await;
    let judged = b.replicator.metrics().gossip_rejected;
    assert!(judged >= 1, "nothing reached b");
    let stats = b.net.stats().await.unwrap();
    eprintln!("sent {} garbage messages; b rejected {judged}; {stats:?}", sent.len());
    if let Ok(Some(event)) = banned.try_recv() {
        assert_eq!(event.peer_id, mallory.peer_id());
    }
    assert_eq!(b.state(&space), before, "garbage changed the store");
    assert_eq!(forwarded(&mut seen_on_a, b.net.peer_id(), &sent), 0, "b forwarded garbage");
    assert_eq!(b.replicator.deferred_entries(), 0);

    // Honest writes still flow both ways.
    a.store.insert(entry(&a.store, &writer, space, "after-a", 1)).unwrap();
    b.store.insert(entry(&b.store, &writer, space, "after-b", 2)).unwrap();
    eventually("fresh writes to cross", async || {
        b.has(&space, "after-a") && a.has(&space, "after-b")
    })
    .await;
    assert_eq!(strikes_of(&a, b.net.peer_id()).await, 0);
    mallory.shutdown().await.unwrap();
    for node in [a, b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_old_entry_changes_nothing_and_is_not_forwarded() {
    let (a, b) = (node().await, node().await);
    // The entries travel by reconciliation, so their gossip is new to everyone when
    // mallory replays it.
    let space_key = SpaceKey::generate();
    let writer = AuthorKey::generate();
    let space = a.store.create_space(&space_key, SpaceMode::Restricted).unwrap().space;
    a.store
        .insert_statement(&space_key.grant(writer.public(), Right::Write, Timestamp(0), None))
        .unwrap();
    let old = entry(&a.store, &writer, space, "doc", 1);
    let mut new = entry(&a.store, &writer, space, "doc", 2);
    new.hlc = Hlc::new(old.hlc.millis + 1, 0);
    let new = Entry::sign(&writer, space, "doc", "v", Value::Int(2), new.hlc).unwrap();
    a.store.insert(old.clone()).unwrap();
    a.store.insert(new.clone()).unwrap();
    for node in [&a, &b] {
        node.replicator.speak_for(writer.clone());
        node.replicator.join(space).await.unwrap();
    }
    b.dial(&a).await;
    eventually("b to catch up", async || {
        b.state(&space).is_some() && b.state(&space) == a.state(&space)
    })
    .await;

    let mallory = mallory(&space, &b).await;
    let mut seen_on_a = a.bus.subscribe::<GossipSeen>();
    let mut applied_on_b = b.bus.subscribe::<SyncEvent>();
    let before = b.state(&space);
    let ignored = b.replicator.metrics().gossip_ignored;
    let replays = vec![wire::encode_gossip(&old), wire::encode_gossip(&new)];
    let topic = space_topic(&space);
    for replay in &replays {
        publish_until_sent(&mallory, &topic, replay.clone()).await;
    }
    // The stale one is ignored; the current one is a duplicate. Neither changes b.
    eventually("b to judge the replays", async || b.replicator.metrics().gossip_ignored > ignored)
        .await;
    // A fresh write from a is the marker that b has processed everything before it.
    a.store.insert(entry(&a.store, &writer, space, "fresh", 3)).unwrap();
    eventually("a fresh write to reach b", async || b.has(&space, "fresh")).await;
    let doc = b.store.get_doc(&space, "doc").unwrap().unwrap();
    assert_eq!(doc["v"].value, Value::Int(2), "a replay took the field back");
    while let Ok(Some(event)) = applied_on_b.try_recv() {
        if let SyncEvent::Applied { doc, .. } = event {
            assert_eq!(doc, "fresh", "a replay was applied");
        }
    }
    assert_ne!(b.state(&space), before);
    assert_eq!(forwarded(&mut seen_on_a, b.net.peer_id(), &replays[..1]), 0, "stale forwarded");
    assert_eq!(strikes_of(&b, mallory.peer_id()).await, 0, "a replay of signed data is no offence");
    assert_eq!(b.replicator.metrics().gossip_rejected, 0);
    mallory.shutdown().await.unwrap();
    for node in [a, b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_capabilities_and_signatures_over_reconciliation_are_refused() {
    let (a, b) = (node().await, node().await);
    let (space, _space_key, writer) = restricted_line(&[&a, &b]).await;
    let mallory = mallory(&space, &b).await;
    let mut events = b.bus.subscribe::<SyncEvent>();
    let statements_before = b.store.statements(&space).unwrap().len();
    let record = b.store.space_record(&space).unwrap().unwrap().encode();

    // A grant to mallory's author in the space key's name with a borrowed signature, a
    // grant it signs itself, one signed by the real writer (who holds write, not admin),
    // and entries by that author leaning on them. The last two are validly signed but
    // powerless: b must neither keep nor forward them.
    let intruder = AuthorKey::generate();
    let self_issued = intruder.grant(space, intruder.public(), Right::Admin, Timestamp(0), None);
    let by_writer = writer.grant(space, intruder.public(), Right::Write, Timestamp(1), None);
    let stolen_signature = *b.store.statements(&space).unwrap()[0].signature();
    let mut claimed = self_issued.statement().clone();
    if let cosmic_auth::Statement::Grant(grant) = &mut claimed {
        grant.issuer = space;
    }
    let forged = cosmic_auth::SignedStatement::from_parts(claimed, stolen_signature);
    assert!(forged.verify().is_err());
    let bad = entry(&b.store, &intruder, space, "forged", 1);
    // And an entry of the real writer whose value was changed after signing.
    let mut tampered = entry(&b.store, &writer, space, "tampered", 1);
    tampered.value = Value::Int(666);
    let message = Message {
        space,
        parts: vec![
            Part::Space {
                record,
                statements: vec![forged.to_bytes(), self_issued.to_bytes(), by_writer.to_bytes()],
            },
            Part::Entry(bad.encode()),
            Part::Entry(tampered.encode()),
        ],
    };
    let bytes = message.encode(1 << 20).unwrap();
    // Mallory's node is bound to the writer (a writer's compromised machine): b shares
    // the space with it, and judges what it sends like anyone's.
    present_binding(&mallory, &b, &writer).await;
    let reply =
        tokio::time::timeout(DEADLINE, mallory.request(b.net.peer_id(), RECON_PROTOCOL, bytes))
            .await
            .unwrap();
    // b answers (a session of its own), but keeps none of it.
    assert!(reply.is_ok(), "{reply:?}");
    assert!(!b.has(&space, "forged"), "an entry on a forged capability was stored");
    assert!(!b.has(&space, "tampered"), "an entry with a forged signature was stored");
    let statements = b.store.statements(&space).unwrap();
    assert!(!statements.iter().any(|s| s.to_bytes() == forged.to_bytes()), "forged grant kept");
    assert_eq!(statements.len(), statements_before, "a powerless statement was kept");
    let mut reasons = Vec::new();
    while let Ok(Some(event)) = events.try_recv() {
        if let SyncEvent::EntryRejected { peer, reason, .. } = event {
            assert_eq!(peer, mallory.peer_id());
            reasons.push(reason);
        }
    }
    assert!(reasons.iter().any(|r| r.contains("statement")), "{reasons:?}");
    let powerless = reasons.iter().filter(|r| r.contains("may not issue")).count();
    assert_eq!(powerless, 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("may not write")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("signature")), "{reasons:?}");
    // A forged signature proves the sender at fault: one strike for the message (the
    // powerless statements and the entry without a capability alone would not be one).
    assert_eq!(strikes_of(&b, mallory.peer_id()).await, 1);
    // Nor does it forward them: a reconciliation of a (the third node) with b brings a
    // nothing new.
    let sessions = a.replicator.sync_now(space).await.unwrap();
    assert!(sessions.iter().any(|session| session.peer == b.net.peer_id()), "{sessions:?}");
    assert!(sessions.iter().all(|session| session.result.is_ok()), "{sessions:?}");
    assert_eq!(a.store.statements(&space).unwrap(), statements);

    // Garbage in place of a reconciliation message is refused with an error.
    let garbage = mallory.request(b.net.peer_id(), RECON_PROTOCOL, vec![wire::WIRE_VERSION, 0xff]);
    let garbage = tokio::time::timeout(DEADLINE, garbage).await.unwrap();
    assert!(matches!(garbage, Err(cosmic_net::Error::Remote { .. })), "{garbage:?}");
    assert_eq!(strikes_of(&b, mallory.peer_id()).await, 2, "garbage is a strike too");
    assert_eq!(strikes_of(&b, a.net.peer_id()).await, 0, "the honest peer was struck");
    assert_eq!(strikes_of(&a, b.net.peer_id()).await, 0, "the honest peer was struck");

    // Honest writes still flow.
    a.store.insert(entry(&a.store, &writer, space, "after", 2)).unwrap();
    eventually("a fresh write to reach b", async || b.has(&space, "after")).await;
    assert!(!a.has(&space, "forged") && !a.has(&space, "tampered"));
    mallory.shutdown().await.unwrap();
    for node in [a, b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_read_gets_nothing_until_granted_and_nothing_new_once_revoked() {
    let (a, b) = (node().await, node().await);
    let (space, space_key, writer) = restricted_line(&[&a]).await;
    let bob = AuthorKey::generate();
    b.replicator.speak_for(bob.clone());
    b.replicator.join(space).await.unwrap();
    b.dial(&a).await;

    // Without a right, b's sessions are refused (a's would be too), and a counts them.
    let refused = |sessions: Vec<cosmic_sync::PeerSession>| {
        !sessions.is_empty()
            && sessions.iter().all(|session| {
                session.result.as_ref().is_err_and(|error| error.contains("may not read"))
            })
    };
    eventually("b's session to be refused", async || {
        refused(b.replicator.sync_now(space).await.unwrap())
    })
    .await;
    a.store.insert(entry(&a.store, &writer, space, "second", 2)).unwrap();
    assert!(refused(a.replicator.sync_now(space).await.unwrap()), "a shared with b");
    assert!(a.replicator.metrics().reads_refused >= 2, "{:?}", a.replicator.metrics());
    assert_eq!(b.state(&space), None, "b holds something of the space");
    assert_eq!(a.replicator.peer_authors(&b.net.peer_id()), vec![bob.public()]);

    // A read grant: the next session brings everything, and live changes follow.
    let now = Timestamp::now();
    a.store.insert_statement(&space_key.grant(bob.public(), Right::Read, now, None)).unwrap();
    eventually("b to receive the space", async || {
        let _ = b.replicator.sync_now(space).await;
        b.state(&space) == a.state(&space) && b.has(&space, "first") && b.has(&space, "second")
    })
    .await;
    a.store.insert(entry(&a.store, &writer, space, "live", 3)).unwrap();
    eventually("a live change to reach b", async || b.has(&space, "live")).await;

    // Revoked: nothing new reaches b, whoever starts the session.
    let revoked_at = Timestamp(Timestamp::now().0 + 1);
    a.store.insert_statement(&space_key.revoke(bob.public(), revoked_at)).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    a.store.insert(entry(&a.store, &writer, space, "after", 4)).unwrap();
    assert!(refused(a.replicator.sync_now(space).await.unwrap()), "a shared after revocation");
    assert!(refused(b.replicator.sync_now(space).await.unwrap()), "a answered after revocation");
    assert!(!b.has(&space, "after"), "a change after the revocation reached b");
    for node in [a, b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_misbound_and_malformed_bindings_are_refused_and_counted() {
    let (a, b) = (node().await, node().await);
    let (space, _space_key, writer) = restricted_line(&[&a, &b]).await;
    let mallory = mallory(&space, &b).await;
    let mallory_key = cosmic_auth::node_key_of(&mallory.peer_id()).unwrap();
    let later = Timestamp(Timestamp::now().0 + 3_600_000);
    let mut forged = PeerBinding::sign(&writer, &mallory_key, later).to_bytes();
    forged[65..73].copy_from_slice(&u64::MAX.to_be_bytes());
    let expired = PeerBinding::sign(&writer, &mallory_key, Timestamp(1)).to_bytes();
    let a_key = cosmic_auth::node_key_of(&a.net.peer_id()).unwrap();
    let for_a = PeerBinding::sign(&writer, &a_key, later).to_bytes();
    let valid = PeerBinding::sign(&writer, &mallory_key, later).to_bytes();
    let cases = [
        (forged, "bad signature"),
        (expired, "expired"),
        (for_a, "is for node"),
        (valid[..100].to_vec(), "not at most"),
        // One bad binding refuses the whole presentation, the good one with it.
        ([valid.clone(), vec![0; cosmic_auth::BINDING_LEN]].concat(), "malformed"),
    ];
    for (bytes, reason) in &cases {
        let request = mallory.request(b.net.peer_id(), BIND_PROTOCOL, bytes.clone());
        let error = tokio::time::timeout(DEADLINE, request).await.unwrap().unwrap_err();
        assert!(error.to_string().contains(reason), "{error} lacks {reason:?}");
    }
    let metrics = b.replicator.metrics();
    assert_eq!(metrics.bindings_refused, cases.len() as u64, "{metrics:?}");
    assert!(b.replicator.peer_authors(&mallory.peer_id()).is_empty());
    assert!(strikes_of(&b, mallory.peer_id()).await >= 1);
    // Unbound, mallory gets nothing of the space.
    let message = Message { space, parts: Vec::new() }.encode(1 << 20).unwrap();
    let request = mallory.request(b.net.peer_id(), RECON_PROTOCOL, message);
    let error = tokio::time::timeout(DEADLINE, request).await.unwrap().unwrap_err();
    assert!(error.to_string().contains("may not read"), "{error}");
    mallory.shutdown().await.unwrap();
    for node in [a, b] {
        node.stop().await;
    }
}
