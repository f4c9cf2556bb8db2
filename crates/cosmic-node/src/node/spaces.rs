//! [`Spaces`]: the spaces of a node, and the rights in them that it grants and revokes.

use super::*;

/// A space as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpaceSummary {
    /// The space id.
    pub id: SpaceId,
    /// Open or restricted (`None` when the node joined it but holds no record yet).
    pub mode: Option<SpaceMode>,
    /// Documents with at least one live field.
    pub n_docs: u64,
    /// Fields held (tombstones included).
    pub n_entries: u64,
    /// Whether the node takes part in it (replicates it).
    pub joined: bool,
    /// Whether this node holds the space key (it created the space).
    pub owned: bool,
    /// The space's state hash: the reconciliation fingerprint of every entry it holds
    /// (the sum of the entry hashes, order-free). Two nodes holding the same entries of a
    /// space have the same state hash, whatever order the entries arrived in.
    pub state: Fingerprint,
}

/// The spaces of a node: create, list, join, leave, grant. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Spaces {
    pub(crate) shared: Arc<Shared>,
}

impl Spaces {
    /// Creates a space: a new space key (kept in the data dir), its signed record in the
    /// store, and an `admin` grant to the node author, who can then grant others.
    pub async fn create(&self, mode: SpaceMode) -> Result<SpaceSummary> {
        let shared = self.shared.clone();
        let summary = blocking(move || {
            let space_key = SpaceKey::generate();
            shared.data_dir.save_space_key(&space_key)?;
            shared.store.create_space(&space_key, mode)?;
            let grant =
                space_key.grant(shared.authors.node.public(), Right::Admin, Timestamp::now(), None);
            shared.store.insert_statement(&grant)?;
            Ok(SpaceSummary {
                id: space_key.id(),
                mode: Some(mode),
                n_docs: 0,
                n_entries: 0,
                joined: true,
                owned: true,
                state: Fingerprint::EMPTY,
            })
        })
        .await?;
        self.shared.replicator.join(summary.id).await?;
        Ok(summary)
    }

    /// Every space the store holds or the node joined, ordered by id.
    pub async fn list(&self) -> Result<Vec<SpaceSummary>> {
        let shared = self.shared.clone();
        let joined: BTreeSet<SpaceId> = shared.replicator.joined().into_iter().collect();
        blocking(move || {
            let mut out = Vec::new();
            let mut seen = BTreeSet::new();
            for info in shared.store.list_spaces()? {
                seen.insert(info.space);
                out.push(SpaceSummary {
                    id: info.space,
                    mode: Some(info.mode),
                    n_docs: info.n_docs,
                    n_entries: info.n_entries,
                    joined: joined.contains(&info.space),
                    owned: shared.data_dir.space_key(&info.space)?.is_some(),
                    state: shared.store.fingerprint(&info.space, None, None)?,
                });
            }
            for space in joined.difference(&seen) {
                out.push(SpaceSummary {
                    id: *space,
                    mode: None,
                    n_docs: 0,
                    n_entries: 0,
                    joined: true,
                    owned: false,
                    state: Fingerprint::EMPTY,
                });
            }
            out.sort_by_key(|summary| summary.id.to_string());
            Ok(out)
        })
        .await
    }

    /// Takes part in a space, known locally or not yet (its record and data arrive from
    /// the peers that hold it): replicates it from now on, also after restarts. Returns
    /// whether it was newly joined.
    pub async fn join(&self, space: SpaceId) -> Result<bool> {
        Ok(self.shared.replicator.join(space).await?)
    }

    /// Stops taking part in a space; its data stays in the store. Returns whether it was
    /// joined.
    pub async fn leave(&self, space: SpaceId) -> Result<bool> {
        Ok(self.shared.replicator.leave(space).await?)
    }

    /// Reconciles a joined space now with every connected peer of the space.
    pub async fn sync_now(&self, space: SpaceId) -> Result<()> {
        self.shared.replicator.sync_now(space).await?;
        Ok(())
    }

    /// Grants `right` on `space` to `subject` until `not_after` (if any), signed with the
    /// space key when this node holds it, else by the node author, who must hold `admin`.
    pub async fn grant(
        &self,
        space: SpaceId,
        subject: AuthorId,
        right: Right,
        not_after: Option<Timestamp>,
    ) -> Result<SignedStatement> {
        let statement = self
            .issue(space, move |issuer, now| {
                Ok(match issuer {
                    Issuer::Space(key) => key.grant(subject, right, now, not_after),
                    Issuer::Admin(author) => author.grant(space, subject, right, now, not_after),
                })
            })
            .await?;
        if not_after.is_some() {
            self.shared.expiry_added.notify_one();
        }
        Ok(statement)
    }

