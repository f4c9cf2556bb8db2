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
mod blob_peers;
mod data_dir;
mod error;
mod metrics;
mod node;
pub mod supervisor;

pub use crate::data_dir::read_api_token;
pub use crate::data_dir::{
    API_TOKEN_FILE, API_URL_FILE, AUTHOR_KEY_FILE, BLOBS_DIR, DataDir, InitReport, LOCK_FILE,
    NODE_KEY_FILE, SPACES_DIR, STORE_FILE,
};
pub use crate::error::{Error, Result};
pub use crate::node::{
    Docs, GetOptions, Node, NodeEvent, Peers, SHUTDOWN_DEADLINE, SpaceSummary, Spaces,
};
pub use crate::supervisor::TaskFailed;

/// Installs ring as the process-wide TLS crypto provider, if none is installed yet.
///
/// iroh (through cosmic-blobs) builds reqwest with `rustls-no-provider`, so any HTTP
/// client in a process that links this crate panics when it is built unless a provider
/// was installed first. The binary calls this at the top of `main`; embedders that use
/// reqwest should too. Calling it more than once is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
