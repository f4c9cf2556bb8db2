//! Space capabilities: signed grants and revocations, and the one access decision.
//!
//! # Rules
//!
//! - The space key always holds `admin`. Rights are ordered `admin ⊇ write ⊇ read`.
//! - A [`Grant`] is valid at time `T` when its signature verifies, it names the space,
//!   `issued_at <= T`, it has not expired (`T <= not_after`), it is not revoked, and its
//!   issuer is the space key or holds a valid `admin` grant at `T` (recursively). The
//!   whole chain is judged at `T`: when an intermediate link expires or is revoked,
//!   everything delegated through it stops being valid.
//! - A [`Revocation`] by the space key revokes every grant to its subject issued at or
//!   before the revocation's `issued_at`; one by an admin revokes only the grants that
//!   admin itself issued to the subject. (An admin whose own chain is invalid has no
//!   valid grants to revoke, so its revocations need no further check.) A revocation
//!   takes effect from its `issued_at`; a later grant gives rights back.
//! - Timestamps are chosen by signers, so a revoked author could date new entries, and a
//!   revoked admin new grants, before the revocation. A *sealed* revocation closes that:
//!   it lists the ids of the items (entries) its issuer held whose right rests on the
//!   revoked grants ([`Revocation::kept`]). Judging an item ([`check_item_access`]), a
//!   grant cut by a sealed revocation counts before the revocation's time only for the
//!   items it keeps, and that holds along the whole chain: an entry whose right comes
//!   through a revoked admin's grant (dated back or not) counts only if kept. So the
//!   revocation wins over whatever its issuer had not seen, and every node decides the
//!   same way whatever order it hears things in. An unsealed revocation (the older
//!   kind) counts from its time only.
//! - Delegation loops are harmless: admin chains are computed as reachability from the
//!   space key, so a loop that is not anchored there grants nothing.
//! - A chain holds at most [`MAX_DELEGATION_DEPTH`] grants from the space key to the right
//!   it gives: an admin granted by the space key is at depth 1, and only admins at a depth
//!   below the limit count as admins. Depth is the shortest chain among the valid grants,
//!   so it does not depend on the order statements arrive in.
//! - [`SpaceMode::Open`]: any author may read and write; `admin` still needs a chain.
//! - Whether a statement may be *kept* at all is [`check_issuer`]: its issuer is the space
//!   key, or an admin at the statement's own `issued_at` through grants valid then. The
//!   space key's revocations count (sealed ones by the statement's id), so an admin the
//!   space key revoked can issue nothing new, dated back or not; a store removes the
//!   statements (and entries) a later revocation ends, so every node keeps the same
//!   statements whatever order they arrive in. Admins' revocations are left out there
//!   (see [`check_issuer`]) and count where rights are used.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use crate::keys::{AuthorKey, SpaceKey};

mod access;

use crate::{AuthorId, Error, PublicKey, Result, Signature, SpaceId, verify};
pub use access::{AccessDenied, check_access, check_issuer, check_item_access};

/// The most grants a chain may hold, from the space key to the grant that gives a right
/// (see the [module docs](self)).
pub const MAX_DELEGATION_DEPTH: usize = 8;

/// The id of an item a sealed [`Revocation`] keeps: the first 16 bytes of the item's
/// BLAKE3 hash (for an entry, of its canonical encoding).
pub type ItemId = [u8; 16];

/// The most items one sealed revocation may keep (256 KiB of ids): when two nodes hold
/// different statements of a space, all of them cross in one reconciliation message, so
/// several must fit in one message with room to spare.
pub const MAX_KEPT: usize = 16_384;

/// Milliseconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time (0 if the clock is before 1970).
    pub fn now() -> Self {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A right on a space. Ordered: `Read < Write < Admin`, and a higher right includes
/// the lower ones.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// Read the space's entries.
    Read = 1,
    /// Write entries.
    Write = 2,
    /// Grant and revoke rights.
    Admin = 3,
}

