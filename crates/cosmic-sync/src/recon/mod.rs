//! Range-based set reconciliation as a pure, transport-independent state machine.
//!
//! The items of a space are its fields, each with the hash of its winning entry, ordered by
//! `(doc, field)`. Two peers compare the fingerprint (sum of hashes and count) of a range;
//! where they differ, the side holding more than [`Limits::max_items`] items splits the range
//! into [`Limits::branches_for`] parts of equal size and sends their fingerprints, and a side
//! holding few items lists them, by the first bytes of their hashes ([`Part::Hashes`]). A
//! listing is answered with the entries the other side lacks or holds differently, and a
//! [`Part::WantHashes`] for the rest; wants are answered with entries. A range the other
//! side holds nothing of (an empty fingerprint or listing) is not split or listed but handed
//! over: its entries as stored, up to the budget, and the fingerprint of the rest, which
//! brings an empty listing back and the next part with it. Both sides merge what they
//! receive with the store's last-writer-wins rule, so once no part is left to send, both
//! hold the same winners. With `d` differences among `n` items, about
//! `d · branches · log_branches(n)` fingerprints cross the wire.
//!
//! The initiator's first message already splits the space when it holds more than a
//! listing's worth, and the first split is as wide as it takes for two more to reach
//! listings ([`Limits::branches_for`]): so stores of up to about 33 million items
//! (`max_items · branches²` times a first split of at most 4,096 parts) that differ in a
//! few places settle in three rounds (split; split; split, list; entries and wants;
//! entries), and equal stores in one.
//!
//! Messages are kept under [`Limits::budget`] bytes: a side that runs out of budget answers
//! the parts it did not get to with its own fingerprint of their range, which makes the
//! other side go on from there in the next round; so no side keeps state between rounds
//! but the initiator's round counter, and any message may be lost without harm.
//!
//! The code runs on any [`ItemSource`] — the real [`Store`](cosmic_store::Store) in the node and in the
//! simulation tests.

use std::collections::{HashMap, HashSet};

use cosmic_auth::{PublicKey, SignedStatement};
use cosmic_store::{
    Entry, Fingerprint, Inserted, KeyCache, Origin, RangeKey, ReconItem, SpaceRecord,
};

use crate::wire::{
    self, HASH_PREFIX_LEN, Message, Part, Range, hash_prefix, part_len, space_digest,
};

mod session;
mod source;

pub use session::{Opening, Session};
pub use source::ItemSource;

/// The shape of reconciliation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A range with at most this many items is listed rather than split.
    pub max_items: usize,
    /// How many parts a range is split into, at least (see [`Limits::branches_for`]).
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

/// The most parts one range is split into (about 25 bytes each on the wire).
const MAX_BRANCHES: u64 = 4096;

