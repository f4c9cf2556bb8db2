//! The events this crate publishes on the `cosmic-events` bus, one type per kind, so a
//! consumer subscribes only to what it needs.
//!
//! The swarm task publishes and never waits: a consumer that falls behind lags and is
//! told how many events it missed (see `cosmic_events::RecvError::Lagged`).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use libp2p::gossipsub::MessageId;
use libp2p::{Multiaddr, PeerId};

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The remote peer dialled us.
    Inbound,
    /// We dialled the remote peer.
    Outbound,
}

/// The first connection to a peer was established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerConnected {
    /// The peer.
    pub peer_id: PeerId,
    /// The remote address of the connection.
    pub address: Multiaddr,
    /// Who dialled.
    pub direction: Direction,
    /// Whether the connection runs through a relay (`/p2p-circuit`).
    pub relayed: bool,
}

/// The last connection to a peer closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerDisconnected {
    /// The peer.
    pub peer_id: PeerId,
}

/// A listener reported a new local address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenAddrAdded {
    /// The address, without the `/p2p/<peer id>` suffix.
    pub address: Multiaddr,
}

/// A local listen address went away.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenAddrRemoved {
    /// The address.
    pub address: Multiaddr,
}

/// A remote peer subscribed to a gossip topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicSubscribed {
    /// The peer.
    pub peer_id: PeerId,
    /// The topic.
    pub topic: String,
}

/// A remote peer unsubscribed from a gossip topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicUnsubscribed {
    /// The peer.
    pub peer_id: PeerId,
    /// The topic.
    pub topic: String,
}

/// A gossip message arrived on a subscribed topic and awaits a verdict.
///
/// Gossipsub forwards it only after [`Net::report_validation`](crate::Net::report_validation)
/// says [`Verdict::Accept`](crate::Verdict::Accept); give every message a verdict. If
/// nobody subscribes to this event, the message is ignored (neither forwarded nor
/// penalised).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipMessage {
    /// The topic.
    pub topic: String,
    /// The content-addressed id (SHA-256 of topic and data), for the verdict.
    pub message_id: MessageId,
    /// The peer that signed and first published the message.
    pub source: Option<PeerId>,
    /// The peer that forwarded it to us, for the verdict.
    pub propagation_source: PeerId,
    /// The payload, at most `max_gossip_size` bytes.
    pub data: Bytes,
}

/// A peer sent a request on our request-response protocol.
///
/// Answer it with [`Net::respond`](crate::Net::respond) before `request_timeout`; if
/// nobody subscribes to this event, the request is refused at once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundRequest {
    /// The id to answer with.
    pub request_id: RequestId,
    /// The peer asking.
    pub peer_id: PeerId,
    /// The application protocol, e.g. `sync/reconcile/1`.
    pub protocol: String,
    /// The request body.
    pub body: Bytes,
}

/// A peer was banned for sending too many bad frames or invalid messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerBanned {
    /// The peer.
    pub peer_id: PeerId,
    /// How long the ban lasts.
    pub duration: Duration,
    /// The last offence.
    pub reason: String,
}

/// The id of one inbound request, carried by [`InboundRequest`] and given back to
/// [`Net::respond`](crate::Net::respond).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The id as a number, unique within one [`Net`](crate::Net).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
