//! The store handle: opening the database, merging entries, queries.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use redb::{ReadableDatabase as _, ReadableTable, ReadableTableMetadata as _, Table};

use cosmic_auth::{
    AccessDenied, AuthorKey, PublicKey, Right, Signature, SignedStatement, SpaceKey, SpaceMode,
    Timestamp, check_item_access,
};

use crate::access::SpaceRecord;
use crate::hlc::{HlcState, check_drift};
use crate::recon::{self, Fingerprint, ItemRange};
use crate::schema::{
    self, AUTHOR_BYTES, BLOB_LINKS, BUCKETS, CHANGES, DOCS, ENTRIES, META, SPACES, STATEMENTS,
};
use crate::value::Reader;
use crate::{
    Change, Clock, Entry, Error, Hlc, KeyCache, Origin, Result, Subscription, SystemClock, Value,
};

mod apply;
mod durability;
mod json;
mod open;
mod ranges;
mod read;
mod refusals;
mod seal;
mod statements;
mod write;

pub use durability::{Durability, FLUSH_INTERVAL};
use refusals::RefusalCounters;
pub use refusals::Refusals;
pub(crate) use seal::item_id;

/// How a [`Store`] is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// Entries stamped further than this ahead of the local wall clock are refused
    /// (the node passes config `sync.max_clock_drift`).
    pub max_clock_drift: Duration,
    /// The largest encoded value, in bytes.
    pub max_value_size: usize,
    /// The wall clock; tests inject a skewed one.
    pub clock: Arc<dyn Clock>,
    /// redb's page cache size in bytes (`None`: redb's default, 1 GiB). Resident memory
    /// grows with the cache, not with the number of entries.
    pub cache_size: Option<usize>,
    /// When a write reaches the disk (the node passes config `store.durability`).
    pub durability: Durability,
    /// The bytes of winning entries (encoded) one author may hold in one open space; a
    /// write that would take it beyond is refused with [`Error::QuotaExceeded`], unless
    /// it shrinks what the author holds (a smaller value, a deletion). 0: no quota.
    /// Restricted spaces have none: who writes there is granted. The node passes config
    /// `store.author_quota`.
    pub author_quota: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_clock_drift: Duration::from_secs(60),
            max_value_size: 64 * 1024,
            clock: Arc::new(SystemClock),
            cache_size: None,
            durability: Durability::Immediate,
            author_quota: 0,
        }
    }
}

/// What happened to an inserted entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// It became the winner of its field, with this change sequence number.
    Applied {
        /// The change sequence number.
        seq: u64,
    },
    /// The store already holds this exact entry.
    Duplicate,
    /// The store holds a later winner for the field; the entry changes nothing.
    Superseded,
}

/// The current value of one field, with its provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The value (never [`Value::Null`] in [`Store::get_doc`] results).
    pub value: Value,
    /// When it was written.
    pub hlc: Hlc,
    /// Who wrote it.
    pub author: PublicKey,
}

/// A document's live fields by name.
pub type Document = BTreeMap<String, Field>;

/// A space held by the store, with its counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceInfo {
    /// The space id.
    pub space: PublicKey,
    /// Its mode.
    pub mode: SpaceMode,
    /// Number of fields (winning entries, tombstones included): the reconciliation items.
    pub n_entries: u64,
    /// Number of documents with at least one live field.
    pub n_docs: u64,
}

/// One end of a reconciliation range: a `(doc, field)` position.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RangeKey {
    /// The document key.
    pub doc: String,
    /// The field name.
    pub field: String,
}

/// A reconciliation item: a winning entry's position and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconItem {
    /// The document key.
    pub doc: String,
    /// The field name.
    pub field: String,
    /// The hash of the winning entry ([`Entry::hash`]).
    pub hash: [u8; 32],
}

/// The earliest the present can be: `millis` (since the Unix epoch) at the monotonic
/// instant `at`, moving on with real time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeFloor {
    /// Milliseconds since the Unix epoch at `at`.
    pub millis: u64,
    /// When `millis` was the floor.
    pub at: std::time::Instant,
}

