//! The swarm task: owns the [`Swarm`], takes [`Command`]s from [`Net`](crate::Net)
//! handles and publishes what happens on the event bus.
//!
//! One `select!` loop polls the swarm, the bounded command queue and a maintenance tick
//! (redials, ban expiry, persisting the peers file). Nothing in the loop waits on a
//! consumer: replies go over oneshot channels whose receivers may be gone, events go to
//! the bus, which drops for laggards.

use std::collections::{HashMap, HashSet};
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, PublishError};
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{
    self, InboundRequestId, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionError, ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns, ping, relay};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use cosmic_events::Bus;

use crate::api::{ConnectionInfo, PeerInfo, PeerState, Stats, Verdict};
use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::codec::{Frame, Request, Response};
use crate::events::{
    Direction, GossipMessage, InboundRequest, ListenAddrAdded, ListenAddrRemoved, PeerBanned,
    PeerConnected, PeerDisconnected, RequestId, TopicSubscribed, TopicUnsubscribed,
};
use crate::peers::{self, Backoff, KnownPeers};
use crate::{Config, Error, PublishFailure, Result};

/// How often the maintenance tick runs.
const TICK: Duration = Duration::from_millis(100);
/// How often the peers file is written when something changed.
const PERSIST_INTERVAL: Duration = Duration::from_secs(5);
/// Redials of a peer known from the peers file or a shared topic before giving up.
const MAX_REDIALS: u32 = 8;
/// Disconnected peers whose strikes we remember, at most.
const MAX_TRACKED_PEERS: usize = 4096;
/// How often connections are checked for idleness.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Peers from the peers file dialled at start, the most recently seen first.
const MAX_REDIALS_AT_START: usize = 32;

/// A request from a [`Net`](crate::Net) handle, with the channel for its reply.
#[derive(Debug)]
pub(crate) enum Command {
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<PeerId>>,
    },
    ListenOn {
        address: Multiaddr,
        reply: oneshot::Sender<Result<()>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<bool>>,
    },
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<bool>,
    },
    Publish {
        topic: String,
        data: Bytes,
        reply: oneshot::Sender<Result<MessageId>>,
    },
    ReportValidation {
        message_id: MessageId,
        propagation_source: PeerId,
        verdict: Verdict,
        reply: oneshot::Sender<bool>,
    },
    Request {
        peer_id: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Bytes>>,
    },
    Respond {
        request_id: RequestId,
        response: Response,
        reply: oneshot::Sender<Result<()>>,
    },
    Provide {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
    },
    FindProviders {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<PeerId>>>,
    },
    Bootstrap {
        reply: oneshot::Sender<Result<()>>,
    },
    Ban {
        peer_id: PeerId,
        duration: Duration,
        reason: String,
        reply: oneshot::Sender<()>,
    },
    Unban {
        peer_id: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What we know about a peer beyond its addresses.
#[derive(Debug, Default)]
struct PeerMeta {
    connections: Vec<(ConnectionId, ConnectionInfo)>,
    topics: HashSet<String>,
    agent_version: Option<String>,
    rtt: Option<Duration>,
    strikes: u32,
    /// The last connection, gossip message, request or subscription change.
    last_active: Option<Instant>,
    /// Start of the current one-second window and requests seen in it.
    rate_window: Option<(Instant, u32)>,
}

struct PendingRequest {
    peer_id: PeerId,
    reply: oneshot::Sender<Result<Bytes>>,
}

struct PendingInbound {
    inner_id: InboundRequestId,
    channel: ResponseChannel<Response>,
}

struct ProviderQuery {
    found: HashSet<PeerId>,
    reply: oneshot::Sender<Result<Vec<PeerId>>>,
}

pub(crate) struct Actor {
    swarm: Swarm<Behaviour>,
    config: Config,
    bus: Bus,
    commands: mpsc::Receiver<Command>,
    listen_addrs: Vec<Multiaddr>,
    peers: HashMap<PeerId, PeerMeta>,
    known: KnownPeers,
    bootstrap: HashMap<PeerId, Vec<Multiaddr>>,
    reconnect: HashMap<PeerId, Backoff>,
    bans: HashMap<PeerId, Instant>,
    /// Relays we listen through: their connections are never idle.
    relays: HashSet<PeerId>,
    /// Peers holding a reservation on our relay server: never idle either.
    relay_clients: HashSet<PeerId>,
    /// Peers we are disconnecting for idleness, so their close is not a loss.
    closing_idle: HashSet<PeerId>,
    last_idle_check: Instant,
    dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId>>)>,
    requests: HashMap<OutboundRequestId, PendingRequest>,
    inbound: HashMap<RequestId, PendingInbound>,
    next_request_id: u64,
    provide_queries: HashMap<QueryId, oneshot::Sender<Result<()>>>,
    provider_queries: HashMap<QueryId, ProviderQuery>,
    bootstrap_queries: HashMap<QueryId, oneshot::Sender<Result<()>>>,
    stats: Stats,
    pending_listeners: HashSet<ListenerId>,
    ready: Option<oneshot::Sender<()>>,
    started: Instant,
    last_persist: Instant,
    persisting: Option<JoinHandle<()>>,
}

