//! The local store: add, read, stat, list, pin, unpin and garbage collection.

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::time::Duration;

use bytes::Bytes;
use cosmic_auth::NodeKey;
use cosmic_blobs::{BlobEvent, BlobState, Blobs, Cid, Config, Error, Visibility};
use futures::StreamExt;

async fn memory() -> Blobs {
    Blobs::builder(&NodeKey::generate()).config(Config::loopback()).open_in_memory().await.unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn collect(blobs: &Blobs, cid: &Cid, range: impl std::ops::RangeBounds<u64>) -> Vec<u8> {
    let mut stream = blobs.read(cid, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn add_bytes_returns_cid_and_size_and_reads_back() {
    let blobs = memory().await;
    let mut events = blobs.bus().subscribe::<BlobEvent>();
    let data = pattern(100_000);
    let added = blobs.add_bytes(data.clone(), Visibility::Private).await.unwrap();
    assert_eq!(added.cid, Cid::of_bytes(&data));
    assert_eq!(added.size, 100_000);
    assert!(added.cid.to_string().starts_with("bafkr4"));
    assert_eq!(events.recv().await.unwrap(), BlobEvent::Added { cid: added.cid, size: 100_000 });
    assert_eq!(blobs.stat(&added.cid).await.unwrap(), BlobState::Complete { size: 100_000 });
    assert_eq!(blobs.read_to_bytes(&added.cid).await.unwrap(), Bytes::from(data.clone()));
    assert_eq!(collect(&blobs, &added.cid, ..).await, data);
    assert_eq!(collect(&blobs, &added.cid, 1000..1010).await, data[1000..1010]);
    assert_eq!(collect(&blobs, &added.cid, 40_000..).await, data[40_000..]);
    assert_eq!(collect(&blobs, &added.cid, 99_999..=99_999).await, data[99_999..]);
    assert_eq!(collect(&blobs, &added.cid, 5..5).await, Vec::<u8>::new());
    blobs.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_reads_are_clear_errors() {
    let blobs = memory().await;
    let added = blobs.add_bytes(pattern(10), Visibility::Private).await.unwrap();
    let missing = Cid::of_bytes(b"never added");
    assert!(
        matches!(blobs.read(&missing, ..).await, Err(Error::NotFound { cid }) if cid == missing)
    );
    assert_eq!(blobs.stat(&missing).await.unwrap(), BlobState::Missing);
    let error = blobs.read(&added.cid, 11..20).await.err().unwrap();
    assert!(matches!(error, Error::InvalidRange { start: 11, size: 10, .. }), "{error}");
    assert!(matches!(blobs.pin(&missing, Visibility::Public).await, Err(Error::NotFound { .. })));
    blobs.shutdown().await.unwrap();
}

#[tokio::test]
async fn add_file_and_stream_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::builder(&NodeKey::generate())
        .config(Config::loopback())
        .open(dir.path().join("blobs"))
        .await
        .unwrap();
    let data = pattern(3 << 20);
    let source = dir.path().join("source.bin");
    std::fs::write(&source, &data).unwrap();
    let from_file = blobs.add_file(&source, Visibility::Public).await.unwrap();
    assert_eq!(from_file.cid, Cid::of_bytes(&data));
    assert_eq!(from_file.size, data.len() as u64);

    let chunks: Vec<std::io::Result<Bytes>> =
        data.chunks(100_000).map(|chunk| Ok(Bytes::copy_from_slice(chunk))).collect();
    let from_stream =
        blobs.add_stream(futures::stream::iter(chunks), Visibility::Private).await.unwrap();
    assert_eq!(from_stream, from_file);

    let target = dir.path().join("out.bin");
    assert_eq!(blobs.export(&from_file.cid, &target).await.unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(&target).unwrap(), data);

    let missing = dir.path().join("missing.bin");
    let error = blobs.add_file(&missing, Visibility::Public).await.err().unwrap();
    assert!(matches!(error, Error::Io { .. }), "{error}");
    blobs.shutdown().await.unwrap();
}

#[tokio::test]
async fn too_large_blobs_are_refused() {
    let config = Config { max_blob_size: 1000, ..Config::loopback() };
    let blobs = Blobs::builder(&NodeKey::generate()).config(config).open_in_memory().await.unwrap();
    let error = blobs.add_bytes(pattern(1001), Visibility::Public).await.err().unwrap();
    assert!(matches!(error, Error::TooLarge { size: 1001, max: 1000 }), "{error}");
    let chunks: Vec<std::io::Result<Bytes>> =
        (0..3).map(|_| Ok(Bytes::from(pattern(400)))).collect();
    let error =
        blobs.add_stream(futures::stream::iter(chunks), Visibility::Public).await.err().unwrap();
    assert!(matches!(error, Error::TooLarge { max: 1000, .. }), "{error}");
    assert!(blobs.list().await.unwrap().is_empty());
    blobs.shutdown().await.unwrap();
}

#[tokio::test]
async fn pins_list_and_gc() {
    let blobs = memory().await;
    let kept = blobs.add_bytes(pattern(50_000), Visibility::Public).await.unwrap();
    let dropped = blobs.add_bytes(pattern(60_000), Visibility::Private).await.unwrap();
    let mut pins = blobs.pins().await.unwrap();
    pins.sort();
    let mut expected = vec![(kept.cid, Visibility::Public), (dropped.cid, Visibility::Private)];
    expected.sort();
    assert_eq!(pins, expected);
    assert_eq!(blobs.list().await.unwrap().len(), 2);

    blobs.pin(&dropped.cid, Visibility::Public).await.unwrap();
    assert_eq!(blobs.pins_view().visibility(&dropped.cid).await.unwrap(), Some(Visibility::Public));
    assert!(blobs.unpin(&dropped.cid).await.unwrap());
    assert!(!blobs.unpin(&dropped.cid).await.unwrap());

    tokio::time::timeout(Duration::from_secs(20), blobs.gc()).await.unwrap().unwrap();
    assert_eq!(blobs.stat(&dropped.cid).await.unwrap(), BlobState::Missing);
    assert_eq!(blobs.stat(&kept.cid).await.unwrap(), BlobState::Complete { size: 50_000 });
    let listed = blobs.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].cid, kept.cid);
    assert_eq!(listed[0].pin, Some(Visibility::Public));
    // A second run right after the first also completes.
    tokio::time::timeout(Duration::from_secs(20), blobs.gc()).await.unwrap().unwrap();
    blobs.shutdown().await.unwrap();
}

#[tokio::test]
async fn endpoint_is_keyed_by_the_node_key() {
    let key = NodeKey::generate();
    let blobs = Blobs::builder(&key).config(Config::loopback()).open_in_memory().await.unwrap();
    assert_eq!(blobs.node(), key.public());
    assert_eq!(blobs.peer_addr().node, key.public());
    assert!(blobs.local_addrs().iter().all(|addr| addr.ip().is_loopback()));
    blobs.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_bind_address_and_failing_stream_are_clear_errors() {
    // TEST-NET-3: never an address of this machine.
    let config = Config { bind_addr: "203.0.113.7:0".parse().unwrap(), ..Config::loopback() };
    let error =
        Blobs::builder(&NodeKey::generate()).config(config).open_in_memory().await.err().unwrap();
    assert!(matches!(error, Error::Bind { .. }), "{error}");
    assert!(error.to_string().contains("203.0.113.7:0"), "{error}");

    let blobs = memory().await;
    let chunks: Vec<std::io::Result<Bytes>> =
        vec![Ok(Bytes::from(pattern(1000))), Err(std::io::Error::other("disk on fire"))];
    let error =
        blobs.add_stream(futures::stream::iter(chunks), Visibility::Public).await.err().unwrap();
    assert!(matches!(error, Error::Store { operation: "add a stream", .. }), "{error}");
    assert!(
        error.to_string().contains("disk on fire") || format!("{error:?}").contains("disk on fire"),
        "{error:?}"
    );
    assert!(blobs.list().await.unwrap().is_empty());

    // Sources that fail at every point of an upload, many times over: a clear error each
    // time, never a panic (iroh-blobs' own add_stream can panic when its source fails
    // while it reports progress), and nothing kept.
    for failing_at in 0..40usize {
        let mut chunks: Vec<std::io::Result<Bytes>> =
            (0..failing_at).map(|_| Ok(Bytes::from(pattern(16 * 1024)))).collect();
        chunks.push(Err(std::io::Error::other("connection reset")));
        let added = blobs.add_stream(futures::stream::iter(chunks), Visibility::Public).await;
        let error = added.err().unwrap();
        assert!(matches!(error, Error::Store { operation: "add a stream", .. }), "{error}");
    }
    assert!(blobs.list().await.unwrap().is_empty());
    blobs.shutdown().await.unwrap();
}
