//! Applying one entry inside a write transaction: access, last-writer-wins, the tables it
//! touches, blob links and author quotas.

use super::*;

impl Store {
    /// Merges one verified entry inside a write transaction. `inserted` is the origin of an
    /// entry signed elsewhere, `None` for one this store just stamped.
    pub(super) fn apply(
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
        let encoded = entry.encode();
        let hash = *blake3::hash(&encoded).as_bytes();
        let (record, mut stats) = self.space_of(tables, entry, &hash, inserted.is_some())?;
        self.observe(entry.hlc);

        let key = schema::entry_key(space, &entry.doc, &entry.field);
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
        let old = existing.as_ref().map(|(_, _, old)| old);
        self.count_links(tables, space, old, Some(entry))?;
        self.count_live(tables, space, old, Some(entry), &mut stats)?;
        tables.space_rows.insert(*space, (record, stats, true));

        let old_hash = existing.as_ref().map(|(old_hash, _, _)| old_hash);
        recon::update(&tables.entries, &mut tables.buckets, space, item_key, old_hash, &hash)
            .map_err(|e| self.err(e))?;
        Ok(Inserted::Applied { seq })
    }

    /// The record and stats of `entry`'s space (read once per transaction), after checking,
    /// in a restricted space, that its author may write there at its time (`hash`: the
    /// entry's, which sealed revocations name it by).
    fn space_of(
        &self,
        tables: &mut Tables<'_>,
        entry: &Entry,
        hash: &[u8; 32],
        from_elsewhere: bool,
    ) -> Result<(SpaceRecord, SpaceStats)> {
        let (record, stats) = self.space_row(tables, &entry.space)?;
        if record.mode == SpaceMode::Restricted {
            let statements = self.space_statements(tables, &entry.space)?;
            let at = Timestamp(entry.hlc.millis);
            check_item_access(
                &entry.space,
                record.mode,
                &entry.author,
                Right::Write,
                at,
                &seal::item_id(hash),
                statements.iter().map(SignedStatement::statement),
            )
            .map_err(|reason| {
                if from_elsewhere {
                    let counters = &self.inner.refusals;
                    let counter = match reason {
                        AccessDenied::Revoked { .. } | AccessDenied::NotKept { .. } => {
                            &counters.revoked
                        }
                        _ => &counters.no_right,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Error::AccessDenied {
                    space: entry.space,
                    author: entry.author,
                    reason: Box::new(reason),
                }
            })?;
        }
        Ok((record, stats))
    }

    /// The record and stats of `space`, read once per transaction.
    pub(super) fn space_row(
        &self,
        tables: &mut Tables<'_>,
        space: &PublicKey,
    ) -> Result<(SpaceRecord, SpaceStats)> {
        if let Some((record, stats, _)) = tables.space_rows.get(space.as_bytes()) {
            return Ok((record.clone(), *stats));
        }
        let (record, stats) = match tables.spaces.get(space.as_bytes()).map_err(|e| self.err(e))? {
            Some(bytes) => decode_space_row(bytes.value())?,
            None => return Err(Error::UnknownSpace { space: *space }),
        };
        tables.space_rows.insert(*space.as_bytes(), (record.clone(), stats, false));
        Ok((record, stats))
    }

    /// The capability statements of `space`, read once per transaction (kept statements
    /// had their signatures checked before they were stored).
    pub(super) fn space_statements<'t>(
        &self,
        tables: &'t mut Tables<'_>,
        space: &PublicKey,
    ) -> Result<&'t [SignedStatement]> {
        if !tables.statements_by_space.contains_key(space.as_bytes()) {
            let statements = read_statements(&tables.statements, space)
                .map_err(|error| self.map_read_error(error))?;
            tables.statements_by_space.insert(*space.as_bytes(), statements);
        }
        Ok(tables.statements_by_space.get(space.as_bytes()).map_or(&[][..], Vec::as_slice))
    }

    /// Counts the blob link `entry` makes, and uncounts the one of the entry it replaces
    /// (`entry` `None`: `old` leaves the store).
    pub(super) fn count_links(
        &self,
        tables: &mut Tables<'_>,
        space: &[u8; 32],
        old: Option<&Entry>,
        entry: Option<&Entry>,
    ) -> Result<()> {
        let old_link = old.and_then(|old| blob_link_of(&old.value));
        let new_link = entry.and_then(|entry| blob_link_of(&entry.value));
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
        Ok(())
    }

    /// Keeps the count of live (non-null) fields of the document, and the space's entry and
    /// live-document counts, as `entry` replaces `old` (`entry` `None`: `old` leaves the
    /// store).
    pub(super) fn count_live(
        &self,
        tables: &mut Tables<'_>,
        space: &[u8; 32],
        old: Option<&Entry>,
        entry: Option<&Entry>,
        stats: &mut SpaceStats,
    ) -> Result<()> {
        let old_live = old.is_some_and(|old| !old.value.is_null());
        let new_live = entry.is_some_and(|entry| !entry.value.is_null());
        let Some(doc) = entry.or(old).map(|either| either.doc.as_str()) else { return Ok(()) };
        let mut doc_key = space.to_vec();
        doc_key.extend_from_slice(doc.as_bytes());
        let live_before =
            tables.docs.get(doc_key.as_slice()).map_err(|e| self.err(e))?.map(|v| v.value());
        let live_before_count = live_before.unwrap_or(0);
        let live_after =
            (live_before_count + u64::from(new_live)).saturating_sub(u64::from(old_live));
        if live_before.is_none() || live_after != live_before_count {
            tables.docs.insert(doc_key.as_slice(), live_after).map_err(|e| self.err(e))?;
        }
        match (old, entry) {
            (None, Some(_)) => stats.n_entries += 1,
            (Some(_), None) => stats.n_entries = stats.n_entries.saturating_sub(1),
            _ => {}
        }
        match (live_before_count > 0, live_after > 0) {
            (false, true) => stats.n_docs += 1,
            (true, false) => stats.n_docs = stats.n_docs.saturating_sub(1),
            _ => {}
        }
        Ok(())
    }

    /// The bytes `author`'s winning entries take in `space`, as this transaction sees them.
    pub(super) fn usage(
        &self,
        tables: &mut Tables<'_>,
        space: &[u8; 32],
        author: &PublicKey,
    ) -> Result<u64> {
        let key = schema::author_bytes_key(space, author.as_bytes());
        if let Some((used, _)) = tables.author_usage.get(&key) {
            return Ok(*used);
        }
        let stored = tables.author_bytes.get(key.as_slice()).map_err(|e| self.err(e))?;
        let used = stored.map_or(0, |used| used.value());
        tables.author_usage.insert(key, (used, false));
        Ok(used)
    }

    pub(super) fn add_usage(
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
    pub(super) fn check_quota(
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
}

/// The CID bytes of a blob link value.
pub(super) fn blob_link_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BlobLink(cid) => Some(cid.as_slice()),
        _ => None,
    }
}