impl Limits {
    /// How many parts a range of `count` items is split into: [`Limits::branches`], or
    /// more for a range so large that two further splits of that many would still leave
    /// parts over [`Limits::max_items`]. So any range reaches listings within three
    /// splits (up to `max_items · branches² · 4096` items: 33,554,432 with the defaults),
    /// and a session in which the initiator splits first ends in three rounds: split,
    /// split, split; list, entries and wants; entries.
    pub fn branches_for(&self, count: u64) -> u64 {
        let branches = self.branches.max(2) as u64;
        let leaf = (self.max_items.max(1) as u64).saturating_mul(branches * branches);
        count.div_ceil(leaf).clamp(branches, MAX_BRANCHES.max(branches))
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
        matches!(part, Part::SpaceDigest(_))
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
    let mut this = Answer {
        source,
        space,
        limits,
        out: Vec::new(),
        used: 0,
        step: Step::default(),
        received: HashMap::new(),
        received_prefixes: HashSet::new(),
    };
    // Space records and statements first: entries may need a grant they carry.
    for part in &message.parts {
        if let Part::Space { record, statements } = part {
            merge_space(source, &space, record, statements, &mut this.step);
        }
    }
    this.space_parts(message, send_space)?;
    // Then entries, in one batch; then ranges and wants, within the budget.
    this.merge_entries(message, origin)?;
    let mut processed_one = false;
    for part in &message.parts {
        if matches!(
            part,
            Part::Space { .. }
                | Part::Entry(_)
                | Part::Clock(_)
                | Part::SpaceDigest(_)
                | Part::WantSpace
        ) {
            continue;
        }
        let before = this.out.len();
        if processed_one && this.used >= limits.budget {
            this.defer_part(part)?;
        } else {
            this.answer_part(part)?;
        }
        processed_one = true;
        this.used += this.out[before..].iter().map(part_len).sum::<usize>();
    }
    Ok((Message { space, parts: this.out }, this.step))
}

/// An answer being built: what it says so far, and what it cost.
struct Answer<'a, S: ?Sized> {
    source: &'a S,
    space: PublicKey,
    limits: &'a Limits,
    out: Vec<Part>,
    /// About the bytes of `out` (see `part_len`).
    used: usize,
    step: Step,
    /// The entries the message brought, by position: never sent back.
    received: HashMap<RangeKey, [u8; 32]>,
    /// The same entries' hashes as listings carry them (see [`hash_prefix`]).
    received_prefixes: HashSet<[u8; HASH_PREFIX_LEN]>,
}

