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
//! range     = bound bound                                     [lower, upper)
//! bound     = 0 (open) | 1 key
//! key       = doc:str16 field:str16
//! bytes32   = len:u32be bytes[len]      str16 = len:u16be utf8[len]
//! ```

use cosmic_auth::PublicKey;
use cosmic_store::{Entry, Fingerprint, KeyCache, RangeKey};

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

/// The encoded size of a part, for budgets.
pub(crate) fn part_len(part: &Part) -> usize {
    let key_len = |key: &RangeKey| 4 + key.doc.len() + key.field.len();
    let bound_len = |bound: &Option<RangeKey>| 1 + bound.as_ref().map_or(0, key_len);
    let range_len = |range: &Range| bound_len(&range.lower) + bound_len(&range.upper);
    1 + match part {
        Part::Space { record, statements } => {
            6 + record.len() + statements.iter().map(|s| 4 + s.len()).sum::<usize>()
        }
        Part::Fingerprint(range, _) => range_len(range) + 40,
        Part::Items(range, items) => {
            range_len(range) + 4 + items.iter().map(|(key, _)| key_len(key) + 32).sum::<usize>()
        }
        Part::Want(key) => key_len(key),
        Part::Entry(entry) => 4 + entry.len(),
        Part::Clock(_) => 8,
    }
}

impl Message {
    /// The encoded size.
    pub fn encoded_len(&self) -> usize {
        1 + 32 + 4 + self.parts.iter().map(part_len).sum::<usize>()
    }

    /// Encodes the message; one larger than `limit` bytes is an error.
    pub fn encode(&self, limit: usize) -> Result<Vec<u8>, WireError> {
        let size = self.encoded_len();
        if size > limit {
            return Err(WireError::TooLarge { what: "reconciliation message", size, limit });
        }
        let mut out = Vec::with_capacity(size);
        out.push(WIRE_VERSION);
        out.extend_from_slice(self.space.as_bytes());
        put_u32(&mut out, self.parts.len());
        for part in &self.parts {
            match part {
                Part::Space { record, statements } => {
                    out.push(1);
                    put_bytes(&mut out, record);
                    put_u16(&mut out, statements.len());
                    for statement in statements {
                        put_bytes(&mut out, statement);
                    }
                }
                Part::Fingerprint(range, fingerprint) => {
                    out.push(2);
                    put_range(&mut out, range);
                    out.extend_from_slice(&fingerprint.sum);
                    out.extend_from_slice(&fingerprint.count.to_be_bytes());
                }
                Part::Items(range, items) => {
                    out.push(3);
                    put_range(&mut out, range);
                    put_u32(&mut out, items.len());
                    for (key, hash) in items {
                        put_key(&mut out, key);
                        out.extend_from_slice(hash);
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
        Ok(out)
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
                    let sum = reader.array()?;
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
    for bound in [&range.lower, &range.upper] {
        match bound {
            None => out.push(0),
            Some(key) => {
                out.push(1);
                put_key(out, key);
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
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
        let mut bound = || -> Result<Option<RangeKey>, WireError> {
            match self.u8()? {
                0 => Ok(None),
                1 => self.key().map(Some),
                tag => Err(malformed(self.what, format!("bad range bound {tag}"))),
            }
        };
        let lower = bound()?;
        let upper = bound()?;
        Ok(Range { lower, upper })
    }
}
