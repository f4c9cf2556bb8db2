//! Gossip in: judges the batches peers publish, merges the valid entries in one store
//! transaction per origin, gives gossipsub one verdict per batch, and notices gaps in
//! each publisher's batch numbering.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use cosmic_auth::PublicKey;
use cosmic_net::{GossipInbox, GossipMessage, PeerId, Verdict};
use cosmic_store::{Entry, Inserted, Origin};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::deferred::DeferredMap;
use super::{Replicator, lock};
use crate::types::{LossKind, SyncEvent};
use crate::wire::{self, Sequence};

/// Gossip messages judged together at most (their entries go to the store together).
const MAX_MESSAGES_AT_ONCE: usize = 256;

/// Runs of messages being checked and committed at once: two, so that one run's
/// signature checks overlap with the other's durable commit.
const RUNS_AT_ONCE: usize = 2;

/// Publishers (per space) whose numbering is remembered, at most; beyond it the oldest
/// half is forgotten, which costs at worst one missed gap each.
const MAX_PUBLISHERS: usize = 4096;

/// What the gossip receiver keeps between messages.
#[derive(Default)]
pub(super) struct GossipInState {
    /// The next batch number expected from each publisher on each space.
    pub(super) expected: HashMap<(PeerId, PublicKey), Sequence>,
    /// Gossip entries whose author holds no capability we know of (`deferred.rs`).
    pub(super) deferred: DeferredMap,
}

/// One message's entries on their way to the store, and what became of them.
struct Judged {
    message: GossipMessage,
    space: PublicKey,
    /// How many of its entries were accepted (new or already held), and how many held
    /// back for want of a capability statement.
    accepted: usize,
    deferred: usize,
    /// Why the batch is rejected, if it is.
    rejected: Option<String>,
}

/// A run of messages after decoding: the verdicts already given, the messages whose
/// entries go to the store, and those entries by origin (with their message's index).
#[derive(Default)]
struct Decoded {
    verdicts: Vec<(GossipMessage, Verdict, Option<String>)>,
    judged: Vec<Judged>,
    by_origin: BTreeMap<String, Vec<(usize, Entry)>>,
}

/// What a run of messages leaves to do: reconciliations, and entries to hold back.
#[derive(Default)]
struct FollowUp {
    catch_ups: HashSet<(PublicKey, PeerId)>,
    deferrals: Vec<(PublicKey, PeerId, Entry, String)>,
}

impl Replicator {
    /// Judges gossip messages and repairs the losses `cosmic-net` reports, both from the
    /// gossip handler's queues. `None`: a restart after a panic, which takes fresh queues.
    pub(super) async fn gossip_task(self, inbox: Option<GossipInbox>) {
        let mut inbox = match inbox {
            Some(inbox) => inbox,
            None => match self.inner.net.gossip_inbox(self.inner.options.gossip_queue_len).await {
                Ok(inbox) => inbox,
                Err(error) => {
                    debug!(%error, "no gossip handler: the network has stopped");
                    return;
                }
            },
        };
        let judging = Arc::new(Semaphore::new(RUNS_AT_ONCE));
        loop {
            tokio::select! {
                message = inbox.messages.recv() => {
                    let Some(first) = message else { return };
                    let mut batch = vec![first];
                    while batch.len() < MAX_MESSAGES_AT_ONCE {
                        match inbox.messages.try_recv() {
                            Ok(message) => batch.push(message),
                            Err(_) => break,
                        }
                    }
                    // Numbering is checked here, in arrival order; the checks and the
                    // commit of a run then overlap with the next run's (group commit
                    // lets their durable syncs share one).
                    let decoded = self.decode_batches(batch);
                    let Ok(permit) = judging.clone().acquire_owned().await else { return };
                    let this = self.clone();
                    self.spawn_tracked(async move {
                        this.judge_decoded(decoded).await;
                        drop(permit);
                    });
                }
                loss = inbox.losses.recv() => {
                    let Some(loss) = loss else { return };
                    self.on_loss(loss).await;
                }
            }
        }
    }

