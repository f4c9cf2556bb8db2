//! What reconciliation reads: range fingerprints, the item at a position, items and stored
//! entries of a range, and the state hash.

use super::*;

impl Store {
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

    pub(super) fn split_item_key<'a>(&self, item: &'a [u8]) -> Result<(&'a str, &'a str)> {
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
}

/// The `ENTRIES` keys of `space`'s items in `[start, end)`: the inclusive lower key and
/// the exclusive upper key (`None`: no upper bound).
pub(super) fn entry_range(
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
