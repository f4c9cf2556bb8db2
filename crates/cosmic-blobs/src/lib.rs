//! Content-addressed files for CosmicSyncCore (level 3).
//!
//! This crate owns a node's blob store (iroh-blobs' persistent store in `DATA_DIR/blobs`,
//! or its memory store for tests) and the iroh endpoint that serves and fetches blobs
//! with BLAKE3 verified streaming. It is the only crate that uses iroh-blobs.
//!
//! - A blob is named by a [`Cid`]: CIDv1, codec raw (0x55), multihash BLAKE3 (0x1e, 32
//!   bytes), printed in base32 (`bafkr4...`): the CID any IPFS implementation computes
//!   for the same bytes with BLAKE3.
//! - [`Blobs`] adds bytes, files (without reading them into memory) and streams; reads
//!   byte ranges as a stream; exports to a file; reports a blob's [`BlobState`]; lists;
//!   pins and unpins ([`Visibility`]); and garbage-collects unpinned blobs
//!   ([`Blobs::gc`], and every `gc_interval`).
//! - [`Blobs::fetch`] gets a blob from given peers or from the candidates an
//!   [`AddressLookup`] names, resuming a partial blob, skipping providers that fail or
//!   send bad data, with progress as [`BlobEvent`]s on the cosmic-events bus,
//!   cancellation, and a deadline.
//! - The provider asks an [`AccessPolicy`] before serving; the default [`PublicPins`]
//!   serves only blobs pinned [`Visibility::Public`].
//!
//! What it deliberately does not do: it never discovers peers (iroh's relays and public
//! discovery are off; the upper layer implements [`AddressLookup`] from libp2p), never
//! talks to libp2p, and knows nothing of spaces: "referenced from a space the requester
//! may read" is an [`AccessPolicy`] the upper layer adds. Hash sequences (collections)
//! are neither served nor fetched.
//!
//! The endpoint is keyed by the node key, so its endpoint id is the same public key as
//! the node's libp2p PeerId. Pins are named tags (`pin/public/<cid>`, `pin/private/<cid>`,
//! and `fetch/<cid>` while a fetch is unfinished); see [`Pins`].
//!
//! # Design
//!
//! - **Runtime.** A handle is opened inside a tokio runtime (it spawns the provider's
//!   policy task and iroh's tasks). [`Blobs::shutdown`] stops the endpoint and the store;
//!   call it before the last clone is dropped, since iroh-blobs' garbage-collection task
//!   otherwise keeps the store's runtime alive.
//! - **Adds.** Every add pins the blob under its CID's tag name (no automatic tags pile
//!   up); an add in progress is protected by iroh-blobs' temporary tags. A file is copied
//!   into the store in pieces, never read whole into memory. Blobs over
//!   [`Config::max_blob_size`] are refused before (bytes, files) or while (streams) they
//!   are added.
//! - **Garbage collection.** iroh-blobs runs it only if configured at open and has no
//!   public call to run it now; [`Blobs::gc`] drives its protect callback instead (see
//!   `gc.rs`). Pins and unfinished fetches are tags, so they survive it.
//! - **Fetch.** One provider at a time: first those in [`FetchOptions::providers`], then
//!   those the [`AddressLookup`] names; rounds repeat with a growing pause until
//!   [`FetchOptions::timeout`] (default [`Config::fetch_timeout`]). A provider that does
//!   not connect or make progress within [`FetchOptions::stall_timeout`] (default
//!   [`Config::fetch_timeout`]), refuses, lacks the blob, or sends data that fails
//!   verification is dropped for the next. Only the missing ranges are requested, and
//!   only verified 16 KiB groups are written, so a resumed fetch (after a cancel, a
//!   timeout, a failed provider or a restart) never downloads verified bytes twice.
//! - **Serving.** The provider intercepts each connection (to learn the peer's key from
//!   the QUIC handshake) and each get and observe request, and asks the
//!   [`AccessPolicy`] in a task of its own; get-many and push requests are disabled.
//! - **Crashes.** iroh-blobs writes an add in progress to `temp/` and records it only
//!   when complete, so a process killed mid-add leaves the store as it was (tested with
//!   SIGKILL); its redb file recovers on open, and [`Builder::open`] removes the
//!   leftover temporary file, which iroh-blobs would keep forever.
//!
//! ```no_run
//! use cosmic_auth::NodeKey;
//! use cosmic_blobs::{Blobs, Config, FetchOptions, Visibility};
//!
//! # async fn example() -> cosmic_blobs::Result<()> {
//! let alice = Blobs::builder(&NodeKey::generate()).config(Config::loopback()).open_in_memory().await?;
//! let bob = Blobs::builder(&NodeKey::generate()).config(Config::loopback()).open_in_memory().await?;
//! let added = alice.add_bytes("hello", Visibility::Public).await?;
//! println!("{}", added.cid); // bafkr4...
//! bob.fetch(&added.cid, FetchOptions::new().provider(alice.peer_addr())).await?;
//! assert_eq!(bob.read_to_bytes(&added.cid).await?, "hello");
//! # Ok(()) }
//! ```

mod api;
mod cid;
mod config;
mod error;
mod events;
mod fetch;
mod gc;
mod lookup;
mod pins;
mod policy;

#[cfg(test)]
mod tests;

pub use crate::api::{Added, BlobInfo, BlobState, Blobs, Builder, ByteStream};
pub use crate::cid::{BLAKE3_CODE, BLAKE3_LEN, Cid, CidError, RAW_CODEC};
pub use crate::config::Config;
pub use crate::error::{BoxError, Error, Result};
pub use crate::events::BlobEvent;
pub use crate::fetch::{FetchOptions, Fetched, PROGRESS_STEP};
pub use crate::lookup::{AddressLookup, BoxFuture, PeerAddr, StaticLookup};
pub use crate::pins::{Pins, Visibility};
pub use crate::policy::{AccessPolicy, AllowAll, PublicPins};
pub use tokio_util::sync::CancellationToken;
