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
