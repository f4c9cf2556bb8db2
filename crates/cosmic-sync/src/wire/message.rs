//! The reconciliation message: its encoding (`Message::encode`) and decoding
//! (`Message::decode`), part by part, and the size estimate budgets use.

use cosmic_auth::PublicKey;
use cosmic_store::{Fingerprint, RangeKey};

use super::codec::{
    Expansion, Reader, put_bound, put_bound_after, put_bound_in_run, put_bytes, put_key,
    put_key_after, put_range, put_u16, put_u32, put_var,
};
use super::{
    HASH_PREFIX_LEN, MIN_ENTRY_WITHOUT_SPACE, Message, OLD_RUN_SUM_LEN, Part, RUN_SUM_LEN, Range,
    WIRE_VERSION, WireError, malformed,
};

/// About the encoded size of a part, for budgets (parts 7 and 8 compress what they hold by
/// its neighbours, so the size depends on them: this assumes half a document key shared).
pub(crate) fn part_len(part: &Part) -> usize {
    let key_len = |key: &RangeKey| 4 + key.doc.len() + key.field.len();
    let bound_len = |bound: &Option<RangeKey>| 1 + bound.as_ref().map_or(0, key_len);
    let range_len = |range: &Range| bound_len(&range.lower) + bound_len(&range.upper);
    1 + match part {
        Part::Space { record, statements } => {
            6 + record.len() + statements.iter().map(|s| 4 + s.len()).sum::<usize>()
        }
        // In a run (part 7): the upper bound, about half of its document key shared with
        // the bound before, and a short count.
        Part::Fingerprint(range, _) => {
            range.upper.as_ref().map_or(1, |key| 3 + key.doc.len() / 2 + key.field.len())
                + RUN_SUM_LEN
                + 3
        }
        Part::Items(range, items) => {
            let compressed = |key: &RangeKey| 3 + key.doc.len() / 2 + key.field.len();
            range_len(range) + 2 + items.iter().map(|(key, _)| compressed(key) + 32).sum::<usize>()
        }
        Part::Hashes(range, hashes) | Part::WantHashes(range, hashes) => {
            range_len(range) + 2 + hashes.len() * HASH_PREFIX_LEN
        }
        Part::Want(key) => key_len(key),
        Part::Entry(entry) => 4 + entry.len(),
        Part::Clock(_) => 8,
        Part::SpaceDigest(_) => 16,
        Part::WantSpace => 0,
    }
}

impl Message {
    /// The encoded size.
    pub fn encoded_len(&self) -> usize {
        self.write().len()
    }

    /// Encodes the message; one larger than `limit` bytes is an error.
    pub fn encode(&self, limit: usize) -> Result<Vec<u8>, WireError> {
        let out = self.write();
        if out.len() > limit {
            let size = out.len();
            return Err(WireError::TooLarge { what: "reconciliation message", size, limit });
        }
        Ok(out)
    }

    fn write(&self) -> Vec<u8> {
        let estimate = 1 + 32 + 4 + self.parts.iter().map(part_len).sum::<usize>();
        let mut out = Vec::with_capacity(estimate);
        out.push(WIRE_VERSION);
        out.extend_from_slice(self.space.as_bytes());
        let count_at = out.len();
        put_u32(&mut out, 0);
        let mut written = 0usize;
        let mut expanded = 0usize;
        let mut index = 0;
        while index < self.parts.len() {
            written += 1;
            if let Part::Fingerprint(..) = &self.parts[index] {
                index += self.write_run(index, &mut out, &mut expanded);
            } else {
                self.write_part(&self.parts[index], &mut out, &mut expanded);
                index += 1;
            }
        }
        let written = u32::try_from(written).unwrap_or(u32::MAX).to_be_bytes();
        out[count_at..count_at + 4].copy_from_slice(&written);
        out
    }

    /// Writes the fingerprint at `index` and those of the ranges that follow on from it as
    /// one run (part 11); returns how many parts it took.
    fn write_run(&self, index: usize, out: &mut Vec<u8>, expanded: &mut usize) -> usize {
        let Some(Part::Fingerprint(first, fingerprint)) = self.parts.get(index) else { return 0 };
        let mut run = vec![(&first.upper, fingerprint)];
        while let Some(Part::Fingerprint(next, fingerprint)) = self.parts.get(index + run.len())
            && next.lower.is_some()
            && next.lower == *run[run.len() - 1].0
            && run.len() < usize::from(u16::MAX)
        {
            run.push((&next.upper, fingerprint));
        }
        out.push(11);
        put_bound(out, &first.lower);
        put_var(out, run.len() as u64);
        let mut previous = first.lower.as_ref();
        for (upper, fingerprint) in &run {
            put_bound_in_run(out, upper, previous, expanded);
            out.extend_from_slice(&fingerprint.sum[..RUN_SUM_LEN]);
            put_var(out, fingerprint.count);
            previous = upper.as_ref();
        }
        run.len()
    }

