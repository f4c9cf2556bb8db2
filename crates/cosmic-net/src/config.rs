//! [`Config`]: every knob of the network layer, with defaults that match `cosmic-config`.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::{Error, Result};

const MIB: u64 = 1024 * 1024;

/// The configuration of one [`Net`](crate::Net).
///
/// Field names mirror the `net` section of `cosmic_config::Config`, so the node copies
/// them one by one; the fields that section does not have (gossip mesh tuning, queue
/// lengths, the peers file) keep their defaults unless the node sets them.
/// Build one with [`Config::default`] and assign the fields you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Multiaddrs to listen on; port 0 picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start and redialled with backoff whenever the connection drops;
    /// each multiaddr must end in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses other peers can reach this node on, announced as confirmed.
    pub external_addresses: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS (loopback interfaces are skipped).
    pub mdns: bool,
    /// Reach peers behind NAT through relays (relay client and hole punching).
    pub relay_client: bool,
    /// Serve as a relay for other peers (circuit relay v2). Every listen address is then
    /// announced as an external address, since a relay must be reachable.
    pub relay_server: bool,
    /// Ask peers whether this node is reachable from outside (AutoNAT), and answer them.
    pub autonat: bool,
    /// Established connections in total.
    pub max_connections: u32,
    /// Established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Connections being set up at once, inbound and outbound each.
    pub max_pending_connections: u32,
    /// Close the connections to a peer after this long without activity (gossip,
    /// requests, subscription changes), unless it shares a gossip topic with us, has a
    /// request in flight, or relays for us (or through us).
    pub idle_timeout: Duration,
    /// Largest request-response frame in bytes, request or response.
    pub max_message_size: u64,
    /// Largest gossip message payload in bytes.
    pub max_gossip_size: u64,
    /// Bad frames or invalid messages from one peer before it is banned.
    pub ban_threshold: u32,
    /// How long a banned peer stays banned.
    pub ban_duration: Duration,
    /// One strike of a peer is forgiven every `strike_decay` (a leaky bucket), so a
    /// long-lived honest peer with a rare bad frame never reaches `ban_threshold`.
    pub strike_decay: Duration,
    /// Inbound requests accepted per peer per second; more are answered with an error.
    pub inbound_request_rate: u32,
    /// If not empty, only these peers may connect.
    pub allow: Vec<PeerId>,
    /// Peers that may never connect; wins over `allow`.
    pub block: Vec<PeerId>,
    /// How long an outbound request waits for its response.
    pub request_timeout: Duration,
    /// Where known peers and their addresses are kept across restarts (`peers.json` in
    /// the data dir); `None` keeps them in memory only.
    pub peers_file: Option<PathBuf>,
    /// First delay before redialling a lost peer; doubles on every failed attempt.
    pub reconnect_backoff_min: Duration,
    /// Longest delay between two redials of one peer.
    pub reconnect_backoff_max: Duration,
    /// Gossipsub mesh degree: the number of peers each topic's mesh aims for.
    pub gossip_mesh_n: usize,
    /// Gossipsub grafts more peers when a mesh falls below this.
    pub gossip_mesh_n_low: usize,
    /// Gossipsub prunes peers when a mesh grows above this.
    pub gossip_mesh_n_high: usize,
    /// Outbound peers each mesh keeps at least (at most `gossip_mesh_n / 2`).
    pub gossip_mesh_outbound_min: usize,
    /// How often gossipsub maintains its meshes and gossips message ids.
    pub gossip_heartbeat_interval: Duration,
    /// Commands the [`Net`](crate::Net) handle may queue before callers wait.
    pub command_queue_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            bootstrap: Vec::new(),
            external_addresses: Vec::new(),
            mdns: true,
            relay_client: true,
            relay_server: false,
            autonat: true,
            max_connections: 256,
            max_connections_per_peer: 2,
            max_pending_connections: 64,
            idle_timeout: Duration::from_secs(60),
            max_message_size: 4 * MIB,
            max_gossip_size: 2 * MIB,
            ban_threshold: 10,
            ban_duration: Duration::from_secs(3600),
            strike_decay: Duration::from_secs(600),
            inbound_request_rate: 100,
            allow: Vec::new(),
            block: Vec::new(),
            request_timeout: Duration::from_secs(30),
            peers_file: None,
            reconnect_backoff_min: Duration::from_secs(1),
            reconnect_backoff_max: Duration::from_secs(300),
            gossip_mesh_n: 6,
            gossip_mesh_n_low: 4,
            gossip_mesh_n_high: 12,
            gossip_mesh_outbound_min: 2,
            gossip_heartbeat_interval: Duration::from_secs(1),
            command_queue_len: 1024,
        }
    }
}

/// The rule the gossip mesh settings must follow.
const MESH_RULE: &str =
    "1 <= n_low <= n <= n_high and outbound_min <= n_low and 2 * outbound_min <= n";

impl Config {
    /// A configuration for tests and local tools: one TCP listener on 127.0.0.1 with a
    /// free port, no mDNS, no AutoNAT, short backoffs and a fast gossip heartbeat.
    pub fn local() -> Self {
        Self {
            listen: vec![localhost_tcp()],
            mdns: false,
            autonat: false,
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(2),
            gossip_heartbeat_interval: Duration::from_millis(200),
            ..Self::default()
        }
    }

