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
/// Delivered to the gossip handler ([`Net::gossip_inbox`](crate::Net::gossip_inbox)), not
/// to the bus. Gossipsub forwards it only after
/// [`Net::report_validation`](crate::Net::report_validation) says
/// [`Verdict::Accept`](crate::Verdict::Accept); give every message a verdict. With no
/// handler, or a handler whose queue is full, the message is ignored (neither forwarded
/// nor penalised); a full queue is reported as a [`GossipLoss`].
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

/// A copy of a gossip message that arrived on a subscribed topic, for observers (tests,
/// tracing tools): the handler gets the message itself through the gossip queue. Like
/// every bus event this copy is dropped for a subscriber that lags; it costs nothing when
/// nobody subscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipSeen {
    /// The topic.
    pub topic: String,
    /// The peer that signed and first published the message.
    pub source: Option<PeerId>,
    /// The peer that forwarded it to us.
    pub propagation_source: PeerId,
    /// The payload.
    pub data: Bytes,
}

/// A peer sent a request on our request-response protocol.
///
/// Delivered to the handler of its protocol ([`Net::request_inbox`](crate::Net::request_inbox)),
/// not to the bus. Answer it with [`Net::respond`](crate::Net::respond) before
/// `request_timeout`. With no handler for the protocol, or a handler whose queue is full,
/// the request is refused at once with an error response.
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

/// Why gossip messages were lost between this node and a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LossReason {
    /// Messages from the peer found the gossip handler's queue full and were dropped here.
    InboundQueueFull,
    /// Messages to the peer found gossipsub's send queue for it full and were dropped
    /// (gossipsub's `SlowPeer`): the peer did not get them from us.
    SendQueueFull,
}

impl LossReason {
    /// A short snake-case name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::InboundQueueFull => "inbound_queue_full",
            LossReason::SendQueueFull => "send_queue_full",
        }
    }
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Gossip messages between this node and a peer were lost: the handler should repair the
/// gap (for example by reconciling with the peer). Reported on the gossip handler's loss
/// queue within one maintenance tick (100 ms) of the loss, coalesced per peer, topic and
/// reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipLoss {
    /// The peer the messages came from or were meant for.
    pub peer_id: PeerId,
    /// The topic, when known (a send-queue loss names none).
    pub topic: Option<String>,
    /// Why they were lost.
    pub reason: LossReason,
    /// How many messages were lost since the last report.
    pub messages: u64,
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