impl TimeFloor {
    /// The floor now: `millis` plus the time elapsed since `at`.
    pub fn now_millis(&self) -> u64 {
        let elapsed = u64::try_from(self.at.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.saturating_add(elapsed)
    }
}

/// The redb-backed entry store. Cheap to clone; all clones share one database.
///
/// Every method is a blocking call into redb (a write waits for `fsync`): async callers run
/// them under `tokio::task::spawn_blocking`. Only [`Store::subscribe`] needs a runtime.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The open database; `None` only while it is being reopened, or after a reopen failed.
    db: RwLock<Option<redb::Database>>,
    /// Opens the database again after an I/O failure (`None`: it cannot be reopened).
    reopen: Option<Reopen>,
    /// Set by an I/O failure: redb then refuses every later operation on the handle, so the
    /// next operation closes the file and opens it again (redb repairs it from the last
    /// commit).
    failed: AtomicBool,
    path: PathBuf,
    options: Options,
    writer: Mutex<WriterState>,
    /// The hybrid logical clock: ticked for local writes, advanced by every entry applied.
    /// Its own lock, so that a write stamps its fields (and then signs them) without waiting
    /// for another write's transaction.
    clock: Mutex<HlcState>,
    /// The last change sequence number issued, readable without the writer lock.
    last_seq: AtomicU64,
    /// When a refusal for clock drift was last logged (wall millis), and how many entries
    /// were refused for it since.
    drift_logged_at: AtomicU64,
    drift_refused: AtomicU64,
    /// Entries from elsewhere refused since the store opened, by reason.
    refusals: RefusalCounters,
    /// Write transactions committed so far (counted under the writer lock), and how many of
    /// them are known durable: see `store/durability.rs`.
    commits: AtomicU64,
    durable_upto: AtomicU64,
    /// Held by the one caller making commits durable; the others wait on it and then find
    /// their commit already covered (group commit).
    sync_lock: Mutex<()>,
    /// Write transactions begun and not yet committed (or failed): a sync waits a moment for
    /// them, so that it covers them too.
    writing: AtomicU64,
    /// The earliest the present can be (see [`Store::set_time_floor`]).
    time_floor: Mutex<Option<TimeFloor>>,
    /// Public keys read from the database and already checked, by their bytes.
    checked_keys: Mutex<KeyCache>,
    /// The subscriptions that committed changes are handed to.
    live: crate::changes::LiveSubscribers,
}

/// Opens a database again, on the same file or storage.
struct Reopen(Box<dyn Fn() -> Result<redb::Database> + Send + Sync>);

impl std::fmt::Debug for Reopen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reopen")
    }
}

/// How many checked keys the store remembers before starting over.
const CHECKED_KEYS_CAPACITY: usize = 4096;

#[derive(Debug)]
struct WriterState {
    /// The clock's value last written to the database.
    hlc_saved: Hlc,
    last_seq: u64,
    /// With [`Durability::Eventual`]: sequence numbers up to here are reserved durably.
    seq_reserved: u64,
}

/// The stats kept after the space record in `spaces-1`.
#[derive(Clone, Copy, Debug, Default)]
struct SpaceStats {
    n_entries: u64,
    n_docs: u64,
}

struct Tables<'txn> {
    spaces: Table<'txn, &'static [u8; 32], &'static [u8]>,
    statements: Table<'txn, &'static [u8], &'static [u8]>,
    entries: Table<'txn, &'static [u8], &'static [u8]>,
    docs: Table<'txn, &'static [u8], u64>,
    changes: Table<'txn, &'static [u8], &'static [u8]>,
    buckets: Table<'txn, &'static [u8], &'static [u8]>,
    blob_links: Table<'txn, &'static [u8], u64>,
    author_bytes: Table<'txn, &'static [u8], u64>,
    /// Bytes per space and author read or changed in this transaction; changed ones are
    /// written back once, before the commit.
    author_usage: BTreeMap<[u8; 64], (u64, bool)>,
    /// Space rows read or changed in this transaction; changed ones are written back once,
    /// before the commit, instead of once per entry.
    space_rows: BTreeMap<[u8; 32], (SpaceRecord, SpaceStats, bool)>,
    /// The statements of restricted spaces, read once per transaction.
    statements_by_space: BTreeMap<[u8; 32], Vec<SignedStatement>>,
    /// The changes applied, kept while some subscription may want them.
    applied: Option<Vec<Change>>,
}

