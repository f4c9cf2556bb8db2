//! A restarted node reconnects from its persisted peer list, without mDNS or bootstrap.

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
