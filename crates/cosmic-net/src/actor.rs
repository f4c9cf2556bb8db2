//! The swarm task: owns the [`Swarm`], takes [`Command`]s from [`Net`](crate::Net)
//! handles and publishes what happens on the event bus.
//!
//! One `select!` loop polls the swarm, the bounded command queue and a maintenance tick
//! (redials, ban expiry, persisting the peers file). Nothing in the loop waits on a
//! consumer: replies go over oneshot channels whose receivers may be gone, events go to
//! the bus, which drops for laggards.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{IdentTopic, MessageAcceptance, MessageId, PublishError};
use libp2p::kad::{self, QueryId};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use cosmic_events::Bus;

use crate::api::{ConnectionInfo, PeerInfo, PeerState, Stats, Verdict};
use crate::behaviour::{self, Behaviour};
use crate::codec::{Frame, Request, Response};
use crate::events::{GossipLoss, GossipMessage, InboundRequest, LossReason, PeerBanned, RequestId};
use crate::peers::{self, Backoff, KnownPeers};
use crate::{Config, Error, PublishFailure, Result};

mod commands;
mod swarm_events;

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
    GossipHandler {
        messages: mpsc::Sender<GossipMessage>,
        losses: mpsc::Sender<GossipLoss>,
        reply: oneshot::Sender<()>,
    },
    RequestHandler {
        protocol: String,
        sender: mpsc::Sender<InboundRequest>,
        reply: oneshot::Sender<()>,
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
    StopProviding {
        key: Vec<u8>,
        reply: oneshot::Sender<()>,
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
    Strike {
        peer_id: PeerId,
        reason: String,
        reply: oneshot::Sender<()>,
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
    /// When the strikes last decayed (or the first of them was counted).
    strikes_since: Option<Instant>,
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

/// The gossip handler's queues (see [`Net::gossip_inbox`](crate::Net::gossip_inbox)).
struct GossipHandler {
    messages: mpsc::Sender<GossipMessage>,
    losses: mpsc::Sender<GossipLoss>,
}

/// Losses not yet reported, coalesced: messages lost per peer, topic and reason.
type PendingLosses = HashMap<(PeerId, Option<String>, LossReason), u64>;

/// Peers, topics and reasons with a loss awaiting report, at most; beyond it losses are
/// still counted in the stats, and merged into a report without a topic.
const MAX_PENDING_LOSSES: usize = 4096;

pub(crate) struct Actor {
    swarm: Swarm<Behaviour>,
    config: Config,
    bus: Bus,
    gossip_handler: Option<GossipHandler>,
    request_handlers: HashMap<String, mpsc::Sender<InboundRequest>>,
    pending_losses: PendingLosses,
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
            gossip_handler: None,
            request_handlers: HashMap::new(),
            pending_losses: HashMap::new(),
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
        self.report_losses();
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

    /// Notes `messages` gossip messages lost with `peer_id`, for the next report.
    fn record_loss(
        &mut self,
        peer_id: PeerId,
        topic: Option<String>,
        reason: LossReason,
        messages: u64,
    ) {
        let key = if self.pending_losses.len() < MAX_PENDING_LOSSES
            || self.pending_losses.contains_key(&(peer_id, topic.clone(), reason))
        {
            (peer_id, topic, reason)
        } else {
            (peer_id, None, reason)
        };
        *self.pending_losses.entry(key).or_default() += messages;
    }

    /// Hands pending losses to the gossip handler's loss queue, as many as fit; the rest
    /// wait for the next tick. Without a handler, nobody judges gossip: they are dropped.
    fn report_losses(&mut self) {
        if self.pending_losses.is_empty() {
            return;
        }
        let Some(handler) = &self.gossip_handler else {
            self.pending_losses.clear();
            return;
        };
        let keys: Vec<_> = self.pending_losses.keys().cloned().collect();
        for key in keys {
            let Some(permit) = handler.losses.try_reserve().ok() else { break };
            let messages = self.pending_losses.remove(&key).unwrap_or_default();
            let (peer_id, topic, reason) = key;
            tracing::debug!(%peer_id, ?topic, %reason, messages, "gossip lost");
            permit.send(GossipLoss { peer_id, topic, reason, messages });
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
        let decay = self.config.strike_decay;
        for meta in self.peers.values_mut() {
            decay_strikes(meta, now, decay);
        }
        // A disconnected peer whose strikes have all decayed is forgotten.
        self.peers.retain(|_, meta| !meta.connections.is_empty() || meta.strikes > 0);
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
}

/// Forgives one strike for every whole `decay` since the strikes last decayed.
fn decay_strikes(meta: &mut PeerMeta, now: Instant, decay: Duration) {
    let Some(since) = meta.strikes_since else { return };
    let elapsed = now.saturating_duration_since(since);
    let periods = u32::try_from(elapsed.as_nanos() / decay.as_nanos().max(1)).unwrap_or(u32::MAX);
    if periods == 0 {
        return;
    }
    meta.strikes = meta.strikes.saturating_sub(periods);
    meta.strikes_since =
        if meta.strikes == 0 { None } else { Some(since + decay.saturating_mul(periods)) };
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
