//! Sealed revocations in the store: the entries a revoker keeps when it seals a
//! revocation ([`Store::kept_items`]), and the entries held already that a revocation
//! arriving later cuts off, which leave the store (see `cosmic_auth::check_item_access`).
//!
//! Every node applies the same statements to the same entries, so after a revocation all
//! of them hold the same set, whatever order entries and statements came in: an entry
//! taken in before the revocation arrived and not valid under it is removed here, and the
//! winner it had replaced comes back from the peers that hold it at the next
//! reconciliation.

use std::collections::BTreeSet;

use cosmic_auth::{AuthorId, ItemId, SpaceId, Statement, check_issuer};

use super::statements::{statement_id, statement_row};
use super::*;

/// The id a sealed revocation names an entry by: the first 16 bytes of its hash
/// ([`Entry::hash`]).
pub(crate) fn item_id(hash: &[u8; 32]) -> ItemId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash[..16]);
    id
}

/// An entry a revocation cut off, as read from its row.
struct CutOff {
    key: Vec<u8>,
    hash: [u8; 32],
    seq: u64,
    entry: Entry,
}

impl Store {
    /// The ids of the items held in `space` that a sealed revocation of `subject`'s
    /// grants, issued at `issued_at`, should keep: the entries dated before `issued_at`
    /// whose author is `subject` or holds a grant that leads back to `subject` (an admin's
    /// revocation cuts the rights it delegated too), and the statements those authors
    /// issued before then. Sorted; a revoker signs them with `SpaceKey::seal` or
    /// `AuthorKey::seal`.
    pub fn kept_items(
        &self,
        space: &SpaceId,
        subject: &AuthorId,
        issued_at: Timestamp,
    ) -> Result<Vec<ItemId>> {
        let txn = self.begin_read()?;
        let statements = {
            let table = txn.open_table(STATEMENTS).map_err(|e| self.err(e))?;
            read_statements(&table, space).map_err(|error| self.map_read_error(error))?
        };
        let affected = delegated_from(space, [*subject], &statements);
        // The statements those authors issued: grants, which what they granted rests on,
        // and revocations, which would otherwise fall with their issuer.
        let mut kept: Vec<ItemId> = statements
            .iter()
            .filter(|signed| {
                let statement = signed.statement();
                let at = match statement {
                    Statement::Grant(grant) => grant.issued_at,
                    Statement::Revoke(revocation) => revocation.issued_at,
                };
                affected.contains(statement.issuer()) && at < issued_at
            })
            .map(|signed| statement_id(&statement_row(signed).0))
            .collect();
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let end = schema::prefix_end(space.as_bytes());
        for row in entries
            .range::<&[u8]>(bounds(space.as_bytes(), end.as_deref()))
            .map_err(|e| self.err(e))?
        {
            let (_, value) = row.map_err(|e| self.err(e))?;
            let (hash, _, entry) = self.decode_entry_row(value.value())?;
            if affected.contains(&entry.author) && entry.hlc.millis < issued_at.0 {
                kept.push(item_id(&hash));
            }
        }
        kept.sort_unstable();
        Ok(kept)
    }

    /// Removes the entries of `space` that are no longer valid now that revocations of
    /// `subjects` are held (the space's statements in `tables` already include them).
    /// Returns how many left.
    pub(super) fn cut_off(
        &self,
        tables: &mut Tables<'_>,
        space: &PublicKey,
        subjects: &BTreeSet<AuthorId>,
    ) -> Result<u64> {
        // Who may be affected is read before statements go: a grant cut off now takes
        // with it the entries of those it was given to. Statements go whatever the space's
        // mode, and before its record has arrived.
        let before = self.space_statements(tables, space)?.to_vec();
        let affected = delegated_from(space, subjects.iter().copied(), &before);
        let statements = self.cut_off_statements(tables, space)?;
        let (record, mut stats) = match self.space_row(tables, space) {
            Ok(row) => row,
            Err(Error::UnknownSpace { .. }) => return Ok(0),
            Err(error) => return Err(error),
        };
        if record.mode != SpaceMode::Restricted {
            return Ok(0);
        }
        let mut gone = Vec::new();
        let end = schema::prefix_end(space.as_bytes());
        let range = bounds(space.as_bytes(), end.as_deref());
        for row in tables.entries.range::<&[u8]>(range).map_err(|e| self.err(e))? {
            let (key, value) = row.map_err(|e| self.err(e))?;
            let (hash, seq, entry) = self.decode_entry_row(value.value())?;
            if !affected.contains(&entry.author) {
                continue;
            }
            let verdict = check_item_access(
                space,
                record.mode,
                &entry.author,
                Right::Write,
                Timestamp(entry.hlc.millis),
                &item_id(&hash),
                statements.iter().map(SignedStatement::statement),
            );
            if let Err(reason) = verdict {
                tracing::info!(
                    %space, author = %entry.author, doc = %entry.doc, field = %entry.field,
                    %reason, "an entry held is cut off by a revocation"
                );
                gone.push(CutOff { key: key.value().to_vec(), hash, seq, entry });
            }
        }
        for cut in &gone {
            self.remove_entry(tables, space.as_bytes(), cut, &mut stats)?;
        }
        if !gone.is_empty() {
            tables.space_rows.insert(*space.as_bytes(), (record, stats, true));
            self.inner.refusals.cut_off.fetch_add(gone.len() as u64, Ordering::Relaxed);
        }
        Ok(gone.len() as u64)
    }