    /// Revokes `subject`'s rights on `space` from now on. Signed with the space key when
    /// this node holds it, which ends every grant to `subject`; else by the node author,
    /// who must hold `admin`, which ends the grants it issued to `subject`. What `subject`
    /// wrote before and this node holds stays valid; peers that speak only for `subject`
    /// get nothing new of a restricted space.
    ///
    /// `sealed` (the default of the API and CLI): the revocation keeps the entries this
    /// node holds whose right rests on the revoked grants, and nothing else dated earlier,
    /// so entries dated back are refused everywhere ([`Error::TooManyKept`] beyond
    /// `cosmic_auth::MAX_KEPT` of them, or beyond what leaves the space's statements
    /// within half of `net.max_message_size`, since they cross in one reconciliation
    /// message). Unsealed, it ends the grants from now only.
    pub async fn revoke(
        &self,
        space: SpaceId,
        subject: AuthorId,
        sealed: bool,
    ) -> Result<SignedStatement> {
        let store = self.shared.store.clone();
        // When two nodes hold different statements of a space, all of them cross in one
        // reconciliation message: together they must stay well inside one message.
        let budget =
            usize::try_from(self.shared.config.net.max_message_size / 2).unwrap_or(usize::MAX);
        self.issue(space, move |issuer, now| {
            if !sealed {
                return Ok(match issuer {
                    Issuer::Space(key) => key.revoke(subject, now),
                    Issuer::Admin(author) => author.revoke(space, subject, now),
                });
            }
            let kept = store.kept_items(&space, &subject, now)?;
            let held: usize = store.statements(&space)?.iter().map(|s| s.to_bytes().len()).sum();
            let room = budget.saturating_sub(held + SEALED_OVERHEAD) / 16;
            let max = room.min(cosmic_auth::MAX_KEPT);
            let count = kept.len();
            let too_many = Error::TooManyKept { space, author: subject, count, max };
            if count > max {
                return Err(too_many);
            }
            let sealed = match issuer {
                Issuer::Space(key) => key.seal(subject, now, kept),
                Issuer::Admin(author) => author.seal(space, subject, now, kept),
            };
            sealed.map_err(|_| too_many)
        })
        .await
    }

    /// Signs a capability statement on `space` with the space key when this node holds
    /// it, else with the node author if it holds `admin` now; stores it and sends it to
    /// the peers of the space.
    async fn issue(
        &self,
        space: SpaceId,
        sign: impl FnOnce(Issuer<'_>, Timestamp) -> Result<SignedStatement> + Send + 'static,
    ) -> Result<SignedStatement> {
        let shared = self.shared.clone();
        let statement = blocking(move || {
            require_space(&shared, &space)?;
            let now = Timestamp::now();
            let statement = match shared.data_dir.space_key(&space)? {
                Some(space_key) => sign(Issuer::Space(&space_key), now)?,
                None => {
                    let statements = shared.store.statements(&space)?;
                    let author = shared.authors.node.public();
                    cosmic_auth::check_access(
                        &space,
                        SpaceMode::Restricted,
                        &author,
                        Right::Admin,
                        now,
                        &statements,
                    )
                    .map_err(|_| Error::NotAdmin { space })?;
                    sign(Issuer::Admin(&shared.authors.node), now)?
                }
            };
            shared.store.insert_statement(&statement)?;
            Ok(statement)
        })
        .await?;
        // Capabilities travel by reconciliation, not gossip: run a round with the peers of
        // the space now, so the grantee can write in a moment rather than at the next
        // periodic round (and a revoked author's peers are refused from now on).
        if self.shared.replicator.joined().contains(&space) {
            self.shared.replicator.sync_soon(space);
        }
        Ok(statement)
    }
}

/// The bytes of a sealed revocation besides its item ids (statement fields, count,
/// signature), with room to spare.
const SEALED_OVERHEAD: usize = 256;

/// Who signs a capability statement this node issues.
pub(super) enum Issuer<'a> {
    /// The space key, which this node holds (it created the space).
    Space(&'a SpaceKey),
    /// The node author, holding `admin` in the space.
    Admin(&'a cosmic_auth::AuthorKey),
}
