//! Expired grants, sealed: when a grant this node issued (with the space key or as its
//! author) expires, the node signs a sealed revocation from the expiry on, so that the
//! grantee cannot get entries accepted by dating them back into its old window.
//!
//! An expiry alone names no entries, and any time before it stays open to an author who
//! chooses its own timestamps. The grant's issuer closes it at the expiry: a task wakes
//! when the next grant this node issued expires (told of new ones as they are issued; at
//! least every [`SEAL_INTERVAL`], and at start) and seals what the node holds of the grantee, exactly as a revocation does
//! (see [`Spaces::revoke`]). The expiry is final as the issuer sees it: entries of the
//! window that reach it afterwards are not kept, like those a revocation had not seen.
//! Only the issuer seals, so two nodes never keep different lists for one grant.

use std::collections::BTreeSet;

use cosmic_auth::{PublicKey, Statement};

use super::spaces::Issuer;
use super::*;

/// The longest the node sleeps between two looks for expired grants to seal.
pub(crate) const SEAL_INTERVAL: Duration = Duration::from_secs(30);

/// Seals expired grants at once, then again each time one expires (see the module docs),
/// until cancelled.
pub(crate) async fn seal_periodically(
    spaces: Spaces,
    cancel: CancellationToken,
) -> std::result::Result<(), crate::supervisor::TaskError> {
    loop {
        match spaces.seal_expired().await {
            Ok(0) => {}
            Ok(sealed) => tracing::info!(sealed, "expired grants sealed"),
            Err(error) => tracing::warn!(%error, "sealing expired grants failed"),
        }
        let now = Timestamp::now();
        let wait = match spaces.next_expiry().await {
            Ok(Some(at)) => Duration::from_millis(at.0.saturating_sub(now.0)).min(SEAL_INTERVAL),
            Ok(None) => SEAL_INTERVAL,
            Err(error) => {
                tracing::warn!(%error, "looking for the next expiry failed");
                SEAL_INTERVAL
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
            () = spaces.shared.expiry_added.notified() => {}
        }
    }
}

impl Spaces {
    /// Seals the grants this node issued that have expired and are not sealed yet: an
    /// expiry names no entries, so without a seal the grantee could date new entries back
    /// into its window. Signed by the grant's issuer (the space key, or the node author
    /// for grants it issued as an admin), as [`Spaces::revoke`] does, from just after the
    /// expiry. Returns how many revocations it signed.
    pub async fn seal_expired(&self) -> Result<usize> {
        let shared = self.shared.clone();
        let sealed = blocking(move || {
            let now = Timestamp::now();
            let mut sealed = Vec::new();
            for info in shared.store.list_spaces()? {
                if info.mode != SpaceMode::Restricted {
                    continue;
                }
                let space = info.space;
                let statements = shared.store.statements(&space)?;
                let space_key = shared.data_dir.space_key(&space)?;
                let node = &shared.authors.node;
                let issuers: [Option<(PublicKey, Issuer<'_>)>; 2] = [
                    space_key.as_ref().map(|key| (key.id(), Issuer::Space(key))),
                    Some((node.public(), Issuer::Admin(node))),
                ];
                for (id, issuer) in issuers.into_iter().flatten() {
                    for (subject, from) in to_seal(&statements, &space, &id, now) {
                        let kept = shared.store.kept_items(&space, &subject, from)?;
                        let signed = match &issuer {
                            Issuer::Space(key) => key.seal(subject, from, kept),
                            Issuer::Admin(author) => author.seal(space, subject, from, kept),
                        };
                        let Ok(signed) = signed else {
                            tracing::warn!(%space, %subject, "too many entries to seal an expiry");
                            continue;
                        };
                        match shared.store.insert_statement(&signed) {
                            Ok(_) => sealed.push(space),
                            Err(error) => tracing::debug!(%space, %error, "sealing refused"),
                        }
                    }
                }
            }
            Ok(sealed)
        })
        .await?;
        let joined = self.shared.replicator.joined();
        for space in sealed.iter().collect::<BTreeSet<_>>() {
            if joined.contains(space) {
                self.shared.replicator.sync_soon(*space);
            }
        }
        Ok(sealed.len())
    }

    /// When the next grant this node issued expires that is not sealed yet (the first
    /// instant after it), if any.
    pub(crate) async fn next_expiry(&self) -> Result<Option<Timestamp>> {
        let shared = self.shared.clone();
        blocking(move || {
            let now = Timestamp::now();
            let mut next: Option<Timestamp> = None;
            for info in shared.store.list_spaces()? {
                if info.mode != SpaceMode::Restricted {
                    continue;
                }
                let statements = shared.store.statements(&info.space)?;
                let mut issuers = vec![shared.authors.node.public()];
                if let Some(key) = shared.data_dir.space_key(&info.space)? {
                    issuers.push(key.id());
                }
                for issuer in issuers {
                    let pending = unsealed_expiries(&statements, &info.space, &issuer)
                        .map(|(_, from)| from)
                        .filter(|from| *from > now);
                    next = next.into_iter().chain(pending).min();
                }
            }
            Ok(next)
        })
        .await
    }
}

/// The grants `issuer` gave in `space` with an expiry that no sealed revocation by
/// `issuer` covers yet: each subject, and the first instant after the expiry.
fn unsealed_expiries<'a>(
    statements: &'a [SignedStatement],
    space: &'a SpaceId,
    issuer: &'a PublicKey,
) -> impl Iterator<Item = (AuthorId, Timestamp)> + 'a {
    let sealed_from = move |subject: &AuthorId, from: Timestamp| {
        statements.iter().any(|signed| match signed.statement() {
            Statement::Revoke(revocation) => {
                revocation.space == *space
                    && revocation.issuer == *issuer
                    && revocation.subject == *subject
                    && revocation.kept.is_some()
                    && revocation.issued_at >= from
            }
            Statement::Grant(_) => false,
        })
    };
    grants_of(statements, space)
        .filter(move |grant| grant.issuer == *issuer)
        .filter_map(|grant| {
            let from = Timestamp(grant.not_after?.0.saturating_add(1));
            Some((grant.subject, from))
        })
        .filter(move |(subject, from)| !sealed_from(subject, *from))
}

