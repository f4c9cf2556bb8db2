//! The configuration schema: one struct per section, each field with its doc comment and
//! its default written once, in the `section!` macro, so that rustdoc, `Default` and the
//! commented template that `init` writes all come from the same place.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use multiaddr::{Multiaddr, Protocol};
use serde::{Deserialize, Serialize};

/// Bytes an entry needs on the wire besides its value: space id, document key, field name,
/// clock, author and signature. A gossip message or a request frame must hold one entry of
/// the largest allowed value plus this much, which [`crate::load`] checks.
pub const ENTRY_OVERHEAD: u64 = 64 * 1024;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The documentation of one section, taken from the doc comments in this file.
#[derive(Debug)]
pub(crate) struct SectionDoc {
    pub(crate) name: &'static str,
    pub(crate) doc: &'static [&'static str],
    pub(crate) fields: &'static [FieldDoc],
}

/// The documentation of one key of a section.
#[derive(Debug)]
pub(crate) struct FieldDoc {
    pub(crate) name: &'static str,
    pub(crate) doc: &'static [&'static str],
    /// The field's Rust type as written (`String`, `PathBuf`, `Duration`, ...).
    pub(crate) ty: &'static str,
}

impl FieldDoc {
    /// Whether the field holds free text (a string or a path), which an environment
    /// variable sets verbatim even when it looks like a number or a bool.
    pub(crate) fn is_text(&self) -> bool {
        matches!(self.ty, "String" | "PathBuf")
    }
}

/// Declares a section struct, its `Default` and its [`SectionDoc`] from one list of fields.
///
/// A field reads `/// docs`, then an optional `@serde(...)` attribute, then
/// `name: Type = default_expression,`.
macro_rules! section {
    (
        $(#[doc = $section_doc:literal])*
        pub struct $name:ident ($section:literal) {
            $(
                $(#[doc = $doc:literal])*
                $(@serde($($serde:tt)*))?
                $field:ident : $ty:ty = $default:expr,
            )*
        }
    ) => {
        $(#[doc = $section_doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])?
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        impl $name {
            pub(crate) const DOC: SectionDoc = SectionDoc {
                name: $section,
                doc: &[$($section_doc),*],
                fields: &[$(FieldDoc {
                    name: stringify!($field),
                    doc: &[$($doc),*],
                    ty: stringify!($ty),
                }),*],
            };
        }
    };
}

/// The whole configuration of a node: one field per section of `cosmic.toml`.
///
/// `Config::default()` is the built-in default layer. [`crate::load`] layers files,
/// environment variables and caller overrides on top of it and validates the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[node]`: where the node keeps its state.
    pub node: NodeConfig,
    /// `[net]`: the libp2p side: listeners, discovery, limits.
    pub net: NetConfig,
    /// `[store]`: the document store.
    pub store: StoreConfig,
    /// `[blobs]`: the content-addressed blob store.
    pub blobs: BlobsConfig,
    /// `[sync]`: replication between peers.
    pub sync: SyncConfig,
    /// `[api]`: the local HTTP API.
    pub api: ApiConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
}

impl Config {
    /// The documentation of every section, in file order.
    pub(crate) const SECTIONS: [SectionDoc; 7] = [
        NodeConfig::DOC,
        NetConfig::DOC,
        StoreConfig::DOC,
        BlobsConfig::DOC,
        SyncConfig::DOC,
        ApiConfig::DOC,
        LogConfig::DOC,
    ];
}

/// The default data directory: the platform data directory plus `cosmic`
/// (`~/.local/share/cosmic` on Linux, `~/Library/Application Support/cosmic` on macOS),
/// or `.cosmic` in the working directory on a platform that has none.
pub fn default_data_dir() -> PathBuf {
    match dirs::data_dir() {
        Some(dir) => dir.join("cosmic"),
        None => PathBuf::from(".cosmic"),
    }
}

fn default_listen() -> Vec<Multiaddr> {
    let any = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED));
    vec![
        any.clone().with(Protocol::Tcp(4747)),
        any.with(Protocol::Udp(4747)).with(Protocol::QuicV1),
    ]
}

