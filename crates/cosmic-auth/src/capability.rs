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
//! - Timestamps inside statements are chosen by their signer, so a revoked admin could
//!   back-date new grants. Therefore a revoked admin's grants all fall, earlier ones
//!   included; the space key (or another admin) re-issues those that should stay.
//! - A [`Revocation`] by the space key revokes every grant to its subject issued at or
//!   before the revocation's `issued_at`; one by an admin revokes only the grants that
//!   admin itself issued to the subject. (An admin whose own chain is invalid has no
//!   valid grants to revoke, so its revocations need no further check.) A revocation
//!   takes effect from its `issued_at`; a later grant gives rights back.
//! - Delegation loops are harmless: admin chains are computed as reachability from the
//!   space key, so a loop that is not anchored there grants nothing.
//! - A chain holds at most [`MAX_DELEGATION_DEPTH`] grants from the space key to the right
//!   it gives: an admin granted by the space key is at depth 1, and only admins at a depth
//!   below the limit count as admins. Depth is the shortest chain among the valid grants,
//!   so it does not depend on the order statements arrive in.
//! - [`SpaceMode::Open`]: any author may read and write; `admin` still needs a chain.
//! - Whether a statement may be *kept* at all is [`check_issuer`]: its issuer is the space
//!   key, or an admin at the statement's own `issued_at` through grants valid then.
//!   Revocations are left out of that decision on purpose (see [`check_issuer`]), so that
//!   every node keeps the same statements whatever order they arrive in; they still count
//!   in [`check_access`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use crate::keys::{AuthorKey, SpaceKey};
use crate::{AuthorId, Error, PublicKey, Result, Signature, SpaceId, verify};

/// The most grants a chain may hold, from the space key to the grant that gives a right
/// (see the [module docs](self)).
pub const MAX_DELEGATION_DEPTH: usize = 8;

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
    #[error("unknown statement kind {0}, expected 1 (grant) or 2 (revoke)")]
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
    /// (u64)]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(GRANT_MIN_LEN + 8);
        bytes.push(STATEMENT_VERSION);
        let (kind, space, issuer, subject, issued_at) = match self {
            Statement::Grant(grant) => {
                (KIND_GRANT, grant.space, grant.issuer, grant.subject, grant.issued_at)
            }
            Statement::Revoke(revocation) => (
                KIND_REVOKE,
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
                Statement::Revoke(Revocation { space, issuer, subject, issued_at }),
                COMMON_LEN,
            )),
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

    /// Revokes every grant to `subject` issued at or before `issued_at`.
    pub fn revoke(&self, subject: AuthorId, issued_at: Timestamp) -> SignedStatement {
        revoke_with(&self.key, self.id(), subject, issued_at)
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
        revoke_with(self, space, subject, issued_at)
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
) -> SignedStatement {
    let statement =
        Statement::Revoke(Revocation { space, issuer: key.public(), subject, issued_at });
    let signature = key.sign(&statement.signing_bytes());
    SignedStatement { statement, signature }
}

