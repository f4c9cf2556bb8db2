//! Range fingerprints for set reconciliation, computed from aggregates kept in redb.
//!
//! The items of a space are its winning entries ordered by item key (`doc ++ 0x00 ++ field`),
//! each with its entry hash. The fingerprint of a range is the sum of the item hashes as
//! 256-bit little-endian integers modulo 2^256, plus the item count.
//! A sum, unlike XOR, does not cancel equal hashes and is not linear over GF(2), so finding a
//! set of items with a chosen fingerprint needs a generalized-birthday attack rather than
//! Gaussian elimination (the choice of Meyer's range-based set reconciliation); and unlike a
//! hash over the sorted items it can be updated in place when one item changes, which is what
//! makes the aggregates below possible.
//!
//! # Aggregates
//!
//! A full scan of a space per fingerprint costs O(n); reconciliation asks for O(log n)
//! fingerprints per round. Instead the store keeps a content-defined skip structure: an item
//! key whose BLAKE3 hash has `6 * k` trailing zero bits is a *boundary of level k* (k up to
//! [`LEVELS`]); a level-k *bucket* holds the items from one level-k boundary up to the next,
//! and `buckets-1` stores each bucket's fingerprint. Boundaries depend on the key only, never
//! on the value, and keys are never removed (deletes are tombstone entries), so a bucket only
//! ever changes when an item inside it changes or a new boundary key splits it.
//!
//! A fingerprint of `[lo, hi)` at level k sums the complete level-k buckets inside the range
//! and recurses to level k-1 for the two partial ends, so it reads about `2 * 64` rows per
//! level plus `n / 64^LEVELS` top buckets: a few hundred rows for any range of a
//! million-entry space, whatever its size. An insert updates one bucket per level (and, for a
//! new boundary key, computes the split-off part the same way).

use std::ops::Bound;

use redb::{ReadableTable, Table};

use crate::schema::prefix_end;
use crate::{Error, Result};

/// Levels of aggregates; with a fanout of 64 the top level has 262,144 items per bucket.
pub(crate) const LEVELS: u8 = 3;
const FANOUT_BITS: u32 = 6;

/// The fingerprint of a set of items: the sum of their hashes mod 2^256, and their count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The sum of the item hashes as little-endian 256-bit integers, mod 2^256.
    pub sum: [u8; 32],
    /// The number of items.
    pub count: u64,
}

impl Fingerprint {
    /// The fingerprint of no items.
    pub const EMPTY: Fingerprint = Fingerprint { sum: [0; 32], count: 0 };

    /// Whether this fingerprint covers no items.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds one item hash.
    pub fn insert(&mut self, hash: &[u8; 32]) {
        self.sum = add256(&self.sum, hash);
        self.count = self.count.wrapping_add(1);
    }

    /// Adds another fingerprint (the union of disjoint sets).
    pub fn merge(&mut self, other: &Fingerprint) {
        self.sum = add256(&self.sum, &other.sum);
        self.count = self.count.wrapping_add(other.count);
    }

    /// Subtracts a fingerprint of a subset.
    pub fn subtract(&mut self, other: &Fingerprint) {
        self.sum = sub256(&self.sum, &other.sum);
        self.count = self.count.wrapping_sub(other.count);
    }

    pub(crate) fn encode(&self) -> [u8; 40] {
        let mut out = [0; 40];
        out[..32].copy_from_slice(&self.sum);
        out[32..].copy_from_slice(&self.count.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Fingerprint> {
        let bytes: &[u8; 40] =
            bytes.try_into().map_err(|_| Error::decode("bucket", "not 40 bytes"))?;
        let mut sum = [0; 32];
        sum.copy_from_slice(&bytes[..32]);
        let mut count = [0; 8];
        count.copy_from_slice(&bytes[32..]);
        Ok(Fingerprint { sum, count: u64::from_be_bytes(count) })
    }
}

fn add256(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0; 32];
    let mut carry = 0u16;
    for ((out, a), b) in out.iter_mut().zip(a).zip(b) {
        let total = u16::from(*a) + u16::from(*b) + carry;
        *out = total as u8;
        carry = total >> 8;
    }
    out
}

fn sub256(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0; 32];
    let mut borrow = 0i16;
    for ((out, a), b) in out.iter_mut().zip(a).zip(b) {
        let mut total = i16::from(*a) - i16::from(*b) - borrow;
        borrow = 0;
        if total < 0 {
            total += 256;
            borrow = 1;
        }
        *out = total as u8;
    }
    out
}

