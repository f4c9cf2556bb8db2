//! A gossip message reaches every node of a chain of five, through manual validation.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use cosmic_net::{Error, Net, PeerId, PublishFailure, TopicSubscribed, Verdict};

use crate::common::{address_of, next_matching, next_message, node, within};

const TOPIC: &str = "cosmic/space/1/test";

/// Accepts every message on `net` and passes (receiver, data) to `sink`.
async fn accept_all(net: Net, sink: mpsc::Sender<(PeerId, Bytes)>) {
    let mut inbox = within(net.gossip_inbox(64)).await.expect("a gossip handler");
    tokio::spawn(async move {
        while let Some(message) = inbox.messages.recv().await {
            let _ = net
                .report_validation(message.message_id, message.propagation_source, Verdict::Accept)
                .await;
            let _ = sink.send((net.peer_id(), message.data)).await;
        }
    });
}

/// Publishes, retrying while no peer's subscription has arrived yet.
async fn publish_when_ready(net: &Net, data: &'static [u8]) {
    within(async {
        loop {
            match net.publish(TOPIC, data).await {
                Ok(_) => return,
                Err(Error::Publish { reason: PublishFailure::NoPeersSubscribed, .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("publish failed: {error}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gossip_message_reaches_all_of_five_nodes() {
    let mut nodes = Vec::new();
    let (sink, mut received) = mpsc::channel(64);
    for _ in 0..5 {
        let (net, bus) = node().await;
        accept_all(net.clone(), sink.clone()).await;
        let subscribed = bus.subscribe::<TopicSubscribed>();
        assert!(within(net.subscribe(TOPIC)).await.unwrap());
        nodes.push((net, subscribed));
    }
    // A chain 0 - 1 - 2 - 3 - 4: node 4 only hears through three forwarders.
    for index in 1..nodes.len() {
        let previous = address_of(&nodes[index - 1].0).await;
        within(nodes[index].0.dial(previous)).await.unwrap();
    }
    for index in 1..nodes.len() {
        let previous = nodes[index - 1].0.peer_id();
        next_matching(&mut nodes[index].1, |event| event.peer_id == previous).await;
    }

    publish_when_ready(&nodes[0].0, b"hello, five").await;
    let mut reached = std::collections::HashSet::new();
    while reached.len() < 4 {
        let (receiver, data) = within(received.recv()).await.expect("a message");
        assert_eq!(&data[..], b"hello, five");
        reached.insert(receiver);
    }
    assert!(!reached.contains(&nodes[0].0.peer_id()), "no echo to the publisher");

    // Content-addressed ids: the same bytes again are a duplicate.
    let duplicate = nodes[0].0.publish(TOPIC, &b"hello, five"[..]).await;
    assert!(
        matches!(duplicate, Err(Error::Publish { reason: PublishFailure::Duplicate, .. })),
        "{duplicate:?}"
    );
    // Larger than max_gossip_size: refused before it leaves.
    let big = vec![7u8; 2 * 1024 * 1024 + 1];
    assert!(matches!(nodes[0].0.publish(TOPIC, big).await, Err(Error::MessageTooLarge { .. })));

    // And back from the other end.
    publish_when_ready(&nodes[4].0, b"and back").await;
    let mut reached = std::collections::HashSet::new();
    while reached.len() < 4 {
        let (receiver, data) = within(received.recv()).await.expect("a message");
        if &data[..] == b"and back" {
            reached.insert(receiver);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_messages_are_not_forwarded_and_count_against_the_sender() {
    let (a, _a_bus) = node().await;
    let (b, b_bus) = node().await;
    let (c, _c_bus) = node().await;
    let mut b_messages = within(b.gossip_inbox(64)).await.unwrap().messages;
    let mut c_messages = within(c.gossip_inbox(64)).await.unwrap().messages;
    let mut b_subscribed = b_bus.subscribe::<TopicSubscribed>();
    for net in [&a, &b, &c] {
        within(net.subscribe(TOPIC)).await.unwrap();
    }
    within(b.dial(address_of(&a).await)).await.unwrap();
    within(c.dial(address_of(&b).await)).await.unwrap();
    // The two subscriptions arrive in either order.
    let mut pending = std::collections::HashSet::from([a.peer_id(), c.peer_id()]);
    while !pending.is_empty() {
        let event = next_matching(&mut b_subscribed, |_| true).await;
        pending.remove(&event.peer_id);
    }

    publish_when_ready(&a, b"bad").await;
    let message = next_message(&mut b_messages).await;
    assert_eq!(message.source, Some(a.peer_id()));
    within(b.report_validation(message.message_id, message.propagation_source, Verdict::Reject))
        .await
        .unwrap();
    // The rejected message never reaches c; the next, accepted one does.
    publish_when_ready(&a, b"good").await;
    let message = next_message(&mut b_messages).await;
    assert_eq!(&message.data[..], b"good");
    within(b.report_validation(message.message_id, message.propagation_source, Verdict::Accept))
        .await
        .unwrap();
    let at_c = next_message(&mut c_messages).await;
    assert_eq!(&at_c.data[..], b"good");

    let peers = within(b.peers()).await.unwrap();
    let a_info = peers.iter().find(|peer| peer.peer_id == a.peer_id()).unwrap();
    assert_eq!(a_info.strikes, 1);
    assert_eq!(within(b.stats()).await.unwrap().gossip_rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_above_the_receivers_limit_is_rejected() {
    let (sender, _sender_bus) = node().await;
    let mut config = cosmic_net::Config::local();
    config.max_gossip_size = 4096;
    let (receiver, _receiver_bus) =
        crate::common::node_with(cosmic_net::Keypair::generate_ed25519(), config).await;
    let mut messages = within(receiver.gossip_inbox(64)).await.unwrap().messages;
    let mut subscribed = sender.bus().subscribe::<TopicSubscribed>();
    within(sender.subscribe(TOPIC)).await.unwrap();
    within(receiver.subscribe(TOPIC)).await.unwrap();
    within(sender.dial(address_of(&receiver).await)).await.unwrap();
    next_matching(&mut subscribed, |event| event.peer_id == receiver.peer_id()).await;

    within(sender.publish(TOPIC, vec![1u8; 8192])).await.unwrap();
    publish_when_ready(&sender, b"small").await;
    let message = next_message(&mut messages).await;
    assert_eq!(&message.data[..], b"small", "the large message never reaches the application");
    let stats = within(receiver.stats()).await.unwrap();
    assert_eq!(stats.gossip_rejected, 1);
    let peers = within(receiver.peers()).await.unwrap();
    let info = peers.iter().find(|peer| peer.peer_id == sender.peer_id()).unwrap();
    assert_eq!(info.strikes, 1);
}
