//! Opening a store: the file, its integrity check, the writer's saved state, and reopening
//! after an I/O failure.

use super::*;

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

    pub(super) fn from_database(
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

    /// After an I/O failure, closes the database and opens it again: redb repairs the file
    /// from its last commit, and the handle takes reads and writes again. Fails (and is
    /// tried again by the next operation) while the cause, a full disk say, persists.
    pub(super) fn recover_if_failed(&self) -> Result<()> {
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
}

/// Opens (or creates) the database file. With `check_integrity`, every page's checksum is
/// verified first: redb trusts a cleanly closed file and may panic on one damaged while it
/// was closed, where the check reports [`Error::Corrupted`] instead.
pub(super) fn open_file(
    path: &Path,
    options: &Options,
    check_integrity: bool,
) -> Result<redb::Database> {
    let mut builder = redb::Database::builder();
    builder.set_check_integrity_on_open(check_integrity);
    if let Some(cache_size) = options.cache_size {
        builder.set_cache_size(cache_size);
    }
    builder.create(path).map_err(|error| Error::redb(path, error))
}

/// The persisted clock, last change sequence number and reserved sequence numbers.
pub(super) fn read_writer_state(db: &redb::Database, path: &Path) -> Result<(Hlc, u64, u64)> {
    let hlc = schema::read_meta::<{ Hlc::LEN }>(db, path, "hlc")?
        .map(Hlc::from_bytes)
        .unwrap_or_default();
    let last_seq = schema::read_meta::<8>(db, path, "last_seq")?.map_or(0, u64::from_be_bytes);
    let reserved = schema::read_meta::<8>(db, path, "seq_reserved")?.map_or(0, u64::from_be_bytes);
    Ok((hlc, last_seq, reserved))
}
