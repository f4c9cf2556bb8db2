//! Writing: local writes stamped and signed, entries from elsewhere checked (signatures in
//! batches across the cores), and the write transaction that applies them.

use super::*;

impl Store {
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

    pub(super) fn write_many(
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
    pub(super) fn check_entries(&self, entries: Vec<Entry>) -> Result<Vec<Result<Entry>>> {
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
    pub(super) fn write_txn<T>(
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
            let mut tables = self.open_tables(&txn)?;
            let result = body(&mut state, &mut tables, wall)?;
            self.write_back(&mut tables)?;
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

    /// The tables of a write transaction, and its caches, empty.
    fn open_tables<'txn>(&self, txn: &'txn redb::WriteTransaction) -> Result<Tables<'txn>> {
        Ok(Tables {
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
        })
    }

    /// Writes back, once, the space rows and author usages the transaction changed.
    fn write_back(&self, tables: &mut Tables<'_>) -> Result<()> {
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
                    tables.author_bytes.insert(key.as_slice(), used).map_err(|e| self.err(e))?;
                }
            }
        }
        Ok(())
    }
}

/// Items at or above which [`on_cores`] spreads the work over the cores: below it, thread
/// start-up costs more than it saves.
pub(super) const PARALLEL_FROM: usize = 64;

/// `items.map(work)`, in order, spread over the available cores in equal chunks when there
/// are at least [`PARALLEL_FROM`] items (signing and checking signatures dominate the cost
/// of a large write).
pub(super) fn on_cores<T: Send, U: Send>(
    items: Vec<T>,
    work: impl Fn(T) -> U + Sync,
) -> Result<Vec<U>> {
    on_chunks(items, |chunk| chunk.into_iter().map(&work).collect())
}

/// Like [`on_cores`], for work done a chunk at a time: `work` gets one chunk of `items`
/// per core (all of them on this thread below [`PARALLEL_FROM`]) and returns one result
/// per item, in order.
pub(super) fn on_chunks<T: Send, U: Send>(
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
