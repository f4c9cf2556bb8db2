//! The full CosmicSyncCore node: level 5, where every layer is assembled.
//!
//! This crate owns the data dir of a node (its node key, configuration file, API token
//! and the lock that keeps a second process out), the [`Node`] handle an application
//! embeds, and the `cosmic-node` binary with its CLI. It is the only crate that uses
//! `anyhow`, installs the `tracing` subscriber or writes to stdout (in the binary).
//!
//! A node is built from a [`cosmic_config::Config`]. An application embeds one without
//! HTTP by turning the API off and using the handles:
//!
//! ```no_run
//! use cosmic_auth::SpaceMode;
//! use cosmic_node::{GetOptions, Node};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = cosmic_config::load(&cosmic_config::LoadOptions::default())?.config;
//! config.api.enabled = false;
//! let node = Node::start(config).await?;
//! println!("node {} listens on {:?}", node.peer_id(), node.listen_addrs().await?);
//!
//! let space = node.spaces().create(SpaceMode::Open).await?.id;
//! let docs = node.docs();
//! docs.put(space, "users/alice", serde_json::json!({"name": "Alice"})).await?;
//! let alice = docs.get(space, "users/alice", GetOptions::default()).await?;
//! assert_eq!(alice["name"], "Alice");
//!
//! let added = node.blobs().add_bytes("hello", cosmic_blobs::Visibility::Public).await?;
//! println!("blob {}", added.cid);
//!
//! drop(docs);
//! node.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Background tasks (the HTTP API, the blob lookup responder) run under a
//! [`supervisor::Supervisor`]: a failed task is logged, published as a [`TaskFailed`]
//! event on the node's bus and restarted with backoff. The HTTP API (axum) serves the
//! same operations under `/v1` with a bearer token, Server-Sent Events, an OpenAPI
//! document at `/v1/openapi.json` and Prometheus metrics at `/metrics`.

mod api;
mod authors;
mod blob_access;
mod blob_peers;
mod data_dir;
mod error;
mod metrics;
mod node;
pub mod supervisor;

pub use crate::authors::Identity;
#[doc(hidden)]
pub use crate::blob_peers::read_where_answer;
pub use crate::data_dir::read_api_token;
pub use crate::data_dir::{
    API_TOKEN_FILE, API_URL_FILE, AUTHOR_KEY_FILE, BLOBS_DIR, DataDir, InitReport, LOCK_FILE,
    ModeFix, NODE_KEY_FILE, SPACES_DIR, STORE_FILE,
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
