//! [`Replicator`]: the tasks that join spaces on the network, push local changes, judge
//! remote ones, reconcile with peers and fetch linked blobs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cosmic_auth::PublicKey;
use cosmic_events::Bus;
use cosmic_net::{GossipMessage, InboundRequest, Net, PeerId, Response, TopicSubscribed, Verdict};
use cosmic_store::{Change, Entry, Inserted, Origin, Store, Value};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tracing::{debug, info, warn};

use crate::peer_clock::{self, PeerClocks};
use crate::recon::{self, Session};
use crate::state::{self, SpaceState};
use crate::types::{
    BlobFetcher, BlobPolicy, BlobStatus, Metrics, SessionStats, SyncEvent, SyncOptions,
};
use crate::wire::{self, Message, Part};
use crate::{Error, Result};

/// The application protocol name of reconciliation requests on `cosmic-net`.
pub const RECON_PROTOCOL: &str = "sync/recon/1";

/// How long after a peer's last reconciliation request our own triggered sessions with it
/// wait.
const SERVED_RECENTLY: Duration = Duration::from_secs(2);
/// How long a catch-up waits, at most, for a running session with the same peer to end.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);
/// Gossip entries held back for want of a capability statement, per peer and space.
const MAX_DEFERRED_PER_PEER: usize = 128;
/// Gossip entries held back for want of a capability statement, in all.
const MAX_DEFERRED: usize = 1024;
/// How long after a gossip queue overflow the catch-up reconciliation starts.
const MISSED_GOSSIP_SETTLE: Duration = Duration::from_millis(250);

/// The gossip topic of a space.
pub fn space_topic(space: &PublicKey) -> String {
    format!("cosmic/space/1/{space}")
}

/// The outcome of one session started by [`Replicator::sync_now`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSession {
    /// The peer.
    pub peer: PeerId,
    /// Its counters, or why it failed.
    pub result: std::result::Result<SessionStats, String>,
}

/// The replication engine: a cheap, cloneable handle to its background tasks.
///
/// It replicates the spaces it has joined: it publishes each local change of the store as a
/// signed entry on the space's gossip topic, checks and merges the entries peers publish,
/// reconciles with the peers of each space when they connect, every
/// `reconcile_interval`, and on [`Replicator::sync_now`], and fetches linked blobs by the
/// space's [`BlobPolicy`]. Every applied change is a [`SyncEvent::Applied`] on the bus.
/// The tasks run until [`Replicator::shutdown`].
#[derive(Clone)]
pub struct Replicator {
    inner: Arc<Inner>,
}

struct Inner {
    options: SyncOptions,
    net: Net,
    store: Store,
    bus: Bus,
    blobs: Option<Arc<dyn BlobFetcher>>,
    state_dir: PathBuf,
    spaces: Mutex<BTreeMap<PublicKey, Joined>>,
    metrics: Mutex<Metrics>,
    sessions: Mutex<HashSet<(PublicKey, PeerId)>>,
    /// Joined spaces with a local change that no peer received by gossip (nobody was
    /// subscribed yet): the next peer to subscribe gets a reconciliation at once.
    unpublished: Mutex<HashSet<PublicKey>>,
    /// When each peer last sent us a reconciliation request, per space.
    served: Mutex<HashMap<(PublicKey, PeerId), Instant>>,
    /// Gossip entries whose author holds no capability we know of, by space and the peer
    /// that sent them, with their origin: judged again after a reconciliation with that
    /// peer, which brings the missing statement if the peer is honest.
    deferred: Mutex<DeferredMap>,
    /// Told when the gossip queue overflowed and messages were lost: every joined space
    /// is then reconciled at once rather than at the next periodic round.
    missed_gossip: tokio::sync::Notify,
    /// Peers' wall clocks as they reported them, which set the store's time floor when
    /// most of them are ahead of ours.
    clocks: Mutex<PeerClocks>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A gossip entry held back for want of a capability statement, with its origin (the
/// peer that published it).
type Deferred = (Entry, String);

/// The held entries by space and the peer that sent them.
type DeferredMap = HashMap<(PublicKey, PeerId), Vec<Deferred>>;

struct Joined {
    state: SpaceState,
    feed: JoinHandle<()>,
}

impl fmt::Debug for Replicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replicator")
            .field("peer_id", &self.inner.net.peer_id())
            .field("state_dir", &self.inner.state_dir)
            .field("joined", &self.joined())
            .finish_non_exhaustive()
    }
}

