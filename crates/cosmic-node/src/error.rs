//! The error type of the node library.

use std::path::PathBuf;

/// What can go wrong while preparing, starting or stopping a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process holds the data dir's lock.
    #[error("data dir {path:?} is in use by another cosmic-node{}", pid_suffix(.pid))]
    DataDirInUse {
        /// The data dir.
        path: PathBuf,
        /// The process id written by the holder, when it could be read.
        pid: Option<u32>,
    },
    /// `init` on a data dir that already holds a node key.
    #[error("data dir {path:?} is already initialized (it holds {NODE_KEY_FILE})", NODE_KEY_FILE = crate::NODE_KEY_FILE)]
    AlreadyInitialized {
        /// The data dir.
        path: PathBuf,
    },
    /// A file of the data dir could not be read or written.
    #[error("cannot {action} {path:?}")]
    Io {
        /// What was being done, e.g. "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of the data dir holds something other than what we wrote there.
    #[error("{path:?} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The node key could not be created or loaded.
    #[error("node key")]
    NodeKey(#[source] cosmic_auth::Error),
    /// The document store failed or refused an operation (see its error for which).
    #[error("store")]
    Store(#[from] cosmic_store::Error),
    /// The network layer failed or refused an operation.
    #[error("network")]
    Net(#[from] cosmic_net::Error),
    /// The blob store failed or refused an operation.
    #[error("blobs")]
    Blobs(#[from] cosmic_blobs::Error),
    /// Replication failed or refused an operation.
    #[error("sync")]
    Sync(#[from] cosmic_sync::Error),
    /// The space is not held by this node.
    #[error("unknown space {space}")]
    UnknownSpace {
        /// The space id.
        space: cosmic_auth::SpaceId,
    },
    /// The document has no live field.
    #[error("no document {key:?} in space {space}")]
    DocNotFound {
        /// The space id.
        space: cosmic_auth::SpaceId,
        /// The document key.
        key: String,
    },
    /// This node holds neither the space key nor an admin right, so it cannot grant or
    /// revoke rights.
    #[error(
        "this node may not grant or revoke rights on space {space}: it holds neither its key \
         nor admin"
    )]
    NotAdmin {
        /// The space id.
        space: cosmic_auth::SpaceId,
    },
    /// A write asked to be signed by an author this node has not unlocked.
    #[error(
        "author {author:?} is not unlocked on this node: name the node author or an identity \
         the node was started with (`cosmic-node run --identity ALIAS`)"
    )]
    UnknownAuthor {
        /// The alias or author id asked for.
        author: String,
    },
    /// A sealed revocation would have to keep more entries than one may.
    #[error(
        "cannot seal the revocation of {author} in space {space}: it would keep {count} \
         entries, at most {max} fit; revoke unsealed (it ends the rights from now on, but \
         cannot refuse entries dated back)"
    )]
    TooManyKept {
        /// The space.
        space: cosmic_auth::SpaceId,
        /// Whose rights were to end.
        author: cosmic_auth::AuthorId,
        /// The entries to keep.
        count: usize,
        /// `cosmic_auth::MAX_KEPT`.
        max: usize,
    },
    /// The HTTP API could not bind its address.
    #[error("cannot serve the HTTP API on {addr}")]
    ApiBind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A blocking operation's worker task failed (panicked or was cancelled).
    #[error("background operation failed: {reason}")]
    Task {
        /// What happened.
        reason: String,
    },
    /// A background task did not stop within the shutdown deadline.
    #[error("shutdown did not finish within {seconds} s")]
    ShutdownTimeout {
        /// The deadline.
        seconds: u64,
    },
}

fn pid_suffix(pid: &Option<u32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
