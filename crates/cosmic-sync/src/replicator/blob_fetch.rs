//! Blobs linked from synced documents: fetched by the space's policy, or on demand.

use std::time::Duration;

use cosmic_auth::PublicKey;
use cosmic_net::PeerId;
use cosmic_store::Origin;

use super::{Replicator, data_text};
use crate::types::{BlobPolicy, BlobStatus, SyncEvent};
use crate::{Error, Result};

impl Replicator {
    /// A change linked a blob: report it pending if it is missing, and fetch it at once
    /// under the eager policy.
    pub(super) fn on_blob_link(&self, space: PublicKey, cid: Vec<u8>, origin: &Origin) {
        let Some(blobs) = self.inner.blobs.clone() else { return };
        let policy = self.blob_policy(&space).unwrap_or(BlobPolicy::None);
        let author = match origin {
            Origin::Peer(peer) => peer.parse::<PeerId>().ok(),
            Origin::Local => None,
        };
        let this = self.clone();
        self.spawn_tracked(async move {
            if blobs.has(&cid).await.unwrap_or(false) {
                return;
            }
            this.inner.bus.publish(SyncEvent::BlobPending { space, cid: cid.clone() });
            if policy == BlobPolicy::Eager {
                let _ = this.fetch_with_retries(space, &cid, author).await;
            }
        });
    }

    /// Fetches a linked blob now (the lazy policy's "when first read"), trying the
    /// providers of the blob, with retries; returns when it is complete locally.
    pub async fn fetch_blob(&self, space: PublicKey, cid: &[u8]) -> Result<()> {
        self.fetch_with_retries(space, cid, None).await
    }

    /// Whether a linked blob is here: a document that links a missing blob still reads,
    /// and this says its blob is pending.
    pub async fn blob_status(&self, cid: &[u8]) -> BlobStatus {
        match &self.inner.blobs {
            None => BlobStatus::Unavailable,
            Some(blobs) => match blobs.has(cid).await {
                Ok(true) => BlobStatus::Present,
                _ => BlobStatus::Pending,
            },
        }
    }

    async fn fetch_with_retries(
        &self,
        space: PublicKey,
        cid: &[u8],
        author: Option<PeerId>,
    ) -> Result<()> {
        let cid_text = data_text(cid);
        let Some(blobs) = self.inner.blobs.clone() else {
            return Err(Error::Blob { cid: cid_text, reason: "no blob store".into() });
        };
        let options = &self.inner.options;
        let mut delay = options.blob_retry_delay;
        let mut last = String::new();
        for attempt in 0..options.blob_fetch_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(Duration::from_secs(60));
            }
            let mut candidates: Vec<PeerId> = author.into_iter().collect();
            if let Ok(found) = self.inner.net.find_providers(cid.to_vec()).await {
                candidates.extend(found.into_iter().filter(|peer| Some(*peer) != author));
            }
            candidates.extend(self.space_peers(&space).await);
            candidates.dedup();
            let fetch =
                tokio::time::timeout(options.blob_fetch_timeout, blobs.fetch(cid, candidates));
            match fetch.await.unwrap_or_else(|_| Err("the attempt timed out".into())) {
                Ok(()) => {
                    self.metrics_mut(|metrics| metrics.blobs_fetched += 1);
                    self.inner.bus.publish(SyncEvent::BlobFetched { space, cid: cid.to_vec() });
                    return Ok(());
                }
                Err(error) => last = error.to_string(),
            }
        }
        self.metrics_mut(|metrics| metrics.blobs_failed += 1);
        let event = SyncEvent::BlobFailed { space, cid: cid.to_vec(), reason: last.clone() };
        self.inner.bus.publish(event);
        Err(Error::Blob { cid: cid_text, reason: last })
    }
}
