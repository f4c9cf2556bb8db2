//! Read rights: who may receive a restricted space's content.
//!
//! Rights are granted to authors, the network sees peers. Each node presents signed
//! [`PeerBinding`]s ("author X speaks for peer P until T") for the authors it speaks for,
//! in one request of [`BIND_PROTOCOL`] whose answer carries the other side's: a node
//! dialling a peer makes this exchange as soon as the connection is up, and a session
//! starts with it when this node has not made one with that peer in the last
//! [`REBIND_AFTER`]. A node then answers a reconciliation request on a restricted space,
//! and starts one (which sends entries too), only with a peer bound to an author holding
//! `read`, `write` or `admin` there now; and it publishes no gossip of a restricted
//! space (gossipsub sends to every subscriber of a topic): its live updates go to each
//! reader peer by a reconciliation that the change starts (`push`).
//!
//! A binding that does not verify (forged, expired, made for another node, malformed)
//! refuses the whole presentation: the reason is logged, counted in
//! [`Metrics::bindings_refused`](crate::Metrics), and the presenter is struck.

use std::collections::{HashMap, hash_map};
use std::time::{Duration, Instant};

use cosmic_auth::{
    AuthorId, AuthorKey, BINDING_LEN, BindingError, PeerBinding, PublicKey, Right, SpaceMode,
    Timestamp, check_access, node_key_of,
};
use cosmic_events::Subscriber;
use cosmic_net::{Direction, InboundRequest, PeerConnected, PeerId, Response};
use cosmic_store::Store;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Replicator, lock};
use crate::{Error, Result};

/// The application protocol name of binding exchanges on `cosmic-net`.
pub const BIND_PROTOCOL: &str = "sync/bind/1";

