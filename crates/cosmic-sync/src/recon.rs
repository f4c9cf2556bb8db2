//! Range-based set reconciliation as a pure, transport-independent state machine.
//!
//! The items of a space are its fields, each with the hash of its winning entry, ordered by
//! `(doc, field)`. Two peers compare the fingerprint (sum of hashes and count) of a range;
//! where they differ, the side holding more than [`Limits::max_items`] items splits the range
//! into [`Limits::branches`] parts of equal size and sends their fingerprints, and a side
//! holding few items lists them. A listing is answered with the entries the other side lacks
//! or holds differently, and with [`Part::Want`]s for the rest; wants are answered with
//! entries. A range the other side holds nothing of (an empty fingerprint or listing) is
//! not split or listed but handed over: its entries as stored, up to the budget, and the
//! fingerprint of the rest, which brings an empty listing back and the next part with it. Both sides merge what they receive with the store's last-writer-wins rule, so
//! once no part is left to send, both hold the same winners. With `d` differences among `n`
//! items, about `d · branches · log_branches(n)` fingerprints cross the wire.
//!
//! Messages are kept under [`Limits::budget`] bytes: a side that runs out of budget answers
//! the parts it did not get to with its own fingerprint of their range, which makes the
//! other side go on from there in the next round; so no side keeps state between rounds
//! but the initiator's round counter, and any message may be lost without harm.
//!
//! The code runs on any [`ItemSource`] — the real [`Store`] in the node and in the
//! simulation tests.

use std::collections::HashMap;

use cosmic_auth::{PublicKey, SignedStatement};
use cosmic_store::{
    Entry, Fingerprint, Inserted, KeyCache, Origin, RangeKey, ReconItem, SpaceRecord, Store,
};

use crate::wire::{self, Message, Part, Range, part_len};

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

/// The shape of reconciliation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A range with at most this many items is listed rather than split.
    pub max_items: usize,
    /// How many parts a range is split into.
    pub branches: usize,
    /// Target size of one message in bytes (one part may exceed it; the hard limit is the
    /// transport's).
    pub budget: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_items: 32, branches: 16, budget: 1024 * 1024 }
    }
}

/// What processing one incoming message did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Entries received.
    pub entries_received: u64,
    /// Entries received that became winners.
    pub entries_applied: u64,
    /// Entries sent in the answer.
    pub entries_sent: u64,
    /// Whether the message brought a space record or capability statements new to us
    /// (which other peers of the space may lack too: no entry change announces them).
    pub space_changed: bool,
    /// Why received entries, records or statements were refused.
    pub rejected: Vec<String>,
    /// How many of the refusals prove the sender at fault: bytes that do not decode, items
    /// of another space, bad signatures, malformed keys or values. An honest node never
    /// sends those (it checked them before storing them), unlike an entry ahead of our
    /// clock or a statement whose issuer's grant we lack yet.
    pub offences: u64,
}

impl Step {
    /// Records a refusal that proves the sender at fault.
    fn offence(&mut self, reason: String) {
        self.offences += 1;
        self.rejected.push(reason);
    }

    /// Records a refusal for `error`, an offence when the error says so.
    fn refused(&mut self, reason: String, error: &cosmic_store::Error) {
        if is_offence(error) { self.offence(reason) } else { self.rejected.push(reason) }
    }
}

/// Whether a store refusal proves that whoever sent the item is at fault.
fn is_offence(error: &cosmic_store::Error) -> bool {
    use cosmic_store::Error as E;
    matches!(
        error,
        E::Decode { .. }
            | E::BadSignature { .. }
            | E::BadStatement { .. }
            | E::InvalidKey { .. }
            | E::InvalidValue { .. }
    )
}

