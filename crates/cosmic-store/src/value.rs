//! Field values and their canonical binary encoding.

use crate::{Error, Result};

/// The value of one field of a document.
///
/// Floats are canonical: NaN and infinities are refused (JSON cannot carry them) and `-0.0` is
/// stored as `0.0`, so that equal values
/// always have equal encodings and hashes (the merge order depends on the value hash).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A deleted field: a tombstone. Hidden from document reads, but it still wins merges.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A finite float (JSON has no NaN or infinity), never `-0.0`.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A link to another document of the same space, by key (JSON `{"#": "users/bob"}`).
    DocLink(String),
    /// A link to a blob, by the binary form of its CID (JSON `{"/": "<cid>"}`).
    BlobLink(Vec<u8>),
}

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_STRING: u8 = 5;
const TAG_BYTES: u8 = 6;
const TAG_DOC_LINK: u8 = 7;
const TAG_BLOB_LINK: u8 = 8;

impl Value {
    /// A float value, canonicalized: `-0.0` becomes `0.0`; NaN and infinities are errors.
    pub fn float(float: f64) -> Result<Value> {
        if !float.is_finite() {
            return Err(Error::InvalidValue {
                reason: format!("a float must be finite, not {float}"),
            });
        }
        Ok(Value::Float(if float == 0.0 { 0.0 } else { float }))
    }

    /// A blob link from the binary form of a CID; the CID must parse and be canonical.
    pub fn blob_link(cid_bytes: Vec<u8>) -> Result<Value> {
        check_cid(&cid_bytes)?;
        Ok(Value::BlobLink(cid_bytes))
    }

    /// A blob link from the string form of a CID (`bafkr4...`).
    pub fn blob_link_str(cid: &str) -> Result<Value> {
        let parsed: cid::Cid = cid
            .parse()
            .map_err(|error| Error::InvalidValue { reason: format!("bad cid {cid:?}: {error}") })?;
        Ok(Value::BlobLink(parsed.to_bytes()))
    }

    /// Whether this value is a tombstone.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Checks the rules that the constructors enforce, for values built directly or decoded.
    pub fn validate(&self) -> Result<()> {
        match self {
            Value::Float(float) if !float.is_finite() => {
                Err(Error::InvalidValue { reason: format!("a float must be finite, not {float}") })
            }
            Value::Float(float) if *float == 0.0 && float.is_sign_negative() => {
                Err(Error::InvalidValue { reason: "a float may not be -0.0".into() })
            }
            Value::String(string) if u32::try_from(string.len()).is_err() => {
                Err(Error::InvalidValue { reason: "a string may not exceed 4 GiB".into() })
            }
            Value::Bytes(bytes) if u32::try_from(bytes.len()).is_err() => {
                Err(Error::InvalidValue { reason: "bytes may not exceed 4 GiB".into() })
            }
            Value::DocLink(key) => crate::entry::validate_doc_key(key),
            Value::BlobLink(bytes) => check_cid(bytes),
            _ => Ok(()),
        }
    }

    /// Appends the canonical encoding: a tag byte, then the payload (big-endian numbers,
    /// `u32` big-endian lengths before variable-size payloads).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let put_bytes = |tag: u8, bytes: &[u8], out: &mut Vec<u8>| {
            out.push(tag);
            // `Value::validate` bounds lengths to 4 GiB, and stores bound them far lower.
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        match self {
            Value::Null => out.push(TAG_NULL),
            Value::Bool(false) => out.push(TAG_FALSE),
            Value::Bool(true) => out.push(TAG_TRUE),
            Value::Int(int) => {
                out.push(TAG_INT);
                out.extend_from_slice(&int.to_be_bytes());
            }
            Value::Float(float) => {
                out.push(TAG_FLOAT);
                out.extend_from_slice(&float.to_bits().to_be_bytes());
            }
            Value::String(string) => put_bytes(TAG_STRING, string.as_bytes(), out),
            Value::Bytes(bytes) => put_bytes(TAG_BYTES, bytes, out),
            Value::DocLink(key) => put_bytes(TAG_DOC_LINK, key.as_bytes(), out),
            Value::BlobLink(cid) => put_bytes(TAG_BLOB_LINK, cid, out),
        }
    }

    /// The canonical encoding as a new vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// The BLAKE3 hash of the canonical encoding: the last tie-breaker of the merge order.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Decodes one value from the front of `reader`, validating it.
    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<Value> {
        let what = "value";
        let value = match reader.u8(what)? {
            TAG_NULL => Value::Null,
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_INT => Value::Int(i64::from_be_bytes(reader.array(what)?)),
            TAG_FLOAT => Value::Float(f64::from_bits(u64::from_be_bytes(reader.array(what)?))),
            TAG_STRING => Value::String(reader.string32(what)?),
            TAG_BYTES => Value::Bytes(reader.bytes32(what)?.to_vec()),
            TAG_DOC_LINK => Value::DocLink(reader.string32(what)?),
            TAG_BLOB_LINK => Value::BlobLink(reader.bytes32(what)?.to_vec()),
            tag => return Err(Error::decode(what, format!("unknown value tag {tag}"))),
        };
        value.validate()?;
        Ok(value)
    }

    /// The JSON form: links as `{"#": key}` and `{"/": cid}`, bytes as dag-json's
    /// `{"/": {"bytes": base64}}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{Value as Json, json};
        match self {
            Value::Null => Json::Null,
            Value::Bool(bool) => Json::Bool(*bool),
            Value::Int(int) => json!(int),
            Value::Float(float) => {
                serde_json::Number::from_f64(*float).map_or(Json::Null, Json::Number)
            }
            Value::String(string) => Json::String(string.clone()),
            Value::Bytes(bytes) => {
                json!({"/": {"bytes": data_encoding::BASE64_NOPAD.encode(bytes)}})
            }
            Value::DocLink(key) => json!({"#": key}),
            Value::BlobLink(bytes) => match cid::Cid::try_from(bytes.as_slice()) {
                Ok(cid) => json!({"/": cid.to_string()}),
                Err(_) => Json::Null,
            },
        }
    }
}

/// Checks that `bytes` is exactly one canonical binary CID. Full CID rules (codec, hash)
/// belong to cosmic-blobs.
fn check_cid(bytes: &[u8]) -> Result<()> {
    let cid = cid::Cid::try_from(bytes)
        .map_err(|error| Error::InvalidValue { reason: format!("bad cid bytes: {error}") })?;
    if cid.to_bytes() != bytes {
        return Err(Error::InvalidValue { reason: "cid bytes are not canonical".into() });
    }
    Ok(())
}

/// A cursor over bytes being decoded; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(crate) fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(Error::decode(what, "unexpected end of input"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(what, 1)?[0])
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(what, N)?);
        Ok(out)
    }

    pub(crate) fn bytes16(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let len = u16::from_be_bytes(self.array(what)?);
        self.take(what, usize::from(len))
    }

    pub(crate) fn bytes32(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let len = u32::from_be_bytes(self.array(what)?);
        let len = usize::try_from(len).map_err(|_| Error::decode(what, "length overflow"))?;
        self.take(what, len)
    }

    pub(crate) fn string16(&mut self, what: &'static str) -> Result<String> {
        let bytes = self.bytes16(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::decode(what, "invalid utf-8"))
    }

    pub(crate) fn string32(&mut self, what: &'static str) -> Result<String> {
        let bytes = self.bytes32(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::decode(what, "invalid utf-8"))
    }

    pub(crate) fn finish(&self, what: &'static str) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::decode(what, format!("{} trailing bytes", self.bytes.len())))
        }
    }
}
