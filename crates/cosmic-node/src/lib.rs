//! The full CosmicSyncCore node: level 5, where every layer is assembled.
//!
//! This crate owns the data dir of a node (its node key, configuration file, API token
//! and the lock that keeps a second process out), the [`Node`] handle an application
//! embeds, and the `cosmic-node` binary with its CLI. It is the only crate that uses
//! `anyhow`, installs the `tracing` subscriber or writes to stdout (in the binary).
//!
//! A node is built from a [`cosmic_config::Config`]:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let loaded = cosmic_config::load(&cosmic_config::LoadOptions::default())?;
//! let node = cosmic_node::Node::start(loaded.config).await?;
//! println!("node {} is up", node.peer_id());
//! node.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Networking, storage, blobs, sync and the HTTP API join the node as their crates land;
//! see `docs/ARCHITECTURE.md`.

mod api;
mod data_dir;
mod error;
mod metrics;
mod node;
pub mod supervisor;

pub use crate::data_dir::read_api_token;
pub use crate::data_dir::{
    API_TOKEN_FILE, API_URL_FILE, AUTHOR_KEY_FILE, DataDir, InitReport, LOCK_FILE, NODE_KEY_FILE,
    SPACES_DIR, STORE_FILE,
};
pub use crate::error::{Error, Result};
pub use crate::node::{
    Docs, GetOptions, Node, NodeEvent, Peers, SHUTDOWN_DEADLINE, SpaceSummary, Spaces,
};
pub use crate::supervisor::TaskFailed;
