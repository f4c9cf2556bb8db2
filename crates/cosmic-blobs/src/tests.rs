//! Unit tests of CIDs, tag names and configuration defaults.

use crate::pins::{fetch_tag, pin_tag};
use crate::{Cid, CidError, Visibility};

const EMPTY_CID: &str = "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi";

#[test]
fn empty_input_has_the_known_cid() {
    let cid = Cid::of_bytes([]);
    assert_eq!(cid.to_string(), EMPTY_CID);
    assert_eq!(EMPTY_CID.parse::<Cid>().unwrap(), cid);
    assert_eq!(Cid::from_bytes(&cid.to_bytes()).unwrap(), cid);
    assert_eq!(&cid.to_bytes()[..4], &[0x01, 0x55, 0x1e, 0x20]);
    assert_eq!(Cid::from_hash(cid.hash()), cid);
}

#[test]
fn serde_uses_the_text_form() {
    let cid = Cid::of_bytes(b"hello");
    let json = serde_json::to_string(&cid).unwrap();
    assert_eq!(json, format!("\"{cid}\""));
    assert_eq!(serde_json::from_str::<Cid>(&json).unwrap(), cid);
    let error = serde_json::from_str::<Cid>("\"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG\"")
        .unwrap_err();
    assert!(error.to_string().contains("version 0"), "{error}");
}

#[test]
fn other_codecs_and_hashes_are_clear_errors() {
    // CIDv1 dag-pb, sha2-256 (the usual IPFS file CID).
    let dag_pb = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    let error = dag_pb.parse::<Cid>().unwrap_err();
    assert!(matches!(error, CidError::UnsupportedCodec { codec: 0x70, .. }), "{error}");
    assert!(error.to_string().contains("only codec raw (0x55)"), "{error}");
    // CIDv1 raw, sha2-256.
    let raw_sha = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let error = raw_sha.parse::<Cid>().unwrap_err();
    assert!(matches!(error, CidError::UnsupportedHash { code: 0x12, size: 32, .. }), "{error}");
    assert!(error.to_string().contains("blake3"), "{error}");
    let error = "not a cid".parse::<Cid>().unwrap_err();
    assert!(matches!(error, CidError::Malformed { .. }), "{error}");
    let error = Cid::from_bytes(&[0x01, 0x55]).unwrap_err();
    assert!(matches!(error, CidError::Malformed { .. }), "{error}");
}

#[test]
fn tag_names_follow_the_documented_scheme() {
    let cid = Cid::of_bytes([]);
    assert_eq!(pin_tag(&cid, Visibility::Public), format!("pin/public/{EMPTY_CID}"));
    assert_eq!(pin_tag(&cid, Visibility::Private), format!("pin/private/{EMPTY_CID}"));
    assert_eq!(fetch_tag(&cid), format!("fetch/{EMPTY_CID}"));
}

/// Observe requests (which ranges does a node have) get the same policy answer as reads.
#[tokio::test]
async fn observe_requests_go_through_the_policy() {
    use futures::StreamExt;
    use iroh::EndpointAddr;
    use iroh_blobs::protocol::{ObserveRequest, RangeSpec};

    use crate::{Blobs, Config};

    let alice = Blobs::builder(&cosmic_auth::NodeKey::generate())
        .config(Config::loopback())
        .open_in_memory()
        .await
        .unwrap();
    let bob = Blobs::builder(&cosmic_auth::NodeKey::generate())
        .config(Config::loopback())
        .open_in_memory()
        .await
        .unwrap();
    let public = alice.add_bytes(vec![1u8; 50_000], Visibility::Public).await.unwrap();
    let private = alice.add_bytes(vec![2u8; 50_000], Visibility::Private).await.unwrap();
    let addr = alice.peer_addr();
    let endpoint_addr = EndpointAddr::from_parts(
        iroh::EndpointId::from_bytes(addr.node.as_bytes()).unwrap(),
        addr.addrs.iter().copied().map(iroh::TransportAddr::Ip),
    );
    let observe = |cid: Cid| {
        let bob = bob.clone();
        let endpoint_addr = endpoint_addr.clone();
        async move {
            let connection =
                bob.inner.endpoint.connect(endpoint_addr, iroh_blobs::ALPN).await.unwrap();
            let request = ObserveRequest { hash: cid.hash(), ranges: RangeSpec::all() };
            let mut stream = Box::pin(bob.inner.store.remote().observe(connection, request));
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await.unwrap()
        }
    };
    let seen = observe(public.cid).await.unwrap().unwrap();
    assert!(seen.is_complete());
    match observe(private.cid).await {
        None | Some(Err(_)) => {}
        Some(Ok(bitfield)) => panic!("a private blob was observed: {bitfield:?}"),
    }
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
}

#[test]
fn config_takes_the_blobs_section() {
    let section = cosmic_config::Config::default().blobs;
    let bind_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 4748));
    let config = crate::Config::from_section(&section, bind_addr);
    assert_eq!(config.bind_addr, bind_addr);
    assert_eq!(config.max_blob_size, section.max_blob_size);
    assert_eq!(config.fetch_timeout, section.fetch_timeout);
    assert_eq!(config.gc_interval, section.gc_interval);
    // The crate's own defaults agree with the configuration's.
    let defaults = crate::Config::default();
    assert_eq!(defaults.max_blob_size, section.max_blob_size);
    assert_eq!(defaults.fetch_timeout, section.fetch_timeout);
    assert_eq!(defaults.gc_interval, section.gc_interval);
}
