//! The access decision: whether an author holds a right in a space at a time
//! ([`check_access`]), whether a statement may be kept ([`check_issuer`]), and why not
//! ([`AccessDenied`]); the rules are in the [module docs](super).

use super::*;

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
    /// The item is dated before a sealed revocation of a grant its right rests on, and the
    /// revocation does not keep it: written after the revocation and dated earlier, or
    /// unknown to the revoker when it revoked.
    #[error("not kept by the sealed revocation by {by} at {at}")]
    NotKept {
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
            AccessDenied::Revoked { .. } | AccessDenied::NotKept { .. } => 8,
            AccessDenied::InsufficientRight { .. } => 9,
        }
    }
}

/// May `author` use `right` on `space` at time `at`, given `statements`?
///
/// The single access decision of the system; see the [module docs](crate::capability) for the rules.
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
    decide(&Graph::new(space, at, None, statements), author, right)
}

/// May the item `item` (an entry's [`ItemId`]) by `author` use `right` on `space` at its
/// time `at`, given the signature-checked statements `verified`?
///
/// The decision of [`check_access`], for one item: a grant revoked by a sealed
/// [`Revocation`] still counts before the revocation's time only for the items the
/// revocation keeps. A store asks this for every entry it takes in, and again for the
/// entries a new revocation may cut off. `verified` must hold only statements whose
/// signatures were checked (statements of other spaces are ignored).
pub fn check_item_access<'a>(
    space: &SpaceId,
    mode: SpaceMode,
    author: &AuthorId,
    right: Right,
    at: Timestamp,
    item: &ItemId,
    verified: impl IntoIterator<Item = &'a Statement>,
) -> Result<(), AccessDenied> {
    if author == space || (mode == SpaceMode::Open && right <= Right::Write) {
        return Ok(());
    }
    let (grants, revocations) = split(space, verified);
    let graph = Graph::from_verified(space, at, Some(*item), grants, revocations, BTreeSet::new());
    decide(&graph, author, right)
}

/// The decision over a built graph: a grant to `author` of at least `right` whose chain
/// holds, else the reason of the grant that came closest.
fn decide(graph: &Graph<'_>, author: &AuthorId, right: Right) -> Result<(), AccessDenied> {
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
    Err(best.unwrap_or(AccessDenied::NoCapability { author: *author, space: graph.space }))
}

/// May `statement`'s issuer issue it, given statements held already? `item` is the
/// statement's id (the first 16 bytes of the BLAKE3 hash of its signed encoding), by
/// which sealed revocations keep it.
///
/// This decides which statements a node keeps and forwards; [`check_access`] still
/// decides what the kept ones grant. The space key may issue anything. Anyone else must
/// be an admin at the statement's own `issued_at`: reachable from the space key through
/// grants of `admin` in `verified` that are issued and not expired at that time, exactly
/// as [`check_access`] builds its chains (same space only, loops grant nothing).
///
/// - The time is the statement's own, never the present, so that the answer does not
///   change while a statement travels (an admin's later expiry does not make its earlier
///   grants unkeepable, and a node that sees a statement a day late decides as the first).
/// - The space key's revocations count, as they do for entries: an admin the space key
///   revoked may not issue statements (grants or revocations) dated at or after its
///   revocation, nor, under a sealed revocation, statements dated before it that the
///   revocation does not keep. A store that receives such a revocation after statements
///   it ends removes them (and what rested on them), so every node ends with the same
///   statements whatever order they came in.
/// - Admins' revocations are left out. They may end other admins' rights, so counting
///   them here would let two admins' revocations each decide whether the other is kept,
///   and nodes could settle on different sets. The space key's revocations only grow, so
///   the statements kept are a function of the statements received. Admins' revocations
///   still count wherever rights are used ([`check_access`], [`check_item_access`]): a
///   grant an admin revoked is kept but gives nothing.
///
/// `verified` must hold only statements whose signatures were checked (a store checks
/// each before keeping it): signatures are not checked again here, since a batch calls
/// this once per statement. Runs in time linear in `verified`.
pub fn check_issuer<'a>(
    statement: &Statement,
    item: &ItemId,
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
    let (grants, mut revocations) = split(space, verified);
    // Only the space key's revocations count here (see above).
    revocations.retain(|revocation| revocation.issuer == *space);
    let graph = Graph::from_verified(space, at, Some(*item), grants, revocations, BTreeSet::new());
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

/// The grants and the revocations of `space` among `verified`.
fn split<'a>(
    space: &SpaceId,
    verified: impl IntoIterator<Item = &'a Statement>,
) -> (Vec<&'a Grant>, Vec<&'a Revocation>) {
    let mut grants = Vec::new();
    let mut revocations = Vec::new();
    for statement in verified.into_iter().filter(|statement| statement.space() == space) {
        match statement {
            Statement::Grant(grant) => grants.push(grant),
            Statement::Revoke(revocation) => revocations.push(revocation),
        }
    }
    (grants, revocations)
}

/// The signature-checked statements of one space, and the admins valid at one time.
struct Graph<'a> {
    space: SpaceId,
    at: Timestamp,
    /// The item judged, if any: sealed revocations count against items they do not keep.
    item: Option<ItemId>,
    grants: Vec<&'a Grant>,
    revocations: Vec<&'a Revocation>,
    bad_signature_subjects: BTreeSet<AuthorId>,
    admins: BTreeSet<PublicKey>,
    /// Authors granted admin only by admins at the deepest depth allowed: not admins.
    too_deep: BTreeSet<PublicKey>,
}

impl<'a> Graph<'a> {
    fn new(
        space: &SpaceId,
        at: Timestamp,
        item: Option<ItemId>,
        statements: &'a [SignedStatement],
    ) -> Self {
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
        Graph::from_verified(space, at, item, grants, revocations, bad_signature_subjects)
    }

    /// The graph of statements whose signatures were checked already.
    fn from_verified(
        space: &SpaceId,
        at: Timestamp,
        item: Option<ItemId>,
        grants: Vec<&'a Grant>,
        revocations: Vec<&'a Revocation>,
        bad_signature_subjects: BTreeSet<AuthorId>,
    ) -> Self {
        let mut graph = Graph {
            space: *space,
            at,
            item,
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
        let applies = |revocation: &&&Revocation| {
            revocation.subject == grant.subject
                && grant.issued_at <= revocation.issued_at
                && (revocation.issuer == self.space || revocation.issuer == grant.issuer)
        };
        let mut sealed_out = None;
        for revocation in self.revocations.iter().filter(applies) {
            if revocation.issued_at <= self.at {
                return Err(AccessDenied::Revoked {
                    by: revocation.issuer,
                    at: revocation.issued_at,
                });
            }
            if let (Some(kept), Some(item)) = (&revocation.kept, &self.item)
                && kept.binary_search(item).is_err()
            {
                sealed_out =
                    Some(AccessDenied::NotKept { by: revocation.issuer, at: revocation.issued_at });
            }
        }
        sealed_out.map_or(Ok(()), Err)
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
