//! The networking layer of CosmicSyncCore (level 3).
//!
//! This crate will own the libp2p swarm: TCP and QUIC transports with noise and yamux,
//! identify, ping, mDNS, Kademlia, gossipsub with manual validation, request-response for
//! our own protocols, connection limits, relay client, DCUtR and AutoNAT. The swarm will
//! live in one task behind a cloneable `Net` handle and report what happens on the
//! `cosmic-events` bus.
//!
//! It is the only crate that depends on `libp2p` (enforced by `deny.toml`). It knows
//! nothing of documents, entries or blobs: upper layers give it bytes and topics.
//!
//! Nothing is implemented here yet; see the project's issue on cosmic-net.
