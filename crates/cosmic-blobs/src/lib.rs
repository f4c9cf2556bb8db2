//! Content-addressed files for CosmicSyncCore (level 3).
//!
//! This crate will own the iroh-blobs store in the data dir and the iroh endpoint that
//! serves and fetches blobs with BLAKE3 verified streaming. A blob is named by a CIDv1
//! (codec raw, BLAKE3 multihash), the same CID any IPFS implementation computes for its
//! bytes with BLAKE3.
//!
//! It is the only crate that uses iroh-blobs. It learns peer addresses through a trait
//! that an upper layer implements; it never talks to libp2p itself.
//!
//! Nothing is implemented here yet; see the project's issue on cosmic-blobs.