impl Actor {
    pub(crate) fn new(
        mut swarm: Swarm<Behaviour>,
        config: Config,
        bus: Bus,
        commands: mpsc::Receiver<Command>,
        listeners: Vec<ListenerId>,
        ready: oneshot::Sender<()>,
    ) -> Self {
        let now = Instant::now();
        let known = config.peers_file.as_deref().map(KnownPeers::load).unwrap_or_default();
        let mut reconnect = HashMap::new();
        let mut recent: Vec<_> = known.iter().collect();
        recent.sort_by_key(|(_, peer)| std::cmp::Reverse(peer.last_seen));
        for (index, (peer_id, peer)) in recent.into_iter().enumerate() {
            for address in &peer.addresses {
                swarm.add_peer_address(*peer_id, address.clone());
            }
            // Redial the most recently seen peers at start; the rest stay known addresses
            // for Kademlia and request-response to use.
            if index < MAX_REDIALS_AT_START {
                reconnect.insert(*peer_id, Backoff::new(now, Some(MAX_REDIALS)));
            }
        }
        let mut bootstrap: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for address in &config.bootstrap {
            // `Config::validate` checked that every bootstrap address names its peer.
            if let Some(peer_id) = peers::peer_id_of(address) {
                let address = peers::without_peer_id(address);
                swarm.add_peer_address(peer_id, address.clone());
                swarm.behaviour_mut().kad.add_address(&peer_id, address.clone());
                bootstrap.entry(peer_id).or_default().push(address);
                reconnect.insert(peer_id, Backoff::new(now, None));
            }
        }
        let mut ready = Some(ready);
        if listeners.is_empty() {
            let _ = ready.take().map(|ready| ready.send(()));
        }
        Self {
            swarm,
            config,
            bus,
            commands,
            listen_addrs: Vec::new(),
            peers: HashMap::new(),
            known,
            bootstrap,
            reconnect,
            bans: HashMap::new(),
            relays: HashSet::new(),
            relay_clients: HashSet::new(),
            closing_idle: HashSet::new(),
            last_idle_check: now,
            dials: HashMap::new(),
            requests: HashMap::new(),
            inbound: HashMap::new(),
            next_request_id: 1,
            provide_queries: HashMap::new(),
            provider_queries: HashMap::new(),
            bootstrap_queries: HashMap::new(),
            stats: Stats::default(),
            pending_listeners: listeners.into_iter().collect(),
            ready,
            started: now,
            last_persist: now,
            persisting: None,
        }
    }