impl Store {
    /// The database path (or label).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Maps a redb error, remembering an I/O failure so that the next operation reopens the
    /// database.
    fn err(&self, error: impl Into<redb::Error>) -> Error {
        let error = Error::redb(&self.inner.path, error);
        if matches!(error, Error::Io { .. }) && !self.inner.failed.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                path = %self.inner.path.display(),
                error = %error_chain(&error),
                "database i/o failed; it will be reopened before its next use"
            );
        }
        error
    }

    /// A read transaction, reopening the database first after an I/O failure.
    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        self.recover_if_failed()?;
        let db = self.inner.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = db.as_ref().ok_or_else(|| self.closed())?;
        db.begin_read().map_err(|e| self.err(e))
    }

    /// Logs a refusal for clock drift, at most once a minute (a peer whose clock is ahead
    /// offers the same entries on every reconciliation), with the count since the last line.
    /// Counts a refused signature or malformed entry from elsewhere.
    fn count_refusal(&self, error: &Error) {
        let counter = match error {
            Error::BadSignature { .. } => &self.inner.refusals.bad_signature,
            _ => &self.inner.refusals.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// How many entries from elsewhere (peers, clients that sign their own) this store has
    /// refused since it opened, by reason.
    pub fn refusals(&self) -> Refusals {
        let counters = &self.inner.refusals;
        Refusals {
            clock_drift: counters.clock_drift.load(Ordering::Relaxed),
            bad_signature: counters.bad_signature.load(Ordering::Relaxed),
            no_right: counters.no_right.load(Ordering::Relaxed),
            revoked: counters.revoked.load(Ordering::Relaxed),
            malformed: counters.malformed.load(Ordering::Relaxed),
            quota: counters.quota.load(Ordering::Relaxed),
            cut_off: counters.cut_off.load(Ordering::Relaxed),
            statements_cut_off: counters.statements_cut_off.load(Ordering::Relaxed),
            statements_refused: counters.statements_refused.load(Ordering::Relaxed),
        }
    }

    fn log_drift(&self, error: &Error, wall: u64) {
        self.inner.refusals.clock_drift.fetch_add(1, Ordering::Relaxed);
        let refused = self.inner.drift_refused.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.inner.drift_logged_at.load(Ordering::Relaxed);
        if (last == 0 || wall >= last.saturating_add(60_000))
            && self
                .inner
                .drift_logged_at
                .compare_exchange(last, wall.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.inner.drift_refused.store(0, Ordering::Relaxed);
            tracing::warn!(
                path = %self.inner.path.display(),
                refused,
                %error,
                "refused entries stamped beyond the allowed clock drift: a peer's clock is \
                 ahead (or ours behind); they are accepted once within the drift"
            );
        }
    }

    fn closed(&self) -> Error {
        Error::Io { path: self.inner.path.clone(), source: redb::Error::DatabaseClosed }
    }

    /// The wall clock this store was opened with, uncorrected: milliseconds since the
    /// Unix epoch.
    pub fn wall_clock_millis(&self) -> u64 {
        self.inner.options.clock.now_millis()
    }

    /// Sets (or, with `None`, clears) the earliest this store takes the present to be: local
    /// writes are stamped, and entries from elsewhere judged for clock drift, against the
    /// later of its wall clock and the floor. The sync layer sets it when most peers agree
    /// that this machine's clock is behind theirs. A floor moves on with real (monotonic)
    /// time, so once the wall clock is set right it catches up and the floor stops
    /// mattering.
    pub fn set_time_floor(&self, floor: Option<TimeFloor>) {
        *self.inner.time_floor.lock().unwrap_or_else(PoisonError::into_inner) = floor;
    }

    /// How far [`Store::now_millis`] is ahead of the wall clock because of the time floor.
    pub fn clock_correction(&self) -> Duration {
        Duration::from_millis(self.now_millis().saturating_sub(self.wall_clock_millis()))
    }

    /// The present as this store sees it: the later of [`Store::wall_clock_millis`] and the
    /// time floor, in milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> u64 {
        let wall = self.wall_clock_millis();
        let floor = *self.inner.time_floor.lock().unwrap_or_else(PoisonError::into_inner);
        floor.map_or(wall, |floor| wall.max(floor.now_millis()))
    }

    /// The latest timestamp this store issued or saw.
    pub fn clock(&self) -> Hlc {
        self.inner.clock.lock().unwrap_or_else(PoisonError::into_inner).last
    }

    /// Advances the clock past `hlc` (a timestamp seen in an entry or in the database).
    fn observe(&self, hlc: Hlc) {
        self.inner.clock.lock().unwrap_or_else(PoisonError::into_inner).observe(hlc);
    }

    /// The last change sequence number issued (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.inner.last_seq.load(Ordering::Acquire)
    }

    // ---- spaces and grants ----

    /// Creates a space (or replaces its mode), signing the record with the space key.
    pub fn create_space(&self, space_key: &SpaceKey, mode: SpaceMode) -> Result<SpaceRecord> {
        let version = match self.space_record(&space_key.id())? {
            Some(record) => record.version.saturating_add(1),
            None => 0,
        };
        let record = SpaceRecord::sign(space_key, mode, version);
        self.insert_space_record(&record)?;
        Ok(record)
    }

    /// Inserts a space record received from a peer; returns whether it changed the space.
    pub fn insert_space_record(&self, record: &SpaceRecord) -> Result<bool> {
        record.verify()?;
        self.write_txn(|_, tables, _| {
            let key = record.space.as_bytes();
            let (existing, stats) = match tables.spaces.get(key).map_err(|e| self.err(e))? {
                Some(bytes) => {
                    let (existing, stats) = decode_space_row(bytes.value())?;
                    (Some(existing), stats)
                }
                None => (None, SpaceStats::default()),
            };
            if existing.as_ref().is_some_and(|existing| !record.supersedes(existing)) {
                return Ok(false);
            }
            let row = encode_space_row(record, stats);
            tables.spaces.insert(key, row.as_slice()).map_err(|e| self.err(e))?;
            Ok(true)
        })
    }

    /// The record of a space, if the store holds it.
    pub fn space_record(&self, space: &PublicKey) -> Result<Option<SpaceRecord>> {
        let txn = self.begin_read()?;
        let spaces = txn.open_table(SPACES).map_err(|e| self.err(e))?;
        let row = spaces.get(space.as_bytes()).map_err(|e| self.err(e))?;
        row.map(|bytes| decode_space_row(bytes.value()).map(|(record, _)| record)).transpose()
    }

    /// The capability statements of a space (they sync like data), ordered by hash.
    pub fn statements(&self, space: &PublicKey) -> Result<Vec<SignedStatement>> {
        let txn = self.begin_read()?;
        let statements = txn.open_table(STATEMENTS).map_err(|e| self.err(e))?;
        read_statements(&statements, space).map_err(|error| self.map_read_error(error))
    }

    /// Every space with its counts, ordered by id.
    pub fn list_spaces(&self) -> Result<Vec<SpaceInfo>> {
        let txn = self.begin_read()?;
        let spaces = txn.open_table(SPACES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in spaces.iter().map_err(|e| self.err(e))? {
            let (_, value) = row.map_err(|e| self.err(e))?;
            let (record, stats) = decode_space_row(value.value())?;
            out.push(SpaceInfo {
                space: record.space,
                mode: record.mode,
                n_entries: stats.n_entries,
                n_docs: stats.n_docs,
            });
        }
        Ok(out)
    }

    // ---- writes ----

    fn decode_entry_row(&self, row: &[u8]) -> Result<([u8; 32], u64, Entry)> {
        let mut reader = Reader::new(row);
        let hash = reader.array("entry row")?;
        let seq = u64::from_be_bytes(reader.array("entry row")?);
        let body = reader.take("entry row", row.len().saturating_sub(40))?;
        let entry = Entry::decode_with(body, &mut |bytes| {
            self.inner.checked_keys.lock().unwrap_or_else(PoisonError::into_inner).check(bytes)
        })?;
        Ok((hash, seq, entry))
    }

    fn map_read_error(&self, error: ReadError) -> Error {
        match error {
            ReadError::Storage(error) => self.err(error),
            ReadError::Decode(reason) => self.corrupted(&reason),
        }
    }

    fn corrupted(&self, reason: &str) -> Error {
        Error::Corrupted { path: self.inner.path.clone(), reason: reason.to_owned() }
    }
}

