//! Pins: named iroh-blobs tags that keep blobs from garbage collection.
//!
//! Tag names (one scheme, stable on disk):
//! - `pin/public/<cid>`: pinned, and served to any peer by the default [`crate::PublicPins`];
//! - `pin/private/<cid>`: pinned, served only when the upper layer's policy says so;
//! - `fetch/<cid>`: held while a fetch is incomplete, so the verified part survives
//!   garbage collection and restarts and a later fetch resumes from it.
//!
//! A blob with no tag (and no fetch or add in progress) is removed by the next
//! garbage collection.

use iroh_blobs::api::Store;

use crate::{Cid, Error, Result};

/// Who may fetch a pinned blob under the default policy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Served to any peer that asks.
    Public,
    /// Served only where the upper layer's [`crate::AccessPolicy`] allows.
    Private,
}

impl Visibility {
    pub(crate) fn tag_prefix(self) -> &'static str {
        match self {
            Self::Public => PUBLIC_PREFIX,
            Self::Private => PRIVATE_PREFIX,
        }
    }
}

const PUBLIC_PREFIX: &str = "pin/public/";
const PRIVATE_PREFIX: &str = "pin/private/";
const FETCH_PREFIX: &str = "fetch/";

pub(crate) fn pin_tag(cid: &Cid, visibility: Visibility) -> String {
    format!("{}{cid}", visibility.tag_prefix())
}

pub(crate) fn fetch_tag(cid: &Cid) -> String {
    format!("{FETCH_PREFIX}{cid}")
}

/// A read-only view of this node's pins, given to the [`crate::AccessPolicy`].
#[derive(Debug, Clone)]
pub struct Pins {
    store: Store,
}

impl Pins {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    /// How `cid` is pinned, if it is; public wins when it is pinned both ways.
    pub async fn visibility(&self, cid: &Cid) -> Result<Option<Visibility>> {
        for visibility in [Visibility::Public, Visibility::Private] {
            let tag = self
                .store
                .tags()
                .get(pin_tag(cid, visibility))
                .await
                .map_err(|error| Error::store("read a pin", error))?;
            if tag.is_some() {
                return Ok(Some(visibility));
            }
        }
        Ok(None)
    }
}
