//! The redb tables, their key and value layouts, and the schema version with its migrations.
//!
//! Keys that hold a document key and a field name use `doc ++ 0x00 ++ field` (the "item
//! key"). Control characters are refused in both, so `0x00` sorts before every byte of a
//! key and byte order equals `(doc, field)` order.

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction};

use crate::{Error, Result};

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: u64 = 3;

/// Table: store-wide metadata.
/// Key: a name: `"schema_version"` (u64 BE), `"hlc"` (the clock, 12 bytes, see `Hlc::to_bytes`),
/// `"last_seq"` (the last change sequence number issued, u64 BE).
/// Value: bytes, by name.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta-1");

/// Table: the spaces this store holds.
/// Key: the space id (32 bytes).
/// Value: the space record (`SpaceRecord::encode`: mode and version signed by the space key),
/// then the stats: u64 BE number of fields (winning entries), u64 BE number of documents.
pub(crate) const SPACES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("spaces-1");

/// Table: capability statements (grants, revocations) of each space; they sync like data.
/// Key: space id (32) ++ BLAKE3 of the signed statement's bytes (32).
/// Value: `cosmic_auth::SignedStatement::to_bytes`.
pub(crate) const STATEMENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("statements-1");

/// Table: the winning entry of every field.
/// Key: space id (32) ++ doc ++ 0x00 ++ field.
/// Value: the entry hash (32) ++ the change seq that made it win (u64 BE) ++ `Entry::encode`.
pub(crate) const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries-1");

/// Table: the documents of every space.
/// Key: space id (32) ++ doc.
/// Value: number of fields (tombstones included).
pub(crate) const DOCS: TableDefinition<&[u8], u64> = TableDefinition::new("docs-1");

/// Table: the change log.
/// Key: space id (32) ++ seq (u64 BE).
/// Value: the item key (doc ++ 0x00 ++ field) of the field that changed, then (since schema
/// version 2) its origin: 0xFF ++ (0x00 local | 0x01 ++ peer id text). 0xFF never occurs in
/// UTF-8, so a version-1 value (no origin: local) reads unchanged. The entry that won
/// with this seq is in `entries-1` unless a later change superseded it (then this row is gone).
pub(crate) const CHANGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("changes-1");

/// Table: range-fingerprint aggregates (see `recon`).
/// Key: space id (32) ++ level (u8, 1..=3) ++ the item key that starts the bucket.
/// Value: the bucket's fingerprint: hash sum (32, little-endian mod 2^256) ++ count (u64 BE).
pub(crate) const BUCKETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("buckets-1");

/// Table: which spaces link which blobs, for deciding who may fetch a blob.
/// Key: BLAKE3 of the blob link's CID bytes (32) ++ space id (32).
/// Value: how many winning entries of the space link the blob (u64, never 0: the row goes).
/// Added in schema version 3.
pub(crate) const BLOB_LINKS: TableDefinition<&[u8], u64> = TableDefinition::new("blob-links-1");

/// Table: the bytes each author's winning entries take in each space (the encoded entries),
/// for the per-author quota of open spaces.
/// Key: space id (32) ++ author (32).
/// Value: bytes (u64, never 0: the row goes). Added in schema version 3.
pub(crate) const AUTHOR_BYTES: TableDefinition<&[u8], u64> = TableDefinition::new("author-bytes-1");

/// The key of [`BLOB_LINKS`] for a blob link's CID bytes in a space.
pub(crate) fn blob_link_key(cid: &[u8], space: &[u8; 32]) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(blake3::hash(cid).as_bytes());
    key[32..].copy_from_slice(space);
    key
}

/// The key of [`AUTHOR_BYTES`].
pub(crate) fn author_bytes_key(space: &[u8; 32], author: &[u8; 32]) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(space);
    key[32..].copy_from_slice(author);
    key
}

/// Adds `delta` (+1 or -1) to the count of the blob link `cid` in `space`, removing a row
/// that falls to zero.
pub(crate) fn count_blob_link(
    table: &mut redb::Table<'_, &'static [u8], u64>,
    cid: &[u8],
    space: &[u8; 32],
    delta: i64,
) -> std::result::Result<(), redb::StorageError> {
    let key = blob_link_key(cid, space);
    let before = table.get(key.as_slice())?.map_or(0, |count| count.value());
    let after = before.saturating_add_signed(delta);
    if after == 0 {
        table.remove(key.as_slice())?;
    } else {
        table.insert(key.as_slice(), after)?;
    }
    Ok(())
}

