//! Public keys and their text form, author keys, signatures and verification.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Length of a public key in its text form: 32 bytes in unpadded base32.
pub const PUBLIC_KEY_TEXT_LEN: usize = 52;

/// An ed25519 public key: an author id, a space id or a node's key.
///
/// Text form (used everywhere: config, CLI, HTTP API, gossip topic names): RFC 4648
/// base32, lowercase alphabet `a-z2-7`, no padding, always 52 characters. Parsing is
/// strict so that every key has exactly one spelling: upper case, padding and non-zero
/// trailing bits are rejected. Serde uses the same text form.
///
/// Construction checks that the bytes are a point on the curve and not of small order
/// (a "weak" key, for which forged signatures exist).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

/// The id of an author: the public key of its signing key.
pub type AuthorId = PublicKey;

/// The id of a space: the public key of its space key.
pub type SpaceId = PublicKey;

impl PublicKey {
    /// Checks and wraps 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| invalid_point(bytes))?;
        if key.is_weak() {
            return Err(invalid_point(bytes));
        }
        Ok(PublicKey(*bytes))
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn from_verifying_key(key: &VerifyingKey) -> Self {
        PublicKey(key.to_bytes())
    }
}

fn invalid_point(bytes: &[u8; 32]) -> Error {
    Error::InvalidPublicKey { hex: bytes.iter().map(|byte| format!("{byte:02x}")).collect() }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidKeyText { value: text.to_owned(), reason };
        if text.len() != PUBLIC_KEY_TEXT_LEN {
            return Err(invalid("wrong length"));
        }
        if !text.bytes().all(|byte| byte.is_ascii_lowercase() || (b'2'..=b'7').contains(&byte)) {
            return Err(invalid("character outside the lowercase base32 alphabet"));
        }
        let decoded = data_encoding::BASE32_NOPAD
            .decode(text.to_ascii_uppercase().as_bytes())
            .map_err(|_| invalid("non-canonical base32 (trailing bits set)"))?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|_| invalid("wrong length"))?;
        PublicKey::from_bytes(&bytes)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature (64 bytes). Serde: 64 bytes (a byte sequence).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Length in bytes.
    pub const LEN: usize = 64;

    /// Wraps 64 bytes (any bytes; validity is checked on verification).
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        Signature(*bytes)
    }

    /// Wraps a slice, which must be 64 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; 64] =
            bytes.try_into().map_err(|_| Error::InvalidSignatureLength { len: bytes.len() })?;
        Ok(Signature(bytes))
    }

    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    fn to_ed25519(self) -> ed25519_zebra::Signature {
        ed25519_zebra::Signature::from_bytes(&self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(")?;
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…)")
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Signature, E> {
                Signature::from_slice(bytes).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Signature, A::Error> {
                let mut bytes = [0u8; 64];
                for (index, slot) in bytes.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(index, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(65, &self));
                }
                Ok(Signature(bytes))
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

/// An author's secret signing key. Zeroized on drop; `Debug` shows only the public key.
///
/// Signs raw bytes: callers pass a canonical encoding that carries its own domain
/// separation (statements in this crate prefix a context string).
#[derive(Clone)]
pub struct AuthorKey {
    signing_key: SigningKey,
}

impl AuthorKey {
    /// A fresh key from the thread-local CSPRNG (seeded by the operating system).
    pub fn generate() -> Self {
        let secret = random_secret();
        Self::from_secret_bytes(&secret)
    }

    /// The key with this 32-byte secret (seed).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        AuthorKey { signing_key: SigningKey::from_bytes(secret) }
    }

    /// The 32-byte secret, wiped when the wrapper is dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing_key.to_bytes())
    }

    /// The public key: this author's id.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_verifying_key(&self.signing_key.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.signing_key.sign(message).to_bytes())
    }
}

impl fmt::Debug for AuthorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorKey").field("public", &self.public()).finish_non_exhaustive()
    }
}

/// A space's secret key. Its public key is the [`SpaceId`]; it always holds `admin`.
#[derive(Clone)]
pub struct SpaceKey {
    pub(crate) key: AuthorKey,
}

