//! Capability statements: a statement is kept only when its signature verifies and its
//! issuer may issue it (`cosmic_auth::check_issuer`), judged against the space's
//! statements already held.
//!
//! The issuer rule is monotone (more statements held never turn a yes into a no), so every
//! node that is offered the same statements ends up holding the same ones, whatever order
//! they come in: a statement refused because its issuer's own grant has not arrived yet is
//! accepted when a later reconciliation offers it again.

use std::collections::{BTreeMap, BTreeSet};

use redb::ReadableTable as _;

use std::sync::atomic::Ordering;

use cosmic_auth::{
    AccessDenied, AuthorId, ItemId, PublicKey, SignedStatement, Statement, Timestamp, check_issuer,
};

use super::{Store, Tables};
use crate::schema::STATEMENTS;
use crate::{Error, Result};

impl Store {
    /// Inserts a capability statement (a grant or a revocation) into its space; returns
    /// whether it was new.
    ///
    /// Its signature must verify ([`Error::BadStatement`]), and its issuer must be the
    /// space key or an admin of the space at the statement's own time among the statements
    /// held ([`Error::UnauthorizedStatement`]; see `cosmic_auth::check_issuer`). What a
    /// kept statement grants is decided by `cosmic_auth::check_access` when entries are
    /// inserted. [`Store::insert_statements`] inserts a batch whose statements may depend
    /// on each other.
    pub fn insert_statement(&self, statement: &SignedStatement) -> Result<bool> {
        let mut results = self.insert_statements(std::slice::from_ref(statement))?;
        results.pop().unwrap_or(Ok(false))
    }