/// The highest level at which `item_key` is a boundary (0: none).
pub(crate) fn boundary_level(item_key: &[u8]) -> u8 {
    let hash = blake3::hash(item_key);
    let mut first = [0; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    let zeros = u64::from_le_bytes(first).trailing_zeros() / FANOUT_BITS;
    zeros.min(u32::from(LEVELS)) as u8
}

/// A `[lo, hi)` range of item keys; `hi = None` is the end of the space.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ItemRange<'a> {
    pub(crate) lo: &'a [u8],
    pub(crate) hi: Option<&'a [u8]>,
}

fn full_bounds(prefix: &[u8], range: ItemRange<'_>) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut lo = prefix.to_vec();
    lo.extend_from_slice(range.lo);
    let hi = match range.hi {
        Some(hi) => {
            let mut key = prefix.to_vec();
            key.extend_from_slice(hi);
            Some(key)
        }
        None => prefix_end(prefix),
    };
    (lo, hi)
}

fn bounds<'a>(lo: &'a [u8], hi: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (Bound::Included(lo), hi.map_or(Bound::Unbounded, Bound::Excluded))
}

fn bucket_prefix(space: &[u8; 32], level: u8) -> Vec<u8> {
    let mut prefix = space.to_vec();
    prefix.push(level);
    prefix
}

/// The fingerprint of the items of `space` in `range`, using aggregates up to `level`.
pub(crate) fn fingerprint(
    entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
    buckets: &impl ReadableTable<&'static [u8], &'static [u8]>,
    space: &[u8; 32],
    range: ItemRange<'_>,
    level: u8,
) -> Result<Fingerprint, redb::StorageError> {
    let mut total = Fingerprint::EMPTY;
    if let Some(hi) = range.hi
        && hi <= range.lo
    {
        return Ok(total);
    }
    if level == 0 {
        let (lo, hi) = full_bounds(space, range);
        for row in entries.range::<&[u8]>(bounds(&lo, hi.as_deref()))? {
            let (_, value) = row?;
            let value = value.value();
            let mut hash = [0; 32];
            // Rows are at least 40 bytes (hash and seq before the entry); a short row is
            // counted with a zero hash here and reported by the integrity check.
            if let Some(bytes) = value.get(..32) {
                hash.copy_from_slice(bytes);
            }
            total.insert(&hash);
        }
        return Ok(total);
    }
    let prefix = bucket_prefix(space, level);
    let (lo, hi) = full_bounds(&prefix, range);
    let mut previous: Option<(Vec<u8>, Fingerprint)> = None;
    for row in buckets.range::<&[u8]>(bounds(&lo, hi.as_deref()))? {
        let (key, value) = row?;
        let item = key.value()[prefix.len()..].to_vec();
        let aggregate = Fingerprint::decode(value.value()).map_err(|error| {
            redb::StorageError::Corrupted(format!("bucket row {item:?}: {error}"))
        })?;
        match previous.take() {
            None => {
                let head = ItemRange { lo: range.lo, hi: Some(&item) };
                total.merge(&fingerprint(entries, buckets, space, head, level - 1)?);
            }
            Some((_, complete)) => total.merge(&complete),
        }
        previous = Some((item, aggregate));
    }
    match previous {
        None => fingerprint(entries, buckets, space, range, level - 1),
        Some((item, _)) => {
            let tail = ItemRange { lo: &item, hi: range.hi };
            total.merge(&fingerprint(entries, buckets, space, tail, level - 1)?);
            Ok(total)
        }
    }
}

