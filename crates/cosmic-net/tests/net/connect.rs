//! Two nodes connect by explicit dial.

use cosmic_net::{Direction, PeerConnected, PeerDisconnected, PeerState};

use crate::common::{address_of, eventually, is_connected, next_matching, node, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_connect_by_explicit_dial() {
    let (a, _a_bus) = node().await;
    let (b, b_bus) = node().await;
    let mut b_connected = b_bus.subscribe::<PeerConnected>();
    let mut b_disconnected = b_bus.subscribe::<PeerDisconnected>();

    let b_address = address_of(&b).await;
    assert_eq!(within(a.dial(b_address.clone())).await.unwrap(), b.peer_id());
    // Dialling a connected peer again answers at once.
    assert_eq!(within(a.dial(b_address)).await.unwrap(), b.peer_id());

    let event = next_matching(&mut b_connected, |event| event.peer_id == a.peer_id()).await;
    assert_eq!(event.direction, Direction::Inbound);
    assert!(!event.relayed);
    eventually(|| is_connected(&a, b.peer_id())).await;

    let peers = within(a.peers()).await.unwrap();
    let info = peers.iter().find(|peer| peer.peer_id == b.peer_id()).expect("b is known");
    assert_eq!(info.state, PeerState::Connected);
    assert_eq!(info.connections.len(), 1);
    assert_eq!(info.connections[0].direction, Direction::Outbound);
    let stats = within(a.stats()).await.unwrap();
    assert_eq!((stats.connected_peers, stats.connections), (1, 1));

    within(a.shutdown()).await.unwrap();
    within(a.closed()).await;
    next_matching(&mut b_disconnected, |event| event.peer_id == a.peer_id()).await;
    assert!(a.peers().await.is_err(), "a stopped handle fails");
    within(b.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peer_cannot_connect() {
    let (a, _a_bus) = node().await;
    let mut config = cosmic_net::Config::local();
    config.block = vec![a.peer_id()];
    let (b, _b_bus) =
        crate::common::node_with(cosmic_net::Keypair::generate_ed25519(), config).await;
    // The transport handshake may complete before b refuses the connection, so the dial
    // itself can succeed; the connection must not stay.
    let _ = within(a.dial(address_of(&b).await)).await;
    eventually(|| async { b.stats().await.unwrap().connections_denied >= 1 }).await;
    eventually(|| async { !is_connected(&a, b.peer_id()).await }).await;
    assert!(!is_connected(&b, a.peer_id()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_and_counts() {
    let mut config = cosmic_net::Config::local();
    config.max_connections = 1;
    let (hub, _hub_bus) =
        crate::common::node_with(cosmic_net::Keypair::generate_ed25519(), config).await;
    let (first, _first_bus) = node().await;
    let (second, _second_bus) = node().await;
    let hub_address = address_of(&hub).await;
    within(first.dial(hub_address.clone())).await.unwrap();
    eventually(|| is_connected(&hub, first.peer_id())).await;
    let _ = within(second.dial(hub_address)).await;
    eventually(|| async { hub.stats().await.unwrap().connections_denied >= 1 }).await;
    assert_eq!(hub.connected_peers().await.unwrap(), vec![first.peer_id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_bootstrap_peer_is_redialled() {
    let bootstrap_key = cosmic_net::Keypair::generate_ed25519();
    let (bootstrap, _bootstrap_bus) =
        crate::common::node_with(bootstrap_key.clone(), cosmic_net::Config::local()).await;
    let bootstrap_address = address_of(&bootstrap).await;
    let mut config = cosmic_net::Config::local();
    config.bootstrap = vec![bootstrap_address.clone()];
    // Subscribe before the node starts: it dials its bootstrap peer at once.
    let a_bus = cosmic_events::Bus::new();
    let mut a_connected = a_bus.subscribe::<PeerConnected>();
    let mut a_disconnected = a_bus.subscribe::<PeerDisconnected>();
    let a = cosmic_net::Net::spawn(cosmic_net::Keypair::generate_ed25519(), config, a_bus)
        .await
        .expect("spawn a node");
    next_matching(&mut a_connected, |event| event.peer_id == bootstrap.peer_id()).await;

    // The bootstrap node goes away and comes back on the same address.
    within(bootstrap.shutdown()).await.unwrap();
    next_matching(&mut a_disconnected, |event| event.peer_id == bootstrap.peer_id()).await;
    let info = a.peers().await.unwrap().into_iter().find(|p| p.peer_id == bootstrap.peer_id());
    assert!(
        matches!(info.map(|info| info.state), Some(PeerState::Reconnecting { .. })),
        "a plans a redial"
    );
    let mut config = cosmic_net::Config::local();
    config.listen = vec![
        bootstrap_address
            .iter()
            .filter(|protocol| !matches!(protocol, libp2p::multiaddr::Protocol::P2p(_)))
            .collect(),
    ];
    let (bootstrap, _bootstrap_bus) = crate::common::node_with(bootstrap_key, config).await;
    next_matching(&mut a_connected, |event| event.peer_id == bootstrap.peer_id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_not_redialled() {
    let mut config = cosmic_net::Config::local();
    config.idle_timeout = std::time::Duration::from_millis(500);
    let (a, a_bus) =
        crate::common::node_with(cosmic_net::Keypair::generate_ed25519(), config.clone()).await;
    let (b, _b_bus) =
        crate::common::node_with(cosmic_net::Keypair::generate_ed25519(), config).await;
    let mut a_disconnected = a_bus.subscribe::<PeerDisconnected>();
    within(a.dial(address_of(&b).await)).await.unwrap();
    next_matching(&mut a_disconnected, |event| event.peer_id == b.peer_id()).await;
    let peers = a.peers().await.unwrap();
    let info = peers.iter().find(|peer| peer.peer_id == b.peer_id()).expect("b stays known");
    assert_eq!(info.state, PeerState::Disconnected);
    assert!(!info.addresses.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_connect_over_quic_with_every_protocol_on() {
    // The defaults (mDNS, AutoNAT, relay client) on loopback ports picked by the system.
    let config = || {
        let mut config = cosmic_net::Config::default();
        config.listen = vec![
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
        ];
        config
    };
    let (a, _a_bus) =
        crate::common::node_with(cosmic_net::Keypair::generate_ed25519(), config()).await;
    let (b, _b_bus) =
        crate::common::node_with(cosmic_net::Keypair::generate_ed25519(), config()).await;
    let quic = within(b.listen_addrs())
        .await
        .unwrap()
        .into_iter()
        .find(|address| address.to_string().contains("quic-v1"))
        .expect("a quic listen address")
        .with(libp2p::multiaddr::Protocol::P2p(b.peer_id()));
    assert_eq!(within(a.dial(quic)).await.unwrap(), b.peer_id());
    let peers = within(a.peers()).await.unwrap();
    let info = peers.iter().find(|peer| peer.peer_id == b.peer_id()).unwrap();
    assert!(info.connections[0].address.to_string().contains("quic-v1"));
}