    /// Inserts capability statements in one transaction, each judged as by
    /// [`Store::insert_statement`]; returns one result per statement, in order (`Ok(true)`:
    /// new, `Ok(false)`: held already). In the same transaction, entries held that a new
    /// revocation ends leave the store (see `Store::kept_items`). The outer error is a
    /// storage failure, after which nothing of the batch is kept.
    ///
    /// A statement may lean on another of the same batch wherever it stands (an admin's
    /// grant listed after the grants that admin issued, as reconciliation lists statements
    /// by hash): the batch is taken in time order, and gone through again while that makes
    /// progress. Statements held already cost a read, never a write.
    pub fn insert_statements(&self, statements: &[SignedStatement]) -> Result<Vec<Result<bool>>> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = statements.iter().map(statement_row).collect();
        let mut results = self.prechecked(statements, &rows)?;
        let mut pending: Vec<usize> =
            (0..statements.len()).filter(|&idx| results[idx].is_none()).collect();
        // An issuer's own admin grant is issued no later than what it issues (else it was
        // not admin then), so in time order one pass mostly suffices, whatever order the
        // batch came in; equal times may need another.
        pending.sort_by_key(|&idx| issued_at(&statements[idx]));
        if !pending.is_empty() {
            self.write_txn(|_, tables, _| {
                let mut revoked: BTreeMap<PublicKey, BTreeSet<AuthorId>> = BTreeMap::new();
                loop {
                    let (progress, refused) = self.insert_pass(
                        tables,
                        statements,
                        &rows,
                        &pending,
                        &mut results,
                        &mut revoked,
                    )?;
                    if !progress {
                        for (statement_idx, reason) in refused {
                            let refusal = self.refused(&statements[statement_idx], reason);
                            results[statement_idx] = Some(Err(refusal));
                        }
                        break;
                    }
                    pending = refused.into_iter().map(|(statement_idx, _)| statement_idx).collect();
                }
                // What the new revocations end leaves in the same transaction.
                for (space, subjects) in &revoked {
                    self.cut_off(tables, space, subjects)?;
                }
                Ok(())
            })?;
        }
        Ok(results
            .into_iter()
            .map(|result| result.expect("every statement was decided above"))
            .collect())
    }

    /// One pass over the `pending` statements of a batch: keeps those whose issuer may
    /// issue them given what is held (the batch's earlier ones included), noting the
    /// subjects of new revocations in `revoked`. Returns whether any was kept, and the
    /// refused ones with their reasons.
    fn insert_pass(
        &self,
        tables: &mut Tables<'_>,
        statements: &[SignedStatement],
        rows: &[(Vec<u8>, Vec<u8>)],
        pending: &[usize],
        results: &mut [Option<Result<bool>>],
        revoked: &mut BTreeMap<PublicKey, BTreeSet<AuthorId>>,
    ) -> Result<(bool, Vec<(usize, AccessDenied)>)> {
        let mut progress = false;
        let mut refused = Vec::new();
        for &statement_idx in pending {
            let signed = &statements[statement_idx];
            let (key, bytes) = &rows[statement_idx];
            // The same statement twice in one batch: the second is held already.
            if tables.statements.get(key.as_slice()).map_err(|e| self.err(e))?.is_some() {
                results[statement_idx] = Some(Ok(false));
                continue;
            }
            let space = *signed.statement().space();
            self.space_statements(tables, &space)?;
            let held = tables
                .statements_by_space
                .get_mut(space.as_bytes())
                .expect("the space's statements were loaded just above");
            let id = statement_id(key);
            match check_issuer(signed.statement(), &id, held.iter().map(SignedStatement::statement))
            {
                Ok(()) => {
                    tables
                        .statements
                        .insert(key.as_slice(), bytes.as_slice())
                        .map_err(|e| self.err(e))?;
                    held.push(signed.clone());
                    if let Statement::Revoke(revocation) = signed.statement() {
                        revoked.entry(space).or_default().insert(revocation.subject);
                    }
                    results[statement_idx] = Some(Ok(true));
                    progress = true;
                }
                Err(reason) => refused.push((statement_idx, reason)),
            }
        }
        Ok((progress, refused))
    }

    /// Counts and logs a refused statement; the error to answer with.
    fn refused(&self, signed: &SignedStatement, reason: AccessDenied) -> Error {
        let statement = signed.statement();
        tracing::debug!(
            space = %statement.space(), issuer = %statement.issuer(), %reason,
            "a statement is refused"
        );
        self.inner.refusals.statements_refused.fetch_add(1, Ordering::Relaxed);
        Error::UnauthorizedStatement {
            space: *statement.space(),
            issuer: *statement.issuer(),
            reason: Box::new(reason),
        }
    }

    /// Decides, before the write transaction, what needs none: statements held already
    /// (`Ok(false)`) and badly signed ones (signatures are the costly part, checked
    /// outside the writer lock); `None` for the rest.
    fn prechecked(
        &self,
        statements: &[SignedStatement],
        rows: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<Option<Result<bool>>>> {
        let mut results: Vec<Option<Result<bool>>> = statements.iter().map(|_| None).collect();
        {
            let txn = self.begin_read()?;
            let table = txn.open_table(STATEMENTS).map_err(|e| self.err(e))?;
            for ((key, _), result) in rows.iter().zip(&mut results) {
                if table.get(key.as_slice()).map_err(|e| self.err(e))?.is_some() {
                    *result = Some(Ok(false));
                }
            }
        }
        for (statement, result) in statements.iter().zip(&mut results) {
            if result.is_none()
                && let Err(source) = statement.verify()
            {
                let space = *statement.statement().space();
                *result = Some(Err(Error::BadStatement { space, source: Box::new(source) }));
            }
        }
        Ok(results)
    }
}

fn issued_at(statement: &SignedStatement) -> Timestamp {
    match statement.statement() {
        Statement::Grant(grant) => grant.issued_at,
        Statement::Revoke(revocation) => revocation.issued_at,
    }
}

/// The id a sealed revocation keeps a statement by: the first 16 bytes of the BLAKE3 hash
/// of its signed encoding, from its row key.
pub(super) fn statement_id(key: &[u8]) -> ItemId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&key[32..48]);
    id
}

/// The row of a statement in `statements-1`: key `space (32) ++ blake3(bytes)`, value its
/// encoding.
pub(super) fn statement_row(statement: &SignedStatement) -> (Vec<u8>, Vec<u8>) {
    let bytes = statement.to_bytes();
    let space: &PublicKey = statement.statement().space();
    let mut key = space.as_bytes().to_vec();
    key.extend_from_slice(blake3::hash(&bytes).as_bytes());
    (key, bytes)
}
