//! Gossip entries held back for want of a capability statement: judged again after a
//! reconciliation with the peer that sent them, which brings the statement if the peer
//! is honest.

use std::collections::{BTreeMap, HashMap};

use cosmic_auth::PublicKey;
use cosmic_net::PeerId;
use cosmic_store::{Entry, Origin};
use tracing::{debug, warn};

use super::gossip_in::verdict_of;
use super::{Replicator, lock};
use crate::types::SyncEvent;

/// Gossip entries held back for want of a capability statement, per peer and space.
const MAX_DEFERRED_PER_PEER: usize = 128;
/// Gossip entries held back for want of a capability statement, in all.
const MAX_DEFERRED: usize = 1024;

/// A gossip entry held back for want of a capability statement, with its origin (the
/// peer that published it).
type Deferred = (Entry, String);

/// The held entries by space and the peer that sent them.
pub(super) type DeferredMap = HashMap<(PublicKey, PeerId), Vec<Deferred>>;

impl Replicator {
    /// Holds back an entry that lacks its capability statement; returns true when it is
    /// the first held for this space and peer (a judging task must then start). Entries
    /// over the bounds are dropped: reconciliation brings them if they are valid.
    pub(super) fn defer(
        &self,
        space: PublicKey,
        peer: PeerId,
        entry: Entry,
        origin: String,
    ) -> bool {
        let mut state = lock(&self.inner.gossip_in);
        let deferred = &mut state.deferred;
        let total: usize = deferred.values().map(Vec::len).sum();
        let held = deferred.entry((space, peer)).or_default();
        let first = held.is_empty();
        if total < MAX_DEFERRED && held.len() < MAX_DEFERRED_PER_PEER {
            held.push((entry, origin));
            drop(state);
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
        lock(&self.inner.gossip_in).deferred.values().map(Vec::len).sum()
    }

    /// Reconciles with the peer that sent entries lacking their capability statement,
    /// then inserts them again: those still refused were not valid, and count against
    /// the peer (one strike per round, whose rejections are reported one by one). The
    /// entries stay counted in [`Replicator::deferred_entries`] until judged; those
    /// that arrived meanwhile get another round.
    pub(super) async fn judge_deferred(&self, space: PublicKey, peer: PeerId) {
        let key = (space, peer);
        loop {
            self.catch_up(space, peer).await;
            let held = lock(&self.inner.gossip_in).deferred.get(&key).cloned().unwrap_or_default();
            let judged = held.len();
            self.rejudge(space, peer, held).await;
            let mut state = lock(&self.inner.gossip_in);
            let more = state.deferred.get_mut(&key).is_some_and(|list| {
                list.drain(..judged.min(list.len()));
                !list.is_empty()
            });
            if !more {
                state.deferred.remove(&key);
                return;
            }
        }
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
}
