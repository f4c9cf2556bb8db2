//! The hybrid logical clock that stamps entries, and the injectable wall clock under it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// A hybrid logical clock timestamp: wall-clock milliseconds since the Unix epoch, then a
/// counter that orders events within one millisecond. Ordered by `(millis, counter)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (the physical part).
    pub millis: u64,
    /// The logical counter within `millis`.
    pub counter: u32,
}

impl Hlc {
    /// The size of [`Hlc::to_bytes`].
    pub const LEN: usize = 12;

    /// A timestamp.
    pub const fn new(millis: u64, counter: u32) -> Hlc {
        Hlc { millis, counter }
    }

    /// Big-endian `millis` then `counter`: byte order equals timestamp order.
    pub fn to_bytes(self) -> [u8; Hlc::LEN] {
        let mut out = [0; Hlc::LEN];
        out[..8].copy_from_slice(&self.millis.to_be_bytes());
        out[8..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// The inverse of [`Hlc::to_bytes`].
    pub fn from_bytes(bytes: [u8; Hlc::LEN]) -> Hlc {
        let mut millis = [0; 8];
        millis.copy_from_slice(&bytes[..8]);
        let mut counter = [0; 4];
        counter.copy_from_slice(&bytes[8..]);
        Hlc { millis: u64::from_be_bytes(millis), counter: u32::from_be_bytes(counter) }
    }

    /// The smallest timestamp after `self`.
    fn successor(self) -> Hlc {
        match self.counter.checked_add(1) {
            Some(counter) => Hlc { millis: self.millis, counter },
            None => Hlc { millis: self.millis.saturating_add(1), counter: 0 },
        }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis, self.counter)
    }
}

/// A source of wall-clock time, injectable so tests can skew it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The clock state of one store: the latest timestamp issued or seen.
#[derive(Debug)]
pub(crate) struct HlcState {
    pub(crate) last: Hlc,
}

impl HlcState {
    /// A timestamp for a local write: after every timestamp issued or seen, and at least the
    /// wall clock.
    pub(crate) fn tick(&mut self, wall_millis: u64) -> Hlc {
        let next = if wall_millis > self.last.millis {
            Hlc::new(wall_millis, 0)
        } else {
            self.last.successor()
        };
        self.last = next;
        next
    }

    /// Advances past a timestamp seen on an entry. Callers check drift first.
    pub(crate) fn observe(&mut self, seen: Hlc) {
        if seen > self.last {
            self.last = seen;
        }
    }
}

/// Refuses a timestamp more than `max_drift` ahead of `wall_millis`.
pub(crate) fn check_drift(
    hlc: Hlc,
    wall_millis: u64,
    max_drift: Duration,
    doc: &str,
    field: &str,
) -> Result<()> {
    let max_drift_ms = u64::try_from(max_drift.as_millis()).unwrap_or(u64::MAX);
    let ahead_ms = hlc.millis.saturating_sub(wall_millis);
    if ahead_ms > max_drift_ms {
        return Err(Error::ClockDrift {
            doc: doc.to_owned(),
            field: field.to_owned(),
            ahead_ms,
            max_drift_ms,
        });
    }
    Ok(())
}
