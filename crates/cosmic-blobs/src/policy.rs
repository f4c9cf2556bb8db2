//! [`AccessPolicy`]: who may fetch which blob from this node.
//!
//! Before the provider sends any byte of a blob it asks the policy, with the requesting
//! peer's node key (authenticated by the QUIC handshake) and the blob's CID. A refusal
//! closes the request with a permission error; the requester sees a failed provider.
//! Requests for several blobs at once (get-many) and pushes are disabled outright, so
//! every served byte goes through this check.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cosmic_auth::PublicKey;
use cosmic_events::Bus;
use iroh_blobs::api::Store;
use iroh_blobs::provider::events::{
    AbortReason, ConnectMode, EventMask, EventSender, ProviderMessage, RequestMode,
};
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
/// The task ends when the provider (the last [`EventSender`]) is dropped.
pub(crate) fn spawn_policy_task(
    policy: Arc<dyn AccessPolicy>,
    store: Store,
    bus: Bus,
) -> EventSender {
    let mask = EventMask {
        // Learn each connection's authenticated peer, since get requests carry only the
        // connection id. Intercepting (rather than being notified) guarantees the peer
        // is recorded before the connection's first request is read.
        connected: ConnectMode::Intercept,
        get: RequestMode::Intercept,
        get_many: RequestMode::Disabled,
        push: RequestMode::Disabled,
        ..EventMask::DEFAULT
    };
    let (sender, mut receiver) = EventSender::channel(EVENT_CAPACITY, mask);
    let pins = Arc::new(Pins::new(store));
    tokio::spawn(async move {
        let mut peers: HashMap<u64, PublicKey> = HashMap::new();
        while let Some(message) = receiver.recv().await {
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
                    let cid = Cid::from_hash(message.inner.request.hash);
                    let peer = peers.get(&message.inner.connection_id).copied();
                    // A request for the blob's children (a hash sequence) is not a plain
                    // blob read: refuse it.
                    let is_blob = message.inner.request.ranges.is_blob();
                    let (policy, pins, bus) = (policy.clone(), pins.clone(), bus.clone());
                    // One task per request, so that a slow policy answer does not hold up
                    // other peers' requests.
                    tokio::spawn(async move {
                        let allowed = match peer {
                            Some(peer) if is_blob => policy.may_fetch(&peer, &cid, &pins).await,
                            _ => false,
                        };
                        debug!(%cid, ?peer, allowed, "blob request");
                        let answer = if allowed {
                            Ok(())
                        } else {
                            if let Some(peer) = peer {
                                bus.publish(BlobEvent::ServeDenied { cid, peer });
                            }
                            Err(AbortReason::Permission)
                        };
                        message.tx.send(answer).await.ok();
                    });
                }
                _ => {}
            }
        }
    });
    sender
}
