//! The node key: one ed25519 secret that is the node's libp2p identity and iroh endpoint id.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::fs::{Existing, write_atomic};
use crate::keys::AuthorKey;
use crate::{Error, PublicKey, Result};

/// First line of a node key file.
pub const NODE_KEY_FILE_HEADER: &str = "cosmic-node-key v1";

/// The node's own key pair.
///
/// The same 32-byte secret gives the libp2p [`PeerId`](libp2p_identity::PeerId) (through
/// [`NodeKey::to_libp2p_keypair`]) and the iroh endpoint id (pass
/// [`NodeKey::secret_bytes`] to `iroh::SecretKey::from_bytes`); both carry
/// [`NodeKey::public`].
///
/// File format (text, mode 0600): the line `cosmic-node-key v1`, then the 32-byte secret
/// in the crate's key text form (52 lowercase base32 characters), then a newline.
#[derive(Clone)]
pub struct NodeKey {
    key: AuthorKey,
}

impl NodeKey {
    /// A fresh node key.
    pub fn generate() -> Self {
        NodeKey { key: AuthorKey::generate() }
    }

    /// The node key with this secret.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        let secret = Zeroizing::new(secret);
        NodeKey { key: AuthorKey::from_secret_bytes(&secret) }
    }

    /// Generates a key and writes it to a new file at `path` (mode 0600, written
    /// atomically). Fails with [`Error::KeyFileExists`] when the file exists.
    pub fn create_file(path: impl AsRef<Path>) -> Result<Self> {
        let key = Self::generate();
        key.write_file(path.as_ref())?;
        Ok(key)
    }

    /// Writes this key to a new file at `path`; fails when the file exists.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let secret = self.secret_bytes();
        let encoded = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&secret[..]));
        let text =
            Zeroizing::new(format!("{NODE_KEY_FILE_HEADER}\n{}\n", encoded.to_ascii_lowercase()));
        write_atomic(path.as_ref(), text.as_bytes(), Existing::Fail)
    }

    /// Reads a node key file written by [`NodeKey::create_file`].
    pub fn load_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let invalid = |reason| Error::InvalidNodeKeyFile { path: path.to_owned(), reason };
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|error| Error::io(path, error))?);
        if bytes.len() > 256 {
            return Err(invalid("file too large for a node key"));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not utf-8 text"))?;
        let mut lines = text.lines();
        let header = lines.next().ok_or_else(|| invalid("empty file"))?;
        if header != NODE_KEY_FILE_HEADER {
            if header.starts_with("cosmic-node-key ") {
                return Err(invalid("unsupported version, expected `cosmic-node-key v1`"));
            }
            return Err(invalid("missing header line `cosmic-node-key v1`"));
        }
        let encoded = lines.next().ok_or_else(|| invalid("truncated: no secret line"))?.trim();
        if lines.any(|line| !line.trim().is_empty()) {
            return Err(invalid("unexpected content after the secret"));
        }
        if encoded.len() != crate::keys::PUBLIC_KEY_TEXT_LEN
            || !encoded
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || (b'2'..=b'7').contains(&byte))
        {
            return Err(invalid("secret is not 52 lowercase base32 characters"));
        }
        let decoded = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(encoded.to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid("secret is not canonical base32"))?,
        );
        let mut secret = Zeroizing::new([0u8; 32]);
        if decoded.len() != 32 {
            return Err(invalid("secret is not 32 bytes"));
        }
        secret.copy_from_slice(&decoded);
        Ok(NodeKey { key: AuthorKey::from_secret_bytes(&secret) })
    }

    /// The public key (the node id).
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// The libp2p peer id of this key.
    pub fn peer_id(&self) -> libp2p_identity::PeerId {
        self.to_libp2p_keypair().public().to_peer_id()
    }

    /// The same key as a libp2p key pair.
    pub fn to_libp2p_keypair(&self) -> libp2p_identity::Keypair {
        // `ed25519_from_bytes` wipes the buffer it is given; this one is a copy anyway.
        let mut secret = self.secret_bytes();
        libp2p_identity::Keypair::ed25519_from_bytes(&mut secret[..])
            .expect("any 32 bytes are a valid ed25519 secret key")
    }

    /// The 32-byte secret, wiped when dropped (for iroh's `SecretKey::from_bytes`).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.key.secret_bytes()
    }

    /// Signs `message` with the node key.
    pub fn sign(&self, message: &[u8]) -> crate::Signature {
        self.key.sign(message)
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey").field("public", &self.public()).finish_non_exhaustive()
    }
}
