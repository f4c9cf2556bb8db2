//! Space records: a space's mode, signed by the space key.
//!
//! Who may write is decided by `cosmic_auth::check_access` over the capability statements
//! kept in the space (see `Store::insert_statements`); this module only adds the record that
//! says whether the space is open or restricted, which `cosmic-auth` leaves to its users.

use cosmic_auth::{AuthorKey, PublicKey, Signature, SpaceKey, SpaceMode};

use crate::value::Reader;
use crate::{Error, Result};

const SPACE_DOMAIN: &[u8] = b"cosmic-store/space/1\0";

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
    pub fn sign(space_key: &SpaceKey, mode: SpaceMode, version: u64) -> SpaceRecord {
        // `SpaceKey` has no signing method of its own; the same secret as an `AuthorKey`
        // signs with the same ed25519 key.
        let signer = AuthorKey::from_secret_bytes(&space_key.secret_bytes());
        let mut record = SpaceRecord {
            space: space_key.id(),
            mode,
            version,
            signature: Signature::from_bytes(&[0; 64]),
        };
        record.signature = signer.sign(&record.message());
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
        cosmic_auth::verify(&self.space, &self.message(), &self.signature).map_err(|_| {
            Error::decode("space record", format!("bad signature for space {}", self.space))
        })
    }

    /// `space (32) ++ mode (u8) ++ version (u64 BE) ++ signature (64)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.message()[SPACE_DOMAIN.len()..].to_vec();
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// Decodes a record from the front of `reader`.
    pub(crate) fn decode_prefix(reader: &mut Reader<'_>) -> Result<SpaceRecord> {
        let what = "space record";
        let space = crate::entry::public_key(reader.array(what)?, what)?;
        let mode = match reader.u8(what)? {
            0 => SpaceMode::Open,
            1 => SpaceMode::Restricted,
            mode => return Err(Error::decode(what, format!("unknown mode {mode}"))),
        };
        let version = u64::from_be_bytes(reader.array(what)?);
        let signature = Signature::from_bytes(&reader.array(what)?);
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
