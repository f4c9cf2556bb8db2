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
//! cloneable handle that sends commands over a bounded queue. Protocol traffic goes to one
//! handler per protocol, each through its own bounded queue: gossip messages to the gossip
//! handler ([`Net::gossip_inbox`], with a second queue that reports [`GossipLoss`]es),
//! inbound requests to the handler of their application protocol ([`Net::request_inbox`]).
//! A full queue never stalls the swarm: the message is dropped, counted and reported as a
//! loss, the request refused with an error. Observers hear what happens on the
//! `cosmic-events` [`Bus`](cosmic_events::Bus): [`PeerConnected`], [`PeerDisconnected`],
//! [`ListenAddrAdded`], [`TopicSubscribed`], [`PeerBanned`] and a few more, one type each
//! (see [`events`]); the bus never blocks and may drop for laggards, so nothing that must
//! not be lost rides it. Known peers are kept in a small file so a
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
//! use cosmic_net::{Config, Keypair, Net, Verdict};
//!
//! # async fn example() -> cosmic_net::Result<()> {
//! let net = Net::spawn(Keypair::generate_ed25519(), Config::local(), Bus::new()).await?;
//! let mut inbox = net.gossip_inbox(1024).await?;
//! net.subscribe("cosmic/space/1/example").await?;
//! while let Some(message) = inbox.messages.recv().await {
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

pub use api::{ConnectionInfo, GossipInbox, Net, PeerInfo, PeerState, Stats, Verdict};
pub use behaviour::{IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL};
pub use codec::{Request, Response};
pub use config::Config;
pub use error::{Error, PublishFailure, Result};
pub use events::{
    Direction, GossipLoss, GossipMessage, GossipSeen, InboundRequest, ListenAddrAdded,
    ListenAddrRemoved, LossReason, PeerBanned, PeerConnected, PeerDisconnected, RequestId,
    TopicSubscribed, TopicUnsubscribed,
};
pub use libp2p::gossipsub::MessageId;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId, StreamProtocol};
