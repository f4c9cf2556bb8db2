//! A typed publish/subscribe event bus: level 1 of CosmicSyncCore.
//!
//! Every layer of a node reports what happens (a peer connected, an entry was applied,
//! a blob finished downloading) by publishing a value on a shared [`Bus`]; whoever cares
//! subscribes to that value's type. The bus owns only this fan-out. It does no I/O,
//! depends on no other workspace crate, and knows nothing of what the events mean.
//!
//! Its guarantees, each covered by a test:
//! - any `Clone + Send + Sync + 'static` type can be published ([`Event`]);
//! - a [`Subscriber`] receives every event of its type published after it subscribed, in
//!   publish order;
//! - a subscriber that falls more than the bus capacity behind is told how many events it
//!   missed ([`RecvError::Lagged`]) and then goes on with the oldest event still held; it
//!   never blocks or slows a publisher, which never waits for anyone;
//! - publishing a type nobody subscribes to costs a map lookup and nothing else.
//!
//! ```
//! use cosmic_events::Bus;
//!
//! #[derive(Clone, Debug, PartialEq)]
//! struct PeerConnected(u32);
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let bus = Bus::new();
//! let mut peers = bus.subscribe::<PeerConnected>();
//! assert_eq!(bus.publish(PeerConnected(7)), 1);
//! assert_eq!(peers.recv().await, Ok(PeerConnected(7)));
//! # });
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

#[cfg(test)]
mod tests;

/// How many events of one type the bus holds for its slowest subscriber by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A type that can travel on the bus: any `Clone + Send + Sync + 'static` type.
pub trait Event: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> Event for T {}

/// A cheap, cloneable handle to one event bus; clones share the same channels.
///
/// Each event type gets its own bounded ring of [`Bus::capacity`] events, created when
/// the type is first subscribed to or asked for a [`Publisher`].
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    /// `TypeId` of `E` -> `broadcast::Sender<E>`.
    channels: RwLock<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Bus {
    /// A bus holding up to [`DEFAULT_CAPACITY`] events per type.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A bus holding up to `capacity` events per type (at least 1) for slow subscribers.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                channels: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// How many events of one type a subscriber may fall behind before it lags.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Publishes `event` to every current subscriber of its type.
    ///
    /// Returns how many subscribers will see it. Never waits: a full subscriber loses its
    /// oldest event instead and is told so on its next receive.
    pub fn publish<E: Event>(&self, event: E) -> usize {
        let channels = self.inner.channels.read().unwrap_or_else(PoisonError::into_inner);
        match channels.get(&TypeId::of::<E>()).and_then(|sender| sender.downcast_ref()) {
            Some(sender) => send(sender, event),
            None => 0,
        }
    }

    /// Subscribes to every event of type `E` published from now on.
    pub fn subscribe<E: Event>(&self) -> Subscriber<E> {
        Subscriber { receiver: self.sender::<E>().subscribe() }
    }

    /// A publisher bound to one event type, which skips the type lookup of
    /// [`Bus::publish`]; for hot paths.
    pub fn publisher<E: Event>(&self) -> Publisher<E> {
        Publisher { sender: self.sender::<E>() }
    }

    /// How many subscribers of type `E` exist now.
    pub fn subscriber_count<E: Event>(&self) -> usize {
        let channels = self.inner.channels.read().unwrap_or_else(PoisonError::into_inner);
        channels
            .get(&TypeId::of::<E>())
            .and_then(|sender| sender.downcast_ref::<broadcast::Sender<E>>())
            .map_or(0, broadcast::Sender::receiver_count)
    }

    fn sender<E: Event>(&self) -> broadcast::Sender<E> {
        let type_id = TypeId::of::<E>();
        {
            let channels = self.inner.channels.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(sender) = channels.get(&type_id).and_then(|s| s.downcast_ref()) {
                return broadcast::Sender::clone(sender);
            }
        }
        let mut channels = self.inner.channels.write().unwrap_or_else(PoisonError::into_inner);
        let entry = channels
            .entry(type_id)
            .or_insert_with(|| Box::new(broadcast::channel::<E>(self.inner.capacity).0));
        match entry.downcast_ref::<broadcast::Sender<E>>() {
            Some(sender) => sender.clone(),
            // The map is keyed by `TypeId::of::<E>()`, so the value is always a `Sender<E>`.
            None => unreachable!("event bus channel stored under the wrong type id"),
        }
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n_types = self.inner.channels.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Bus")
            .field("capacity", &self.inner.capacity)
            .field("n_types", &n_types)
            .finish()
    }
}

