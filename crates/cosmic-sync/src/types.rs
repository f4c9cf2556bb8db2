//! The replicator's options, events, statistics and the blob fetcher it drives.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use cosmic_auth::PublicKey;
use cosmic_net::PeerId;
use cosmic_store::Origin;
use serde::Serialize;

use crate::recon::Limits;
use crate::{Error, Result};

/// Which linked blobs of a space's documents to fetch: one type with the configuration's
/// `blobs.default_fetch_policy`. Kept per space in the replicator's local state file (set
/// with [`Replicator::set_blob_policy`](crate::Replicator::set_blob_policy)), not synced.
pub use cosmic_config::BlobPolicy;

/// How a [`Replicator`](crate::Replicator) runs.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncOptions {
    /// How often each joined space is reconciled with each connected peer of the space
    /// (config `sync.reconcile_interval`).
    pub reconcile_interval: Duration,
    /// The largest reconciliation message, in bytes: at most the network's
    /// `max_message_size`, and larger than the store's largest entry.
    pub max_message_size: usize,
    /// The largest gossip message, in bytes.
    pub max_gossip_size: usize,
    /// The shape of reconciliation; its budget must be below `max_message_size`.
    pub recon: Limits,
    /// Request-response rounds after which a session gives up (the next one goes on).
    pub max_rounds: u64,
    /// The blob policy of a newly joined space (config `blobs.default_fetch_policy`).
    pub default_blob_policy: BlobPolicy,
    /// Attempts to fetch a blob before giving up (until the next change that links it).
    pub blob_fetch_attempts: u32,
    /// The delay before the first retry of a blob fetch; it doubles at each attempt.
    pub blob_retry_delay: Duration,
    /// How long one attempt to fetch a blob may take (config `blobs.fetch_timeout`).
    pub blob_fetch_timeout: Duration,
    /// Gossip messages waiting to be judged, at most; beyond it `cosmic-net` drops them,
    /// counts them and reports the loss, which is repaired by reconciliation.
    pub gossip_queue_len: usize,
    /// Reconciliation requests waiting for an answer, at most; beyond it they are refused
    /// as busy (the asking peer's session fails and is tried again).
    pub request_queue_len: usize,
}

impl Default for SyncOptions {
    fn default() -> SyncOptions {
        SyncOptions {
            reconcile_interval: Duration::from_secs(60),
            max_message_size: 4 * 1024 * 1024,
            max_gossip_size: 2 * 1024 * 1024,
            recon: Limits { budget: 1024 * 1024, ..Limits::default() },
            max_rounds: 10_000,
            default_blob_policy: BlobPolicy::Lazy,
            blob_fetch_attempts: 5,
            blob_retry_delay: Duration::from_millis(500),
            blob_fetch_timeout: Duration::from_secs(300),
            gossip_queue_len: 1024,
            request_queue_len: 256,
        }
    }
}

impl SyncOptions {
    /// The options from the node's configuration sections.
    pub fn from_config(
        sync: &cosmic_config::SyncConfig,
        net: &cosmic_config::NetConfig,
        blobs: &cosmic_config::BlobsConfig,
    ) -> SyncOptions {
        let max_message_size = usize::try_from(net.max_message_size).unwrap_or(usize::MAX);
        SyncOptions {
            reconcile_interval: sync.reconcile_interval,
            max_message_size,
            max_gossip_size: usize::try_from(net.max_gossip_size).unwrap_or(usize::MAX),
            recon: Limits { budget: max_message_size / 4, ..Limits::default() },
            default_blob_policy: blobs.default_fetch_policy,
            blob_fetch_timeout: blobs.fetch_timeout,
            ..SyncOptions::default()
        }
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |name, reason: &str| Err(Error::InvalidOption { name, reason: reason.into() });
        if self.reconcile_interval < Duration::from_millis(10) {
            return invalid("reconcile_interval", "must be at least 10 ms");
        }
        if self.max_message_size < 4096 {
            return invalid("max_message_size", "must be at least 4096 bytes");
        }
        if self.recon.budget == 0 || self.recon.budget > self.max_message_size / 2 {
            return invalid("recon.budget", "must be between 1 and half of max_message_size");
        }
        if self.recon.max_items == 0 || self.recon.branches < 2 {
            return invalid("recon", "max_items must be at least 1 and branches at least 2");
        }
        if self.gossip_queue_len == 0 || self.request_queue_len == 0 {
            return invalid(
                "queue lengths",
                "gossip_queue_len and request_queue_len must be at least 1",
            );
        }
        if self.max_rounds == 0 {
            return invalid("max_rounds", "must be at least 1");
        }
        Ok(())
    }
}

