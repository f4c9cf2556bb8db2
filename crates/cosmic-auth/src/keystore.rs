//! The author keystore: named identities, each secret encrypted under a passphrase.

use std::fmt;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use zeroize::Zeroizing;

use crate::fs::{Existing, write_atomic};
use crate::keys::{AuthorKey, random_bytes};
use crate::{Error, PublicKey, Result};

/// Magic bytes opening an encrypted identity.
const MAGIC: &[u8; 8] = b"COSMICID";
/// Current format version.
const VERSION: u8 = 1;
/// KDF identifier: Argon2id, version 0x13.
const KDF_ARGON2ID_13: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes covered by the AEAD as associated data: everything before the ciphertext.
const HEADER_LEN: usize = 8 + 1 + 1 + 12 + SALT_LEN + NONCE_LEN + 32;
/// Total length of an encrypted identity.
const ENCRYPTED_LEN: usize = HEADER_LEN + 32 + TAG_LEN;
/// File name extension of identities in the keystore directory.
const EXTENSION: &str = "identity";

/// Argon2id cost parameters used when encrypting (decryption reads them from the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl KdfParams {
    /// The largest memory cost accepted from a file: 1 GiB.
    pub const MAX_M_COST: u32 = 1024 * 1024;
    /// The largest iteration count accepted from a file.
    pub const MAX_T_COST: u32 = 64;
    /// The largest parallelism accepted from a file.
    pub const MAX_P_COST: u32 = 16;

    /// Fast, weak parameters for tests only (m = 64 KiB, t = 1).
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams { m_cost: 64, t_cost: 1, p_cost: 1 };

    fn argon2(&self) -> Result<Argon2<'static>> {
        let invalid = |reason: String| Error::InvalidKdfParams {
            m_cost: self.m_cost,
            t_cost: self.t_cost,
            p_cost: self.p_cost,
            reason,
        };
        if self.m_cost > Self::MAX_M_COST
            || self.t_cost > Self::MAX_T_COST
            || self.p_cost > Self::MAX_P_COST
        {
            return Err(invalid(format!(
                "above the limits m_cost={} t_cost={} p_cost={}",
                Self::MAX_M_COST,
                Self::MAX_T_COST,
                Self::MAX_P_COST
            )));
        }
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|error| invalid(error.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for KdfParams {
    /// m = 64 MiB, t = 3, p = 1.
    fn default() -> Self {
        KdfParams { m_cost: 64 * 1024, t_cost: 3, p_cost: 1 }
    }
}

/// A directory of named author identities, each in its own file `<alias>.identity`.
///
/// Encrypted identity format, version 1 (a file's bytes, and the export form), 142 bytes:
///
/// | bytes | content |
/// |---|---|
/// | 8 | magic `COSMICID` |
/// | 1 | version, `1` |
/// | 1 | KDF, `1` = Argon2id v0x13 |
/// | 12 | m_cost (KiB), t_cost, p_cost: u32 little-endian each |
/// | 16 | salt |
/// | 24 | XChaCha20-Poly1305 nonce |
/// | 32 | public key |
/// | 48 | the encrypted 32-byte secret and the 16-byte tag |
///
/// The key is Argon2id(passphrase, salt) with the stored parameters; everything before
/// the ciphertext is authenticated as associated data, so a changed parameter or public
/// key fails like a wrong passphrase would. After decryption the secret must yield the
/// stored public key. A fresh salt and nonce are drawn on every encryption.
pub struct Keystore {
    dir: PathBuf,
    params: KdfParams,
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore").field("dir", &self.dir).field("params", &self.params).finish()
    }
}

/// One entry of [`Keystore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityInfo {
    /// The alias.
    pub alias: String,
    /// The identity's public key (readable without the passphrase).
    pub public: PublicKey,
}

/// What [`Keystore::list`] found: the readable identities, and the files that look like
/// identities but cannot be read as one (each with the reason), so that one damaged file
/// does not hide the others.
#[derive(Debug, Default)]
pub struct Listing {
    /// The readable identities, sorted by alias.
    pub identities: Vec<IdentityInfo>,
    /// The damaged or unreadable identity files, sorted by path, with why.
    pub damaged: Vec<Error>,
}