/// Why [`check_access`] said no. When several grants fail for different reasons, the
/// reason of the grant that came closest is given (in the order of the variants here,
/// last first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessDenied {
    /// No statement about this author in this space (or only badly signed ones).
    #[error("author {author} holds no capability in space {space}")]
    NoCapability {
        /// The author.
        author: AuthorId,
        /// The space.
        space: SpaceId,
    },
    /// A statement's signature does not verify.
    #[error("a statement about author {author} has an invalid signature")]
    InvalidSignature {
        /// The author.
        author: AuthorId,
    },
    /// The grant's issuer is neither the space key nor named in any grant.
    #[error("grant issuer {issuer} is unknown in the space")]
    UnknownSigner {
        /// The issuer.
        issuer: PublicKey,
    },
    /// The issuer's admin rights lead only around a loop of delegations.
    #[error("grant issuer {issuer} is admin only through a delegation loop")]
    DelegationLoop {
        /// The issuer.
        issuer: PublicKey,
    },
    /// The issuer is admin only through a chain longer than [`MAX_DELEGATION_DEPTH`]
    /// allows.
    #[error(
        "grant issuer {issuer} is admin only through a chain of more than {limit} grants \
         from the space key"
    )]
    ChainTooDeep {
        /// The issuer.
        issuer: PublicKey,
        /// The limit, [`MAX_DELEGATION_DEPTH`].
        limit: usize,
    },
    /// The issuer had admin grants, but no valid chain to the space key at this time.
    #[error("the chain of grants from the space key to issuer {issuer} is broken")]
    ChainBroken {
        /// The issuer.
        issuer: PublicKey,
    },
    /// The grant is not valid yet.
    #[error("grant issued at {issued_at} is not valid yet")]
    NotYetValid {
        /// Its issue time.
        issued_at: Timestamp,
    },
    /// The grant expired.
    #[error("grant expired at {not_after}")]
    Expired {
        /// Its expiry.
        not_after: Timestamp,
    },
    /// The grant was revoked.
    #[error("grant revoked by {by} at {at}")]
    Revoked {
        /// The revoker.
        by: PublicKey,
        /// The revocation time.
        at: Timestamp,
    },
    /// A valid grant exists but gives less than asked for.
    #[error("author holds {held:?} but {needed:?} is needed")]
    InsufficientRight {
        /// The highest valid right held.
        held: Right,
        /// The right asked for.
        needed: Right,
    },
}

impl AccessDenied {
    fn rank(&self) -> u8 {
        match self {
            AccessDenied::NoCapability { .. } => 0,
            AccessDenied::InvalidSignature { .. } => 1,
            AccessDenied::UnknownSigner { .. } => 2,
            AccessDenied::DelegationLoop { .. } => 3,
            AccessDenied::ChainBroken { .. } => 4,
            AccessDenied::ChainTooDeep { .. } => 5,
            AccessDenied::NotYetValid { .. } => 6,
            AccessDenied::Expired { .. } => 7,
            AccessDenied::Revoked { .. } => 8,
            AccessDenied::InsufficientRight { .. } => 9,
        }
    }
}

/// May `author` use `right` on `space` at time `at`, given `statements`?
///
/// The single access decision of the system; see the [module docs](self) for the rules.
/// Statements about other spaces and statements with bad signatures are ignored
/// (a bad signature is reported only when nothing better explains the refusal).
/// Runs in time linear in the number of statements (plus signature checks).
pub fn check_access(
    space: &SpaceId,
    mode: SpaceMode,
    author: &AuthorId,
    right: Right,
    at: Timestamp,
    statements: &[SignedStatement],
) -> Result<(), AccessDenied> {
    if author == space || (mode == SpaceMode::Open && right <= Right::Write) {
        return Ok(());
    }
    let graph = Graph::new(space, at, statements);
    let mut best: Option<AccessDenied> = None;
    let mut consider = |reason: AccessDenied| {
        if best.as_ref().is_none_or(|current| reason.rank() > current.rank()) {
            best = Some(reason);
        }
    };
    if graph.bad_signature_subjects.contains(author) {
        consider(AccessDenied::InvalidSignature { author: *author });
    }
    let mut held: Option<Right> = None;
    for grant in graph.grants.iter().filter(|grant| grant.subject == *author) {
        match graph.judge(grant) {
            Ok(()) if grant.right >= right => return Ok(()),
            Ok(()) => held = held.max(Some(grant.right)),
            Err(reason) => consider(reason),
        }
    }
    if let Some(held) = held {
        consider(AccessDenied::InsufficientRight { held, needed: right });
    }
    Err(best.unwrap_or(AccessDenied::NoCapability { author: *author, space: *space }))
}

