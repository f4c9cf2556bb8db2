//! The swarm half of the [`Actor`]: what it does with each event the swarm reports.

use std::collections::HashSet;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::kad::{self, GetProvidersOk, QueryResult};
use libp2p::request_response::{self, InboundRequestId, OutboundFailure, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionError, ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{PeerId, identify, mdns, ping, relay};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Actor, MAX_REDIALS, PendingInbound, is_loopback, is_relayed};
use crate::Error;
use crate::api::ConnectionInfo;
use crate::behaviour::{self, BehaviourEvent};
use crate::codec::{Frame, Request, Response};
use crate::events::{
    Direction, GossipMessage, GossipSeen, InboundRequest, ListenAddrAdded, ListenAddrRemoved,
    LossReason, PeerConnected, PeerDisconnected, RequestId, TopicSubscribed, TopicUnsubscribed,
};
use crate::peers::Backoff;

impl Actor {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
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
                self.on_gossip_message(propagation_source, message_id, message);
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
            gossipsub::Event::SlowPeer { peer_id, failed_messages } => {
                // Gossipsub dropped messages meant for this peer (its send queue was full):
                // the peer lacks them, and only a repair brings them.
                let lost = failed_messages.priority + failed_messages.non_priority;
                tracing::debug!(%peer_id, lost, "slow gossip peer: messages to it dropped");
                if lost > 0 {
                    let lost = lost as u64;
                    self.stats.gossip_dropped_outbound += lost;
                    self.record_loss(peer_id, None, LossReason::SendQueueFull, lost);
                }
            }
            _ => {}
        }
    }

    /// A gossip message: refused when oversized, else handed to the gossip handler, whose
    /// verdict comes back as a command (a message nobody will judge is ignored).
    fn on_gossip_message(
        &mut self,
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
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
        let topic = message.topic.to_string();
        let data = Bytes::from(message.data);
        if self.bus.subscriber_count::<GossipSeen>() > 0 {
            self.bus.publish(GossipSeen {
                topic: topic.clone(),
                source: message.source,
                propagation_source,
                data: data.clone(),
            });
        }
        let event = GossipMessage {
            topic: topic.clone(),
            message_id: message_id.clone(),
            source: message.source,
            propagation_source,
            data,
        };
        let delivered = match &self.gossip_handler {
            None => false,
            Some(handler) => match handler.messages.try_send(event) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The handler is behind: the message is lost here, so say so.
                    self.stats.gossip_dropped_inbound += 1;
                    let reason = LossReason::InboundQueueFull;
                    self.record_loss(propagation_source, Some(topic), reason, 1);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.gossip_handler = None;
                    false
                }
            },
        };
        if !delivered {
            // Nobody will judge it: drop it without blaming the sender.
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &message_id,
                &propagation_source,
                MessageAcceptance::Ignore,
            );
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
        let sent = match self.request_handlers.get(&protocol) {
            Some(handler) => handler.try_send(event).map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => true,
                mpsc::error::TrySendError::Closed(_) => false,
            }),
            None => Err(false),
        };
        let refusal = match sent {
            Ok(()) => None,
            Err(true) => {
                self.stats.requests_dropped += 1;
                Some(format!("busy: the handler of protocol {protocol:?} is full; try again"))
            }
            Err(false) => {
                self.request_handlers.remove(&protocol);
                Some(format!("no handler for protocol {protocol:?}"))
            }
        };
        if let Some(refusal) = refusal {
            let refusal = Response::Error(refusal);
            let _ = self.swarm.behaviour_mut().request_response.send_response(channel, refusal);
            return;
        }
        self.inbound.insert(request_id, PendingInbound { inner_id, channel });
    }
}
