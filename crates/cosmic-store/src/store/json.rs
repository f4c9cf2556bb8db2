//! JSON documents: a JSON object written as fields (nested objects as linked child
//! documents; `{"#": key}`, `{"/": cid}` and `{"/": {"bytes": base64}}` as values), and a
//! document read back as JSON.

use super::*;

impl Store {
    /// Writes a JSON object to a document. Nested objects become linked child documents:
    /// `{"address": {"city": "x"}}` written to `users/alice` stores the field
    /// `address -> {"#": "users/alice/address"}` and the document `users/alice/address`.
    /// `{"#": key}` is a doc link, `{"/": cid}` a blob link, `{"/": {"bytes": base64}}` bytes;
    /// `null` deletes a field; arrays are refused.
    pub fn write_json(
        &self,
        author: &AuthorKey,
        space: &PublicKey,
        doc: &str,
        object: &serde_json::Value,
    ) -> Result<Vec<Inserted>> {
        crate::entry::validate_doc_key(doc)?;
        let mut fields = Vec::new();
        flatten_json(doc, object, &mut fields, 0)?;
        self.write_many(author, space, fields)
    }

    /// A document as a JSON object, following doc links to child documents up to `depth`
    /// levels (0: links stay `{"#": key}`). `None` when the document has no live field.
    pub fn get_json(
        &self,
        space: &PublicKey,
        doc: &str,
        depth: usize,
    ) -> Result<Option<serde_json::Value>> {
        crate::entry::validate_doc_key(doc)?;
        let txn = self.begin_read()?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        self.read_json(&entries, space, doc, depth)
    }

    pub(super) fn read_json(
        &self,
        entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
        space: &PublicKey,
        doc: &str,
        depth: usize,
    ) -> Result<Option<serde_json::Value>> {
        let Some(fields) = self.read_doc(entries, space, doc)? else { return Ok(None) };
        let mut object = serde_json::Map::new();
        for (name, field) in fields {
            let json = match &field.value {
                Value::DocLink(child) if depth > 0 => self
                    .read_json(entries, space, child, depth - 1)?
                    .unwrap_or_else(|| field.value.to_json()),
                value => value.to_json(),
            };
            object.insert(name, json);
        }
        Ok(Some(serde_json::Value::Object(object)))
    }
}

/// Nesting deeper than this is refused (it would also exceed the doc key length).
pub(super) const MAX_JSON_DEPTH: usize = 32;

pub(super) fn flatten_json(
    doc: &str,
    object: &serde_json::Value,
    out: &mut Vec<(String, String, Value)>,
    depth: usize,
) -> Result<()> {
    let serde_json::Value::Object(map) = object else {
        return Err(Error::InvalidValue {
            reason: format!("document {doc:?} must be a JSON object"),
        });
    };
    if depth > MAX_JSON_DEPTH {
        return Err(Error::InvalidValue {
            reason: format!("document {doc:?} is nested too deeply"),
        });
    }
    for (field, json) in map {
        crate::entry::validate_field(field)?;
        let value = match json {
            serde_json::Value::Object(inner) => match json_link(inner)? {
                Some(value) => value,
                None => {
                    let child = format!("{doc}/{field}");
                    crate::entry::validate_doc_key(&child)?;
                    flatten_json(&child, json, out, depth + 1)?;
                    Value::DocLink(child)
                }
            },
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(bool) => Value::Bool(*bool),
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(int) => Value::Int(int),
                None => Value::float(number.as_f64().unwrap_or(f64::NAN))?,
            },
            serde_json::Value::String(string) => Value::String(string.clone()),
            serde_json::Value::Array(_) => {
                return Err(Error::InvalidValue {
                    reason: format!("field {field:?} of {doc:?}: arrays are not supported"),
                });
            }
        };
        out.push((doc.to_owned(), field.clone(), value));
    }
    Ok(())
}

/// Reads `{"#": key}`, `{"/": cid}` and `{"/": {"bytes": base64}}`.
pub(super) fn json_link(map: &serde_json::Map<String, serde_json::Value>) -> Result<Option<Value>> {
    if map.len() != 1 {
        return Ok(None);
    }
    if let Some(serde_json::Value::String(key)) = map.get("#") {
        crate::entry::validate_doc_key(key)?;
        return Ok(Some(Value::DocLink(key.clone())));
    }
    match map.get("/") {
        Some(serde_json::Value::String(cid)) => Value::blob_link_str(cid).map(Some),
        Some(serde_json::Value::Object(inner)) => match inner.get("bytes") {
            Some(serde_json::Value::String(base64)) if inner.len() == 1 => {
                let bytes =
                    data_encoding::BASE64_NOPAD.decode(base64.as_bytes()).map_err(|error| {
                        Error::InvalidValue { reason: format!("bad base64 bytes: {error}") }
                    })?;
                Ok(Some(Value::Bytes(bytes)))
            }
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}
