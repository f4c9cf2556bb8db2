//! Providers that serve other bytes than the blob they advertise: real stores and real
//! iroh endpoints on loopback. A store whose file was swapped on disk notices it while
//! sending; a provider that alters the bytes in flight is caught by the receiver, which
//! verifies every byte against the CID while it streams. Either way the fetch fails
//! clearly, nothing unverified is kept, and an honest provider still completes the blob.
#![allow(clippy::disallowed_methods, reason = "test tasks end with the test")]
#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cosmic_auth::NodeKey;
use cosmic_blobs::{
    BlobEvent, BlobState, Blobs, Cid, Config, Error, FetchOptions, PeerAddr, Visibility,
};
use iroh::endpoint::{RecvStream, SendStream, presets};
use iroh::{Endpoint, EndpointAddr, EndpointId, SecretKey, TransportAddr};

const KIB: usize = 1 << 10;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u64::from(seed) | 1;
    let mut data = vec![0u8; len];
    for word in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
    }
    data
}

async fn open(dir: &Path, key: &NodeKey) -> Blobs {
    Blobs::builder(key).config(Config::loopback()).open(dir).await.unwrap()
}

fn files_of_len(dir: &Path, len: u64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::metadata(&path).unwrap().len() == len {
                out.push(path);
            }
        }
    }
    out
}

