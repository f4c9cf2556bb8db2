//! Entries, the replicated atoms, and their canonical, versioned binary encoding.
//!
//! Encoding, version 1 (all integers big-endian):
//!
//! ```text
//! version: u8 = 1
//! space:   [u8; 32]            the space id (its public key)
//! doc:     u16 length, utf-8   the document key
//! field:   u16 length, utf-8   the field name
//! hlc:     u64 millis, u32 counter
//! author:  [u8; 32]
//! value:   u8 tag, payload     see `Value::encode_into`
//! sig:     [u8; 64]            ed25519 over ENTRY_DOMAIN ++ all of the above
//! ```
//!
//! The entry hash is the BLAKE3 hash of all of it, signature included; ed25519 signatures are
//! deterministic, so equal entries have equal hashes on every peer.

use std::cmp::Ordering;

use cosmic_auth::{AuthorKey, PublicKey, Signature};

use crate::value::Reader;
use crate::{Error, Hlc, Result, Value};

/// The encoding version written by this build.
pub const ENTRY_VERSION: u8 = 1;

/// Prepended to the encoded body before signing, so an entry signature can never be
/// mistaken for a signature of anything else.
pub const ENTRY_DOMAIN: &[u8] = b"cosmic-store/entry/1\0";

/// The longest document key, in bytes.
pub const MAX_DOC_KEY_LEN: usize = 512;

/// The longest field name, in bytes.
pub const MAX_FIELD_LEN: usize = 256;

/// One field write: `(space, doc, field) -> value`, stamped, attributed and signed.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The space the entry belongs to.
    pub space: PublicKey,
    /// The document key (`users/alice`).
    pub doc: String,
    /// The field name (`name`).
    pub field: String,
    /// The value; [`Value::Null`] deletes the field.
    pub value: Value,
    /// When it was written.
    pub hlc: Hlc,
    /// Who wrote it.
    pub author: PublicKey,
    /// The author's signature over the canonical encoding of all of the above.
    pub signature: Signature,
}

impl Entry {
    /// Builds and signs an entry, validating the key, field and value.
    pub fn sign(
        author: &AuthorKey,
        space: PublicKey,
        doc: &str,
        field: &str,
        value: Value,
        hlc: Hlc,
    ) -> Result<Entry> {
        validate_doc_key(doc)?;
        validate_field(field)?;
        value.validate()?;
        let mut entry = Entry {
            space,
            doc: doc.to_owned(),
            field: field.to_owned(),
            value,
            hlc,
            author: author.public(),
            signature: Signature::from_bytes(&[0; 64]),
        };
        entry.signature = author.sign(&entry.signed_message());
        Ok(entry)
    }

    /// Checks the key, field, value and signature.
    pub fn verify(&self) -> Result<()> {
        self.check_structure()?;
        if cosmic_auth::verify(&self.author, &self.signed_message(), &self.signature).is_err() {
            return Err(self.bad_signature());
        }
        Ok(())
    }

    /// Checks the key, field and value: all of [`Entry::verify`] but the signature.
    pub(crate) fn check_structure(&self) -> Result<()> {
        validate_doc_key(&self.doc)?;
        validate_field(&self.field)?;
        self.value.validate()
    }

    /// The error for a signature that does not verify.
    pub(crate) fn bad_signature(&self) -> Error {
        Error::BadSignature {
            doc: self.doc.clone(),
            field: self.field.clone(),
            author: self.author,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(ENTRY_VERSION);
        out.extend_from_slice(self.space.as_bytes());
        // Both lengths are bounded by validation, far below u16::MAX.
        out.extend_from_slice(&(self.doc.len() as u16).to_be_bytes());
        out.extend_from_slice(self.doc.as_bytes());
        out.extend_from_slice(&(self.field.len() as u16).to_be_bytes());
        out.extend_from_slice(self.field.as_bytes());
        out.extend_from_slice(&self.hlc.to_bytes());
        out.extend_from_slice(self.author.as_bytes());
        self.value.encode_into(out);
    }

    /// The bytes the author signs: [`ENTRY_DOMAIN`] then the encoding without signature.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut out = ENTRY_DOMAIN.to_vec();
        self.encode_body(&mut out);
        out
    }

