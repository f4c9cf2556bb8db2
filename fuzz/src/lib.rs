//! The checks behind the fuzz targets: one function per decoder of untrusted bytes.
//!
//! Each check feeds the bytes to the real decoder and asserts what must hold for every
//! input: the decoder returns (a typed error or a value, never a panic), and a decoded
//! value encodes back to something that decodes to the same value. The targets in
//! `fuzz_targets/` are one line each, calling these; [`TARGETS`] lists them so that
//! `cargo test` replays the committed corpus and regressions without libFuzzer. Each
//! returns whether the decoder accepted the input (the seeds must all be accepted).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use cosmic_auth::{NodeKey, SignedStatement, Statement};
use cosmic_blobs::Cid;
use cosmic_net::codec::{self, Codec, PROTOCOL};
use cosmic_store::{Entry, SpaceRecord};
use cosmic_sync::wire::{self, Message, Part};
use libp2p::request_response::Codec as _;

pub mod seeds;

/// The size limit passed to the reconciliation and gossip decoders (the node's defaults
/// are larger; a smaller one makes the size checks reachable).
pub const WIRE_LIMIT: usize = 64 * 1024;

/// The frame size limit of the request-response codec checks.
pub const FRAME_LIMIT: usize = 16 * 1024;

/// The passphrase of the keystore seeds, so the fuzzer reaches the decryption path.
pub const PASSPHRASE: &str = "fuzz";

/// Every target: its name (as in `fuzz_targets/<name>.rs`) and its check.
pub const TARGETS: &[(&str, fn(&[u8]) -> bool)] = &[
    ("entry", entry),
    ("space_record", space_record),
    ("gossip", gossip),
    ("recon_message", recon_message),
    ("net_request", net_request),
    ("net_response", net_response),
    ("net_frame", net_frame),
    ("blob_where", blob_where),
    ("capability", capability),
    ("keystore", keystore),
    ("node_key_file", node_key_file),
    ("config", config),
    ("cid", cid),
];

/// A signed entry (`Entry::decode`): a decoded entry re-encodes to bytes that decode to
/// the same encoding (floats are normalised on decode, so the first encoding may differ
/// from the input); hashing and verifying never panic.
pub fn entry(data: &[u8]) -> bool {
    let Ok(entry) = Entry::decode(data) else { return false };
    check_entry(&entry);
    true
}

fn check_entry(entry: &Entry) {
    let encoded = entry.encode();
    let again = Entry::decode(&encoded).expect("an encoded entry decodes");
    assert_eq!(again.encode(), encoded, "entry encoding is not stable");
    assert_eq!(again.hash(), entry.hash());
    // Random bytes almost never carry a valid signature; this must only not panic.
    let _ = entry.verify();
}

/// A space record (`SpaceRecord::decode`): the encoding is canonical, so a decoded record
/// encodes back to exactly the input.
pub fn space_record(data: &[u8]) -> bool {
    let Ok(record) = SpaceRecord::decode(data) else { return false };
    assert_eq!(record.encode(), data, "space record encoding is not canonical");
    let _ = record.verify();
    true
}

/// A gossip payload (`wire::decode_gossip`), single entry or batch: what it carries
/// re-encodes in the same form into a payload that decodes to the same sequence and the
/// same entry encodings, and a batch is never empty.
pub fn gossip(data: &[u8]) -> bool {
    let Ok(gossip) = wire::decode_gossip(data, WIRE_LIMIT) else { return false };
    assert!(!gossip.entries.is_empty(), "a gossip message decoded to no entry");
    let encoded = match gossip.sequence {
        None => {
            assert_eq!(gossip.entries.len(), 1, "the single form carries one entry");
            wire::encode_gossip(&gossip.entries[0])
        }
        Some(sequence) => {
            let entries: Vec<Vec<u8>> = gossip.entries.iter().map(|entry| entry.encode()).collect();
            wire::encode_gossip_batch(sequence, &entries)
        }
    };
    let again = wire::decode_gossip(&encoded, WIRE_LIMIT).expect("an encoded gossip decodes");
    assert_eq!(again.sequence, gossip.sequence);
    let before: Vec<Vec<u8>> = gossip.entries.iter().map(|entry| entry.encode()).collect();
    let after: Vec<Vec<u8>> = again.entries.iter().map(|entry| entry.encode()).collect();
    assert_eq!(before, after);
    for entry in &gossip.entries {
        check_entry(entry);
    }
    true
}

