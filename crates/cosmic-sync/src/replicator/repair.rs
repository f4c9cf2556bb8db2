//! Loss repair: every place gossip can be lost reports here, and the peer concerned gets
//! a reconciliation of the space within a fraction of a second, whatever the periodic
//! interval.
//!
//! The places: a batch this node could not publish (`feed.rs`), a batch gossipsub could
//! not queue for a slow peer and a batch dropped at our full inbound queue (both reported
//! by `cosmic-net` as a [`GossipLoss`]), and a gap in a publisher's batch numbering
//! (`gossip_in.rs`), which catches losses no sender saw.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cosmic_auth::PublicKey;
use cosmic_net::{GossipLoss, LossReason, PeerId};
use tokio::sync::Notify;

use super::{Replicator, lock};
use crate::space_topic;
use crate::types::LossKind;

/// How long the repair task lets further losses gather before it starts reconciling:
/// a burst that overflowed a queue is usually still passing.
const REPAIR_SETTLE: Duration = Duration::from_millis(100);

/// Losses waiting for their repair.
#[derive(Default)]
pub(super) struct Repairs {
    /// Spaces and peers to reconcile as soon as the settle time has passed, with when
    /// the first loss of the pair was noted and when the repair may start at the earliest.
    pending: Mutex<HashMap<(PublicKey, PeerId), (Instant, Instant)>>,
    /// Joined spaces with a local change that no peer received by gossip (nobody was
    /// subscribed yet, or the publish failed): the next peer to subscribe gets a
    /// reconciliation at once.
    unpublished: Mutex<HashSet<PublicKey>>,
    /// Woken when `pending` gains a member.
    wake: Notify,
}

impl Replicator {
    /// Counts `messages` lost gossip messages of one kind.
    pub(super) fn gossip_lost(&self, kind: LossKind, messages: u64) {
        self.metrics_mut(|metrics| metrics.gossip_lost.add(kind, messages));
    }

    /// Asks for a reconciliation of `space` with `peer` soon (coalesced with other
    /// requests for the same pair).
    pub(super) fn schedule_repair(&self, space: PublicKey, peer: PeerId) {
        self.schedule_repair_after(space, peer, Duration::ZERO);
    }

    /// Like [`Replicator::schedule_repair`], starting no sooner than `delay` from now: for
    /// a peer that has just subscribed, which starts a session of its own at once when it
    /// has just joined (then nothing more is needed, see [`Replicator::repair_task`]).
    pub(super) fn schedule_repair_after(&self, space: PublicKey, peer: PeerId, delay: Duration) {
        if peer == self.peer_id() {
            return;
        }
        let mut pending = lock(&self.inner.repairs.pending);
        if let std::collections::hash_map::Entry::Vacant(slot) = pending.entry((space, peer)) {
            let now = Instant::now();
            slot.insert((now, now + delay));
            drop(pending);
            self.inner.repairs.wake.notify_one();
        }
    }

    /// Notes that a local change of `space` reached no peer by gossip.
    pub(super) fn mark_unpublished(&self, space: PublicKey) {
        lock(&self.inner.repairs.unpublished).insert(space);
    }

    /// Whether a local change of `space` reached no peer by gossip; forgets it.
    pub(super) fn take_unpublished(&self, space: &PublicKey) -> bool {
        lock(&self.inner.repairs.unpublished).remove(space)
    }

    /// A loss that `cosmic-net` saw: with a topic, that space; without one (a slow peer),
    /// every joined space the peer follows.
    pub(super) async fn on_loss(&self, loss: GossipLoss) {
        let kind = match loss.reason {
            LossReason::InboundQueueFull => LossKind::InboundQueueFull,
            LossReason::SendQueueFull => LossKind::SendQueueFull,
            _ => LossKind::Other,
        };
        self.gossip_lost(kind, loss.messages);
        match loss.topic.as_deref().and_then(|topic| self.topic_space(topic)) {
            Some(space) => self.schedule_repair(space, loss.peer_id),
            None if loss.topic.is_none() => {
                let topics = match self.inner.net.peers().await {
                    Ok(peers) => peers
                        .into_iter()
                        .find(|peer| peer.peer_id == loss.peer_id)
                        .map(|peer| peer.topics)
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                for space in self.joined() {
                    if topics.contains(&space_topic(&space)) {
                        self.schedule_repair(space, loss.peer_id);
                    }
                }
            }
            // A topic we no longer follow: nothing to repair.
            None => {}
        }
    }

    /// Reconciles each pending space and peer once the settle time has passed; losses
    /// that arrive meanwhile gather for the next round. A pair whose session is running
    /// is reconciled again after it ends (see [`Replicator::catch_up`]), so a loss inside
    /// a range that session already passed is repaired too. A pair whose peer has begun
    /// a session with us since the loss needs nothing more: that session carries what
    /// was lost both ways (a new node that joins a space starts one at once, and would
    /// otherwise receive everything twice).
    pub(super) async fn repair_task(self) {
        loop {
            self.inner.repairs.wake.notified().await;
            loop {
                tokio::time::sleep(REPAIR_SETTLE).await;
                let now = Instant::now();
                let (due, next) = {
                    let mut pending = lock(&self.inner.repairs.pending);
                    let due: Vec<((PublicKey, PeerId), (Instant, Instant))> =
                        pending.extract_if(|_, (_, not_before)| *not_before <= now).collect();
                    (due, pending.values().map(|(_, not_before)| *not_before).min())
                };
                let due: Vec<(PublicKey, PeerId)> = due
                    .into_iter()
                    .filter(|((space, peer), (since, _))| {
                        !self.peer_reconciled_since(*space, *peer, *since)
                    })
                    .map(|(pair, _)| pair)
                    .collect();
                if !due.is_empty() {
                    self.metrics_mut(|metrics| metrics.loss_repairs += due.len() as u64);
                    let repairs = due.into_iter().map(|(space, peer)| self.catch_up(space, peer));
                    futures::future::join_all(repairs).await;
                }
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => break,
                }
            }
        }
    }
}
