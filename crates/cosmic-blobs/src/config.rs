//! [`Config`]: the settings of a [`crate::Blobs`] handle.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Settings of the blob store and endpoint; the node fills them from the `[blobs]`
/// section of its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// UDP address of the iroh endpoint. Default `0.0.0.0:0` (any interface, a free port).
    pub bind_addr: SocketAddr,
    /// Largest blob in bytes that is added or fetched. Default 1 GiB.
    pub max_blob_size: u64,
    /// Default deadline of a fetch ([`crate::FetchOptions::timeout`]). Default 5 min.
    pub fetch_timeout: Duration,
    /// How often unpinned blobs are removed. Default 1 h.
    pub gc_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            max_blob_size: 1 << 30,
            fetch_timeout: Duration::from_secs(300),
            gc_interval: Duration::from_secs(3600),
        }
    }
}

impl Config {
    /// Defaults, with the endpoint bound to `127.0.0.1` on a free port: for tests.
    pub fn loopback() -> Self {
        Self { bind_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), ..Self::default() }
    }
}

impl Config {
    /// Settings from the node's `[blobs]` configuration section; the endpoint binds to
    /// `bind_addr` (not part of that section: peers learn it through libp2p).
    pub fn from_section(section: &cosmic_config::BlobsConfig, bind_addr: SocketAddr) -> Self {
        Self {
            bind_addr,
            max_blob_size: section.max_blob_size,
            fetch_timeout: section.fetch_timeout,
            gc_interval: section.gc_interval,
        }
    }
}
