//! The replication engine of CosmicSyncCore (level 4).
//!
//! A [`Replicator`] wires `cosmic-net` and `cosmic-store` together:
//!
//! - **Spaces on the network.** [`Replicator::join`] subscribes the space's gossip topic
//!   ([`space_topic`]), provides the space on Kademlia, looks up its providers and
//!   reconciles with them; [`Replicator::leave`] undoes it. The joined spaces and their blob
//!   policies survive restarts in a small file of the state directory
//!   ([`STATE_FILE`], replaced atomically).
//! - **Live push.** Local writes go to the store; the replicator follows the store's change
//!   feed of each joined space and publishes the local changes that are ready together as
//!   one numbered batch of signed entries ([`wire::encode_gossip_batch`]). A remote batch
//!   is decoded whole with a size limit, and the store checks each entry's signature, the
//!   author's capability and its clock before merging the batch in one transaction; one
//!   verdict per batch goes back to gossipsub, so an invalid entry is neither stored nor
//!   forwarded and its sender loses score.
//! - **No silent loss.** Every place gossip can be lost (a failed publish, a full send
//!   queue for a slow peer, our own full inbound queue, a gap in a publisher's batch
//!   numbering) is counted in [`Metrics::gossip_lost`] and starts a reconciliation with
//!   the peer concerned within a fraction of a second. Every applied change is a [`SyncEvent::Applied`] with its
//!   origin, read from the store's change log (`cosmic_store::Origin`).
//! - **Catch-up** by range-based set reconciliation ([`recon`]) over `cosmic-net`'s
//!   request-response protocol ([`RECON_PROTOCOL`]), on the store's range fingerprints:
//!   when a peer of a space subscribes to its topic, every `sync.reconcile_interval`, and on
//!   [`Replicator::sync_now`]. Space records and capability statements travel with the
//!   first round. Each session's rounds, bytes and entries are a [`SessionStats`], summed in
//!   [`Replicator::metrics`] and reported as [`SyncEvent::SessionFinished`].
//! - **Blob auto-fetch** through a [`BlobFetcher`] (implemented for `cosmic_blobs::Blobs`,
//!   whose address lookup finds the providers): a synced document that links a missing
//!   blob is reported as [`SyncEvent::BlobPending`]; by the space's [`BlobPolicy`] the blob
//!   is fetched at once (eager, with retries), on [`Replicator::fetch_blob`] (lazy), or
//!   never by itself (none). The document reads either way ([`Replicator::blob_status`]).
//!
//! The reconciliation state machine is pure and transport-independent: it runs on any
//! [`ItemSource`] (implemented by `cosmic_store::Store`), which is how the deterministic
//! simulation tests drive the real merge and reconciliation code over a simulated network.

mod blobs;
mod error;
mod names;
mod peer_clock;
pub mod recon;
mod replicator;
mod state;
mod types;
pub mod wire;

pub use crate::error::{Error, Result};
pub use crate::names::{TOPIC_PREFIX, space_provider_key, space_topic};
pub use crate::recon::{ItemSource, Limits, Opening, Session, Step};
pub use crate::replicator::{BIND_PROTOCOL, MAX_BINDINGS, PeerSession, RECON_PROTOCOL, Replicator};
pub use crate::state::STATE_FILE;
pub use crate::types::{
    BlobFetcher, BlobPolicy, BlobStatus, BoxError, BoxFuture, LossCounts, LossKind, Metrics,
    SessionStats, SyncEvent, SyncOptions,
};