    /// Notes a batch's number; on a gap, counts it and schedules a repair with the peer
    /// that forwarded the batch (it accepted the publisher's later batch, so it is the
    /// nearest peer likely to hold the missing ones).
    fn check_sequence(&self, message: &GossipMessage, space: PublicKey, sequence: Sequence) {
        let Some(source) = message.source else { return };
        let missed = {
            let mut state = lock(&self.inner.gossip_in);
            if state.expected.len() >= MAX_PUBLISHERS
                && !state.expected.contains_key(&(source, space))
            {
                let forget: Vec<_> =
                    state.expected.keys().take(MAX_PUBLISHERS / 2).copied().collect();
                for key in forget {
                    state.expected.remove(&key);
                }
            }
            let next = Sequence { stream: sequence.stream, seq: sequence.seq + 1 };
            match state.expected.insert((source, space), next) {
                // The first batch heard of this stream: what came before it, the
                // reconciliation on subscription covers.
                Some(expected) if expected.stream == sequence.stream => {
                    if sequence.seq < expected.seq {
                        // Late (another path was faster): keep the higher expectation.
                        state.expected.insert((source, space), expected);
                        0
                    } else {
                        sequence.seq - expected.seq
                    }
                }
                _ => 0,
            }
        };
        if missed > 0 {
            debug!(%space, %source, missed, "a gap in a publisher's gossip batches; repairing");
            self.gossip_lost(LossKind::SequenceGap, missed);
            self.schedule_repair(space, message.propagation_source);
        }
    }

    /// Checks and merges a decoded run of gossip messages, then gives each its verdict:
    /// reject when any entry is invalid (the valid ones are kept, the sender penalised),
    /// accept when it brought something new and held nothing back, ignore otherwise.
    async fn judge_decoded(&self, decoded: Decoded) {
        let Decoded { mut verdicts, mut judged, by_origin } = decoded;
        let mut follow_up = FollowUp::default();
        // One store transaction per origin.
        for (origin, group) in by_origin {
            self.store_group(origin, group, &mut judged, &mut follow_up).await;
        }
        for item in judged {
            let (verdict, reason) = match item.rejected {
                Some(reason) => (Verdict::Reject, Some(reason)),
                None if item.accepted > 0 && item.deferred == 0 => (Verdict::Accept, None),
                None => (Verdict::Ignore, None),
            };
            verdicts.push((item.message, verdict, reason));
        }
        for (space, peer) in follow_up.catch_ups {
            let this = self.clone();
            self.spawn_tracked(async move { this.catch_up(space, peer).await });
        }
        for (space, peer, entry, origin) in follow_up.deferrals {
            if self.defer(space, peer, entry, origin) {
                let this = self.clone();
                self.spawn_tracked(async move { this.judge_deferred(space, peer).await });
            }
        }
        self.report_verdicts(verdicts).await;
    }

    /// Decodes each message whole and checks its numbering; messages that cannot be
    /// judged further get their verdict here, the others' entries are grouped by origin.
    fn decode_batches(&self, messages: Vec<GossipMessage>) -> Decoded {
        let mut decoded = Decoded::default();
        let limit = self.inner.options.max_gossip_size;
        for message in messages {
            let Some(space) = self.topic_space(&message.topic) else {
                decoded.verdicts.push((message, Verdict::Ignore, None));
                continue;
            };
            let gossip = match wire::decode_gossip(&message.data, limit) {
                Ok(gossip) => gossip,
                Err(error) => {
                    decoded.verdicts.push((message, Verdict::Reject, Some(error.to_string())));
                    continue;
                }
            };
            if let Some(sequence) = gossip.sequence {
                self.check_sequence(&message, space, sequence);
            }
            if let Some(stray) = gossip.entries.iter().find(|entry| entry.space != space) {
                let reason = format!("an entry of space {} on the topic of {space}", stray.space);
                decoded.verdicts.push((message, Verdict::Reject, Some(reason)));
                continue;
            }
            let count = gossip.entries.len() as u64;
            self.metrics_mut(|metrics| metrics.gossip_entries_received += count);
            let origin = message.source.unwrap_or(message.propagation_source).to_string();
            let index = decoded.judged.len();
            let group = decoded.by_origin.entry(origin).or_default();
            group.extend(gossip.entries.into_iter().map(|entry| (index, entry)));
            decoded.judged.push(Judged {
                message,
                space,
                accepted: 0,
                deferred: 0,
                rejected: None,
            });
        }
        decoded
    }