fn send<E: Event>(sender: &broadcast::Sender<E>, event: E) -> usize {
    if sender.receiver_count() == 0 {
        return 0;
    }
    // An error means every receiver went away since the check: nobody to tell.
    sender.send(event).unwrap_or(0)
}

/// A handle that publishes events of one type; cheap to clone.
///
/// Holding a publisher keeps its channel open: subscribers see [`RecvError::Closed`] only
/// once the bus and all its publishers are gone.
pub struct Publisher<E> {
    sender: broadcast::Sender<E>,
}

impl<E: Event> Publisher<E> {
    /// Publishes `event`; returns how many subscribers will see it. Never waits.
    pub fn publish(&self, event: E) -> usize {
        send(&self.sender, event)
    }

    /// How many subscribers of this type exist now.
    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }
}

impl<E> Clone for Publisher<E> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone() }
    }
}

impl<E> fmt::Debug for Publisher<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").field("type", &std::any::type_name::<E>()).finish()
    }
}

/// Why a [`Subscriber`] did not get an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The subscriber fell behind and `missed` events were dropped for it. The next
    /// receive returns the oldest event still held.
    Lagged {
        /// How many events this subscriber will never see.
        missed: u64,
    },
    /// The bus and every publisher of this type are gone; no event will come again.
    Closed,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lagged { missed } => write!(f, "subscriber lagged and missed {missed} events"),
            Self::Closed => f.write_str("event bus closed"),
        }
    }
}

impl std::error::Error for RecvError {}

/// Receives the events of one type published after it was created.
///
/// Also a [`futures_core::Stream`] of `Result<E, RecvError>` that ends when the bus closes.
pub struct Subscriber<E> {
    receiver: broadcast::Receiver<E>,
}

impl<E: Event> Subscriber<E> {
    /// Waits for the next event.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no event is lost.
    pub async fn recv(&mut self) -> Result<E, RecvError> {
        self.receiver.recv().await.map_err(|error| match error {
            broadcast::error::RecvError::Lagged(missed) => RecvError::Lagged { missed },
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }

    /// Takes the next event if one is waiting: `Ok(None)` when there is none yet.
    pub fn try_recv(&mut self) -> Result<Option<E>, RecvError> {
        match self.receiver.try_recv() {
            Ok(event) => Ok(Some(event)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                Err(RecvError::Lagged { missed })
            }
            Err(broadcast::error::TryRecvError::Closed) => Err(RecvError::Closed),
        }
    }

    /// How many events are waiting for this subscriber.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Whether no event is waiting for this subscriber.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// A [`futures_core::Stream`] over this subscriber's events.
    pub fn into_stream(self) -> SubscriberStream<E> {
        SubscriberStream { inner: BroadcastStream::new(self.receiver) }
    }
}

impl<E> fmt::Debug for Subscriber<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("type", &std::any::type_name::<E>())
            .field("pending", &self.receiver.len())
            .finish()
    }
}

/// The [`futures_core::Stream`] form of a [`Subscriber`]; ends when the bus closes.
pub struct SubscriberStream<E> {
    inner: BroadcastStream<E>,
}

impl<E: Event> futures_core::Stream for SubscriberStream<E> {
    type Item = Result<E, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|item| {
            item.map(|result| {
                result.map_err(|BroadcastStreamRecvError::Lagged(missed)| RecvError::Lagged {
                    missed,
                })
            })
        })
    }
}

impl<E> fmt::Debug for SubscriberStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberStream").field("type", &std::any::type_name::<E>()).finish()
    }
}