impl Right {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Right::Read),
            2 => Some(Right::Write),
            3 => Some(Right::Admin),
            _ => None,
        }
    }
}

/// Whether a space needs capabilities for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpaceMode {
    /// Any author may read and write.
    Open,
    /// A capability chain to the space key is needed.
    Restricted,
}

/// A grant of `right` on `space` to `subject`, signed by `issuer`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    /// The space.
    pub space: SpaceId,
    /// The signer: the space key or an admin.
    pub issuer: PublicKey,
    /// Who receives the right.
    pub subject: AuthorId,
    /// The right granted.
    pub right: Right,
    /// When it was issued (valid from then on).
    pub issued_at: Timestamp,
    /// Last instant at which it is valid, if any.
    pub not_after: Option<Timestamp>,
}

/// A revocation of `subject`'s grants on `space`, signed by `issuer`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Revocation {
    /// The space.
    pub space: SpaceId,
    /// The signer: the space key (revokes all grants to the subject) or an admin
    /// (revokes the grants it issued to the subject).
    pub issuer: PublicKey,
    /// Whose rights are revoked.
    pub subject: AuthorId,
    /// Grants issued at or before this time are revoked, from this time on.
    pub issued_at: Timestamp,
    /// A sealed revocation: the ids of the items (entries) dated before `issued_at` that
    /// stay valid under the revoked grants, sorted and without repeats. Every other item
    /// whose right rests on those grants falls, whatever time it claims, so a revoked
    /// author cannot get a new entry accepted by dating it earlier (see the
    /// [module docs](self)). `None`: an unsealed revocation (kind 2), which ends the grants
    /// from `issued_at` only.
    pub kept: Option<Vec<ItemId>>,
}

/// A capability statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Statement {
    /// Gives a right.
    Grant(Grant),
    /// Takes rights away.
    Revoke(Revocation),
}

/// Version byte of the statement encoding.
pub const STATEMENT_VERSION: u8 = 1;
/// Prefix of the bytes that are signed, so that a statement signature can never be
/// taken for a signature over something else.
pub const STATEMENT_SIGNING_CONTEXT: &[u8] = b"cosmic-auth statement v1\0";

const KIND_GRANT: u8 = 1;
const KIND_REVOKE: u8 = 2;
const KIND_SEAL: u8 = 3;
const COMMON_LEN: usize = 2 + 32 * 3 + 8;
const GRANT_MIN_LEN: usize = COMMON_LEN + 2;

/// Malformed statement bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the format needs.
    #[error("statement truncated: {len} bytes, expected at least {expected}")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        expected: usize,
    },
    /// A version this build does not read.
    #[error("unsupported statement version {0}, expected 1")]
    UnsupportedVersion(u8),
    /// Unknown statement kind.
    #[error("unknown statement kind {0}, expected 1 (grant), 2 (revoke) or 3 (sealed revoke)")]
    UnknownKind(u8),
    /// Unknown right.
    #[error("unknown right {0}, expected 1 (read), 2 (write) or 3 (admin)")]
    UnknownRight(u8),
    /// The expiry flag is neither 0 nor 1.
    #[error("invalid expiry flag {0}, expected 0 or 1")]
    InvalidExpiryFlag(u8),
    /// Bytes left over after the statement.
    #[error("{0} unexpected bytes after the statement")]
    TrailingBytes(usize),
    /// A key field is not a valid public key.
    #[error("invalid public key in field `{0}`")]
    InvalidKey(&'static str),
    /// A sealed revocation keeps more items than [`MAX_KEPT`].
    #[error("a sealed revocation keeps {0} items, at most {MAX_KEPT} are allowed")]
    TooManyKept(usize),
    /// A sealed revocation's item ids are not in strictly ascending order.
    #[error("the item ids of a sealed revocation are not sorted without repeats")]
    KeptNotSorted,
}

