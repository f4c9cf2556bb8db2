//! Three nodes find each other through one bootstrap node, and find providers.

use cosmic_net::{Config, Keypair};

use crate::common::{address_of, eventually, is_connected, node, node_with, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_find_each_other_through_a_bootstrap_node() {
    let (bootstrap, _bootstrap_bus) = node().await;
    let mut config = Config::local();
    config.bootstrap = vec![address_of(&bootstrap).await];
    let (a, _a_bus) = node_with(Keypair::generate_ed25519(), config.clone()).await;
    eventually(|| is_connected(&a, bootstrap.peer_id())).await;
    let (c, _c_bus) = node_with(Keypair::generate_ed25519(), config).await;

    // Neither a nor c was told of the other: Kademlia walks through the bootstrap node.
    eventually(|| is_connected(&c, a.peer_id())).await;
    eventually(|| is_connected(&a, c.peer_id())).await;

    within(a.provide(&b"space-1"[..])).await.unwrap();
    let providers = within(c.find_providers(&b"space-1"[..])).await.unwrap();
    assert_eq!(providers, vec![a.peer_id()]);
    let none = within(c.find_providers(&b"space-2"[..])).await.unwrap();
    assert!(none.is_empty());
}
