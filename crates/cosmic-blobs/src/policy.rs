//! [`AccessPolicy`]: who may fetch which blob from this node.
//!
//! Before the provider sends any byte of a blob it asks the policy, with the requesting
//! peer's node key (authenticated by the QUIC handshake) and the blob's CID. A refusal
//! closes the request with a permission error; the requester sees a failed provider.
//! Requests for several blobs at once (get-many) and pushes are disabled outright, and
//! observe requests (which ranges of a blob does this node have) get the same check as
//! reads, so every served byte and every answer about a blob goes through the policy.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cosmic_auth::PublicKey;
use cosmic_events::Bus;
use iroh_blobs::Hash;
use iroh_blobs::api::Store;
use iroh_blobs::provider::events::{
    AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage, RequestMode,
};
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use crate::lookup::BoxFuture;
use crate::pins::{Pins, Visibility};
use crate::{BlobEvent, Cid};

/// Decides whether a peer may fetch a blob; implemented by the upper layer, which adds
/// "referenced from a space the requester may read" to the default [`PublicPins`].
pub trait AccessPolicy: fmt::Debug + Send + Sync + 'static {
    /// Whether `peer` may fetch `cid`. `pins` reads this node's pins.
    fn may_fetch<'a>(
        &'a self,
        peer: &'a PublicKey,
        cid: &'a Cid,
        pins: &'a Pins,
    ) -> BoxFuture<'a, bool>;
}

/// The default policy: serve a blob to anyone if it is pinned as [`Visibility::Public`],
/// and to no one otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicPins;

impl AccessPolicy for PublicPins {
    fn may_fetch<'a>(
        &'a self,
        _peer: &'a PublicKey,
        cid: &'a Cid,
        pins: &'a Pins,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match pins.visibility(cid).await {
                Ok(visibility) => visibility == Some(Visibility::Public),
                Err(error) => {
                    warn!(%cid, %error, "cannot read pins, refusing to serve");
                    false
                }
            }
        })
    }
}

/// Serves every blob to every peer; for tests and for nodes that hold only public data.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl AccessPolicy for AllowAll {
    fn may_fetch<'a>(
        &'a self,
        _peer: &'a PublicKey,
        _cid: &'a Cid,
        _pins: &'a Pins,
    ) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(true))
    }
}

/// How many provider events may wait for the policy task before the provider waits.
const EVENT_CAPACITY: usize = 64;

/// Builds the provider's event sender and spawns the task that answers it with `policy`.
///
/// The task ends when the provider (the last [`EventSender`]) is dropped, and is aborted
/// when the returned handle is dropped; the checks it starts are its own and end with it.
pub(crate) fn spawn_policy_task(
    policy: Arc<dyn AccessPolicy>,
    store: Store,
    bus: Bus,
) -> (EventSender, AbortOnDropHandle<()>) {
    let mask = EventMask {
        // Learn each connection's authenticated peer, since get requests carry only the
        // connection id. Intercepting (rather than being notified) guarantees the peer
        // is recorded before the connection's first request is read.
        connected: ConnectMode::Intercept,
        get: RequestMode::Intercept,
        get_many: RequestMode::Disabled,
        push: RequestMode::Disabled,
        observe: ObserveMode::Intercept,
        ..EventMask::DEFAULT
    };
    let (sender, receiver) = EventSender::channel(EVENT_CAPACITY, mask);
    let pins = Arc::new(Pins::new(store));
    #[allow(clippy::disallowed_methods, reason = "owned by the returned handle")]
    let task = tokio::spawn(answer_events(receiver, policy, pins, bus));
    (sender, AbortOnDropHandle::new(task))
}

/// Answers the provider's events until it goes away. Each access question runs as a task
/// of `checks`, so a slow policy answer does not hold up other peers' requests.
async fn answer_events(
    mut receiver: tokio::sync::mpsc::Receiver<ProviderMessage>,
    policy: Arc<dyn AccessPolicy>,
    pins: Arc<Pins>,
    bus: Bus,
) {
    let mut peers: HashMap<u64, PublicKey> = HashMap::new();
    let mut checks = JoinSet::new();
    loop {
        let message = tokio::select! {
            message = receiver.recv() => message,
            Some(_) = checks.join_next(), if !checks.is_empty() => continue,
        };
        let Some(message) = message else { break };
        match message {
            ProviderMessage::ClientConnected(message) => {
                let peer = message
                    .inner
                    .endpoint_id
                    .and_then(|id| PublicKey::from_bytes(id.as_bytes()).ok());
                let answer = match peer {
                    Some(peer) => {
                        peers.insert(message.inner.connection_id, peer);
                        Ok(())
                    }
                    None => Err(AbortReason::Permission),
                };
                message.tx.send(answer).await.ok();
            }
            ProviderMessage::ConnectionClosed(message) => {
                peers.remove(&message.inner.connection_id);
            }
            ProviderMessage::GetRequestReceived(message) => {
                let peer = peers.get(&message.inner.connection_id).copied();
                // A request for the blob's children (a hash sequence) is not a plain
                // blob read: refuse it.
                let is_blob = message.inner.request.ranges.is_blob();
                let check = Check::new(&policy, &pins, &bus, peer, message.inner.request.hash);
                checks.spawn(async move {
                    let answer = check.answer(is_blob).await;
                    message.tx.send(answer).await.ok();
                });
            }
            ProviderMessage::ObserveRequestReceived(message) => {
                // Observing tells which ranges of a blob this node has: the same
                // question as reading it.
                let peer = peers.get(&message.inner.connection_id).copied();
                let check = Check::new(&policy, &pins, &bus, peer, message.inner.request.hash);
                checks.spawn(async move {
                    let answer = check.answer(true).await;
                    message.tx.send(answer).await.ok();
                });
            }
            _ => {}
        }
    }
    // The provider is gone: let the questions already asked be answered (their requests
    // may still be waiting), then end.
    while checks.join_next().await.is_some() {}
}

/// One access question, moved into its own task so that a slow policy answer does not
/// hold up other peers' requests.
struct Check {
    policy: Arc<dyn AccessPolicy>,
    pins: Arc<Pins>,
    bus: Bus,
    peer: Option<PublicKey>,
    cid: Cid,
}

impl Check {
    fn new(
        policy: &Arc<dyn AccessPolicy>,
        pins: &Arc<Pins>,
        bus: &Bus,
        peer: Option<PublicKey>,
        hash: Hash,
    ) -> Self {
        Self {
            policy: policy.clone(),
            pins: pins.clone(),
            bus: bus.clone(),
            peer,
            cid: Cid::from_hash(hash),
        }
    }

    async fn answer(self, is_blob: bool) -> Result<(), AbortReason> {
        let allowed = match self.peer {
            Some(peer) if is_blob => self.policy.may_fetch(&peer, &self.cid, &self.pins).await,
            _ => false,
        };
        debug!(cid = %self.cid, peer = ?self.peer, allowed, "blob request");
        if allowed {
            return Ok(());
        }
        if let Some(peer) = self.peer {
            self.bus.publish(BlobEvent::ServeDenied { cid: self.cid, peer });
        }
        Err(AbortReason::Permission)
    }
}
