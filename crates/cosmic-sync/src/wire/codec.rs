//! The primitives of both wire formats: numbers, strings, keys and bounds (whole or
//! sharing a prefix with the key before), written by `put_*` and read by [`Reader`].

use cosmic_store::{MAX_DOC_KEY_LEN, MAX_FIELD_LEN, RangeKey};

use super::{Range, WireError, malformed};

pub(super) fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
}

pub(super) fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

pub(super) fn put_key(out: &mut Vec<u8>, key: &RangeKey) {
    put_u16(out, key.doc.len());
    out.extend_from_slice(key.doc.as_bytes());
    put_u16(out, key.field.len());
    out.extend_from_slice(key.field.as_bytes());
}

pub(super) fn put_range(out: &mut Vec<u8>, range: &Range) {
    put_bound(out, &range.lower);
    put_bound(out, &range.upper);
}

pub(super) fn put_bound(out: &mut Vec<u8>, bound: &Option<RangeKey>) {
    match bound {
        None => out.push(0),
        Some(key) => {
            out.push(1);
            put_key(out, key);
        }
    }
}

/// An unsigned LEB128 number.
pub(super) fn put_var(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

pub(super) fn put_vbytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_var(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// How many bytes of keys a reconciliation message may expand to, at most, per byte of
/// the message read so far (plus [`EXPANSION_SLACK`]): shared prefixes must not let a
/// small message make a receiver allocate many times its size.
pub(super) const MAX_EXPANSION: usize = 8;

/// Key bytes a message may expand to beyond [`MAX_EXPANSION`] times its length.
pub(super) const EXPANSION_SLACK: usize = 4096;

/// `key` as the bytes its document key shares with `previous`'s and the rest. `expanded`
/// counts the key bytes the message expands to; a key that would take it over the
/// bound the decoder enforces is written whole (sharing nothing).
pub(super) fn put_key_after(
    out: &mut Vec<u8>,
    key: &RangeKey,
    previous: Option<&RangeKey>,
    expanded: &mut usize,
) {
    put_key_sharing(out, key, previous, expanded, 0);
}

/// `key` after `previous` as [`put_key_after`] writes it, with `offset` added to the
/// shared length (a run's bounds keep 0 for the open end).
fn put_key_sharing(
    out: &mut Vec<u8>,
    key: &RangeKey,
    previous: Option<&RangeKey>,
    expanded: &mut usize,
    offset: u64,
) {
    let shared = shared_for(out.len(), key, previous, expanded);
    put_var(out, shared as u64 + offset);
    put_vbytes(out, &key.doc.as_bytes()[shared..]);
    put_vbytes(out, key.field.as_bytes());
}

/// How many bytes of `key`'s document key to write as shared with `previous`'s, for a
/// message `written` bytes long so far; counts the key's bytes into `expanded`. A key that
/// would take the message over the bound the decoder enforces shares nothing.
pub(super) fn shared_for(
    written: usize,
    key: &RangeKey,
    previous: Option<&RangeKey>,
    expanded: &mut usize,
) -> usize {
    let before = previous.map_or(&[][..], |previous| previous.doc.as_bytes());
    let doc = key.doc.as_bytes();
    let shared = before.iter().zip(doc).take_while(|(a, b)| a == b).count();
    *expanded += doc.len() + key.field.len();
    // The message's bytes once this key is written sharing `shared`, counting each of
    // its three numbers as one byte: never more than the receiver will have read.
    let written = written + 3 + doc.len() - shared + key.field.len();
    if *expanded > MAX_EXPANSION * written + EXPANSION_SLACK { 0 } else { shared }
}

/// A bound in a run of fingerprints (part 11): `0` for the open end, or the key after
/// `previous` with its shared length plus one.
pub(super) fn put_bound_in_run(
    out: &mut Vec<u8>,
    bound: &Option<RangeKey>,
    previous: Option<&RangeKey>,
    expanded: &mut usize,
) {
    match bound {
        None => out.push(0),
        Some(key) => put_key_sharing(out, key, previous, expanded, 1),
    }
}

pub(super) fn put_bound_after(
    out: &mut Vec<u8>,
    bound: &Option<RangeKey>,
    previous: Option<&RangeKey>,
    expanded: &mut usize,
) {
    match bound {
        None => out.push(0),
        Some(key) => {
            out.push(1);
            put_key_after(out, key, previous, expanded);
        }
    }
}

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) what: &'static str,
}

