//! Blob auto-fetch between real nodes: real swarms, stores and blob endpoints on loopback.

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::time::Duration;

use cosmic_auth::{AuthorKey, NodeKey, SpaceKey, SpaceMode};
use cosmic_blobs::{Blobs, StaticLookup, Visibility};
use cosmic_store::Value;
use cosmic_sync::{BlobPolicy, BlobStatus, SyncEvent, SyncOptions};

mod common;

use common::{Node, eventually};

/// A node that fetches linked blobs into its own (in-memory) blob store, finding their
/// holders through `lookup`.
async fn node(lookup: StaticLookup) -> Node {
    let blobs = Blobs::builder(&NodeKey::generate())
        .config(cosmic_blobs::Config::loopback())
        .address_lookup(lookup)
        .open_in_memory()
        .await
        .unwrap();
    let options = SyncOptions {
        reconcile_interval: Duration::from_millis(500),
        blob_retry_delay: Duration::from_millis(100),
        blob_fetch_timeout: Duration::from_millis(500),
        ..SyncOptions::default()
    };
    Node::builder().blobs(blobs).sync_options(options).start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_blobs_are_fetched_by_the_space_policy() {
    let a = node(StaticLookup::new()).await;
    let lookup = StaticLookup::new();
    let b = node(lookup.clone()).await;
    let mut events = b.bus.subscribe::<SyncEvent>();
    let space = a.store.create_space(&SpaceKey::generate(), SpaceMode::Open).unwrap().space;
    a.replicator.join(space).await.unwrap();
    b.replicator.join_with(space, BlobPolicy::Lazy).await.unwrap();
    b.net.dial(a.net.listen_addrs().await.unwrap().remove(0)).await.unwrap();
    let author = AuthorKey::generate();

    // Lazy: the document syncs and reads; its blob is pending until asked for.
    let lazy = a.blobs().add_bytes(vec![7u8; 300_000], Visibility::Public).await.unwrap().cid;
    lookup.insert(lazy, a.blobs().peer_addr());
    let link = Value::blob_link(lazy.to_bytes()).unwrap();
    a.store.write(&author, &space, "files/lazy", vec![("data".into(), link)]).unwrap();
    eventually("the document to reach B", async || {
        b.store.get_doc(&space, "files/lazy").unwrap().is_some()
    })
    .await;
    eventually("B to report the blob pending", async || {
        matches!(events.try_recv(), Ok(Some(SyncEvent::BlobPending { cid, .. })) if cid == lazy.to_bytes())
    })
    .await;
    assert_eq!(b.replicator.blob_status(&lazy.to_bytes()).await, BlobStatus::Pending);
    b.replicator.fetch_blob(space, &lazy.to_bytes()).await.unwrap();
    assert_eq!(b.replicator.blob_status(&lazy.to_bytes()).await, BlobStatus::Present);
    assert_eq!(b.blobs().read_to_bytes(&lazy).await.unwrap().len(), 300_000);

    // Eager: fetched as soon as the document arrives.
    b.replicator.set_blob_policy(&space, BlobPolicy::Eager).unwrap();
    let eager = a.blobs().add_bytes(vec![9u8; 100_000], Visibility::Public).await.unwrap().cid;
    lookup.insert(eager, a.blobs().peer_addr());
    let link = Value::blob_link(eager.to_bytes()).unwrap();
    a.store.write(&author, &space, "files/eager", vec![("data".into(), link)]).unwrap();
    eventually("B to fetch the eager blob", async || b.blobs().has(&eager).await.unwrap()).await;
    eventually("the fetch to be counted", async || b.replicator.metrics().blobs_fetched >= 2).await;

    // A blob nobody provides: the document reads, the blob stays pending, the fetch gives
    // up after its retries and says so.
    let missing = cosmic_blobs::Cid::of_bytes(b"nobody has this");
    let link = Value::blob_link(missing.to_bytes()).unwrap();
    a.store.write(&author, &space, "files/missing", vec![("data".into(), link)]).unwrap();
    eventually("the document with a missing blob to read", async || {
        b.store.get_doc(&space, "files/missing").unwrap().is_some()
    })
    .await;
    assert_eq!(b.replicator.blob_status(&missing.to_bytes()).await, BlobStatus::Pending);
    eventually("the fetch of the missing blob to give up", async || {
        b.replicator.metrics().blobs_failed >= 1
    })
    .await;

    for node in [a, b] {
        node.stop().await;
    }
}
