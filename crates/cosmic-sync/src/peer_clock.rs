//! Whether this node's wall clock is behind its peers', from the clocks they report.
//!
//! Each reconciliation session's first message and its answer carry the sender's wall
//! clock ([`crate::wire::Part::Clock`]). From it a node estimates each peer's present:
//! the initiator adds half the round trip (as NTP does), the answering side takes the
//! reading as it arrives, which errs by the network latency towards "not behind". The
//! estimate then moves on with this machine's monotonic clock, whatever its wall clock does.
//!
//! A node an hour behind would otherwise refuse every peer's fresh entries as stamped "in
//! the future" beyond the allowed drift, and never converge until someone set its clock.
//! So the voters (the peers heard from within [`FRESH`], and this node with its own wall
//! clock) elect the latest time that a strict majority of them have reached, and when that
//! is at least [`DEAD_BAND`] past this node's wall clock it becomes the store's time floor
//! ([`cosmic_store::Store::set_time_floor`]): the store stamps and judges entries by it.
//!
//! The rule is built to be safe in the case it must not help, a peer whose clock (or whose
//! lie) is ahead: this node's own vote counts, so a single peer can never move it, and no
//! minority of peers can; a floor only ever moves the present forward; differences under
//! [`DEAD_BAND`] are left to NTP; and a floor stops mattering once the wall clock passes it
//! (when it is set right). With only one peer a node cannot tell "I am behind" from "it is
//! ahead" and keeps its own clock. An attacker who controls most of a node's peers can move
//! that node's present forward; that node's writes are then held by honest nodes until
//! their time comes, and such an attacker can already withhold data from it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cosmic_net::PeerId;
use cosmic_store::TimeFloor;

/// How long a peer's reported clock counts.
pub(crate) const FRESH: Duration = Duration::from_secs(15 * 60);
/// A majority's time less than this ahead of our wall clock is not applied.
pub(crate) const DEAD_BAND: Duration = Duration::from_secs(1);
/// The most peers whose readings are kept (the oldest reading is dropped beyond it).
const MAX_PEERS: usize = 1024;

/// Estimates of peers' present times, and the time floor they vote for.
#[derive(Debug, Default)]
pub(crate) struct PeerClocks {
    /// The peer's estimated wall clock (ms since the Unix epoch) at a monotonic instant.
    readings: HashMap<PeerId, TimeFloor>,
}

impl PeerClocks {
    /// Records that `peer`'s wall clock read `millis` at `at`; returns how far (in ms) that
    /// is ahead of `our_millis`, our wall clock at the same moment (negative: behind).
    pub(crate) fn observe(
        &mut self,
        peer: PeerId,
        millis: u64,
        at: Instant,
        our_millis: u64,
    ) -> i64 {
        if self.readings.len() >= MAX_PEERS && !self.readings.contains_key(&peer) {
            let oldest = self.readings.iter().min_by_key(|(_, reading)| reading.at);
            if let Some(oldest) = oldest.map(|(peer, _)| *peer) {
                self.readings.remove(&oldest);
            }
        }
        self.readings.insert(peer, TimeFloor { millis, at });
        let ahead = i128::from(millis) - i128::from(our_millis);
        i64::try_from(ahead).unwrap_or(if ahead < 0 { i64::MIN } else { i64::MAX })
    }

    /// The floor the fresh readings vote for at `now`, when our wall clock reads
    /// `our_millis`: the latest time a strict majority of the voters (the peers read
    /// within [`FRESH`], and us) have reached, if that is at least [`DEAD_BAND`] ahead of
    /// our wall clock.
    pub(crate) fn floor(&mut self, now: Instant, our_millis: u64) -> Option<TimeFloor> {
        self.readings.retain(|_, reading| now.saturating_duration_since(reading.at) < FRESH);
        let mut votes: Vec<u64> = self.readings.values().map(|reading| at(reading, now)).collect();
        votes.push(our_millis);
        votes.sort_unstable();
        // With n votes sorted, at least n - (n-1)/2 of them (more than half) are at or
        // beyond the (n-1)/2-th from the bottom.
        let elected = votes[(votes.len() - 1) / 2];
        let band = u64::try_from(DEAD_BAND.as_millis()).unwrap_or(u64::MAX);
        (elected >= our_millis.saturating_add(band))
            .then_some(TimeFloor { millis: elected, at: now })
    }

    /// The peers with a fresh reading.
    pub(crate) fn len(&self) -> usize {
        self.readings.len()
    }
}

