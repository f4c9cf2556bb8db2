//! The [`Node`] handle: one running node inside this process.

use std::path::Path;
use std::time::{Duration, Instant};

use cosmic_auth::NodeKey;
use cosmic_config::Config;
use cosmic_events::Bus;
use libp2p_identity::PeerId;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::data_dir::DataDir;
use crate::error::{Error, Result};

/// How long [`Node::shutdown`] waits for background tasks before giving up.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

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

/// A running node: its locked data dir, identity, event bus and background tasks.
///
/// Dropping a `Node` stops its tasks abruptly; call [`Node::shutdown`] to stop cleanly.
#[derive(Debug)]
pub struct Node {
    config: Config,
    data_dir: DataDir,
    node_key: NodeKey,
    bus: Bus,
    started_at: Instant,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Node {
    /// Starts a node: locks the data dir named by `config.node.data_dir` (failing at once
    /// if another process uses it), creates whatever the dir is missing, and loads the
    /// node key.
    pub async fn start(config: Config) -> Result<Self> {
        let data_dir_path = config.node.data_dir.clone();
        let (data_dir, node_key, report) = tokio::task::spawn_blocking(move || {
            let data_dir = DataDir::lock(data_dir_path)?;
            let report = data_dir.init()?;
            let node_key = data_dir.node_key()?;
            Ok::<_, Error>((data_dir, node_key, report))
        })
        .await
        .map_err(|join_error| Error::Io {
            action: "prepare",
            path: config.node.data_dir.clone(),
            source: std::io::Error::other(join_error.to_string()),
        })??;
        for file in &report.created {
            tracing::info!(file, data_dir = %data_dir.path().display(), "created");
        }
        let bus = Bus::new();
        let node = Self {
            config,
            data_dir,
            node_key,
            bus,
            started_at: Instant::now(),
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
        };
        node.bus.publish(NodeEvent::Started { peer_id: node.peer_id() });
        Ok(node)
    }

    /// The node's libp2p identity, derived from its node key.
    pub fn peer_id(&self) -> PeerId {
        self.node_key.peer_id()
    }

    /// The data dir this node has locked.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The configuration the node was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The event bus every layer of this node publishes on.
    pub fn events(&self) -> &Bus {
        &self.bus
    }

    /// How long the node has been running.
    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// Stops the node: tells every background task to end, waits up to
    /// [`SHUTDOWN_DEADLINE`] for them, then releases the data dir.
    pub async fn shutdown(mut self) -> Result<()> {
        self.bus.publish(NodeEvent::Stopping);
        self.cancel.cancel();
        let tasks = &mut self.tasks;
        let joined = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
            while let Some(result) = tasks.join_next().await {
                if let Err(error) = result {
                    tracing::warn!(%error, "background task ended abnormally during shutdown");
                }
            }
        })
        .await;
        if joined.is_err() {
            self.tasks.abort_all();
            return Err(Error::ShutdownTimeout { seconds: SHUTDOWN_DEADLINE.as_secs() });
        }
        tracing::info!(data_dir = %self.data_dir.path().display(), "stopped");
        Ok(())
    }
}