/// Updates the aggregates after the entries table changed the item at `item_key` from
/// `old` (none: a new key) to `new`. The entries table must already hold the new row.
pub(crate) fn update(
    entries: &Table<'_, &'static [u8], &'static [u8]>,
    buckets: &mut Table<'_, &'static [u8], &'static [u8]>,
    space: &[u8; 32],
    item_key: &[u8],
    old: Option<&[u8; 32]>,
    new: &[u8; 32],
) -> Result<(), redb::StorageError> {
    let key_level = boundary_level(item_key);
    for level in 1..=LEVELS {
        let prefix = bucket_prefix(space, level);
        let mut own_key = prefix.clone();
        own_key.extend_from_slice(item_key);
        if old.is_none() && level <= key_level {
            // A new boundary: its bucket runs to the next boundary of this level and takes
            // those items from the bucket before it.
            let level_end = prefix_end(&prefix);
            let next = {
                let mut after = buckets.range::<&[u8]>((
                    Bound::Excluded(own_key.as_slice()),
                    level_end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                ))?;
                match after.next() {
                    Some(row) => Some(row?.0.value()[prefix.len()..].to_vec()),
                    None => None,
                }
            };
            let own = fingerprint(
                entries,
                buckets,
                space,
                ItemRange { lo: item_key, hi: next.as_deref() },
                level - 1,
            )?;
            buckets.insert(own_key.as_slice(), own.encode().as_slice())?;
            let before = last_before(buckets, &prefix, &own_key, false)?;
            if let Some((key, mut aggregate)) = before {
                let mut moved = own;
                let mut just_new = Fingerprint::EMPTY;
                just_new.insert(new);
                moved.subtract(&just_new);
                aggregate.subtract(&moved);
                buckets.insert(key.as_slice(), aggregate.encode().as_slice())?;
            }
        } else if let Some((key, mut aggregate)) = last_before(buckets, &prefix, &own_key, true)? {
            let mut delta = Fingerprint::EMPTY;
            delta.insert(new);
            aggregate.merge(&delta);
            if let Some(old) = old {
                let mut gone = Fingerprint::EMPTY;
                gone.insert(old);
                aggregate.subtract(&gone);
            }
            buckets.insert(key.as_slice(), aggregate.encode().as_slice())?;
        }
    }
    Ok(())
}

/// Updates the aggregates after the item at `item_key`, of hash `old`, left the entries
/// table (an entry a revocation cut off). A bucket that started at the item is merged into
/// the bucket before it at its level, or dropped when it was the first (what lies before a
/// level's first boundary is counted from the level below).
pub(crate) fn remove(
    buckets: &mut Table<'_, &'static [u8], &'static [u8]>,
    space: &[u8; 32],
    item_key: &[u8],
    old: &[u8; 32],
) -> Result<(), redb::StorageError> {
    let key_level = boundary_level(item_key);
    let mut gone = Fingerprint::EMPTY;
    gone.insert(old);
    for level in 1..=LEVELS {
        let prefix = bucket_prefix(space, level);
        let mut own_key = prefix.clone();
        own_key.extend_from_slice(item_key);
        if level <= key_level {
            let own = match buckets.remove(own_key.as_slice())? {
                Some(row) => Fingerprint::decode(row.value()).map_err(|error| {
                    redb::StorageError::Corrupted(format!("bucket row: {error}"))
                })?,
                None => continue,
            };
            let mut own = own;
            own.subtract(&gone);
            if let Some((key, mut aggregate)) = last_before(buckets, &prefix, &own_key, false)? {
                aggregate.merge(&own);
                buckets.insert(key.as_slice(), aggregate.encode().as_slice())?;
            }
        } else if let Some((key, mut aggregate)) = last_before(buckets, &prefix, &own_key, true)? {
            aggregate.subtract(&gone);
            buckets.insert(key.as_slice(), aggregate.encode().as_slice())?;
        }
    }
    Ok(())
}