/// May `statement`'s issuer issue it, given statements held already?
///
/// This decides which statements a node keeps and forwards; [`check_access`] still
/// decides what the kept ones grant. The space key may issue anything. Anyone else must
/// be an admin at the statement's own `issued_at`: reachable from the space key through
/// grants of `admin` in `verified` that are issued and not expired at that time, exactly
/// as [`check_access`] builds its chains (same space only, loops grant nothing).
///
/// Two things are deliberate:
/// - The time is the statement's own, never the present, so that the answer does not
///   change while a statement travels (an admin's later expiry does not make its earlier
///   grants unkeepable, and a node that sees a statement a day late decides as the first).
/// - Revocations are left out. A revocation can arrive before or after a statement its
///   issuer signed; counting it would make the answer depend on arrival order, and honest
///   nodes would keep different sets forever. Without them the rule is monotone: a
///   statement accepted with some statements held is accepted with more, so every node
///   that receives the same statements (in any order, offered again until accepted)
///   keeps the same ones. A revoked admin's statements are kept but grant nothing (see
///   the module docs).
///
/// `verified` must hold only statements whose signatures were checked (a store checks
/// each before keeping it): signatures are not checked again here, since a batch calls
/// this once per statement. Runs in time linear in `verified`.
pub fn check_issuer<'a>(
    statement: &Statement,
    verified: impl IntoIterator<Item = &'a Statement>,
) -> Result<(), AccessDenied> {
    let space = statement.space();
    let issuer = statement.issuer();
    if issuer == space {
        return Ok(());
    }
    let at = match statement {
        Statement::Grant(grant) => grant.issued_at,
        Statement::Revoke(revocation) => revocation.issued_at,
    };
    let grants = verified
        .into_iter()
        .filter_map(|held| match held {
            Statement::Grant(grant) if grant.space == *space => Some(grant),
            _ => None,
        })
        .collect();
    let graph = Graph::from_verified(space, at, grants, Vec::new(), BTreeSet::new());
    if graph.admins.contains(issuer) {
        return Ok(());
    }
    // An admin grant to the issuer that is not valid yet (or no longer) at `at` explains
    // the refusal better than a broken chain.
    let own_grants =
        graph.grants.iter().filter(|grant| grant.right == Right::Admin && grant.subject == *issuer);
    let mut best = graph.explain_issuer(issuer);
    for grant in own_grants {
        if let Err(reason) = graph.judge_link(grant)
            && reason.rank() > best.rank()
        {
            best = reason;
        }
    }
    Err(best)
}

/// The signature-checked statements of one space, and the admins valid at one time.
struct Graph<'a> {
    space: SpaceId,
    at: Timestamp,
    grants: Vec<&'a Grant>,
    revocations: Vec<&'a Revocation>,
    bad_signature_subjects: BTreeSet<AuthorId>,
    admins: BTreeSet<PublicKey>,
    /// Authors granted admin only by admins at the deepest depth allowed: not admins.
    too_deep: BTreeSet<PublicKey>,
}

impl<'a> Graph<'a> {
    fn new(space: &SpaceId, at: Timestamp, statements: &'a [SignedStatement]) -> Self {
        let mut grants = Vec::new();
        let mut revocations = Vec::new();
        let mut bad_signature_subjects = BTreeSet::new();
        for signed in statements.iter().filter(|signed| signed.statement.space() == space) {
            let valid = signed.verify().is_ok();
            match &signed.statement {
                Statement::Grant(grant) if valid => grants.push(grant),
                Statement::Revoke(revocation) if valid => revocations.push(revocation),
                Statement::Grant(Grant { subject, .. })
                | Statement::Revoke(Revocation { subject, .. }) => {
                    bad_signature_subjects.insert(*subject);
                }
            }
        }
        Graph::from_verified(space, at, grants, revocations, bad_signature_subjects)
    }

