//! Change tracking: sequence-numbered changes and live subscriptions.

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;

use crate::{Entry, Result, Store};

/// How many changes a subscription reads from the store at a time.
const SUBSCRIPTION_BATCH: usize = 256;

/// Where a change came from, recorded with it in the change log.
///
/// Changes written by databases of schema version 1, which did not record an origin, read
/// as [`Origin::Local`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Written on this node: [`Store::write`], [`Store::write_json`], [`Store::insert`].
    Local,
    /// Received from a peer, named by its peer id text (at most [`MAX_ORIGIN_LEN`] bytes).
    Peer(String),
}

/// The longest peer id text an [`Origin::Peer`] may hold, in bytes.
pub const MAX_ORIGIN_LEN: usize = 128;

impl Origin {
    /// Checks the peer id text's length.
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Origin::Peer(peer) if peer.len() > MAX_ORIGIN_LEN || peer.is_empty() => {
                Err(crate::Error::InvalidValue {
                    reason: format!(
                        "an origin peer id must be 1 to {MAX_ORIGIN_LEN} bytes, not {}",
                        peer.len()
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// Appends the change-log encoding: `0xFF` (never in an item key, which is UTF-8),
    /// then `0` for local or `1 ++ peer id text` for a peer.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(ORIGIN_MARK);
        match self {
            Origin::Local => out.push(0),
            Origin::Peer(peer) => {
                out.push(1);
                out.extend_from_slice(peer.as_bytes());
            }
        }
    }

    /// Splits a change-log value into the item key and the origin; a value without an
    /// origin (schema version 1) is local. `None`: malformed.
    pub(crate) fn split(value: &[u8]) -> Option<(&[u8], Origin)> {
        let Some(mark) = value.iter().position(|byte| *byte == ORIGIN_MARK) else {
            return Some((value, Origin::Local));
        };
        let (item, rest) = value.split_at(mark);
        let origin = match rest.get(1..)? {
            [0] => Origin::Local,
            [1, peer @ ..] if !peer.is_empty() => {
                Origin::Peer(std::str::from_utf8(peer).ok()?.to_owned())
            }
            _ => return None,
        };
        Some((item, origin))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Local => f.write_str("local"),
            Origin::Peer(peer) => f.write_str(peer),
        }
    }
}

const ORIGIN_MARK: u8 = 0xFF;

/// A change to a space: an entry that became the winner of its field, with the local
/// sequence number it got and where it came from.
///
/// Sequence numbers are local to this store, increase with every change of any space, and
/// survive restarts. When a later entry supersedes a field, the older change is dropped from
/// the log (only the current winner of each field is kept), so replaying the log from any
/// sequence number yields the current state of what changed since.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The local sequence number.
    pub seq: u64,
    /// The winning entry.
    pub entry: Entry,
    /// Where the entry came from.
    pub origin: Origin,
}

/// A live stream of the changes of one space, from a given sequence number on: first the
/// stored changes, then live ones as they commit, with no gap and no duplicate.
///
/// Created by [`Store::subscribe`]; ends when the stream yields an error. Stored changes
/// are read from the store on tokio's blocking pool, a batch at a time; live ones are
/// handed over by the committing thread itself, without another read. A reader too slow
/// for the live changes (its channel full) loses nothing: it goes back to reading the
/// store from the last change it took, and never holds up a writer.
pub struct Subscription {
    store: Store,
    space: cosmic_auth::PublicKey,
    runtime: tokio::runtime::Handle,
    /// The last sequence number handed out.
    after: u64,
    /// Stored changes read and not yet handed out.
    buffer: VecDeque<Change>,
    /// A read of stored changes in progress.
    reading: Option<JoinHandle<Result<Vec<Change>>>>,
    /// Changes committed since this subscription registered, one message per commit (see
    /// [`Live`]).
    live: mpsc::Receiver<Vec<Change>>,
    lagged: Arc<AtomicBool>,
    /// Every stored change up to registration has been handed out: live changes follow.
    caught_up: bool,
    ended: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("space", &self.space)
            .field("after", &self.after)
            .field("caught_up", &self.caught_up)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription to `space`'s changes after `after`; needs a tokio runtime.
    pub(crate) fn new(store: Store, space: cosmic_auth::PublicKey, after: u64) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|error| {
            crate::Error::Task { reason: format!("a subscription needs a tokio runtime: {error}") }
        })?;
        // Registered before the first read: a change that commits after it is either in
        // the read or in the live channel (or both: duplicates are skipped by number).
        let (live, lagged) = store.live_subscribers().register(space);
        Ok(Subscription {
            store,
            space,
            runtime,
            after,
            buffer: VecDeque::new(),
            reading: None,
            live,
            lagged,
            caught_up: false,
            ended: false,
        })
    }

    /// After the live channel overflowed: register again and read the store from the
    /// last change handed out.
    fn restart(&mut self) {
        let (live, lagged) = self.store.live_subscribers().register(self.space);
        self.live = live;
        self.lagged = lagged;
        self.caught_up = false;
    }

    fn end_with(&mut self, error: crate::Error) -> Poll<Option<Result<Change>>> {
        self.ended = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for Subscription {
    type Item = Result<Change>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(change) = this.buffer.pop_front() {
                this.after = change.seq;
                return Poll::Ready(Some(Ok(change)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if this.caught_up {
                match this.live.poll_recv(cx) {
                    Poll::Ready(Some(changes)) => {
                        let after = this.after;
                        this.buffer.extend(changes.into_iter().filter(|change| change.seq > after));
                    }
                    // The committing side let go: the channel overflowed, or the store is
                    // gone (then nothing more can come).
                    Poll::Ready(None) if this.lagged.load(Ordering::Acquire) => this.restart(),
                    Poll::Ready(None) => {
                        this.ended = true;
                        return Poll::Ready(None);
                    }
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            let reading = this.reading.get_or_insert_with(|| {
                let (store, space, after) = (this.store.clone(), this.space, this.after);
                this.runtime
                    .spawn_blocking(move || store.changes_since(&space, after, SUBSCRIPTION_BATCH))
            });
            let read = std::task::ready!(Pin::new(reading).poll(cx));
            this.reading = None;
            match read {
                Ok(Ok(batch)) if batch.is_empty() => this.caught_up = true,
                Ok(Ok(batch)) => this.buffer = batch.into(),
                Ok(Err(error)) => return this.end_with(error),
                Err(join_error) => {
                    let reason = format!("subscription read failed: {join_error}");
                    return this.end_with(crate::Error::Task { reason });
                }
            }
        }
    }
}

/// Commits a subscription may fall behind the committing side before it goes back to
/// reading the store.
const LIVE_CAPACITY: usize = 256;

/// One registered subscription, as the committing side sees it.
struct Live {
    space: cosmic_auth::PublicKey,
    sender: mpsc::Sender<Vec<Change>>,
    /// Set when the channel was full: the subscription reads the store again.
    lagged: Arc<AtomicBool>,
}

/// The subscriptions to hand committed changes to. Changes are handed over under the
/// store's writer lock, so each subscription receives them in commit order.
#[derive(Default)]
pub(crate) struct LiveSubscribers {
    list: Mutex<Vec<Live>>,
    count: AtomicUsize,
}

impl std::fmt::Debug for LiveSubscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSubscribers").field("count", &self.count).finish_non_exhaustive()
    }
}

impl LiveSubscribers {
    /// Whether any subscription is registered (committing transactions then collect their
    /// changes for [`LiveSubscribers::deliver`]).
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    fn register(
        &self,
        space: cosmic_auth::PublicKey,
    ) -> (mpsc::Receiver<Vec<Change>>, Arc<AtomicBool>) {
        let (sender, receiver) = mpsc::channel(LIVE_CAPACITY);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|live| !live.sender.is_closed());
        list.push(Live { space, sender, lagged: lagged.clone() });
        self.count.store(list.len(), Ordering::Release);
        (receiver, lagged)
    }

    /// Hands the changes one transaction committed to the subscriptions of their spaces,
    /// together (a reader takes a commit's changes at once); drops the subscriptions that
    /// ended, and lets go of those whose channel is full.
    pub(crate) fn deliver(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|live| {
            let mine: Vec<Change> =
                changes.iter().filter(|change| change.entry.space == live.space).cloned().collect();
            if mine.is_empty() {
                return true;
            }
            match live.sender.try_send(mine) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    live.lagged.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.count.store(list.len(), Ordering::Release);
    }
}
