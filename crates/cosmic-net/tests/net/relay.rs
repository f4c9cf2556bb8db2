//! A reaches C through relay B.

use std::time::Duration;

use libp2p::multiaddr::Protocol;

use cosmic_net::{Config, Keypair, ListenAddrAdded, PeerConnected};

use crate::common::{address_of, is_connected, next_matching, node, node_with, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaches_c_through_relay_b() {
    // Short idle timeouts: the reservation's connection must survive them.
    let mut relay_config = Config::local();
    relay_config.relay_server = true;
    relay_config.idle_timeout = Duration::from_millis(300);
    let (b, _b_bus) = node_with(Keypair::generate_ed25519(), relay_config).await;
    let mut listener_config = Config::local();
    listener_config.idle_timeout = Duration::from_millis(300);
    let (c, c_bus) = node_with(Keypair::generate_ed25519(), listener_config).await;
    let (a, a_bus) = node().await;
    let mut c_listening = c_bus.subscribe::<ListenAddrAdded>();
    let mut a_connected = a_bus.subscribe::<PeerConnected>();

    let circuit = address_of(&b).await.with(Protocol::P2pCircuit);
    within(c.listen_on(circuit.clone())).await.unwrap();
    next_matching(&mut c_listening, |event| {
        event.address.iter().any(|protocol| protocol == Protocol::P2pCircuit)
    })
    .await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(is_connected(&c, b.peer_id()).await, "c keeps its relay");
    assert!(is_connected(&b, c.peer_id()).await, "b keeps its reserved client");

    let through_b = circuit.with(Protocol::P2p(c.peer_id()));
    assert_eq!(within(a.dial(through_b)).await.unwrap(), c.peer_id());
    let event = next_matching(&mut a_connected, |event| event.peer_id == c.peer_id()).await;
    assert!(event.relayed, "first connection runs through the relay: {}", event.address);
}