impl Keystore {
    /// Opens (creating it if needed) the keystore directory `dir`, with the default
    /// (strong) Argon2 parameters for new encryptions.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_params(dir, KdfParams::default())
    }

    /// Opens `dir` with the given Argon2 parameters for new encryptions.
    pub fn open_with_params(dir: impl AsRef<Path>, params: KdfParams) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        params.argon2()?;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir).map_err(|error| Error::io(&dir, error))?;
        Ok(Keystore { dir, params })
    }

    /// The keystore directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Generates a new identity named `alias`, encrypted under `passphrase`.
    pub fn create(&self, alias: &str, passphrase: &str) -> Result<AuthorKey> {
        let key = AuthorKey::generate();
        self.insert(alias, &key, passphrase)?;
        Ok(key)
    }

    /// Stores an existing key under `alias`, encrypted under `passphrase`.
    pub fn insert(&self, alias: &str, key: &AuthorKey, passphrase: &str) -> Result<()> {
        let path = self.path(alias)?;
        let bytes = encrypt(key, passphrase, self.params)?;
        write_atomic(&path, &bytes, Existing::Fail).map_err(|error| match error {
            Error::KeyFileExists { .. } => Error::IdentityExists { alias: alias.to_owned() },
            other => other,
        })
    }

    /// The identities in the keystore, sorted by alias, and apart from them the identity
    /// files that cannot be read or are not valid encrypted identities. Only a keystore
    /// directory that cannot be read is an error.
    pub fn list(&self) -> Result<Listing> {
        let entries = std::fs::read_dir(&self.dir).map_err(|error| Error::io(&self.dir, error))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| Error::io(&self.dir, error))?;
            let path = entry.path();
            if let Some(alias) = alias_of(&path) {
                found.push((path, alias));
            }
        }
        found.sort();
        let mut listing = Listing::default();
        for (path, alias) in found {
            let read = std::fs::read(&path).map_err(|error| Error::io(&path, error));
            let public = read.and_then(|bytes| {
                Encrypted::parse(&bytes, &path.display().to_string()).map(|parsed| parsed.public)
            });
            match public {
                Ok(public) => listing.identities.push(IdentityInfo { alias, public }),
                Err(error) => listing.damaged.push(error),
            }
        }
        listing.identities.sort_by(|left, right| left.alias.cmp(&right.alias));
        Ok(listing)
    }

    /// Decrypts the identity `alias`.
    pub fn unlock(&self, alias: &str, passphrase: &str) -> Result<AuthorKey> {
        let bytes = self.read(alias)?;
        decrypt(&bytes, passphrase, alias)
    }

    /// Re-encrypts `alias` under `new_passphrase` (with a fresh salt and nonce and the
    /// keystore's current parameters), replacing the file atomically.
    pub fn change_passphrase(&self, alias: &str, old: &str, new_passphrase: &str) -> Result<()> {
        let key = self.unlock(alias, old)?;
        let bytes = encrypt(&key, new_passphrase, self.params)?;
        write_atomic(&self.path(alias)?, &bytes, Existing::Replace)
    }

    /// The encrypted form of `alias`, for backup or moving to another node.
    pub fn export(&self, alias: &str) -> Result<Vec<u8>> {
        self.read(alias)
    }

    /// Stores an encrypted identity (from [`Keystore::export`]) under `alias`, after
    /// checking its structure. Returns its public key. The passphrase stays the one it
    /// was exported with.
    pub fn import(&self, alias: &str, bytes: &[u8]) -> Result<PublicKey> {
        let path = self.path(alias)?;
        let public = Encrypted::parse(bytes, alias)?.public;
        write_atomic(&path, bytes, Existing::Fail).map_err(|error| match error {
            Error::KeyFileExists { .. } => Error::IdentityExists { alias: alias.to_owned() },
            other => other,
        })?;
        Ok(public)
    }

    /// Removes the identity `alias`.
    pub fn delete(&self, alias: &str) -> Result<()> {
        let path = self.path(alias)?;
        std::fs::remove_file(&path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                Error::IdentityNotFound { alias: alias.to_owned() }
            } else {
                Error::io(&path, error)
            }
        })
    }

    fn read(&self, alias: &str) -> Result<Vec<u8>> {
        let path = self.path(alias)?;
        std::fs::read(&path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                Error::IdentityNotFound { alias: alias.to_owned() }
            } else {
                Error::io(&path, error)
            }
        })
    }

    fn path(&self, alias: &str) -> Result<PathBuf> {
        validate_alias(alias)?;
        Ok(self.dir.join(format!("{alias}.{EXTENSION}")))
    }
}

fn alias_of(path: &Path) -> Option<String> {
    if path.extension()? != EXTENSION {
        return None;
    }
    let alias = path.file_stem()?.to_str()?;
    validate_alias(alias).ok()?;
    Some(alias.to_owned())
}

fn validate_alias(alias: &str) -> Result<()> {
    let valid = !alias.is_empty()
        && alias.len() <= 64
        && !alias.starts_with('.')
        && alias.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'-' | b'_' | b'.')
        });
    if valid { Ok(()) } else { Err(Error::InvalidAlias { alias: alias.to_owned() }) }
}

