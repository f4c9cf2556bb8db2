//! The [`Node`] handle: one running node inside this process, and the handles an
//! application uses to drive it ([`Spaces`], [`Docs`], [`Peers`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cosmic_auth::{
    AuthorId, NodeKey, Right, SignedStatement, SpaceId, SpaceKey, SpaceMode, Timestamp,
};
use cosmic_blobs::Blobs;
use cosmic_config::Config;
use cosmic_events::Bus;
use cosmic_net::{Multiaddr, Net, PeerInfo};
use cosmic_store::{Document, Fingerprint, Store, Subscription, Value};
use cosmic_sync::{Replicator, SyncOptions};
use libp2p_identity::PeerId;
use tokio_util::sync::CancellationToken;

use crate::authors::{Authors, Identity};
use crate::data_dir::{BLOBS_DIR, DataDir, STORE_FILE};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::supervisor::{Backoff, Supervisor};

mod docs;
mod expiry;
mod peers;
mod spaces;

pub use docs::{Docs, GetOptions};
pub use peers::Peers;
pub use spaces::{SpaceSummary, Spaces};

/// How long [`Node::shutdown`] waits for background tasks before giving up.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Name of the file, in the data dir, where the network layer keeps known peers.
const PEERS_FILE: &str = "peers.json";

/// Lifecycle events the node publishes on its [`Bus`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// The node is up.
    Started {
        /// Its identity.
        peer_id: PeerId,
    },
    /// The node was asked to stop and is ending its tasks.
    Stopping,
}

/// What every handle of one node shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) data_dir: DataDir,
    pub(crate) node_key: NodeKey,
    pub(crate) authors: Authors,
    pub(crate) store: Store,
    pub(crate) net: Net,
    pub(crate) blobs: Blobs,
    pub(crate) bus: Bus,
    pub(crate) metrics: Metrics,
    pub(crate) replicator: Replicator,
    pub(crate) started_at: Instant,
    /// Wakes the task that seals expired grants when this node issues a grant with an
    /// expiry (see `node/expiry.rs`).
    pub(crate) expiry_added: tokio::sync::Notify,
}

/// A running node: its locked data dir, identity, store, network, event bus and
/// supervised background tasks (the HTTP API among them).
///
/// Dropping a `Node` stops its tasks abruptly; call [`Node::shutdown`] to stop cleanly.
/// The handles it gives out ([`Node::spaces`], ...) are cheap clones that keep the store
/// open while they live; drop them before (or soon after) shutting down.
#[derive(Debug)]
pub struct Node {
    pub(crate) shared: Arc<Shared>,
    supervisor: Supervisor,
    api_addr: Option<SocketAddr>,
}

impl Node {
    /// Starts a node: locks the data dir named by `config.node.data_dir` (failing at once
    /// if another process uses it), creates whatever the dir is missing, opens the store,
    /// starts the network and, when `api.enabled`, serves the HTTP API on `api.addr`.
    pub async fn start(config: Config) -> Result<Self> {
        Self::start_with_identities(config, Vec::new()).await
    }

