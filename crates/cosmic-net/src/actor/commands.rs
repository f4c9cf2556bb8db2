//! The command half of the [`Actor`]: what it does with each [`Command`] from a `Net`
//! handle, and the peer bookkeeping commands read and change (strikes, bans).

use super::*;

impl Actor {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { address, reply } => self.dial(address, reply),
            Command::ListenOn { address, reply } => {
                let _ = reply.send(self.listen_on(address));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.subscribe(topic));
            }
            Command::Unsubscribe { topic, reply } => {
                let ident = IdentTopic::new(topic);
                let _ = reply.send(self.swarm.behaviour_mut().gossipsub.unsubscribe(&ident));
            }
            Command::GossipHandler { messages, losses, reply } => {
                self.gossip_handler = Some(GossipHandler { messages, losses });
                let _ = reply.send(());
            }
            Command::RequestHandler { protocol, sender, reply } => {
                self.request_handlers.insert(protocol, sender);
                let _ = reply.send(());
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::ReportValidation { message_id, propagation_source, verdict, reply } => {
                let _ =
                    reply.send(self.report_validation(&message_id, propagation_source, verdict));
            }
            Command::Request { peer_id, request, reply } => self.request(peer_id, request, reply),
            Command::Respond { request_id, response, reply } => {
                let _ = reply.send(self.respond(request_id, response));
            }
            Command::Provide { key, reply } => self.provide(&key, reply),
            Command::StopProviding { key, reply } => {
                self.swarm.behaviour_mut().kad.stop_providing(&kad::RecordKey::new(&key));
                let _ = reply.send(());
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
                    let source = Box::new(error);
                    let _ = reply.send(Err(Error::Kademlia { operation: "bootstrap", source }));
                }
            },
            Command::Ban { peer_id, duration, reason, reply } => {
                self.ban(peer_id, duration, reason);
                let _ = reply.send(());
            }
            Command::Unban { peer_id, reply } => {
                let _ = reply.send(self.lift_ban(&peer_id));
            }
            Command::Strike { peer_id, reason, reply } => {
                self.strike(peer_id, &reason);
                let _ = reply.send(());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            // Handled in `run`.
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn listen_on(&mut self, address: Multiaddr) -> Result<()> {
        if let Some(relay) = relay_of(&address) {
            self.relays.insert(relay);
        }
        self.swarm
            .listen_on(address.clone())
            .map(|_| ())
            .map_err(|error| Error::Listen { address, source: Box::new(error) })
    }

    /// Subscribes to `topic`, with our score parameters for it.
    fn subscribe(&mut self, topic: String) -> Result<bool> {
        let ident = IdentTopic::new(topic.clone());
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let result = gossipsub
            .subscribe(&ident)
            .map_err(|error| Error::Subscribe { topic, source: Box::new(error) });
        if let Err(error) = gossipsub.set_topic_params(ident, behaviour::topic_score_params()) {
            tracing::warn!(%error, "invalid topic score parameters");
        }
        result
    }

    /// Tells gossipsub the verdict on a message (a rejection also strikes the peer that
    /// sent it); whether gossipsub still held the message.
    fn report_validation(
        &mut self,
        message_id: &MessageId,
        propagation_source: PeerId,
        verdict: Verdict,
    ) -> bool {
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        };
        let found = self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
            message_id,
            &propagation_source,
            acceptance,
        );
        if verdict == Verdict::Reject {
            self.stats.gossip_rejected += 1;
            self.strike(propagation_source, "invalid gossip message");
        }
        found
    }

    fn provide(&mut self, key: &[u8], reply: oneshot::Sender<Result<()>>) {
        match self.swarm.behaviour_mut().kad.start_providing(kad::RecordKey::new(&key)) {
            Ok(query_id) => {
                self.provide_queries.insert(query_id, reply);
            }
            Err(error) => {
                let source = Box::new(error);
                let _ = reply.send(Err(Error::Kademlia { operation: "provide", source }));
            }
        }
    }

    /// The counters, with the connection figures of this moment.
    fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.connected_peers =
            self.peers.values().filter(|meta| !meta.connections.is_empty()).count();
        stats.connections = self.peers.values().map(|meta| meta.connections.len()).sum();
        stats.banned_peers = self.bans.len();
        stats
    }

    pub(super) fn dial(&mut self, address: Multiaddr, reply: oneshot::Sender<Result<PeerId>>) {
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

    pub(super) fn publish(&mut self, topic: String, data: Bytes) -> Result<MessageId> {
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

    pub(super) fn request(
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

    pub(super) fn respond(&mut self, request_id: RequestId, response: Response) -> Result<()> {
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
    pub(super) fn strike(&mut self, peer_id: PeerId, reason: &str) {
        let now = Instant::now();
        let decay = self.config.strike_decay;
        let meta = self.peers.entry(peer_id).or_default();
        decay_strikes(meta, now, decay);
        if meta.strikes == 0 {
            meta.strikes_since = Some(now);
        }
        meta.strikes = meta.strikes.saturating_add(1);
        tracing::debug!(%peer_id, strikes = meta.strikes, reason, "strike against peer");
        if meta.strikes >= self.config.ban_threshold && !self.bans.contains_key(&peer_id) {
            self.ban(peer_id, self.config.ban_duration, reason.to_owned());
        }
    }

    pub(super) fn ban(&mut self, peer_id: PeerId, duration: Duration, reason: String) {
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

    pub(super) fn lift_ban(&mut self, peer_id: &PeerId) -> bool {
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
            meta.strikes_since = None;
        }
        if self.bootstrap.contains_key(peer_id) {
            self.reconnect.insert(*peer_id, Backoff::new(Instant::now(), None));
        }
        true
    }

    pub(super) fn peer_infos(&self) -> Vec<PeerInfo> {
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
}