impl<S: ItemSource + ?Sized> Answer<'_, S> {
    /// Our space record and statements, when the message opens a session (`first`) or
    /// asks for them: sent whole unless the opener's digest says it holds the same, and
    /// with a request for the opener's own when the digests differ (or when we hold no
    /// record). A session between nodes that agree on the space costs 17 bytes of it.
    fn space_parts(&mut self, message: &Message, first: bool) -> cosmic_store::Result<()> {
        let theirs = message.parts.iter().find_map(|part| match part {
            Part::SpaceDigest(digest) => Some(*digest),
            _ => None,
        });
        let wanted = message.parts.iter().any(|part| matches!(part, Part::WantSpace));
        if !first && !wanted {
            return Ok(());
        }
        let mut out = Vec::new();
        match (self.source.space_part(&self.space)?, theirs) {
            (Some(ours), Some(theirs)) if space_digest(&ours) == Some(theirs) => {}
            (Some(ours), Some(_)) => out.extend([ours, Part::WantSpace]),
            (None, Some(_)) => out.push(Part::WantSpace),
            (Some(ours), None) => out.push(ours),
            (None, None) => {}
        }
        for part in out {
            self.used += part_len(&part);
            self.out.push(part);
        }
        Ok(())
    }

    /// Merges the message's entries, in one batch.
    fn merge_entries(&mut self, message: &Message, origin: &Origin) -> cosmic_store::Result<()> {
        let mut entries = Vec::new();
        let mut keys = KeyCache::new();
        for part in &message.parts {
            let Part::Entry(bytes) = part else { continue };
            self.step.entries_received += 1;
            match Entry::decode_cached(bytes, &mut keys) {
                Ok(entry) if entry.space == self.space => {
                    let key = RangeKey { doc: entry.doc.clone(), field: entry.field.clone() };
                    let hash = entry.hash();
                    self.received.insert(key, hash);
                    self.received_prefixes.insert(hash_prefix(&hash));
                    entries.push(entry);
                }
                Ok(entry) => self.step.offence(format!(
                    "entry {}/{} belongs to space {}, not {}",
                    entry.doc, entry.field, entry.space, self.space
                )),
                Err(error) => self.step.offence(format!("undecodable entry: {error}")),
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        let described: Vec<String> =
            entries.iter().map(|e| format!("{}/{}", e.doc, e.field)).collect();
        let results = self.source.insert_entries(entries, origin)?;
        for (result, what) in results.into_iter().zip(described) {
            match result {
                Ok(Inserted::Applied { .. }) => self.step.entries_applied += 1,
                Ok(_) => {}
                Err(error) => self.step.refused(format!("entry {what}: {error}"), &error),
            }
        }
        Ok(())
    }

    /// Leaves a part for the next round: answers it with our fingerprint of its range.
    fn defer_part(&mut self, part: &Part) -> cosmic_store::Result<()> {
        let (source, space) = (self.source, &self.space);
        match part {
            Part::Fingerprint(range, _)
            | Part::Items(range, _)
            | Part::Hashes(range, _)
            | Part::WantHashes(range, _) => defer(source, space, range, &mut self.out),
            Part::Want(key) => {
                let upper = RangeKey { doc: key.doc.clone(), field: format!("{}\0", key.field) };
                let range = Range { lower: Some(key.clone()), upper: Some(upper) };
                defer(source, space, &range, &mut self.out)
            }
            Part::Space { .. }
            | Part::Entry(_)
            | Part::Clock(_)
            | Part::SpaceDigest(_)
            | Part::WantSpace => Ok(()),
        }
    }

    fn answer_part(&mut self, part: &Part) -> cosmic_store::Result<()> {
        match part {
            Part::Fingerprint(range, theirs) => self.on_fingerprint(range, theirs),
            Part::Items(range, theirs) if theirs.is_empty() => self.hand_over(range),
            Part::Hashes(range, theirs) if theirs.is_empty() => self.hand_over(range),
            Part::Items(range, theirs) => self.on_items(range, theirs),
            Part::Hashes(range, theirs) => self.on_hashes(range, theirs),
            Part::WantHashes(range, wanted) => self.on_want_hashes(range, wanted),
            Part::Want(key) => {
                if let Some(entry) = self.source.entry(&self.space, key)?
                    && self.received.get(key) != Some(&entry.hash())
                {
                    self.send(&entry);
                }
                Ok(())
            }
            Part::Space { .. }
            | Part::Entry(_)
            | Part::Clock(_)
            | Part::SpaceDigest(_)
            | Part::WantSpace => Ok(()),
        }
    }

    fn send(&mut self, entry: &Entry) {
        self.out.push(Part::Entry(entry.encode()));
        self.step.entries_sent += 1;
    }

    /// Hands a range over whole, within what is left of the budget (see `hand_over`).
    fn hand_over(&mut self, range: &Range) -> cosmic_store::Result<()> {
        let left = self.limits.budget.saturating_sub(self.used);
        self.step.entries_sent += hand_over(self.source, &self.space, range, left, &mut self.out)?;
        Ok(())
    }

    fn on_fingerprint(&mut self, range: &Range, theirs: &Fingerprint) -> cosmic_store::Result<()> {
        let (source, space, limits) = (self.source, &self.space, self.limits);
        let ours = source.fingerprint(space, range)?;
        if wire::same_fingerprint(&ours, theirs) {
            Ok(())
        } else if theirs.count == 0 {
            self.hand_over(range)
        } else if ours.count > limits.max_items as u64 {
            split(source, space, range, ours.count, limits, &mut self.out)
        } else {
            let items = source.items(space, range, limits.max_items)?;
            let hashes = items.iter().map(|item| hash_prefix(&item.hash));
            self.out.push(Part::Hashes(range.clone(), hashes.collect()));
            Ok(())
        }
    }

    /// Our items of a range the peer listed, or `None` (and the range split) when we hold
    /// too many to answer a listing.
    fn listed_range(&mut self, range: &Range) -> cosmic_store::Result<Option<Vec<ReconItem>>> {
        let (source, space, limits) = (self.source, &self.space, self.limits);
        let ours = source.items(space, range, limits.max_items + 1)?;
        if ours.len() > limits.max_items {
            let count = source.fingerprint(space, range)?.count;
            split(source, space, range, count, limits, &mut self.out)?;
            return Ok(None);
        }
        Ok(Some(ours))
    }

    /// Answers a listing with keys (as older nodes send): our entries the peer lacks or
    /// holds differently, and a want for each of its items we lack or hold differently.
    fn on_items(
        &mut self,
        range: &Range,
        theirs: &[(RangeKey, [u8; 32])],
    ) -> cosmic_store::Result<()> {
        let Some(ours) = self.listed_range(range)? else { return Ok(()) };
        let theirs: HashMap<&RangeKey, &[u8; 32]> =
            theirs.iter().map(|(key, hash)| (key, hash)).collect();
        let mut mine: HashMap<RangeKey, [u8; 32]> = HashMap::new();
        for item in ours {
            let key = key_of(&item);
            if theirs.get(&key) != Some(&&item.hash)
                && self.received.get(&key) != Some(&item.hash)
                && let Some(entry) = self.source.entry(&self.space, &key)?
            {
                self.send(&entry);
            }
            mine.insert(key, item.hash);
        }
        for (key, hash) in theirs {
            if mine.get(key) != Some(hash) {
                self.out.push(Part::Want(key.clone()));
            }
        }
        Ok(())
    }

    /// Answers a listing of hashes: our entries whose hashes the peer lacks (unless it
    /// just sent them), and a request for its entries whose hashes we lack.
    fn on_hashes(
        &mut self,
        range: &Range,
        theirs: &[[u8; HASH_PREFIX_LEN]],
    ) -> cosmic_store::Result<()> {
        let Some(ours) = self.listed_range(range)? else { return Ok(()) };
        let theirs_set: HashSet<&[u8; HASH_PREFIX_LEN]> = theirs.iter().collect();
        let mut mine = HashSet::with_capacity(ours.len());
        for item in &ours {
            let prefix = hash_prefix(&item.hash);
            let key = key_of(item);
            if !theirs_set.contains(&prefix)
                && self.received.get(&key) != Some(&item.hash)
                && let Some(entry) = self.source.entry(&self.space, &key)?
            {
                self.send(&entry);
            }
            mine.insert(prefix);
        }
        // An entry the peer sent in this very message lost to ours, or is ours now: either
        // way there is nothing to ask for.
        let wanted: Vec<[u8; HASH_PREFIX_LEN]> = theirs
            .iter()
            .filter(|hash| !mine.contains(*hash) && !self.received_prefixes.contains(*hash))
            .copied()
            .collect();
        if !wanted.is_empty() {
            self.out.push(Part::WantHashes(range.clone(), wanted));
        }
        Ok(())
    }

    /// Answers a request for the entries of a range we listed, by their hashes.
    fn on_want_hashes(
        &mut self,
        range: &Range,
        wanted: &[[u8; HASH_PREFIX_LEN]],
    ) -> cosmic_store::Result<()> {
        let wanted: HashSet<&[u8; HASH_PREFIX_LEN]> = wanted.iter().collect();
        // The range is one we listed: at most `max_items` then, a few more if writes
        // came since.
        let limit = self.limits.max_items.saturating_mul(4);
        for item in self.source.items(&self.space, range, limit)? {
            if wanted.contains(&hash_prefix(&item.hash))
                && let Some(entry) = self.source.entry(&self.space, &key_of(&item))?
            {
                self.send(&entry);
            }
        }
        Ok(())
    }
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

/// Splits `range` (holding `count` of our items) into [`Limits::branches_for`] parts of
/// equal size and sends their fingerprints.
fn split<S: ItemSource + ?Sized>(
    source: &S,
    space: &PublicKey,
    range: &Range,
    count: u64,
    limits: &Limits,
    out: &mut Vec<Part>,
) -> cosmic_store::Result<()> {
    let chunk = count.div_ceil(limits.branches_for(count)).max(1);
    let mut lower = range.lower.clone();
    let mut n = chunk;
    while n < count {
        let Some(item) = source.nth_item(space, range.lower.as_ref(), n)? else { break };
        if range.upper.as_ref().is_some_and(|upper| item >= *upper) {
            break;
        }
        // Split before the item's document when that still leaves the part before it
        // something: a bound without a field name is two or three bytes shorter.
        let start = RangeKey { doc: item.doc.clone(), field: String::new() };
        let bound = if lower.as_ref().is_none_or(|lower| start > *lower) { start } else { item };
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