    /// Like [`Node::start`], with keystore identities (unlocked by the caller) that writes
    /// may choose as their signer besides the node author (see [`Docs::put_as`]).
    pub async fn start_with_identities(config: Config, identities: Vec<Identity>) -> Result<Self> {
        let (data_dir, node_key, author, store) = open_data_dir(&config).await?;
        // Bind the API first, so that a taken port fails the start before anything else runs.
        let api_listener = if config.api.enabled {
            let (listener, bound) = bind_api(config.api.addr)?;
            Some((listener, bound, data_dir.api_token()?))
        } else {
            None
        };
        let bus = Bus::new();
        let mut net_config = cosmic_net::Config::from_net_config(&config.net)?;
        net_config.peers_file = Some(data_dir.path().join(PEERS_FILE));
        let net = Net::spawn(node_key.to_libp2p_keypair(), net_config, bus.clone()).await?;
        let readers = crate::blob_access::SpaceReaders::new(store.clone());
        let blobs = Blobs::builder(&node_key)
            .config(blobs_config(&config))
            .bus(bus.clone())
            .access_policy(readers.clone())
            .address_lookup(crate::blob_peers::NetLookup::new(net.clone()))
            .open(data_dir.path().join(BLOBS_DIR))
            .await?;
        let fetcher = crate::blob_peers::NodeBlobFetcher::new(net.clone(), blobs.clone());
        let replicator = Replicator::spawn(
            SyncOptions::from_config(&config.sync, &config.net, &config.blobs),
            net.clone(),
            store.clone(),
            bus.clone(),
            Some(Arc::new(fetcher)),
            data_dir.path(),
        )
        .await?;
        readers.set_replicator(replicator.clone());
        // Peers share a restricted space with this node when one of the authors it speaks
        // for may read there: its own, and each unlocked identity.
        replicator.speak_for(author.clone());
        for identity in &identities {
            replicator.speak_for(identity.key.clone());
        }
        // The stores made their files with the process's umask: take the rest away.
        let data_dir = blocking(move || {
            for fix in data_dir.make_private()? {
                tracing::debug!(path = %fix.path.display(), "made a new file private");
            }
            Ok(data_dir)
        })
        .await?;
        let shared = Arc::new(Shared {
            config,
            data_dir,
            node_key,
            authors: Authors { node: author, identities },
            store,
            net,
            blobs,
            bus: bus.clone(),
            metrics: Metrics::new(),
            replicator,
            started_at: Instant::now(),
            expiry_added: tokio::sync::Notify::new(),
        });
        let mut supervisor = Supervisor::new(bus, CancellationToken::new(), Backoff::default());
        spawn_background(&mut supervisor, &shared, readers);
        let api_addr = match api_listener {
            Some((listener, bound, token)) => {
                crate::api::spawn(&mut supervisor, shared.clone(), token, listener);
                if let Err(error) = shared.data_dir.write_api_url(&format!("http://{bound}")) {
                    tracing::warn!(%error, "cannot record the API URL for the CLI client");
                }
                Some(bound)
            }
            None => None,
        };
        let node = Self { shared, supervisor, api_addr };
        node.shared.bus.publish(NodeEvent::Started { peer_id: node.peer_id() });
        Ok(node)
    }

    /// The node's libp2p identity, derived from its node key.
    pub fn peer_id(&self) -> PeerId {
        self.shared.node_key.peer_id()
    }

    /// The author id that signs this node's own writes (the `author.key` of its data dir).
    pub fn author_id(&self) -> AuthorId {
        self.shared.authors.node.public()
    }

    /// The keystore identities unlocked for this run: alias and author id of each.
    pub fn identities(&self) -> Vec<(String, AuthorId)> {
        let identities = &self.shared.authors.identities;
        identities.iter().map(|identity| (identity.alias.clone(), identity.key.public())).collect()
    }

    /// The data dir this node has locked.
    pub fn data_dir(&self) -> &Path {
        self.shared.data_dir.path()
    }

    /// The configuration the node was started with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The event bus every layer of this node publishes on.
    pub fn events(&self) -> &Bus {
        &self.shared.bus
    }

    /// How long the node has been running.
    pub fn uptime(&self) -> Duration {
        self.shared.started_at.elapsed()
    }

    /// The address the HTTP API is served on (`None` when `api.enabled` is false).
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// The peer-to-peer addresses this node listens on, with their real ports.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        Ok(self.shared.net.listen_addrs().await?)
    }

    /// The spaces of this node.
    pub fn spaces(&self) -> Spaces {
        Spaces { shared: self.shared.clone() }
    }

    /// The documents of this node's spaces.
    pub fn docs(&self) -> Docs {
        Docs { shared: self.shared.clone() }
    }

    /// The peers of this node.
    pub fn peers(&self) -> Peers {
        Peers { shared: self.shared.clone() }
    }

    /// The document store itself, for what the handles do not cover.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The blob store: add, read, fetch (from peers found over the network), pin.
    pub fn blobs(&self) -> &Blobs {
        &self.shared.blobs
    }

    /// The replicator: joined spaces, sync sessions and their statistics.
    pub fn replicator(&self) -> &Replicator {
        &self.shared.replicator
    }

    /// The network handle itself, for what the handles do not cover.
    pub fn net(&self) -> &Net {
        &self.shared.net
    }

    /// Stops the node: tells every background task to end, waits up to
    /// [`SHUTDOWN_DEADLINE`] for them, stops the network and closes the store.
    pub async fn shutdown(mut self) -> Result<()> {
        self.shared.bus.publish(NodeEvent::Stopping);
        let ended = self.supervisor.shutdown(SHUTDOWN_DEADLINE).await;
        if self.api_addr.is_some() {
            self.shared.data_dir.remove_api_url();
        }
        self.shared.replicator.shutdown().await;
        if let Err(error) = self.shared.blobs.shutdown().await {
            tracing::warn!(%error, "blob store did not shut down cleanly");
        }
        if let Err(error) = self.shared.net.shutdown().await {
            tracing::debug!(%error, "network already stopped");
        }
        // With eventual durability the last writes may still be in memory: write them out
        // now rather than whenever the last handle goes.
        let store = self.shared.store.clone();
        if let Err(error) = blocking(move || Ok(store.flush()?)).await {
            tracing::error!(%error, "writing the last writes to disk failed");
        }
        let data_dir = self.shared.data_dir.path().to_path_buf();
        // The store closes (and the data dir lock is released) with the last handle.
        drop(self.shared);
        if !ended {
            return Err(Error::ShutdownTimeout { seconds: SHUTDOWN_DEADLINE.as_secs() });
        }
        tracing::info!(data_dir = %data_dir.display(), "stopped");
        Ok(())
    }
}

