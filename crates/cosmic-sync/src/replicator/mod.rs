//! [`Replicator`]: the tasks that join spaces on the network, push local changes, judge
//! remote ones, reconcile with peers and fetch linked blobs.
//!
//! One file per concern: this one holds the handle, joining and leaving, and the task
//! bookkeeping; `feed.rs` publishes local changes as numbered gossip batches;
//! `gossip_in.rs` judges the batches peers publish and notices gaps in their numbering;
//! `repair.rs` turns every detected loss into a prompt reconciliation with the peer
//! concerned; `deferred.rs` holds entries whose capability has not arrived yet;
//! `sessions.rs` runs and answers reconciliation sessions; `blob_fetch.rs` fetches
//! linked blobs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cosmic_auth::PublicKey;
use cosmic_events::Bus;
use cosmic_net::{Net, PeerId};
use cosmic_store::Store;
use futures::FutureExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error};

use crate::names::{space_provider_key, space_topic};
use crate::peer_clock::PeerClocks;
use crate::state::{self, SpaceState};
use crate::types::{BlobFetcher, BlobPolicy, Metrics, SessionStats, SyncOptions};
use crate::{Error, Result};

mod access;
mod blob_fetch;
mod deferred;
mod feed;
mod gossip_in;
mod repair;
mod sessions;

/// The application protocol name of reconciliation requests on `cosmic-net`.
pub const RECON_PROTOCOL: &str = "sync/recon/1";

pub use access::{BIND_PROTOCOL, MAX_BINDINGS};

/// The first wait before a panicked replication task is started again; it doubles with
/// each panic in a row, up to [`MAX_RESTART_DELAY`].
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
/// The longest wait before a panicked replication task is started again.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

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
/// It replicates the spaces it has joined: it publishes the local changes of the store as
/// numbered batches of signed entries on the space's gossip topic, checks and merges the
/// batches peers publish, reconciles with the peers of each space when they connect,
/// every `reconcile_interval`, on [`Replicator::sync_now`], and within a second of any
/// gossip loss it detects, and fetches linked blobs by the space's [`BlobPolicy`]. Every
/// applied change is a [`SyncEvent::Applied`](crate::SyncEvent::Applied) on the bus.
/// Its tasks are tracked and restarted after a panic; they run until
/// [`Replicator::shutdown`].
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
    /// Running sessions and recently served peers (`sessions.rs`).
    sessions: Mutex<sessions::SessionState>,
    /// What the gossip receiver remembers: publishers' numbering, held entries
    /// (`gossip_in.rs`, `deferred.rs`).
    gossip_in: Mutex<gossip_in::GossipInState>,
    /// Losses waiting for their repair (`repair.rs`).
    repairs: repair::Repairs,
    /// Peers' wall clocks as they reported them, which set the store's time floor when
    /// most of them are ahead of ours.
    clocks: Mutex<PeerClocks>,
    /// The authors this node speaks for and the ones its peers proved (`access.rs`).
    access: Mutex<access::AccessState>,
    /// Pushes of a restricted space's changes running, by space and peer; true when
    /// another is wanted after the running one (`access.rs`).
    pushes: Mutex<HashMap<(PublicKey, PeerId), bool>>,
    /// Every task of the replicator, so that shutdown can wait for them all.
    tasks: TaskTracker,
    /// Cancelled at shutdown: every tracked task stops at its next await.
    cancel: CancellationToken,
}

