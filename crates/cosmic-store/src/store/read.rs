//! Queries: entries, documents, listings, changes and subscriptions, statistics.

use super::*;

impl Store {
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

    pub(super) fn read_doc(
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
}