/// Answers a request from a peer (`origin`): merges what it carries and returns the answer,
/// which is empty when nothing is left to say. The answer to a session's first request
/// (the one carrying the whole-space fingerprint) also carries our space record and
/// statements.
pub fn respond<S: ItemSource + ?Sized>(
    source: &S,
    message: &Message,
    origin: &Origin,
    limits: &Limits,
) -> cosmic_store::Result<(Message, Step)> {
    let first_round = message.parts.iter().any(|part| {
        matches!(part, Part::Space { .. })
            || matches!(part, Part::Fingerprint(range, _) if *range == Range::ALL)
    });
    answer(source, message, origin, limits, first_round)
}

fn answer<S: ItemSource + ?Sized>(
    source: &S,
    message: &Message,
    origin: &Origin,
    limits: &Limits,
    send_space: bool,
) -> cosmic_store::Result<(Message, Step)> {
    let space = message.space;
    let mut step = Step::default();
    let mut out = Vec::new();
    let mut used = 0usize;

    // Space records and statements first: entries may need a grant they carry.
    for part in &message.parts {
        if let Part::Space { record, statements } = part {
            merge_space(source, &space, record, statements, &mut step);
        }
    }
    if send_space && let Some(part) = source.space_part(&space)? {
        used += part_len(&part);
        out.push(part);
    }

    // Then entries, in one batch.
    let mut received: HashMap<RangeKey, [u8; 32]> = HashMap::new();
    let mut entries = Vec::new();
    let mut keys = KeyCache::new();
    for part in &message.parts {
        if let Part::Entry(bytes) = part {
            step.entries_received += 1;
            match Entry::decode_cached(bytes, &mut keys) {
                Ok(entry) if entry.space == space => {
                    let key = RangeKey { doc: entry.doc.clone(), field: entry.field.clone() };
                    received.insert(key, entry.hash());
                    entries.push(entry);
                }
                Ok(entry) => step.offence(format!(
                    "entry {}/{} belongs to space {}, not {space}",
                    entry.doc, entry.field, entry.space
                )),
                Err(error) => step.offence(format!("undecodable entry: {error}")),
            }
        }
    }
    if !entries.is_empty() {
        let described: Vec<String> =
            entries.iter().map(|e| format!("{}/{}", e.doc, e.field)).collect();
        for (result, what) in source.insert_entries(entries, origin)?.into_iter().zip(described) {
            match result {
                Ok(Inserted::Applied { .. }) => step.entries_applied += 1,
                Ok(_) => {}
                Err(error) => step.refused(format!("entry {what}: {error}"), &error),
            }
        }
    }

    // Then ranges and wants, within the budget.
    let mut processed_one = false;
    for part in &message.parts {
        let over = processed_one && used >= limits.budget;
        let before = out.len();
        match part {
            Part::Space { .. } | Part::Entry(_) | Part::Clock(_) => continue,
            Part::Fingerprint(range, theirs) => {
                if over {
                    defer(source, &space, range, &mut out)?;
                } else {
                    let ours = source.fingerprint(&space, range)?;
                    if !wire::same_fingerprint(&ours, theirs) {
                        if theirs.count == 0 {
                            let left = limits.budget.saturating_sub(used);
                            step.entries_sent += hand_over(source, &space, range, left, &mut out)?;
                        } else if ours.count > limits.max_items as u64 {
                            split(source, &space, range, ours.count, limits, &mut out)?;
                        } else {
                            let items = source.items(&space, range, limits.max_items)?;
                            let items = items.into_iter().map(|item| (key_of(&item), item.hash));
                            out.push(Part::Items(range.clone(), items.collect()));
                        }
                    }
                }
            }
            Part::Items(range, theirs) => {
                if over {
                    defer(source, &space, range, &mut out)?;
                } else if theirs.is_empty() {
                    let left = limits.budget.saturating_sub(used);
                    step.entries_sent += hand_over(source, &space, range, left, &mut out)?;
                } else {
                    let ours = source.items(&space, range, limits.max_items + 1)?;
                    if ours.len() > limits.max_items {
                        let count = source.fingerprint(&space, range)?.count;
                        split(source, &space, range, count, limits, &mut out)?;
                    } else {
                        let theirs: HashMap<&RangeKey, &[u8; 32]> =
                            theirs.iter().map(|(key, hash)| (key, hash)).collect();
                        let mut mine: HashMap<RangeKey, [u8; 32]> = HashMap::new();
                        for item in ours {
                            let key = key_of(&item);
                            if theirs.get(&key) != Some(&&item.hash)
                                && received.get(&key) != Some(&item.hash)
                                && let Some(entry) = source.entry(&space, &key)?
                            {
                                out.push(Part::Entry(entry.encode()));
                                step.entries_sent += 1;
                            }
                            mine.insert(key, item.hash);
                        }
                        for (key, hash) in theirs {
                            if mine.get(key) != Some(hash) {
                                out.push(Part::Want(key.clone()));
                            }
                        }
                    }
                }
            }
            Part::Want(key) => {
                if over {
                    let upper =
                        RangeKey { doc: key.doc.clone(), field: format!("{}\0", key.field) };
                    let range = Range { lower: Some(key.clone()), upper: Some(upper) };
                    defer(source, &space, &range, &mut out)?;
                } else if let Some(entry) = source.entry(&space, key)?
                    && received.get(key) != Some(&entry.hash())
                {
                    out.push(Part::Entry(entry.encode()));
                    step.entries_sent += 1;
                }
            }
        }
        processed_one = true;
        used += out[before..].iter().map(part_len).sum::<usize>();
    }
    Ok((Message { space, parts: out }, step))
}