/// The blob settings from the `[blobs]` section. The blob endpoint (UDP) binds to the
/// IP of the first `net.listen` address, so a node kept on loopback stays there.
/// Locks the data dir (and makes it private), initializes what it lacks, and opens the
/// node key, the node's author key and the store.
async fn open_data_dir(
    config: &Config,
) -> Result<(DataDir, NodeKey, cosmic_auth::AuthorKey, Store)> {
    let data_dir_path = config.node.data_dir.clone();
    let store_options = store_options(config);
    let (data_dir, node_key, author, store, report) = blocking(move || {
        let data_dir = DataDir::lock(data_dir_path)?;
        for fix in data_dir.make_private()? {
            tracing::warn!(
                path = %fix.path.display(),
                was = format_args!("{:o}", fix.was),
                now = format_args!("{:o}", fix.now),
                "the data dir let others in: made private"
            );
        }
        let report = data_dir.init()?;
        let node_key = data_dir.node_key()?;
        let author = data_dir.author_key()?;
        let store = Store::open(data_dir.path().join(STORE_FILE), store_options)?;
        Ok((data_dir, node_key, author, store, report))
    })
    .await?;
    for file in &report.created {
        tracing::info!(file, data_dir = %data_dir.path().display(), "created");
    }
    Ok((data_dir, node_key, author, store))
}

/// The store's options from the node's configuration.
fn store_options(config: &Config) -> cosmic_store::Options {
    cosmic_store::Options {
        max_clock_drift: config.sync.max_clock_drift,
        max_value_size: usize::try_from(config.store.max_value_size).unwrap_or(usize::MAX),
        cache_size: Some(usize::try_from(config.store.cache_size).unwrap_or(usize::MAX)),
        author_quota: config.store.author_quota,
        durability: match config.store.durability {
            cosmic_config::Durability::Eventual => cosmic_store::Durability::Eventual,
            // `Immediate`, and the safe choice for any level added later.
            _ => cosmic_store::Durability::Immediate,
        },
        ..cosmic_store::Options::default()
    }
}

/// Binds the API's listener on `addr` (warning when it is reachable from elsewhere): the
/// listener and the address it got.
fn bind_api(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr)> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|source| Error::ApiBind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| Error::ApiBind { addr, source })?;
    crate::api::warn_if_exposed(bound);
    Ok((listener, bound))
}

fn blobs_config(config: &Config) -> cosmic_blobs::Config {
    let ip = config
        .net
        .listen
        .first()
        .and_then(|addr| crate::blob_peers::ip_of(&addr.to_string()))
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    cosmic_blobs::Config {
        bind_addr: SocketAddr::new(ip, 0),
        max_blob_size: config.blobs.max_blob_size,
        fetch_timeout: config.blobs.fetch_timeout,
        gc_interval: config.blobs.gc_interval,
    }
}

/// Runs a blocking store or file operation off the async threads.
pub(crate) async fn blocking<T, F>(operation: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(operation)
        .await
        .map_err(|join_error| Error::Task { reason: join_error.to_string() })?
}

/// Starts the node's own background tasks, supervised: answering blob location requests
/// and sealing expired grants.
fn spawn_background(
    supervisor: &mut Supervisor,
    shared: &Arc<Shared>,
    readers: crate::blob_access::SpaceReaders,
) {
    let (net, blobs) = (shared.net.clone(), shared.blobs.clone());
    supervisor.spawn("blob-lookup", move |cancel| {
        crate::blob_peers::serve(net.clone(), blobs.clone(), readers.clone(), cancel)
    });
    let spaces = Spaces { shared: shared.clone() };
    supervisor
        .spawn("seal-expired", move |cancel| expiry::seal_periodically(spaces.clone(), cancel));
}

fn require_space(shared: &Shared, space: &SpaceId) -> Result<()> {
    match shared.store.space_record(space)? {
        Some(_) => Ok(()),
        None => Err(Error::UnknownSpace { space: *space }),
    }
}