impl Statement {
    /// The space the statement is about.
    pub fn space(&self) -> &SpaceId {
        match self {
            Statement::Grant(grant) => &grant.space,
            Statement::Revoke(revocation) => &revocation.space,
        }
    }

    /// The signer.
    pub fn issuer(&self) -> &PublicKey {
        match self {
            Statement::Grant(grant) => &grant.issuer,
            Statement::Revoke(revocation) => &revocation.issuer,
        }
    }

    /// The canonical encoding, version 1 (integers big-endian):
    /// `version (1) | kind (1: grant, 2: revoke) | space (32) | issuer (32) | subject (32)
    /// | issued_at (u64)`, then for a grant `right (1..=3) | has_expiry (0/1) [| not_after
    /// (u64)]`, and for a sealed revocation (kind 3) `count (u32) | item id (16) * count`,
    /// ids strictly ascending.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(GRANT_MIN_LEN + 8);
        bytes.push(STATEMENT_VERSION);
        let (kind, space, issuer, subject, issued_at) = match self {
            Statement::Grant(grant) => {
                (KIND_GRANT, grant.space, grant.issuer, grant.subject, grant.issued_at)
            }
            Statement::Revoke(revocation) => (
                if revocation.kept.is_some() { KIND_SEAL } else { KIND_REVOKE },
                revocation.space,
                revocation.issuer,
                revocation.subject,
                revocation.issued_at,
            ),
        };
        bytes.push(kind);
        bytes.extend_from_slice(space.as_bytes());
        bytes.extend_from_slice(issuer.as_bytes());
        bytes.extend_from_slice(subject.as_bytes());
        bytes.extend_from_slice(&issued_at.0.to_be_bytes());
        if let Statement::Revoke(Revocation { kept: Some(kept), .. }) = self {
            let count = u32::try_from(kept.len()).expect("at most MAX_KEPT items are kept");
            bytes.extend_from_slice(&count.to_be_bytes());
            for id in kept {
                bytes.extend_from_slice(id);
            }
        }
        if let Statement::Grant(grant) = self {
            bytes.push(grant.right as u8);
            match grant.not_after {
                None => bytes.push(0),
                Some(not_after) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&not_after.0.to_be_bytes());
                }
            }
        }
        bytes
    }

    /// Decodes exactly one statement from `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (statement, used) = Self::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(DecodeError::TrailingBytes(bytes.len() - used));
        }
        Ok(statement)
    }

    fn decode_prefix(bytes: &[u8]) -> Result<(Self, usize), DecodeError> {
        let truncated = |expected| DecodeError::Truncated { len: bytes.len(), expected };
        let version = *bytes.first().ok_or(truncated(COMMON_LEN))?;
        if version != STATEMENT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if bytes.len() < COMMON_LEN {
            return Err(truncated(COMMON_LEN));
        }
        let kind = bytes[1];
        let key = |offset: usize, field| {
            let mut key = [0u8; 32];
            key.copy_from_slice(&bytes[offset..offset + 32]);
            PublicKey::from_bytes(&key).map_err(|_| DecodeError::InvalidKey(field))
        };
        let u64_at = |offset: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[offset..offset + 8]);
            u64::from_be_bytes(word)
        };
        let space = key(2, "space")?;
        let issuer = key(34, "issuer")?;
        let subject = key(66, "subject")?;
        let issued_at = Timestamp(u64_at(98));
        match kind {
            KIND_REVOKE => Ok((
                Statement::Revoke(Revocation { space, issuer, subject, issued_at, kept: None }),
                COMMON_LEN,
            )),
            KIND_SEAL => {
                let (kept, used) = decode_kept(bytes)?;
                let revocation = Revocation { space, issuer, subject, issued_at, kept: Some(kept) };
                Ok((Statement::Revoke(revocation), used))
            }
            KIND_GRANT => {
                if bytes.len() < GRANT_MIN_LEN {
                    return Err(truncated(GRANT_MIN_LEN));
                }
                let right = Right::from_byte(bytes[COMMON_LEN])
                    .ok_or(DecodeError::UnknownRight(bytes[COMMON_LEN]))?;
                let (not_after, used) = match bytes[COMMON_LEN + 1] {
                    0 => (None, GRANT_MIN_LEN),
                    1 => {
                        if bytes.len() < GRANT_MIN_LEN + 8 {
                            return Err(truncated(GRANT_MIN_LEN + 8));
                        }
                        (Some(Timestamp(u64_at(GRANT_MIN_LEN))), GRANT_MIN_LEN + 8)
                    }
                    flag => return Err(DecodeError::InvalidExpiryFlag(flag)),
                };
                let grant = Grant { space, issuer, subject, right, issued_at, not_after };
                Ok((Statement::Grant(grant), used))
            }
            other => Err(DecodeError::UnknownKind(other)),
        }
    }

    fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = STATEMENT_SIGNING_CONTEXT.to_vec();
        bytes.extend_from_slice(&self.to_bytes());
        bytes
    }
}