/// How long the bindings this node signs hold: a day, so that a peer whose clock is some
/// hours off still takes them (they are renewed every [`REBIND_AFTER`]).
const BINDING_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long after an exchange with a peer a session makes a new one (well within the
/// lifetime, so bindings are renewed before they lapse).
const REBIND_AFTER: Duration = Duration::from_secs(1800);
/// Bindings in one presentation, at most.
pub const MAX_BINDINGS: usize = 64;

/// The authors this node speaks for, and what peers proved about theirs.
#[derive(Default)]
pub(super) struct AccessState {
    /// The keys whose bindings this node presents.
    speakers: Vec<AuthorKey>,
    /// Bumped whenever `speakers` changes: an exchange that presented an older set does
    /// not count as done.
    generation: u64,
    /// Per peer: the authors it is bound to (each until its binding ends), and when this
    /// node last completed an exchange it started (none: make one before the next
    /// session).
    peers: HashMap<PeerId, PeerAuthors>,
}

/// Why a presentation of bindings was refused, and whether that is the presenter's fault.
struct Refused {
    reason: String,
    fault: bool,
}

#[derive(Default)]
struct PeerAuthors {
    authors: Vec<(AuthorId, Timestamp)>,
    /// Set only when our own request was answered: then the peer had recorded our
    /// bindings before it answered, so our next request finds them. Answering the peer's
    /// presentation does not set it, since our answer may still be on its way when we
    /// send our next request.
    exchanged: Option<Instant>,
}

impl Replicator {
    /// Speaks for `author` from now on: every peer is shown a binding of this node to it
    /// (at the next session with that peer), so that it serves this node the restricted
    /// spaces where `author` may read.
    pub fn speak_for(&self, author: AuthorKey) {
        let mut access = lock(&self.inner.access);
        if access.speakers.iter().any(|known| known.public() == author.public()) {
            return;
        }
        access.speakers.push(author);
        access.generation += 1;
        for peer in access.peers.values_mut() {
            peer.exchanged = None;
        }
    }

    /// The authors `peer` proved it speaks for, whose bindings still hold.
    pub fn peer_authors(&self, peer: &PeerId) -> Vec<AuthorId> {
        let now = Timestamp::now();
        let access = lock(&self.inner.access);
        let Some(known) = access.peers.get(peer) else { return Vec::new() };
        known.authors.iter().filter(|(_, until)| *until >= now).map(|(author, _)| *author).collect()
    }

    /// Our bindings, freshly signed, encoded one after the other, and the generation of
    /// the set they present.
    fn our_bindings(&self) -> (Vec<u8>, u64) {
        let not_after = Timestamp(Timestamp::now().0 + BINDING_LIFETIME.as_millis() as u64);
        let access = lock(&self.inner.access);
        let Some(node) = node_key_of(&self.peer_id()) else {
            return (Vec::new(), access.generation);
        };
        let mut out = Vec::with_capacity(access.speakers.len() * BINDING_LEN);
        for speaker in access.speakers.iter().take(MAX_BINDINGS) {
            out.extend_from_slice(&PeerBinding::sign(speaker, &node, not_after).to_bytes());
        }
        (out, access.generation)
    }

    /// Checks a presentation of bindings by `peer` and, if every one holds, records its
    /// authors (replacing what it presented before); `answered`: it came as the answer to
    /// our own presentation, of the generation given, which counts as an exchange done
    /// only if our set has not changed since (an author added meanwhile, say at start,
    /// must still be shown). The error names the first bad one.
    fn accept_bindings(
        &self,
        peer: PeerId,
        bytes: &[u8],
        answered: Option<u64>,
    ) -> std::result::Result<usize, Refused> {
        if !bytes.len().is_multiple_of(BINDING_LEN) || bytes.len() / BINDING_LEN > MAX_BINDINGS {
            let reason = format!(
                "a presentation of {} bytes is not at most {MAX_BINDINGS} bindings of \
                 {BINDING_LEN} bytes",
                bytes.len()
            );
            return Err(Refused { reason, fault: true });
        }
        let now = Timestamp::now();
        let mut authors = Vec::new();
        for chunk in bytes.chunks(BINDING_LEN) {
            let refused = |error: BindingError| Refused {
                fault: !matches!(error, BindingError::Expired { .. }),
                reason: error.to_string(),
            };
            let binding = PeerBinding::from_bytes(chunk).map_err(refused)?;
            binding.verify_peer(&peer, now).map_err(refused)?;
            authors.push((*binding.author(), binding.not_after()));
        }
        let count = authors.len();
        let mut access = lock(&self.inner.access);
        let current = access.generation;
        let known = access.peers.entry(peer).or_default();
        known.authors = authors;
        if answered == Some(current) {
            known.exchanged = Some(Instant::now());
        }
        Ok(count)
    }

    /// Counts and logs a refused presentation, and strikes the presenter when it is at
    /// fault (an expired binding is not struck: the presenter's clock may be off).
    async fn refuse_bindings(&self, peer: PeerId, refused: &Refused) {
        let reason = &refused.reason;
        warn!(%peer, %reason, "refused a peer's bindings");
        self.metrics_mut(|metrics| metrics.bindings_refused += 1);
        if !refused.fault {
            return;
        }
        let strike = format!("bad peer bindings: {reason}");
        if let Err(error) = self.inner.net.report_peer(peer, strike).await {
            debug!(%peer, %error, "striking a peer failed");
        }
    }

    /// Exchanges bindings with `peer` unless that was done in the last [`REBIND_AFTER`].
    /// A peer that cannot answer (a network failure, or no handler for the protocol)
    /// stays unbound until the next try: open spaces need no binding, and restricted ones
    /// are refused to an unbound peer. Bindings that do not hold fail the session.
    pub(super) async fn ensure_bound(&self, peer: PeerId) -> Result<()> {
        let fresh = lock(&self.inner.access)
            .peers
            .get(&peer)
            .and_then(|known| known.exchanged)
            .is_some_and(|at| at.elapsed() < REBIND_AFTER);
        if fresh {
            return Ok(());
        }
        let (ours, generation) = self.our_bindings();
        let reply = match self.inner.net.request(peer, BIND_PROTOCOL, ours).await {
            Ok(reply) => reply,
            Err(error) => {
                debug!(%peer, %error, "no binding exchange with a peer; it stays unbound");
                return Ok(());
            }
        };
        if let Err(refused) = self.accept_bindings(peer, &reply, Some(generation)) {
            self.refuse_bindings(peer, &refused).await;
            return Err(Error::Refused { peer: peer.to_string(), reason: refused.reason });
        }
        Ok(())
    }

    /// Exchanges bindings with the peers this node is already connected to by a connection
    /// it dialled: the node may dial its bootstrap and known peers before the replicator
    /// starts, and those connections brought no event to [`Replicator::bind_on_connect`].
    pub(super) async fn bind_existing(&self) {
        let Ok(peers) = self.inner.net.peers().await else { return };
        for peer in peers {
            if peer.connections.iter().any(|info| info.direction == Direction::Outbound) {
                let this = self.clone();
                self.spawn_tracked(async move {
                    if let Err(error) = this.ensure_bound(peer.peer_id).await {
                        debug!(peer = %peer.peer_id, %error, "binding exchange failed");
                    }
                });
            }
        }
    }

    /// Exchanges bindings with every peer this node dials, as soon as the connection is up,
    /// so that the first session with it does not wait for the exchange (a session makes
    /// it anyway when it is missing or stale, so a missed event costs only time). Takes the
    /// subscription made when the replicator started (`None` after a restart: a new one).
    pub(super) async fn bind_on_connect(self, connected: Option<Subscriber<PeerConnected>>) {
        let mut connected = connected.unwrap_or_else(|| self.inner.bus.subscribe());
        loop {
            match connected.recv().await {
                Ok(event) if event.direction == Direction::Outbound => {
                    let this = self.clone();
                    self.spawn_tracked(async move {
                        if let Err(error) = this.ensure_bound(event.peer_id).await {
                            debug!(peer = %event.peer_id, %error, "binding exchange failed");
                        }
                    });
                }
                Ok(_) | Err(cosmic_events::RecvError::Lagged { .. }) => {}
                Err(_) => return,
            }
        }
    }

    /// Answers binding presentations with our own.
    pub(super) async fn bind_task(self, requests: Option<mpsc::Receiver<InboundRequest>>) {
        let capacity = self.inner.options.request_queue_len;
        let mut requests = match requests {
            Some(requests) => requests,
            None => match self.inner.net.request_inbox(BIND_PROTOCOL, capacity).await {
                Ok(requests) => requests,
                Err(error) => {
                    debug!(%error, "no binding handler: the network has stopped");
                    return;
                }
            },
        };
        while let Some(request) = requests.recv().await {
            let peer = request.peer_id;
            let response = match self.accept_bindings(peer, &request.body, None) {
                Ok(count) => {
                    debug!(%peer, count, "a peer presented its bindings");
                    Response::Ok(self.our_bindings().0.into())
                }
                Err(refused) => {
                    self.refuse_bindings(peer, &refused).await;
                    Response::Error(format!("bindings refused: {}", refused.reason))
                }
            };
            if let Err(error) = self.inner.net.respond(request.request_id, response).await {
                debug!(%peer, %error, "answering a binding presentation failed");
            }
        }
    }

    /// Whether `space` is restricted here (false while its record is unknown: then this
    /// node holds nothing of it to give).
    pub(super) fn is_restricted(&self, space: &PublicKey) -> Result<bool> {
        let record = self.inner.store.space_record(space)?;
        Ok(record.is_some_and(|record| record.mode == SpaceMode::Restricted))
    }

    /// Checks that `peer` may receive the content of `space` now: any peer for an open
    /// space, a peer bound to an author holding `read` or more for a restricted one.
    /// A refusal is counted and returned as [`Error::ReadDenied`] (the caller logs it).
    pub(super) async fn check_read(&self, space: PublicKey, peer: PeerId) -> Result<()> {
        // The common case first, without a trip to a blocking thread: one record read.
        if !self.is_restricted(&space)? {
            return Ok(());
        }
        let authors = self.peer_authors(&peer);
        let verdict =
            self.blocking(move |store| Ok(read_verdict(&store, &space, &authors)?)).await?;
        match verdict {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.metrics_mut(|metrics| metrics.reads_refused += 1);
                Err(Error::ReadDenied { space, peer: peer.to_string(), reason })
            }
        }
    }

    /// Whether `peer` may receive the content of `space` now (any peer for an open space,
    /// a peer bound to an author holding a right there for a restricted one); a refusal is counted in
    /// [`Metrics::reads_refused`](crate::Metrics). For the upper layers' own decisions,
    /// such as serving a blob that a restricted space links.
    pub async fn may_read(&self, space: PublicKey, peer: PeerId) -> Result<bool> {
        match self.check_read(space, peer).await {
            Ok(()) => Ok(true),
            Err(Error::ReadDenied { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Sends the changes of a space to each of its peers but `except` (the peer they came
    /// from), by a reconciliation that starts after this call (which shares a restricted
    /// space only with its readers); pushes to one peer are coalesced while one runs. For
    /// every change of a restricted space (never gossiped), and for new space records and
    /// capability statements of any space (no entry change announces them).
    pub(super) async fn push(&self, space: PublicKey, except: Option<PeerId>) {
        for peer in self.space_peers(&space).await {
            if Some(peer) == except {
                continue;
            }
            match lock(&self.inner.pushes).entry((space, peer)) {
                hash_map::Entry::Occupied(mut again) => {
                    *again.get_mut() = true;
                    continue;
                }
                hash_map::Entry::Vacant(slot) => {
                    slot.insert(false);
                }
            }
            self.spawn_tracked(self.push_to(space, peer));
        }
    }

    /// The push task of one peer (boxed: a push runs a session, whose answers may start
    /// pushes in turn).
    fn push_to(&self, space: PublicKey, peer: PeerId) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            loop {
                this.catch_up(space, peer).await;
                let mut pushes = lock(&this.inner.pushes);
                match pushes.get_mut(&(space, peer)) {
                    Some(again) if *again => *again = false,
                    _ => {
                        pushes.remove(&(space, peer));
                        return;
                    }
                }
            }
        })
    }
}

/// Whether any of `authors` may read `space` now, or why none may.
fn read_verdict(
    store: &Store,
    space: &PublicKey,
    authors: &[AuthorId],
) -> cosmic_store::Result<std::result::Result<(), String>> {
    let Some(record) = store.space_record(space)? else { return Ok(Ok(())) };
    if record.mode == SpaceMode::Open {
        return Ok(Ok(()));
    }
    if authors.is_empty() {
        return Ok(Err("the peer speaks for no author".to_owned()));
    }
    let statements = store.statements(space)?;
    let now = Timestamp::now();
    let mut reasons = Vec::new();
    for author in authors {
        match check_access(space, record.mode, author, Right::Read, now, &statements) {
            Ok(()) => return Ok(Ok(())),
            Err(denied) => reasons.push(denied.to_string()),
        }
    }
    Ok(Err(reasons.join("; ")))
}
