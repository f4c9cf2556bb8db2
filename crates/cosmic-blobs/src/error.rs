//! [`Error`]: everything that can go wrong in this crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Cid;

/// A boxed cause from iroh or iroh-blobs, kept as the error's source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the blob store, its endpoint or a fetch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A CID could not be parsed or names something other than raw BLAKE3 bytes.
    #[error(transparent)]
    Cid(#[from] crate::CidError),
    /// The blob store could not be opened.
    #[error("cannot open the blob store in {path:?}")]
    Open {
        /// The store directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The iroh endpoint could not be bound.
    #[error("cannot bind the blob endpoint to {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// A store operation failed.
    #[error("blob store failed to {operation}")]
    Store {
        /// What was being done, e.g. `"add bytes"`.
        operation: &'static str,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// A file could not be read or written.
    #[error("cannot {operation} {path:?}")]
    Io {
        /// What was being done, e.g. `"read"`.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The blob is not in the local store.
    #[error("blob {cid} is not in the store")]
    NotFound {
        /// The blob.
        cid: Cid,
    },
    /// The blob is only partly in the local store.
    #[error("blob {cid} is only partly in the store ({present} bytes known)")]
    Incomplete {
        /// The blob.
        cid: Cid,
        /// Size known so far, if any.
        present: u64,
    },
    /// A byte range starts past the end of the blob.
    #[error("range {start}..{end} is outside blob {cid} of {size} bytes")]
    InvalidRange {
        /// The blob.
        cid: Cid,
        /// Start of the range asked for.
        start: u64,
        /// End of the range asked for.
        end: u64,
        /// The blob's size.
        size: u64,
    },
    /// A blob is larger than `blobs.max_blob_size`.
    #[error("blob of {size} bytes is larger than the limit of {max} bytes (`blobs.max_blob_size`)")]
    TooLarge {
        /// The blob's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A fetch had no provider to ask: none were given and no lookup is set.
    #[error("no provider to fetch blob {cid} from: none given and no address lookup set")]
    NoProviders {
        /// The blob.
        cid: Cid,
    },
    /// No provider delivered the blob before the fetch's deadline.
    #[error(
        "fetching blob {cid} timed out after {after:?}: {attempts} attempts, none delivered it \
         (last error: {last_error})"
    )]
    Timeout {
        /// The blob.
        cid: Cid,
        /// The deadline that passed.
        after: Duration,
        /// How many provider attempts were made.
        attempts: usize,
        /// The last provider's failure, or `"no provider found"`.
        last_error: String,
    },
    /// The fetch was cancelled by its caller.
    #[error("fetching blob {cid} was cancelled")]
    Cancelled {
        /// The blob.
        cid: Cid,
    },
    /// Garbage collection stopped after an error (see the logs); restart the node.
    #[error("blob garbage collection is not running")]
    GcStopped,
}

impl Error {
    pub(crate) fn store(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Store { operation, source: source.into() }
    }
}
