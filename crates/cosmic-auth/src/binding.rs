//! Peer bindings: "author X speaks for peer P until T", signed by X.
//!
//! A node reads a restricted space only if it holds a read right there, and rights are
//! granted to authors, while the network sees peers (node keys). A binding joins the two:
//! the author signs that a given node key acts for it until a given time. A peer presents
//! its bindings when it connects; a node that serves a restricted space checks that the
//! requesting peer is bound to an author holding `read`, `write` or `admin` there.
//!
//! The binding names the node key itself (not a name or an address), so it is useless to
//! any other node: a peer that copies someone else's binding cannot present it on its own
//! connections, since the transport authenticates the node key. It expires, so a leaked
//! node key stops speaking for the author at `not_after` at the latest; revoking the
//! author's rights in the space takes effect at once for every node bound to it.
//!
//! Encoding, version 1 (integers big-endian):
//!
//! ```text
//! version    u8 = 1
//! author     32 bytes   the author's public key (who signs)
//! peer       32 bytes   the node's ed25519 public key (its libp2p PeerId's key)
//! not_after  u64        Unix milliseconds; the binding is void after it
//! signature  64 bytes   ed25519 by the author over BINDING_SIGNING_CONTEXT ++ all of the above
//! ```

use crate::capability::Timestamp;
use crate::keys::{AuthorKey, PublicKey, Signature, verify};
use crate::{AuthorId, NodeKey};

/// The encoding version written by this build.
pub const BINDING_VERSION: u8 = 1;

/// Prepended to the encoded binding before signing, so that a binding signature is never
/// mistaken for a signature of anything else.
pub const BINDING_SIGNING_CONTEXT: &[u8] = b"cosmic-auth peer binding v1\0";

/// The length of an encoded binding.
pub const BINDING_LEN: usize = 1 + 32 + 32 + 8 + 64;

/// Why a binding is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The bytes are not a binding.
    #[error("malformed peer binding: {reason}")]
    Malformed {
        /// What is wrong with them.
        reason: String,
    },
    /// The author's signature does not verify.
    #[error("the peer binding of author {author} has a bad signature")]
    BadSignature {
        /// The author it claims.
        author: AuthorId,
    },
    /// The binding names another node than the one presenting it.
    #[error("the peer binding of author {author} is for node {bound}, not for {presenter}")]
    OtherPeer {
        /// The author.
        author: AuthorId,
        /// The node key it binds.
        bound: PublicKey,
        /// The node key that presented it.
        presenter: PublicKey,
    },
    /// The binding has expired.
    #[error("the peer binding of author {author} expired at {not_after} (now {now})")]
    Expired {
        /// The author.
        author: AuthorId,
        /// When it ended.
        not_after: Timestamp,
        /// The time it was judged at.
        now: Timestamp,
    },
}

/// "author speaks for peer until not_after", signed by the author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBinding {
    author: AuthorId,
    peer: PublicKey,
    not_after: Timestamp,
    signature: Signature,
}

impl PeerBinding {
    /// Binds the node key `peer` to `author` until `not_after`.
    pub fn sign(author: &AuthorKey, peer: &PublicKey, not_after: Timestamp) -> PeerBinding {
        let mut binding = PeerBinding {
            author: author.public(),
            peer: *peer,
            not_after,
            signature: Signature::from_bytes(&[0; 64]),
        };
        binding.signature = author.sign(&binding.signed_message());
        binding
    }

    /// The author who speaks through the peer.
    pub fn author(&self) -> &AuthorId {
        &self.author
    }

    /// The node key of the peer.
    pub fn peer(&self) -> &PublicKey {
        &self.peer
    }

    /// When the binding ends.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }

    /// Checks the binding as presented by the node `presenter` at `now`: the signature
    /// verifies, it binds `presenter`, and it has not expired.
    pub fn verify(&self, presenter: &PublicKey, now: Timestamp) -> Result<(), BindingError> {
        if verify(&self.author, &self.signed_message(), &self.signature).is_err() {
            return Err(BindingError::BadSignature { author: self.author });
        }
        if self.peer != *presenter {
            return Err(BindingError::OtherPeer {
                author: self.author,
                bound: self.peer,
                presenter: *presenter,
            });
        }
        if now > self.not_after {
            return Err(BindingError::Expired {
                author: self.author,
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }

    fn body(&self) -> [u8; BINDING_LEN - 64] {
        let mut out = [0u8; BINDING_LEN - 64];
        out[0] = BINDING_VERSION;
        out[1..33].copy_from_slice(self.author.as_bytes());
        out[33..65].copy_from_slice(self.peer.as_bytes());
        out[65..73].copy_from_slice(&self.not_after.0.to_be_bytes());
        out
    }

    /// The bytes the author signs: [`BINDING_SIGNING_CONTEXT`], then the encoding without
    /// the signature.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut out = BINDING_SIGNING_CONTEXT.to_vec();
        out.extend_from_slice(&self.body());
        out
    }

    /// The canonical encoding, signature last ([`BINDING_LEN`] bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body().to_vec();
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// Decodes a binding (its signature is checked by [`PeerBinding::verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<PeerBinding, BindingError> {
        let malformed = |reason: String| BindingError::Malformed { reason };
        if bytes.len() != BINDING_LEN {
            return Err(malformed(format!("{} bytes, expected {BINDING_LEN}", bytes.len())));
        }
        if bytes[0] != BINDING_VERSION {
            return Err(malformed(format!("version {}, expected {BINDING_VERSION}", bytes[0])));
        }
        let key = |range: std::ops::Range<usize>, what: &str| {
            let mut raw = [0u8; 32];
            raw.copy_from_slice(&bytes[range]);
            PublicKey::from_bytes(&raw).map_err(|error| malformed(format!("{what}: {error}")))
        };
        let author = key(1..33, "author")?;
        let peer = key(33..65, "peer")?;
        let mut millis = [0u8; 8];
        millis.copy_from_slice(&bytes[65..73]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[73..]);
        Ok(PeerBinding {
            author,
            peer,
            not_after: Timestamp(u64::from_be_bytes(millis)),
            signature: Signature::from_bytes(&signature),
        })
    }
}

/// The ed25519 node key behind a libp2p peer id, when the id embeds one (every peer id
/// of this system does: node keys are ed25519, and libp2p inlines such keys in the id).
pub fn node_key_of(peer: &libp2p_identity::PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    // Code 0 is the identity multihash: the digest is the protobuf-encoded key itself.
    if multihash.code() != 0 {
        return None;
    }
    let key = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let bytes = key.try_into_ed25519().ok()?.to_bytes();
    PublicKey::from_bytes(&bytes).ok()
}

/// The libp2p peer id of the node whose key is `node` (the inverse of [`node_key_of`]).
pub fn peer_id_of(node: &PublicKey) -> Option<libp2p_identity::PeerId> {
    let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(node.as_bytes()).ok()?;
    Some(libp2p_identity::PublicKey::from(key).to_peer_id())
}

impl PeerBinding {
    /// [`PeerBinding::verify`] for the node behind the libp2p peer id `presenter` (a peer
    /// id that embeds no ed25519 key can present no binding).
    pub fn verify_peer(
        &self,
        presenter: &libp2p_identity::PeerId,
        now: Timestamp,
    ) -> Result<(), BindingError> {
        match node_key_of(presenter) {
            Some(key) => self.verify(&key, now),
            None => Err(BindingError::Malformed {
                reason: format!("peer {presenter} has no ed25519 node key to bind"),
            }),
        }
    }
}

impl AuthorKey {
    /// Binds the node `node` to this author until `not_after` (see [`PeerBinding`]).
    pub fn bind_peer(&self, node: &NodeKey, not_after: Timestamp) -> PeerBinding {
        PeerBinding::sign(self, &node.public(), not_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn a_binding_holds_only_for_its_node_until_it_expires() {
        let author = AuthorKey::from_secret_bytes(&[2; 32]);
        let node = NodeKey::from_secret_bytes([3; 32]);
        let other = NodeKey::from_secret_bytes([4; 32]);
        let binding = author.bind_peer(&node, Timestamp(2_000));
        binding.verify(&node.public(), Timestamp(1_000)).unwrap();
        binding.verify(&node.public(), Timestamp(2_000)).unwrap();
        assert_eq!(
            binding.verify(&node.public(), Timestamp(2_001)),
            Err(BindingError::Expired {
                author: author.public(),
                not_after: Timestamp(2_000),
                now: Timestamp(2_001)
            })
        );
        assert!(matches!(
            binding.verify(&other.public(), Timestamp(1_000)),
            Err(BindingError::OtherPeer { .. })
        ));
        // Round trip, pinned encoding.
        let bytes = binding.to_bytes();
        assert_eq!(bytes.len(), BINDING_LEN);
        assert_eq!(PeerBinding::from_bytes(&bytes).unwrap(), binding);
        expect_test::expect!["018139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d100000000000007d08d73d4bc74632949afeeaa6b5f3f7c5402ab3307f3456c5352580f980dee8318d4660e9f2d9babb1e2098adaed514ac6d68cc70f50568d9858edb91fda8dc80b"].assert_eq(&hex(&bytes));
    }

    #[test]
    fn a_peer_id_gives_back_its_node_key_and_bindings_verify_against_it() {
        let author = AuthorKey::from_secret_bytes(&[2; 32]);
        let node = NodeKey::from_secret_bytes([3; 32]);
        let other = NodeKey::from_secret_bytes([4; 32]);
        assert_eq!(node_key_of(&node.peer_id()), Some(node.public()));
        assert_eq!(peer_id_of(&node.public()), Some(node.peer_id()));
        let binding = author.bind_peer(&node, Timestamp(2_000));
        binding.verify_peer(&node.peer_id(), Timestamp(1_000)).unwrap();
        assert!(matches!(
            binding.verify_peer(&other.peer_id(), Timestamp(1_000)),
            Err(BindingError::OtherPeer { .. })
        ));
        // A peer id that is a hash of some other key type names no node key.
        let sha256 = [[0x12, 0x20].as_slice(), &[7; 32]].concat();
        let hashed = libp2p_identity::PeerId::from_bytes(&sha256).unwrap();
        assert_eq!(node_key_of(&hashed), None);
        assert!(matches!(
            binding.verify_peer(&hashed, Timestamp(1_000)),
            Err(BindingError::Malformed { .. })
        ));
    }

    #[test]
    fn forged_and_malformed_bindings_are_refused_with_their_reason() {
        let author = AuthorKey::from_secret_bytes(&[2; 32]);
        let node = NodeKey::from_secret_bytes([3; 32]);
        let bytes = author.bind_peer(&node, Timestamp(2_000)).to_bytes();
        // A later expiry written over the signed one: the signature no longer verifies.
        let mut extended = bytes.clone();
        extended[65..73].copy_from_slice(&u64::MAX.to_be_bytes());
        let forged = PeerBinding::from_bytes(&extended).unwrap();
        assert_eq!(
            forged.verify(&node.public(), Timestamp(1_000)),
            Err(BindingError::BadSignature { author: author.public() })
        );
        // Someone else's binding re-signed as theirs is theirs, not the author's.
        let mallory = AuthorKey::from_secret_bytes(&[9; 32]);
        let mut stolen = PeerBinding::from_bytes(&bytes).unwrap();
        stolen.signature = mallory.sign(&stolen.signed_message());
        assert!(matches!(
            stolen.verify(&node.public(), Timestamp(1_000)),
            Err(BindingError::BadSignature { .. })
        ));
        for (bad, reason) in [
            (bytes[..BINDING_LEN - 1].to_vec(), "bytes, expected"),
            ([bytes.clone(), vec![0]].concat(), "bytes, expected"),
            ([vec![2], bytes[1..].to_vec()].concat(), "version 2"),
        ] {
            match PeerBinding::from_bytes(&bad) {
                Err(BindingError::Malformed { reason: text }) => {
                    assert!(text.contains(reason), "{text}")
                }
                other => panic!("expected a malformed binding, got {other:?}"),
            }
        }
    }
}