struct Joined {
    state: SpaceState,
    feed: JoinHandle<()>,
    /// The space's gossip topic ([`space_topic`]), kept to find the space of a message.
    topic: String,
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

/// Locks a mutex, taking the data of a poisoned one (a panicked task is restarted, and
/// every state here stays consistent between statements).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Replicator {
    /// Starts replication on `net` and `store`, reporting on `bus`, and rejoins the spaces
    /// recorded in `state_dir`. Must be called within a Tokio runtime.
    ///
    /// The replicator becomes the handler of `net`'s gossip and of its
    /// [`RECON_PROTOCOL`] requests.
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
        // Take the queues now, so no message or request arrives before a handler exists.
        let inbox = net.gossip_inbox(options.gossip_queue_len).await?;
        let requests = net.request_inbox(RECON_PROTOCOL, options.request_queue_len).await?;
        let presentations = net.request_inbox(BIND_PROTOCOL, options.request_queue_len).await?;
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
                sessions: Mutex::default(),
                gossip_in: Mutex::default(),
                repairs: repair::Repairs::default(),
                clocks: Mutex::new(PeerClocks::default()),
                access: Mutex::default(),
                pushes: Mutex::default(),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
            }),
        };
        let inbox = Mutex::new(Some(inbox));
        replicator.supervise("gossip", move |this| {
            let inbox = lock(&inbox).take();
            this.gossip_task(inbox)
        });
        let requests = Mutex::new(Some(requests));
        replicator.supervise("requests", move |this| {
            let requests = lock(&requests).take();
            this.request_task(requests)
        });
        let presentations = Mutex::new(Some(presentations));
        replicator.supervise("bindings", move |this| {
            let presentations = lock(&presentations).take();
            this.bind_task(presentations)
        });
        // Subscribe now, not when the tasks first run: the network may be connecting already.
        let connected = Mutex::new(Some(replicator.inner.bus.subscribe()));
        replicator.supervise("bind-on-connect", move |this| {
            let connected = lock(&connected).take();
            this.bind_on_connect(connected)
        });
        let subscribed = Mutex::new(Some(replicator.inner.bus.subscribe()));
        replicator.supervise("topics", move |this| {
            let subscribed = lock(&subscribed).take();
            this.topic_task(subscribed)
        });
        replicator.supervise("periodic", Replicator::periodic_task);
        // After subscribing: a connection made from here on is an event.
        replicator.bind_existing().await;
        replicator.supervise("repair", Replicator::repair_task);
        for (space, space_state) in saved {
            replicator.start_space(space, space_state).await?;
        }
        Ok(replicator)
    }

    /// Runs `work` as a tracked task that stops at shutdown.
    fn spawn_tracked(&self, work: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = work => {}
            }
        })
    }

    /// Runs a long-lived task made by `make`, tracked, and makes it again after a panic
    /// (logged, with a growing delay). A task that returns is done: its input has closed.
    fn supervise<Fut>(&self, name: &'static str, make: impl Fn(Replicator) -> Fut + Send + 'static)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        self.spawn_tracked(async move {
            let mut delay = FIRST_RESTART_DELAY;
            loop {
                match AssertUnwindSafe(make(this.clone())).catch_unwind().await {
                    Ok(()) => return,
                    Err(_) => {
                        error!(task = name, ?delay, "a replication task panicked; restarting it");
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2).min(MAX_RESTART_DELAY);
                    }
                }
            }
        });
    }

    fn lock_spaces(&self) -> MutexGuard<'_, BTreeMap<PublicKey, Joined>> {
        lock(&self.inner.spaces)
    }

    fn metrics_mut(&self, update: impl FnOnce(&mut Metrics)) {
        update(&mut lock(&self.inner.metrics));
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
        let feed = self.spawn_tracked(self.clone().feed_task(space, changes));
        let topic = space_topic(&space);
        let previous = self.lock_spaces().insert(space, Joined { state: space_state, feed, topic });
        if let Some(previous) = previous {
            previous.feed.abort();
        }
        self.inner.net.subscribe(&space_topic(&space)).await?;
        let this = self.clone();
        self.spawn_tracked(async move { this.discover(space).await });
        Ok(())
    }

    /// Provides the space, finds its providers and reconciles with them and with the
    /// connected peers that share its topic.
    async fn discover(&self, space: PublicKey) {
        if let Err(error) = self.inner.net.provide(space_provider_key(&space)).await {
            debug!(%space, %error, "providing the space failed (no DHT peers yet?)");
        }
        let mut peers: HashSet<PeerId> = self.space_peers(&space).await.into_iter().collect();
        match self.inner.net.find_providers(space_provider_key(&space)).await {
            Ok(found) => peers.extend(found),
            Err(error) => debug!(%space, %error, "looking up the space's providers failed"),
        }
        peers.remove(&self.peer_id());
        for peer in peers {
            let this = self.clone();
            self.spawn_tracked(async move { this.session_logged(space, peer).await });
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
        self.inner.net.stop_providing(space_provider_key(&space)).await?;
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
        *lock(&self.inner.metrics)
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

    /// The joined space whose topic this is.
    fn topic_space(&self, topic: &str) -> Option<PublicKey> {
        if !topic.starts_with(crate::TOPIC_PREFIX) {
            return None;
        }
        let spaces = self.lock_spaces();
        spaces.iter().find(|(_, joined)| joined.topic == topic).map(|(space, _)| *space)
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

    /// Runs `work` on the store on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|error| Error::Task(error.to_string()))?
    }

    /// Stops every task of the replicator and waits for them (the network and the store
    /// keep running).
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let feeds: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.lock_spaces()).into_values().map(|j| j.feed).collect();
        for feed in &feeds {
            feed.abort();
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

fn data_text(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