section! {
    /// Where the node keeps its state.
    pub struct NodeConfig ("node") {
        /// The data directory: node key, keystore, store, blobs, API token and `cosmic.toml`.
        /// It is created at load if missing; a relative path is relative to the working
        /// directory. It cannot be set in the `cosmic.toml` inside it:
        /// set it with `--data-dir`, `COSMIC_NODE__DATA_DIR` or a `--config` file.
        /// Default: the platform data directory plus `cosmic` (`~/.local/share/cosmic` on Linux).
        data_dir: PathBuf = default_data_dir(),
    }
}

section! {
    /// The peer-to-peer network: listeners, discovery and the limits that protect the node.
    pub struct NetConfig ("net") {
        /// Multiaddrs to listen on; port 0 picks a free port.
        /// Default: `["/ip4/0.0.0.0/tcp/4747", "/ip4/0.0.0.0/udp/4747/quic-v1"]`.
        @serde(with = "crate::serde_impls::multiaddrs")
        listen: Vec<Multiaddr> = default_listen(),
        /// Peers to dial at start; each multiaddr must end in `/p2p/<peer id>`.
        /// Default: `[]`.
        @serde(with = "crate::serde_impls::multiaddrs")
        bootstrap: Vec<Multiaddr> = Vec::new(),
        /// Discover peers on the local network with mDNS.
        /// Default: `true`.
        mdns: bool = true,
        /// Reach peers behind NAT through relays (relay client and hole punching).
        /// Default: `true`.
        relay_client: bool = true,
        /// Ask peers whether this node is reachable from outside (AutoNAT).
        /// Default: `true`.
        autonat: bool = true,
        /// Established connections in total, 1 to 65536.
        /// Default: `256`.
        max_connections: u32 = 256,
        /// Established connections to one peer, 1 to 64.
        /// Default: `2`.
        max_connections_per_peer: u32 = 2,
        /// Connections being set up at once, inbound and outbound, 1 to 65536.
        /// Default: `64`.
        max_pending_connections: u32 = 64,
        /// Close a connection after this long without any stream, 1s to 1 day.
        /// Default: `"1m"`.
        @serde(with = "crate::serde_impls::duration")
        idle_timeout: Duration = Duration::from_secs(60),
        /// Largest request-response frame in bytes (reconciliation, blob requests);
        /// at least `store.max_value_size` plus 65536 bytes of entry overhead.
        /// Default: `4194304` (4 MiB).
        max_message_size: u64 = 4 * MIB,
        /// Largest gossip message in bytes; at least `store.max_value_size` plus 65536 bytes
        /// of entry overhead.
        /// Default: `2097152` (2 MiB).
        max_gossip_size: u64 = 2 * MIB,
        /// Bad frames or invalid messages from one peer before it is banned, 1 to 1000000.
        /// Default: `10`.
        ban_threshold: u32 = 10,
        /// How long a banned peer stays banned, 1s to 365 days.
        /// Default: `"1h"`.
        @serde(with = "crate::serde_impls::duration")
        ban_duration: Duration = Duration::from_secs(3600),
        /// Inbound requests accepted per peer per second, 1 to 1000000.
        /// Default: `100`.
        inbound_request_rate: u32 = 100,
        /// If not empty, only these peers (base58 peer ids such as `12D3KooW...`) may
        /// connect. Checked here for the base58 alphabet only; `cosmic-net` decodes them.
        /// Default: `[]`.
        @serde(with = "crate::serde_impls::strings")
        allow: Vec<String> = Vec::new(),
        /// Peers (base58 peer ids) that may never connect; wins over `allow`.
        /// Default: `[]`.
        @serde(with = "crate::serde_impls::strings")
        block: Vec<String> = Vec::new(),
    }
}

