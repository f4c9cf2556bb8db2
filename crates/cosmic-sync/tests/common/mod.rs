//! The kit of cosmic-sync's integration tests: real nodes on loopback (a libp2p swarm, a
//! redb store, a replicator and, when asked, a blob store), and waiting with a deadline.
//! Each test binary takes it with `mod common;`.

#![allow(dead_code, reason = "each test binary uses a part of the kit")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cosmic_auth::PublicKey;
use cosmic_blobs::Blobs;
use cosmic_events::Bus;
use cosmic_net::{Config, Keypair, Net};
use cosmic_store::{Options, Store, Value};
use cosmic_sync::{BlobFetcher, Replicator, SyncOptions};

/// How long any wait of a test may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(25);

/// One node: its data dir, swarm, store, event bus and replicator.
pub(crate) struct Node {
    pub(crate) dir: PathBuf,
    pub(crate) keypair: Keypair,
    pub(crate) net: Net,
    pub(crate) store: Store,
    pub(crate) bus: Bus,
    pub(crate) replicator: Replicator,
    blobs: Option<Blobs>,
    /// The data dir, when the kit made it (removed with the node).
    _temp: Option<tempfile::TempDir>,
}

/// How to start a [`Node`]: by default in a new temporary dir, with a new key, default
/// store options, and reconciliation every 500 ms.
pub(crate) struct NodeBuilder {
    dir: Option<PathBuf>,
    keypair: Option<Keypair>,
    store: Options,
    sync: SyncOptions,
    blobs: Option<Blobs>,
}

impl Node {
    /// A node in a new temporary dir with the defaults of [`NodeBuilder`].
    pub(crate) async fn new() -> Node {
        Node::builder().start().await
    }

    pub(crate) fn builder() -> NodeBuilder {
        let sync = SyncOptions {
            reconcile_interval: Duration::from_millis(500),
            ..SyncOptions::default()
        };
        NodeBuilder { dir: None, keypair: None, store: Options::default(), sync, blobs: None }
    }

    /// The node's blob store; panics if it was started without one.
    pub(crate) fn blobs(&self) -> &Blobs {
        self.blobs.as_ref().expect("a node started with blobs")
    }

    /// Dials `other`'s first listening address.
    pub(crate) async fn dial(&self, other: &Node) {
        self.dial_net(&other.net).await;
    }

    /// Dials the first listening address of a bare swarm.
    pub(crate) async fn dial_net(&self, other: &Net) {
        let address = other.listen_addrs().await.unwrap().remove(0);
        self.net.dial(address).await.unwrap();
    }

    /// The space's state hash, or `None` while the node does not hold the space.
    pub(crate) fn state(&self, space: &PublicKey) -> Option<[u8; 32]> {
        self.store.space_record(space).unwrap()?;
        Some(self.store.state_hash(space).unwrap())
    }

    /// Whether the node holds a live document `doc` of `space`.
    pub(crate) fn has(&self, space: &PublicKey, doc: &str) -> bool {
        self.store.get_doc(space, doc).unwrap().is_some()
    }

    /// The current value of one field, if any.
    pub(crate) fn value(&self, space: &PublicKey, doc: &str, field: &str) -> Option<Value> {
        self.store.get_entry(space, doc, field).unwrap().map(|entry| entry.value)
    }

    /// Stops the replicator, the blob store and the swarm; gives back the dir and the key
    /// for a restart (a dir the kit made is removed).
    pub(crate) async fn stop(self) -> (PathBuf, Keypair) {
        self.replicator.shutdown().await;
        if let Some(blobs) = &self.blobs {
            blobs.shutdown().await.unwrap();
        }
        self.net.shutdown().await.unwrap();
        (self.dir, self.keypair)
    }
}

impl NodeBuilder {
    /// Runs in `dir` (kept after the node stops) instead of a new temporary dir.
    pub(crate) fn dir(mut self, dir: &Path) -> NodeBuilder {
        self.dir = Some(dir.to_owned());
        self
    }

    pub(crate) fn keypair(mut self, keypair: Keypair) -> NodeBuilder {
        self.keypair = Some(keypair);
        self
    }

    pub(crate) fn store_options(mut self, options: Options) -> NodeBuilder {
        self.store = options;
        self
    }

    pub(crate) fn sync_options(mut self, options: SyncOptions) -> NodeBuilder {
        self.sync = options;
        self
    }

    /// Periodic reconciliation every `interval`.
    pub(crate) fn reconcile_every(mut self, interval: Duration) -> NodeBuilder {
        self.sync.reconcile_interval = interval;
        self
    }

    /// Fetches linked blobs into `blobs`.
    pub(crate) fn blobs(mut self, blobs: Blobs) -> NodeBuilder {
        self.blobs = Some(blobs);
        self
    }

    pub(crate) async fn start(self) -> Node {
        let temp = match self.dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().unwrap()),
        };
        let dir = self.dir.unwrap_or_else(|| temp.as_ref().unwrap().path().to_owned());
        let keypair = self.keypair.unwrap_or_else(Keypair::generate_ed25519);
        let bus = Bus::new();
        let net = Net::spawn(keypair.clone(), Config::local(), bus.clone()).await.unwrap();
        let store = open_store(&dir, self.store).await;
        let fetcher = self
            .blobs
            .clone()
            .map(|blobs| std::sync::Arc::new(blobs) as std::sync::Arc<dyn BlobFetcher>);
        let replicator =
            Replicator::spawn(self.sync, net.clone(), store.clone(), bus.clone(), fetcher, &dir)
                .await
                .unwrap();
        Node { dir, keypair, net, store, bus, replicator, blobs: self.blobs, _temp: temp }
    }
}

/// Opens the store of `dir`, waiting for the tasks of a stopped replicator to let go of it.
pub(crate) async fn open_store(dir: &Path, options: Options) -> Store {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match Store::open(dir.join("store.redb"), options.clone()) {
            Err(cosmic_store::Error::AlreadyOpen { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            result => return result.unwrap(),
        }
    }
}

/// Polls `condition` every 50 ms until it holds, failing after [`DEADLINE`].
pub(crate) async fn eventually(what: &str, condition: impl AsyncFnMut() -> bool) {
    eventually_within(what, DEADLINE, condition).await;
}

/// Polls `condition` every 50 ms until it holds, failing after `limit`.
pub(crate) async fn eventually_within(
    what: &str,
    limit: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `data` on `topic` until gossipsub takes it (it refuses while no peer has
/// subscribed), failing after [`DEADLINE`].
pub(crate) async fn publish_until_sent(net: &Net, topic: &str, data: Vec<u8>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while let Err(error) = net.publish(topic, data.clone()).await {
        assert!(tokio::time::Instant::now() < deadline, "publishing failed: {error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every node holds the space with one state hash.
pub(crate) fn all_equal(nodes: &[&Node], space: &PublicKey) -> bool {
    let first = nodes[0].state(space);
    first.is_some() && nodes.iter().all(|node| node.state(space) == first)
}

/// `n` temporary dirs.
pub(crate) fn dirs(n: usize) -> Vec<tempfile::TempDir> {
    (0..n).map(|_| tempfile::tempdir().unwrap()).collect()
}