/// Counters of one reconciliation session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SessionStats {
    /// Request-response rounds.
    pub rounds: u64,
    /// Bytes of reconciliation messages sent.
    pub bytes_sent: u64,
    /// Bytes of reconciliation messages received.
    pub bytes_received: u64,
    /// Entries sent.
    pub entries_sent: u64,
    /// Entries received.
    pub entries_received: u64,
    /// Received entries that became winners here.
    pub entries_applied: u64,
    /// Received entries, records or statements refused.
    pub rejected: u64,
    /// Whether the session ran until nothing was left to exchange.
    pub converged: bool,
    /// How long it took, in microseconds.
    pub duration_us: u64,
}

impl SessionStats {
    /// Adds another session's counters (for totals).
    pub fn add(&mut self, other: &SessionStats) {
        self.rounds += other.rounds;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.entries_sent += other.entries_sent;
        self.entries_received += other.entries_received;
        self.entries_applied += other.entries_applied;
        self.rejected += other.rejected;
        self.duration_us += other.duration_us;
    }
}

/// Totals since the replicator started, from [`Replicator::metrics`](crate::Replicator::metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Reconciliation sessions this node started that finished.
    pub sessions: u64,
    /// Sessions that failed (the peer was unreachable, refused, or sent garbage).
    pub sessions_failed: u64,
    /// Reconciliation requests answered for peers.
    pub requests_served: u64,
    /// The sums over initiated sessions, failed ones included for the rounds they
    /// completed (`converged` unused).
    pub recon: SessionStats,
    /// Bytes of reconciliation answers sent to peers.
    pub served_bytes_sent: u64,
    /// Bytes of reconciliation requests received from peers.
    pub served_bytes_received: u64,
    /// Local changes published on gossip.
    pub gossip_published: u64,
    /// Gossip messages accepted: each brought something new and held nothing back
    /// (a message is a batch of entries; [`Self::gossip_entries_accepted`] counts those).
    pub gossip_accepted: u64,
    /// Gossip messages rejected as invalid (the sender lost score), plus held-back
    /// entries rejected once a reconciliation brought no capability for them.
    pub gossip_rejected: u64,
    /// Gossip messages ignored (an unjoined or unknown space, a clock too far ahead,
    /// stale entries that later ones supersede, or entries held back for want of their
    /// author's capability statement).
    pub gossip_ignored: u64,
    /// Gossip entries held back for want of their author's capability statement, to be
    /// judged again after a reconciliation with the peer that sent them (which brings
    /// the statement if that peer is honest).
    pub gossip_deferred: u64,
    /// Blobs fetched.
    pub blobs_fetched: u64,
    /// Blob fetches that gave up after every attempt.
    pub blobs_failed: u64,
    /// Entries published in gossip batches (`gossip_published` counts the batches).
    pub gossip_entries_published: u64,
    /// Entries received in gossip batches of joined spaces.
    pub gossip_entries_received: u64,
    /// Entries of gossip batches that the store accepted (new, or already held).
    pub gossip_entries_accepted: u64,
    /// Gossip messages lost, by where the loss was seen; each loss started a repair.
    pub gossip_lost: LossCounts,
    /// Reconciliations started to repair a loss (one per space and peer, coalesced).
    pub loss_repairs: u64,
    /// Times a restricted space was not shared with a peer that may not read it (its
    /// request refused, or our session with it not started).
    pub reads_refused: u64,
    /// Presentations of peer bindings refused (a forged, expired, malformed binding, or
    /// one made for another node).
    pub bindings_refused: u64,
}

/// Where a gossip loss was seen, for [`LossCounts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossKind {
    /// This node could not publish a batch (full queues, too large, or another failure).
    PublishFailed,
    /// A message found our gossip queue full and was dropped.
    InboundQueueFull,
    /// Gossipsub dropped messages for a slow peer (its send queue was full).
    SendQueueFull,
    /// A publisher's batch numbers skipped: batches lost on the way, wherever.
    SequenceGap,
    /// A loss the network layer reported for a reason this build does not know.
    Other,
}