    /// Removes the statements of `space` that the space key's revocations now end (what an
    /// admin it revoked issued from its revocation on, or dated back past a sealed one),
    /// and those that rested on them, until none is left to remove; returns the statements
    /// kept (see `cosmic_auth::check_issuer`).
    fn cut_off_statements(
        &self,
        tables: &mut Tables<'_>,
        space: &PublicKey,
    ) -> Result<Vec<SignedStatement>> {
        let mut held = self.space_statements(tables, space)?.to_vec();
        loop {
            let statements: Vec<&Statement> = held.iter().map(SignedStatement::statement).collect();
            let gone: Vec<usize> = (0..held.len())
                .filter(|&idx| {
                    let (key, _) = statement_row(&held[idx]);
                    let others = statements.iter().enumerate().filter(|(other, _)| *other != idx);
                    let others = others.map(|(_, statement)| *statement);
                    check_issuer(statements[idx], &statement_id(&key), others).is_err()
                })
                .collect();
            if gone.is_empty() {
                break;
            }
            for &idx in gone.iter().rev() {
                let signed = held.remove(idx);
                tracing::info!(
                    %space, issuer = %signed.statement().issuer(),
                    "a statement held is cut off by a revocation"
                );
                let (key, _) = statement_row(&signed);
                tables.statements.remove(key.as_slice()).map_err(|e| self.err(e))?;
                self.inner.refusals.statements_cut_off.fetch_add(1, Ordering::Relaxed);
            }
        }
        tables.statements_by_space.insert(*space.as_bytes(), held.clone());
        Ok(held)
    }

    /// Takes one entry out of every table that counts it.
    fn remove_entry(
        &self,
        tables: &mut Tables<'_>,
        space: &[u8; 32],
        cut: &CutOff,
        stats: &mut SpaceStats,
    ) -> Result<()> {
        tables.entries.remove(cut.key.as_slice()).map_err(|e| self.err(e))?;
        tables.changes.remove(seq_key(space, cut.seq).as_slice()).map_err(|e| self.err(e))?;
        recon::remove(&mut tables.buckets, space, &cut.key[32..], &cut.hash)
            .map_err(|e| self.err(e))?;
        let len = cut.entry.encode().len() as i64;
        self.add_usage(tables, space, &cut.entry.author, -len)?;
        self.count_links(tables, space, Some(&cut.entry), None)?;
        self.count_live(tables, space, Some(&cut.entry), None, stats)
    }
}

/// `subjects` and every author holding a grant whose chain leads back to one of them: the
/// authors whose entries may rest on a grant to `subjects`.
fn delegated_from(
    space: &SpaceId,
    subjects: impl IntoIterator<Item = AuthorId>,
    statements: &[SignedStatement],
) -> BTreeSet<AuthorId> {
    let mut affected: BTreeSet<AuthorId> = subjects.into_iter().collect();
    let mut queue: Vec<AuthorId> = affected.iter().copied().collect();
    while let Some(issuer) = queue.pop() {
        for signed in statements {
            if let Statement::Grant(grant) = signed.statement()
                && grant.space == *space
                && grant.issuer == issuer
                && affected.insert(grant.subject)
            {
                queue.push(grant.subject);
            }
        }
    }
    affected
}
