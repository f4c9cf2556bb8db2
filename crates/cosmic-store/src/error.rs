//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong in the store.
///
/// Input problems (a bad key, a bad signature, a denied write) are separate variants from
/// storage problems, and a damaged database ([`Error::Corrupted`]) is kept apart from an I/O
/// failure ([`Error::Io`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A document key or field name is not valid.
    #[error("invalid {what} {key:?}: {reason}")]
    InvalidKey {
        /// `"document key"` or `"field name"`.
        what: &'static str,
        /// The offending key.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A value is not valid (a NaN float, a malformed CID, ...).
    #[error("invalid value: {reason}")]
    InvalidValue {
        /// Why it was refused.
        reason: String,
    },
    /// A value's encoding is larger than [`Options::max_value_size`](crate::Options).
    #[error("value of field {field:?} is {size} bytes, more than the limit of {limit} bytes")]
    ValueTooLarge {
        /// The field the value was written to.
        field: String,
        /// The encoded size of the value.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Bytes that should hold an entry or record could not be decoded.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// An entry's signature does not verify against its author.
    #[error("bad signature on entry {doc:?}/{field:?} by author {author}")]
    BadSignature {
        /// The entry's document.
        doc: String,
        /// The entry's field.
        field: String,
        /// The entry's author.
        author: cosmic_auth::PublicKey,
    },
    /// An entry is stamped too far in the future.
    #[error(
        "entry {doc:?}/{field:?} is stamped {ahead_ms} ms in the future, more than the allowed \
         clock drift of {max_drift_ms} ms"
    )]
    ClockDrift {
        /// The entry's document.
        doc: String,
        /// The entry's field.
        field: String,
        /// How far ahead of the local wall clock the entry is, in milliseconds.
        ahead_ms: u64,
        /// The configured maximum drift, in milliseconds.
        max_drift_ms: u64,
    },
    /// The author may not write to the space.
    #[error("author {author} may not write to space {space}")]
    AccessDenied {
        /// The space written to.
        space: cosmic_auth::PublicKey,
        /// The author of the write.
        author: cosmic_auth::PublicKey,
        /// Why it was denied.
        #[source]
        reason: Box<cosmic_auth::AccessDenied>,
    },
    /// The author holds its quota of bytes in an open space already (see
    /// [`Options::author_quota`](crate::Options)).
    #[error(
        "author {author} holds {used} bytes of entries in space {space}, and this write \
         would take it over its quota of {limit} bytes"
    )]
    QuotaExceeded {
        /// The open space.
        space: cosmic_auth::PublicKey,
        /// The author.
        author: cosmic_auth::PublicKey,
        /// The bytes of its winning entries there before the write.
        used: u64,
        /// The quota.
        limit: u64,
    },
    /// A capability statement's signature does not verify.
    #[error("bad capability statement for space {space}")]
    BadStatement {
        /// The statement's space.
        space: cosmic_auth::PublicKey,
        /// Why it was refused.
        #[source]
        source: Box<cosmic_auth::Error>,
    },
    /// A capability statement whose issuer may not issue it: neither the space key nor an
    /// admin of the space at the statement's time, among the statements held. It would
    /// grant nothing, so it is not kept (nor forwarded).
    #[error("issuer {issuer} may not issue capability statements in space {space}")]
    UnauthorizedStatement {
        /// The statement's space.
        space: cosmic_auth::PublicKey,
        /// The statement's issuer.
        issuer: cosmic_auth::PublicKey,
        /// Why its issuer holds no right to issue it.
        #[source]
        reason: Box<cosmic_auth::AccessDenied>,
    },
    /// The space is not known to this store.
    #[error("unknown space {space}")]
    UnknownSpace {
        /// The space.
        space: cosmic_auth::PublicKey,
    },
    /// The file at the database path is damaged or is not a store of ours.
    #[error(
        "database {path} is corrupted or not a cosmic-store database: {reason}; move the file \
         aside (or restore it from a backup) and open again"
    )]
    Corrupted {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The database was written by a newer version of this crate.
    #[error("database {path} has schema version {found}, newer than the supported {supported}")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The newest version this build understands.
        supported: u64,
    },
    /// Another process (or another [`Store`](crate::Store) in this process) has the file open.
    #[error("database {path} is already open")]
    AlreadyOpen {
        /// The database file.
        path: PathBuf,
    },
    /// Reading or writing the database failed (a full disk, a failing device, ...).
    #[error("i/o error on database {path}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: redb::Error,
    },
    /// A background task (a subscription) failed to run.
    #[error("store task failed: {reason}")]
    Task {
        /// What went wrong.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Maps any redb error on the database at `path` to [`Error::Corrupted`], [`Error::Io`]
    /// or [`Error::AlreadyOpen`].
    pub(crate) fn redb(path: &std::path::Path, error: impl Into<redb::Error>) -> Error {
        let error: redb::Error = error.into();
        match error {
            redb::Error::Corrupted(reason) => Error::Corrupted { path: path.to_owned(), reason },
            redb::Error::DatabaseAlreadyOpen => Error::AlreadyOpen { path: path.to_owned() },
            redb::Error::UpgradeRequired(version) => Error::Corrupted {
                path: path.to_owned(),
                reason: format!("unsupported redb file format {version}"),
            },
            redb::Error::TableTypeMismatch { .. } | redb::Error::TableIsMultimap(_) => {
                Error::Corrupted { path: path.to_owned(), reason: error.to_string() }
            }
            // redb reports a file that is not a database (bad magic number, bad header) as
            // invalid data.
            // A file shorter than its own header says is damaged too.
            redb::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                Error::Corrupted { path: path.to_owned(), reason: io.to_string() }
            }
            source => Error::Io { path: path.to_owned(), source },
        }
    }

    /// Whether this is a write refused because the disk (or the user's quota) is full:
    /// the caller may retry once space is freed; the store reopens its file by itself.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source: redb::Error::Io(io), .. } => matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::FileTooLarge
            ),
            _ => false,
        }
    }

    pub(crate) fn decode(what: &'static str, reason: impl Into<String>) -> Error {
        Error::Decode { what, reason: reason.into() }
    }
}
