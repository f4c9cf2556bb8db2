//! [`Cid`]: a blob's name, a CIDv1 with codec raw and a BLAKE3 multihash.
//!
//! The mapping is fixed: the 32-byte BLAKE3 hash iroh-blobs computes for a blob's bytes
//! is the digest of the multihash, so `Cid` and iroh's `Hash` convert both ways without
//! touching the data. Text is multibase base32 lower (`b` prefix), which for this codec
//! and hash always starts with `bafkr4i`.

use std::fmt;
use std::str::FromStr;

use iroh_blobs::Hash;

/// Multicodec code of the `raw` codec: the CID names plain bytes.
pub const RAW_CODEC: u64 = 0x55;
/// Multicodec code of the BLAKE3 hash function (32-byte digest by default).
pub const BLAKE3_CODE: u64 = 0x1e;
/// Length of the BLAKE3 digest carried in the multihash.
pub const BLAKE3_LEN: usize = 32;

/// The content id of a blob: CIDv1, codec raw (0x55), multihash BLAKE3 (0x1e, 32 bytes).
///
/// Prints as base32 (`bafkr4...`), parses from any multibase text of such a CID, and
/// serializes as its text form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid(Hash);

/// Why a text or binary CID is not one this crate can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidError {
    /// The value is not a CID at all (bad multibase, varint or multihash).
    #[error("{value:?} is not a cid: {reason}")]
    Malformed {
        /// The text (or hex of the bytes) that was given.
        value: String,
        /// What the `cid` crate objected to.
        reason: String,
    },
    /// A CIDv0 (`Qm...`), which always means sha2-256 and dag-pb.
    #[error(
        "cid {value} is version 0; only CIDv1 with codec raw (0x55) and a 32-byte blake3 \
         multihash (0x1e) is supported"
    )]
    UnsupportedVersion {
        /// The CID given.
        value: String,
    },
    /// A codec other than raw.
    #[error(
        "cid {value} has codec 0x{codec:x}; only codec raw (0x55) with a 32-byte blake3 \
         multihash (0x1e) is supported"
    )]
    UnsupportedCodec {
        /// The CID given.
        value: String,
        /// Its codec.
        codec: u64,
    },
    /// A hash function other than BLAKE3, or a BLAKE3 digest that is not 32 bytes long.
    #[error(
        "cid {value} uses multihash 0x{code:x} with a {size}-byte digest; only a 32-byte \
         blake3 multihash (0x1e) is supported"
    )]
    UnsupportedHash {
        /// The CID given.
        value: String,
        /// Its multihash code.
        code: u64,
        /// Its digest length.
        size: usize,
    },
}

impl Cid {
    /// The CID of a blob whose BLAKE3 hash (as iroh-blobs computes it) is `hash`.
    pub fn from_hash(hash: Hash) -> Self {
        Self(hash)
    }

    /// The CID of `data`, computed here without any store.
    pub fn of_bytes(data: impl AsRef<[u8]>) -> Self {
        Self(Hash::new(data))
    }

    /// The iroh-blobs hash this CID names.
    pub fn hash(&self) -> Hash {
        self.0
    }

    /// The 32-byte BLAKE3 digest.
    pub fn digest(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The binary CID: `0x01 0x55 0x1e 0x20` followed by the digest.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_generic().to_bytes()
    }

    /// Parses a binary CID, with the same checks as [`FromStr`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CidError> {
        let generic = cid::Cid::try_from(bytes).map_err(|error| CidError::Malformed {
            value: hex(bytes),
            reason: error.to_string(),
        })?;
        Self::from_generic(&generic)
    }

    fn to_generic(self) -> cid::Cid {
        let multihash = multihash::Multihash::<64>::wrap(BLAKE3_CODE, self.0.as_bytes())
            .expect("a 32-byte digest fits a 64-byte multihash");
        cid::Cid::new_v1(RAW_CODEC, multihash)
    }

    fn from_generic(generic: &cid::Cid) -> Result<Self, CidError> {
        if generic.version() != cid::Version::V1 {
            return Err(CidError::UnsupportedVersion { value: generic.to_string() });
        }
        if generic.codec() != RAW_CODEC {
            return Err(CidError::UnsupportedCodec {
                value: generic.to_string(),
                codec: generic.codec(),
            });
        }
        let multihash = generic.hash();
        let digest: Result<[u8; 32], _> = multihash.digest().try_into();
        match digest {
            Ok(digest) if multihash.code() == BLAKE3_CODE => Ok(Self(Hash::from_bytes(digest))),
            _ => Err(CidError::UnsupportedHash {
                value: generic.to_string(),
                code: multihash.code(),
                size: multihash.digest().len(),
            }),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl From<Hash> for Cid {
    fn from(hash: Hash) -> Self {
        Self(hash)
    }
}

impl From<Cid> for Hash {
    fn from(cid: Cid) -> Self {
        cid.0
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A CIDv1 prints in multibase base32 lower by default.
        fmt::Display::fmt(&self.to_generic(), f)
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = CidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let generic = cid::Cid::try_from(text).map_err(|error| CidError::Malformed {
            value: text.to_owned(),
            reason: error.to_string(),
        })?;
        Self::from_generic(&generic)
    }
}

impl serde::Serialize for Cid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Cid;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CIDv1 string with codec raw and a blake3 multihash")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Cid, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}
