//! Reconciliation sessions: the ones this node starts (on subscription, on a timer, on
//! demand, to repair a loss) and the answers it gives to its peers' sessions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cosmic_auth::PublicKey;
use cosmic_events::Subscriber;
use cosmic_net::{InboundRequest, PeerId, Response, TopicSubscribed};
use cosmic_store::Origin;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use super::{PeerSession, RECON_PROTOCOL, Replicator, lock};
use crate::peer_clock;
use crate::recon::{self, Opening, Session};
use crate::types::{SessionStats, SyncEvent};
use crate::wire::{self, Message, Part};
use crate::{Error, Result};

/// How long after a peer's last reconciliation request our own triggered sessions with it
/// wait.
const SERVED_RECENTLY: Duration = Duration::from_secs(2);
/// How long a catch-up waits, at most, for a running session with the same peer to end.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);
/// How long after a peer subscribed a repair for a change that went nowhere waits for
/// the peer's own session (a node that has just joined starts one at once).
const SUBSCRIBED_REPAIR_DELAY: Duration = Duration::from_secs(1);
/// Reconciliation requests answered at once, at most; the rest wait in the queue.
const MAX_SERVING: usize = 8;

/// Sessions running and peers recently served.
#[derive(Default)]
pub(super) struct SessionState {
    /// Sessions this node runs now, by space and peer: one at a time per pair.
    running: HashSet<(PublicKey, PeerId)>,
    /// When each peer last sent us a reconciliation request, per space.
    served: HashMap<(PublicKey, PeerId), Instant>,
    /// When each peer's latest session with us began (we received its first message),
    /// per space.
    served_from: HashMap<(PublicKey, PeerId), Instant>,
    /// Pairs whose last session found both stores equal: the next one expects the same and
    /// opens with the whole space's fingerprint (see [`Opening`]).
    equal: HashSet<(PublicKey, PeerId)>,
}

impl Replicator {
    /// Reconciles `space` now with every connected peer of the space; returns each
    /// session's outcome (empty when no peer of the space is connected). Each session
    /// starts after this call: one already running with a peer is waited for first
    /// (at most 10 s), since it may have passed what changed just before.
    pub async fn sync_now(&self, space: PublicKey) -> Result<Vec<PeerSession>> {
        if !self.lock_spaces().contains_key(&space) {
            return Err(Error::NotJoined { space });
        }
        let peers = self.space_peers(&space).await;
        let sessions = peers.iter().map(|peer| self.fresh_session(space, *peer));
        let results = futures::future::join_all(sessions).await;
        Ok(peers
            .into_iter()
            .zip(results)
            .map(|(peer, result)| PeerSession {
                peer,
                result: result.map_err(|error| error.to_string()),
            })
            .collect())
    }

    /// Like [`Replicator::sync_now`], in a task of the replicator that this call does not
    /// wait for (it stops at shutdown); failures are logged. For a change that peers
    /// should learn soon but that gossip does not carry, such as a new capability.
    pub fn sync_soon(&self, space: PublicKey) {
        let this = self.clone();
        self.spawn_tracked(async move {
            match this.sync_now(space).await {
                Ok(sessions) => {
                    for session in sessions.iter().filter(|session| session.result.is_err()) {
                        warn!(%space, peer = %session.peer, error = ?session.result, "reconciling soon failed");
                    }
                }
                Err(error) => warn!(%space, %error, "reconciling soon failed"),
            }
        });
    }

    /// A session started by a trigger (subscription, timer, discovery): skipped while the
    /// peer is itself reconciling the space with us, so entries do not cross twice.
    pub(super) async fn session_logged(&self, space: PublicKey, peer: PeerId) {
        let busy = lock(&self.inner.sessions)
            .served
            .get(&(space, peer))
            .is_some_and(|at| at.elapsed() < SERVED_RECENTLY);
        if busy {
            return;
        }
        if let Err(error) = self.sync_with(space, peer).await {
            debug!(%space, %peer, %error, "reconciliation failed");
        }
    }