/// A statement with its issuer's signature over [`STATEMENT_SIGNING_CONTEXT`] followed
/// by [`Statement::to_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedStatement {
    statement: Statement,
    signature: Signature,
}

impl SignedStatement {
    /// Signs `statement` with `key`, which must be the statement's issuer.
    pub fn sign(statement: Statement, key: &AuthorKey) -> Result<Self> {
        if *statement.issuer() != key.public() {
            return Err(Error::IssuerMismatch {
                issuer: *statement.issuer(),
                signer: key.public(),
            });
        }
        let signature = key.sign(&statement.signing_bytes());
        Ok(SignedStatement { statement, signature })
    }

    /// Pairs a statement with a signature, unchecked (see [`SignedStatement::verify`]).
    pub fn from_parts(statement: Statement, signature: Signature) -> Self {
        SignedStatement { statement, signature }
    }

    /// The statement.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks the issuer's signature.
    pub fn verify(&self) -> Result<()> {
        verify(self.statement.issuer(), &self.statement.signing_bytes(), &self.signature)
    }

    /// Encoding: the statement's bytes followed by the 64-byte signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.statement.to_bytes();
        bytes.extend_from_slice(&self.signature.to_bytes());
        bytes
    }

    /// Decodes (does not verify) a signed statement.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (statement, used) = Statement::decode_prefix(bytes)?;
        let rest = &bytes[used..];
        if rest.len() < Signature::LEN {
            return Err(DecodeError::Truncated {
                len: bytes.len(),
                expected: used + Signature::LEN,
            });
        }
        if rest.len() > Signature::LEN {
            return Err(DecodeError::TrailingBytes(rest.len() - Signature::LEN));
        }
        let mut signature = [0u8; 64];
        signature.copy_from_slice(rest);
        Ok(SignedStatement { statement, signature: Signature::from_bytes(&signature) })
    }
}

impl SpaceKey {
    /// Grants `right` to `subject`, signed by the space key.
    pub fn grant(
        &self,
        subject: AuthorId,
        right: Right,
        issued_at: Timestamp,
        not_after: Option<Timestamp>,
    ) -> SignedStatement {
        grant_with(&self.key, self.id(), subject, right, issued_at, not_after)
    }

    /// Revokes every grant to `subject` issued at or before `issued_at` (unsealed: an
    /// item dated earlier still counts; see [`SpaceKey::seal`]).
    pub fn revoke(&self, subject: AuthorId, issued_at: Timestamp) -> SignedStatement {
        revoke_with(&self.key, self.id(), subject, issued_at, None)
    }

