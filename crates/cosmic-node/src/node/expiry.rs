//! Expired grants, sealed: when a grant this node issued (with the space key or as its
//! author) expires, the node signs a sealed revocation from the expiry on, so that the
//! grantee cannot get entries accepted by dating them back into its old window.
//!
//! An expiry alone names no entries, and any time before it stays open to an author who
//! chooses its own timestamps. The grant's issuer closes it: [`EXPIRY_GRACE`] after the
//! expiry (checked every [`SEAL_INTERVAL`], and at its next start) it seals what it holds
//! of the grantee, exactly as a revocation does (see [`Spaces::revoke`]). Only the issuer seals, so two nodes never
//! keep different lists for one grant; entries dated back that reach the issuer before it
//! seals are kept.

use std::collections::BTreeSet;

use cosmic_auth::{PublicKey, Statement};

use super::spaces::Issuer;
use super::*;

/// How often the node looks for expired grants to seal.
pub(crate) const SEAL_INTERVAL: Duration = Duration::from_secs(30);

/// How long after an expiry the node waits before sealing it, so that entries written
/// inside the window by a grantee that was briefly offline, or still on their way, reach
/// it and are kept.
pub(crate) const EXPIRY_GRACE: Duration = Duration::from_secs(300);

/// Runs [`Spaces::seal_expired`] every [`SEAL_INTERVAL`] until cancelled.
pub(crate) async fn seal_periodically(
    spaces: Spaces,
    cancel: CancellationToken,
) -> std::result::Result<(), crate::supervisor::TaskError> {
    let mut ticks = tokio::time::interval(SEAL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        match spaces.seal_expired().await {
            Ok(0) => {}
            Ok(sealed) => tracing::info!(sealed, "expired grants sealed"),
            Err(error) => tracing::warn!(%error, "sealing expired grants failed"),
        }
    }
}

impl Spaces {
    /// Seals the grants this node issued that have expired and are not sealed yet: an
    /// expiry names no entries, so without a seal the grantee could date new entries back
    /// into its window. Signed by the grant's issuer (the space key, or the node author
    /// for grants it issued as an admin), as [`Spaces::revoke`] does, from just after the
    /// expiry, once 5 minutes have passed since it. Returns how many
    /// revocations it signed.
    pub async fn seal_expired(&self) -> Result<usize> {
        self.seal_expired_after(EXPIRY_GRACE).await
    }

    /// [`Spaces::seal_expired`] for grants that expired at least `grace` ago.
    pub(crate) async fn seal_expired_after(&self, grace: Duration) -> Result<usize> {
        let shared = self.shared.clone();
        let grace = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let sealed = blocking(move || {
            let now = Timestamp(Timestamp::now().0.saturating_sub(grace));
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
    let grants: Vec<&cosmic_auth::Grant> = statements
        .iter()
        .filter_map(|signed| match signed.statement() {
            Statement::Grant(grant) if grant.space == *space => Some(grant),
            _ => None,
        })
        .collect();
    let sealed_from = |subject: &AuthorId, from: Timestamp| {
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
    let mut out: Vec<(AuthorId, Timestamp)> = Vec::new();
    for grant in grants.iter().filter(|grant| grant.issuer == *issuer) {
        let Some(not_after) = grant.not_after else { continue };
        let from = Timestamp(not_after.0.saturating_add(1));
        if from > now || sealed_from(&grant.subject, from) {
            continue;
        }
        let still_granted = grants.iter().any(|other| {
            other.subject == grant.subject
                && (issuer == space || other.issuer == *issuer)
                && other.issued_at <= from
                && other.not_after.is_none_or(|end| end >= from)
        });
        if !still_granted && !out.iter().any(|(subject, _)| *subject == grant.subject) {
            out.push((grant.subject, from));
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
        // Not expired yet: nothing.
        assert!(to_seal(&statements, &space, &space, Timestamp(100)).is_empty());
        // Expired: the author without another grant, from just after the expiry.
        let due = to_seal(&statements, &space, &space, Timestamp(200));
        assert_eq!(due, vec![(gone, Timestamp(101))]);
        // Another issuer's view: it issued none of them.
        let other = AuthorKey::generate().public();
        assert!(to_seal(&statements, &space, &other, Timestamp(200)).is_empty());
        // Sealed once: not again.
        statements.push(space_key.seal(gone, Timestamp(101), Vec::new()).unwrap());
        assert!(to_seal(&statements, &space, &space, Timestamp(200)).is_empty());
    }
}
