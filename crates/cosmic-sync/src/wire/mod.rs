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
//!           | 9 range' n:var hash'[8]*n                       every item of the range, as
//!                                                             the first bytes of its hash
//!           | 10 range' n:var hash'[8]*n                      "send me your entries of
//!                                                             the range with these hashes"
//!           | 11 bound n:var (bound'' sum[12] count:var)*n    part 7, shorter
//!           | 12 entry':vbytes                                part 5 of the message's
//!                                                             space, without its space id
//!           | 13 digest[16]                                   what the sender's part 1
//!                                                             would hold, hashed
//!           | 14                                              "send me your part 1"
//! range     = bound bound                                     [lower, upper)
//! range'    = bound bound'                                    the upper after the lower
//! bound     = 0 (open) | 1 key
//! key       = doc:str16 field:str16
//! bound'    = 0 (open) | 1 key'       key' = shared:var suffix:vstr field:vstr
//! bound''   = 0 (open) | shared+1:var suffix:vstr field:vstr
//! bytes32   = len:u32be bytes[len]      str16 = len:u16be utf8[len]
//! var       = unsigned LEB128 (at most 10 bytes)    vstr = len:var utf8[len]
//! vbytes    = len:var bytes[len]
//! ```
//!
//! Parts 7 and 8 are how this version writes what parts 2 and 3 say (older nodes wrote
//! those, and they are still read): a split range's fingerprints in one part, each
//! range starting where the one before ends, so each bound is sent once, with the first
//! [`RUN_SUM_LEN`] bytes of each sum (see [`same_fingerprint`]); and keys as the number
//! of bytes their document key shares with the key before (in the part) and the rest.
//! Parts 9 and 10 are how this version lists a range and asks for entries of a listing
//! (older nodes wrote parts 8 and 4, still read and answered): by the first
//! [`HASH_PREFIX_LEN`] bytes of each entry hash, without keys. Part 11 is how it writes
//! a run of fingerprints (part 7 is still read): [`RUN_SUM_LEN`] bytes of each sum, and
//! bounds without a tag byte. Part 12 is an entry of the message's own space without the
//! 32 bytes of its space id, which the receiver puts back before decoding it. Parts 13 and
//! 14 spare a session the space record and every statement when both sides hold the same:
//! a session opens with the digest of its record and statements ([`space_digest`]), and
//! the answer carries its own record and statements, and asks for the opener's, only when
//! its digest differs.

mod codec;
mod message;

use cosmic_auth::PublicKey;
use cosmic_store::{Entry, Fingerprint, KeyCache, RangeKey};

use codec::{Reader, put_bytes, put_u32};
pub(crate) use message::part_len;

/// How many bytes of a fingerprint's sum this version sends (part 11) and compares: the
/// first 12 bytes of the little-endian sum, i.e. the sum of the same hashes mod 2^96. A
/// received sum is zero beyond them; compare fingerprints with [`same_fingerprint`].
/// Equal fingerprints of different ranges by chance: 2^-96 per comparison. (Against an
/// author who crafts entries, sums of any width are weak: see docs/SECURITY.md.)
pub const RUN_SUM_LEN: usize = 12;

/// How many bytes of each sum part 7, as older nodes wrote it, carries.
const OLD_RUN_SUM_LEN: usize = 16;

/// The shortest a signed entry's encoding can be without its space id: an author key and
/// a signature alone take 96 bytes. A part 12 shorter than this is malformed (so the space
/// ids put back cannot make a message expand).
const MIN_ENTRY_WITHOUT_SPACE: usize = 96;

/// Whether our fingerprint of a range, `ours`, equals `theirs` as a message carried it:
/// the same count, and the same sum in the bytes every part carries ([`RUN_SUM_LEN`]).
pub fn same_fingerprint(ours: &Fingerprint, theirs: &Fingerprint) -> bool {
    ours.count == theirs.count && ours.sum[..RUN_SUM_LEN] == theirs.sum[..RUN_SUM_LEN]
}

/// How many bytes of an entry hash a listing (part 9) and a request for entries (part 10)
/// carry. A difference goes unnoticed only when its hash begins like another hash of the
/// same listed range: 2^-64 by chance for a pair, and about 2^64 hash evaluations for an
/// author who grinds entries to hide one (see docs/SECURITY.md, "Reconciliation").
pub const HASH_PREFIX_LEN: usize = 8;

/// The first [`HASH_PREFIX_LEN`] bytes of `hash`.
pub fn hash_prefix(hash: &[u8; 32]) -> [u8; HASH_PREFIX_LEN] {
    let mut prefix = [0; HASH_PREFIX_LEN];
    prefix.copy_from_slice(&hash[..HASH_PREFIX_LEN]);
    prefix
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
    /// Every item of the sender in a range, with its entry hash (older nodes list so;
    /// this version sends [`Part::Hashes`]).
    Items(Range, Vec<(RangeKey, [u8; 32])>),
    /// Every item of the sender in a range, in key order, as the first
    /// [`HASH_PREFIX_LEN`] bytes of its entry hash.
    Hashes(Range, Vec<[u8; HASH_PREFIX_LEN]>),
    /// The sender wants the receiver's entry for this position (the answer to an
    /// [`Part::Items`] listing).
    Want(RangeKey),
    /// The sender wants the receiver's entries in a range whose hashes begin with these
    /// (the answer to a [`Part::Hashes`] listing).
    WantHashes(Range, Vec<[u8; HASH_PREFIX_LEN]>),
    /// A signed entry, encoded.
    Entry(Vec<u8>),
    /// The sender's wall clock when it sent the message, in milliseconds since the Unix
    /// epoch, uncorrected: the first message of a session and its answer carry one, so
    /// that a node can tell whether its own clock is behind most of its peers'.
    Clock(u64),
    /// The digest of the [`Part::Space`] the sender would send ([`space_digest`]): a
    /// session's first message carries it instead of the part itself.
    SpaceDigest([u8; 16]),
    /// The sender wants the receiver's [`Part::Space`] (its digest differed, or the
    /// sender holds no record of the space).
    WantSpace,
}

/// The digest of a [`Part::Space`]: the first 16 bytes of the BLAKE3 hash of its record
/// and statements, each length-prefixed, in the order given (a store lists statements by
/// hash, so the same record and statements give the same digest). `None` for other parts.
pub fn space_digest(part: &Part) -> Option<[u8; 16]> {
    let Part::Space { record, statements } = part else { return None };
    let mut hasher = blake3::Hasher::new();
    for bytes in std::iter::once(record).chain(statements) {
        hasher.update(&(bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    Some(digest)
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