/// A parsed, not yet decrypted identity.
struct Encrypted<'a> {
    params: KdfParams,
    salt: &'a [u8],
    nonce: &'a [u8],
    public: PublicKey,
    header: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> Encrypted<'a> {
    fn parse(bytes: &'a [u8], what: &str) -> Result<Self> {
        let corrupt = |reason| Error::CorruptIdentity { what: what.to_owned(), reason };
        if bytes.len() < MAGIC.len() + 1 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not an encrypted cosmic identity (bad magic bytes)"));
        }
        let version = bytes[MAGIC.len()];
        if version != VERSION {
            return Err(Error::UnsupportedIdentityVersion { what: what.to_owned(), version });
        }
        if bytes.len() < ENCRYPTED_LEN {
            return Err(corrupt("truncated"));
        }
        if bytes.len() > ENCRYPTED_LEN {
            return Err(corrupt("unexpected bytes after the ciphertext"));
        }
        let (header, ciphertext) = bytes.split_at(HEADER_LEN);
        if header[9] != KDF_ARGON2ID_13 {
            return Err(corrupt("unknown key derivation function"));
        }
        let u32_at = |offset: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&header[offset..offset + 4]);
            u32::from_le_bytes(word)
        };
        let params = KdfParams { m_cost: u32_at(10), t_cost: u32_at(14), p_cost: u32_at(18) };
        let salt = &header[22..22 + SALT_LEN];
        let nonce = &header[22 + SALT_LEN..22 + SALT_LEN + NONCE_LEN];
        let mut public = [0u8; 32];
        public.copy_from_slice(&header[HEADER_LEN - 32..]);
        let public = PublicKey::from_bytes(&public).map_err(|_| corrupt("invalid public key"))?;
        Ok(Encrypted { params, salt, nonce, public, header, ciphertext })
    }
}

/// Reads an encrypted identity's structure (untrusted bytes) up to the key derivation:
/// its KDF parameters, checked against the limits, and its public key.
///
/// Public (hidden) only so the fuzz targets can reach the parser without running a
/// full-cost Argon2id on every input.
#[doc(hidden)]
pub fn read_identity_header(bytes: &[u8]) -> Result<(KdfParams, PublicKey)> {
    let encrypted = Encrypted::parse(bytes, "identity")?;
    encrypted.params.argon2()?;
    Ok((encrypted.params, encrypted.public))
}

/// Decrypts an encrypted identity (untrusted bytes) with `passphrase`, as
/// [`Keystore::unlock`] does with a file's bytes.
///
/// Public (hidden) only so the fuzz targets can reach it.
#[doc(hidden)]
pub fn decrypt_identity(bytes: &[u8], passphrase: &str) -> Result<AuthorKey> {
    decrypt(bytes, passphrase, "identity")
}

fn derive_key(passphrase: &str, salt: &[u8], params: KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    params.argon2()?.hash_password_into(passphrase.as_bytes(), salt, &mut key[..]).map_err(
        |error| Error::InvalidKdfParams {
            m_cost: params.m_cost,
            t_cost: params.t_cost,
            p_cost: params.p_cost,
            reason: error.to_string(),
        },
    )?;
    Ok(key)
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key).into())
}

pub(crate) fn encrypt(key: &AuthorKey, passphrase: &str, params: KdfParams) -> Result<Vec<u8>> {
    let salt: [u8; SALT_LEN] = random_bytes();
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let mut bytes = Vec::with_capacity(ENCRYPTED_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.push(VERSION);
    bytes.push(KDF_ARGON2ID_13);
    for word in [params.m_cost, params.t_cost, params.p_cost] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(&salt);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(key.public().as_bytes());
    let derived = derive_key(passphrase, &salt, params)?;
    let secret = key.secret_bytes();
    let ciphertext = cipher(&derived)
        .encrypt(&nonce.into(), Payload { msg: &secret[..], aad: &bytes })
        .map_err(|_| Error::CorruptIdentity {
            what: "new identity".into(),
            reason: "encryption failed",
        })?;
    bytes.extend_from_slice(&ciphertext);
    Ok(bytes)
}

pub(crate) fn decrypt(bytes: &[u8], passphrase: &str, what: &str) -> Result<AuthorKey> {
    let encrypted = Encrypted::parse(bytes, what)?;
    let derived = derive_key(passphrase, encrypted.salt, encrypted.params)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(encrypted.nonce);
    // A wrong passphrase and a tampered file are indistinguishable to an AEAD; the
    // structure was checked above, so the likely cause is the passphrase.
    let secret = Zeroizing::new(
        cipher(&derived)
            .decrypt(&nonce.into(), Payload { msg: encrypted.ciphertext, aad: encrypted.header })
            .map_err(|_| Error::WrongPassphrase { alias: what.to_owned() })?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    if secret.len() != 32 {
        return Err(Error::CorruptIdentity {
            what: what.to_owned(),
            reason: "wrong secret length",
        });
    }
    seed.copy_from_slice(&secret);
    let key = AuthorKey::from_secret_bytes(&seed);
    if key.public() != encrypted.public {
        return Err(Error::CorruptIdentity {
            what: what.to_owned(),
            reason: "secret does not match the stored public key",
        });
    }
    Ok(key)
}
