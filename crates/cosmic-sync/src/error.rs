//! The errors of replication.

use crate::wire::WireError;

/// A replication failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] cosmic_store::Error),
    /// The network failed.
    #[error("network: {0}")]
    Net(#[from] cosmic_net::Error),
    /// A peer sent bytes that could not be read.
    #[error("from peer {peer}: {source}")]
    Wire {
        /// The peer.
        peer: String,
        /// What was wrong.
        source: WireError,
    },
    /// A message we built is larger than the transport allows.
    #[error("outgoing: {0}")]
    Outgoing(WireError),
    /// A peer refused our reconciliation request.
    #[error("peer {peer} refused reconciliation: {reason}")]
    Refused {
        /// The peer.
        peer: String,
        /// Its reason.
        reason: String,
    },
    /// A peer may not receive the content of a restricted space: it proved no binding
    /// to an author holding a right there.
    #[error("peer {peer} may not read space {space}: {reason}")]
    ReadDenied {
        /// The space.
        space: cosmic_auth::PublicKey,
        /// The peer.
        peer: String,
        /// Why (the access decision for each author it speaks for).
        reason: String,
    },
    /// The space is not joined.
    #[error("space {space} is not joined")]
    NotJoined {
        /// The space.
        space: cosmic_auth::PublicKey,
    },
    /// The replication state file could not be read or written.
    #[error("replication state {path}: {reason}")]
    State {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The options are invalid.
    #[error("invalid sync option {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A blob could not be fetched.
    #[error("blob {cid}: {reason}")]
    Blob {
        /// The blob, as text.
        cid: String,
        /// Why.
        reason: String,
    },
    /// The replicator has stopped.
    #[error("the replicator has stopped")]
    Shutdown,
    /// A background task failed.
    #[error("task failed: {0}")]
    Task(String),
}

/// A replication result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
