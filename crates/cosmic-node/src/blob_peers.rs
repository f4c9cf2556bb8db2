//! How a node finds peers to fetch a blob from: cosmic-blobs' [`AddressLookup`],
//! implemented over cosmic-net.
//!
//! The blob endpoint (iroh, UDP) and the libp2p swarm are separate sockets, so a peer's
//! libp2p addresses do not say where its blob endpoint listens. Each node therefore
//! answers a small request-response protocol, [`PROTOCOL`]: given a CID, it says whether
//! it holds the blob and where its blob endpoint is. To find providers, a node asks every
//! connected peer at once and keeps those that hold the blob. An endpoint bound to an
//! unspecified address (`0.0.0.0`) is reached at the IP the libp2p connection uses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use cosmic_auth::PublicKey;
use cosmic_blobs::{AddressLookup, Blobs, BoxFuture, Cid, PeerAddr};
use cosmic_net::{Net, PeerId, Response};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::blob_access::SpaceReaders;
use crate::supervisor::TaskError;

/// The request-response protocol name: request body is a binary CID, answer is JSON.
pub(crate) const PROTOCOL: &str = "blobs/where/1";

/// How long a provider lookup waits for the answers of connected peers.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer of [`PROTOCOL`].
#[derive(Debug, Serialize, Deserialize)]
struct Where {
    /// The answering node's key (its blob endpoint id).
    node: String,
    /// Whether it holds the whole blob.
    has: bool,
    /// Its blob endpoint's bound socket addresses.
    addrs: Vec<SocketAddr>,
}

/// Finds blob providers among connected peers.
#[derive(Debug, Clone)]
pub(crate) struct NetLookup {
    net: Net,
}

impl NetLookup {
    pub(crate) fn new(net: Net) -> Self {
        Self { net }
    }

    async fn ask(&self, peer_id: PeerId, cid: Cid) -> Option<PeerAddr> {
        let answer = self.net.request(peer_id, PROTOCOL, cid.to_bytes()).await.ok()?;
        let (node, addrs) = read_where_answer(&answer)?;
        let remote_ip = self.remote_ip(peer_id).await;
        let addrs = addrs.into_iter().filter_map(|mut addr| {
            if addr.ip().is_unspecified() {
                addr.set_ip(remote_ip?);
            }
            Some(addr)
        });
        Some(PeerAddr::new(node, addrs))
    }

    /// The IP address of an open connection to `peer_id`.
    async fn remote_ip(&self, peer_id: PeerId) -> Option<IpAddr> {
        let peers = self.net.peers().await.ok()?;
        let peer = peers.into_iter().find(|peer| peer.peer_id == peer_id)?;
        peer.connections.iter().find_map(|connection| ip_of(&connection.address.to_string()))
    }
}

/// Reads a peer's [`PROTOCOL`] answer (untrusted bytes): its blob endpoint key and
/// addresses if the answer is well-formed and says it holds the blob, else `None`.
///
/// Public (hidden) only so the fuzz targets can reach it.
#[doc(hidden)]
pub fn read_where_answer(body: &[u8]) -> Option<(PublicKey, Vec<SocketAddr>)> {
    let answer: Where = serde_json::from_slice(body).ok()?;
    if !answer.has {
        return None;
    }
    let node = answer.node.parse().ok()?;
    Some((node, answer.addrs))
}

/// The IP of a multiaddr such as `/ip4/127.0.0.1/tcp/4747`.
pub(crate) fn ip_of(multiaddr: &str) -> Option<IpAddr> {
    let mut parts = multiaddr.split('/').skip(1);
    match (parts.next()?, parts.next()?) {
        ("ip4" | "ip6", ip) => ip.parse().ok(),
        _ => None,
    }
}

impl AddressLookup for NetLookup {
    fn providers<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Vec<PeerAddr>> {
        Box::pin(async move {
            let Ok(peers) = self.net.connected_peers().await else { return Vec::new() };
            let asks = peers.into_iter().map(|peer_id| self.ask(peer_id, *cid));
            tokio::time::timeout(LOOKUP_TIMEOUT, futures::future::join_all(asks))
                .await
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .collect()
        })
    }
}

/// cosmic-sync's [`cosmic_sync::BlobFetcher`]: fetches the blobs synced documents link,
/// from the candidates replication names (the author's node first) that say they hold it,
/// then from any connected peer that does.
#[derive(Debug, Clone)]
pub(crate) struct NodeBlobFetcher {
    lookup: NetLookup,
    blobs: Blobs,
}

