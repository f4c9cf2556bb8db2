//! Transfers between real endpoints on loopback: fetch, policy, lookup, errors.

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::time::Duration;

use cosmic_auth::NodeKey;
use cosmic_blobs::{
    AllowAll, BlobEvent, BlobState, Blobs, Cid, Config, Error, FetchOptions, StaticLookup,
    Visibility,
};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn node() -> Blobs {
    Blobs::builder(&NodeKey::generate()).config(Config::loopback()).open_in_memory().await.unwrap()
}

#[tokio::test]
async fn fetch_public_blob_from_a_peer() {
    let alice = node().await;
    let bob = node().await;
    let data = pattern(2 << 20);
    let added = alice.add_bytes(data.clone(), Visibility::Public).await.unwrap();
    let mut events = bob.bus().subscribe::<BlobEvent>();
    let fetched = tokio::time::timeout(
        Duration::from_secs(20),
        bob.fetch_from(&added.cid, alice.peer_addr()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(fetched.size, data.len() as u64);
    assert_eq!(fetched.received, data.len() as u64);
    assert_eq!(fetched.provider, Some(alice.node()));
    assert_eq!(bob.read_to_bytes(&added.cid).await.unwrap(), data);
    assert_eq!(bob.pins_view().visibility(&added.cid).await.unwrap(), Some(Visibility::Private));
    let first = events.recv().await.unwrap();
    assert_eq!(
        first,
        BlobEvent::FetchStarted { cid: added.cid, provider: alice.node(), present: 0 }
    );
    // Fetching again is a no-op.
    let again = bob.fetch_from(&added.cid, alice.peer_addr()).await.unwrap();
    assert_eq!(again.received, 0);
    assert_eq!(again.provider, None);
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
}

#[tokio::test]
async fn private_blob_is_refused_by_default_policy() {
    let alice = node().await;
    let bob = node().await;
    let added = alice.add_bytes(pattern(100_000), Visibility::Private).await.unwrap();
    let mut denied = alice.bus().subscribe::<BlobEvent>();
    let options =
        FetchOptions::new().provider(alice.peer_addr()).timeout(Duration::from_millis(1500));
    let error = bob.fetch(&added.cid, options).await.err().unwrap();
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    // Nothing was received: at most an empty entry, never data.
    assert!(matches!(
        bob.stat(&added.cid).await.unwrap(),
        BlobState::Missing | BlobState::Partial { size: None }
    ));
    assert_eq!(
        denied.recv().await.unwrap(),
        BlobEvent::ServeDenied { cid: added.cid, peer: bob.node() }
    );
    // Nothing arrived, so nothing is held for a resume.
    assert!(!bob.unpin(&added.cid).await.unwrap());
    // Once public, the same request is served.
    alice.pin(&added.cid, Visibility::Public).await.unwrap();
    bob.fetch_from(&added.cid, alice.peer_addr()).await.unwrap();
    assert!(bob.has(&added.cid).await.unwrap());
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
}

#[tokio::test]
async fn custom_policy_serves_private_blobs() {
    let alice = Blobs::builder(&NodeKey::generate())
        .config(Config::loopback())
        .access_policy(AllowAll)
        .open_in_memory()
        .await
        .unwrap();
    let bob = node().await;
    let added = alice.add_bytes(pattern(10_000), Visibility::Private).await.unwrap();
    bob.fetch_from(&added.cid, alice.peer_addr()).await.unwrap();
    assert!(bob.has(&added.cid).await.unwrap());
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
}

#[tokio::test]
async fn fetch_uses_address_lookup() {
    let alice = node().await;
    let lookup = StaticLookup::new();
    let bob = Blobs::builder(&NodeKey::generate())
        .config(Config::loopback())
        .address_lookup(lookup.clone())
        .open_in_memory()
        .await
        .unwrap();
    let added = alice.add_bytes(pattern(70_000), Visibility::Public).await.unwrap();
    lookup.insert(added.cid, alice.peer_addr());
    let fetched = bob.fetch(&added.cid, FetchOptions::new()).await.unwrap();
    assert_eq!(fetched.provider, Some(alice.node()));
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_cid_times_out_cleanly() {
    let alice = node().await;
    let bob = node().await;
    let unknown = Cid::of_bytes(b"nobody has this");
    let options =
        FetchOptions::new().provider(alice.peer_addr()).timeout(Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let error = bob.fetch(&unknown, options).await.err().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    match &error {
        Error::Timeout { cid, attempts, .. } => {
            assert_eq!(*cid, unknown);
            assert!(*attempts >= 1);
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(error.to_string().contains("timed out"), "{error}");
    let no_providers = bob.fetch(&unknown, FetchOptions::new()).await.err().unwrap();
    assert!(matches!(no_providers, Error::NoProviders { .. }), "{no_providers}");
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
}

/// Accepts blob connections and never answers: a provider that stalls.
#[derive(Debug, Clone)]
struct Silent;

impl iroh::protocol::ProtocolHandler for Silent {
    async fn accept(
        &self,
        connection: iroh::endpoint::Connection,
    ) -> Result<(), iroh::protocol::AcceptError> {
        connection.closed().await;
        Ok(())
    }
}

#[tokio::test]
async fn stalled_provider_is_given_up_for_the_next() {
    let silent_key = NodeKey::generate();
    let endpoint = iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .secret_key(iroh::SecretKey::from_bytes(&silent_key.secret_bytes()))
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .bind()
        .await
        .unwrap();
    let silent_addr = cosmic_blobs::PeerAddr::new(silent_key.public(), endpoint.bound_sockets());
    let router = iroh::protocol::Router::builder(endpoint).accept(iroh_blobs::ALPN, Silent).spawn();

    let alice = node().await;
    let bob = node().await;
    let added = alice.add_bytes(pattern(200_000), Visibility::Public).await.unwrap();
    let mut events = bob.bus().subscribe::<BlobEvent>();
    let options = FetchOptions::new()
        .provider(silent_addr)
        .provider(alice.peer_addr())
        .stall_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(20));
    let started = std::time::Instant::now();
    let fetched = bob.fetch(&added.cid, options).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(fetched.provider, Some(alice.node()));
    let failure = loop {
        if let BlobEvent::FetchProviderFailed { provider, reason, .. } =
            events.recv().await.unwrap()
        {
            break (provider, reason);
        }
    };
    assert_eq!(failure.0, silent_key.public());
    assert!(failure.1.contains("no progress within"), "{}", failure.1);
    router.shutdown().await.unwrap();
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
}
