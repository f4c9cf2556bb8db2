//! Who may fetch a blob from this node, and learn that it holds one: cosmic-blobs'
//! [`AccessPolicy`], with the read rights of the spaces that link the blob.
//!
//! A blob linked only from restricted spaces goes only to peers that may read one of
//! them (as `cosmic-sync` decides for the space's entries: a peer bound to an author
//! holding a right there), whatever its pin says; a blob linked from an open space, or
//! from no space, follows the pins ([`PublicPins`]: served to anyone when pinned
//! public). The same decision answers blob lookups (`blob_peers.rs`), so a peer that may
//! not fetch a blob is not told that this node holds it.

use std::sync::{Arc, OnceLock};

use cosmic_auth::{PublicKey, SpaceMode, peer_id_of};
use cosmic_blobs::{AccessPolicy, BoxFuture, Cid, Pins, PublicPins};
use cosmic_store::Store;
use cosmic_sync::Replicator;
use tracing::{debug, warn};

/// The node's blob access policy (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct SpaceReaders {
    store: Store,
    /// Set once replication has started (the blob store opens before it); until then a
    /// blob linked only from restricted spaces goes to no one.
    replicator: Arc<OnceLock<Replicator>>,
}

impl SpaceReaders {
    pub(crate) fn new(store: Store) -> Self {
        Self { store, replicator: Arc::default() }
    }

    /// Hands over the replicator, which knows the peers' bindings.
    pub(crate) fn set_replicator(&self, replicator: Replicator) {
        let _ = self.replicator.set(replicator);
    }

    /// Whether `peer` (a node key) may fetch `cid`, or learn that this node holds it.
    pub(crate) async fn allows(&self, peer: &PublicKey, cid: &Cid, pins: &Pins) -> bool {
        match self.restricted_only(cid).await {
            Ok(None) => PublicPins.may_fetch(peer, cid, pins).await,
            Ok(Some(spaces)) => self.reads_any(peer, cid, spaces).await,
            Err(error) => {
                warn!(%cid, %error, "cannot read which spaces link a blob; refusing it");
                false
            }
        }
    }

    /// The spaces linking `cid` when every one of them is restricted; `None` when the
    /// blob is linked from an open space or from none.
    async fn restricted_only(&self, cid: &Cid) -> Result<Option<Vec<PublicKey>>, String> {
        let store = self.store.clone();
        let bytes = cid.to_bytes();
        let work = move || -> cosmic_store::Result<Option<Vec<PublicKey>>> {
            let spaces = store.blob_link_spaces(&bytes)?;
            if spaces.is_empty() {
                return Ok(None);
            }
            for space in &spaces {
                let record = store.space_record(space)?;
                if record.is_none_or(|record| record.mode == SpaceMode::Open) {
                    return Ok(None);
                }
            }
            Ok(Some(spaces))
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result.map_err(|error| error.to_string()),
            Err(error) => Err(format!("a blocking task failed: {error}")),
        }
    }

    async fn reads_any(&self, peer: &PublicKey, cid: &Cid, spaces: Vec<PublicKey>) -> bool {
        let (Some(replicator), Some(peer_id)) = (self.replicator.get(), peer_id_of(peer)) else {
            return false;
        };
        for space in spaces {
            match replicator.may_read(space, peer_id).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => debug!(%space, %error, "cannot decide a blob read"),
            }
        }
        debug!(%cid, %peer_id, "a blob of restricted spaces refused to a peer that reads none");
        false
    }
}

impl AccessPolicy for SpaceReaders {
    fn may_fetch<'a>(
        &'a self,
        peer: &'a PublicKey,
        cid: &'a Cid,
        pins: &'a Pins,
    ) -> BoxFuture<'a, bool> {
        Box::pin(self.allows(peer, cid, pins))
    }
}