    /// Writes one part other than a fingerprint.
    fn write_part(&self, part: &Part, out: &mut Vec<u8>, expanded: &mut usize) {
        match part {
            Part::Space { record, statements } => {
                out.push(1);
                put_bytes(out, record);
                put_u16(out, statements.len());
                for statement in statements {
                    put_bytes(out, statement);
                }
            }
            Part::Fingerprint(range, fingerprint) => {
                // Not reached (`write` sends fingerprints as runs), but valid: a run of one.
                let single = Message {
                    space: self.space,
                    parts: vec![Part::Fingerprint(range.clone(), *fingerprint)],
                };
                single.write_run(0, out, expanded);
            }
            Part::Items(range, items) => {
                out.push(8);
                put_range(out, range);
                put_var(out, items.len() as u64);
                let mut previous = None;
                for (key, hash) in items {
                    put_key_after(out, key, previous, expanded);
                    out.extend_from_slice(hash);
                    previous = Some(key);
                }
            }
            Part::Hashes(range, hashes) | Part::WantHashes(range, hashes) => {
                out.push(if matches!(part, Part::Hashes(..)) { 9 } else { 10 });
                put_bound(out, &range.lower);
                put_bound_after(out, &range.upper, range.lower.as_ref(), expanded);
                put_var(out, hashes.len() as u64);
                for hash in hashes {
                    out.extend_from_slice(hash);
                }
            }
            Part::Want(key) => {
                out.push(4);
                put_key(out, key);
            }
            Part::Entry(entry)
                if entry.len() >= 33 + MIN_ENTRY_WITHOUT_SPACE
                    && entry[1..33] == *self.space.as_bytes() =>
            {
                out.push(12);
                put_var(out, (entry.len() - 32) as u64);
                out.push(entry[0]);
                out.extend_from_slice(&entry[33..]);
            }
            Part::Entry(entry) => {
                out.push(5);
                put_bytes(out, entry);
            }
            Part::Clock(millis) => {
                out.push(6);
                out.extend_from_slice(&millis.to_be_bytes());
            }
            Part::SpaceDigest(digest) => {
                out.push(13);
                out.extend_from_slice(digest);
            }
            Part::WantSpace => out.push(14),
        }
    }

    /// Decodes a message of at most `limit` bytes.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Message, WireError> {
        let what = "reconciliation message";
        if bytes.len() > limit {
            return Err(WireError::TooLarge { what, size: bytes.len(), limit });
        }
        let mut reader = Reader { bytes, what };
        let version = reader.u8()?;
        if version != WIRE_VERSION {
            return Err(WireError::Version { what, found: version });
        }
        let space = PublicKey::from_bytes(&reader.array()?)
            .map_err(|error| malformed(what, format!("bad space id: {error}")))?;
        let n = reader.u32()?;
        // Every part takes at least a byte (part 14 is only its tag): a count beyond that
        // is a lie.
        if n > reader.bytes.len() {
            return Err(malformed(what, format!("{n} parts cannot fit in the message")));
        }
        let mut parts = Vec::with_capacity(n);
        let mut expansion = Expansion { total: bytes.len(), expanded: 0 };
        for _ in 0..n {
            match reader.u8()? {
                tag @ (7 | 11) => read_run(&mut reader, tag, &mut expansion, &mut parts)?,
                tag => parts.push(read_part(&mut reader, tag, &space, &mut expansion)?),
            }
        }
        if !reader.bytes.is_empty() {
            return Err(malformed(what, format!("{} trailing bytes", reader.bytes.len())));
        }
        Ok(Message { space, parts })
    }
}

