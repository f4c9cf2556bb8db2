//! Valid seed inputs for every target, made with the real encoders.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml -- --ignored write_seeds` writes them to
//! `fuzz/corpus/<target>/<name>`; the keys are fixed, so rerunning gives the same files
//! (except the keystore seed, whose salt and nonce are random by design).

use cosmic_auth::{
    AuthorKey, KdfParams, Keystore, NodeKey, Right, SpaceKey, SpaceMode, Statement, Timestamp,
};
use cosmic_blobs::Cid;
use cosmic_net::codec::{self, Request, Response};
use cosmic_store::{Entry, Fingerprint, Hlc, RangeKey, SpaceRecord, Value};
use cosmic_sync::wire::{self, Message, Part, Range};

use crate::{PASSPHRASE, WIRE_LIMIT};

/// One seed: the target it is for, a file name, and the bytes.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target's name.
    pub target: &'static str,
    /// The file name in the target's corpus directory.
    pub name: &'static str,
    /// The input.
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: &'static str, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed { target, name, bytes: bytes.into() }
}

fn author() -> AuthorKey {
    AuthorKey::from_secret_bytes(&[7; 32])
}

fn space_key() -> SpaceKey {
    SpaceKey::from_secret_bytes(&[9; 32])
}

fn entries() -> Vec<(&'static str, Entry)> {
    let author = author();
    let space = space_key().id();
    let cid = Cid::of_bytes(b"hello").to_bytes();
    let values = [
        ("null", Value::Null),
        ("bool", Value::Bool(true)),
        ("int", Value::Int(-42)),
        ("float", Value::Float(1.5)),
        ("string", Value::String("héllo".into())),
        ("bytes", Value::Bytes(vec![0, 1, 2, 255])),
        ("doc_link", Value::DocLink("users/bob".into())),
        ("blob_link", Value::BlobLink(cid)),
    ];
    values
        .into_iter()
        .enumerate()
        .map(|(i, (name, value))| {
            let hlc = Hlc::new(1_700_000_000_000 + i as u64, 3);
            let entry = Entry::sign(&author, space, "users/alice", "name", value, hlc)
                .expect("a valid entry");
            (name, entry)
        })
        .collect()
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let entries = entries();
    for (name, entry) in &entries {
        seeds.push(seed("entry", name, entry.encode()));
        seeds.push(seed("gossip", name, wire::encode_gossip(entry)));
    }
    let batch: Vec<Vec<u8>> = entries.iter().map(|(_, entry)| entry.encode()).collect();
    let sequence = wire::Sequence { stream: 1_700_000_000_000_000_000, seq: 1 };
    seeds.push(seed("gossip", "batch", wire::encode_gossip_batch(sequence, &batch)));

    let space_key = space_key();
    let record = SpaceRecord::sign(&space_key, SpaceMode::Restricted, 3);
    seeds.push(seed("space_record", "restricted", record.encode()));
    seeds.push(seed(
        "space_record",
        "open",
        SpaceRecord::sign(&space_key, SpaceMode::Open, 1).encode(),
    ));

    let grant = space_key.grant(
        author().public(),
        Right::Write,
        Timestamp(1_700_000_000),
        Some(Timestamp(1_800_000_000)),
    );
    let revoke = space_key.revoke(author().public(), Timestamp(1_700_000_001));
    let admin_grant =
        space_key.grant(author().public(), Right::Admin, Timestamp(1_700_000_000), None);
    seeds.push(seed("capability", "grant", grant.to_bytes()));
    seeds.push(seed("capability", "grant_no_expiry", admin_grant.to_bytes()));
    seeds.push(seed("capability", "revoke", revoke.to_bytes()));
    seeds.push(seed("capability", "statement", grant.statement().to_bytes()));
    debug_assert!(Statement::from_bytes(&grant.statement().to_bytes()).is_ok());

    let key = |doc: &str, field: &str| RangeKey { doc: doc.into(), field: field.into() };
    let message = Message {
        space: space_key.id(),
        parts: vec![
            Part::Space {
                record: record.encode(),
                statements: vec![grant.to_bytes(), revoke.to_bytes()],
            },
            Part::Fingerprint(
                Range { lower: None, upper: Some(key("users/m", "")) },
                Fingerprint { sum: [5; 32], count: 17 },
            ),
            Part::Items(
                Range { lower: Some(key("users/m", "")), upper: None },
                vec![(key("users/n", "age"), [1; 32]), (key("users/z", "name"), [2; 32])],
            ),
            Part::Want(key("users/alice", "name")),
            Part::Hashes(
                Range { lower: Some(key("users/a", "")), upper: Some(key("users/b", "")) },
                vec![[3; 8], [4; 8]],
            ),
            Part::WantHashes(
                Range { lower: Some(key("users/a", "")), upper: Some(key("users/b", "")) },
                vec![[4; 8]],
            ),
            Part::Entry(entries[4].1.encode()),
            Part::Clock(1_780_000_000_000),
            Part::SpaceDigest([6; 16]),
            Part::WantSpace,
        ],
    };
    seeds.push(seed("recon_message", "all_parts", message.encode(WIRE_LIMIT).expect("fits")));
    let small = Message {
        space: space_key.id(),
        parts: vec![Part::Fingerprint(Range::ALL, Fingerprint { sum: [0; 32], count: 0 })],
    };
    seeds.push(seed("recon_message", "fingerprint", small.encode(WIRE_LIMIT).expect("fits")));

    let request = Request { protocol: "sync/reconcile/1".into(), body: b"body".to_vec().into() };
    let request = codec::encode_request(&request).expect("a valid request");
    let ok = codec::encode_response(&Response::Ok(b"answer".to_vec().into()));
    let refused = codec::encode_response(&Response::Error("refused".into()));
    seeds.push(seed("net_request", "request", request.clone()));
    seeds.push(seed("net_response", "ok", ok.clone()));
    seeds.push(seed("net_response", "error", refused.clone()));
    seeds.push(seed("net_frame", "request", framed(0, &request)));
    seeds.push(seed("net_frame", "response_ok", framed(1, &ok)));
    seeds.push(seed("net_frame", "response_error", framed(1, &refused)));

    let cid = Cid::of_bytes(b"hello");
    seeds.push(seed("cid", "binary", cid.to_bytes()));
    seeds.push(seed("cid", "text", cid.to_string()));
    let node = NodeKey::from_secret_bytes([3; 32]).public();
    let answer = serde_json::json!({
        "node": node.to_string(),
        "has": true,
        "addrs": ["127.0.0.1:4747", "0.0.0.0:4748", "[::1]:4749"],
    });
    seeds.push(seed("blob_where", "answer", serde_json::to_vec(&answer).expect("json")));
    seeds.push(seed("blob_where", "request", cid.to_bytes()));

    let dir = tempfile::tempdir().expect("a temp dir");
    let keystore =
        Keystore::open_with_params(dir.path(), KdfParams::INSECURE_FOR_TESTS).expect("a keystore");
    keystore.insert("fuzz", &author(), PASSPHRASE).expect("insert");
    seeds.push(seed("keystore", "identity", keystore.export("fuzz").expect("export")));

    let path = dir.path().join("node.key");
    NodeKey::from_secret_bytes([3; 32]).write_file(&path).expect("write a node key");
    seeds.push(seed("node_key_file", "node_key", std::fs::read(&path).expect("read")));

    seeds.push(seed("config", "defaults", cosmic_config::commented_defaults()));
    seeds.push(seed("config", "small", SMALL_CONFIG));
    seeds
}

/// A config file setting a few keys of every kind (lists, durations, sizes, enums).
const SMALL_CONFIG: &str = r#"[net]
listen = ["/ip4/127.0.0.1/tcp/0"]
bootstrap = []

[sync]
reconcile_interval = "30s"

[log]
format = "json"
"#;

/// A `net_frame` input: the selector byte, the length prefix, the payload.
fn framed(selector: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    out.extend_from_slice(payload);
    out
}
