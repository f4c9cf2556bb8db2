//! The replication engine of CosmicSyncCore (level 4).
//!
//! This crate will wire `cosmic-net`, `cosmic-store` and `cosmic-blobs` together: live
//! push of signed entries over one gossipsub topic per space, catch-up by range-based set
//! reconciliation over request-response, and automatic fetching of linked blobs.
//!
//! Nothing is implemented here yet; see the project's issue on cosmic-sync.
