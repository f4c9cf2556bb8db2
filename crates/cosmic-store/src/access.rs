//! Space records and write grants: who may write to a space.
//!
//! FIXME(#2): capabilities belong to `cosmic-auth`; when its statements and its access
//! decision function exist, `Grant` becomes its capability statement and [`check_write`]
//! calls it. Until then this module implements the smallest rule DESIGN.md asks for: an
//! `open` space accepts any author, a `restricted` one accepts the space key itself and the
//! authors it granted a write right, until the grant's expiry.

use crate::value::Reader;
use crate::{Error, PublicKey, Result, Signature, Signer};

const SPACE_DOMAIN: &[u8] = b"cosmic-store/space/1\0";
const GRANT_DOMAIN: &[u8] = b"cosmic-store/grant/1\0";

/// Who may write to a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpaceMode {
    /// Any author may write.
    Open,
    /// Only the space key and authors it granted [`Right::Write`] may write.
    Restricted,
}

/// A right an author can be granted in a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Right {
    /// May read (enforced by the sync layer, not by the store).
    Read,
    /// May write entries.
    Write,
    /// May write, and administer the space.
    Admin,
}

/// A space's mode, signed by the space key. The record with the highest `version` wins
/// (ties broken by signature bytes), so records merge like entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceRecord {
    /// The space id: the public half of the space key.
    pub space: PublicKey,
    /// Who may write.
    pub mode: SpaceMode,
    /// Later versions replace earlier ones.
    pub version: u64,
    /// The space key's signature.
    pub signature: Signature,
}

impl SpaceRecord {
    /// Signs a record with the space key.
    pub fn sign(space_key: &dyn Signer, mode: SpaceMode, version: u64) -> SpaceRecord {
        let mut record = SpaceRecord {
            space: space_key.public_key(),
            mode,
            version,
            signature: Signature::from_bytes([0; 64]),
        };
        record.signature = space_key.sign(&record.message());
        record
    }

    fn message(&self) -> Vec<u8> {
        let mut out = SPACE_DOMAIN.to_vec();
        out.extend_from_slice(self.space.as_bytes());
        out.push(match self.mode {
            SpaceMode::Open => 0,
            SpaceMode::Restricted => 1,
        });
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }

    /// Checks the space key's signature.
    pub fn verify(&self) -> Result<()> {
        if self.space.verify(&self.message(), &self.signature) {
            Ok(())
        } else {
            Err(Error::decode("space record", format!("bad signature for space {}", self.space)))
        }
    }

    /// `space (32) ++ mode (u8) ++ version (u64 BE) ++ signature (64)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.message()[SPACE_DOMAIN.len()..].to_vec();
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// The inverse of [`SpaceRecord::encode`]; trailing bytes are left to the caller.
    pub(crate) fn decode_prefix(reader: &mut Reader<'_>) -> Result<SpaceRecord> {
        let what = "space record";
        let space = PublicKey::from_bytes(reader.array(what)?);
        let mode = match reader.u8(what)? {
            0 => SpaceMode::Open,
            1 => SpaceMode::Restricted,
            mode => return Err(Error::decode(what, format!("unknown mode {mode}"))),
        };
        let version = u64::from_be_bytes(reader.array(what)?);
        let signature = Signature::from_bytes(reader.array(what)?);
        Ok(SpaceRecord { space, mode, version, signature })
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8]) -> Result<SpaceRecord> {
        let mut reader = Reader::new(bytes);
        let record = SpaceRecord::decode_prefix(&mut reader)?;
        reader.finish("space record")?;
        Ok(record)
    }

    /// Whether `self` replaces `other` (same space).
    pub(crate) fn supersedes(&self, other: &SpaceRecord) -> bool {
        (self.version, self.signature.to_bytes()) > (other.version, other.signature.to_bytes())
    }
}

/// A right granted to an author in a space, signed by the space key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The space.
    pub space: PublicKey,
    /// The author granted the right.
    pub author: PublicKey,
    /// The right.
    pub right: Right,
    /// Milliseconds since the Unix epoch after which entries stamped later are refused.
    pub expires_millis: Option<u64>,
    /// The space key's signature.
    pub signature: Signature,
}

impl Grant {
    /// Signs a grant with the space key.
    pub fn sign(
        space_key: &dyn Signer,
        author: PublicKey,
        right: Right,
        expires_millis: Option<u64>,
    ) -> Grant {
        let mut grant = Grant {
            space: space_key.public_key(),
            author,
            right,
            expires_millis,
            signature: Signature::from_bytes([0; 64]),
        };
        grant.signature = space_key.sign(&grant.message());
        grant
    }

    fn message(&self) -> Vec<u8> {
        let mut out = GRANT_DOMAIN.to_vec();
        out.extend_from_slice(self.space.as_bytes());
        out.extend_from_slice(self.author.as_bytes());
        out.push(match self.right {
            Right::Read => 0,
            Right::Write => 1,
            Right::Admin => 2,
        });
        out.extend_from_slice(&self.expires_millis.unwrap_or(u64::MAX).to_be_bytes());
        out
    }

    /// Checks the space key's signature.
    pub fn verify(&self) -> Result<()> {
        if self.space.verify(&self.message(), &self.signature) {
            Ok(())
        } else {
            Err(Error::decode("grant", format!("bad signature for space {}", self.space)))
        }
    }

    /// `space (32) ++ author (32) ++ right (u8) ++ expiry (u64 BE, MAX: none) ++ sig (64)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.message()[GRANT_DOMAIN.len()..].to_vec();
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// The inverse of [`Grant::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Grant> {
        let what = "grant";
        let mut reader = Reader::new(bytes);
        let space = PublicKey::from_bytes(reader.array(what)?);
        let author = PublicKey::from_bytes(reader.array(what)?);
        let right = match reader.u8(what)? {
            0 => Right::Read,
            1 => Right::Write,
            2 => Right::Admin,
            right => return Err(Error::decode(what, format!("unknown right {right}"))),
        };
        let expires = u64::from_be_bytes(reader.array(what)?);
        let signature = Signature::from_bytes(reader.array(what)?);
        reader.finish(what)?;
        let expires_millis = (expires != u64::MAX).then_some(expires);
        Ok(Grant { space, author, right, expires_millis, signature })
    }

    /// Whether `self` replaces `other` (same space and author): grants merge by the
    /// greatest `(right, expiry, signature)`, so every peer keeps the same one.
    pub(crate) fn supersedes(&self, other: &Grant) -> bool {
        let key = |grant: &Grant| {
            (grant.right, grant.expires_millis.unwrap_or(u64::MAX), grant.signature.to_bytes())
        };
        key(self) > key(other)
    }
}

/// Decides whether `author` may write an entry stamped `at_millis` to a space.
pub(crate) fn check_write(
    record: &SpaceRecord,
    author: &PublicKey,
    at_millis: u64,
    grant: Option<&Grant>,
) -> Result<()> {
    let deny = |reason: &str| Error::AccessDenied {
        space: record.space,
        author: *author,
        reason: reason.to_owned(),
    };
    match record.mode {
        SpaceMode::Open => Ok(()),
        SpaceMode::Restricted if *author == record.space => Ok(()),
        SpaceMode::Restricted => match grant {
            None => Err(deny("the space is restricted and the author holds no grant")),
            Some(grant) if grant.right < Right::Write => Err(deny("the grant is read-only")),
            Some(grant) if grant.expires_millis.is_some_and(|expiry| at_millis > expiry) => {
                Err(deny("the grant expired before the entry's timestamp"))
            }
            Some(_) => Ok(()),
        },
    }
}
