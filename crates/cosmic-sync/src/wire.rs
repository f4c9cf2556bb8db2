//! The wire formats of replication: gossip messages and reconciliation messages.
//!
//! Both are versioned, hand-written binary formats read with hard limits; anything else is
//! a [`WireError`] saying what was wrong.
//!
//! ```text
//! gossip    = version:u8=1 kind:u8=1 entry             one signed entry (Entry::encode)
//!           | version:u8=1 kind:u8=2 stream:u64be seq:u64be n:u32be entry:bytes32*n
//!                                                      a batch, numbered by its publisher
//! recon     = version:u8=1 space[32] n:u32 part*n
//! part      = 1 record:bytes32 n:u16 statement:bytes32*n     space record and grants
//!           | 2 range fingerprint[40]                        sum[32] ++ count:u64be
//!           | 3 range n:u32 (key hash[32])*n                  every item of the range
//!           | 4 key                                           "send me your entry"
//!           | 5 entry:bytes32                                 a signed entry
//!           | 6 millis:u64be                                  the sender's wall clock
//!           | 7 bound n:var (bound' sum[16] count:var)*n      fingerprints of n ranges
//!                                                             that follow each other
//!           | 8 range n:var (key' hash[32])*n                 part 3, keys compressed
//! range     = bound bound                                     [lower, upper)
//! bound     = 0 (open) | 1 key
//! key       = doc:str16 field:str16
//! bound'    = 0 (open) | 1 key'       key' = shared:var suffix:vstr field:vstr
//! bytes32   = len:u32be bytes[len]      str16 = len:u16be utf8[len]
//! var       = unsigned LEB128 (at most 10 bytes)    vstr = len:var utf8[len]
//! ```
//!
//! Parts 7 and 8 are how this version writes what parts 2 and 3 say (older nodes wrote
//! those, and they are still read): a split range's fingerprints in one part, each
//! range starting where the one before ends, so each bound is sent once, with the first
//! [`RUN_SUM_LEN`] bytes of each sum (see [`same_fingerprint`]); and keys as the number
//! of bytes their document key shares with the key before (in the part) and the rest.

use cosmic_auth::PublicKey;
use cosmic_store::{Entry, Fingerprint, KeyCache, MAX_DOC_KEY_LEN, MAX_FIELD_LEN, RangeKey};

/// How many bytes of a fingerprint's sum part 7 carries: the first 16 bytes of the
/// little-endian sum, i.e. the sum of the same hashes mod 2^128. A received sum is
/// zero beyond them; compare fingerprints with [`same_fingerprint`].
pub const RUN_SUM_LEN: usize = 16;

/// Whether our fingerprint of a range, `ours`, equals `theirs` as a message carried it:
/// the same count, and the same sum in the bytes every part carries ([`RUN_SUM_LEN`]).
pub fn same_fingerprint(ours: &Fingerprint, theirs: &Fingerprint) -> bool {
    ours.count == theirs.count && ours.sum[..RUN_SUM_LEN] == theirs.sum[..RUN_SUM_LEN]
}

/// The version of both formats this build writes and reads.
pub const WIRE_VERSION: u8 = 1;

const GOSSIP_ENTRY: u8 = 1;
const GOSSIP_BATCH: u8 = 2;

/// The bytes a batch gossip message spends besides its entries' encodings.
pub const GOSSIP_BATCH_HEADER: usize = 2 + 8 + 8 + 4;

/// The bytes one entry adds to a batch gossip message besides its encoding.
pub const GOSSIP_BATCH_PER_ENTRY: usize = 4;

/// Where a batch stands in its publisher's numbering: a publisher numbers the batches it
/// publishes on a space's topic 1, 2, 3, … within a `stream` it picks afresh each time it
/// starts following the space, so a receiver that sees a number skipped knows it lost a
/// batch, even one whose loss the publisher never saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sequence {
    /// The publisher's stream: a new value whenever its numbering starts again.
    pub stream: u64,
    /// The batch's number in the stream, from 1.
    pub seq: u64,
}