/// A failure while reading rows inside a transaction.
enum ReadError {
    Storage(redb::StorageError),
    Decode(String),
}

impl From<redb::StorageError> for ReadError {
    fn from(error: redb::StorageError) -> ReadError {
        ReadError::Storage(error)
    }
}

fn read_statements(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    space: &PublicKey,
) -> Result<Vec<SignedStatement>, ReadError> {
    let end = schema::prefix_end(space.as_bytes());
    let mut out = Vec::new();
    for row in table.range::<&[u8]>(bounds(space.as_bytes(), end.as_deref()))? {
        let (_, value) = row?;
        let statement = SignedStatement::from_bytes(value.value())
            .map_err(|error| ReadError::Decode(format!("stored statement: {error}")))?;
        out.push(statement);
    }
    Ok(out)
}

/// An error with its sources, for logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn begin_write(db: &redb::Database, path: &Path) -> Result<redb::WriteTransaction> {
    Ok(two_phase(db.begin_write().map_err(|error| Error::redb(path, error))?))
}

fn two_phase(mut txn: redb::WriteTransaction) -> redb::WriteTransaction {
    // The store is fed by untrusted peers: redb advises two-phase commit then, so a crafted
    // page cannot make recovery pick a torn commit.
    txn.set_two_phase_commit(true);
    txn
}