/// Reads a run of fingerprints (part 7 as older nodes wrote it, or part 11) into `parts`.
fn read_run(
    reader: &mut Reader<'_>,
    tag: u8,
    expansion: &mut Expansion,
    parts: &mut Vec<Part>,
) -> Result<(), WireError> {
    let what = reader.what;
    let sum_len = if tag == 7 { OLD_RUN_SUM_LEN } else { RUN_SUM_LEN };
    let mut lower = reader.bound()?;
    let count = reader.var_len()?;
    // Each range takes at least a bound byte, a sum and a count byte.
    if count == 0 || count > reader.bytes.len() / (sum_len + 2) {
        return Err(malformed(what, format!("a run of {count} ranges")));
    }
    for index in 0..count {
        // An open lower bound is the start of the space: a range after one that ends at
        // the end of the space would start there again.
        if index > 0 && lower.is_none() {
            return Err(malformed(what, "a run goes on after the end of the space"));
        }
        let upper = if tag == 7 {
            reader.bound_after(lower.as_ref(), expansion)?
        } else {
            reader.bound_in_run(lower.as_ref(), expansion)?
        };
        // Only the bytes every part carries count (see `same_fingerprint`).
        let mut sum = [0; 32];
        sum[..RUN_SUM_LEN].copy_from_slice(&reader.take(sum_len)?[..RUN_SUM_LEN]);
        let items = reader.var()?;
        let range = Range { lower: lower.clone(), upper: upper.clone() };
        parts.push(Part::Fingerprint(range, Fingerprint { sum, count: items }));
        lower = upper;
    }
    Ok(())
}

/// Reads one part other than a run of fingerprints, whose tag was `tag`.
fn read_part(
    reader: &mut Reader<'_>,
    tag: u8,
    space: &PublicKey,
    expansion: &mut Expansion,
) -> Result<Part, WireError> {
    let what = reader.what;
    Ok(match tag {
        1 => {
            let record = reader.bytes32()?.to_vec();
            let count = reader.u16()?;
            let mut statements = Vec::with_capacity(count.min(reader.bytes.len() / 4));
            for _ in 0..count {
                statements.push(reader.bytes32()?.to_vec());
            }
            Part::Space { record, statements }
        }
        2 => {
            let range = reader.range()?;
            // Only the bytes every part carries count (see `same_fingerprint`): the rest is
            // dropped, so the message reads the same in any form.
            let full: [u8; 32] = reader.array()?;
            let mut sum = [0; 32];
            sum[..RUN_SUM_LEN].copy_from_slice(&full[..RUN_SUM_LEN]);
            let count = u64::from_be_bytes(reader.array()?);
            Part::Fingerprint(range, Fingerprint { sum, count })
        }
        3 | 8 => read_items(reader, tag, expansion)?,
        4 => Part::Want(reader.key()?),
        5 => Part::Entry(reader.bytes32()?.to_vec()),
        6 => Part::Clock(u64::from_be_bytes(reader.array()?)),
        13 => Part::SpaceDigest(reader.array()?),
        14 => Part::WantSpace,
        9 | 10 => {
            let lower = reader.bound()?;
            let upper = reader.bound_after(lower.as_ref(), expansion)?;
            let range = Range { lower, upper };
            let count = reader.var_len()?;
            if count > reader.bytes.len() / HASH_PREFIX_LEN {
                return Err(malformed(what, format!("{count} hashes cannot fit")));
            }
            let mut hashes = Vec::with_capacity(count);
            for _ in 0..count {
                hashes.push(reader.array()?);
            }
            if tag == 9 { Part::Hashes(range, hashes) } else { Part::WantHashes(range, hashes) }
        }
        12 => {
            let len = reader.var_len()?;
            if len < MIN_ENTRY_WITHOUT_SPACE {
                return Err(malformed(what, format!("an entry of {len} bytes")));
            }
            let rest = reader.take(len)?;
            let mut entry = Vec::with_capacity(len + 32);
            entry.push(rest[0]);
            entry.extend_from_slice(space.as_bytes());
            entry.extend_from_slice(&rest[1..]);
            Part::Entry(entry)
        }
        tag => return Err(malformed(what, format!("unknown part {tag}"))),
    })
}

/// Reads a listing with keys: part 3 (full keys, as older nodes wrote it) or part 8
/// (keys sharing a prefix with the key before).
fn read_items(
    reader: &mut Reader<'_>,
    tag: u8,
    expansion: &mut Expansion,
) -> Result<Part, WireError> {
    let what = reader.what;
    let range = reader.range()?;
    let (count, least) = if tag == 3 { (reader.u32()?, 36) } else { (reader.var_len()?, 35) };
    if count > reader.bytes.len() / least {
        return Err(malformed(what, format!("{count} items cannot fit")));
    }
    let mut items: Vec<(RangeKey, [u8; 32])> = Vec::with_capacity(count);
    for _ in 0..count {
        let key = if tag == 3 {
            reader.key()?
        } else {
            reader.key_after(items.last().map(|(key, _)| key), expansion)?
        };
        items.push((key, reader.array()?));
    }
    Ok(Part::Items(range, items))
}