/// Creates the tables of a new database, or checks and migrates an existing one.
pub(crate) fn init(txn: &WriteTransaction, path: &std::path::Path) -> Result<()> {
    let mut meta = txn.open_table(META).map_err(|error| Error::redb(path, error))?;
    let found = match meta.get("schema_version").map_err(|error| Error::redb(path, error))? {
        None => None,
        Some(bytes) => {
            let bytes: [u8; 8] = bytes.value().try_into().map_err(|_| Error::Corrupted {
                path: path.to_owned(),
                reason: "schema version record is not 8 bytes".into(),
            })?;
            Some(u64::from_be_bytes(bytes))
        }
    };
    match found {
        None => {
            // A new database: nothing to migrate.
            meta.insert("schema_version", SCHEMA_VERSION.to_be_bytes().as_slice())
                .map_err(|error| Error::redb(path, error))?;
        }
        Some(found) if found > SCHEMA_VERSION => {
            return Err(Error::SchemaTooNew {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Some(found) => {
            let mut version = found;
            while version < SCHEMA_VERSION {
                version = migrate(txn, version, path)?;
            }
            meta.insert("schema_version", SCHEMA_VERSION.to_be_bytes().as_slice())
                .map_err(|error| Error::redb(path, error))?;
        }
    }
    drop(meta);
    // Create every table so that readers never meet a missing one.
    txn.open_table(SPACES).map_err(|error| Error::redb(path, error))?;
    txn.open_table(STATEMENTS).map_err(|error| Error::redb(path, error))?;
    txn.open_table(ENTRIES).map_err(|error| Error::redb(path, error))?;
    txn.open_table(DOCS).map_err(|error| Error::redb(path, error))?;
    txn.open_table(CHANGES).map_err(|error| Error::redb(path, error))?;
    txn.open_table(BUCKETS).map_err(|error| Error::redb(path, error))?;
    txn.open_table(BLOB_LINKS).map_err(|error| Error::redb(path, error))?;
    txn.open_table(AUTHOR_BYTES).map_err(|error| Error::redb(path, error))?;
    Ok(())
}

/// Migrates a database from schema `version` to the next one, returning the new version.
///
/// Numbered migrations go here as the schema changes, one arm each
/// (`1 => migrate_1_to_2(txn)`), each with a test that opens a committed database of the
/// older version.
fn migrate(txn: &WriteTransaction, version: u64, path: &std::path::Path) -> Result<u64> {
    match version {
        // Version 2 appends the origin to change-log values; a version-1 value has none and
        // reads as local, so no row needs rewriting. The bump keeps older builds, which
        // would misread the new values, from opening the file.
        1 => Ok(2),
        // Version 3 adds the blob-link index and the bytes per author, built here from the
        // winning entries (older builds would not keep them up to date, hence the bump).
        2 => {
            build_indexes(txn, path)?;
            Ok(3)
        }
        _ => Err(Error::Corrupted {
            path: path.to_owned(),
            reason: format!("no migration from schema version {version}"),
        }),
    }
}

/// Fills [`BLOB_LINKS`] and [`AUTHOR_BYTES`] from the winning entries of every space.
fn build_indexes(txn: &WriteTransaction, path: &std::path::Path) -> Result<()> {
    let entries = txn.open_table(ENTRIES).map_err(|error| Error::redb(path, error))?;
    let mut links = txn.open_table(BLOB_LINKS).map_err(|error| Error::redb(path, error))?;
    let mut bytes = std::collections::BTreeMap::<[u8; 64], u64>::new();
    for row in entries.iter().map_err(|error| Error::redb(path, error))? {
        let (key, value) = row.map_err(|error| Error::redb(path, error))?;
        let row = value.value();
        let entry = row.get(40..).and_then(|body| crate::Entry::decode(body).ok());
        let Some(entry) = entry else {
            return Err(Error::Corrupted {
                path: path.to_owned(),
                reason: "an entry row does not decode".into(),
            });
        };
        let mut space = [0u8; 32];
        space.copy_from_slice(&key.value()[..32]);
        let used = bytes.entry(author_bytes_key(&space, entry.author.as_bytes())).or_default();
        *used += (row.len() - 40) as u64;
        if let crate::Value::BlobLink(cid) = &entry.value {
            count_blob_link(&mut links, cid, &space, 1)
                .map_err(|error| Error::redb(path, error))?;
        }
    }
    let mut table = txn.open_table(AUTHOR_BYTES).map_err(|error| Error::redb(path, error))?;
    for (key, used) in bytes {
        table.insert(key.as_slice(), used).map_err(|error| Error::redb(path, error))?;
    }
    Ok(())
}

/// Reads a metadata record of a fixed size, if present.
pub(crate) fn read_meta<const N: usize>(
    db: &redb::Database,
    path: &std::path::Path,
    name: &str,
) -> Result<Option<[u8; N]>> {
    let txn = db.begin_read().map_err(|error| Error::redb(path, error))?;
    let meta = txn.open_table(META).map_err(|error| Error::redb(path, error))?;
    let Some(bytes) = meta.get(name).map_err(|error| Error::redb(path, error))? else {
        return Ok(None);
    };
    let array = bytes.value().try_into().map_err(|_| Error::Corrupted {
        path: path.to_owned(),
        reason: format!("metadata record {name:?} is not {N} bytes"),
    })?;
    Ok(Some(array))
}

/// `space ++ doc ++ 0x00 ++ field`.
pub(crate) fn entry_key(space: &[u8; 32], doc: &str, field: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(32 + doc.len() + 1 + field.len());
    key.extend_from_slice(space);
    key.extend_from_slice(&item_key(doc, field));
    key
}

/// `doc ++ 0x00 ++ field`.
pub(crate) fn item_key(doc: &str, field: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(doc.len() + 1 + field.len());
    key.extend_from_slice(doc.as_bytes());
    key.push(0);
    key.extend_from_slice(field.as_bytes());
    key
}

/// The smallest key after every key that starts with `prefix`, or `None` if there is none.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