/// A reconciliation request or answer (`wire::Message::decode`): a decoded message
/// encodes to bytes that decode to the same message (the format has more than one
/// encoding of a message: the parts older nodes wrote, and prefixes shared or not), and
/// the records, statements and entries inside go through
/// their own decoders as the replicator does.
pub fn recon_message(data: &[u8]) -> bool {
    let Ok(message) = Message::decode(data, WIRE_LIMIT) else { return false };
    let encoded = message.encode(WIRE_LIMIT).expect("a decoded message fits its own limit");
    let again = Message::decode(&encoded, WIRE_LIMIT).expect("an encoded message decodes");
    assert_eq!(again, message, "a message changed through encode and decode");
    assert_eq!(message.encoded_len(), encoded.len(), "encoded_len disagrees with encode");
    for part in &message.parts {
        match part {
            Part::Space { record, statements } => {
                space_record(record);
                for statement in statements {
                    capability(statement);
                }
            }
            Part::Entry(bytes) => {
                entry(bytes);
            }
            Part::Fingerprint(..)
            | Part::Items(..)
            | Part::Hashes(..)
            | Part::Want(_)
            | Part::WantHashes(..)
            | Part::Clock(_)
            | Part::SpaceDigest(_)
            | Part::WantSpace => {}
        }
    }
    true
}

/// A request envelope (`codec::decode_request`): canonical, so it re-encodes to the input.
pub fn net_request(data: &[u8]) -> bool {
    let Ok(request) = codec::decode_request(data) else { return false };
    assert!(codec::is_valid_protocol_name(&request.protocol));
    let encoded = codec::encode_request(&request).expect("a decoded request encodes");
    assert_eq!(encoded, data, "request envelope is not canonical");
    true
}

/// A response envelope (`codec::decode_response`): canonical, so it re-encodes to the
/// input.
pub fn net_response(data: &[u8]) -> bool {
    let Ok(response) = codec::decode_response(data) else { return false };
    assert_eq!(codec::encode_response(&response), data, "response envelope is not canonical");
    true
}

/// A request-response stream as the libp2p codec reads it: the first byte says whether
/// it is read as a request or a response stream, the rest is the stream. A frame read
/// is never over the limit, and writing what was read gives back the bytes consumed.
pub fn net_frame(data: &[u8]) -> bool {
    let Some((&selector, stream)) = data.split_first() else { return false };
    let mut codec = Codec::new(FRAME_LIMIT);
    let mut io = futures::io::Cursor::new(stream);
    if selector % 2 == 0 {
        let frame = futures::executor::block_on(codec.read_request(&PROTOCOL, &mut io));
        if let Ok(codec::Frame::Request(request)) = frame {
            let consumed = usize::try_from(io.position()).expect("a position fits usize");
            let mut out = futures::io::Cursor::new(Vec::new());
            futures::executor::block_on(codec.write_request(
                &PROTOCOL,
                &mut out,
                codec::Frame::Request(request),
            ))
            .expect("a request read writes back");
            assert_eq!(out.into_inner(), &stream[..consumed]);
            return true;
        }
        false
    } else {
        let response = futures::executor::block_on(codec.read_response(&PROTOCOL, &mut io));
        if let Ok(response) = response {
            let consumed = usize::try_from(io.position()).expect("a position fits usize");
            assert!(consumed <= FRAME_LIMIT + 4, "read past the frame limit");
            let mut out = futures::io::Cursor::new(Vec::new());
            futures::executor::block_on(codec.write_response(&PROTOCOL, &mut out, response))
                .expect("a response read writes back");
            assert_eq!(out.into_inner(), &stream[..consumed]);
            return true;
        }
        false
    }
}

/// A `blobs/where/1` exchange: the request body is a binary CID, the answer is JSON read
/// by `cosmic_node::read_where_answer`; an answer read writes back as one that reads the
/// same.
pub fn blob_where(data: &[u8]) -> bool {
    let request = Cid::from_bytes(data).is_ok();
    let Some((node, addrs)) = cosmic_node::read_where_answer(data) else { return request };
    let answer = serde_json::json!({ "node": node.to_string(), "has": true, "addrs": addrs });
    let bytes = serde_json::to_vec(&answer).expect("json serialises");
    let again: Option<(_, Vec<SocketAddr>)> = cosmic_node::read_where_answer(&bytes);
    assert_eq!(again, Some((node, addrs)));
    true
}