/// A decoded gossip message: its entries (structure and keys checked, not signatures)
/// and, for a batch, its place in the publisher's numbering.
#[derive(Clone, Debug, PartialEq)]
pub struct Gossip {
    /// `None` for the single-entry form, which older nodes publish.
    pub sequence: Option<Sequence>,
    /// At least one entry.
    pub entries: Vec<Entry>,
}

/// Why bytes from a peer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message is larger than allowed.
    #[error("{what} of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The version byte is not [`WIRE_VERSION`].
    #[error("{what} has version {found}, this node reads version {WIRE_VERSION}")]
    Version {
        /// What was being read.
        what: &'static str,
        /// The version found.
        found: u8,
    },
    /// The bytes do not follow the format.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
}

fn malformed(what: &'static str, reason: impl Into<String>) -> WireError {
    WireError::Malformed { what, reason: reason.into() }
}

/// A key range `[lower, upper)` of `(doc, field)` positions; `None` is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// The inclusive lower bound (`None`: the start of the space).
    pub lower: Option<RangeKey>,
    /// The exclusive upper bound (`None`: the end of the space).
    pub upper: Option<RangeKey>,
}

impl Range {
    /// The whole space.
    pub const ALL: Range = Range { lower: None, upper: None };
}

/// One part of a reconciliation message.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// The sender's space record and capability statements (each encoded).
    Space {
        /// `SpaceRecord::encode`.
        record: Vec<u8>,
        /// `SignedStatement::to_bytes`, each.
        statements: Vec<Vec<u8>>,
    },
    /// The fingerprint of the sender's items in a range.
    Fingerprint(Range, Fingerprint),
    /// Every item of the sender in a range, with its entry hash.
    Items(Range, Vec<(RangeKey, [u8; 32])>),
    /// The sender wants the receiver's entry for this position.
    Want(RangeKey),
    /// A signed entry, encoded.
    Entry(Vec<u8>),
    /// The sender's wall clock when it sent the message, in milliseconds since the Unix
    /// epoch, uncorrected: the first message of a session and its answer carry one, so
    /// that a node can tell whether its own clock is behind most of its peers'.
    Clock(u64),
}

/// A reconciliation message: the space and the parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The space reconciled.
    pub space: PublicKey,
    /// The parts, processed in order (space records first, then entries, then the rest).
    pub parts: Vec<Part>,
}

/// Encodes a gossip message carrying `entry`.
pub fn encode_gossip(entry: &Entry) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION, GOSSIP_ENTRY];
    out.extend_from_slice(&entry.encode());
    out
}

/// Encodes a batch gossip message of `entries`, already encoded with `Entry::encode`
/// (their total with the framing is the caller's to bound: see [`GOSSIP_BATCH_HEADER`]
/// and [`GOSSIP_BATCH_PER_ENTRY`]).
pub fn encode_gossip_batch(sequence: Sequence, entries: &[Vec<u8>]) -> Vec<u8> {
    let body: usize = entries.iter().map(|entry| entry.len() + GOSSIP_BATCH_PER_ENTRY).sum();
    let mut out = Vec::with_capacity(GOSSIP_BATCH_HEADER + body);
    out.extend_from_slice(&[WIRE_VERSION, GOSSIP_BATCH]);
    out.extend_from_slice(&sequence.stream.to_be_bytes());
    out.extend_from_slice(&sequence.seq.to_be_bytes());
    put_u32(&mut out, entries.len());
    for entry in entries {
        put_bytes(&mut out, entry);
    }
    out
}