    /// Whether `peer` began a reconciliation session of `space` with us after `since`:
    /// such a session exchanges everything either side held at `since`.
    pub(super) fn peer_reconciled_since(
        &self,
        space: PublicKey,
        peer: PeerId,
        since: Instant,
    ) -> bool {
        lock(&self.inner.sessions).served_from.get(&(space, peer)).is_some_and(|at| *at > since)
    }

    /// Reconciles with `peer` in a session that starts after this call (see
    /// [`Replicator::fresh_session`]), logging a failure: used when an entry is known to
    /// be missing on one side right now.
    pub(super) async fn catch_up(&self, space: PublicKey, peer: PeerId) {
        if let Err(error) = self.fresh_session(space, peer).await {
            debug!(%space, %peer, %error, "catch-up reconciliation failed");
        }
    }

    /// Reconciles `space` with `peer` in a session that starts now or, when one is
    /// already running with that peer (it may have passed the range of a change made
    /// since it began), as soon as that one ends; after [`CATCH_UP_WAIT`] of waiting it
    /// gives up with an error.
    async fn fresh_session(&self, space: PublicKey, peer: PeerId) -> Result<SessionStats> {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            if let Some(result) = self.try_session(space, peer, Some(Opening::Split)).await? {
                return result;
            }
            if tokio::time::Instant::now() >= deadline {
                let reason = format!("a session with {peer} was still running after 10 s");
                return Err(Error::Task(reason));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reconciles `space` with one peer (dialling it if needed), and waits for the end.
    /// When a session with that peer on that space is already running, returns at once
    /// with empty stats.
    pub async fn sync_with(&self, space: PublicKey, peer: PeerId) -> Result<SessionStats> {
        self.try_session(space, peer, None).await?.unwrap_or(Ok(SessionStats::default()))
    }

    /// Runs a session unless one with `peer` on `space` is running (`Ok(None)`).
    /// `opening`: how the session opens; `None` lets the last session with the peer decide
    /// (the whole space's fingerprint after one that found the stores equal, else a split).
    async fn try_session(
        &self,
        space: PublicKey,
        peer: PeerId,
        opening: Option<Opening>,
    ) -> Result<Option<Result<SessionStats>>> {
        if !self.lock_spaces().contains_key(&space) {
            return Err(Error::NotJoined { space });
        }
        if !lock(&self.inner.sessions).running.insert((space, peer)) {
            return Ok(None);
        }
        // Cleared however the session ends, also when its caller drops it half-way (an
        // HTTP client that hangs up on `sync_now`): a leaked mark would block every later
        // session with the peer.
        let running = Running { sessions: &self.inner.sessions, key: (space, peer) };
        let mut stats = SessionStats::default();
        let result = match self.may_share(space, peer).await {
            Ok(()) => self.run_session(space, peer, opening, &mut stats).await.map(|()| stats),
            Err(error) => Err(error),
        };
        drop(running);
        // A session that moved nothing found the stores equal: the next one expects that.
        let equal = result.as_ref().is_ok_and(|stats| {
            stats.converged && stats.entries_sent == 0 && stats.entries_received == 0
        });
        let mut sessions = lock(&self.inner.sessions);
        if equal {
            sessions.equal.insert((space, peer));
        } else {
            sessions.equal.remove(&(space, peer));
        }
        drop(sessions);
        match &result {
            Ok(stats) => {
                self.metrics_mut(|metrics| {
                    metrics.sessions += 1;
                    metrics.recon.add(stats);
                });
                self.inner.bus.publish(SyncEvent::SessionFinished { space, peer, stats: *stats });
            }
            Err(error) => {
                // What the rounds before the failure moved was stored all the same.
                self.metrics_mut(|metrics| {
                    metrics.sessions_failed += 1;
                    metrics.recon.add(&stats);
                });
                let reason = error.to_string();
                self.inner.bus.publish(SyncEvent::SessionFailed { space, peer, reason });
            }
        }
        Ok(Some(result))
    }

    /// Runs the rounds of one session, adding each round's figures to `stats` as it goes
    /// (so that a session failing in a later round still accounts for the earlier ones).
    /// Before a session: the binding exchange with `peer` if due, and for a restricted
    /// space the check that `peer` may read it (a session sends entries both ways).
    async fn may_share(&self, space: PublicKey, peer: PeerId) -> Result<()> {
        self.ensure_bound(peer).await?;
        self.check_read(space, peer).await
    }

    async fn run_session(
        &self,
        space: PublicKey,
        peer: PeerId,
        opening: Option<Opening>,
        stats: &mut SessionStats,
    ) -> Result<()> {
        let opening = opening.unwrap_or_else(|| {
            let equal = lock(&self.inner.sessions).equal.contains(&(space, peer));
            if equal { Opening::Whole } else { Opening::Split }
        });
        let started = Instant::now();
        let options = &self.inner.options;
        let limits = options.recon;
        let max_rounds = options.max_rounds;
        let (mut session, mut message) = self
            .blocking(move |store| {
                Ok(Session::start_with(&store, space, limits, max_rounds, opening)?)
            })
            .await?;
        // The first message carries our wall clock, and its answer the peer's.
        message.parts.push(Part::Clock(self.inner.store.wall_clock_millis()));
        let mut clock_sent = Some(Instant::now());
        let origin = Origin::Peer(peer.to_string());
        loop {
            let bytes = message.encode(options.max_message_size).map_err(Error::Outgoing)?;
            stats.bytes_sent += bytes.len() as u64;
            stats.entries_sent += count_entries(&message);
            let asked = Instant::now();
            let reply = self.inner.net.request(peer, RECON_PROTOCOL, bytes).await?;
            let received = Instant::now();
            let reply_len = reply.len();
            stats.bytes_received += reply_len as u64;
            let reply = Message::decode(&reply, options.max_message_size)
                .map_err(|source| Error::Wire { peer: peer.to_string(), source })?;
            if reply.space != space {
                let reason = format!("answered for space {}", reply.space);
                return Err(Error::Refused { peer: peer.to_string(), reason });
            }
            if let (Some(sent), Some(theirs)) = (clock_sent.take(), clock_of(&reply)) {
                self.observe_clock(peer, peer_clock::at_receipt(theirs, sent, received), received);
            }
            let origin = origin.clone();
            let (back, next, mut step) = self
                .blocking(move |store| {
                    let (next, step) = session.on_reply(&store, &reply, &origin)?;
                    Ok((session, next, step))
                })
                .await?;
            session = back;
            debug!(
                %space, %peer, round = session.rounds(), bytes = reply_len,
                entries = step.entries_received,
                answer_ms = received.duration_since(asked).as_secs_f64() * 1e3,
                apply_ms = received.elapsed().as_secs_f64() * 1e3,
                "reconciliation round"
            );
            stats.entries_received += step.entries_received;
            stats.entries_applied += step.entries_applied;
            if step.space_changed {
                self.push(space, Some(peer)).await;
            }
            self.report_rejected(space, peer, &mut step, stats).await;
            match next {
                Some(next) => message = next,
                None => break,
            }
        }
        stats.rounds = session.rounds();
        stats.converged = session.converged();
        stats.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Ok(())
    }

    /// Records that `peer`'s wall clock read `millis` at `at`, and sets the store's time
    /// floor to what the peers' clocks now vote for (see [`crate::peer_clock`]).
    fn observe_clock(&self, peer: PeerId, millis: u64, at: Instant) {
        let store = &self.inner.store;
        let ours = store.wall_clock_millis();
        let (ahead_ms, floor, voters) = {
            let mut clocks = lock(&self.inner.clocks);
            let ahead_ms = clocks.observe(peer, millis, at, ours);
            (ahead_ms, clocks.floor(at, ours), clocks.len() + 1)
        };
        debug!(%peer, ahead_ms, "a peer's wall clock");
        let before = store.clock_correction();
        store.set_time_floor(floor);
        let after = store.clock_correction();
        if after.abs_diff(before) >= peer_clock::DEAD_BAND {
            if after.is_zero() {
                info!(voters, "the wall clock agrees with most peers again: no clock correction");
            } else {
                warn!(
                    correction_s = after.as_secs(),
                    voters,
                    "this machine's wall clock is behind most of its peers': entries are \
                     stamped and judged by their time until it is set right"
                );
            }
        }
    }

    /// Reports each refusal of a reconciliation step as an event, and strikes the peer
    /// once for a message that held items proving it at fault (see [`recon::Step`]).
    async fn report_rejected(
        &self,
        space: PublicKey,
        peer: PeerId,
        step: &mut recon::Step,
        stats: &mut SessionStats,
    ) {
        let rejected = std::mem::take(&mut step.rejected);
        stats.rejected += rejected.len() as u64;
        if let Some(first) = rejected.first() {
            // One line per message, not per item: a peer may offer the same refused items
            // at every session.
            info!(%peer, %space, refused = rejected.len(), %first, "items of a peer refused");
        }
        if step.offences > 0 {
            let first = rejected.first().map_or("", String::as_str);
            let reason = format!(
                "{} invalid items in a reconciliation message for space {space} ({first})",
                step.offences
            );
            debug!(%peer, %reason, "striking a peer");
            if let Err(error) = self.inner.net.report_peer(peer, reason).await {
                debug!(%peer, %error, "striking a peer failed");
            }
        }
        for reason in rejected {
            self.inner.bus.publish(SyncEvent::EntryRejected { space, peer, reason });
        }
    }

    /// Answers reconciliation requests from their own queue, a few at a time; when all
    /// are busy, requests wait in the queue, and beyond it the network refuses them as
    /// busy. `None`: a restart after a panic, which takes a fresh queue.
    pub(super) async fn request_task(self, requests: Option<mpsc::Receiver<InboundRequest>>) {
        let capacity = self.inner.options.request_queue_len;
        let mut requests = match requests {
            Some(requests) => requests,
            None => match self.inner.net.request_inbox(RECON_PROTOCOL, capacity).await {
                Ok(requests) => requests,
                Err(error) => {
                    debug!(%error, "no request handler: the network has stopped");
                    return;
                }
            },
        };
        let serving = Arc::new(Semaphore::new(MAX_SERVING));
        while let Some(request) = requests.recv().await {
            let Ok(permit) = serving.clone().acquire_owned().await else { return };
            let this = self.clone();
            self.spawn_tracked(async move {
                this.serve(request).await;
                drop(permit);
            });
        }
    }

    async fn serve(&self, request: InboundRequest) {
        let peer = request.peer_id;
        let response = match self.answer(&request).await {
            Ok(bytes) => Response::Ok(bytes.into()),
            Err(error) => {
                // A request that does not decode is the sender's fault: strike it.
                if let Error::Wire { .. } = error
                    && let Err(strike) = self.inner.net.report_peer(peer, error.to_string()).await
                {
                    debug!(%peer, error = %strike, "striking a peer failed");
                }
                Response::Error(error.to_string())
            }
        };
        if let Err(error) = self.inner.net.respond(request.request_id, response).await {
            debug!(%peer, %error, "answering a reconciliation request failed");
        }
    }

    async fn answer(&self, request: &InboundRequest) -> Result<Vec<u8>> {
        let options = &self.inner.options;
        let peer = request.peer_id;
        let message = Message::decode(&request.body, options.max_message_size)
            .map_err(|source| Error::Wire { peer: peer.to_string(), source })?;
        let space = message.space;
        if !self.lock_spaces().contains_key(&space) {
            return Err(Error::NotJoined { space });
        }
        if let Err(error) = self.check_read(space, peer).await {
            info!(%space, %peer, %error, "refused a reconciliation request");
            return Err(error);
        }
        // A session's first message carries the peer's wall clock: judge it before any
        // entry, and answer with ours.
        let clock = clock_of(&message);
        {
            let mut sessions = lock(&self.inner.sessions);
            let now = Instant::now();
            sessions.served.retain(|_, at| at.elapsed() < SERVED_RECENTLY);
            sessions.served.insert((space, peer), now);
            if clock.is_some() {
                sessions.served_from.insert((space, peer), now);
            }
        }
        if let Some(theirs) = clock {
            self.observe_clock(peer, theirs, Instant::now());
        }
        let limits = options.recon;
        let origin = Origin::Peer(peer.to_string());
        let started = Instant::now();
        let (mut reply, mut step) = self
            .blocking(move |store| Ok(recon::respond(&store, &message, &origin, &limits)?))
            .await?;
        debug!(
            %space, %peer, entries_in = step.entries_received, entries_out = step.entries_sent,
            ms = started.elapsed().as_secs_f64() * 1e3, "answered a reconciliation request"
        );
        if clock.is_some() {
            reply.parts.push(Part::Clock(self.inner.store.wall_clock_millis()));
        }
        let mut ignored = SessionStats::default();
        self.report_rejected(space, peer, &mut step, &mut ignored).await;
        if step.space_changed {
            self.push(space, Some(peer)).await;
        }
        let bytes = reply.encode(options.max_message_size).map_err(Error::Outgoing)?;
        self.metrics_mut(|metrics| {
            metrics.requests_served += 1;
            metrics.served_bytes_received += request.body.len() as u64;
            metrics.served_bytes_sent += bytes.len() as u64;
        });
        Ok(bytes)
    }

    /// Reconciles with a peer as soon as it subscribes to a joined space's topic. Takes the
    /// subscription made when the replicator started (`None` after a restart: a new one).
    pub(super) async fn topic_task(self, subscribed: Option<Subscriber<TopicSubscribed>>) {
        let mut subscribed = subscribed.unwrap_or_else(|| self.inner.bus.subscribe());
        loop {
            let event = match subscribed.recv().await {
                Ok(event) => event,
                Err(cosmic_events::RecvError::Lagged { missed }) => {
                    // Subscriptions went unseen: meet every space's peers again.
                    debug!(missed, "topic subscriptions missed; rediscovering every space");
                    for space in self.joined() {
                        let this = self.clone();
                        self.spawn_tracked(async move { this.discover(space).await });
                    }
                    continue;
                }
                Err(_) => return,
            };
            // Both peers see each other's subscription; only the one with the smaller peer
            // id starts a session, so the entries do not cross twice (the other side's
            // periodic reconciliation covers a failed session).
            let Some(space) = self.topic_space(&event.topic) else { continue };
            if self.take_unpublished(&space) {
                // A local change went nowhere by gossip: this peer needs it, even if it
                // has just reconciled with us; unless the session it starts on joining
                // (give it a moment) carries it.
                self.schedule_repair_after(space, event.peer_id, SUBSCRIBED_REPAIR_DELAY);
            } else if self.peer_id() < event.peer_id {
                let this = self.clone();
                self.spawn_tracked(async move { this.session_logged(space, event.peer_id).await });
            }
        }
    }
}

/// Marks a session as running until dropped.
struct Running<'a> {
    sessions: &'a Mutex<SessionState>,
    key: (PublicKey, PeerId),
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(self.sessions).running.remove(&self.key);
    }
}

/// The wall clock a message carries, if any.
fn clock_of(message: &Message) -> Option<u64> {
    message.parts.iter().find_map(|part| match part {
        Part::Clock(millis) => Some(*millis),
        _ => None,
    })
}

fn count_entries(message: &Message) -> u64 {
    message.parts.iter().filter(|part| matches!(part, wire::Part::Entry(_))).count() as u64
}