    /// Runs until shutdown or until every handle is gone.
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown_reply = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                _ = tick.tick() => self.on_tick(),
            }
        };
        if let Some(persisting) = self.persisting.take() {
            let _ = persisting.await;
        }
        if let Some(handle) = self.persist() {
            let _ = handle.await;
        }
        drop(self.swarm);
        tracing::debug!("network task stopped");
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if self.ready.is_some() && now.duration_since(self.started) > Duration::from_secs(5) {
            let _ = self.ready.take().map(|ready| ready.send(()));
        }
        let expired: Vec<PeerId> =
            self.bans.iter().filter(|(_, until)| **until <= now).map(|(peer, _)| *peer).collect();
        for peer_id in expired {
            self.lift_ban(&peer_id);
        }
        self.redial_due(now);
        if now.duration_since(self.last_idle_check) >= IDLE_CHECK_INTERVAL {
            self.last_idle_check = now;
            self.close_idle(now);
        }
        self.inbound.retain(|_, pending| pending.channel.is_open());
        let persist_done = self.persisting.as_ref().is_none_or(JoinHandle::is_finished);
        if persist_done && now.duration_since(self.last_persist) >= PERSIST_INTERVAL {
            self.last_persist = now;
            self.persisting = self.persist();
        }
    }

    /// Writes the peers file on a blocking thread if anything changed.
    fn persist(&mut self) -> Option<JoinHandle<()>> {
        let path = self.config.peers_file.clone()?;
        if !self.known.take_dirty() {
            return None;
        }
        let bytes = self.known.to_json();
        Some(tokio::task::spawn_blocking(move || {
            if let Err(error) = peers::write_atomically(&path, &bytes) {
                tracing::warn!(path = %path.display(), %error, "failed to write the peers file");
            }
        }))
    }

    /// Disconnects peers idle for `idle_timeout`.
    ///
    /// The swarm's own idle timeout never fires between two of our nodes: gossipsub keeps
    /// a long-lived stream open to every peer that speaks it, topics or not. So idleness
    /// is judged here: no shared topic, no request in flight, no relay reservation either
    /// way, and no activity (gossip, requests, subscription changes) for `idle_timeout`.
    fn close_idle(&mut self, now: Instant) {
        if self.peers.len() > MAX_TRACKED_PEERS {
            // Offences of peers gone long ago are the first thing to forget.
            let bans = &self.bans;
            self.peers
                .retain(|peer_id, meta| !meta.connections.is_empty() || bans.contains_key(peer_id));
        }
        let our_topics: HashSet<String> =
            self.swarm.behaviour().gossipsub.topics().map(ToString::to_string).collect();
        let mut busy: HashSet<PeerId> =
            self.requests.values().map(|pending| pending.peer_id).collect();
        // A relay carrying one of our relayed connections must stay.
        busy.extend(
            self.peers
                .values()
                .flat_map(|meta| &meta.connections)
                .filter(|(_, info)| info.relayed)
                .filter_map(|(_, info)| relay_of(&info.address)),
        );
        let idle: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(peer_id, meta)| {
                !meta.connections.is_empty()
                    && meta
                        .last_active
                        .is_some_and(|at| now.duration_since(at) >= self.config.idle_timeout)
                    && !meta.topics.iter().any(|topic| our_topics.contains(topic))
                    && !busy.contains(peer_id)
                    && !self.relays.contains(peer_id)
                    && !self.relay_clients.contains(peer_id)
                    && !self.closing_idle.contains(peer_id)
            })
            .map(|(peer_id, _)| *peer_id)
            .collect();
        for peer_id in idle {
            tracing::debug!(%peer_id, "closing idle connections");
            if self.swarm.disconnect_peer_id(peer_id).is_ok() {
                self.closing_idle.insert(peer_id);
            }
        }
    }

    /// Notes activity with `peer_id`, which postpones closing it as idle.
    fn active(&mut self, peer_id: PeerId) {
        self.peers.entry(peer_id).or_default().last_active = Some(Instant::now());
    }

    fn redial_due(&mut self, now: Instant) {
        let due: Vec<PeerId> = self
            .reconnect
            .iter()
            .filter(|(_, backoff)| backoff.next_at <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer_id in due {
            if self.swarm.is_connected(&peer_id) || self.bans.contains_key(&peer_id) {
                self.reconnect.remove(&peer_id);
                continue;
            }
            let mut addresses = self.known.addresses(&peer_id);
            addresses.extend(self.bootstrap.get(&peer_id).into_iter().flatten().cloned());
            let opts = DialOpts::peer_id(peer_id)
                .addresses(addresses)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            tracing::debug!(%peer_id, "redialling");
            if let Err(error) = self.swarm.dial(opts) {
                tracing::debug!(%peer_id, %error, "redial not started");
            }
            // Count the attempt now; a success removes the entry.
            let (min, max) = (self.config.reconnect_backoff_min, self.config.reconnect_backoff_max);
            let keep = self.reconnect.get_mut(&peer_id).is_some_and(|b| b.failed(now, min, max));
            if !keep {
                self.reconnect.remove(&peer_id);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { address, reply } => self.dial(address, reply),
            Command::ListenOn { address, reply } => {
                if let Some(relay) = relay_of(&address) {
                    self.relays.insert(relay);
                }
                let result = self
                    .swarm
                    .listen_on(address.clone())
                    .map(|_| ())
                    .map_err(|error| Error::Listen { address, source: Box::new(error) });
                let _ = reply.send(result);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Command::Subscribe { topic, reply } => {
                let ident = IdentTopic::new(topic.clone());
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                let result = gossipsub
                    .subscribe(&ident)
                    .map_err(|error| Error::Subscribe { topic, source: Box::new(error) });
                if let Err(error) =
                    gossipsub.set_topic_params(ident, behaviour::topic_score_params())
                {
                    tracing::warn!(%error, "invalid topic score parameters");
                }
                let _ = reply.send(result);
            }
            Command::Unsubscribe { topic, reply } => {
                let ident = IdentTopic::new(topic);
                let _ = reply.send(self.swarm.behaviour_mut().gossipsub.unsubscribe(&ident));
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::ReportValidation { message_id, propagation_source, verdict, reply } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Reject => MessageAcceptance::Reject,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                };
                let found = self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    acceptance,
                );
                if verdict == Verdict::Reject {
                    self.stats.gossip_rejected += 1;
                    self.strike(propagation_source, "invalid gossip message");
                }
                let _ = reply.send(found);
            }
            Command::Request { peer_id, request, reply } => self.request(peer_id, request, reply),
            Command::Respond { request_id, response, reply } => {
                let _ = reply.send(self.respond(request_id, response));
            }
            Command::Provide { key, reply } => {
                match self.swarm.behaviour_mut().kad.start_providing(kad::RecordKey::new(&key)) {
                    Ok(query_id) => {
                        self.provide_queries.insert(query_id, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(Error::Kademlia {
                            operation: "provide",
                            source: Box::new(error),
                        }));
                    }
                }
            }
            Command::FindProviders { key, reply } => {
                let query_id =
                    self.swarm.behaviour_mut().kad.get_providers(kad::RecordKey::new(&key));
                self.provider_queries
                    .insert(query_id, ProviderQuery { found: HashSet::new(), reply });
            }
            Command::Bootstrap { reply } => match self.swarm.behaviour_mut().kad.bootstrap() {
                Ok(query_id) => {
                    self.bootstrap_queries.insert(query_id, reply);
                }
                Err(error) => {
                    let _ = reply.send(Err(Error::Kademlia {
                        operation: "bootstrap",
                        source: Box::new(error),
                    }));
                }
            },
            Command::Ban { peer_id, duration, reason, reply } => {
                self.ban(peer_id, duration, reason);
                let _ = reply.send(());
            }
            Command::Unban { peer_id, reply } => {
                let _ = reply.send(self.lift_ban(&peer_id));
            }
            Command::Stats { reply } => {
                let mut stats = self.stats;
                stats.connected_peers =
                    self.peers.values().filter(|meta| !meta.connections.is_empty()).count();
                stats.connections = self.peers.values().map(|meta| meta.connections.len()).sum();
                stats.banned_peers = self.bans.len();
                let _ = reply.send(stats);
            }
            // Handled in `run`.
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn dial(&mut self, address: Multiaddr, reply: oneshot::Sender<Result<PeerId>>) {
        let opts = match peers::peer_id_of(&address) {
            Some(peer_id) => {
                if self.swarm.is_connected(&peer_id) {
                    let _ = reply.send(Ok(peer_id));
                    return;
                }
                DialOpts::peer_id(peer_id)
                    .addresses(vec![address.clone()])
                    .condition(PeerCondition::Always)
                    .build()
            }
            None => DialOpts::unknown_peer_id().address(address.clone()).build(),
        };
        let connection_id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(connection_id, (address, reply));
            }
            Err(error) => {
                let _ = reply.send(Err(Error::Dial { address, source: Box::new(error) }));
            }
        }
    }

    fn publish(&mut self, topic: String, data: Bytes) -> Result<MessageId> {
        let limit = self.config.max_gossip_size_usize();
        if data.len() > limit {
            return Err(Error::MessageTooLarge {
                size: data.len(),
                limit,
                limit_name: "max_gossip_size",
            });
        }
        let ident = IdentTopic::new(topic.clone());
        self.swarm.behaviour_mut().gossipsub.publish(ident, data.to_vec()).map_err(|error| {
            let reason = match error {
                PublishError::NoPeersSubscribedToTopic => PublishFailure::NoPeersSubscribed,
                PublishError::Duplicate => PublishFailure::Duplicate,
                PublishError::AllQueuesFull(_) => PublishFailure::QueuesFull,
                PublishError::MessageTooLarge => {
                    return Error::MessageTooLarge {
                        size: data.len(),
                        limit,
                        limit_name: "max_gossip_size",
                    };
                }
                _ => PublishFailure::Other,
            };
            Error::Publish { topic, reason }
        })
    }

    fn request(
        &mut self,
        peer_id: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Bytes>>,
    ) {
        let limit = self.config.max_message_size_usize();
        // The envelope adds 3 bytes and the name to the body.
        let size = request.body.len() + request.protocol.len() + 3;
        if size > limit {
            let _ = reply.send(Err(Error::MessageTooLarge {
                size,
                limit,
                limit_name: "max_message_size",
            }));
            return;
        }
        let addresses = self.known.addresses(&peer_id);
        let request_id = self.swarm.behaviour_mut().request_response.send_request_with_addresses(
            &peer_id,
            Frame::Request(request),
            addresses,
        );
        self.requests.insert(request_id, PendingRequest { peer_id, reply });
    }

    fn respond(&mut self, request_id: RequestId, response: Response) -> Result<()> {
        let pending = self
            .inbound
            .remove(&request_id)
            .ok_or(Error::UnknownRequest { request_id: request_id.0 })?;
        let limit = self.config.max_message_size_usize();
        let size = match &response {
            Response::Ok(body) => body.len() + 2,
            Response::Error(message) => message.len() + 2,
        };
        if size > limit {
            // Tell the peer rather than leave it waiting for a timeout.
            let refusal = Response::Error(format!("response of {size} bytes exceeds the limit"));
            let _ =
                self.swarm.behaviour_mut().request_response.send_response(pending.channel, refusal);
            return Err(Error::MessageTooLarge { size, limit, limit_name: "max_message_size" });
        }
        self.swarm
            .behaviour_mut()
            .request_response
            .send_response(pending.channel, response)
            .map_err(|_| Error::UnknownRequest { request_id: request_id.0 })
    }

    /// Counts an offence against `peer_id` and bans it at the threshold.
    fn strike(&mut self, peer_id: PeerId, reason: &str) {
        let meta = self.peers.entry(peer_id).or_default();
        meta.strikes = meta.strikes.saturating_add(1);
        tracing::debug!(%peer_id, strikes = meta.strikes, reason, "strike against peer");
        if meta.strikes >= self.config.ban_threshold && !self.bans.contains_key(&peer_id) {
            self.ban(peer_id, self.config.ban_duration, reason.to_owned());
        }
    }

    fn ban(&mut self, peer_id: PeerId, duration: Duration, reason: String) {
        tracing::info!(%peer_id, ?duration, reason, "banning peer");
        self.bans.insert(peer_id, Instant::now() + duration);
        self.reconnect.remove(&peer_id);
        let behaviour = self.swarm.behaviour_mut();
        // Blocking closes every open connection and refuses new ones.
        behaviour.block.block_peer(peer_id);
        behaviour.gossipsub.blacklist_peer(&peer_id);
        self.stats.bans += 1;
        self.bus.publish(PeerBanned { peer_id, duration, reason });
    }

    fn lift_ban(&mut self, peer_id: &PeerId) -> bool {
        if self.bans.remove(peer_id).is_none() {
            return false;
        }
        tracing::info!(%peer_id, "ban lifted");
        let behaviour = self.swarm.behaviour_mut();
        if !self.config.block.contains(peer_id) {
            behaviour.block.unblock_peer(*peer_id);
        }
        behaviour.gossipsub.remove_blacklisted_peer(peer_id);
        if let Some(meta) = self.peers.get_mut(peer_id) {
            meta.strikes = 0;
        }
        if self.bootstrap.contains_key(peer_id) {
            self.reconnect.insert(*peer_id, Backoff::new(Instant::now(), None));
        }
        true
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let mut ids: HashSet<PeerId> = self.peers.keys().copied().collect();
        ids.extend(self.known.iter().map(|(peer_id, _)| *peer_id));
        ids.extend(self.reconnect.keys().copied());
        ids.extend(self.bans.keys().copied());
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let mut infos: Vec<PeerInfo> = ids
            .into_iter()
            .map(|peer_id| {
                let meta = self.peers.get(&peer_id);
                let connections: Vec<ConnectionInfo> = meta
                    .map(|meta| meta.connections.iter().map(|(_, info)| info.clone()).collect())
                    .unwrap_or_default();
                let state = if let Some(until) = self.bans.get(&peer_id) {
                    PeerState::Banned { remaining: until.saturating_duration_since(now) }
                } else if !connections.is_empty() {
                    PeerState::Connected
                } else if let Some(backoff) = self.reconnect.get(&peer_id) {
                    PeerState::Reconnecting {
                        next_attempt_in: backoff.next_at.saturating_duration_since(now),
                    }
                } else {
                    PeerState::Disconnected
                };
                let mut topics: Vec<String> =
                    meta.map(|meta| meta.topics.iter().cloned().collect()).unwrap_or_default();
                topics.sort();
                PeerInfo {
                    peer_id,
                    state,
                    addresses: self.known.addresses(&peer_id),
                    connections,
                    topics,
                    agent_version: meta.and_then(|meta| meta.agent_version.clone()),
                    rtt: meta.and_then(|meta| meta.rtt),
                    strikes: meta.map_or(0, |meta| meta.strikes),
                    gossip_score: gossipsub.peer_score(&peer_id),
                }
            })
            .collect();
        infos.sort_by_key(|info| info.peer_id);
        infos
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_connection_established(
                peer_id,
                connection_id,
                &endpoint,
                num_established.get(),
            ),
            SwarmEvent::ConnectionClosed {
                peer_id, connection_id, num_established, cause, ..
            } => {
                tracing::debug!(%peer_id, ?cause, "connection closed");
                // A connection we closed for being idle was not lost: nothing to redial.
                let idle = matches!(cause, Some(ConnectionError::KeepAliveTimeout))
                    || (num_established == 0 && self.closing_idle.remove(&peer_id));
                self.on_connection_closed(peer_id, connection_id, num_established, idle);
            }
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
                if matches!(error, DialError::Denied { .. }) {
                    self.stats.connections_denied += 1;
                }
                if let Some((address, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(Error::Dial { address, source: Box::new(error) }));
                }
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                tracing::debug!(%send_back_addr, %error, "incoming connection failed");
                if matches!(error, ListenError::Denied { .. }) {
                    self.stats.connections_denied += 1;
                }
            }
            SwarmEvent::NewListenAddr { listener_id, address } => {
                tracing::info!(%address, "listening");
                if self.config.relay_server && !is_relayed(&address) {
                    // A relay must be reachable: announce its addresses, or the relay
                    // behaviour stays disabled and refuses reservations.
                    self.swarm.add_external_address(address.clone());
                }
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                self.bus.publish(ListenAddrAdded { address });
                self.listener_done(listener_id);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|known| *known != address);
                self.bus.publish(ListenAddrRemoved { address });
            }
            SwarmEvent::ListenerClosed { listener_id, addresses, reason } => {
                tracing::debug!(?addresses, ?reason, "listener closed");
                self.listen_addrs.retain(|known| !addresses.contains(known));
                for address in addresses {
                    self.bus.publish(ListenAddrRemoved { address });
                }
                self.listener_done(listener_id);
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                tracing::warn!(%error, "listener error");
                self.listener_done(listener_id);
            }
            _ => {}
        }
    }

    fn listener_done(&mut self, listener_id: ListenerId) {
        self.pending_listeners.remove(&listener_id);
        if self.pending_listeners.is_empty() {
            let _ = self.ready.take().map(|ready| ready.send(()));
        }
    }

    fn on_connection_established(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: &ConnectedPoint,
        num_established: u32,
    ) {
        let address = endpoint.get_remote_address().clone();
        let relayed = is_relayed(&address);
        let direction = if endpoint.is_dialer() { Direction::Outbound } else { Direction::Inbound };
        tracing::debug!(%peer_id, %address, ?direction, "connection established");
        let info = ConnectionInfo { address: address.clone(), direction, relayed };
        self.peers.entry(peer_id).or_default().connections.push((connection_id, info));
        self.active(peer_id);
        if let Some((_, reply)) = self.dials.remove(&connection_id) {
            let _ = reply.send(Ok(peer_id));
        }
        self.reconnect.remove(&peer_id);
        if direction == Direction::Outbound && !relayed {
            self.known.add_address(peer_id, &address);
        }
        self.known.touch(&peer_id);
        if num_established == 1 {
            if self.bootstrap.contains_key(&peer_id) {
                // Fill the routing table from the bootstrap peer's view of the network.
                if let Err(error) = self.swarm.behaviour_mut().kad.bootstrap() {
                    tracing::debug!(%error, "kademlia bootstrap not started");
                }
            }
            self.bus.publish(PeerConnected { peer_id, address, direction, relayed });
        }
    }

    fn on_connection_closed(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        remaining: u32,
        idle: bool,
    ) {
        if let Some(meta) = self.peers.get_mut(&peer_id) {
            meta.connections.retain(|(id, _)| *id != connection_id);
        }
        if remaining > 0 {
            return;
        }
        let our_topics: HashSet<String> =
            self.swarm.behaviour().gossipsub.topics().map(ToString::to_string).collect();
        let shares_topic = self
            .peers
            .get(&peer_id)
            .is_some_and(|meta| meta.topics.iter().any(|topic| our_topics.contains(topic)));
        // Forget a disconnected peer, unless it has offences on record.
        if self.peers.get(&peer_id).is_some_and(|meta| meta.strikes == 0) {
            self.peers.remove(&peer_id);
        } else if let Some(meta) = self.peers.get_mut(&peer_id) {
            meta.topics.clear();
            meta.rate_window = None;
        }
        let wanted = !idle && (self.bootstrap.contains_key(&peer_id) || shares_topic);
        if wanted && !self.bans.contains_key(&peer_id) && !self.reconnect.contains_key(&peer_id) {
            let max_attempts =
                if self.bootstrap.contains_key(&peer_id) { None } else { Some(MAX_REDIALS) };
            let mut backoff = Backoff::new(Instant::now(), max_attempts);
            backoff.next_at += self.config.reconnect_backoff_min;
            self.reconnect.insert(peer_id, backoff);
        }
        self.bus.publish(PeerDisconnected { peer_id });
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.on_identify(peer_id, info);
            }
            BehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. }) => {
                self.peers.entry(peer).or_default().rtt = Some(rtt);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer_id, address) in found {
                    if peer_id == *self.swarm.local_peer_id() || self.bans.contains_key(&peer_id) {
                        continue;
                    }
                    self.swarm.add_peer_address(peer_id, address.clone());
                    if !self.swarm.is_connected(&peer_id) {
                        let opts = DialOpts::peer_id(peer_id)
                            .addresses(vec![address])
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            BehaviourEvent::Kad(event) => self.on_kad_event(event),
            BehaviourEvent::Gossipsub(event) => self.on_gossipsub_event(event),
            BehaviourEvent::RequestResponse(event) => self.on_request_response_event(event),
            BehaviourEvent::RelayClient(event) => tracing::debug!(?event, "relay client"),
            BehaviourEvent::RelayServer(event) => {
                tracing::debug!(?event, "relay server");
                match event {
                    relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                        self.relay_clients.insert(src_peer_id);
                    }
                    relay::Event::ReservationClosed { src_peer_id }
                    | relay::Event::ReservationTimedOut { src_peer_id } => {
                        self.relay_clients.remove(&src_peer_id);
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Dcutr(event) => tracing::debug!(?event, "hole punching"),
            BehaviourEvent::Autonat(event) => tracing::debug!(?event, "autonat"),
            _ => {}
        }
    }

    fn on_identify(&mut self, peer_id: PeerId, info: identify::Info) {
        let speaks_kad = info.protocols.contains(&behaviour::KAD_PROTOCOL);
        for address in info.listen_addrs.iter().filter(|address| !is_relayed(address)) {
            if is_loopback(address) && !self.listens_on_loopback() {
                continue;
            }
            self.known.add_address(peer_id, address);
            self.swarm.add_peer_address(peer_id, address.clone());
            if speaks_kad {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, address.clone());
            }
        }
        self.peers.entry(peer_id).or_default().agent_version = Some(info.agent_version);
    }

    fn listens_on_loopback(&self) -> bool {
        self.listen_addrs.iter().any(is_loopback)
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed { id, result, step, .. } = event else {
            return;
        };
        match result {
            QueryResult::Bootstrap(result) => {
                if step.last
                    && let Some(reply) = self.bootstrap_queries.remove(&id)
                {
                    let _ = reply.send(result.map(|_| ()).map_err(|error| Error::Kademlia {
                        operation: "bootstrap",
                        source: Box::new(error),
                    }));
                }
            }
            QueryResult::StartProviding(result) => {
                if let Some(reply) = self.provide_queries.remove(&id) {
                    let _ = reply.send(result.map(|_| ()).map_err(|error| Error::Kademlia {
                        operation: "provide",
                        source: Box::new(error),
                    }));
                }
            }
            QueryResult::GetProviders(result) => {
                let Some(query) = self.provider_queries.get_mut(&id) else { return };
                let mut failure = None;
                match result {
                    Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                        query.found.extend(providers);
                    }
                    Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
                    Err(error) => failure = Some(error),
                }
                if step.last
                    && let Some(query) = self.provider_queries.remove(&id)
                {
                    let mut found: Vec<PeerId> = query.found.into_iter().collect();
                    found.sort();
                    let result = match failure {
                        Some(error) if found.is_empty() => Err(Error::Kademlia {
                            operation: "find providers",
                            source: Box::new(error),
                        }),
                        _ => Ok(found),
                    };
                    let _ = query.reply.send(result);
                }
            }
            _ => {}
        }
    }

    fn on_gossipsub_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                self.active(propagation_source);
                if message.data.len() > self.config.max_gossip_size_usize() {
                    self.stats.gossip_rejected += 1;
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Reject,
                    );
                    self.strike(propagation_source, "oversized gossip message");
                    return;
                }
                let event = GossipMessage {
                    topic: message.topic.to_string(),
                    message_id: message_id.clone(),
                    source: message.source,
                    propagation_source,
                    data: Bytes::from(message.data),
                };
                if self.bus.publish(event) == 0 {
                    // Nobody will judge it: drop it without blaming the sender.
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Ignore,
                    );
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                self.active(peer_id);
                self.peers.entry(peer_id).or_default().topics.insert(topic.to_string());
                self.bus.publish(TopicSubscribed { peer_id, topic: topic.to_string() });
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.active(peer_id);
                if let Some(meta) = self.peers.get_mut(&peer_id) {
                    meta.topics.remove(topic.as_str());
                }
                self.bus.publish(TopicUnsubscribed { peer_id, topic: topic.to_string() });
            }
            gossipsub::Event::SlowPeer { peer_id, .. } => {
                tracing::debug!(%peer_id, "slow gossip peer");
            }
            _ => {}
        }
    }

    fn on_request_response_event(&mut self, event: request_response::Event<Frame, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => {
                self.active(peer);
                self.on_request_response_message(peer, message);
            }
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                if let OutboundFailure::Io(io_error) = &error
                    && io_error.kind() == io::ErrorKind::InvalidData
                {
                    self.stats.bad_frames += 1;
                    self.strike(peer, "malformed response frame");
                }
                if let Some(pending) = self.requests.remove(&request_id) {
                    let _ = pending
                        .reply
                        .send(Err(Error::Request { peer_id: peer, source: Box::new(error) }));
                }
            }
            request_response::Event::InboundFailure { peer, request_id, error, .. } => {
                // Malformed requests arrive as `Frame::Malformed`, not here.
                tracing::debug!(%peer, %error, "inbound request failed");
                self.inbound.retain(|_, pending| pending.inner_id != request_id);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_request_response_message(
        &mut self,
        peer: PeerId,
        message: request_response::Message<Frame, Response>,
    ) {
        match message {
            request_response::Message::Request { request_id, request, channel } => {
                match request {
                    Frame::Request(request) => {
                        self.on_inbound_request(peer, request_id, request, channel);
                    }
                    Frame::Malformed(reason) => {
                        tracing::debug!(%peer, reason, "malformed request frame");
                        self.stats.bad_frames += 1;
                        // Dropping the channel closes the stream without an answer.
                        drop(channel);
                        self.strike(peer, "malformed request frame");
                    }
                }
            }
            request_response::Message::Response { request_id, response } => {
                let Some(pending) = self.requests.remove(&request_id) else { return };
                let result = match response {
                    Response::Ok(body) => Ok(body),
                    Response::Error(message) => {
                        Err(Error::Remote { peer_id: pending.peer_id, message })
                    }
                };
                let _ = pending.reply.send(result);
            }
        }
    }

    fn on_inbound_request(
        &mut self,
        peer_id: PeerId,
        inner_id: InboundRequestId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        self.stats.inbound_requests += 1;
        let now = Instant::now();
        let rate = self.config.inbound_request_rate;
        let meta = self.peers.entry(peer_id).or_default();
        let window = match meta.rate_window {
            Some((start, count)) if now.duration_since(start) < Duration::from_secs(1) => {
                (start, count.saturating_add(1))
            }
            _ => (now, 1),
        };
        meta.rate_window = Some(window);
        let refusal = if window.1 > rate {
            self.stats.requests_rate_limited += 1;
            Some(format!("rate limit of {rate} requests per second exceeded"))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            let _ = self
                .swarm
                .behaviour_mut()
                .request_response
                .send_response(channel, Response::Error(refusal));
            return;
        }
        let request_id = RequestId(self.next_request_id);
        self.next_request_id += 1;
        let protocol = request.protocol.clone();
        let event =
            InboundRequest { request_id, peer_id, protocol: request.protocol, body: request.body };
        if self.bus.publish(event) == 0 {
            let refusal = Response::Error(format!("no handler for protocol {protocol:?}"));
            let _ = self.swarm.behaviour_mut().request_response.send_response(channel, refusal);
            return;
        }
        self.inbound.insert(request_id, PendingInbound { inner_id, channel });
    }
}

/// The relay's peer id in a circuit address `/../p2p/<relay>/p2p-circuit[/..]`.
fn relay_of(address: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for protocol in address.iter() {
        match protocol {
            Protocol::P2p(peer_id) => relay = Some(peer_id),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

fn is_relayed(address: &Multiaddr) -> bool {
    address.iter().any(|protocol| protocol == Protocol::P2pCircuit)
}

fn is_loopback(address: &Multiaddr) -> bool {
    address.iter().any(|protocol| match protocol {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}
