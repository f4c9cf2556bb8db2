//! When a write reaches the disk: [`Durability::Immediate`] (each write transaction is
//! fsynced before it returns) or [`Durability::Eventual`] (write transactions are committed
//! in memory and a background flusher makes them durable every [`FLUSH_INTERVAL`]).
//!
//! With `Eventual`, a crash loses at most the writes of the last interval, never corrupts
//! the file (redb keeps the last durable commit), and never reuses a change sequence number:
//! sequence numbers are reserved in durable blocks of [`SEQ_RESERVE`], and a reopened store
//! continues after the reserved block, so a subscriber resuming from a number it saw before
//! the crash does not skip the changes made after it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use super::{Inner, Store};
use crate::Result;

/// When a write reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Before the write returns (fsync per write transaction).
    #[default]
    Immediate,
    /// Within [`FLUSH_INTERVAL`] after the write returns; a crash can lose the last writes,
    /// never corrupt the store.
    Eventual,
}

/// How often a store with [`Durability::Eventual`] makes its writes durable.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Sequence numbers reserved durably at a time with [`Durability::Eventual`].
pub(super) const SEQ_RESERVE: u64 = 10_000;

impl Store {
    /// Makes every write so far durable (with [`Durability::Immediate`] they already are).
    pub fn flush(&self) -> Result<()> {
        flush_inner(&self.inner)
    }
}

/// Commits an empty durable transaction if writes since the last one were not durable:
/// redb then persists them too.
pub(super) fn flush_inner(inner: &Inner) -> Result<()> {
    if !inner.dirty.swap(false, Ordering::AcqRel) {
        return Ok(());
    }
    // Under the writer lock, so that no write commits (non-durably) in between.
    let _guard = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
    let result = (|| {
        let db = inner.db.read().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = db.as_ref() else { return Ok(()) };
        let txn = super::begin_write(db, &inner.path)?;
        txn.commit().map_err(|error| crate::Error::redb(&inner.path, error))
    })();
    if result.is_err() {
        inner.dirty.store(true, Ordering::Release);
    }
    result
}

/// Starts the thread that flushes the store behind `inner` every [`FLUSH_INTERVAL`]; it
/// ends when the store is dropped (which flushes one last time).
pub(super) fn spawn_flusher(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let spawned = std::thread::Builder::new().name("cosmic-store-flush".into()).spawn(move || {
        loop {
            std::thread::sleep(FLUSH_INTERVAL);
            let Some(inner) = weak.upgrade() else { return };
            if let Err(error) = flush_inner(&inner) {
                tracing::warn!(path = %inner.path.display(), %error, "flushing writes failed");
            }
        }
    });
    if let Err(error) = spawned {
        // Without the thread every write still becomes durable at the next flush or drop.
        tracing::warn!(%error, "cannot start the store's flush thread");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = flush_inner(self) {
            tracing::warn!(path = %self.path.display(), %error, "flushing writes at close failed");
        }
    }
}
