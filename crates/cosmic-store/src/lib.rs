//! The local database of CosmicSyncCore (level 3): a redb-backed store of signed entries.
//!
//! It owns one redb file holding a node's spaces, documents and entries. Each field of a
//! document is a last-writer-wins register ordered by `(hlc, author, value hash)` — Gun's HAM
//! made deterministic — so inserting any set of entries in any order, any number of times,
//! gives the same state. It stamps local writes with a persisted hybrid logical clock
//! ([`Hlc`]), numbers every change with a local sequence number for resumable streams
//! ([`Store::changes_since`], [`Store::subscribe`]), and keeps range fingerprints of each
//! space's winning entries for set reconciliation ([`Store::fingerprint`]).
//!
//! Keys, signatures and the access decision come from `cosmic-auth` (level 2): an entry
//! must verify against its author, and in a restricted space the author must hold a write
//! capability (`cosmic_auth::check_access`) among the statements stored in the space.
//!
//! It does no network I/O and decides nothing about peers: `cosmic-sync` feeds it entries
//! and asks it for fingerprints. It is the only writer of its file. All methods are
//! blocking; async callers use `tokio::task::spawn_blocking`.
//!
//! # Durability
//!
//! With the default [`Durability::Immediate`], every write method commits one redb
//! transaction and returns only after `fsync` (writers committing meanwhile share one):
//! an acknowledged write survives `kill -9` and power loss. With [`Durability::Eventual`]
//! a write is durable within [`FLUSH_INTERVAL`] after it returns. Batches
//! ([`Store::insert_batch`]) share one commit. When the disk fills up or a device fails, the
//! write in flight returns [`Error::Io`] ([`Error::is_disk_full`] tells a full disk) and
//! nothing committed before it is lost. redb refuses every later operation on a handle after
//! an I/O failure, so the store closes and reopens its file before the next operation (redb
//! repairs it from the last commit): reads go on while the disk is full, as long as the
//! filesystem lets the file rewrite blocks it holds, and writes work again once space
//! returns. [`Store::open`] verifies every page's checksum: a file that is not a store, or
//! was damaged while closed, is [`Error::Corrupted`] naming its path and a way out.
//!
//! ```
//! use cosmic_auth::{AuthorKey, SpaceKey, SpaceMode};
//! use cosmic_store::{Options, Store, Value};
//!
//! # fn main() -> cosmic_store::Result<()> {
//! let dir = tempfile::tempdir().expect("a temporary directory");
//! let store = Store::open(dir.path().join("store.redb"), Options::default())?;
//! let space_key = SpaceKey::generate();
//! let author = AuthorKey::generate();
//! let space = store.create_space(&space_key, SpaceMode::Open)?.space;
//!
//! store.write_json(&author, &space, "users/alice", &serde_json::json!({
//!     "name": "Alice",
//!     "address": {"city": "Lyon"},
//! }))?;
//! let alice = store.get_json(&space, "users/alice", 1)?.expect("written above");
//! assert_eq!(alice["address"]["city"], "Lyon");
//! assert_eq!(store.get_doc(&space, "users/alice/address")?.expect("a child doc")["city"].value,
//!            Value::String("Lyon".into()));
//! # Ok(())
//! # }
//! ```

mod access;
mod changes;
mod entry;
mod error;
mod hlc;
mod recon;
mod schema;
mod store;
mod value;

#[cfg(test)]
mod seal_tests;
#[cfg(test)]
mod tests;

pub use crate::access::SpaceRecord;
pub use crate::changes::{Change, MAX_ORIGIN_LEN, Origin, Subscription};
pub use crate::entry::{
    ENTRY_DOMAIN, ENTRY_VERSION, Entry, KeyCache, MAX_DOC_KEY_LEN, MAX_FIELD_LEN, validate_doc_key,
    validate_field,
};
pub use crate::error::{Error, Result};
pub use crate::hlc::{Clock, Hlc, SystemClock};
pub use crate::recon::Fingerprint;
pub use crate::store::{
    Document, Durability, FLUSH_INTERVAL, Field, Inserted, Options, RangeKey, ReconItem, Refusals,
    SpaceInfo, Store, TimeFloor,
};
pub use crate::value::Value;