    /// The canonical encoding, signature last.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.encode_body(&mut out);
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// Decodes an entry, checking its structure and keys (not its signature: see
    /// [`Entry::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Entry> {
        Entry::decode_with(bytes, &mut |bytes| public_key(bytes, "entry"))
    }

    /// [`Entry::decode`] for one of many entries, reusing the keys `keys` has checked
    /// already: entries of one message mostly share their space and author, and a key
    /// check decompresses a curve point (microseconds, as much as decoding the rest).
    pub fn decode_cached(bytes: &[u8], keys: &mut KeyCache) -> Result<Entry> {
        Entry::decode_with(bytes, &mut |bytes| keys.check(bytes))
    }

    /// [`Entry::decode`] with a caller-supplied public key check, so the store can reuse
    /// keys it has already checked (a check decompresses a curve point: microseconds).
    pub(crate) fn decode_with(
        bytes: &[u8],
        key: &mut impl FnMut([u8; 32]) -> Result<PublicKey>,
    ) -> Result<Entry> {
        let what = "entry";
        let mut reader = Reader::new(bytes);
        let version = reader.u8(what)?;
        if version != ENTRY_VERSION {
            return Err(Error::decode(what, format!("unsupported entry version {version}")));
        }
        let space = key(reader.array(what)?)?;
        let doc = reader.string16(what)?;
        let field = reader.string16(what)?;
        let hlc = Hlc::from_bytes(reader.array(what)?);
        let author = key(reader.array(what)?)?;
        let value = Value::decode(&mut reader)?;
        let signature = Signature::from_bytes(&reader.array(what)?);
        reader.finish(what)?;
        validate_doc_key(&doc)?;
        validate_field(&field)?;
        Ok(Entry { space, doc, field, value, hlc, author, signature })
    }

    /// The BLAKE3 hash of [`Entry::encode`]: the item hash of set reconciliation.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// The id a sealed revocation names this entry by: the first 16 bytes of
    /// [`Entry::hash`] (see `Store::kept_items`).
    pub fn item_id(&self) -> cosmic_auth::ItemId {
        crate::store::item_id(&self.hash())
    }

    /// Compares two entries for the same field by the merge order `(hlc, author, value
    /// hash)`; the greater one wins.
    pub fn merge_cmp(&self, other: &Entry) -> Ordering {
        (self.hlc, self.author)
            .cmp(&(other.hlc, other.author))
            .then_with(|| self.value.hash().cmp(&other.value.hash()))
    }
}

/// Public keys found valid while decoding a run of entries (see [`Entry::decode_cached`]).
/// Holds at most [`KeyCache::CAPACITY`] keys (the store's own cache more): it starts
/// afresh when full.
#[derive(Debug)]
pub struct KeyCache {
    checked: std::collections::HashMap<[u8; 32], PublicKey>,
    capacity: usize,
}

impl Default for KeyCache {
    fn default() -> KeyCache {
        KeyCache::with_capacity(KeyCache::CAPACITY)
    }
}

impl KeyCache {
    /// The most keys held at once.
    pub const CAPACITY: usize = 1024;

    /// An empty cache.
    pub fn new() -> KeyCache {
        KeyCache::default()
    }

    /// An empty cache holding at most `capacity` keys.
    pub(crate) fn with_capacity(capacity: usize) -> KeyCache {
        KeyCache { checked: std::collections::HashMap::new(), capacity }
    }

    /// The key `bytes` encode, checked once while cached.
    pub(crate) fn check(&mut self, bytes: [u8; 32]) -> Result<PublicKey> {
        if let Some(key) = self.checked.get(&bytes) {
            return Ok(*key);
        }
        let key = public_key(bytes, "entry")?;
        if self.checked.len() >= self.capacity {
            self.checked.clear();
        }
        self.checked.insert(bytes, key);
        Ok(key)
    }
}

/// A public key from decoded bytes, which must be a valid ed25519 point.
pub(crate) fn public_key(bytes: [u8; 32], what: &'static str) -> Result<PublicKey> {
    PublicKey::from_bytes(&bytes)
        .map_err(|error| Error::decode(what, format!("invalid public key: {error}")))
}

fn invalid(what: &'static str, key: &str, reason: &'static str) -> Error {
    Error::InvalidKey { what, key: key.to_owned(), reason }
}

/// Checks a document key: non-empty, at most [`MAX_DOC_KEY_LEN`] bytes, `/`-separated
/// segments that are never empty, no control characters.
pub fn validate_doc_key(key: &str) -> Result<()> {
    let what = "document key";
    if key.is_empty() {
        return Err(invalid(what, key, "it is empty"));
    }
    if key.len() > MAX_DOC_KEY_LEN {
        return Err(invalid(what, key, "it is longer than 512 bytes"));
    }
    if key.split('/').any(str::is_empty) {
        return Err(invalid(what, key, "it has an empty segment"));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid(what, key, "it contains a control character"));
    }
    Ok(())
}

/// Checks a field name: non-empty, at most [`MAX_FIELD_LEN`] bytes, no `/` (a nested object's
/// field becomes a child document segment), no control characters.
pub fn validate_field(field: &str) -> Result<()> {
    let what = "field name";
    if field.is_empty() {
        return Err(invalid(what, field, "it is empty"));
    }
    if field.len() > MAX_FIELD_LEN {
        return Err(invalid(what, field, "it is longer than 256 bytes"));
    }
    if field.contains('/') {
        return Err(invalid(what, field, "it contains '/'"));
    }
    if field.chars().any(char::is_control) {
        return Err(invalid(what, field, "it contains a control character"));
    }
    Ok(())
}
