//! The local feed: follows the store's changes of a joined space, publishes the local
//! ones as numbered gossip batches, and reports every change.

use std::time::{SystemTime, UNIX_EPOCH};

use cosmic_auth::PublicKey;
use cosmic_net::{Error as NetError, PublishFailure};
use cosmic_store::{Change, Origin, Subscription, Value};
use futures::FutureExt as _;
use tokio_stream::StreamExt as _;
use tracing::{debug, warn};

use super::Replicator;
use crate::space_topic;
use crate::types::{LossKind, SyncEvent};
use crate::wire::{self, Sequence};

/// Changes taken from the store's feed at a time: the ones ready now, at most this many.
const FEED_BATCH: usize = 1024;

/// Entries in one gossip batch, at most (besides the byte limit).
const MAX_BATCH_ENTRIES: usize = 1024;

/// A publisher's numbering of its batches on one topic.
struct Numbering {
    stream: u64,
    next: u64,
}

impl Numbering {
    /// A new stream, distinct from this node's earlier ones on the topic: the wall clock
    /// in nanoseconds when the feed starts.
    fn new() -> Numbering {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let stream = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX).max(1);
        Numbering { stream, next: 1 }
    }
}

impl Replicator {
    /// Publishes local changes and reports every change of a joined space. Takes the
    /// changes that are ready together, so that writes that committed together leave
    /// in one gossip message.
    pub(super) async fn feed_task(self, space: PublicKey, mut changes: Subscription) {
        let topic = space_topic(&space);
        let mut numbering = Numbering::new();
        loop {
            let Some(first) = changes.next().await else { return };
            let mut ready = vec![first];
            while ready.len() < FEED_BATCH {
                match changes.next().now_or_never() {
                    Some(Some(change)) => ready.push(change),
                    _ => break,
                }
            }
            let mut local = Vec::new();
            let mut applied = Vec::with_capacity(ready.len());
            let mut failed = None;
            for change in ready {
                match change {
                    Ok(change) => {
                        if change.origin == Origin::Local {
                            local.push(change.entry.encode());
                        }
                        applied.push(change);
                    }
                    Err(error) => {
                        failed = Some(error);
                        break;
                    }
                }
            }
            match self.is_restricted(&space) {
                // Gossip reaches every subscriber of the topic: a restricted space's
                // changes go to its reader peers by reconciliation instead, local ones
                // and forwarded ones (not back to the peer they came from).
                Ok(true) => {
                    let from = match applied.as_slice() {
                        [Change { origin: Origin::Peer(peer), .. }, ..]
                            if applied.iter().all(|change| change.origin == applied[0].origin) =>
                        {
                            peer.parse().ok()
                        }
                        _ => None,
                    };
                    if !applied.is_empty() {
                        self.push(space, from).await;
                    }
                }
                Ok(false) => self.publish_entries(space, &topic, &mut numbering, local).await,
                Err(error) => {
                    warn!(%space, %error, "reading the space's record failed");
                    self.mark_unpublished(space);
                }
            }
            for Change { seq, entry, origin } in applied {
                if let Value::BlobLink(cid) = &entry.value {
                    self.on_blob_link(space, cid.clone(), &origin);
                }
                let event =
                    SyncEvent::Applied { space, doc: entry.doc, field: entry.field, seq, origin };
                self.inner.bus.publish(event);
            }
            if let Some(error) = failed {
                warn!(%space, %error, "following the store's changes failed");
                return;
            }
        }
    }

    /// Publishes encoded entries as batches of at most `max_gossip_size` bytes. A batch
    /// that cannot be published is counted by reason and repaired by reconciliation with
    /// the space's peers; a batch too large to gossip (one huge entry) is left to
    /// reconciliation too.
    async fn publish_entries(
        &self,
        space: PublicKey,
        topic: &str,
        numbering: &mut Numbering,
        entries: Vec<Vec<u8>>,
    ) {
        let limit = self.inner.options.max_gossip_size;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut size = wire::GOSSIP_BATCH_HEADER;
        let mut entries = entries.into_iter().peekable();
        while let Some(entry) = entries.next() {
            size += entry.len() + wire::GOSSIP_BATCH_PER_ENTRY;
            batch.push(entry);
            let next_fits = entries.peek().is_some_and(|next| {
                size + next.len() + wire::GOSSIP_BATCH_PER_ENTRY <= limit
                    && batch.len() < MAX_BATCH_ENTRIES
            });
            if !next_fits {
                self.publish_batch(space, topic, numbering, &batch).await;
                batch.clear();
                size = wire::GOSSIP_BATCH_HEADER;
            }
        }
    }

    async fn publish_batch(
        &self,
        space: PublicKey,
        topic: &str,
        numbering: &mut Numbering,
        batch: &[Vec<u8>],
    ) {
        let sequence = Sequence { stream: numbering.stream, seq: numbering.next };
        let bytes = wire::encode_gossip_batch(sequence, batch);
        let count = batch.len() as u64;
        match self.inner.net.publish(topic, bytes).await {
            Ok(_) => {
                // Only a published batch takes a number: receivers see a gap exactly
                // where a batch that left this node did not reach them.
                numbering.next += 1;
                self.metrics_mut(|metrics| {
                    metrics.gossip_published += 1;
                    metrics.gossip_entries_published += count;
                });
            }
            // Nobody to tell yet: the next peer to subscribe gets a reconciliation.
            Err(NetError::Publish { reason: PublishFailure::NoPeersSubscribed, .. }) => {
                self.mark_unpublished(space);
            }
            Err(error) => {
                debug!(%space, %error, entries = count, "publishing a batch failed; repairing");
                self.gossip_lost(LossKind::PublishFailed, count);
                self.mark_unpublished(space);
                for peer in self.space_peers(&space).await {
                    self.schedule_repair(space, peer);
                }
            }
        }
    }
}