/// The bucket of `prefix` that starts last before `key` (or at it, if `inclusive`).
fn last_before(
    buckets: &Table<'_, &'static [u8], &'static [u8]>,
    prefix: &[u8],
    key: &[u8],
    inclusive: bool,
) -> Result<Option<(Vec<u8>, Fingerprint)>, redb::StorageError> {
    let upper = if inclusive { Bound::Included(key) } else { Bound::Excluded(key) };
    let mut rows = buckets.range::<&[u8]>((Bound::Included(prefix), upper))?;
    let Some(row) = rows.next_back() else { return Ok(None) };
    let (found, value) = row?;
    let aggregate = Fingerprint::decode(value.value())
        .map_err(|error| redb::StorageError::Corrupted(format!("bucket row: {error}")))?;
    Ok(Some((found.value().to_vec(), aggregate)))
}

/// The result of [`seek`]: the item found, or how many items the range holds.
pub(crate) enum Seek {
    /// The item key at the offset.
    Found(Vec<u8>),
    /// The range holds only this many items, no more than the offset.
    Counted(u64),
}

/// Finds the item at offset `n` (0-based) of `range`, skipping complete buckets by their
/// counts: the same row reads as [`fingerprint`], so splitting a range into parts of equal
/// size costs no scan either.
pub(crate) fn seek(
    entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
    buckets: &impl ReadableTable<&'static [u8], &'static [u8]>,
    space: &[u8; 32],
    range: ItemRange<'_>,
    n: u64,
    level: u8,
) -> Result<Seek, redb::StorageError> {
    if let Some(hi) = range.hi
        && hi <= range.lo
    {
        return Ok(Seek::Counted(0));
    }
    if level == 0 {
        let (lo, hi) = full_bounds(space, range);
        let mut count = 0;
        for row in entries.range::<&[u8]>(bounds(&lo, hi.as_deref()))? {
            let (key, _) = row?;
            if count == n {
                return Ok(Seek::Found(key.value()[space.len()..].to_vec()));
            }
            count += 1;
        }
        return Ok(Seek::Counted(count));
    }
    let prefix = bucket_prefix(space, level);
    let (lo, hi) = full_bounds(&prefix, range);
    let mut consumed = 0u64;
    let mut previous: Option<(Vec<u8>, Fingerprint)> = None;
    for row in buckets.range::<&[u8]>(bounds(&lo, hi.as_deref()))? {
        let (key, value) = row?;
        let item = key.value()[prefix.len()..].to_vec();
        let aggregate = Fingerprint::decode(value.value()).map_err(|error| {
            redb::StorageError::Corrupted(format!("bucket row {item:?}: {error}"))
        })?;
        let segment = match previous.take() {
            None => Some(ItemRange { lo: range.lo, hi: Some(&item) }),
            Some((start, complete)) if consumed + complete.count > n => {
                let inside = ItemRange { lo: &start, hi: Some(&item) };
                return match seek(entries, buckets, space, inside, n - consumed, level - 1)? {
                    Seek::Found(key) => Ok(Seek::Found(key)),
                    // The aggregate said the item is inside; a short bucket is damage.
                    Seek::Counted(_) => Err(redb::StorageError::Corrupted(
                        "a bucket holds fewer items than its count".into(),
                    )),
                };
            }
            Some((_, complete)) => {
                consumed += complete.count;
                None
            }
        };
        if let Some(segment) = segment {
            match seek(entries, buckets, space, segment, n - consumed, level - 1)? {
                Seek::Found(key) => return Ok(Seek::Found(key)),
                Seek::Counted(count) => consumed += count,
            }
        }
        previous = Some((item, aggregate));
    }
    let tail = match &previous {
        None => range,
        Some((item, _)) => ItemRange { lo: item, hi: range.hi },
    };
    match seek(entries, buckets, space, tail, n - consumed, level - 1)? {
        Seek::Found(key) => Ok(Seek::Found(key)),
        Seek::Counted(count) => Ok(Seek::Counted(consumed + count)),
    }
}
