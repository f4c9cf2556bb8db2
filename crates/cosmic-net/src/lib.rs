//! The networking layer of CosmicSyncCore (level 3): the sole user of libp2p.
//!
//! This crate owns the libp2p swarm: TCP and QUIC transports with noise and yamux,
//! identify, ping, mDNS, Kademlia under our own protocol (`/cosmic/kad/1.0.0`, server
//! mode), gossipsub with signed messages, manual validation, content-addressed message
//! ids and peer scoring, a request-response protocol of our own with a versioned,
//! length-prefixed envelope ([`codec`]), connection limits, allow and block lists with
//! timed bans, and the relay client, DCUtR and AutoNAT (and, as an option, a relay
//! server).
//!
//! The swarm lives in one task. The rest of the node drives it through [`Net`], a cheap,
//! cloneable handle that sends commands over a bounded queue, and hears from it on the
//! `cosmic-events` [`Bus`](cosmic_events::Bus): [`PeerConnected`], [`PeerDisconnected`],
//! [`ListenAddrAdded`], [`TopicSubscribed`], [`GossipMessage`], [`InboundRequest`],
//! [`PeerBanned`] and a few more, one type each (see [`events`]). The bus never blocks,
//! so a slow consumer never stalls the swarm. Known peers are kept in a small file so a
//! restarted node reconnects without mDNS; bootstrap peers and peers sharing a topic are
//! redialled with exponential backoff.
//!
//! It knows nothing of spaces, entries or blobs: upper layers give it topics, bytes and
//! protocol names, and judge gossip messages themselves. It depends only on
//! `cosmic-events`; the node key arrives as a ready [`Keypair`] and the configuration
//! as a [`Config`], which the node fills from `cosmic_config::NetConfig`.
//!
//! ```no_run
//! use cosmic_events::Bus;
//! use cosmic_net::{Config, GossipMessage, Keypair, Net, Verdict};
//!
//! # async fn example() -> cosmic_net::Result<()> {
//! let bus = Bus::new();
//! let mut messages = bus.subscribe::<GossipMessage>();
//! let net = Net::spawn(Keypair::generate_ed25519(), Config::local(), bus).await?;
//! net.subscribe("cosmic/space/1/example").await?;
//! while let Ok(message) = messages.recv().await {
//!     let verdict = if message.data.is_empty() { Verdict::Reject } else { Verdict::Accept };
//!     net.report_validation(message.message_id, message.propagation_source, verdict).await?;
//! }
//! net.shutdown().await
//! # }
//! ```

mod actor;
mod api;
mod behaviour;
pub mod codec;
mod config;
mod error;
pub mod events;
mod peers;

#[cfg(test)]
mod tests;

pub use api::{ConnectionInfo, Net, PeerInfo, PeerState, Stats, Verdict};
pub use behaviour::{IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL};
pub use codec::{Request, Response};
pub use config::Config;
pub use error::{Error, PublishFailure, Result};
pub use events::{
    Direction, GossipMessage, InboundRequest, ListenAddrAdded, ListenAddrRemoved, PeerBanned,
    PeerConnected, PeerDisconnected, RequestId, TopicSubscribed, TopicUnsubscribed,
};
pub use libp2p::gossipsub::MessageId;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId, StreamProtocol};