    /// The graph of statements whose signatures were checked already.
    fn from_verified(
        space: &SpaceId,
        at: Timestamp,
        grants: Vec<&'a Grant>,
        revocations: Vec<&'a Revocation>,
        bad_signature_subjects: BTreeSet<AuthorId>,
    ) -> Self {
        let mut graph = Graph {
            space: *space,
            at,
            grants,
            revocations,
            bad_signature_subjects,
            admins: BTreeSet::from([*space]),
            too_deep: BTreeSet::new(),
        };
        // Admins: reachability from the space key over grants of admin that are valid
        // in themselves (time, revocation) at `at`. Each author enters the set once, so
        // loops terminate.
        let mut admin_edges: BTreeMap<PublicKey, Vec<PublicKey>> = BTreeMap::new();
        for grant in &graph.grants {
            if grant.right == Right::Admin && graph.judge_link(grant).is_ok() {
                admin_edges.entry(grant.issuer).or_default().push(grant.subject);
            }
        }
        // Breadth first, so each admin enters at its shortest depth; a grant by an admin
        // at depth `d` sits at depth `d + 1` of its chain.
        let mut queue = VecDeque::from([(*space, 0usize)]);
        while let Some((issuer, depth)) = queue.pop_front() {
            for subject in admin_edges.get(&issuer).into_iter().flatten() {
                if depth + 1 >= MAX_DELEGATION_DEPTH {
                    graph.too_deep.insert(*subject);
                } else if graph.admins.insert(*subject) {
                    queue.push_back((*subject, depth + 1));
                }
            }
        }
        graph.too_deep.retain(|author| !graph.admins.contains(author));
        graph
    }

    /// Checks a grant's own validity at `at`, not its issuer's.
    fn judge_link(&self, grant: &Grant) -> Result<(), AccessDenied> {
        if grant.issued_at > self.at {
            return Err(AccessDenied::NotYetValid { issued_at: grant.issued_at });
        }
        if let Some(not_after) = grant.not_after
            && self.at > not_after
        {
            return Err(AccessDenied::Expired { not_after });
        }
        let revoked = self.revocations.iter().find(|revocation| {
            revocation.subject == grant.subject
                && revocation.issued_at <= self.at
                && grant.issued_at <= revocation.issued_at
                && (revocation.issuer == self.space || revocation.issuer == grant.issuer)
        });
        if let Some(revocation) = revoked {
            return Err(AccessDenied::Revoked { by: revocation.issuer, at: revocation.issued_at });
        }
        Ok(())
    }

    /// Checks a grant and its issuer's chain at `at`.
    fn judge(&self, grant: &Grant) -> Result<(), AccessDenied> {
        self.judge_link(grant)?;
        if self.admins.contains(&grant.issuer) {
            return Ok(());
        }
        Err(self.explain_issuer(&grant.issuer))
    }

    /// Why `issuer` is not an admin: walks its admin grants back towards the space key.
    fn explain_issuer(&self, issuer: &PublicKey) -> AccessDenied {
        let grants_to = |subject: PublicKey| {
            self.grants
                .iter()
                .filter(move |grant| grant.right == Right::Admin && grant.subject == subject)
        };
        if grants_to(*issuer).next().is_none() {
            return AccessDenied::UnknownSigner { issuer: *issuer };
        }
        if self.too_deep.contains(issuer) {
            return AccessDenied::ChainTooDeep { issuer: *issuer, limit: MAX_DELEGATION_DEPTH };
        }
        let mut seen = BTreeSet::from([*issuer]);
        let mut queue = VecDeque::from([*issuer]);
        let mut looped = false;
        while let Some(subject) = queue.pop_front() {
            for grant in grants_to(subject) {
                if grant.issuer == self.space {
                    return AccessDenied::ChainBroken { issuer: *issuer };
                }
                if seen.insert(grant.issuer) {
                    queue.push_back(grant.issuer);
                } else {
                    looped = true;
                }
            }
        }
        if looped {
            AccessDenied::DelegationLoop { issuer: *issuer }
        } else {
            AccessDenied::ChainBroken { issuer: *issuer }
        }
    }
}
