//! When a write reaches the disk. Every write transaction commits in memory first (redb's
//! `Durability::None`); an empty durable commit then persists it together with every other
//! commit made before it. [`Durability::Immediate`]: the writer waits for that before it
//! returns, and writers that commit while one sync runs share the next one (group commit),
//! so concurrent writers do not queue for one fsync each. [`Durability::Eventual`]: a
//! background flusher does it every [`FLUSH_INTERVAL`], and a crash loses at most the
//! writes of the last interval.
//!
//! Either way a crash never corrupts the file (redb keeps the last durable commit) and
//! never reuses a change sequence number, although subscribers hear of a change as soon as
//! it commits in memory: numbers are reserved in durable blocks of [`SEQ_RESERVE`], and a
//! reopened store continues after the reserved block, so a subscriber resuming from a
//! number it saw before the crash does not skip the changes made after it.
//!
//! A write whose sync fails returns the error; the store then reopens its file before the
//! next operation and so drops what was only in memory (a sync by another writer that
//! succeeded in between may have kept it: as with any failed fsync, the outcome of that one
//! write is not known, but nothing acknowledged is lost).

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

/// How long a sync waits, at most, for write transactions in progress to commit so that it
/// covers them too.
const GATHER: Duration = Duration::from_millis(2);

/// Counts a write transaction in progress while alive.
pub(super) struct Writing<'a>(&'a Inner);

impl<'a> Writing<'a> {
    pub(super) fn enter(inner: &'a Inner) -> Writing<'a> {
        inner.writing.fetch_add(1, Ordering::AcqRel);
        Writing(inner)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sequence numbers reserved durably at a time with [`Durability::Eventual`].
pub(super) const SEQ_RESERVE: u64 = 10_000;

impl Store {
    /// Makes every write so far durable (with [`Durability::Immediate`] they already are
    /// when the write returns).
    pub fn flush(&self) -> Result<()> {
        let upto = self.inner.commits.load(Ordering::Acquire);
        wait_durable(&self.inner, upto)
    }
}

/// Returns once commit number `ticket` is durable. The first caller to find it is not
/// makes every commit so far durable with one empty durable commit (redb then persists
/// the in-memory commits before it too); callers arriving meanwhile wait for it and
/// usually find their own commit covered: one sync for many writers (group commit).
pub(super) fn wait_durable(inner: &Inner, ticket: u64) -> Result<()> {
    if inner.durable_upto.load(Ordering::Acquire) >= ticket {
        return Ok(());
    }
    let _sync = inner.sync_lock.lock().unwrap_or_else(PoisonError::into_inner);
    if inner.durable_upto.load(Ordering::Acquire) >= ticket {
        return Ok(());
    }
    // Writers already on their way commit first, and share this sync.
    let waiting = std::time::Instant::now();
    while inner.writing.load(Ordering::Acquire) > 0 && waiting.elapsed() < GATHER {
        std::thread::yield_now();
    }
    // Under the writer lock no commit happens, so everything counted is in the file's
    // in-memory state that this commit persists.
    let writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
    let upto = inner.commits.load(Ordering::Acquire);
    let slot = inner.db.read().unwrap_or_else(PoisonError::into_inner);
    let Some(db) = slot.as_ref() else {
        return Err(crate::Error::Io {
            path: inner.path.clone(),
            source: redb::Error::DatabaseClosed,
        });
    };
    let txn = super::begin_write(db, &inner.path)?;
    let result = txn.commit().map_err(|error| {
        let error = crate::Error::redb(&inner.path, error);
        // Like any failed write: the next operation reopens the file (and the commits that
        // were only in memory are gone with the handle).
        if matches!(error, crate::Error::Io { .. }) {
            inner.failed.store(true, Ordering::SeqCst);
        }
        error
    });
    drop(slot);
    drop(writer);
    result?;
    inner.durable_upto.fetch_max(upto, Ordering::AcqRel);
    Ok(())
}

/// Starts the thread that makes the writes of the store behind `inner` durable every
/// [`FLUSH_INTERVAL`]; it ends when the store is dropped (which flushes one last time).
pub(super) fn spawn_flusher(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let spawned = std::thread::Builder::new().name("cosmic-store-flush".into()).spawn(move || {
        loop {
            std::thread::sleep(FLUSH_INTERVAL);
            let Some(inner) = weak.upgrade() else { return };
            let upto = inner.commits.load(Ordering::Acquire);
            if let Err(error) = wait_durable(&inner, upto) {
                tracing::warn!(path = %inner.path.display(), %error, "flushing writes failed");
            }
        }
    });
    if let Err(error) = spawned {
        // Without the thread every write still becomes durable at the next flush or drop.
        tracing::warn!(%error, "cannot start the store's flush thread");
    }
}

/// At a clean close: one durable commit that covers every write and hands back the unused
/// part of the reserved block of sequence numbers, so that the next open continues without
/// a gap.
fn close(inner: &Inner) -> Result<()> {
    let writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
    if inner.failed.load(Ordering::SeqCst) {
        return Ok(());
    }
    let slot = inner.db.read().unwrap_or_else(PoisonError::into_inner);
    let Some(db) = slot.as_ref() else { return Ok(()) };
    let redb_error = |error: redb::Error| crate::Error::redb(&inner.path, error);
    let txn = super::begin_write(db, &inner.path)?;
    {
        let mut meta = txn.open_table(crate::schema::META).map_err(|e| redb_error(e.into()))?;
        meta.insert("seq_reserved", writer.last_seq.to_be_bytes().as_slice())
            .map_err(|e| redb_error(e.into()))?;
    }
    txn.commit().map_err(|e| redb_error(e.into()))
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = close(self) {
            tracing::warn!(path = %self.path.display(), %error, "writing out at close failed");
        }
    }
}
