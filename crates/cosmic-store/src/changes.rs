//! Change tracking: sequence-numbered changes and live subscriptions.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;

use crate::{Entry, Result, Store};

/// How many changes a subscription reads from the store at a time, and buffers.
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
/// Created by [`Store::subscribe`]; ends when the stream yields an error. Dropping it stops
/// the background task that feeds it.
#[derive(Debug)]
pub struct Subscription {
    receiver: mpsc::Receiver<Result<Change>>,
}

impl Stream for Subscription {
    type Item = Result<Change>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

/// Starts the task behind a subscription on the current tokio runtime.
pub(crate) fn spawn(
    store: Store,
    space: cosmic_auth::PublicKey,
    from_seq: u64,
    mut last_seq: watch::Receiver<u64>,
) -> Result<Subscription> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|error| crate::Error::Task {
        reason: format!("a subscription needs a tokio runtime: {error}"),
    })?;
    let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BATCH);
    // The task is owned by the subscription: it ends when the receiver is dropped.
    #[allow(clippy::disallowed_methods, reason = "ends with its Subscription, see above")]
    runtime.spawn(async move {
        let mut after = from_seq;
        loop {
            // Mark the current value seen *before* reading, so a commit that lands after the
            // read wakes `changed()` below: nothing falls between stored and live changes.
            last_seq.borrow_and_update();
            let reader = store.clone();
            let batch = tokio::task::spawn_blocking(move || {
                reader.changes_since(&space, after, SUBSCRIPTION_BATCH)
            })
            .await;
            let batch = match batch {
                Ok(Ok(batch)) => batch,
                Ok(Err(error)) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
                Err(join_error) => {
                    let reason = format!("subscription read failed: {join_error}");
                    let _ = sender.send(Err(crate::Error::Task { reason })).await;
                    return;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    changed = last_seq.changed() => if changed.is_err() { return },
                    () = sender.closed() => return,
                }
                continue;
            }
            for change in batch {
                after = change.seq;
                if sender.send(Ok(change)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Subscription { receiver })
}