fn key_of(item: &ReconItem) -> RangeKey {
    RangeKey { doc: item.doc.clone(), field: item.field.clone() }
}

/// Hands `range` over to a peer that holds nothing in it: our entries of the range as they
/// are stored, as many as `max_bytes` allows (at least one), without splitting or listing
/// first; and for the rest of the range, if any, our fingerprint, to which the peer
/// answers with an empty listing that brings the next part. Returns the entries sent.
fn hand_over<S: ItemSource + ?Sized>(
    source: &S,
    space: &PublicKey,
    range: &Range,
    max_bytes: usize,
    out: &mut Vec<Part>,
) -> cosmic_store::Result<u64> {
    let (entries, next) = source.entries(space, range, max_bytes)?;
    let sent = entries.len() as u64;
    out.extend(entries.into_iter().map(Part::Entry));
    if let Some(next) = next {
        defer(source, space, &Range { lower: Some(next), upper: range.upper.clone() }, out)?;
    }
    Ok(sent)
}

/// Answers a part left for the next round with our fingerprint of its range.
fn defer<S: ItemSource + ?Sized>(
    source: &S,
    space: &PublicKey,
    range: &Range,
    out: &mut Vec<Part>,
) -> cosmic_store::Result<()> {
    out.push(Part::Fingerprint(range.clone(), source.fingerprint(space, range)?));
    Ok(())
}

/// Splits `range` (holding `count` of our items) into parts of equal size and sends their
/// fingerprints.
fn split<S: ItemSource + ?Sized>(
    source: &S,
    space: &PublicKey,
    range: &Range,
    count: u64,
    limits: &Limits,
    out: &mut Vec<Part>,
) -> cosmic_store::Result<()> {
    let branches = limits.branches.max(2) as u64;
    let chunk = count.div_ceil(branches).max(1);
    let mut lower = range.lower.clone();
    let mut n = chunk;
    while n < count {
        let Some(bound) = source.nth_item(space, range.lower.as_ref(), n)? else { break };
        if range.upper.as_ref().is_some_and(|upper| bound >= *upper) {
            break;
        }
        let part = Range { lower: lower.clone(), upper: Some(bound.clone()) };
        out.push(Part::Fingerprint(part.clone(), source.fingerprint(space, &part)?));
        lower = Some(bound);
        n += chunk;
    }
    let last = Range { lower, upper: range.upper.clone() };
    out.push(Part::Fingerprint(last.clone(), source.fingerprint(space, &last)?));
    Ok(())
}