/// A provider whose copy of the blob was swapped on disk for other bytes of the same
/// size after it was imported: it advertises the CID and serves the wrong content.
async fn lying_provider(dir: &Path, data: &[u8]) -> Blobs {
    let key = NodeKey::generate();
    let store = open(dir, &key).await;
    store.add_bytes(data.to_vec(), Visibility::Public).await.unwrap();
    store.shutdown().await.unwrap();
    drop(store);
    let files = files_of_len(dir, data.len() as u64);
    assert_eq!(files.len(), 1, "one data file of the blob's size: {files:?}");
    std::fs::write(&files[0], pattern(data.len(), 99)).unwrap();
    open(dir, &key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_serving_other_bytes_is_refused_and_the_honest_one_completes() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(256 * KIB, 5);
    let cid = Cid::of_bytes(&data);
    let mallory = lying_provider(&dir.path().join("mallory"), &data).await;
    let honest = open(&dir.path().join("honest"), &NodeKey::generate()).await;
    honest.add_bytes(data.clone(), Visibility::Public).await.unwrap();
    let bob = open(&dir.path().join("bob"), &NodeKey::generate()).await;
    let mut events = bob.bus().subscribe::<BlobEvent>();

    // From mallory alone: every attempt fails verification, until the deadline.
    let options = FetchOptions::new().provider(mallory.peer_addr()).timeout(Duration::from_secs(3));
    let error = bob.fetch(&cid, options).await.expect_err("the fetch must fail");
    let Error::Timeout { cid: failed, attempts, last_error, .. } = &error else {
        panic!("expected a timeout, got {error}");
    };
    assert_eq!(*failed, cid);
    assert!(*attempts >= 1);
    assert!(last_error.contains(&mallory.node().to_string()), "{error}");
    eprintln!("refused: {error}");
    let mut failures = 0;
    while let Ok(Some(event)) = events.try_recv() {
        match event {
            BlobEvent::FetchProviderFailed { provider, reason, .. } => {
                assert_eq!(provider, mallory.node());
                assert!(!reason.is_empty());
                failures += 1;
            }
            BlobEvent::FetchCompleted { .. } => panic!("a blob completed from a lying provider"),
            _ => {}
        }
    }
    assert!(failures >= 1);
    // Nothing of the wrong content was kept: the blob is not complete and cannot be read.
    assert!(!matches!(bob.stat(&cid).await.unwrap(), BlobState::Complete { .. }));
    assert!(bob.read_to_bytes(&cid).await.is_err(), "unverified bytes are readable");

    // Mallory first, the honest provider next: the fetch falls through and completes.
    let options = FetchOptions::new().provider(mallory.peer_addr()).provider(honest.peer_addr());
    let fetched = bob.fetch(&cid, options).await.unwrap();
    assert_eq!(fetched.provider, Some(honest.node()));
    assert_eq!(bob.stat(&cid).await.unwrap(), BlobState::Complete { size: data.len() as u64 });
    assert!(bob.read_to_bytes(&cid).await.unwrap() == data);
    for node in [mallory, honest, bob] {
        node.shutdown().await.unwrap();
    }
}

/// Copies `from` to `to`, flipping the byte at offset `flip` (if the stream gets there).
async fn relay(mut from: RecvStream, mut to: SendStream, flip: Option<usize>) {
    let mut offset = 0usize;
    let mut buf = vec![0u8; 16 * KIB];
    while let Ok(Some(read)) = from.read(&mut buf).await {
        let chunk = &mut buf[..read];
        if let Some(at) = flip.filter(|at| (offset..offset + read).contains(at)) {
            chunk[at - offset] ^= 0x55;
        }
        offset += read;
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
    let _ = to.finish();
}

/// A provider of its own identity that answers every blob request by asking `upstream`
/// and passing the answer on with the byte at `flip` altered: it advertises what it
/// cannot serve intact.
async fn tampering_provider(upstream: PeerAddr, flip: usize) -> (PeerAddr, Endpoint) {
    let key = NodeKey::generate();
    let endpoint = Endpoint::builder(presets::Minimal)
        .secret_key(SecretKey::from_bytes(&key.secret_bytes()))
        .clear_ip_transports()
        .bind_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap()
        .alpns(vec![iroh_blobs::ALPN.to_vec()])
        .bind()
        .await
        .unwrap();
    let upstream_addr = EndpointAddr::from_parts(
        EndpointId::from_bytes(upstream.node.as_bytes()).unwrap(),
        upstream.addrs.iter().copied().map(TransportAddr::Ip),
    );
    let server = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let (server, upstream_addr) = (server.clone(), upstream_addr.clone());
            tokio::spawn(async move {
                let Ok(client) = incoming.await else { return };
                let Ok(upstream) = server.connect(upstream_addr, iroh_blobs::ALPN).await else {
                    return;
                };
                while let Ok((to_client, from_client)) = client.accept_bi().await {
                    let Ok((to_upstream, from_upstream)) = upstream.open_bi().await else {
                        return;
                    };
                    tokio::spawn(relay(from_client, to_upstream, None));
                    tokio::spawn(relay(from_upstream, to_client, Some(flip)));
                }
            });
        }
    });
    let addrs = endpoint.bound_sockets();
    (PeerAddr::new(key.public(), addrs), endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_altered_in_flight_fail_verification_and_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(256 * KIB, 7);
    let cid = Cid::of_bytes(&data);
    let honest = open(&dir.path().join("honest"), &NodeKey::generate()).await;
    honest.add_bytes(data.clone(), Visibility::Public).await.unwrap();
    // Past the size header, in the first chunk group (or its hashes) of every answer, so
    // that no answer of mallory's, resumed or not, verifies.
    let (mallory, mallory_endpoint) = tampering_provider(honest.peer_addr(), 200).await;
    let bob = open(&dir.path().join("bob"), &NodeKey::generate()).await;
    let mut events = bob.bus().subscribe::<BlobEvent>();

    let options = FetchOptions::new().provider(mallory.clone()).timeout(Duration::from_secs(3));
    let error = bob.fetch(&cid, options).await.expect_err("the fetch must fail");
    let Error::Timeout { last_error, .. } = &error else {
        panic!("expected a timeout, got {error}");
    };
    assert!(last_error.contains(&mallory.node.to_string()), "{error}");
    eprintln!("refused: {error}");
    let mut reasons = Vec::new();
    while let Ok(Some(event)) = events.try_recv() {
        match event {
            BlobEvent::FetchProviderFailed { provider, reason, .. } => {
                assert_eq!(provider, mallory.node);
                reasons.push(reason);
            }
            BlobEvent::FetchCompleted { .. } => panic!("a blob completed with altered bytes"),
            _ => {}
        }
    }
    // Attempts cut short by the deadline aside, they fail verification.
    assert!(reasons.iter().any(|r| r.contains("mismatch")), "{reasons:?}");
    // Nothing that failed verification is kept: the blob is not complete and cannot be
    // read.
    let state = bob.stat(&cid).await.unwrap();
    assert!(matches!(state, BlobState::Partial { .. } | BlobState::Missing), "{state:?}");
    assert!(bob.read_to_bytes(&cid).await.is_err(), "unverified bytes are readable");

    // Mallory first, the honest provider next: the fetch falls through and completes.
    let options = FetchOptions::new().provider(mallory).provider(honest.peer_addr());
    let fetched = bob.fetch(&cid, options).await.unwrap();
    assert_eq!(fetched.provider, Some(honest.node()));
    assert!(bob.read_to_bytes(&cid).await.unwrap() == data);
    mallory_endpoint.close().await;
    for node in [honest, bob] {
        node.shutdown().await.unwrap();
    }
}
