//! The redb tables, their key and value layouts, and the schema version with its migrations.
//!
//! Keys that hold a document key and a field name use `doc ++ 0x00 ++ field` (the "item
//! key"). Control characters are refused in both, so `0x00` sorts before every byte of a
//! key and byte order equals `(doc, field)` order.

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction};

use crate::{Error, Result};

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: u64 = 2;

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
    Ok(())
}

/// Migrates a database from schema `version` to the next one, returning the new version.
///
/// Numbered migrations go here as the schema changes, one arm each
/// (`1 => migrate_1_to_2(txn)`), each with a test that opens a committed database of the
/// older version.
fn migrate(_txn: &WriteTransaction, version: u64, path: &std::path::Path) -> Result<u64> {
    match version {
        // Version 2 appends the origin to change-log values; a version-1 value has none and
        // reads as local, so no row needs rewriting. The bump keeps older builds, which
        // would misread the new values, from opening the file.
        1 => Ok(2),
        _ => Err(Error::Corrupted {
            path: path.to_owned(),
            reason: format!("no migration from schema version {version}"),
        }),
    }
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