/// A capability statement, signed (`SignedStatement::from_bytes`) or the bare statement
/// (`Statement::from_bytes`): canonical, so it encodes back to exactly the input.
pub fn capability(data: &[u8]) -> bool {
    let mut accepted = false;
    if let Ok(signed) = SignedStatement::from_bytes(data) {
        assert_eq!(signed.to_bytes(), data, "signed statement is not canonical");
        let _ = signed.verify();
        accepted = true;
    }
    if let Ok(statement) = Statement::from_bytes(data) {
        assert_eq!(statement.to_bytes(), data, "statement is not canonical");
        accepted = true;
    }
    accepted
}

/// An encrypted identity (a keystore file or an export): the header parses up to the key
/// derivation; with cheap KDF parameters it is also decrypted with [`PASSPHRASE`], and a
/// key that decrypts matches the public key in the header.
pub fn keystore(data: &[u8]) -> bool {
    let Ok((params, public)) = cosmic_auth::read_identity_header(data) else { return false };
    // Argon2id at production cost takes far too long per input: decrypt the cheap ones.
    if params.m_cost > 1024 || params.t_cost > 2 {
        return true;
    }
    if let Ok(key) = cosmic_auth::decrypt_identity(data, PASSPHRASE) {
        assert_eq!(key.public(), public, "decrypted key does not match the header");
    }
    true
}

/// A node key file (`NodeKey::load_file`): a key read writes back to a file that reads
/// as the same key.
pub fn node_key_file(data: &[u8]) -> bool {
    let dir = scratch_dir();
    let path = dir.join("node.key");
    write_file(&path, data);
    let Ok(key) = NodeKey::load_file(&path) else { return false };
    let again_path = dir.join("again.key");
    let _ = std::fs::remove_file(&again_path);
    key.write_file(&again_path).expect("a node key writes");
    let again = NodeKey::load_file(&again_path).expect("a written node key reads");
    assert_eq!(again.public(), key.public());
    true
}

/// A config file (`cosmic_config::load` with the text as `--config`): a typed error or a
/// validated configuration, never a panic. The data dir is pinned to a scratch directory
/// by a flag so that no input makes the loader create directories elsewhere.
pub fn config(data: &[u8]) -> bool {
    let dir = scratch_dir().join("config");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(cosmic_config::FILE_NAME);
    write_file(&path, data);
    let overrides = cosmic_config::Overrides::default()
        .set("node.data_dir", &dir, "--data-dir")
        .expect("a path override");
    let options =
        cosmic_config::LoadOptions { config_file: Some(path), overrides, ignore_env: true };
    let Ok(loaded) = cosmic_config::load(&options) else { return false };
    assert_eq!(loaded.config.node.data_dir, dir);
    let _ = loaded.explain();
    true
}

/// A CID, binary (`Cid::from_bytes`) and text (`FromStr`): a CID read prints and encodes
/// back to forms that read as the same CID.
pub fn cid(data: &[u8]) -> bool {
    let mut accepted = false;
    if let Ok(cid) = Cid::from_bytes(data) {
        assert_eq!(Cid::from_bytes(&cid.to_bytes()).ok(), Some(cid));
        assert_eq!(cid.to_string().parse::<Cid>().ok(), Some(cid));
        accepted = true;
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cid) = text.parse::<Cid>()
    {
        assert_eq!(cid.to_string().parse::<Cid>().ok(), Some(cid));
        assert_eq!(Cid::from_bytes(&cid.to_bytes()).ok(), Some(cid));
        accepted = true;
    }
    accepted
}

/// A directory for the checks that must go through a file: one per process, in the system
/// temp dir (a static is never dropped, so it stays there).
/// A scratch directory of this thread's own (the unit tests run checks on several threads
/// at once), kept for the life of the thread.
fn scratch_dir() -> PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("a temp dir");
    }
    DIR.with(|dir| dir.path().to_path_buf())
}

fn write_file(path: &std::path::Path, data: &[u8]) {
    let mut file = std::fs::File::create(path).expect("scratch file");
    file.write_all(data).expect("scratch write");
}

#[cfg(test)]
mod tests;
