//! Helpers shared by the integration tests.

use std::future::Future;
use std::time::Duration;

use libp2p::multiaddr::Protocol;

use cosmic_events::{Bus, Event, Subscriber};
use cosmic_net::{Config, Keypair, Multiaddr, Net, PeerId};

/// The bound on any single wait in these tests.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(20);

/// A node on 127.0.0.1 with a fresh key.
pub(crate) async fn node() -> (Net, Bus) {
    node_with(Keypair::generate_ed25519(), Config::local()).await
}

/// A node with the given key and config.
pub(crate) async fn node_with(keypair: Keypair, config: Config) -> (Net, Bus) {
    let bus = Bus::new();
    let net = Net::spawn(keypair, config, bus.clone()).await.expect("spawn a node");
    (net, bus)
}

/// The node's first listen address, with `/p2p/<peer id>`.
pub(crate) async fn address_of(net: &Net) -> Multiaddr {
    let address = within(net.listen_addrs()).await.expect("listen addresses");
    let address = address.into_iter().next().expect("one listen address");
    address.with(Protocol::P2p(net.peer_id()))
}

/// Awaits `future`, failing the test if it takes longer than [`TIMEOUT`].
pub(crate) async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, future).await.expect("timed out")
}

/// The next event on `subscriber` that satisfies `predicate`, within [`TIMEOUT`].
pub(crate) async fn next_matching<E: Event>(
    subscriber: &mut Subscriber<E>,
    mut predicate: impl FnMut(&E) -> bool,
) -> E {
    within(async {
        loop {
            match subscriber.recv().await {
                Ok(event) if predicate(&event) => return event,
                Ok(_) | Err(cosmic_events::RecvError::Lagged { .. }) => {}
                Err(error) => panic!("bus closed: {error}"),
            }
        }
    })
    .await
}

/// The next message on a gossip handler's queue, within [`TIMEOUT`].
pub(crate) async fn next_message(
    messages: &mut tokio::sync::mpsc::Receiver<cosmic_net::GossipMessage>,
) -> cosmic_net::GossipMessage {
    within(messages.recv()).await.expect("the gossip handler's queue is open")
}

/// Polls `check` every 50 ms until it returns true, within [`TIMEOUT`].
pub(crate) async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Whether `net` has an open connection to `peer_id`.
pub(crate) async fn is_connected(net: &Net, peer_id: PeerId) -> bool {
    net.connected_peers().await.expect("peers").contains(&peer_id)
}