/// Merges a space part: the statements first, then the record. A node answers with its
/// record and statements only while it holds the record (see `ItemSource::space_part`),
/// so in this order it never hands out a restricted space's record without the grants
/// that came with it; a peer holding the record but not the grants would refuse every
/// reader (it could prove no one's right) and could not learn them from anyone.
fn merge_space<S: ItemSource + ?Sized>(
    source: &S,
    space: &PublicKey,
    record: &[u8],
    statements: &[Vec<u8>],
    step: &mut Step,
) {
    let record = match SpaceRecord::decode(record) {
        Ok(record) if record.space == *space => Some(record),
        Ok(record) => {
            step.offence(format!("a space record for {}", record.space));
            None
        }
        Err(error) => {
            step.offence(format!("space record: {error}"));
            None
        }
    };
    let mut decoded = Vec::with_capacity(statements.len());
    for bytes in statements {
        match SignedStatement::from_bytes(bytes) {
            Ok(statement) if statement.statement().space() == space => decoded.push(statement),
            Ok(_) => step.offence("a statement of another space".to_owned()),
            Err(error) => step.offence(format!("statement: {error}")),
        }
    }
    // One batch: the statements come ordered by hash, so an admin's own grant may come
    // after the grants it issued. One refused here because its issuer's grant has not
    // reached us at all is offered again by the next session, which sends every statement.
    if !decoded.is_empty() {
        match source.insert_statements(&decoded) {
            Ok(results) => {
                step.space_changed |= results.iter().any(|result| matches!(result, Ok(true)));
                for error in results.into_iter().filter_map(Result::err) {
                    let cause = std::error::Error::source(&error)
                        .map(|cause| format!(": {cause}"))
                        .unwrap_or_default();
                    step.refused(format!("statement: {error}{cause}"), &error);
                }
            }
            Err(error) => step.rejected.push(format!("statements: {error}")),
        }
    }
    if let Some(record) = record {
        match source.insert_space_record(&record) {
            Ok(new) => step.space_changed |= new,
            Err(error) => step.refused(format!("space record: {error}"), &error),
        }
    }
}

/// The initiating side of one reconciliation session.
#[derive(Debug)]
pub struct Session {
    space: PublicKey,
    limits: Limits,
    rounds: u64,
    max_rounds: u64,
    cut_short: bool,
}

impl Session {
    /// Starts a session on `space`: returns it and the first message (our space record
    /// and statements, and the fingerprint of the whole space).
    pub fn start<S: ItemSource + ?Sized>(
        source: &S,
        space: PublicKey,
        limits: Limits,
        max_rounds: u64,
    ) -> cosmic_store::Result<(Session, Message)> {
        let mut parts = Vec::new();
        if let Some(part) = source.space_part(&space)? {
            parts.push(part);
        }
        parts.push(Part::Fingerprint(Range::ALL, source.fingerprint(&space, &Range::ALL)?));
        let session =
            Session { space, limits, rounds: 1, max_rounds: max_rounds.max(1), cut_short: false };
        Ok((session, Message { space, parts }))
    }

    /// The space reconciled.
    pub fn space(&self) -> &PublicKey {
        &self.space
    }

    /// Request-response rounds so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Processes the peer's answer; returns the next message, or `None` when the session
    /// is over: `Ok(None)` with [`Session::converged`] true when nothing is left to
    /// exchange, false when the round limit was reached first.
    pub fn on_reply<S: ItemSource + ?Sized>(
        &mut self,
        source: &S,
        reply: &Message,
        origin: &Origin,
    ) -> cosmic_store::Result<(Option<Message>, Step)> {
        let (next, step) = answer(source, reply, origin, &self.limits, false)?;
        if next.parts.is_empty() || self.rounds >= self.max_rounds {
            self.cut_short = !next.parts.is_empty();
            return Ok((None, step));
        }
        self.rounds += 1;
        Ok((Some(next), step))
    }

    /// Whether the session ended because nothing was left to exchange (not at the round
    /// limit).
    pub fn converged(&self) -> bool {
        !self.cut_short
    }
}
