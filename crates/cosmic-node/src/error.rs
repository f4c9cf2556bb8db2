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
