//! The local database of CosmicSyncCore (level 3).
//!
//! This crate will own the redb file that holds a node's spaces, documents and entries:
//! per-field last-writer-wins registers ordered by `(hlc, author, value hash)`, the hybrid
//! logical clock, change tracking with local sequence numbers, and the range fingerprints
//! that set reconciliation needs.
//!
//! It is the only writer of its redb file and does no network I/O.
//!
//! Nothing is implemented here yet; see the project's issue on cosmic-store.