section! {
    /// The document store.
    pub struct StoreConfig ("store") {
        /// Largest value of one field in bytes, 1 byte to 64 MiB. Gossip messages and request
        /// frames must be able to carry it (see `net.max_gossip_size`).
        /// Default: `1048576` (1 MiB).
        max_value_size: u64 = MIB,
        /// When a write is on disk: `immediate` (before the write returns) or `eventual`
        /// (within 200 ms after; a crash can lose the last writes, never corrupt the store;
        /// writes that reached peers come back from them).
        /// Default: `"immediate"`.
        durability: Durability = Durability::Immediate,
        /// Memory for the database's page cache in bytes, 1 MiB to 64 GiB. Opening the
        /// store reads the file through this cache, so resident memory grows with the
        /// store up to about this much; the operating system's page cache serves the rest.
        /// Default: `67108864` (64 MiB).
        cache_size: u64 = 64 * MIB,
        /// Bytes of entries one author may hold in one open space, 64 KiB to 1 PiB: a write
        /// that would take it beyond is refused (HTTP 403 `quota_exceeded`; from a peer,
        /// ignored and counted), one that shrinks what it holds always passes. Restricted
        /// spaces have no quota: who writes there is granted.
        /// Default: `1073741824` (1 GiB).
        author_quota: u64 = GIB,
    }
}

section! {
    /// Content-addressed blobs.
    pub struct BlobsConfig ("blobs") {
        /// Largest blob in bytes that the node stores or fetches.
        /// Default: `1073741824` (1 GiB).
        max_blob_size: u64 = GIB,
        /// Give up fetching a blob from one peer after this long without progress, 1s to 1 day.
        /// Default: `"5m"`.
        @serde(with = "crate::serde_impls::duration")
        fetch_timeout: Duration = Duration::from_secs(300),
        /// How often unreferenced blobs are deleted, 1s to 365 days.
        /// Default: `"1h"`.
        @serde(with = "crate::serde_impls::duration")
        gc_interval: Duration = Duration::from_secs(3600),
        /// Which linked blobs to fetch when a space does not say: `eager` (as soon as a
        /// document links them), `lazy` (when first read) or `none` (only when asked).
        /// Default: `"lazy"`.
        default_fetch_policy: BlobPolicy = BlobPolicy::Lazy,
    }
}

section! {
    /// Replication between peers.
    pub struct SyncConfig ("sync") {
        /// Reject entries stamped further than this in the future, 1s to 1 day; they are
        /// offered again by reconciliation later.
        /// Default: `"5m"`.
        @serde(with = "crate::serde_impls::duration")
        max_clock_drift: Duration = Duration::from_secs(300),
        /// How often to reconcile each shared space with each connected peer, 1s to 1 day.
        /// Default: `"1m"`.
        @serde(with = "crate::serde_impls::duration")
        reconcile_interval: Duration = Duration::from_secs(60),
    }
}

section! {
    /// The local HTTP API.
    pub struct ApiConfig ("api") {
        /// Serve the HTTP API.
        /// Default: `true`.
        enabled: bool = true,
        /// Address of the HTTP API; keep it on loopback unless a proxy guards it.
        /// Default: `"127.0.0.1:7878"`.
        @serde(with = "crate::serde_impls::socket_addr")
        addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7878)),
        /// Largest JSON request body in bytes, 1 KiB to 1 GiB; blob uploads stream and are
        /// bounded by `blobs.max_blob_size` instead.
        /// Default: `4194304` (4 MiB).
        max_request_size: u64 = 4 * MIB,
    }
}

section! {
    /// Logging. The binary installs the subscriber; `RUST_LOG` overrides `filter`.
    pub struct LogConfig ("log") {
        /// Output format: `pretty` (for people) or `json` (one object per line).
        /// Default: `"pretty"`.
        format: LogFormat = LogFormat::Pretty,
        /// A tracing filter such as `info` or `info,cosmic_net=debug`.
        /// Default: `"info"`.
        filter: String = String::from("info"),
    }
}

/// When a store write reaches the disk (`store.durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Durability {
    /// Before the write returns.
    Immediate,
    /// Soon after the write returns.
    Eventual,
}

/// Which linked blobs of a space's documents a node fetches: the default of a newly joined
/// space is `blobs.default_fetch_policy`, and each space keeps its own (a node's choice,
/// not synced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BlobPolicy {
    /// As soon as a synced document links one.
    Eager,
    /// When first read.
    Lazy,
    /// Only when asked for.
    None,
}

/// Log output format (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}
