//! Known peers and their addresses, persisted across restarts, and redial backoff.
//!
//! The file is a small JSON document (`peers.json` in the data dir) written atomically:
//! a temporary file beside it, fsync, rename, fsync of the directory. It is a cache: a
//! missing or unreadable file means starting with no known peers, never an error.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Addresses kept per peer, most recent first.
const MAX_ADDRESSES_PER_PEER: usize = 8;
/// Peers kept in the file; the least recently seen go first.
const MAX_PEERS: usize = 1000;
const FILE_VERSION: u32 = 1;

/// The `/p2p/<peer id>` at the end of `address`, if any.
pub(crate) fn peer_id_of(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer_id)) => Some(peer_id),
        _ => None,
    }
}

/// `address` without a trailing `/p2p/<peer id>`.
pub(crate) fn without_peer_id(address: &Multiaddr) -> Multiaddr {
    let mut address = address.clone();
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address.pop();
    }
    address
}

/// Whether an address is worth remembering: not unspecified (`0.0.0.0`, `::`).
fn is_dialable(address: &Multiaddr) -> bool {
    address.iter().all(|protocol| match protocol {
        Protocol::Ip4(ip) => !ip.is_unspecified(),
        Protocol::Ip6(ip) => !ip.is_unspecified(),
        _ => true,
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct PeersFile {
    version: u32,
    peers: Vec<PeerRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PeerRecord {
    peer_id: String,
    addresses: Vec<String>,
    /// Unix seconds.
    last_seen: u64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct KnownPeer {
    /// Most recent first.
    pub(crate) addresses: Vec<Multiaddr>,
    pub(crate) last_seen: u64,
}

/// Every peer we have an address for.
#[derive(Debug, Default)]
pub(crate) struct KnownPeers {
    peers: HashMap<PeerId, KnownPeer>,
    dirty: bool,
}

impl KnownPeers {
    /// Reads the file; a missing or unreadable file yields no peers (logged).
    pub(crate) fn load(path: &Path) -> Self {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the peers file");
                return Self::default();
            }
        };
        match Self::from_json(&bytes) {
            Some(peers) => peers,
            None => {
                tracing::warn!(path = %path.display(), "ignoring a malformed peers file");
                Self::default()
            }
        }
    }

    fn from_json(bytes: &[u8]) -> Option<Self> {
        let file: PeersFile = serde_json::from_slice(bytes).ok()?;
        if file.version != FILE_VERSION {
            return None;
        }
        let mut peers = HashMap::new();
        for record in file.peers.into_iter().take(MAX_PEERS) {
            let Ok(peer_id) = record.peer_id.parse::<PeerId>() else { continue };
            let addresses: Vec<Multiaddr> = record
                .addresses
                .iter()
                .filter_map(|address| address.parse().ok())
                .filter(is_dialable)
                .take(MAX_ADDRESSES_PER_PEER)
                .collect();
            if !addresses.is_empty() {
                peers.insert(peer_id, KnownPeer { addresses, last_seen: record.last_seen });
            }
        }
        Some(Self { peers, dirty: false })
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut records: Vec<PeerRecord> = self
            .peers
            .iter()
            .map(|(peer_id, peer)| PeerRecord {
                peer_id: peer_id.to_base58(),
                addresses: peer.addresses.iter().map(ToString::to_string).collect(),
                last_seen: peer.last_seen,
            })
            .collect();
        records.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.peer_id.cmp(&b.peer_id)));
        let file = PeersFile { version: FILE_VERSION, peers: records };
        // Serializing plain strings and integers cannot fail.
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&PeerId, &KnownPeer)> {
        self.peers.iter()
    }

    pub(crate) fn addresses(&self, peer_id: &PeerId) -> Vec<Multiaddr> {
        self.peers.get(peer_id).map(|peer| peer.addresses.clone()).unwrap_or_default()
    }

    /// Remembers `address` for `peer_id` as its most recent one.
    pub(crate) fn add_address(&mut self, peer_id: PeerId, address: &Multiaddr) {
        let address = without_peer_id(address);
        if !is_dialable(&address) {
            return;
        }
        let peer = self.peers.entry(peer_id).or_default();
        if peer.addresses.first() == Some(&address) {
            return;
        }
        peer.addresses.retain(|known| *known != address);
        peer.addresses.insert(0, address);
        peer.addresses.truncate(MAX_ADDRESSES_PER_PEER);
        peer.last_seen = unix_now();
        self.dirty = true;
        self.evict();
    }

    /// Marks `peer_id` as seen now.
    pub(crate) fn touch(&mut self, peer_id: &PeerId) {
        if let Some(peer) = self.peers.get_mut(peer_id) {
            peer.last_seen = unix_now();
            self.dirty = true;
        }
    }

    /// Whether something changed since the last [`KnownPeers::take_dirty`].
    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn evict(&mut self) {
        while self.peers.len() > MAX_PEERS {
            let oldest =
                self.peers.iter().min_by_key(|(_, peer)| peer.last_seen).map(|(id, _)| *id);
            match oldest {
                Some(peer_id) => self.peers.remove(&peer_id),
                None => break,
            };
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Writes `bytes` to `path` atomically: a temporary file beside it (owner-only, with a name
/// of its own, by `tempfile`), fsync, rename, fsync of the dir.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    // Make the rename itself durable; not every platform can open a directory.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Exponential redial backoff for one peer.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// Failed attempts so far.
    pub(crate) attempts: u32,
    /// When to dial next.
    pub(crate) next_at: Instant,
    /// Give up after this many failed attempts (`None`: never).
    pub(crate) max_attempts: Option<u32>,
}

impl Backoff {
    pub(crate) fn new(now: Instant, max_attempts: Option<u32>) -> Self {
        Self { attempts: 0, next_at: now, max_attempts }
    }

    /// The delay after `attempts` failures: `min * 2^(attempts - 1)`, capped at `max`.
    pub(crate) fn delay(attempts: u32, min: Duration, max: Duration) -> Duration {
        let factor = 1u32.checked_shl(attempts.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
        min.saturating_mul(factor).min(max)
    }

    /// Records a failed attempt; returns false when the peer should be given up.
    pub(crate) fn failed(&mut self, now: Instant, min: Duration, max: Duration) -> bool {
        self.attempts = self.attempts.saturating_add(1);
        self.next_at = now + Self::delay(self.attempts, min, max);
        self.max_attempts.is_none_or(|max_attempts| self.attempts < max_attempts)
    }
}
