//! [`Net`]: the cheap, cloneable handle the rest of the node uses to drive the swarm.
//!
//! Every method sends one command over a bounded queue to the swarm task and awaits its
//! reply on a oneshot channel. When the queue is full the caller waits; the swarm never
//! does. Every method is cancel-safe in the sense that dropping its future never harms
//! the swarm task or loses another caller's reply; but a command already queued still
//! runs (a publish is still published, a dial still dials), only its answer is dropped.

use std::time::Duration;

use bytes::Bytes;
use libp2p::gossipsub::MessageId;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use cosmic_events::Bus;

use crate::actor::{Actor, Command};
use crate::codec::{self, Response};
use crate::events::{Direction, GossipLoss, GossipMessage, InboundRequest, RequestId};
use crate::{Config, Error, Result, behaviour};

/// Room in the gossip handler's loss queue; losses beyond it wait in the swarm task,
/// coalesced, for the next tick.
const LOSS_QUEUE_LEN: usize = 64;

/// How long [`Net::spawn`] waits for its listeners to report their addresses.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The handle to a running network task; clone it freely.
///
/// The task stops when [`Net::shutdown`] is called or when every clone is dropped, and
/// writes the known peers to the peers file either way.
#[derive(Debug, Clone)]
pub struct Net {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    bus: Bus,
}

/// What the application thinks of a gossip message, given to [`Net::report_validation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: deliver and forward it.
    Accept,
    /// Invalid: drop it and penalise the peer that sent it (gossipsub score and a strike
    /// towards a ban).
    Reject,
    /// Not wanted but not malicious: drop it without penalty.
    Ignore,
}

/// The gossip handler's two queues, from [`Net::gossip_inbox`].
#[derive(Debug)]
#[non_exhaustive]
pub struct GossipInbox {
    /// Every gossip message of a subscribed topic, in arrival order; each needs a verdict.
    pub messages: mpsc::Receiver<GossipMessage>,
    /// Gossip lost between this node and a peer (a full queue either way), coalesced per
    /// peer, topic and reason; at most one report per peer, topic and reason is pending.
    pub losses: mpsc::Receiver<GossipLoss>,
}

/// What the swarm knows about one peer, from [`Net::peers`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer.
    pub peer_id: PeerId,
    /// Where it stands now.
    pub state: PeerState,
    /// Addresses we know for it, most recent first.
    pub addresses: Vec<Multiaddr>,
    /// Its open connections.
    pub connections: Vec<ConnectionInfo>,
    /// The gossip topics it subscribes to, as far as we know.
    pub topics: Vec<String>,
    /// Its agent version, from identify.
    pub agent_version: Option<String>,
    /// The last ping round trip.
    pub rtt: Option<Duration>,
    /// Bad frames and invalid messages counted against it since its last ban.
    pub strikes: u32,
    /// Its gossipsub score, when connected.
    pub gossip_score: Option<f64>,
}

/// The state of a peer in [`PeerInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerState {
    /// At least one connection is open.
    Connected,
    /// Not connected; a redial is due in `next_attempt_in`.
    Reconnecting {
        /// Time to the next dial.
        next_attempt_in: Duration,
    },
    /// Not connected, and no redial planned.
    Disconnected,
    /// Banned for `remaining` more.
    Banned {
        /// Time to the end of the ban.
        remaining: Duration,
    },
}

/// One open connection in [`PeerInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The remote address.
    pub address: Multiaddr,
    /// Who dialled.
    pub direction: Direction,
    /// Whether it runs through a relay.
    pub relayed: bool,
}

/// Counters of the network layer, for metrics, from [`Net::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Peers with at least one open connection now.
    pub connected_peers: usize,
    /// Open connections now.
    pub connections: usize,
    /// Peers banned now.
    pub banned_peers: usize,
    /// Connections refused so far by the limits or the allow and block lists.
    pub connections_denied: u64,
    /// Malformed, oversized or unexpected request-response frames received so far.
    pub bad_frames: u64,
    /// Gossip messages rejected so far (too large, or a [`Verdict::Reject`]).
    pub gossip_rejected: u64,
    /// Bans imposed so far.
    pub bans: u64,
    /// Inbound requests received so far.
    pub inbound_requests: u64,
    /// Inbound requests refused so far for going over `inbound_request_rate`.
    pub requests_rate_limited: u64,
    /// Inbound requests refused so far because their handler's queue was full.
    pub requests_dropped: u64,
    /// Gossip messages dropped so far because the gossip handler's queue was full.
    pub gossip_dropped_inbound: u64,
    /// Gossip messages gossipsub could not queue for a slow peer so far (its `SlowPeer`
    /// reports).
    pub gossip_dropped_outbound: u64,
}

