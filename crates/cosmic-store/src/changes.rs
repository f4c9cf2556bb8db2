//! Change tracking: sequence-numbered changes and live subscriptions.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;

use crate::{Entry, Result, Store};

/// How many changes a subscription reads from the store at a time, and buffers.
const SUBSCRIPTION_BATCH: usize = 256;

/// A change to a space: an entry that became the winner of its field, with the local
/// sequence number it got.
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