    /// Revokes every grant to `subject` issued at or before `issued_at`, keeping valid
    /// only the items in `kept` among those whose right rests on those grants (sorted and
    /// deduplicated here). Fails with more than [`MAX_KEPT`] distinct items.
    pub fn seal(
        &self,
        subject: AuthorId,
        issued_at: Timestamp,
        kept: Vec<ItemId>,
    ) -> Result<SignedStatement> {
        let kept = sorted_kept(kept)?;
        Ok(revoke_with(&self.key, self.id(), subject, issued_at, Some(kept)))
    }
}

impl AuthorKey {
    /// Grants `right` on `space` to `subject`, signed by this author (valid only while
    /// this author holds `admin`).
    pub fn grant(
        &self,
        space: SpaceId,
        subject: AuthorId,
        right: Right,
        issued_at: Timestamp,
        not_after: Option<Timestamp>,
    ) -> SignedStatement {
        grant_with(self, space, subject, right, issued_at, not_after)
    }

    /// Revokes the grants this author issued to `subject` on `space`.
    pub fn revoke(
        &self,
        space: SpaceId,
        subject: AuthorId,
        issued_at: Timestamp,
    ) -> SignedStatement {
        revoke_with(self, space, subject, issued_at, None)
    }

    /// Revokes the grants this author issued to `subject` on `space`, sealed: see
    /// [`SpaceKey::seal`].
    pub fn seal(
        &self,
        space: SpaceId,
        subject: AuthorId,
        issued_at: Timestamp,
        kept: Vec<ItemId>,
    ) -> Result<SignedStatement> {
        let kept = sorted_kept(kept)?;
        Ok(revoke_with(self, space, subject, issued_at, Some(kept)))
    }
}

fn grant_with(
    key: &AuthorKey,
    space: SpaceId,
    subject: AuthorId,
    right: Right,
    issued_at: Timestamp,
    not_after: Option<Timestamp>,
) -> SignedStatement {
    let statement = Statement::Grant(Grant {
        space,
        issuer: key.public(),
        subject,
        right,
        issued_at,
        not_after,
    });
    let signature = key.sign(&statement.signing_bytes());
    SignedStatement { statement, signature }
}

fn revoke_with(
    key: &AuthorKey,
    space: SpaceId,
    subject: AuthorId,
    issued_at: Timestamp,
    kept: Option<Vec<ItemId>>,
) -> SignedStatement {
    let statement =
        Statement::Revoke(Revocation { space, issuer: key.public(), subject, issued_at, kept });
    let signature = key.sign(&statement.signing_bytes());
    SignedStatement { statement, signature }
}

/// Sorts and deduplicates the items a sealed revocation keeps, within [`MAX_KEPT`].
fn sorted_kept(mut kept: Vec<ItemId>) -> Result<Vec<ItemId>> {
    kept.sort_unstable();
    kept.dedup();
    if kept.len() > MAX_KEPT {
        return Err(Error::TooManyKept { count: kept.len(), max: MAX_KEPT });
    }
    Ok(kept)
}

/// Decodes the item ids of a sealed revocation that follow the common fields; returns
/// them and the bytes used in all.
fn decode_kept(bytes: &[u8]) -> Result<(Vec<ItemId>, usize), DecodeError> {
    let truncated = |expected| DecodeError::Truncated { len: bytes.len(), expected };
    let count_end = COMMON_LEN + 4;
    let count_bytes = bytes.get(COMMON_LEN..count_end).ok_or(truncated(count_end))?;
    let count = u32::from_be_bytes(count_bytes.try_into().expect("four bytes")) as usize;
    if count > MAX_KEPT {
        return Err(DecodeError::TooManyKept(count));
    }
    let end = count_end + count * 16;
    let ids = bytes.get(count_end..end).ok_or(truncated(end))?;
    let kept: Vec<ItemId> =
        ids.chunks_exact(16).map(|id| id.try_into().expect("16-byte chunks")).collect();
    if kept.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(DecodeError::KeptNotSorted);
    }
    Ok((kept, end))
}

#[cfg(test)]
mod sealed_tests;