impl Replicator {
    /// Starts replication on `net` and `store`, reporting on `bus`, and rejoins the spaces
    /// recorded in `state_dir`. Must be called within a Tokio runtime.
    pub async fn spawn(
        options: SyncOptions,
        net: Net,
        store: Store,
        bus: Bus,
        blobs: Option<Arc<dyn BlobFetcher>>,
        state_dir: &Path,
    ) -> Result<Replicator> {
        options.validate()?;
        let saved = state::load(state_dir)?;
        let replicator = Replicator {
            inner: Arc::new(Inner {
                options,
                net,
                store,
                bus,
                blobs,
                state_dir: state_dir.to_owned(),
                spaces: Mutex::new(BTreeMap::new()),
                metrics: Mutex::new(Metrics::default()),
                sessions: Mutex::new(HashSet::new()),
                unpublished: Mutex::new(HashSet::new()),
                served: Mutex::new(HashMap::new()),
                deferred: Mutex::new(HashMap::new()),
                missed_gossip: tokio::sync::Notify::new(),
                clocks: Mutex::new(PeerClocks::default()),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let tasks = vec![
            tokio::spawn(replicator.clone().gossip_task()),
            tokio::spawn(replicator.clone().request_task()),
            tokio::spawn(replicator.clone().topic_task()),
            tokio::spawn(replicator.clone().periodic_task()),
            tokio::spawn(replicator.clone().resync_task()),
        ];
        replicator.lock_tasks().extend(tasks);
        for (space, space_state) in saved {
            replicator.start_space(space, space_state).await?;
        }
        Ok(replicator)
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_spaces(&self) -> std::sync::MutexGuard<'_, BTreeMap<PublicKey, Joined>> {
        self.inner.spaces.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn metrics_mut(&self, update: impl FnOnce(&mut Metrics)) {
        update(&mut self.inner.metrics.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.net.peer_id()
    }

    /// Joins `space` with the default blob policy (see [`Replicator::join_with`]).
    pub async fn join(&self, space: PublicKey) -> Result<bool> {
        self.join_with(space, self.inner.options.default_blob_policy).await
    }

    /// Joins `space`: records it in the state file, follows the store's changes of it,
    /// subscribes its gossip topic, provides it on Kademlia, looks up its providers and
    /// reconciles with them and with connected peers of the space. Returns false (and
    /// changes nothing) if already joined.
    ///
    /// The store need not hold the space yet: its record arrives with the first
    /// reconciliation.
    pub async fn join_with(&self, space: PublicKey, policy: BlobPolicy) -> Result<bool> {
        if self.lock_spaces().contains_key(&space) {
            return Ok(false);
        }
        let space_state = SpaceState { blob_policy: policy };
        self.start_space(space, space_state).await?;
        self.save_state()?;
        Ok(true)
    }

    async fn start_space(&self, space: PublicKey, space_state: SpaceState) -> Result<()> {
        let store = self.inner.store.clone();
        let after = store.last_seq();
        let changes = store.subscribe(&space, after)?;
        let feed = tokio::spawn(self.clone().feed_task(space, changes));
        let previous = self.lock_spaces().insert(space, Joined { state: space_state, feed });
        if let Some(previous) = previous {
            previous.feed.abort();
        }
        self.inner.net.subscribe(&space_topic(&space)).await?;
        let this = self.clone();
        let discovery = tokio::spawn(async move { this.discover(space).await });
        self.lock_tasks().push(discovery);
        Ok(())
    }

    /// Provides the space, finds its providers and reconciles with them and with the
    /// connected peers that share its topic.
    async fn discover(&self, space: PublicKey) {
        if let Err(error) = self.inner.net.provide(space.as_bytes().to_vec()).await {
            debug!(%space, %error, "providing the space failed (no DHT peers yet?)");
        }
        let mut peers: HashSet<PeerId> = self.space_peers(&space).await.into_iter().collect();
        match self.inner.net.find_providers(space.as_bytes().to_vec()).await {
            Ok(found) => peers.extend(found),
            Err(error) => debug!(%space, %error, "looking up the space's providers failed"),
        }
        peers.remove(&self.peer_id());
        for peer in peers {
            let this = self.clone();
            tokio::spawn(async move { this.session_logged(space, peer).await });
        }
    }

    /// Leaves `space`: forgets it in the state file, stops following its changes,
    /// unsubscribes its topic and stops providing it. Returns false if it was not joined.
    /// The store keeps its data.
    pub async fn leave(&self, space: PublicKey) -> Result<bool> {
        let Some(joined) = self.lock_spaces().remove(&space) else { return Ok(false) };
        joined.feed.abort();
        self.save_state()?;
        self.inner.net.unsubscribe(&space_topic(&space)).await?;
        self.inner.net.stop_providing(space.as_bytes().to_vec()).await?;
        Ok(true)
    }

    /// The joined spaces, ordered by id.
    pub fn joined(&self) -> Vec<PublicKey> {
        self.lock_spaces().keys().copied().collect()
    }

    /// The blob policy of a joined space.
    pub fn blob_policy(&self, space: &PublicKey) -> Option<BlobPolicy> {
        self.lock_spaces().get(space).map(|joined| joined.state.blob_policy)
    }

    /// Sets the blob policy of a joined space (kept in the state file).
    pub fn set_blob_policy(&self, space: &PublicKey, policy: BlobPolicy) -> Result<()> {
        {
            let mut spaces = self.lock_spaces();
            let joined = spaces.get_mut(space).ok_or(Error::NotJoined { space: *space })?;
            joined.state.blob_policy = policy;
        }
        self.save_state()
    }

    fn save_state(&self) -> Result<()> {
        let states: BTreeMap<PublicKey, SpaceState> =
            self.lock_spaces().iter().map(|(space, joined)| (*space, joined.state)).collect();
        state::save(&self.inner.state_dir, &states)
    }

    /// The totals since start.
    pub fn metrics(&self) -> Metrics {
        *self.inner.metrics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Same as [`Replicator::metrics`].
    pub fn stats(&self) -> Metrics {
        self.metrics()
    }

    /// The connected peers that subscribe to the space's topic.
    async fn space_peers(&self, space: &PublicKey) -> Vec<PeerId> {
        let topic = space_topic(space);
        match self.inner.net.peers().await {
            Ok(peers) => peers
                .into_iter()
                .filter(|peer| peer.state == cosmic_net::PeerState::Connected)
                .filter(|peer| peer.topics.contains(&topic))
                .map(|peer| peer.peer_id)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Reconciles `space` now with every connected peer of the space; returns each
    /// session's outcome (empty when no peer of the space is connected).
    pub async fn sync_now(&self, space: PublicKey) -> Result<Vec<PeerSession>> {
        if !self.lock_spaces().contains_key(&space) {
            return Err(Error::NotJoined { space });
        }
        let peers = self.space_peers(&space).await;
        let mut handles = Vec::new();
        for peer in peers {
            let this = self.clone();
            handles.push((peer, tokio::spawn(async move { this.sync_with(space, peer).await })));
        }
        let mut out = Vec::new();
        for (peer, handle) in handles {
            let result = match handle.await {
                Ok(result) => result.map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            out.push(PeerSession { peer, result });
        }
        Ok(out)
    }

    /// A session started by a trigger (subscription, timer, discovery): skipped while the
    /// peer is itself reconciling the space with us, so entries do not cross twice.
    async fn session_logged(&self, space: PublicKey, peer: PeerId) {
        let busy = self
            .inner
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(space, peer))
            .is_some_and(|at| at.elapsed() < SERVED_RECENTLY);
        if busy {
            return;
        }
        if let Err(error) = self.sync_with(space, peer).await {
            debug!(%space, %peer, %error, "reconciliation failed");
        }
    }

    /// Reconciles with `peer` once no session with it on `space` is running (bounded
    /// wait): used when an entry is known to be missing on one side right now, where
    /// a session already under way may have passed its range.
    async fn catch_up(&self, space: PublicKey, peer: PeerId) {
        let started = tokio::time::Instant::now();
        loop {
            let running = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&(space, peer));
            if !running || started.elapsed() > CATCH_UP_WAIT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Err(error) = self.sync_with(space, peer).await {
            debug!(%space, %peer, %error, "catch-up reconciliation failed");
        }
    }

    /// Reconciles `space` with one peer (dialling it if needed), and waits for the end.
    /// When a session with that peer on that space is already running, returns at once
    /// with empty stats.
    pub async fn sync_with(&self, space: PublicKey, peer: PeerId) -> Result<SessionStats> {
        if !self.lock_spaces().contains_key(&space) {
            return Err(Error::NotJoined { space });
        }
        {
            let mut sessions = self.inner.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            if !sessions.insert((space, peer)) {
                return Ok(SessionStats::default());
            }
        }
        let result = self.run_session(space, peer).await;
        self.inner.sessions.lock().unwrap_or_else(PoisonError::into_inner).remove(&(space, peer));
        match &result {
            Ok(stats) => {
                self.metrics_mut(|metrics| {
                    metrics.sessions += 1;
                    metrics.recon.add(stats);
                });
                self.inner.bus.publish(SyncEvent::SessionFinished { space, peer, stats: *stats });
            }
            Err(error) => {
                self.metrics_mut(|metrics| metrics.sessions_failed += 1);
                let reason = error.to_string();
                self.inner.bus.publish(SyncEvent::SessionFailed { space, peer, reason });
            }
        }
        result
    }

    async fn run_session(&self, space: PublicKey, peer: PeerId) -> Result<SessionStats> {
        let started = Instant::now();
        let options = &self.inner.options;
        let limits = options.recon;
        let max_rounds = options.max_rounds;
        let (mut session, mut message) = self
            .blocking(move |store| Ok(Session::start(&store, space, limits, max_rounds)?))
            .await?;
        // The first message carries our wall clock, and its answer the peer's.
        message.parts.push(Part::Clock(self.inner.store.wall_clock_millis()));
        let mut clock_sent = Some(Instant::now());
        let origin = Origin::Peer(peer.to_string());
        let mut stats = SessionStats::default();
        loop {
            let bytes = message.encode(options.max_message_size).map_err(Error::Outgoing)?;
            stats.bytes_sent += bytes.len() as u64;
            stats.entries_sent += count_entries(&message);
            let reply = self.inner.net.request(peer, RECON_PROTOCOL, bytes).await?;
            let received = Instant::now();
            stats.bytes_received += reply.len() as u64;
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
            let (back, next, step) = self
                .blocking(move |store| {
                    let (next, step) = session.on_reply(&store, &reply, &origin)?;
                    Ok((session, next, step))
                })
                .await?;
            session = back;
            stats.entries_received += step.entries_received;
            stats.entries_applied += step.entries_applied;
            let mut step = step;
            self.report_rejected(space, peer, &mut step, &mut stats).await;
            match next {
                Some(next) => message = next,
                None => break,
            }
        }
        stats.rounds = session.rounds();
        stats.converged = session.converged();
        stats.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Ok(stats)
    }

    /// Records that `peer`'s wall clock read `millis` at `at`, and sets the store's time
    /// floor to what the peers' clocks now vote for (see [`crate::peer_clock`]).
    fn observe_clock(&self, peer: PeerId, millis: u64, at: Instant) {
        let store = &self.inner.store;
        let ours = store.wall_clock_millis();
        let (ahead_ms, floor, voters) = {
            let mut clocks = self.inner.clocks.lock().unwrap_or_else(PoisonError::into_inner);
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

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|error| Error::Task(error.to_string()))?
    }

    // ---- background tasks ----

    /// Publishes local changes and reports every change of a joined space.
    async fn feed_task(self, space: PublicKey, mut changes: cosmic_store::Subscription) {
        let topic = space_topic(&space);
        while let Some(change) = changes.next().await {
            let change = match change {
                Ok(change) => change,
                Err(error) => {
                    warn!(%space, %error, "following the store's changes failed");
                    return;
                }
            };
            let Change { seq, entry, origin } = change;
            if origin == Origin::Local {
                match self.inner.net.publish(&topic, wire::encode_gossip(&entry)).await {
                    Ok(_) => self.metrics_mut(|metrics| metrics.gossip_published += 1),
                    // No peer yet, or a duplicate: the next peer to subscribe reconciles.
                    Err(error) => {
                        debug!(%space, %error, "publishing a change failed");
                        self.inner
                            .unpublished
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(space);
                    }
                }
            }
            if let Value::BlobLink(cid) = &entry.value {
                self.on_blob_link(space, cid.clone(), &origin);
            }
            self.inner.bus.publish(SyncEvent::Applied {
                space,
                doc: entry.doc,
                field: entry.field,
                seq,
                origin,
            });
        }
    }

    /// Reconciles every joined space soon after gossip messages were lost to a full queue
    /// (a burst of writes), instead of leaving the gap to the next periodic round. Misses
    /// coalesce: one round runs at a time, and misses during a round ask for one more.
    async fn resync_task(self) {
        loop {
            self.inner.missed_gossip.notified().await;
            // Let the burst that overflowed the queue pass first.
            tokio::time::sleep(MISSED_GOSSIP_SETTLE).await;
            for space in self.joined() {
                if let Err(error) = self.sync_now(space).await {
                    debug!(%space, %error, "reconciliation after missed gossip failed");
                }
            }
        }
    }

    /// Judges gossip entries of joined spaces and merges the valid ones, in batches.
    async fn gossip_task(self) {
        let mut messages = self.inner.bus.subscribe::<GossipMessage>();
        loop {
            let first = match messages.recv().await {
                Ok(message) => message,
                Err(cosmic_events::RecvError::Lagged { missed }) => {
                    debug!(missed, "gossip messages missed; reconciling now");
                    self.inner.missed_gossip.notify_one();
                    continue;
                }
                Err(_) => return,
            };
            let mut batch = vec![first];
            while batch.len() < 512 {
                match messages.try_recv() {
                    Ok(Some(message)) => batch.push(message),
                    Ok(None) => break,
                    Err(cosmic_events::RecvError::Lagged { missed }) => {
                        debug!(missed, "gossip messages missed; reconciling now");
                        self.inner.missed_gossip.notify_one();
                        continue;
                    }
                    Err(_) => break,
                }
            }
            self.judge_gossip(batch).await;
        }
    }

    async fn judge_gossip(&self, batch: Vec<GossipMessage>) {
        let mut verdicts: Vec<(GossipMessage, Verdict, Option<String>)> = Vec::new();
        let mut to_insert: Vec<(GossipMessage, Entry)> = Vec::new();
        for message in batch {
            let Some(space) = self.topic_space(&message.topic) else {
                if message.topic.starts_with("cosmic/space/") {
                    verdicts.push((message, Verdict::Ignore, None));
                }
                continue;
            };
            match wire::decode_gossip(&message.data, self.inner.options.max_gossip_size) {
                Ok(entry) if entry.space == space => to_insert.push((message, entry)),
                Ok(entry) => {
                    let reason =
                        format!("an entry of space {} on the topic of {space}", entry.space);
                    verdicts.push((message, Verdict::Reject, Some(reason)));
                }
                Err(error) => verdicts.push((message, Verdict::Reject, Some(error.to_string()))),
            }
        }
        let mut catch_ups: HashSet<(PublicKey, PeerId)> = HashSet::new();
        let mut deferrals: Vec<(PublicKey, PeerId, Entry, String)> = Vec::new();
        // One store transaction per origin.
        let mut by_origin: BTreeMap<String, Vec<(GossipMessage, Entry)>> = BTreeMap::new();
        for (message, entry) in to_insert {
            let origin = message.source.unwrap_or(message.propagation_source).to_string();
            by_origin.entry(origin).or_default().push((message, entry));
        }
        for (origin, group) in by_origin {
            let entries: Vec<Entry> = group.iter().map(|(_, entry)| entry.clone()).collect();
            let origin = Origin::Peer(origin);
            let results =
                self.blocking(move |store| Ok(store.insert_batch_from(entries, origin)?)).await;
            match results {
                Ok(results) => {
                    for ((message, entry), result) in group.into_iter().zip(results) {
                        if let (Err(cosmic_store::Error::UnknownSpace { .. }), Some(space)) =
                            (&result, self.topic_space(&message.topic))
                        {
                            // The space record has not reached us yet (we just joined):
                            // reconcile with the sender, which brings record and entry.
                            catch_ups.insert((space, message.propagation_source));
                        }
                        if lacks_statement(&result) {
                            // Valid but early (its grant has not reached us), or invalid:
                            // the sender must hold the grant, since it accepted the entry.
                            // Neither forward nor blame it yet; judge again once a
                            // reconciliation with it had the chance to bring the grant.
                            let origin = message.source.unwrap_or(message.propagation_source);
                            deferrals.push((
                                entry.space,
                                message.propagation_source,
                                entry,
                                origin.to_string(),
                            ));
                            verdicts.push((message, Verdict::Ignore, None));
                            continue;
                        }
                        let (verdict, reason) = verdict_of(result);
                        verdicts.push((message, verdict, reason));
                    }
                }
                Err(error) => {
                    warn!(%error, "storing gossip entries failed");
                    for (message, _) in group {
                        verdicts.push((message, Verdict::Ignore, None));
                    }
                }
            }
        }
        for (space, peer) in catch_ups {
            let this = self.clone();
            tokio::spawn(async move { this.catch_up(space, peer).await });
        }
        for (space, peer, entry, origin) in deferrals {
            if self.defer(space, peer, entry, origin) {
                let this = self.clone();
                tokio::spawn(async move { this.judge_deferred(space, peer).await });
            }
        }
        for (message, verdict, reason) in verdicts {
            self.metrics_mut(|metrics| match verdict {
                Verdict::Accept => metrics.gossip_accepted += 1,
                Verdict::Reject => metrics.gossip_rejected += 1,
                Verdict::Ignore => metrics.gossip_ignored += 1,
            });
            if verdict == Verdict::Reject
                && let Some(space) = self.topic_space(&message.topic)
            {
                let peer = message.propagation_source;
                let reason = reason.unwrap_or_default();
                self.inner.bus.publish(SyncEvent::EntryRejected { space, peer, reason });
            }
            let _ = self
                .inner
                .net
                .report_validation(message.message_id, message.propagation_source, verdict)
                .await;
        }
    }

    /// Holds back an entry that lacks its capability statement; returns true when it is
    /// the first held for this space and peer (a judging task must then start). Entries
    /// over the bounds are dropped: reconciliation brings them if they are valid.
    fn defer(&self, space: PublicKey, peer: PeerId, entry: Entry, origin: String) -> bool {
        let mut deferred = self.lock_deferred();
        let total: usize = deferred.values().map(Vec::len).sum();
        let held = deferred.entry((space, peer)).or_default();
        let first = held.is_empty();
        if total < MAX_DEFERRED && held.len() < MAX_DEFERRED_PER_PEER {
            held.push((entry, origin));
            drop(deferred);
            self.metrics_mut(|metrics| metrics.gossip_deferred += 1);
        } else if first {
            deferred.remove(&(space, peer));
            return false;
        }
        first
    }

    /// Gossip entries held back now for want of a capability statement, all peers
    /// together; never more than a fixed bound.
    pub fn deferred_entries(&self) -> usize {
        self.lock_deferred().values().map(Vec::len).sum()
    }

    /// Reconciles with the peer that sent entries lacking their capability statement,
    /// then inserts them again: those still refused were not valid, and count against
    /// the peer (one strike per round, whose rejections are reported one by one). The
    /// entries stay counted in [`Replicator::deferred_entries`] until judged; those
    /// that arrived meanwhile get another round.
    async fn judge_deferred(&self, space: PublicKey, peer: PeerId) {
        let key = (space, peer);
        loop {
            self.catch_up(space, peer).await;
            let held = self.lock_deferred().get(&key).cloned().unwrap_or_default();
            let judged = held.len();
            self.rejudge(space, peer, held).await;
            let mut deferred = self.lock_deferred();
            let more = deferred.get_mut(&key).is_some_and(|list| {
                list.drain(..judged.min(list.len()));
                !list.is_empty()
            });
            if !more {
                deferred.remove(&key);
                return;
            }
        }
    }

    fn lock_deferred(&self) -> std::sync::MutexGuard<'_, DeferredMap> {
        self.inner.deferred.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts held entries again and reports those still refused against `peer`.
    async fn rejudge(&self, space: PublicKey, peer: PeerId, held: Vec<Deferred>) {
        let mut by_origin: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for (entry, origin) in held {
            by_origin.entry(origin).or_default().push(entry);
        }
        let mut rejected = Vec::new();
        for (origin, entries) in by_origin {
            let origin = Origin::Peer(origin);
            let results =
                self.blocking(move |store| Ok(store.insert_batch_from(entries, origin)?)).await;
            match results {
                Ok(results) => {
                    rejected.extend(results.into_iter().filter_map(|result| verdict_of(result).1))
                }
                Err(error) => warn!(%error, "storing deferred gossip entries failed"),
            }
        }
        if rejected.is_empty() {
            return;
        }
        let count = rejected.len() as u64;
        for reason in rejected {
            self.inner.bus.publish(SyncEvent::EntryRejected { space, peer, reason });
        }
        let reason = "gossip entries without a capability, even after reconciliation";
        if let Err(error) = self.inner.net.report_peer(peer, reason).await {
            debug!(%peer, %error, "reporting a peer failed");
        }
        self.metrics_mut(|metrics| metrics.gossip_rejected += count);
    }

    fn topic_space(&self, topic: &str) -> Option<PublicKey> {
        let space: PublicKey = topic.strip_prefix("cosmic/space/1/")?.parse().ok()?;
        self.lock_spaces().contains_key(&space).then_some(space)
    }

    /// Answers reconciliation requests.
    async fn request_task(self) {
        let mut requests = self.inner.bus.subscribe::<InboundRequest>();
        loop {
            let request = match requests.recv().await {
                Ok(request) => request,
                Err(cosmic_events::RecvError::Lagged { .. }) => continue,
                Err(_) => return,
            };
            if request.protocol != RECON_PROTOCOL {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move { this.serve(request).await });
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
        {
            let mut served = self.inner.served.lock().unwrap_or_else(PoisonError::into_inner);
            served.retain(|_, at| at.elapsed() < SERVED_RECENTLY);
            served.insert((space, peer), Instant::now());
        }
        // A session's first message carries the peer's wall clock: judge it before any
        // entry, and answer with ours.
        let clock = clock_of(&message);
        if let Some(theirs) = clock {
            self.observe_clock(peer, theirs, Instant::now());
        }
        let limits = options.recon;
        let origin = Origin::Peer(peer.to_string());
        let (mut reply, step) = self
            .blocking(move |store| Ok(recon::respond(&store, &message, &origin, &limits)?))
            .await?;
        if clock.is_some() {
            reply.parts.push(Part::Clock(self.inner.store.wall_clock_millis()));
        }
        let mut ignored = SessionStats::default();
        let mut step = step;
        self.report_rejected(space, peer, &mut step, &mut ignored).await;
        let bytes = reply.encode(options.max_message_size).map_err(Error::Outgoing)?;
        self.metrics_mut(|metrics| {
            metrics.requests_served += 1;
            metrics.served_bytes_received += request.body.len() as u64;
            metrics.served_bytes_sent += bytes.len() as u64;
        });
        Ok(bytes)
    }

    /// Reconciles with a peer as soon as it subscribes to a joined space's topic.
    async fn topic_task(self) {
        let mut subscribed = self.inner.bus.subscribe::<TopicSubscribed>();
        loop {
            let event = match subscribed.recv().await {
                Ok(event) => event,
                Err(cosmic_events::RecvError::Lagged { .. }) => continue,
                Err(_) => return,
            };
            // Both peers see each other's subscription; only the one with the smaller peer
            // id starts a session, so the entries do not cross twice (the other side's
            // periodic reconciliation covers a failed session).
            let Some(space) = self.topic_space(&event.topic) else { continue };
            let unpublished = self
                .inner
                .unpublished
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&space);
            if unpublished {
                // A local change went nowhere by gossip: this peer needs it now, even if
                // it has just reconciled with us.
                let this = self.clone();
                tokio::spawn(async move { this.catch_up(space, event.peer_id).await });
            } else if self.peer_id() < event.peer_id {
                let this = self.clone();
                tokio::spawn(async move { this.session_logged(space, event.peer_id).await });
            }
        }
    }

    /// Reconciles every joined space with its peers every `reconcile_interval`, and looks
    /// its providers up again (which redials them).
    async fn periodic_task(self) {
        let mut ticks = tokio::time::interval(self.inner.options.reconcile_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            for space in self.joined() {
                self.discover(space).await;
            }
        }
    }

    // ---- blobs ----

    fn on_blob_link(&self, space: PublicKey, cid: Vec<u8>, origin: &Origin) {
        let Some(blobs) = self.inner.blobs.clone() else { return };
        let policy = self.blob_policy(&space).unwrap_or(BlobPolicy::None);
        let author = match origin {
            Origin::Peer(peer) => peer.parse::<PeerId>().ok(),
            Origin::Local => None,
        };
        let this = self.clone();
        tokio::spawn(async move {
            if blobs.has(&cid).await.unwrap_or(false) {
                return;
            }
            this.inner.bus.publish(SyncEvent::BlobPending { space, cid: cid.clone() });
            if policy == BlobPolicy::Eager {
                let _ = this.fetch_with_retries(space, &cid, author).await;
            }
        });
    }

    /// Fetches a linked blob now (the lazy policy's "when first read"), trying the
    /// providers of the blob, with retries; returns when it is complete locally.
    pub async fn fetch_blob(&self, space: PublicKey, cid: &[u8]) -> Result<()> {
        self.fetch_with_retries(space, cid, None).await
    }

    /// Whether a linked blob is here: a document that links a missing blob still reads,
    /// and this says its blob is pending.
    pub async fn blob_status(&self, cid: &[u8]) -> BlobStatus {
        match &self.inner.blobs {
            None => BlobStatus::Unavailable,
            Some(blobs) => match blobs.has(cid).await {
                Ok(true) => BlobStatus::Present,
                _ => BlobStatus::Pending,
            },
        }
    }

    async fn fetch_with_retries(
        &self,
        space: PublicKey,
        cid: &[u8],
        author: Option<PeerId>,
    ) -> Result<()> {
        let cid_text = data_text(cid);
        let Some(blobs) = self.inner.blobs.clone() else {
            return Err(Error::Blob { cid: cid_text, reason: "no blob store".into() });
        };
        let options = &self.inner.options;
        let mut delay = options.blob_retry_delay;
        let mut last = String::new();
        for attempt in 0..options.blob_fetch_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(Duration::from_secs(60));
            }
            let mut candidates: Vec<PeerId> = author.into_iter().collect();
            if let Ok(found) = self.inner.net.find_providers(cid.to_vec()).await {
                candidates.extend(found.into_iter().filter(|peer| Some(*peer) != author));
            }
            candidates.extend(self.space_peers(&space).await);
            candidates.dedup();
            let fetch =
                tokio::time::timeout(options.blob_fetch_timeout, blobs.fetch(cid, candidates));
            match fetch.await.unwrap_or_else(|_| Err("the attempt timed out".into())) {
                Ok(()) => {
                    self.metrics_mut(|metrics| metrics.blobs_fetched += 1);
                    self.inner.bus.publish(SyncEvent::BlobFetched { space, cid: cid.to_vec() });
                    return Ok(());
                }
                Err(error) => last = error.to_string(),
            }
        }
        self.metrics_mut(|metrics| metrics.blobs_failed += 1);
        let event = SyncEvent::BlobFailed { space, cid: cid.to_vec(), reason: last.clone() };
        self.inner.bus.publish(event);
        Err(Error::Blob { cid: cid_text, reason: last })
    }

    /// Stops every task of the replicator (the network and the store keep running).
    pub async fn shutdown(&self) {
        let tasks: Vec<JoinHandle<()>> = self.lock_tasks().drain(..).collect();
        let feeds: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.lock_spaces()).into_values().map(|j| j.feed).collect();
        for task in tasks.iter().chain(feeds.iter()) {
            task.abort();
        }
        for task in tasks.into_iter().chain(feeds) {
            let _ = task.await;
        }
    }
}

fn data_text(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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

/// Whether the store refused an entry for want of a capability statement that may simply
/// not have reached us yet (no statement about the author, or a grant by an issuer we
/// know nothing of).
fn lacks_statement(result: &cosmic_store::Result<Inserted>) -> bool {
    match result {
        Err(cosmic_store::Error::AccessDenied { reason, .. }) => matches!(
            **reason,
            cosmic_auth::AccessDenied::NoCapability { .. }
                | cosmic_auth::AccessDenied::UnknownSigner { .. }
        ),
        _ => false,
    }
}

/// The gossipsub verdict on an entry the store was asked to insert.
fn verdict_of(result: cosmic_store::Result<Inserted>) -> (Verdict, Option<String>) {
    use cosmic_store::Error as E;
    match result {
        // A stale entry (a replay, or the loser of a concurrent write) changes nothing
        // here and would change nothing anywhere: not forwarded, but not blamed either.
        Ok(Inserted::Superseded) => (Verdict::Ignore, None),
        Ok(_) => (Verdict::Accept, None),
        // Not malicious: we lack the space record yet, or the clocks disagree; the entry
        // comes back with reconciliation.
        Err(E::UnknownSpace { .. } | E::ClockDrift { .. }) => (Verdict::Ignore, None),
        Err(
            error @ (E::Io { .. } | E::Corrupted { .. } | E::Task { .. } | E::AlreadyOpen { .. }),
        ) => {
            warn!(%error, "storing a gossip entry failed");
            (Verdict::Ignore, None)
        }
        Err(error) => (Verdict::Reject, Some(error.to_string())),
    }
}
