//! [`AddressLookup`]: where the upper layer tells this crate who may have a blob.
//!
//! This crate never discovers peers itself: iroh's relays and public discovery are off.
//! The upper layer (cosmic-sync, from libp2p's Kademlia provider records and identify)
//! implements [`AddressLookup`]; [`StaticLookup`] is a fixed table for tests and for
//! nodes configured by hand.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};

use cosmic_auth::PublicKey;

use crate::Cid;

/// A boxed future returned by the object-safe traits of this crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A peer to fetch from: its node key (libp2p PeerId and iroh endpoint id are the same key)
/// and the UDP socket addresses its blob endpoint listens on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// The peer's node key.
    pub node: PublicKey,
    /// Where its blob endpoint can be reached (at least one is needed, relays are off).
    pub addrs: Vec<SocketAddr>,
}

impl PeerAddr {
    /// A peer reachable at `addrs`.
    pub fn new(node: PublicKey, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self { node, addrs: addrs.into_iter().collect() }
    }
}

/// Finds candidate providers of a blob; implemented by the upper layer from the libp2p side.
///
/// Called at the start of a fetch that was given no providers, and again after every
/// round in which no candidate delivered the blob, until the fetch's deadline.
pub trait AddressLookup: fmt::Debug + Send + Sync + 'static {
    /// Peers that may hold `cid`, best first, with their blob endpoint addresses.
    fn providers<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Vec<PeerAddr>>;
}

/// A fixed table of providers per blob, changeable at run time; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StaticLookup {
    providers: Arc<RwLock<HashMap<Cid, Vec<PeerAddr>>>>,
}

impl StaticLookup {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `peer` as a provider of `cid`, after those already known.
    pub fn insert(&self, cid: Cid, peer: PeerAddr) {
        let mut providers = self.providers.write().unwrap_or_else(PoisonError::into_inner);
        let peers = providers.entry(cid).or_default();
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }

    /// Forgets every provider of `cid`.
    pub fn remove(&self, cid: &Cid) {
        self.providers.write().unwrap_or_else(PoisonError::into_inner).remove(cid);
    }
}

impl AddressLookup for StaticLookup {
    fn providers<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Vec<PeerAddr>> {
        let peers = self
            .providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cid)
            .cloned()
            .unwrap_or_default();
        Box::pin(std::future::ready(peers))
    }
}
