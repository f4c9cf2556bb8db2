//! [`ItemSource`]: the storage reconciliation works on, and its implementation for the
//! store.

use cosmic_auth::{PublicKey, SignedStatement};
use cosmic_store::{Entry, Fingerprint, Inserted, Origin, RangeKey, ReconItem, SpaceRecord, Store};

use crate::wire::{Part, Range};

/// The storage reconciliation works on.
pub trait ItemSource {
    /// The fingerprint of the items in `range`.
    fn fingerprint(&self, space: &PublicKey, range: &Range) -> cosmic_store::Result<Fingerprint>;
    /// The item `n` places at or after `lower`, if any.
    fn nth_item(
        &self,
        space: &PublicKey,
        lower: Option<&RangeKey>,
        n: u64,
    ) -> cosmic_store::Result<Option<RangeKey>>;
    /// The items in `range`, at most `limit`.
    fn items(
        &self,
        space: &PublicKey,
        range: &Range,
        limit: usize,
    ) -> cosmic_store::Result<Vec<ReconItem>>;
    /// The winning entry at `key`.
    fn entry(&self, space: &PublicKey, key: &RangeKey) -> cosmic_store::Result<Option<Entry>>;
    /// The winning entries in `range`, encoded, as many as fit in `max_bytes` (at least
    /// one), and the position of the first one left out, if any.
    fn entries(
        &self,
        space: &PublicKey,
        range: &Range,
        max_bytes: usize,
    ) -> cosmic_store::Result<(Vec<Vec<u8>>, Option<RangeKey>)>;
    /// The space record and statements to send, if the space is held.
    fn space_part(&self, space: &PublicKey) -> cosmic_store::Result<Option<Part>>;
    /// Merges a space record; whether it changed the space.
    fn insert_space_record(&self, record: &SpaceRecord) -> cosmic_store::Result<bool>;
    /// Merges capability statements of one space, all checks included, in one batch whose
    /// statements may depend on each other in any order; per statement, whether it was new.
    fn insert_statements(
        &self,
        statements: &[SignedStatement],
    ) -> cosmic_store::Result<Vec<cosmic_store::Result<bool>>>;
    /// Merges entries from `origin`, all checks included.
    fn insert_entries(
        &self,
        entries: Vec<Entry>,
        origin: &Origin,
    ) -> cosmic_store::Result<Vec<cosmic_store::Result<Inserted>>>;
}

impl ItemSource for Store {
    fn fingerprint(&self, space: &PublicKey, range: &Range) -> cosmic_store::Result<Fingerprint> {
        Store::fingerprint(self, space, range.lower.as_ref(), range.upper.as_ref())
    }

    fn nth_item(
        &self,
        space: &PublicKey,
        lower: Option<&RangeKey>,
        n: u64,
    ) -> cosmic_store::Result<Option<RangeKey>> {
        Store::nth_item(self, space, lower, n)
    }

    fn items(
        &self,
        space: &PublicKey,
        range: &Range,
        limit: usize,
    ) -> cosmic_store::Result<Vec<ReconItem>> {
        self.recon_items(space, range.lower.as_ref(), range.upper.as_ref(), limit)
    }

    fn entry(&self, space: &PublicKey, key: &RangeKey) -> cosmic_store::Result<Option<Entry>> {
        self.get_entry(space, &key.doc, &key.field)
    }

    fn entries(
        &self,
        space: &PublicKey,
        range: &Range,
        max_bytes: usize,
    ) -> cosmic_store::Result<(Vec<Vec<u8>>, Option<RangeKey>)> {
        self.recon_entries(space, range.lower.as_ref(), range.upper.as_ref(), max_bytes)
    }

    fn space_part(&self, space: &PublicKey) -> cosmic_store::Result<Option<Part>> {
        let Some(record) = self.space_record(space)? else { return Ok(None) };
        let statements = self.statements(space)?.iter().map(SignedStatement::to_bytes).collect();
        Ok(Some(Part::Space { record: record.encode(), statements }))
    }

    fn insert_space_record(&self, record: &SpaceRecord) -> cosmic_store::Result<bool> {
        Store::insert_space_record(self, record)
    }

    fn insert_statements(
        &self,
        statements: &[SignedStatement],
    ) -> cosmic_store::Result<Vec<cosmic_store::Result<bool>>> {
        Store::insert_statements(self, statements)
    }

    fn insert_entries(
        &self,
        entries: Vec<Entry>,
        origin: &Origin,
    ) -> cosmic_store::Result<Vec<cosmic_store::Result<Inserted>>> {
        self.insert_batch_from(entries, origin.clone())
    }
}