impl SpaceKey {
    /// A fresh space key.
    pub fn generate() -> Self {
        SpaceKey { key: AuthorKey::generate() }
    }

    /// The space key with this 32-byte secret.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        SpaceKey { key: AuthorKey::from_secret_bytes(secret) }
    }

    /// The 32-byte secret, wiped when the wrapper is dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.key.secret_bytes()
    }

    /// The space id.
    pub fn id(&self) -> SpaceId {
        self.key.public()
    }
}

impl fmt::Debug for SpaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpaceKey").field("id", &self.id()).finish_non_exhaustive()
    }
}

/// Verifies `signature` over `message` by `public_key`.
///
/// The rules are those of [ZIP 215](https://zips.z.cash/zip-0215): `s` must be canonical,
/// `R` any encoding of a curve point, and the check is the cofactored equation
/// `[8][s]B = [8]R + [8][k]A`. They are the only rules under which a batch check
/// ([`verify_each`], [`verify_batch`]) gives exactly the verdict of single checks for
/// every input, crafted ones included, so every node decides the same about every
/// signature however it checks it. Every signature that RFC 8032's cofactorless check
/// (or ed25519-dalek's stricter `verify_strict`) accepts passes here too. Keys are
/// checked when a [`PublicKey`] is made (on the curve, not of small order).
pub fn verify(public_key: &PublicKey, message: &[u8], signature: &Signature) -> Result<()> {
    let key = ed25519_zebra::VerificationKey::try_from(public_key.0)
        .map_err(|_| Error::BadSignature { public_key: *public_key })?;
    key.verify(&signature.to_ed25519(), message)
        .map_err(|_| Error::BadSignature { public_key: *public_key })
}

/// Verifies many signatures at once; per signature, whether it verifies: the same verdict
/// as [`verify`] gives for each, at a fraction of the cost (one multiscalar
/// multiplication for the whole batch; signatures by the same key share their key's
/// term, which makes a batch of one author's signatures about twice as fast again).
///
/// When the batch equation fails, each signature is checked alone to find the bad ones,
/// so a batch with a bad signature costs a little more than single checks.
pub fn verify_each(
    messages: &[&[u8]],
    public_keys: &[PublicKey],
    signatures: &[Signature],
) -> Result<Vec<bool>> {
    if messages.len() != public_keys.len() || messages.len() != signatures.len() {
        return Err(Error::BatchLengthMismatch {
            messages: messages.len(),
            keys: public_keys.len(),
            signatures: signatures.len(),
        });
    }
    let items: Vec<ed25519_zebra::batch::Item> = messages
        .iter()
        .zip(public_keys)
        .zip(signatures)
        .map(|((message, key), signature)| {
            let key = ed25519_zebra::VerificationKeyBytes::from(key.0);
            ed25519_zebra::batch::Item::from((key, signature.to_ed25519(), *message))
        })
        .collect();
    // A batch of one costs more than its single check and gives the same verdict.
    if items.len() < 2 {
        return Ok(items.into_iter().map(|item| item.verify_single().is_ok()).collect());
    }
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for item in items.iter().cloned() {
        batch.queue(item);
    }
    // The weights must be unpredictable to the signers: fresh from the OS-seeded RNG.
    if batch.verify(rand::rng()).is_ok() {
        return Ok(vec![true; items.len()]);
    }
    Ok(items.into_iter().map(|item| item.verify_single().is_ok()).collect())
}

/// Verifies many signatures at once: `Ok` when every signature verifies, else
/// [`Error::BadSignatureInBatch`] naming the first bad one (see [`verify_each`]).
pub fn verify_batch(
    messages: &[&[u8]],
    public_keys: &[PublicKey],
    signatures: &[Signature],
) -> Result<()> {
    match verify_each(messages, public_keys, signatures)?.iter().position(|ok| !ok) {
        Some(index) => Err(Error::BadSignatureInBatch { index }),
        None => Ok(()),
    }
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes[..]);
    bytes
}

fn random_secret() -> Zeroizing<[u8; 32]> {
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::fill(&mut secret[..]);
    secret
}
