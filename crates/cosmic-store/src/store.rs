//! The store handle: opening the database, merging entries, queries.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use redb::{ReadableDatabase as _, ReadableTable, ReadableTableMetadata as _, Table};

use cosmic_auth::{
    AuthorKey, PublicKey, Right, Signature, SignedStatement, SpaceKey, SpaceMode, Timestamp,
    check_access,
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

mod durability;
mod statements;

pub use durability::{Durability, FLUSH_INTERVAL};

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

/// The counters behind [`Store::refusals`].
#[derive(Debug, Default)]
struct RefusalCounters {
    clock_drift: AtomicU64,
    bad_signature: AtomicU64,
    no_right: AtomicU64,
    malformed: AtomicU64,
    quota: AtomicU64,
}

/// Entries from elsewhere that a store refused, by reason (see [`Store::refusals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Stamped further ahead of our clock than `max_clock_drift` (offered again later).
    pub clock_drift: u64,
    /// Signatures that do not verify.
    pub bad_signature: u64,
    /// Authors without a right to write there at the entry's time.
    pub no_right: u64,
    /// Keys, fields or values that break the rules.
    pub malformed: u64,
    /// Authors over their quota in an open space ([`Options::author_quota`]).
    pub quota: u64,
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
    /// Opens the store at `path`, creating it if missing, after checking the checksum of
    /// every page (the whole file is read once).
    ///
    /// A file that is not a redb database, or is damaged, is [`Error::Corrupted`] naming the
    /// path; a file held by another process is [`Error::AlreadyOpen`].
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref().to_owned();
        let db = open_file(&path, &options, true)?;
        let reopen = {
            let (path, options) = (path.clone(), options.clone());
            // The file was in our hands since the first open: redb's own recovery suffices.
            Reopen(Box::new(move || open_file(&path, &options, false)))
        };
        Store::from_database(db, path, options, Some(reopen))
    }

    /// Opens a store on the storage that `make_backend` returns, named `label` in errors.
    /// After an I/O failure the store calls `make_backend` again to reopen the database, as
    /// [`Store::open`] reopens its file; tests use this to inject storage failures.
    pub fn open_with_backend_factory<B: redb::StorageBackend>(
        label: impl AsRef<Path>,
        options: Options,
        make_backend: impl Fn() -> std::io::Result<B> + Send + Sync + 'static,
    ) -> Result<Store> {
        let label = label.as_ref().to_owned();
        let open = {
            let label = label.clone();
            move || -> Result<redb::Database> {
                let backend = make_backend().map_err(|error| Error::redb(&label, error))?;
                redb::Database::builder()
                    .create_with_backend(backend)
                    .map_err(|error| Error::redb(&label, error))
            }
        };
        let db = open()?;
        Store::from_database(db, label, options, Some(Reopen(Box::new(open))))
    }

    /// Opens a fresh store held in memory, named `label` in errors: the same merge,
    /// change log and fingerprints as a file, without durability. For simulations and
    /// tests that run many stores.
    pub fn open_in_memory(label: impl AsRef<Path>, options: Options) -> Result<Store> {
        Store::open_with_backend(redb::backends::InMemoryBackend::new(), label.as_ref(), options)
    }

    /// Opens a store on any redb storage backend; `label` names it in errors.
    pub(crate) fn open_with_backend(
        backend: impl redb::StorageBackend,
        label: &Path,
        options: Options,
    ) -> Result<Store> {
        let db = redb::Database::builder()
            .create_with_backend(backend)
            .map_err(|error| Error::redb(label, error))?;
        Store::from_database(db, label.to_owned(), options, None)
    }

    fn from_database(
        db: redb::Database,
        path: PathBuf,
        options: Options,
        reopen: Option<Reopen>,
    ) -> Result<Store> {
        let txn = begin_write(&db, &path)?;
        schema::init(&txn, &path)?;
        txn.commit().map_err(|error| Error::redb(&path, error))?;
        let (hlc, last_seq, seq_reserved) = read_writer_state(&db, &path)?;
        // After a crash with eventual durability the last changes may be gone: continue
        // after every number that may have been handed out.
        let last_seq = last_seq.max(seq_reserved);
        let eventual = options.durability == Durability::Eventual;
        let store = Store {
            inner: Arc::new(Inner {
                commits: AtomicU64::new(0),
                durable_upto: AtomicU64::new(0),
                sync_lock: Mutex::new(()),
                writing: AtomicU64::new(0),
                db: RwLock::new(Some(db)),
                reopen,
                failed: AtomicBool::new(false),
                drift_logged_at: AtomicU64::new(0),
                drift_refused: AtomicU64::new(0),
                refusals: RefusalCounters::default(),
                time_floor: Mutex::new(None),
                path,
                options,
                writer: Mutex::new(WriterState {
                    hlc_saved: hlc,
                    last_seq,
                    seq_reserved: last_seq,
                }),
                clock: Mutex::new(HlcState { last: hlc }),
                last_seq: AtomicU64::new(last_seq),
                checked_keys: Mutex::new(KeyCache::with_capacity(CHECKED_KEYS_CAPACITY)),
                live: crate::changes::LiveSubscribers::default(),
            }),
        };
        if eventual {
            durability::spawn_flusher(&store.inner);
        }
        Ok(store)
    }

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

    /// After an I/O failure, closes the database and opens it again: redb repairs the file
    /// from its last commit, and the handle takes reads and writes again. Fails (and is
    /// tried again by the next operation) while the cause, a full disk say, persists.
    fn recover_if_failed(&self) -> Result<()> {
        let Some(reopen) = &self.inner.reopen else { return Ok(()) };
        if !self.inner.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        // No write transaction of ours is live while the writer lock is held.
        let mut writer = self.inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.inner.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut slot = self.inner.db.write().unwrap_or_else(PoisonError::into_inner);
        // Dropping the handle closes the file and releases its lock; reads still running on
        // it fail.
        drop(slot.take());
        let db = (reopen.0)()?;
        // A commit that failed late (in its final sync, say) may have reached the file:
        // never issue its sequence numbers or timestamps again.
        // (With eventual durability the writes since the last flush are gone, as after a
        // crash; the numbers they took stay taken.)
        let (hlc, last_seq, reserved) = read_writer_state(&db, &self.inner.path)?;
        let last_seq = last_seq.max(reserved);
        self.inner
            .durable_upto
            .fetch_max(self.inner.commits.load(Ordering::Acquire), Ordering::AcqRel);
        self.observe(hlc);
        if last_seq > writer.last_seq {
            writer.last_seq = last_seq;
            self.inner.last_seq.store(last_seq, Ordering::Release);
        }
        *slot = Some(db);
        self.inner.failed.store(false, Ordering::SeqCst);
        tracing::info!(path = %self.inner.path.display(), "database reopened after an i/o failure");
        Ok(())
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
            malformed: counters.malformed.load(Ordering::Relaxed),
            quota: counters.quota.load(Ordering::Relaxed),
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

    /// Inserts one entry (from a peer or from [`Entry::sign`]), durably; its change is
    /// recorded as [`Origin::Local`] (see [`Store::insert_from`]).
    pub fn insert(&self, entry: Entry) -> Result<Inserted> {
        self.insert_from(entry, Origin::Local)
    }

    /// Inserts one entry received from `origin`, durably; the change log records the origin.
    pub fn insert_from(&self, entry: Entry, origin: Origin) -> Result<Inserted> {
        self.insert_batch_from(vec![entry], origin)?.pop().unwrap_or(Ok(Inserted::Duplicate))
    }

    /// [`Store::insert_batch_from`] with [`Origin::Local`].
    pub fn insert_batch(&self, entries: Vec<Entry>) -> Result<Vec<Result<Inserted>>> {
        self.insert_batch_from(entries, Origin::Local)
    }

    /// Inserts many entries received from `origin` in one durable transaction; the change
    /// log records the origin of each applied entry.
    ///
    /// The outer error is a storage failure (nothing of the batch was committed) or an
    /// origin longer than [`MAX_ORIGIN_LEN`](crate::MAX_ORIGIN_LEN); the inner results say,
    /// per entry, whether it was applied or why it was refused. A refused entry leaves
    /// nothing behind.
    pub fn insert_batch_from(
        &self,
        entries: Vec<Entry>,
        origin: Origin,
    ) -> Result<Vec<Result<Inserted>>> {
        origin.validate()?;
        let started = std::time::Instant::now();
        let len = entries.len();
        let checked = self.check_entries(entries)?;
        let checked_at = started.elapsed();
        let mut applied_at = std::time::Duration::ZERO;
        let result = self.write_txn(|state, tables, wall| {
            let mut out = Vec::with_capacity(checked.len());
            for entry in checked {
                out.push(match entry {
                    Err(error) => Err(error),
                    Ok(entry) => match self.apply(state, tables, wall, &entry, Some(&origin)) {
                        Err(error) if is_storage_error(&error) => return Err(error),
                        result => result,
                    },
                });
            }
            applied_at = started.elapsed();
            Ok(out)
        });
        tracing::debug!(
            entries = len,
            check_ms = checked_at.as_secs_f64() * 1e3,
            apply_ms = applied_at.saturating_sub(checked_at).as_secs_f64() * 1e3,
            commit_ms = started.elapsed().saturating_sub(applied_at).as_secs_f64() * 1e3,
            "inserted a batch"
        );
        result
    }

    /// Inserts entries signed elsewhere (by a client that holds its own key) as local
    /// writes, in one durable transaction, all or nothing: the first entry refused (bad
    /// signature, oversized value, no right to write, a clock too far ahead) fails the
    /// whole batch with its error and nothing is stored. Entries already held or already
    /// superseded are not refusals.
    pub fn insert_all(&self, entries: Vec<Entry>) -> Result<Vec<Inserted>> {
        let checked = self.check_entries(entries)?.into_iter().collect::<Result<Vec<Entry>>>()?;
        self.write_txn(|state, tables, wall| {
            checked
                .iter()
                .map(|entry| self.apply(state, tables, wall, entry, Some(&Origin::Local)))
                .collect()
        })
    }

    /// Writes fields of one document as `author`, stamping them with the store's clock.
    /// All or nothing: one bad field fails the whole write.
    pub fn write(
        &self,
        author: &AuthorKey,
        space: &PublicKey,
        doc: &str,
        fields: Vec<(String, Value)>,
    ) -> Result<Vec<Inserted>> {
        let fields: Vec<(String, String, Value)> =
            fields.into_iter().map(|(field, value)| (doc.to_owned(), field, value)).collect();
        self.write_many(author, space, fields)
    }

    /// Writes a JSON object to a document. Nested objects become linked child documents:
    /// `{"address": {"city": "x"}}` written to `users/alice` stores the field
    /// `address -> {"#": "users/alice/address"}` and the document `users/alice/address`.
    /// `{"#": key}` is a doc link, `{"/": cid}` a blob link, `{"/": {"bytes": base64}}` bytes;
    /// `null` deletes a field; arrays are refused.
    pub fn write_json(
        &self,
        author: &AuthorKey,
        space: &PublicKey,
        doc: &str,
        object: &serde_json::Value,
    ) -> Result<Vec<Inserted>> {
        crate::entry::validate_doc_key(doc)?;
        let mut fields = Vec::new();
        flatten_json(doc, object, &mut fields, 0)?;
        self.write_many(author, space, fields)
    }

    fn write_many(
        &self,
        author: &AuthorKey,
        space: &PublicKey,
        fields: Vec<(String, String, Value)>,
    ) -> Result<Vec<Inserted>> {
        let limit = self.inner.options.max_value_size;
        for (doc, field, value) in &fields {
            crate::entry::validate_doc_key(doc)?;
            crate::entry::validate_field(field)?;
            value.validate()?;
            check_value_size(field, value, limit)?;
        }
        // The fields are stamped in order by the clock, then signed on every core (the
        // signatures dominate a large write's cost) while other writes commit: only the
        // merge waits for the writer lock. A write that commits in between with a later
        // stamp on one of these fields wins it, as it would anywhere (last writer wins).
        let stamped: Vec<(String, String, Value, Hlc)> = {
            let wall = self.now_millis();
            let mut clock = self.inner.clock.lock().unwrap_or_else(PoisonError::into_inner);
            fields
                .into_iter()
                .map(|(doc, field, value)| (doc, field, value, clock.tick(wall)))
                .collect()
        };
        let sign = |(doc, field, value, hlc): (String, String, Value, Hlc)| {
            Entry::sign(author, *space, &doc, &field, value, hlc)
        };
        let entries = on_cores(stamped, sign)?.into_iter().collect::<Result<Vec<Entry>>>()?;
        self.write_txn(|state, tables, wall| {
            entries.iter().map(|entry| self.apply(state, tables, wall, entry, None)).collect()
        })
    }

    /// Checks entries from elsewhere before they are applied: sizes, structure and
    /// signatures, per entry. Signature checks dominate the cost: they run as batch checks
    /// (which give exactly the single checks' verdicts, see [`cosmic_auth::verify_each`]),
    /// and large batches are spread over the cores, all before taking the writer lock.
    fn check_entries(&self, entries: Vec<Entry>) -> Result<Vec<Result<Entry>>> {
        let limit = self.inner.options.max_value_size;
        let check_chunk = |chunk: Vec<Entry>| -> Vec<Result<Entry>> {
            let mut out: Vec<Result<Entry>> = chunk
                .into_iter()
                .map(|entry| {
                    check_value_size(&entry.field, &entry.value, limit)?;
                    entry.check_structure().inspect_err(|error| self.count_refusal(error))?;
                    Ok(entry)
                })
                .collect();
            let sound: Vec<&Entry> = out.iter().filter_map(|entry| entry.as_ref().ok()).collect();
            let messages: Vec<Vec<u8>> = sound.iter().map(|entry| entry.signed_message()).collect();
            let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let keys: Vec<PublicKey> = sound.iter().map(|entry| entry.author).collect();
            let signatures: Vec<Signature> = sound.iter().map(|entry| entry.signature).collect();
            // The three lists have one item per sound entry, so this cannot fail.
            let verdicts =
                cosmic_auth::verify_each(&messages, &keys, &signatures).unwrap_or_default();
            let mut verdicts = verdicts.into_iter();
            for entry in &mut out {
                if let Ok(sound) = entry
                    && !verdicts.next().unwrap_or(false)
                {
                    let refused = sound.bad_signature();
                    self.count_refusal(&refused);
                    *entry = Err(refused);
                }
            }
            out
        };
        on_chunks(entries, check_chunk)
    }

    /// Runs `body` in one durable write transaction under the writer lock, committing if it
    /// succeeds. The sequence state advances only when the commit succeeds; the clock may
    /// advance anyway (a timestamp issued or seen is never issued again).
    fn write_txn<T>(
        &self,
        body: impl FnOnce(&mut WriterState, &mut Tables<'_>, u64) -> Result<T>,
    ) -> Result<T> {
        self.recover_if_failed()?;
        let writing = durability::Writing::enter(&self.inner);
        let mut guard = self.inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = WriterState {
            hlc_saved: guard.hlc_saved,
            last_seq: guard.last_seq,
            seq_reserved: guard.seq_reserved,
        };
        let wall = self.now_millis();
        let mut txn = {
            let db = self.inner.db.read().unwrap_or_else(PoisonError::into_inner);
            let db = db.as_ref().ok_or_else(|| self.closed())?;
            two_phase(db.begin_write().map_err(|e| self.err(e))?)
        };
        let result = {
            let mut tables = Tables {
                spaces: txn.open_table(SPACES).map_err(|e| self.err(e))?,
                statements: txn.open_table(STATEMENTS).map_err(|e| self.err(e))?,
                entries: txn.open_table(ENTRIES).map_err(|e| self.err(e))?,
                docs: txn.open_table(DOCS).map_err(|e| self.err(e))?,
                changes: txn.open_table(CHANGES).map_err(|e| self.err(e))?,
                buckets: txn.open_table(BUCKETS).map_err(|e| self.err(e))?,
                blob_links: txn.open_table(BLOB_LINKS).map_err(|e| self.err(e))?,
                author_bytes: txn.open_table(AUTHOR_BYTES).map_err(|e| self.err(e))?,
                author_usage: BTreeMap::new(),
                space_rows: BTreeMap::new(),
                statements_by_space: BTreeMap::new(),
                applied: self.inner.live.any().then(Vec::new),
            };
            let result = body(&mut state, &mut tables, wall)?;
            for (space, (record, stats, changed)) in &tables.space_rows {
                if *changed {
                    let row = encode_space_row(record, *stats);
                    tables.spaces.insert(space, row.as_slice()).map_err(|e| self.err(e))?;
                }
            }
            for (key, (used, changed)) in &tables.author_usage {
                match (*changed, *used) {
                    (false, _) => {}
                    (true, 0) => {
                        tables.author_bytes.remove(key.as_slice()).map_err(|e| self.err(e))?;
                    }
                    (true, used) => {
                        tables
                            .author_bytes
                            .insert(key.as_slice(), used)
                            .map_err(|e| self.err(e))?;
                    }
                }
            }
            (result, tables.applied.take())
        };
        let (result, applied) = result;
        let clock = self.clock();
        if clock != state.hlc_saved || state.last_seq != guard.last_seq {
            state.hlc_saved = clock;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert("hlc", clock.to_bytes().as_slice()).map_err(|e| self.err(e))?;
            meta.insert("last_seq", state.last_seq.to_be_bytes().as_slice())
                .map_err(|e| self.err(e))?;
        }
        // Commit in memory, then make it durable together with whatever other writers
        // committed meanwhile (immediate), or let the flush thread do it (eventual); unless
        // this commit must reserve more sequence numbers, which is durable at once, so that
        // a crash never lets a number be reused.
        let mut durable = false;
        if state.last_seq > state.seq_reserved {
            state.seq_reserved = state.last_seq.saturating_add(durability::SEQ_RESERVE);
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert("seq_reserved", state.seq_reserved.to_be_bytes().as_slice())
                .map_err(|e| self.err(e))?;
            durable = true;
        }
        if !durable {
            txn.set_durability(redb::Durability::None).map_err(|error| Error::Io {
                path: self.inner.path.clone(),
                source: redb::Error::Corrupted(error.to_string()),
            })?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        let ticket = self.inner.commits.fetch_add(1, Ordering::AcqRel) + 1;
        if durable {
            // A durable commit makes the earlier in-memory ones durable too.
            self.inner.durable_upto.fetch_max(ticket, Ordering::AcqRel);
        }
        if let Some(applied) = applied {
            // Under the writer lock: every subscription sees the changes in commit order.
            self.inner.live.deliver(&applied);
        }
        *guard = state;
        self.inner.last_seq.store(guard.last_seq, Ordering::Release);
        drop(guard);
        drop(writing);
        if self.inner.options.durability == Durability::Immediate {
            durability::wait_durable(&self.inner, ticket)?;
        }
        Ok(result)
    }

    /// Merges one verified entry inside a write transaction. `inserted` is the origin of an
    /// entry signed elsewhere, `None` for one this store just stamped.
    fn apply(
        &self,
        state: &mut WriterState,
        tables: &mut Tables<'_>,
        wall: u64,
        entry: &Entry,
        inserted: Option<&Origin>,
    ) -> Result<Inserted> {
        // Local writes are stamped by our own clock, which may be ahead of the wall clock
        // after seeing entries from the future; only entries from elsewhere are checked.
        if inserted.is_some() {
            let max_drift = self.inner.options.max_clock_drift;
            check_drift(entry.hlc, wall, max_drift, &entry.doc, &entry.field)
                .inspect_err(|error| self.log_drift(error, wall))?;
        }
        let space = entry.space.as_bytes();
        let (record, mut stats) = match tables.space_rows.get(space) {
            Some((record, stats, _)) => (record.clone(), *stats),
            None => {
                let (record, stats) = match tables.spaces.get(space).map_err(|e| self.err(e))? {
                    Some(bytes) => decode_space_row(bytes.value())?,
                    None => return Err(Error::UnknownSpace { space: entry.space }),
                };
                tables.space_rows.insert(*space, (record.clone(), stats, false));
                (record, stats)
            }
        };
        if record.mode == SpaceMode::Restricted {
            if !tables.statements_by_space.contains_key(space) {
                let statements = read_statements(&tables.statements, &entry.space)
                    .map_err(|error| self.map_read_error(error))?;
                tables.statements_by_space.insert(*space, statements);
            }
            let statements =
                tables.statements_by_space.get(space).map_or(&[][..], |list| list.as_slice());
            let at = Timestamp(entry.hlc.millis);
            check_access(&entry.space, record.mode, &entry.author, Right::Write, at, statements)
                .inspect_err(|_| {
                    if inserted.is_some() {
                        self.inner.refusals.no_right.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .map_err(|reason| Error::AccessDenied {
                    space: entry.space,
                    author: entry.author,
                    reason: Box::new(reason),
                })?;
        }
        self.observe(entry.hlc);

        let key = schema::entry_key(space, &entry.doc, &entry.field);
        let encoded = entry.encode();
        let hash = *blake3::hash(&encoded).as_bytes();
        let existing = match tables.entries.get(key.as_slice()).map_err(|e| self.err(e))? {
            Some(row) => Some(self.decode_entry_row(row.value())?),
            None => None,
        };
        if let Some((old_hash, _, old)) = &existing {
            if *old_hash == hash {
                return Ok(Inserted::Duplicate);
            }
            if old.merge_cmp(entry).is_ge() {
                return Ok(Inserted::Superseded);
            }
        }
        let old_size = existing.as_ref().map(|(_, _, old)| (old.author, old.encode().len()));
        self.check_quota(tables, &record, entry, encoded.len(), old_size, inserted.is_some())?;
        state.last_seq += 1;
        let seq = state.last_seq;
        let mut row = Vec::with_capacity(40 + encoded.len());
        row.extend_from_slice(&hash);
        row.extend_from_slice(&seq.to_be_bytes());
        row.extend_from_slice(&encoded);
        tables.entries.insert(key.as_slice(), row.as_slice()).map_err(|e| self.err(e))?;

        let item_key = &key[32..];
        if let Some((_, old_seq, _)) = &existing {
            tables.changes.remove(seq_key(space, *old_seq).as_slice()).map_err(|e| self.err(e))?;
        }
        let mut change = item_key.to_vec();
        inserted.unwrap_or(&Origin::Local).encode_into(&mut change);
        tables
            .changes
            .insert(seq_key(space, seq).as_slice(), change.as_slice())
            .map_err(|e| self.err(e))?;
        if let Some(applied) = &mut tables.applied {
            let origin = inserted.cloned().unwrap_or(Origin::Local);
            applied.push(Change { seq, entry: entry.clone(), origin });
        }

        if let Some((old_author, old_len)) = old_size {
            self.add_usage(tables, space, &old_author, -(old_len as i64))?;
        }
        self.add_usage(tables, space, &entry.author, encoded.len() as i64)?;
        let old_link = existing.as_ref().and_then(|(_, _, old)| blob_link_of(&old.value));
        let new_link = blob_link_of(&entry.value);
        if old_link != new_link {
            if let Some(cid) = old_link {
                schema::count_blob_link(&mut tables.blob_links, cid, space, -1)
                    .map_err(|e| self.err(e))?;
            }
            if let Some(cid) = new_link {
                schema::count_blob_link(&mut tables.blob_links, cid, space, 1)
                    .map_err(|e| self.err(e))?;
            }
        }

        let old_live = existing.as_ref().is_some_and(|(_, _, old)| !old.value.is_null());
        let new_live = !entry.value.is_null();
        let mut doc_key = space.to_vec();
        doc_key.extend_from_slice(entry.doc.as_bytes());
        let live_before =
            tables.docs.get(doc_key.as_slice()).map_err(|e| self.err(e))?.map(|v| v.value());
        let live_before_count = live_before.unwrap_or(0);
        let live_after =
            (live_before_count + u64::from(new_live)).saturating_sub(u64::from(old_live));
        if live_before.is_none() || live_after != live_before_count {
            tables.docs.insert(doc_key.as_slice(), live_after).map_err(|e| self.err(e))?;
        }
        if existing.is_none() {
            stats.n_entries += 1;
        }
        match (live_before_count > 0, live_after > 0) {
            (false, true) => stats.n_docs += 1,
            (true, false) => stats.n_docs = stats.n_docs.saturating_sub(1),
            _ => {}
        }
        tables.space_rows.insert(*space, (record, stats, true));

        let old_hash = existing.as_ref().map(|(old_hash, _, _)| old_hash);
        recon::update(&tables.entries, &mut tables.buckets, space, item_key, old_hash, &hash)
            .map_err(|e| self.err(e))?;
        Ok(Inserted::Applied { seq })
    }

    /// The bytes `author`'s winning entries take in `space`, as this transaction sees them.
    fn usage(&self, tables: &mut Tables<'_>, space: &[u8; 32], author: &PublicKey) -> Result<u64> {
        let key = schema::author_bytes_key(space, author.as_bytes());
        if let Some((used, _)) = tables.author_usage.get(&key) {
            return Ok(*used);
        }
        let stored = tables.author_bytes.get(key.as_slice()).map_err(|e| self.err(e))?;
        let used = stored.map_or(0, |used| used.value());
        tables.author_usage.insert(key, (used, false));
        Ok(used)
    }

    fn add_usage(
        &self,
        tables: &mut Tables<'_>,
        space: &[u8; 32],
        author: &PublicKey,
        delta: i64,
    ) -> Result<()> {
        let used = self.usage(tables, space, author)?.saturating_add_signed(delta);
        tables
            .author_usage
            .insert(schema::author_bytes_key(space, author.as_bytes()), (used, true));
        Ok(())
    }

    /// Refuses a write that would take its author over [`Options::author_quota`] in an
    /// open space; one that shrinks what the author holds always passes.
    fn check_quota(
        &self,
        tables: &mut Tables<'_>,
        record: &SpaceRecord,
        entry: &Entry,
        len: usize,
        old: Option<(PublicKey, usize)>,
        from_elsewhere: bool,
    ) -> Result<()> {
        let limit = self.inner.options.author_quota;
        if limit == 0 || record.mode != SpaceMode::Open {
            return Ok(());
        }
        let used = self.usage(tables, entry.space.as_bytes(), &entry.author)?;
        let freed = old.filter(|(author, _)| *author == entry.author).map_or(0, |(_, len)| len);
        let after = (used + len as u64).saturating_sub(freed as u64);
        if after <= limit || after <= used {
            return Ok(());
        }
        if from_elsewhere {
            self.inner.refusals.quota.fetch_add(1, Ordering::Relaxed);
        }
        Err(Error::QuotaExceeded { space: entry.space, author: entry.author, used, limit })
    }

    // ---- reads ----

    /// The winning entry of a field, tombstones included.
    pub fn get_entry(&self, space: &PublicKey, doc: &str, field: &str) -> Result<Option<Entry>> {
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let key = schema::entry_key(space.as_bytes(), doc, field);
        let row = entries.get(key.as_slice()).map_err(|e| self.err(e))?;
        row.map(|row| self.decode_entry_row(row.value()).map(|(_, _, entry)| entry)).transpose()
    }

    /// A document's live fields (tombstones hidden), with each field's hlc and author;
    /// `None` when it has no live field.
    pub fn get_doc(&self, space: &PublicKey, doc: &str) -> Result<Option<Document>> {
        crate::entry::validate_doc_key(doc)?;
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        self.read_doc(&entries, space, doc)
    }

    fn read_doc(
        &self,
        entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
        space: &PublicKey,
        doc: &str,
    ) -> Result<Option<Document>> {
        let mut prefix = space.as_bytes().to_vec();
        prefix.extend_from_slice(doc.as_bytes());
        prefix.push(0);
        let end = schema::prefix_end(&prefix);
        let mut fields = Document::new();
        for row in
            entries.range::<&[u8]>(bounds(&prefix, end.as_deref())).map_err(|e| self.err(e))?
        {
            let (_, value) = row.map_err(|e| self.err(e))?;
            let (_, _, entry) = self.decode_entry_row(value.value())?;
            if !entry.value.is_null() {
                fields.insert(
                    entry.field,
                    Field { value: entry.value, hlc: entry.hlc, author: entry.author },
                );
            }
        }
        Ok((!fields.is_empty()).then_some(fields))
    }

    /// A document as a JSON object, following doc links to child documents up to `depth`
    /// levels (0: links stay `{"#": key}`). `None` when the document has no live field.
    pub fn get_json(
        &self,
        space: &PublicKey,
        doc: &str,
        depth: usize,
    ) -> Result<Option<serde_json::Value>> {
        crate::entry::validate_doc_key(doc)?;
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        self.read_json(&entries, space, doc, depth)
    }

    fn read_json(
        &self,
        entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
        space: &PublicKey,
        doc: &str,
        depth: usize,
    ) -> Result<Option<serde_json::Value>> {
        let Some(fields) = self.read_doc(entries, space, doc)? else { return Ok(None) };
        let mut object = serde_json::Map::new();
        for (name, field) in fields {
            let json = match &field.value {
                Value::DocLink(child) if depth > 0 => self
                    .read_json(entries, space, child, depth - 1)?
                    .unwrap_or_else(|| field.value.to_json()),
                value => value.to_json(),
            };
            object.insert(name, json);
        }
        Ok(Some(serde_json::Value::Object(object)))
    }

    /// Keys of the documents of a space that start with `prefix` and have a live field, in
    /// key order, after the cursor `after` (exclusive), at most `limit` of them.
    pub fn list_docs(
        &self,
        space: &PublicKey,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let txn = self.begin_read()?;
        let docs = txn.open_table(DOCS).map_err(|e| self.err(e))?;
        let mut start = space.as_bytes().to_vec();
        start.extend_from_slice(prefix.as_bytes());
        let end = schema::prefix_end(&start);
        let cursor = after.map(|after| {
            let mut key = space.as_bytes().to_vec();
            key.extend_from_slice(after.as_bytes());
            key
        });
        let lower = match &cursor {
            Some(cursor) if cursor.as_slice() >= start.as_slice() => {
                Bound::Excluded(cursor.as_slice())
            }
            _ => Bound::Included(start.as_slice()),
        };
        let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::new();
        for row in docs.range::<&[u8]>((lower, upper)).map_err(|e| self.err(e))? {
            if out.len() >= limit {
                break;
            }
            let (key, live) = row.map_err(|e| self.err(e))?;
            if live.value() == 0 {
                continue;
            }
            let doc = std::str::from_utf8(&key.value()[32..])
                .map_err(|_| self.corrupted("document key is not utf-8"))?;
            out.push(doc.to_owned());
        }
        Ok(out)
    }

    /// The changes of a space with a sequence number greater than `after`, in order, at most
    /// `limit` of them.
    pub fn changes_since(
        &self,
        space: &PublicKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Change>> {
        let txn = self.begin_read()?;
        let changes = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let start = seq_key(space.as_bytes(), after);
        let end = schema::prefix_end(space.as_bytes());
        let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::new();
        for row in changes
            .range::<&[u8]>((Bound::Excluded(start.as_slice()), upper))
            .map_err(|e| self.err(e))?
            .take(limit)
        {
            let (key, value) = row.map_err(|e| self.err(e))?;
            let (item, origin) = Origin::split(value.value())
                .ok_or_else(|| self.corrupted("a change has a malformed origin"))?;
            let mut entry_key = space.as_bytes().to_vec();
            entry_key.extend_from_slice(item);
            let row = entries
                .get(entry_key.as_slice())
                .map_err(|e| self.err(e))?
                .ok_or_else(|| self.corrupted("a change points to a missing entry"))?;
            let (_, seq, entry) = self.decode_entry_row(row.value())?;
            let key_seq = key.value().get(32..).and_then(|bytes| <[u8; 8]>::try_from(bytes).ok());
            if key_seq.map(u64::from_be_bytes) != Some(seq) {
                return Err(self.corrupted("a change and its entry disagree on the seq"));
            }
            out.push(Change { seq, entry, origin });
        }
        Ok(out)
    }

    /// A live stream of the changes of `space` after sequence number `after`: stored ones
    /// first, then new ones as they commit, with no gap and no duplicate.
    ///
    /// Stored changes are read on the current tokio runtime's blocking pool; outside a
    /// runtime this is an [`Error::Task`]. Live changes are handed over by the committing
    /// thread; a reader too slow for them goes back to reading the store (see
    /// [`Subscription`]) and never holds up a writer.
    pub fn subscribe(&self, space: &PublicKey, after: u64) -> Result<Subscription> {
        Subscription::new(self.clone(), *space, after)
    }

    /// The subscriptions committed changes are handed to.
    pub(crate) fn live_subscribers(&self) -> &crate::changes::LiveSubscribers {
        &self.inner.live
    }

    // ---- reconciliation ----

    /// The fingerprint of the items of `space` in `[start, end)` (`None`: open end), read from
    /// the aggregates without scanning the range (see the `recon` module).
    pub fn fingerprint(
        &self,
        space: &PublicKey,
        start: Option<&RangeKey>,
        end: Option<&RangeKey>,
    ) -> Result<Fingerprint> {
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let buckets = txn.open_table(BUCKETS).map_err(|e| self.err(e))?;
        let lo = start.map_or_else(Vec::new, |key| schema::item_key(&key.doc, &key.field));
        let hi = end.map(|key| schema::item_key(&key.doc, &key.field));
        let range = ItemRange { lo: &lo, hi: hi.as_deref() };
        recon::fingerprint(&entries, &buckets, space.as_bytes(), range, recon::LEVELS)
            .map_err(|e| self.err(e))
    }

    /// The position of the item `n` places after `start` (0: the first item at or after
    /// `start`), or `None` when fewer items follow. Read from the aggregates like
    /// [`Store::fingerprint`]: use it to split a range into parts of equal size.
    pub fn nth_item(
        &self,
        space: &PublicKey,
        start: Option<&RangeKey>,
        n: u64,
    ) -> Result<Option<RangeKey>> {
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let buckets = txn.open_table(BUCKETS).map_err(|e| self.err(e))?;
        let lo = start.map_or_else(Vec::new, |key| schema::item_key(&key.doc, &key.field));
        let range = ItemRange { lo: &lo, hi: None };
        let found = recon::seek(&entries, &buckets, space.as_bytes(), range, n, recon::LEVELS)
            .map_err(|e| self.err(e))?;
        match found {
            recon::Seek::Counted(_) => Ok(None),
            recon::Seek::Found(item) => {
                let (doc, field) = self.split_item_key(&item)?;
                Ok(Some(RangeKey { doc: doc.to_owned(), field: field.to_owned() }))
            }
        }
    }

    fn split_item_key<'a>(&self, item: &'a [u8]) -> Result<(&'a str, &'a str)> {
        let split = item
            .iter()
            .position(|byte| *byte == 0)
            .ok_or_else(|| self.corrupted("entry key without separator"))?;
        let doc = std::str::from_utf8(&item[..split])
            .map_err(|_| self.corrupted("entry key is not utf-8"))?;
        let field = std::str::from_utf8(&item[split + 1..])
            .map_err(|_| self.corrupted("entry key is not utf-8"))?;
        Ok((doc, field))
    }

    /// The winning entries of `space` in `[start, end)`, in `(doc, field)` order, each in
    /// its encoding ([`Entry::encode`]), as many as fit in `max_bytes` (at least one); and
    /// the position of the first entry of the range left out, if any. One read of the
    /// range, no decoding: for handing a whole range to a peer that holds none of it.
    pub fn recon_entries(
        &self,
        space: &PublicKey,
        start: Option<&RangeKey>,
        end: Option<&RangeKey>,
        max_bytes: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<RangeKey>)> {
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let (lo, hi) = entry_range(space, start, end);
        let mut out = Vec::new();
        let mut used = 0usize;
        for row in entries.range::<&[u8]>(bounds(&lo, hi.as_deref())).map_err(|e| self.err(e))? {
            let (key, value) = row.map_err(|e| self.err(e))?;
            let encoded =
                value.value().get(40..).ok_or_else(|| self.corrupted("short entry row"))?;
            if !out.is_empty() && used + encoded.len() > max_bytes {
                let (doc, field) = self.split_item_key(&key.value()[32..])?;
                let next = RangeKey { doc: doc.to_owned(), field: field.to_owned() };
                return Ok((out, Some(next)));
            }
            used += encoded.len();
            out.push(encoded.to_vec());
        }
        Ok((out, None))
    }

    /// The items of `space` in `[start, end)`, in `(doc, field)` order, at most `limit`.
    pub fn recon_items(
        &self,
        space: &PublicKey,
        start: Option<&RangeKey>,
        end: Option<&RangeKey>,
        limit: usize,
    ) -> Result<Vec<ReconItem>> {
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let (lo, hi) = entry_range(space, start, end);
        let mut out = Vec::new();
        for row in
            entries.range::<&[u8]>(bounds(&lo, hi.as_deref())).map_err(|e| self.err(e))?.take(limit)
        {
            let (key, value) = row.map_err(|e| self.err(e))?;
            let (doc, field) = self.split_item_key(&key.value()[32..])?;
            let hash = value
                .value()
                .get(..32)
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| self.corrupted("short entry row"))?;
            out.push(ReconItem { doc: doc.to_owned(), field: field.to_owned(), hash });
        }
        Ok(out)
    }

    /// A hash of the whole state of a space (its record, statements and winning entries, in
    /// order): equal on two stores exactly when they hold the same space state.
    pub fn state_hash(&self, space: &PublicKey) -> Result<[u8; 32]> {
        let mut hasher = blake3::Hasher::new();
        if let Some(record) = self.space_record(space)? {
            hasher.update(&record.encode());
        }
        for statement in self.statements(space)? {
            hasher.update(&statement.to_bytes());
        }
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let end = schema::prefix_end(space.as_bytes());
        for row in entries
            .range::<&[u8]>(bounds(space.as_bytes(), end.as_deref()))
            .map_err(|e| self.err(e))?
        {
            let (key, value) = row.map_err(|e| self.err(e))?;
            hasher.update(key.value());
            // The hash, not the local seq: seqs differ between peers.
            hasher.update(value.value().get(..32).unwrap_or_default());
        }
        Ok(*hasher.finalize().as_bytes())
    }

    /// Number of winning entries in the store, all spaces together.
    pub fn n_entries(&self) -> Result<u64> {
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        entries.len().map_err(|e| self.err(e))
    }

    /// Decodes an `entries-1` row: hash, seq, entry. Keys are checked once per store.
    /// The bytes (encoded entries) that `author`'s winning entries take in `space`: what
    /// counts against [`Options::author_quota`] in an open space.
    pub fn author_usage(&self, space: &PublicKey, author: &PublicKey) -> Result<u64> {
        let txn = self.begin_read()?;
        let table = txn.open_table(AUTHOR_BYTES).map_err(|e| self.err(e))?;
        let key = schema::author_bytes_key(space.as_bytes(), author.as_bytes());
        let used = table.get(key.as_slice()).map_err(|e| self.err(e))?;
        Ok(used.map_or(0, |used| used.value()))
    }

    /// The spaces where a winning entry links the blob whose binary CID is `cid`, ordered
    /// by id (whoever may read one of them may fetch the blob).
    pub fn blob_link_spaces(&self, cid: &[u8]) -> Result<Vec<PublicKey>> {
        let txn = self.begin_read()?;
        let links = txn.open_table(BLOB_LINKS).map_err(|e| self.err(e))?;
        let from = schema::blob_link_key(cid, &[0; 32]);
        let to = schema::blob_link_key(cid, &[0xFF; 32]);
        let mut spaces = Vec::new();
        for row in links.range(from.as_slice()..=to.as_slice()).map_err(|e| self.err(e))? {
            let (key, _) = row.map_err(|e| self.err(e))?;
            let mut id = [0u8; 32];
            id.copy_from_slice(&key.value()[32..64]);
            let space = PublicKey::from_bytes(&id).map_err(|error| Error::Corrupted {
                path: self.inner.path.clone(),
                reason: format!("a blob-link row names no valid space: {error}"),
            })?;
            spaces.push(space);
        }
        Ok(spaces)
    }

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

/// Items at or above which [`on_cores`] spreads the work over the cores: below it, thread
/// start-up costs more than it saves.
const PARALLEL_FROM: usize = 64;

/// `items.map(work)`, in order, spread over the available cores in equal chunks when there
/// are at least [`PARALLEL_FROM`] items (signing and checking signatures dominate the cost
/// of a large write).
fn on_cores<T: Send, U: Send>(items: Vec<T>, work: impl Fn(T) -> U + Sync) -> Result<Vec<U>> {
    on_chunks(items, |chunk| chunk.into_iter().map(&work).collect())
}

/// Like [`on_cores`], for work done a chunk at a time: `work` gets one chunk of `items`
/// per core (all of them on this thread below [`PARALLEL_FROM`]) and returns one result
/// per item, in order.
fn on_chunks<T: Send, U: Send>(
    items: Vec<T>,
    work: impl Fn(Vec<T>) -> Vec<U> + Sync,
) -> Result<Vec<U>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if items.len() < PARALLEL_FROM || threads < 2 {
        return Ok(work(items));
    }
    let chunk_len = items.len().div_ceil(threads);
    let mut chunks = Vec::new();
    let mut items = items.into_iter();
    loop {
        let chunk: Vec<T> = items.by_ref().take(chunk_len).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let work = &work;
    let per_chunk = std::thread::scope(|scope| {
        let handles: Vec<_> =
            chunks.into_iter().map(|chunk| scope.spawn(move || work(chunk))).collect();
        handles.into_iter().map(|handle| handle.join()).collect::<Result<Vec<_>, _>>()
    });
    let per_chunk =
        per_chunk.map_err(|_| Error::Task { reason: "a worker thread panicked".into() })?;
    Ok(per_chunk.into_iter().flatten().collect())
}

/// The `ENTRIES` keys of `space`'s items in `[start, end)`: the inclusive lower key and
/// the exclusive upper key (`None`: no upper bound).
fn entry_range(
    space: &PublicKey,
    start: Option<&RangeKey>,
    end: Option<&RangeKey>,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut lo = space.as_bytes().to_vec();
    if let Some(key) = start {
        lo.extend_from_slice(&schema::item_key(&key.doc, &key.field));
    }
    let hi = match end {
        Some(key) => Some(schema::entry_key(space.as_bytes(), &key.doc, &key.field)),
        None => schema::prefix_end(space.as_bytes()),
    };
    (lo, hi)
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

/// Opens (or creates) the database file. With `check_integrity`, every page's checksum is
/// verified first: redb trusts a cleanly closed file and may panic on one damaged while it
/// was closed, where the check reports [`Error::Corrupted`] instead.
fn open_file(path: &Path, options: &Options, check_integrity: bool) -> Result<redb::Database> {
    let mut builder = redb::Database::builder();
    builder.set_check_integrity_on_open(check_integrity);
    if let Some(cache_size) = options.cache_size {
        builder.set_cache_size(cache_size);
    }
    builder.create(path).map_err(|error| Error::redb(path, error))
}

/// The persisted clock, last change sequence number and reserved sequence numbers.
fn read_writer_state(db: &redb::Database, path: &Path) -> Result<(Hlc, u64, u64)> {
    let hlc = schema::read_meta::<{ Hlc::LEN }>(db, path, "hlc")?
        .map(Hlc::from_bytes)
        .unwrap_or_default();
    let last_seq = schema::read_meta::<8>(db, path, "last_seq")?.map_or(0, u64::from_be_bytes);
    let reserved = schema::read_meta::<8>(db, path, "seq_reserved")?.map_or(0, u64::from_be_bytes);
    Ok((hlc, last_seq, reserved))
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

/// Nesting deeper than this is refused (it would also exceed the doc key length).
const MAX_JSON_DEPTH: usize = 32;

fn flatten_json(
    doc: &str,
    object: &serde_json::Value,
    out: &mut Vec<(String, String, Value)>,
    depth: usize,
) -> Result<()> {
    let serde_json::Value::Object(map) = object else {
        return Err(Error::InvalidValue {
            reason: format!("document {doc:?} must be a JSON object"),
        });
    };
    if depth > MAX_JSON_DEPTH {
        return Err(Error::InvalidValue {
            reason: format!("document {doc:?} is nested too deeply"),
        });
    }
    for (field, json) in map {
        crate::entry::validate_field(field)?;
        let value = match json {
            serde_json::Value::Object(inner) => match json_link(inner)? {
                Some(value) => value,
                None => {
                    let child = format!("{doc}/{field}");
                    crate::entry::validate_doc_key(&child)?;
                    flatten_json(&child, json, out, depth + 1)?;
                    Value::DocLink(child)
                }
            },
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(bool) => Value::Bool(*bool),
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(int) => Value::Int(int),
                None => Value::float(number.as_f64().unwrap_or(f64::NAN))?,
            },
            serde_json::Value::String(string) => Value::String(string.clone()),
            serde_json::Value::Array(_) => {
                return Err(Error::InvalidValue {
                    reason: format!("field {field:?} of {doc:?}: arrays are not supported"),
                });
            }
        };
        out.push((doc.to_owned(), field.clone(), value));
    }
    Ok(())
}

/// Reads `{"#": key}`, `{"/": cid}` and `{"/": {"bytes": base64}}`.
fn json_link(map: &serde_json::Map<String, serde_json::Value>) -> Result<Option<Value>> {
    if map.len() != 1 {
        return Ok(None);
    }
    if let Some(serde_json::Value::String(key)) = map.get("#") {
        crate::entry::validate_doc_key(key)?;
        return Ok(Some(Value::DocLink(key.clone())));
    }
    match map.get("/") {
        Some(serde_json::Value::String(cid)) => Value::blob_link_str(cid).map(Some),
        Some(serde_json::Value::Object(inner)) => match inner.get("bytes") {
            Some(serde_json::Value::String(base64)) if inner.len() == 1 => {
                let bytes =
                    data_encoding::BASE64_NOPAD.decode(base64.as_bytes()).map_err(|error| {
                        Error::InvalidValue { reason: format!("bad base64 bytes: {error}") }
                    })?;
                Ok(Some(Value::Bytes(bytes)))
            }
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// The CID bytes of a blob link value.
fn blob_link_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BlobLink(cid) => Some(cid.as_slice()),
        _ => None,
    }
}