    /// Checks every value, returning the first problem found, naming the field and value.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, value: String, expected: &'static str| {
            Err(Error::InvalidConfig { field, value, expected })
        };
        for (field, value, min) in [
            ("max_connections", self.max_connections, 1),
            ("max_connections_per_peer", self.max_connections_per_peer, 1),
            ("max_pending_connections", self.max_pending_connections, 1),
            ("ban_threshold", self.ban_threshold, 1),
            ("inbound_request_rate", self.inbound_request_rate, 1),
        ] {
            if value < min {
                return invalid(field, value.to_string(), "at least 1");
            }
        }
        if !(MIN_FRAME..=MAX_FRAME).contains(&self.max_message_size) {
            return invalid(
                "max_message_size",
                self.max_message_size.to_string(),
                "1024 to 268435456 bytes",
            );
        }
        if !(MIN_FRAME..=MAX_FRAME).contains(&self.max_gossip_size) {
            return invalid(
                "max_gossip_size",
                self.max_gossip_size.to_string(),
                "1024 to 268435456 bytes",
            );
        }
        for (field, value) in [
            ("idle_timeout", self.idle_timeout),
            ("ban_duration", self.ban_duration),
            ("strike_decay", self.strike_decay),
            ("request_timeout", self.request_timeout),
            ("reconnect_backoff_min", self.reconnect_backoff_min),
            ("gossip_heartbeat_interval", self.gossip_heartbeat_interval),
        ] {
            if value.is_zero() {
                return invalid(field, format!("{value:?}"), "a duration above zero");
            }
        }
        if self.reconnect_backoff_max < self.reconnect_backoff_min {
            return invalid(
                "reconnect_backoff_max",
                format!("{:?}", self.reconnect_backoff_max),
                "at least reconnect_backoff_min",
            );
        }
        if self.command_queue_len == 0 {
            return invalid("command_queue_len", "0".to_owned(), "at least 1");
        }
        self.validate_mesh()?;
        for address in &self.bootstrap {
            if crate::peers::peer_id_of(address).is_none() {
                return invalid(
                    "bootstrap",
                    address.to_string(),
                    "a multiaddr ending in /p2p/<peer id>",
                );
            }
        }
        Ok(())
    }

    /// Gossipsub only checks its mesh settings for topics configured up front, so they are
    /// checked here for every topic.
    fn validate_mesh(&self) -> Result<()> {
        let mesh = format!(
            "n={} n_low={} n_high={} outbound_min={}",
            self.gossip_mesh_n,
            self.gossip_mesh_n_low,
            self.gossip_mesh_n_high,
            self.gossip_mesh_outbound_min
        );
        if self.gossip_mesh_n_low == 0
            || self.gossip_mesh_outbound_min > self.gossip_mesh_n_low
            || self.gossip_mesh_n_low > self.gossip_mesh_n
            || self.gossip_mesh_n > self.gossip_mesh_n_high
            || self.gossip_mesh_outbound_min * 2 > self.gossip_mesh_n
        {
            return Err(Error::InvalidConfig {
                field: "gossip_mesh_n",
                value: mesh,
                expected: MESH_RULE,
            });
        }
        Ok(())
    }

    pub(crate) fn max_message_size_usize(&self) -> usize {
        usize::try_from(self.max_message_size).unwrap_or(usize::MAX)
    }

    pub(crate) fn max_gossip_size_usize(&self) -> usize {
        usize::try_from(self.max_gossip_size).unwrap_or(usize::MAX)
    }
}

#[cfg(feature = "cosmic-config")]
impl Config {
    /// The configuration from the `net` section of a node's configuration, field by
    /// field; the fields that section does not have keep their defaults. Fails on a peer
    /// id in `allow` or `block` that does not decode, or on any value
    /// [`Config::validate`] refuses.
    pub fn from_net_config(net: &cosmic_config::NetConfig) -> Result<Self> {
        let peer_ids = |field: &'static str, values: &[String]| -> Result<Vec<PeerId>> {
            values
                .iter()
                .map(|value| {
                    value.parse().map_err(|_| Error::InvalidConfig {
                        field,
                        value: value.clone(),
                        expected: "a base58 peer id such as 12D3KooW...",
                    })
                })
                .collect()
        };
        let config = Self {
            listen: net.listen.clone(),
            bootstrap: net.bootstrap.clone(),
            mdns: net.mdns,
            relay_client: net.relay_client,
            autonat: net.autonat,
            max_connections: net.max_connections,
            max_connections_per_peer: net.max_connections_per_peer,
            max_pending_connections: net.max_pending_connections,
            idle_timeout: net.idle_timeout,
            max_message_size: net.max_message_size,
            max_gossip_size: net.max_gossip_size,
            ban_threshold: net.ban_threshold,
            ban_duration: net.ban_duration,
            inbound_request_rate: net.inbound_request_rate,
            allow: peer_ids("allow", &net.allow)?,
            block: peer_ids("block", &net.block)?,
            ..Self::default()
        };
        config.validate()?;
        Ok(config)
    }
}

const MIN_FRAME: u64 = 1024;
const MAX_FRAME: u64 = 256 * MIB;

fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/4747", "/ip4/0.0.0.0/udp/4747/quic-v1"]
        .iter()
        .filter_map(|address| address.parse().ok())
        .collect()
}

fn localhost_tcp() -> Multiaddr {
    Multiaddr::empty()
        .with(libp2p::multiaddr::Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST))
        .with(libp2p::multiaddr::Protocol::Tcp(0))
}