impl LossKind {
    /// Every kind, in a fixed order.
    pub const ALL: [LossKind; 5] = [
        LossKind::PublishFailed,
        LossKind::InboundQueueFull,
        LossKind::SendQueueFull,
        LossKind::SequenceGap,
        LossKind::Other,
    ];

    /// A short snake-case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LossKind::PublishFailed => "publish_failed",
            LossKind::InboundQueueFull => "inbound_queue_full",
            LossKind::SendQueueFull => "send_queue_full",
            LossKind::SequenceGap => "sequence_gap",
            LossKind::Other => "other",
        }
    }
}

/// Gossip messages lost so far, by [`LossKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LossCounts {
    /// See [`LossKind::PublishFailed`].
    pub publish_failed: u64,
    /// See [`LossKind::InboundQueueFull`].
    pub inbound_queue_full: u64,
    /// See [`LossKind::SendQueueFull`].
    pub send_queue_full: u64,
    /// See [`LossKind::SequenceGap`] (messages missing, as the numbers tell).
    pub sequence_gap: u64,
    /// See [`LossKind::Other`].
    pub other: u64,
}

impl LossCounts {
    /// Adds `messages` to the count of `kind`.
    pub fn add(&mut self, kind: LossKind, messages: u64) {
        *self.counter(kind) += messages;
    }

    /// The count of `kind`.
    pub fn get(&self, kind: LossKind) -> u64 {
        let mut copy = *self;
        *copy.counter(kind)
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        LossKind::ALL.iter().map(|kind| self.get(*kind)).sum()
    }

    fn counter(&mut self, kind: LossKind) -> &mut u64 {
        match kind {
            LossKind::PublishFailed => &mut self.publish_failed,
            LossKind::InboundQueueFull => &mut self.inbound_queue_full,
            LossKind::SendQueueFull => &mut self.send_queue_full,
            LossKind::SequenceGap => &mut self.sequence_gap,
            LossKind::Other => &mut self.other,
        }
    }
}

/// What the replicator reports on the bus.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// A change became the winner of its field in a joined space.
    Applied {
        /// The space.
        space: PublicKey,
        /// The document.
        doc: String,
        /// The field.
        field: String,
        /// The store's change sequence number.
        seq: u64,
        /// Local, or the peer it came from.
        origin: Origin,
    },
    /// A reconciliation session ended.
    SessionFinished {
        /// The space.
        space: PublicKey,
        /// The other peer.
        peer: PeerId,
        /// Its counters.
        stats: SessionStats,
    },
    /// A reconciliation session failed.
    SessionFailed {
        /// The space.
        space: PublicKey,
        /// The other peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// An entry, record or statement from a peer was refused.
    EntryRejected {
        /// The space.
        space: PublicKey,
        /// The peer it came from.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// A synced document links a blob that is not here yet.
    BlobPending {
        /// The space.
        space: PublicKey,
        /// The blob's CID bytes.
        cid: Vec<u8>,
    },
    /// A linked blob was fetched.
    BlobFetched {
        /// The space.
        space: PublicKey,
        /// The blob's CID bytes.
        cid: Vec<u8>,
    },
    /// A linked blob could not be fetched after every attempt.
    BlobFailed {
        /// The space.
        space: PublicKey,
        /// The blob's CID bytes.
        cid: Vec<u8>,
        /// The last error.
        reason: String,
    },
}

/// A boxed error from a [`BlobFetcher`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future from a [`BlobFetcher`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the replicator needs from a blob store to fetch linked blobs.
pub trait BlobFetcher: Send + Sync + fmt::Debug {
    /// Whether the blob with these CID bytes is complete locally.
    fn has<'a>(&'a self, cid: &'a [u8]) -> BoxFuture<'a, Result<bool, BoxError>>;
    /// Fetches the blob from any of `candidates` (the author's node first), or from any
    /// provider the fetcher knows; returns when it is complete locally.
    fn fetch<'a>(
        &'a self,
        cid: &'a [u8],
        candidates: Vec<PeerId>,
    ) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// Whether a linked blob is here, from [`Replicator::blob_status`](crate::Replicator::blob_status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobStatus {
    /// Complete locally.
    Present,
    /// Not here yet: the document reads, its blob is pending.
    Pending,
    /// This replicator has no blob store.
    Unavailable,
}