fn bounds<'a>(lo: &'a [u8], hi: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (Bound::Included(lo), hi.map_or(Bound::Unbounded, Bound::Excluded))
}

fn seq_key(space: &[u8; 32], seq: u64) -> Vec<u8> {
    let mut key = space.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn is_storage_error(error: &Error) -> bool {
    matches!(error, Error::Io { .. } | Error::Corrupted { .. } | Error::AlreadyOpen { .. })
}

fn check_value_size(field: &str, value: &Value, limit: usize) -> Result<()> {
    let size = value.encode().len();
    if size > limit {
        return Err(Error::ValueTooLarge { field: field.to_owned(), size, limit });
    }
    Ok(())
}

fn encode_space_row(record: &SpaceRecord, stats: SpaceStats) -> Vec<u8> {
    let mut row = record.encode();
    row.extend_from_slice(&stats.n_entries.to_be_bytes());
    row.extend_from_slice(&stats.n_docs.to_be_bytes());
    row
}

fn decode_space_row(row: &[u8]) -> Result<(SpaceRecord, SpaceStats)> {
    let mut reader = Reader::new(row);
    let record = SpaceRecord::decode_prefix(&mut reader)?;
    let n_entries = u64::from_be_bytes(reader.array("space row")?);
    let n_docs = u64::from_be_bytes(reader.array("space row")?);
    reader.finish("space row")?;
    Ok((record, SpaceStats { n_entries, n_docs }))
}