/// Key bytes a reconciliation message has expanded to, against its bound (see
/// [`MAX_EXPANSION`]).
pub(super) struct Expansion {
    /// The whole message's length.
    pub(super) total: usize,
    /// Key bytes decoded from shared prefixes so far.
    pub(super) expanded: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(malformed(self.what, format!("truncated: {n} more bytes expected")));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u16(&mut self) -> Result<usize, WireError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    pub(super) fn u32(&mut self) -> Result<usize, WireError> {
        usize::try_from(u32::from_be_bytes(self.array()?))
            .map_err(|_| malformed(self.what, "a length does not fit this machine"))
    }

    pub(super) fn bytes32(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()?;
        self.take(len)
    }

    pub(super) fn str16(&mut self) -> Result<String, WireError> {
        let len = self.u16()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| malformed(self.what, "a key is not utf-8"))
    }

    pub(super) fn key(&mut self) -> Result<RangeKey, WireError> {
        let doc = self.str16()?;
        let field = self.str16()?;
        Ok(RangeKey { doc, field })
    }

    pub(super) fn range(&mut self) -> Result<Range, WireError> {
        let lower = self.bound()?;
        let upper = self.bound()?;
        Ok(Range { lower, upper })
    }

    pub(super) fn bound(&mut self) -> Result<Option<RangeKey>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.key().map(Some),
            tag => Err(malformed(self.what, format!("bad range bound {tag}"))),
        }
    }

    pub(super) fn bound_after(
        &mut self,
        previous: Option<&RangeKey>,
        expansion: &mut Expansion,
    ) -> Result<Option<RangeKey>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.key_after(previous, expansion).map(Some),
            tag => Err(malformed(self.what, format!("bad range bound {tag}"))),
        }
    }

    /// An unsigned LEB128 number of at most 64 bits.
    pub(super) fn var(&mut self) -> Result<u64, WireError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            if shift == 63 && byte > 1 {
                break;
            }
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(malformed(self.what, "a number over 64 bits"))
    }

    pub(super) fn var_len(&mut self) -> Result<usize, WireError> {
        usize::try_from(self.var()?)
            .map_err(|_| malformed(self.what, "a length does not fit this machine"))
    }

    /// A key written after `previous` (see `put_key_after`). Its parts may be no longer
    /// than stored keys are, and the key bytes of the whole message no more than
    /// [`MAX_EXPANSION`] times the bytes read so far.
    pub(super) fn key_after(
        &mut self,
        previous: Option<&RangeKey>,
        expansion: &mut Expansion,
    ) -> Result<RangeKey, WireError> {
        let shared = self.var_len()?;
        self.key_sharing(shared, previous, expansion)
    }

    /// A bound in a run of fingerprints (part 11, see `put_bound_in_run`).
    pub(super) fn bound_in_run(
        &mut self,
        previous: Option<&RangeKey>,
        expansion: &mut Expansion,
    ) -> Result<Option<RangeKey>, WireError> {
        match self.var_len()? {
            0 => Ok(None),
            shared => self.key_sharing(shared - 1, previous, expansion).map(Some),
        }
    }

    /// The rest of a key whose document key shares `shared` bytes with `previous`'s.
    pub(super) fn key_sharing(
        &mut self,
        shared: usize,
        previous: Option<&RangeKey>,
        expansion: &mut Expansion,
    ) -> Result<RangeKey, WireError> {
        let before = previous.map_or(&[][..], |previous| previous.doc.as_bytes());
        if shared > before.len() {
            return Err(malformed(self.what, "a key shares more than the key before holds"));
        }
        let suffix = self.var_len()?;
        if shared + suffix > MAX_DOC_KEY_LEN {
            return Err(malformed(self.what, "a document key over the length limit"));
        }
        let mut doc = before[..shared].to_vec();
        doc.extend_from_slice(self.take(suffix)?);
        let field = self.var_len()?;
        if field > MAX_FIELD_LEN {
            return Err(malformed(self.what, "a field name over the length limit"));
        }
        let field = self.take(field)?.to_vec();
        expansion.expanded += doc.len() + field.len();
        let read = expansion.total - self.bytes.len();
        if expansion.expanded > MAX_EXPANSION * read + EXPANSION_SLACK {
            return Err(malformed(self.what, "keys expand to many times the message's size"));
        }
        match (String::from_utf8(doc), String::from_utf8(field)) {
            (Ok(doc), Ok(field)) => Ok(RangeKey { doc, field }),
            _ => Err(malformed(self.what, "a key is not utf-8")),
        }
    }
}