impl Net {
    /// Builds the swarm with `keypair` (its public key is the [`PeerId`]), listens on
    /// `config.listen`, dials the bootstrap and persisted peers, and starts the swarm
    /// task, which reports on `bus`.
    ///
    /// Waits (at most 5 s) until every listener has reported an address, so
    /// [`Net::listen_addrs`] is filled when this returns. Must be called within a Tokio
    /// runtime.
    pub async fn spawn(keypair: Keypair, config: Config, bus: Bus) -> Result<Self> {
        config.validate()?;
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = behaviour::build_swarm(keypair, &config)?;
        let mut listeners = Vec::new();
        for address in &config.listen {
            let listener_id = swarm.listen_on(address.clone()).map_err(|error| Error::Listen {
                address: address.clone(),
                source: Box::new(error),
            })?;
            listeners.push(listener_id);
        }
        for address in &config.external_addresses {
            swarm.add_external_address(address.clone());
        }
        let (commands, receiver) = mpsc::channel(config.command_queue_len);
        let (ready, is_ready) = oneshot::channel();
        let actor = Actor::new(swarm, config, bus.clone(), receiver, listeners, ready);
        // The swarm task is owned by the handles: it ends on `Net::shutdown` or when the
        // last one is dropped (its command queue closes), and `Net::closed` waits for it.
        #[allow(clippy::disallowed_methods, reason = "owned by the Net handles, see above")]
        tokio::spawn(actor.run());
        // Either every listener reported, or the task stopped, or it takes too long:
        // in all three cases the handle is usable (its calls report a stopped task).
        let _ = tokio::time::timeout(READY_TIMEOUT, is_ready).await;
        Ok(Self { commands, peer_id, bus })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The bus the swarm task reports on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    async fn call<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (reply, response) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| Error::Shutdown)?;
        response.await.map_err(|_| Error::Shutdown)
    }

    /// Dials `address` and waits until the connection is established; returns the
    /// remote peer id. An address ending in `/p2p/<peer id>` of a peer already connected
    /// returns at once.
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId> {
        self.call(|reply| Command::Dial { address, reply }).await?
    }

    /// Starts listening on `address` (for example a relay circuit,
    /// `/ip4/../tcp/../p2p/<relay>/p2p-circuit`); its addresses arrive as
    /// [`ListenAddrAdded`](crate::ListenAddrAdded) events.
    pub async fn listen_on(&self, address: Multiaddr) -> Result<()> {
        self.call(|reply| Command::ListenOn { address, reply }).await?
    }

    /// The addresses this node listens on now.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// Every peer the swarm knows: connected, known from the peers file, redialling or
    /// banned.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// The peers connected now.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>> {
        Ok(self
            .peers()
            .await?
            .into_iter()
            .filter(|peer| peer.state == PeerState::Connected)
            .map(|peer| peer.peer_id)
            .collect())
    }

    /// Subscribes to a gossip topic; returns false if already subscribed.
    pub async fn subscribe(&self, topic: &str) -> Result<bool> {
        let topic = topic.to_owned();
        self.call(|reply| Command::Subscribe { topic, reply }).await?
    }

    /// Unsubscribes from a gossip topic; returns false if not subscribed.
    pub async fn unsubscribe(&self, topic: &str) -> Result<bool> {
        let topic = topic.to_owned();
        self.call(|reply| Command::Unsubscribe { topic, reply }).await
    }

    /// Publishes `data` on a gossip topic.
    ///
    /// Fails with [`PublishFailure::NoPeersSubscribed`](crate::PublishFailure) until a
    /// connected peer's subscription has arrived (watch for
    /// [`TopicSubscribed`](crate::TopicSubscribed)), and with
    /// [`PublishFailure::Duplicate`](crate::PublishFailure) for the same bytes twice.
    pub async fn publish(&self, topic: &str, data: impl Into<Bytes>) -> Result<MessageId> {
        let topic = topic.to_owned();
        let data = data.into();
        self.call(|reply| Command::Publish { topic, data, reply }).await?
    }

    /// Makes the caller the gossip handler: every gossip message of a subscribed topic
    /// goes to the returned inbox's `messages`, a queue of `capacity` messages, and every
    /// loss to its `losses`. A message that finds the queue full is dropped (ignored by
    /// gossipsub, not forwarded, the sender not penalised), counted in
    /// [`Stats::gossip_dropped_inbound`] and reported as a [`GossipLoss`]. A later call
    /// replaces the handler (the earlier inbox ends).
    pub async fn gossip_inbox(&self, capacity: usize) -> Result<GossipInbox> {
        let (messages, message_receiver) = mpsc::channel(capacity.max(1));
        let (losses, loss_receiver) = mpsc::channel(LOSS_QUEUE_LEN);
        self.call(|reply| Command::GossipHandler { messages, losses, reply }).await?;
        Ok(GossipInbox { messages: message_receiver, losses: loss_receiver })
    }

    /// Makes the caller the handler of inbound requests for application `protocol`: they
    /// arrive on the returned queue of `capacity` requests. A request that finds the queue
    /// full is refused with an error response and counted in [`Stats::requests_dropped`].
    /// A later call for the same protocol replaces the handler.
    pub async fn request_inbox(
        &self,
        protocol: &str,
        capacity: usize,
    ) -> Result<mpsc::Receiver<InboundRequest>> {
        if !codec::is_valid_protocol_name(protocol) {
            return Err(Error::InvalidProtocolName { name: protocol.to_owned() });
        }
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let protocol = protocol.to_owned();
        self.call(|reply| Command::RequestHandler { protocol, sender, reply }).await?;
        Ok(receiver)
    }

    /// Gives gossipsub the application's verdict on a received message; returns false if
    /// the message is no longer in the cache (it was too slow, or already judged).
    pub async fn report_validation(
        &self,
        message_id: MessageId,
        propagation_source: PeerId,
        verdict: Verdict,
    ) -> Result<bool> {
        self.call(|reply| Command::ReportValidation {
            message_id,
            propagation_source,
            verdict,
            reply,
        })
        .await
    }

    /// Sends a request for application `protocol` to `peer_id` (dialling it if needed)
    /// and waits for the answer, at most `request_timeout`.
    pub async fn request(
        &self,
        peer_id: PeerId,
        protocol: &str,
        body: impl Into<Bytes>,
    ) -> Result<Bytes> {
        if !codec::is_valid_protocol_name(protocol) {
            return Err(Error::InvalidProtocolName { name: protocol.to_owned() });
        }
        let request = codec::Request { protocol: protocol.to_owned(), body: body.into() };
        self.call(|reply| Command::Request { peer_id, request, reply }).await?
    }

    /// Answers an [`InboundRequest`](crate::InboundRequest).
    pub async fn respond(&self, request_id: RequestId, response: Response) -> Result<()> {
        self.call(|reply| Command::Respond { request_id, response, reply }).await?
    }

    /// Announces in the DHT that this node provides `key` (a space or blob id).
    pub async fn provide(&self, key: impl Into<Vec<u8>>) -> Result<()> {
        let key = key.into();
        self.call(|reply| Command::Provide { key, reply }).await?
    }

    /// Stops announcing `key` (the local provider record is removed at once; copies held
    /// by other peers expire with their TTL).
    pub async fn stop_providing(&self, key: impl Into<Vec<u8>>) -> Result<()> {
        let key = key.into();
        self.call(|reply| Command::StopProviding { key, reply }).await
    }

    /// Asks the DHT which peers provide `key`.
    pub async fn find_providers(&self, key: impl Into<Vec<u8>>) -> Result<Vec<PeerId>> {
        let key = key.into();
        self.call(|reply| Command::FindProviders { key, reply }).await?
    }

    /// Runs a Kademlia bootstrap and waits for it to finish.
    pub async fn bootstrap(&self) -> Result<()> {
        self.call(|reply| Command::Bootstrap { reply }).await?
    }

    /// Bans `peer_id` for `duration`: its connections close and it cannot reconnect.
    pub async fn ban(&self, peer_id: PeerId, duration: Duration) -> Result<()> {
        let reason = "banned by the application".to_owned();
        self.call(|reply| Command::Ban { peer_id, duration, reason, reply }).await
    }

    /// Counts an offence against `peer_id`, as an invalid frame or a rejected gossip
    /// message would: at `ban_threshold` strikes (less those decayed) it is banned. For
    /// misbehaviour only the application can see, after the gossip verdict is given.
    pub async fn report_peer(&self, peer_id: PeerId, reason: impl Into<String>) -> Result<()> {
        let reason = reason.into();
        self.call(|reply| Command::Strike { peer_id, reason, reply }).await
    }

    /// Lifts a ban early; returns false if `peer_id` was not banned.
    pub async fn unban(&self, peer_id: PeerId) -> Result<bool> {
        self.call(|reply| Command::Unban { peer_id, reply }).await
    }

    /// The counters of the network layer.
    pub async fn stats(&self) -> Result<Stats> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// Waits until the swarm task has stopped, for whatever reason (a shutdown, or a
    /// panic); for a supervisor. Cancel-safe.
    pub async fn closed(&self) {
        self.commands.closed().await;
    }

    /// Stops the swarm task after writing the peers file; every handle then fails with
    /// [`Error::Shutdown`]. Returns once the task has stopped.
    pub async fn shutdown(&self) -> Result<()> {
        self.call(|reply| Command::Shutdown { reply }).await
    }
}
