//! [`BlobEvent`]: what this crate publishes on the cosmic-events bus.

use cosmic_auth::PublicKey;

use crate::Cid;

/// Something that happened to a blob; published on the [`cosmic_events::Bus`] given to
/// [`crate::Blobs`]. Subscribe with `bus.subscribe::<BlobEvent>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobEvent {
    /// A blob was added to the local store from bytes, a file or a stream.
    Added {
        /// The blob.
        cid: Cid,
        /// Its size in bytes.
        size: u64,
    },
    /// A fetch started asking `provider` for the missing parts of a blob.
    FetchStarted {
        /// The blob.
        cid: Cid,
        /// The peer asked.
        provider: PublicKey,
        /// Bytes already present locally (a resumed fetch starts above zero).
        present: u64,
    },
    /// Verified bytes arrived; sent at most every [`crate::PROGRESS_STEP`] bytes.
    FetchProgress {
        /// The blob.
        cid: Cid,
        /// The peer sending.
        provider: PublicKey,
        /// Payload bytes received from this provider in this attempt.
        received: u64,
    },
    /// A provider failed (no such blob, bad data, connection lost); the fetch moves on.
    FetchProviderFailed {
        /// The blob.
        cid: Cid,
        /// The peer that failed.
        provider: PublicKey,
        /// Why, as text.
        reason: String,
    },
    /// The blob is now complete and verified in the local store.
    FetchCompleted {
        /// The blob.
        cid: Cid,
        /// Its size in bytes.
        size: u64,
        /// Payload bytes received over the network for it by this fetch.
        received: u64,
    },
    /// A request for a local blob was refused by the [`crate::AccessPolicy`].
    ServeDenied {
        /// The blob asked for.
        cid: Cid,
        /// The peer that asked.
        peer: PublicKey,
    },
}