/// Decodes a gossip message of at most `limit` bytes, either form, into its entries
/// (structure and keys checked, not the signatures). One malformed entry makes the whole
/// message malformed: a batch is read whole or not at all.
pub fn decode_gossip(bytes: &[u8], limit: usize) -> Result<Gossip, WireError> {
    let what = "gossip message";
    if bytes.len() > limit {
        return Err(WireError::TooLarge { what, size: bytes.len(), limit });
    }
    match bytes {
        [WIRE_VERSION, GOSSIP_ENTRY, entry @ ..] => {
            let entry = Entry::decode(entry).map_err(|error| malformed(what, error.to_string()))?;
            Ok(Gossip { sequence: None, entries: vec![entry] })
        }
        [WIRE_VERSION, GOSSIP_BATCH, rest @ ..] => {
            let mut reader = Reader { bytes: rest, what };
            let stream = u64::from_be_bytes(reader.array()?);
            let seq = u64::from_be_bytes(reader.array()?);
            if seq == 0 {
                return Err(malformed(what, "batch number 0 (numbers start at 1)"));
            }
            let count = reader.u32()?;
            if count == 0 {
                return Err(malformed(what, "a batch of no entries"));
            }
            // Each entry takes at least its length prefix: a count beyond that is a lie.
            if count > reader.bytes.len() / GOSSIP_BATCH_PER_ENTRY {
                return Err(malformed(what, format!("{count} entries cannot fit")));
            }
            let mut entries = Vec::with_capacity(count);
            let mut keys = KeyCache::new();
            for index in 0..count {
                let entry =
                    Entry::decode_cached(reader.bytes32()?, &mut keys).map_err(|error| {
                        malformed(what, format!("entry {index} of the batch: {error}"))
                    })?;
                entries.push(entry);
            }
            if !reader.bytes.is_empty() {
                return Err(malformed(what, "bytes after the last entry"));
            }
            Ok(Gossip { sequence: Some(Sequence { stream, seq }), entries })
        }
        [WIRE_VERSION, kind, ..] => Err(malformed(what, format!("unknown kind {kind}"))),
        [found, ..] => Err(WireError::Version { what, found: *found }),
        [] => Err(malformed(what, "empty")),
    }
}

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
        Part::Want(key) => key_len(key),
        Part::Entry(entry) => 4 + entry.len(),
        Part::Clock(_) => 8,
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
            let part = &self.parts[index];
            index += 1;
            if let Part::Fingerprint(first, fingerprint) = part {
                // The fingerprints of ranges that follow each other go in one part.
                let mut run = vec![(&first.upper, fingerprint)];
                while let Some(Part::Fingerprint(next, fingerprint)) = self.parts.get(index)
                    && next.lower.is_some()
                    && next.lower == *run[run.len() - 1].0
                    && run.len() < usize::from(u16::MAX)
                {
                    run.push((&next.upper, fingerprint));
                    index += 1;
                }
                out.push(7);
                put_bound(&mut out, &first.lower);
                put_var(&mut out, run.len() as u64);
                let mut previous = first.lower.as_ref();
                for (upper, fingerprint) in run {
                    put_bound_after(&mut out, upper, previous, &mut expanded);
                    out.extend_from_slice(&fingerprint.sum[..RUN_SUM_LEN]);
                    put_var(&mut out, fingerprint.count);
                    previous = upper.as_ref();
                }
                continue;
            }
            match part {
                Part::Space { record, statements } => {
                    out.push(1);
                    put_bytes(&mut out, record);
                    put_u16(&mut out, statements.len());
                    for statement in statements {
                        put_bytes(&mut out, statement);
                    }
                }
                Part::Fingerprint(..) => unreachable!("written as a run above"),
                Part::Items(range, items) => {
                    out.push(8);
                    put_range(&mut out, range);
                    put_var(&mut out, items.len() as u64);
                    let mut previous = None;
                    for (key, hash) in items {
                        put_key_after(&mut out, key, previous, &mut expanded);
                        out.extend_from_slice(hash);
                        previous = Some(key);
                    }
                }
                Part::Want(key) => {
                    out.push(4);
                    put_key(&mut out, key);
                }
                Part::Entry(entry) => {
                    out.push(5);
                    put_bytes(&mut out, entry);
                }
                Part::Clock(millis) => {
                    out.push(6);
                    out.extend_from_slice(&millis.to_be_bytes());
                }
            }
        }
        let written = u32::try_from(written).unwrap_or(u32::MAX).to_be_bytes();
        out[count_at..count_at + 4].copy_from_slice(&written);
        out
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
        // Every part takes at least two bytes: a count beyond that is a lie.
        if n > reader.bytes.len() / 2 {
            return Err(malformed(what, format!("{n} parts cannot fit in the message")));
        }
        let mut parts = Vec::with_capacity(n);
        let mut expansion = Expansion { total: bytes.len(), expanded: 0 };
        for _ in 0..n {
            let part = match reader.u8()? {
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
                    // Only the bytes every part carries count (see `same_fingerprint`):
                    // the rest is dropped, so the message reads the same in any form.
                    let full: [u8; 32] = reader.array()?;
                    let mut sum = [0; 32];
                    sum[..RUN_SUM_LEN].copy_from_slice(&full[..RUN_SUM_LEN]);
                    let count = u64::from_be_bytes(reader.array()?);
                    Part::Fingerprint(range, Fingerprint { sum, count })
                }
                3 => {
                    let range = reader.range()?;
                    let count = reader.u32()?;
                    if count > reader.bytes.len() / 36 {
                        return Err(malformed(what, format!("{count} items cannot fit")));
                    }
                    let mut items = Vec::with_capacity(count);
                    for _ in 0..count {
                        let key = reader.key()?;
                        items.push((key, reader.array()?));
                    }
                    Part::Items(range, items)
                }
                4 => Part::Want(reader.key()?),
                5 => Part::Entry(reader.bytes32()?.to_vec()),
                6 => Part::Clock(u64::from_be_bytes(reader.array()?)),
                7 => {
                    let mut lower = reader.bound()?;
                    let count = reader.var_len()?;
                    // Each range takes at least a bound byte, a sum and a count byte.
                    if count == 0 || count > reader.bytes.len() / (RUN_SUM_LEN + 2) {
                        return Err(malformed(what, format!("a run of {count} ranges")));
                    }
                    for index in 0..count {
                        // An open lower bound is the start of the space: a range after one
                        // that ends at the end of the space would start there again.
                        if index > 0 && lower.is_none() {
                            return Err(malformed(
                                what,
                                "a run goes on after the end of the space",
                            ));
                        }
                        let upper = reader.bound_after(lower.as_ref(), &mut expansion)?;
                        let mut sum = [0; 32];
                        sum[..RUN_SUM_LEN].copy_from_slice(reader.take(RUN_SUM_LEN)?);
                        let items = reader.var()?;
                        let range = Range { lower: lower.clone(), upper: upper.clone() };
                        parts.push(Part::Fingerprint(range, Fingerprint { sum, count: items }));
                        lower = upper;
                    }
                    continue;
                }
                8 => {
                    let range = reader.range()?;
                    let count = reader.var_len()?;
                    if count > reader.bytes.len() / 35 {
                        return Err(malformed(what, format!("{count} items cannot fit")));
                    }
                    let mut items: Vec<(RangeKey, [u8; 32])> = Vec::with_capacity(count);
                    for _ in 0..count {
                        let key =
                            reader.key_after(items.last().map(|(key, _)| key), &mut expansion)?;
                        items.push((key, reader.array()?));
                    }
                    Part::Items(range, items)
                }
                tag => return Err(malformed(what, format!("unknown part {tag}"))),
            };
            parts.push(part);
        }
        if !reader.bytes.is_empty() {
            return Err(malformed(what, format!("{} trailing bytes", reader.bytes.len())));
        }
        Ok(Message { space, parts })
    }
}

fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_key(out: &mut Vec<u8>, key: &RangeKey) {
    put_u16(out, key.doc.len());
    out.extend_from_slice(key.doc.as_bytes());
    put_u16(out, key.field.len());
    out.extend_from_slice(key.field.as_bytes());
}

fn put_range(out: &mut Vec<u8>, range: &Range) {
    put_bound(out, &range.lower);
    put_bound(out, &range.upper);
}

fn put_bound(out: &mut Vec<u8>, bound: &Option<RangeKey>) {
    match bound {
        None => out.push(0),
        Some(key) => {
            out.push(1);
            put_key(out, key);
        }
    }
}

/// An unsigned LEB128 number.
fn put_var(out: &mut Vec<u8>, mut n: u64) {
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

fn put_vbytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_var(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// How many bytes of keys a reconciliation message may expand to, at most, per byte of
/// the message read so far (plus [`EXPANSION_SLACK`]): shared prefixes must not let a
/// small message make a receiver allocate many times its size.
const MAX_EXPANSION: usize = 8;

/// Key bytes a message may expand to beyond [`MAX_EXPANSION`] times its length.
const EXPANSION_SLACK: usize = 4096;

/// `key` as the bytes its document key shares with `previous`'s and the rest. `expanded`
/// counts the key bytes the message expands to; a key that would take it over the
/// bound the decoder enforces is written whole (sharing nothing).
fn put_key_after(
    out: &mut Vec<u8>,
    key: &RangeKey,
    previous: Option<&RangeKey>,
    expanded: &mut usize,
) {
    let before = previous.map_or(&[][..], |previous| previous.doc.as_bytes());
    let doc = key.doc.as_bytes();
    let mut shared = before.iter().zip(doc).take_while(|(a, b)| a == b).count();
    *expanded += doc.len() + key.field.len();
    // The message's bytes once this key is written sharing `shared`, counting each of
    // its three numbers as one byte: never more than the receiver will have read.
    let written = out.len() + 3 + doc.len() - shared + key.field.len();
    if *expanded > MAX_EXPANSION * written + EXPANSION_SLACK {
        shared = 0;
    }
    put_var(out, shared as u64);
    put_vbytes(out, &doc[shared..]);
    put_vbytes(out, key.field.as_bytes());
}

fn put_bound_after(
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

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

/// Key bytes a reconciliation message has expanded to, against its bound (see
/// [`MAX_EXPANSION`]).
struct Expansion {
    /// The whole message's length.
    total: usize,
    /// Key bytes decoded from shared prefixes so far.
    expanded: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(malformed(self.what, format!("truncated: {n} more bytes expected")));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<usize, WireError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<usize, WireError> {
        usize::try_from(u32::from_be_bytes(self.array()?))
            .map_err(|_| malformed(self.what, "a length does not fit this machine"))
    }

    fn bytes32(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()?;
        self.take(len)
    }

    fn str16(&mut self) -> Result<String, WireError> {
        let len = self.u16()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| malformed(self.what, "a key is not utf-8"))
    }

    fn key(&mut self) -> Result<RangeKey, WireError> {
        let doc = self.str16()?;
        let field = self.str16()?;
        Ok(RangeKey { doc, field })
    }

    fn range(&mut self) -> Result<Range, WireError> {
        let lower = self.bound()?;
        let upper = self.bound()?;
        Ok(Range { lower, upper })
    }

    fn bound(&mut self) -> Result<Option<RangeKey>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.key().map(Some),
            tag => Err(malformed(self.what, format!("bad range bound {tag}"))),
        }
    }

    fn bound_after(
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
    fn var(&mut self) -> Result<u64, WireError> {
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

    fn var_len(&mut self) -> Result<usize, WireError> {
        usize::try_from(self.var()?)
            .map_err(|_| malformed(self.what, "a length does not fit this machine"))
    }

    /// A key written after `previous` (see `put_key_after`). Its parts may be no longer
    /// than stored keys are, and the key bytes of the whole message no more than
    /// [`MAX_EXPANSION`] times the bytes read so far.
    fn key_after(
        &mut self,
        previous: Option<&RangeKey>,
        expansion: &mut Expansion,
    ) -> Result<RangeKey, WireError> {
        let before = previous.map_or(&[][..], |previous| previous.doc.as_bytes());
        let shared = self.var_len()?;
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