/// The grants of `space` among `statements`.
fn grants_of<'a>(
    statements: &'a [SignedStatement],
    space: &'a SpaceId,
) -> impl Iterator<Item = &'a cosmic_auth::Grant> + 'a {
    statements.iter().filter_map(move |signed| match signed.statement() {
        Statement::Grant(grant) if grant.space == *space => Some(grant),
        _ => None,
    })
}

/// The subjects of `issuer`'s expired grants in `space` that need a sealed revocation, and
/// the time each starts from (just after the expiry). A subject still granted past that
/// expiry by another grant the revocation would end is left alone (a space key's
/// revocation ends every grant to the subject issued before it, an admin's its own), as
/// is one sealed already from then on.
pub(crate) fn to_seal(
    statements: &[SignedStatement],
    space: &SpaceId,
    issuer: &PublicKey,
    now: Timestamp,
) -> Vec<(AuthorId, Timestamp)> {
    let mut out: Vec<(AuthorId, Timestamp)> = Vec::new();
    for (subject, from) in unsealed_expiries(statements, space, issuer) {
        if from > now || out.iter().any(|(seen, _)| *seen == subject) {
            continue;
        }
        let still_granted = grants_of(statements, space).any(|other| {
            other.subject == subject
                && (issuer == space || other.issuer == *issuer)
                && other.issued_at <= from
                && other.not_after.is_none_or(|end| end >= from)
        });
        if !still_granted {
            out.push((subject, from));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use cosmic_auth::{AuthorKey, Right, SpaceKey};

    use super::*;

    #[test]
    fn an_expired_grant_is_sealed_once_unless_another_grant_runs_on() {
        let space_key = SpaceKey::generate();
        let space = space_key.id();
        let (gone, kept_on) = (AuthorKey::generate().public(), AuthorKey::generate().public());
        let mut statements = vec![
            space_key.grant(gone, Right::Write, Timestamp(10), Some(Timestamp(100))),
            space_key.grant(kept_on, Right::Write, Timestamp(10), Some(Timestamp(100))),
            space_key.grant(kept_on, Right::Read, Timestamp(50), None),
        ];
        // Not expired yet: nothing, and the next expiry is the first instant after it.
        assert!(to_seal(&statements, &space, &space, Timestamp(100)).is_empty());
        let pending: Vec<_> = unsealed_expiries(&statements, &space, &space).collect();
        assert_eq!(pending, vec![(gone, Timestamp(101)), (kept_on, Timestamp(101))]);
        // Expired: the author without another grant, from just after the expiry.
        let due = to_seal(&statements, &space, &space, Timestamp(200));
        assert_eq!(due, vec![(gone, Timestamp(101))]);
        // Another issuer's view: it issued none of them.
        let other = AuthorKey::generate().public();
        assert!(to_seal(&statements, &space, &other, Timestamp(200)).is_empty());
        // Sealed once: not again, and no longer pending.
        statements.push(space_key.seal(gone, Timestamp(101), Vec::new()).unwrap());
        assert!(to_seal(&statements, &space, &space, Timestamp(200)).is_empty());
        let pending: Vec<_> = unsealed_expiries(&statements, &space, &space).collect();
        assert_eq!(pending, vec![(kept_on, Timestamp(101))]);
    }
}