    /// Merges the entries of one origin in one store transaction and notes, per message,
    /// what became of them.
    async fn store_group(
        &self,
        origin: String,
        group: Vec<(usize, Entry)>,
        judged: &mut [Judged],
        follow_up: &mut FollowUp,
    ) {
        let (indexes, entries): (Vec<usize>, Vec<Entry>) = group.into_iter().unzip();
        let kept = entries.clone();
        let store_origin = Origin::Peer(origin.clone());
        let results =
            self.blocking(move |store| Ok(store.insert_batch_from(entries, store_origin)?)).await;
        let results = match results {
            Ok(results) => results,
            Err(error) => {
                // Our fault, not the sender's: the entries come back with a repair.
                warn!(%error, "storing gossip entries failed");
                for index in indexes {
                    let item = &judged[index];
                    follow_up.catch_ups.insert((item.space, item.message.propagation_source));
                }
                return;
            }
        };
        let mut accepted = 0;
        for ((index, entry), result) in indexes.into_iter().zip(kept).zip(results) {
            let item = &mut judged[index];
            if matches!(result, Err(cosmic_store::Error::UnknownSpace { .. })) {
                // The space record has not reached us yet (we just joined): reconcile
                // with the sender, which brings record and entry.
                follow_up.catch_ups.insert((item.space, item.message.propagation_source));
                continue;
            }
            if lacks_statement(&result) {
                // Valid but early (its grant has not reached us), or invalid: the sender
                // must hold the grant, since it accepted the entry. Neither forward nor
                // blame it yet; judge again once a reconciliation with it had the chance
                // to bring the grant.
                item.deferred += 1;
                let peer = item.message.propagation_source;
                follow_up.deferrals.push((item.space, peer, entry, origin.clone()));
                continue;
            }
            match verdict_of(result) {
                (Verdict::Accept, _) => {
                    item.accepted += 1;
                    accepted += 1;
                }
                (Verdict::Reject, Some(reason)) if item.rejected.is_none() => {
                    item.rejected = Some(reason);
                }
                _ => {}
            }
        }
        self.metrics_mut(|metrics| metrics.gossip_entries_accepted += accepted);
    }

    /// Counts the verdicts, reports rejections as events, and tells gossipsub.
    async fn report_verdicts(&self, verdicts: Vec<(GossipMessage, Verdict, Option<String>)>) {
        for (message, verdict, reason) in verdicts {
            self.metrics_mut(|metrics| match verdict {
                Verdict::Accept => metrics.gossip_accepted += 1,
                Verdict::Reject => metrics.gossip_rejected += 1,
                Verdict::Ignore => metrics.gossip_ignored += 1,
            });
            if verdict == Verdict::Reject
                && let Some(space) = self.topic_space(&message.topic)
            {
                let peer = message.propagation_source;
                let reason = reason.unwrap_or_default();
                debug!(%space, %peer, %reason, "a gossip batch rejected");
                self.inner.bus.publish(SyncEvent::EntryRejected { space, peer, reason });
            }
            let _ = self
                .inner
                .net
                .report_validation(message.message_id, message.propagation_source, verdict)
                .await;
        }
    }
}

/// Whether the store refused an entry for want of a capability statement that may simply
/// not have reached us yet (no statement about the author, or a grant by an issuer we
/// know nothing of).
pub(super) fn lacks_statement(result: &cosmic_store::Result<Inserted>) -> bool {
    match result {
        Err(cosmic_store::Error::AccessDenied { reason, .. }) => matches!(
            **reason,
            cosmic_auth::AccessDenied::NoCapability { .. }
                | cosmic_auth::AccessDenied::UnknownSigner { .. }
        ),
        _ => false,
    }
}

/// The gossipsub verdict on an entry the store was asked to insert.
pub(super) fn verdict_of(result: cosmic_store::Result<Inserted>) -> (Verdict, Option<String>) {
    use cosmic_store::Error as E;
    match result {
        // A stale entry (a replay, or the loser of a concurrent write) changes nothing
        // here and would change nothing anywhere: not forwarded, but not blamed either.
        Ok(Inserted::Superseded) => (Verdict::Ignore, None),
        Ok(_) => (Verdict::Accept, None),
        // Not malicious: we lack the space record yet, or the clocks disagree; the entry
        // comes back with reconciliation.
        // A write over this node's quota for its author: local policy, not the sender's
        // fault.
        Err(E::UnknownSpace { .. } | E::ClockDrift { .. } | E::QuotaExceeded { .. }) => {
            (Verdict::Ignore, None)
        }
        Err(
            error @ (E::Io { .. } | E::Corrupted { .. } | E::Task { .. } | E::AlreadyOpen { .. }),
        ) => {
            warn!(%error, "storing a gossip entry failed");
            (Verdict::Ignore, None)
        }
        Err(error) => (Verdict::Reject, Some(error.to_string())),
    }
}
