//! The crate's error type.

use std::path::PathBuf;

use crate::capability::DecodeError;

/// Errors from keys, key files, the keystore and signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A public key in text form could not be parsed.
    #[error(
        "invalid public key {value:?}: {reason}; expected 52 lowercase base32 characters \
         (rfc 4648 alphabet a-z2-7, no padding)"
    )]
    InvalidKeyText {
        /// The text that was given (public, so safe to show).
        value: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// 32 bytes that are not a usable ed25519 public key (off the curve or of small order).
    #[error("invalid public key bytes {hex}: not a usable ed25519 point")]
    InvalidPublicKey {
        /// The bytes in hex.
        hex: String,
    },
    /// A signature did not verify.
    #[error("signature does not verify for public key {public_key}")]
    BadSignature {
        /// The key the signature was checked against.
        public_key: crate::PublicKey,
    },
    /// A batch of signatures did not verify; `index` is the first bad one.
    #[error("signature {index} of the batch does not verify")]
    BadSignatureInBatch {
        /// Index of the first failing signature.
        index: usize,
    },
    /// The slices handed to a batch verification have different lengths.
    #[error(
        "batch verification needs one key and one signature per message ({messages} messages, {keys} keys, {signatures} signatures)"
    )]
    BatchLengthMismatch {
        /// Number of messages.
        messages: usize,
        /// Number of public keys.
        keys: usize,
        /// Number of signatures.
        signatures: usize,
    },
    /// A signature was not 64 bytes long.
    #[error("invalid signature length {len}, expected 64 bytes")]
    InvalidSignatureLength {
        /// The length given.
        len: usize,
    },
    /// Reading or writing a file failed.
    #[error("i/o error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file to be created exists already.
    #[error("key file {path} already exists")]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
    /// A node key file is not a valid node key file.
    #[error("invalid node key file {path}: {reason}")]
    InvalidNodeKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An alias that is not allowed as an identity name.
    #[error(
        "invalid identity alias {alias:?}: expected 1 to 64 characters of a-z, 0-9, '-', '_' \
         or '.', not starting with '.'"
    )]
    InvalidAlias {
        /// The alias given.
        alias: String,
    },
    /// No identity with this alias in the keystore.
    #[error("no identity named {alias:?} in the keystore")]
    IdentityNotFound {
        /// The alias.
        alias: String,
    },
    /// An identity with this alias exists already.
    #[error("an identity named {alias:?} already exists in the keystore")]
    IdentityExists {
        /// The alias.
        alias: String,
    },
    /// The passphrase does not open this identity.
    #[error("wrong passphrase for identity {alias:?}")]
    WrongPassphrase {
        /// The alias.
        alias: String,
    },
    /// An encrypted identity (file or export) is truncated, tampered with or not ours.
    #[error("corrupt encrypted identity {what}: {reason}")]
    CorruptIdentity {
        /// The alias or path.
        what: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An encrypted identity of a format version this build does not read.
    #[error("encrypted identity {what} has unsupported format version {version}, expected 1")]
    UnsupportedIdentityVersion {
        /// The alias or path.
        what: String,
        /// The version found.
        version: u8,
    },
    /// Argon2 parameters out of the accepted range.
    #[error(
        "invalid argon2 parameters m_cost={m_cost} KiB t_cost={t_cost} p_cost={p_cost}: {reason}"
    )]
    InvalidKdfParams {
        /// Memory in KiB.
        m_cost: u32,
        /// Iterations.
        t_cost: u32,
        /// Parallelism.
        p_cost: u32,
        /// Why they are rejected.
        reason: String,
    },
    /// A sealed revocation would keep more items than it may.
    #[error("a sealed revocation can keep at most {max} items, {count} were given")]
    TooManyKept {
        /// Distinct items given.
        count: usize,
        /// The limit, `MAX_KEPT`.
        max: usize,
    },
    /// A statement was signed with a key other than its issuer's.
    #[error("statement issuer {issuer} is not the signing key {signer}")]
    IssuerMismatch {
        /// The issuer named in the statement.
        issuer: crate::PublicKey,
        /// The key that was asked to sign.
        signer: crate::PublicKey,
    },
    /// Malformed statement bytes.
    #[error("malformed statement")]
    Decode(#[from] DecodeError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