impl NodeBlobFetcher {
    pub(crate) fn new(net: Net, blobs: Blobs) -> Self {
        Self { lookup: NetLookup::new(net), blobs }
    }
}

impl cosmic_sync::BlobFetcher for NodeBlobFetcher {
    fn has<'a>(
        &'a self,
        cid: &'a [u8],
    ) -> cosmic_sync::BoxFuture<'a, Result<bool, cosmic_sync::BoxError>> {
        Box::pin(async move {
            let cid = Cid::from_bytes(cid)?;
            Ok(self.blobs.has(&cid).await?)
        })
    }

    fn fetch<'a>(
        &'a self,
        cid: &'a [u8],
        candidates: Vec<PeerId>,
    ) -> cosmic_sync::BoxFuture<'a, Result<(), cosmic_sync::BoxError>> {
        Box::pin(async move {
            let cid = Cid::from_bytes(cid)?;
            let asks = candidates.into_iter().map(|peer_id| self.lookup.ask(peer_id, cid));
            let mut options = cosmic_blobs::FetchOptions::new();
            for provider in futures::future::join_all(asks).await.into_iter().flatten() {
                options = options.provider(provider);
            }
            // With no candidate holding it, the blob store asks the lookup (every peer).
            self.blobs.fetch(&cid, options).await?;
            Ok(())
        })
    }
}

/// Lookup requests waiting for an answer, at most; more are refused as busy.
const REQUEST_QUEUE_LEN: usize = 256;

/// Answers [`PROTOCOL`] requests until `cancel` fires.
///
/// A peer that may not fetch a blob (see [`SpaceReaders`]) is told this node does not
/// hold it.
pub(crate) async fn serve(
    net: Net,
    blobs: Blobs,
    readers: SpaceReaders,
    cancel: CancellationToken,
) -> Result<(), TaskError> {
    // Its own bounded queue: a burst beyond it is refused with "busy", never silently lost.
    let mut requests = match net.request_inbox(PROTOCOL, REQUEST_QUEUE_LEN).await {
        Ok(requests) => requests,
        // The network task is gone: the node is stopping.
        Err(_) => return Ok(()),
    };
    loop {
        let request = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            request = requests.recv() => request,
        };
        // The queue closed: the network task is gone, the node is stopping.
        let Some(request) = request else { return Ok(()) };
        let response = match Cid::from_bytes(&request.body) {
            Ok(cid) => {
                let has = blobs.has(&cid).await.unwrap_or(false)
                    && match cosmic_auth::node_key_of(&request.peer_id) {
                        Some(peer) => readers.allows(&peer, &cid, &blobs.pins_view()).await,
                        None => false,
                    };
                let answer =
                    Where { node: blobs.node().to_string(), has, addrs: blobs.local_addrs() };
                match serde_json::to_vec(&answer) {
                    Ok(body) => Response::Ok(body.into()),
                    Err(error) => Response::Error(error.to_string()),
                }
            }
            Err(error) => Response::Error(error.to_string()),
        };
        if let Err(error) = net.respond(request.request_id, response).await {
            tracing::debug!(%error, peer = %request.peer_id, "cannot answer a blob lookup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_answers_are_read_only_when_well_formed_and_holding() {
        let node = cosmic_auth::AuthorKey::from_secret_bytes(&[3; 32]).public();
        let addrs: Vec<SocketAddr> = vec!["127.0.0.1:4747".parse().expect("an address")];
        let answer = |has| {
            let answer = Where { node: node.to_string(), has, addrs: addrs.clone() };
            serde_json::to_vec(&answer).expect("json")
        };
        assert_eq!(read_where_answer(&answer(true)), Some((node, addrs.clone())));
        assert_eq!(read_where_answer(&answer(false)), None);
        assert_eq!(read_where_answer(b"{\"node\": \"x\", \"has\": true, \"addrs\": []}"), None);
        assert_eq!(read_where_answer(b"\xff"), None);
    }

    #[test]
    fn ips_are_read_from_multiaddrs() {
        assert_eq!(ip_of("/ip4/127.0.0.1/tcp/1"), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(ip_of("/ip6/::1/udp/1/quic-v1"), "::1".parse().ok());
        assert_eq!(ip_of("/dns4/example.com/tcp/1"), None);
    }
}