/// A reading moved on to `now` (readings are never later than `now`).
fn at(reading: &TimeFloor, now: Instant) -> u64 {
    let elapsed = now.saturating_duration_since(reading.at);
    reading.millis.saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// A peer's wall clock as it was when we `received` its reading `theirs`, given that we
/// sent the request it answers at `sent`: `theirs` plus half the round trip (all in
/// milliseconds).
pub(crate) fn at_receipt(theirs: u64, sent: Instant, received: Instant) -> u64 {
    let half = received.saturating_duration_since(sent) / 2;
    theirs.saturating_add(u64::try_from(half.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000_000;
    const HOUR: u64 = 3_600_000;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    /// The correction voted for when the peers' clocks are at `peers` and ours at `NOW`.
    fn correction_of(peers_at: &[u64]) -> u64 {
        let mut clocks = PeerClocks::default();
        let now = Instant::now();
        for (peer, millis) in peers(peers_at.len()).into_iter().zip(peers_at) {
            clocks.observe(peer, *millis, now, NOW);
        }
        clocks.floor(now, NOW).map_or(0, |floor| floor.millis - NOW)
    }

    #[test]
    fn a_majority_ahead_moves_the_clock_a_minority_does_not() {
        assert_eq!(correction_of(&[]), 0);
        assert_eq!(correction_of(&[NOW + HOUR]), 0, "one peer cannot move it");
        assert_eq!(correction_of(&[NOW + HOUR, NOW + HOUR]), HOUR);
        assert_eq!(correction_of(&[NOW + HOUR, NOW + HOUR + 5_000]), HOUR, "the lesser");
        assert_eq!(correction_of(&[NOW + HOUR, NOW, NOW]), 0);
        assert_eq!(correction_of(&[NOW + HOUR, NOW + HOUR, NOW]), 0, "half is no majority");
        assert_eq!(correction_of(&[NOW + HOUR, NOW + HOUR, NOW - HOUR, NOW]), 0);
        assert_eq!(correction_of(&[NOW + HOUR, NOW + HOUR, NOW + HOUR, NOW]), HOUR);
        assert_eq!(correction_of(&[u64::MAX, NOW + HOUR]), HOUR, "a liar is outvoted");
        assert_eq!(correction_of(&[NOW - HOUR, NOW - HOUR]), 0, "never backwards");
        assert_eq!(correction_of(&[NOW + 900, NOW + 950]), 0, "under the dead band");
        assert_eq!(correction_of(&[u64::MAX, u64::MAX]), u64::MAX - NOW);
    }

    #[test]
    fn readings_move_on_with_real_time_expire_and_count_once_per_peer() {
        let mut clocks = PeerClocks::default();
        let start = Instant::now();
        let [a, b] = peers(2).try_into().unwrap();
        assert_eq!(clocks.observe(a, NOW + HOUR, start, NOW), HOUR as i64);
        clocks.observe(a, NOW + HOUR, start, NOW);
        assert_eq!(clocks.floor(start, NOW), None, "one peer read twice is one vote");
        let later = start + Duration::from_secs(60);
        assert_eq!(clocks.observe(b, NOW + HOUR + 60_000, later, NOW + 60_000), HOUR as i64);
        let floor = clocks.floor(later, NOW + 60_000).unwrap();
        assert_eq!(floor, TimeFloor { millis: NOW + HOUR + 60_000, at: later });
        // Our wall clock is set right: nothing to correct.
        assert_eq!(clocks.floor(later, NOW + HOUR + 60_000), None);
        assert_eq!(clocks.floor(start + FRESH, NOW + 900_000), None, "a's reading expired");
        assert_eq!(clocks.len(), 1);
    }

    #[test]
    fn the_peer_table_is_bounded() {
        let mut clocks = PeerClocks::default();
        let start = Instant::now();
        for (i, peer) in peers(MAX_PEERS + 10).into_iter().enumerate() {
            clocks.observe(peer, NOW + HOUR, start + Duration::from_millis(i as u64), NOW);
        }
        assert_eq!(clocks.len(), MAX_PEERS);
    }

    #[test]
    fn a_reading_is_moved_on_by_half_the_round_trip() {
        let sent = Instant::now();
        assert_eq!(at_receipt(NOW, sent, sent + Duration::from_millis(400)), NOW + 200);
        assert_eq!(at_receipt(NOW, sent + Duration::from_millis(5), sent), NOW);
        assert_eq!(at_receipt(u64::MAX, sent, sent + Duration::from_secs(1)), u64::MAX);
    }
}
