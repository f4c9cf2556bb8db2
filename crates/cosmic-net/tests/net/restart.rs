//! A restarted node reconnects from its persisted peer list, without mDNS or bootstrap.

use libp2p::multiaddr::Protocol;

use cosmic_net::{Config, Keypair, PeerConnected};

use crate::common::{address_of, next_matching, node, node_with, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_reconnects_from_its_peers_file() {
    let dir = tempfile::tempdir().unwrap();
    let peers_file = dir.path().join("peers.json");
    let (b, _b_bus) = node().await;
    let keypair = Keypair::generate_ed25519();
    let mut config = Config::local();
    config.peers_file = Some(peers_file.clone());

    let (a, _a_bus) = node_with(keypair.clone(), config.clone()).await;
    within(a.dial(address_of(&b).await)).await.unwrap();
    within(a.shutdown()).await.unwrap();
    let written = std::fs::read_to_string(&peers_file).unwrap();
    assert!(written.contains(&b.peer_id().to_base58()), "{written}");

    let bus = cosmic_events::Bus::new();
    let mut connected = bus.subscribe::<PeerConnected>();
    let a = cosmic_net::Net::spawn(keypair, config, bus).await.unwrap();
    let event = next_matching(&mut connected, |event| event.peer_id == b.peer_id()).await;
    assert_eq!(event.direction, cosmic_net::Direction::Outbound);
    within(a.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_peer_sharing_a_topic_is_redialled() {
    const TOPIC: &str = "cosmic/space/1/shared";
    let b_key = Keypair::generate_ed25519();
    let (b, _b_bus) = node_with(b_key.clone(), Config::local()).await;
    let (a, a_bus) = node().await;
    let mut a_connected = a_bus.subscribe::<PeerConnected>();
    let mut a_subscribed = a_bus.subscribe::<cosmic_net::TopicSubscribed>();
    within(a.subscribe(TOPIC)).await.unwrap();
    within(b.subscribe(TOPIC)).await.unwrap();
    let b_address = address_of(&b).await;
    within(a.dial(b_address.clone())).await.unwrap();
    next_matching(&mut a_subscribed, |event| event.peer_id == b.peer_id()).await;
    next_matching(&mut a_connected, |event| event.peer_id == b.peer_id()).await;

    within(b.shutdown()).await.unwrap();
    let mut config = Config::local();
    config.listen =
        vec![b_address.iter().filter(|protocol| !matches!(protocol, Protocol::P2p(_))).collect()];
    let (b, _b_bus) = node_with(b_key, config).await;
    let event = next_matching(&mut a_connected, |event| event.peer_id == b.peer_id()).await;
    assert_eq!(event.direction, cosmic_net::Direction::Outbound, "a dialled b again");
}
