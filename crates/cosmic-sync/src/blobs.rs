//! [`BlobFetcher`] for `cosmic-blobs`' [`Blobs`] handle.
//!
//! The candidate peers the replicator names are libp2p peers; a blob endpoint is an iroh
//! endpoint with its own key and sockets, so the mapping belongs to the handle's
//! `AddressLookup` (the node installs one over `cosmic-net`): [`Blobs::fetch`] asks it for
//! providers. The candidates are therefore used only to decide that a fetch is worth trying.

use cosmic_blobs::{Blobs, Cid, FetchOptions};
use cosmic_net::PeerId;

use crate::types::{BlobFetcher, BoxError, BoxFuture};

impl BlobFetcher for Blobs {
    fn has<'a>(&'a self, cid: &'a [u8]) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(async move {
            let cid = Cid::from_bytes(cid)?;
            Ok(Blobs::has(self, &cid).await?)
        })
    }

    fn fetch<'a>(
        &'a self,
        cid: &'a [u8],
        _candidates: Vec<PeerId>,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let cid = Cid::from_bytes(cid)?;
            Blobs::fetch(self, &cid, FetchOptions::new()).await?;
            Ok(())
        })
    }
}
