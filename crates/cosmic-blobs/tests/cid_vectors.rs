//! CIDs checked against `tests/data/cid-vectors.json`, computed by
//! `tests/data/gen_cid_vectors.py` from the specifications, without our code.

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use cosmic_auth::NodeKey;
use cosmic_blobs::{Blobs, Cid, CidError, Config, Visibility};
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("data/cid-vectors.json");
    serde_json::from_str(text).unwrap()
}

fn input(vector: &Value) -> Vec<u8> {
    let input = &vector["input"];
    if let Some(text) = input["utf8"].as_str() {
        return text.as_bytes().to_vec();
    }
    let len = input["pattern"].as_u64().unwrap() as usize;
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn valid_vectors_map_both_ways() {
    let vectors = vectors();
    let valid = vectors["valid"].as_array().unwrap();
    assert!(valid.len() >= 10);
    for vector in valid {
        let data = input(vector);
        let expected = vector["cid"].as_str().unwrap();
        let cid = Cid::of_bytes(&data);
        assert_eq!(cid.to_string(), expected, "{vector}");
        let parsed: Cid = expected.parse().unwrap();
        assert_eq!(parsed, cid);
        assert_eq!(hex(parsed.digest()), vector["blake3"].as_str().unwrap());
        assert_eq!(hex(&parsed.to_bytes()), vector["cid_hex"].as_str().unwrap());
        assert_eq!(Cid::from_bytes(&parsed.to_bytes()).unwrap(), cid);
    }
}

#[test]
fn invalid_vectors_are_refused_with_the_reason() {
    let vectors = vectors();
    for vector in vectors["invalid"].as_array().unwrap() {
        let text = vector["cid"].as_str().unwrap();
        let error = text.parse::<Cid>().unwrap_err();
        let kind = match error {
            CidError::Malformed { .. } => "malformed",
            CidError::UnsupportedVersion { .. } => "unsupported_version",
            CidError::UnsupportedCodec { .. } => "unsupported_codec",
            CidError::UnsupportedHash { .. } => "unsupported_hash",
            _ => "other",
        };
        assert_eq!(kind, vector["error"].as_str().unwrap(), "{vector}: {error}");
        if kind != "malformed" {
            assert!(error.to_string().contains("only"), "{error}");
        }
    }
}

#[tokio::test]
async fn the_store_computes_the_same_cids() {
    let blobs = Blobs::builder(&NodeKey::generate())
        .config(Config::loopback())
        .open_in_memory()
        .await
        .unwrap();
    for vector in vectors()["valid"].as_array().unwrap() {
        let added = blobs.add_bytes(input(vector), Visibility::Private).await.unwrap();
        assert_eq!(added.cid.to_string(), vector["cid"].as_str().unwrap());
        assert_eq!(added.size, vector["len"].as_u64().unwrap());
    }
    blobs.shutdown().await.unwrap();
}
