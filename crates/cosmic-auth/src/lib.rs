//! Security layer of CosmicSyncCore (level 2): who a peer is, who wrote an entry, and
//! who may write to a space.
//!
//! This crate owns the node key ([`NodeKey`], the node's libp2p `PeerId` and iroh
//! endpoint id in one ed25519 secret), author identities kept in a passphrase-encrypted
//! [`Keystore`], signatures ([`AuthorKey::sign`], [`verify`], [`verify_each`], [`verify_batch`]) and space
//! capabilities: signed [`Statement`]s and the single decision [`check_access`], and
//! [`PeerBinding`]s, by which an author lets a node act for it on the network.
//!
//! It deliberately does no network I/O and depends on no other workspace crate. Secrets
//! are zeroized on drop and never appear in `Debug` output or logs.
//!
//! Public keys (author ids, space ids) have one text form used everywhere: RFC 4648
//! base32 with the lowercase alphabet, no padding, 52 characters (see [`PublicKey`]).
//! Peer ids use libp2p's usual form (`PeerId`'s `Display`).
//!
//! ```
//! use cosmic_auth::{check_access, AuthorKey, Right, SpaceKey, SpaceMode, Timestamp};
//!
//! let space = SpaceKey::generate();
//! let alice = AuthorKey::generate();
//! let now = Timestamp(1_000);
//! let grant = space.grant(alice.public(), Right::Write, now, None);
//!
//! let signature = alice.sign(b"an entry");
//! cosmic_auth::verify(&alice.public(), b"an entry", &signature)?;
//! check_access(&space.id(), SpaceMode::Restricted, &alice.public(), Right::Write, now, &[grant])
//!     .expect("alice may write");
//!
//! let id = space.id().to_string();
//! assert_eq!(id.len(), 52);
//! assert_eq!(id.parse::<cosmic_auth::SpaceId>()?, space.id());
//! # Ok::<(), cosmic_auth::Error>(())
//! ```

mod binding;
pub mod capability;
mod error;
mod fs;
mod keys;
mod keystore;
mod node_key;

pub use binding::{
    BINDING_LEN, BINDING_SIGNING_CONTEXT, BINDING_VERSION, BindingError, PeerBinding, node_key_of,
    peer_id_of,
};
pub use capability::{
    AccessDenied, DecodeError, Grant, ItemId, MAX_DELEGATION_DEPTH, MAX_KEPT, Revocation, Right,
    STATEMENT_SIGNING_CONTEXT, STATEMENT_VERSION, SignedStatement, SpaceMode, Statement, Timestamp,
    check_access, check_issuer, check_item_access,
};
pub use error::{Error, Result};
pub use keys::{
    AuthorId, AuthorKey, PUBLIC_KEY_TEXT_LEN, PublicKey, Signature, SpaceId, SpaceKey, verify,
    verify_batch, verify_each,
};
pub use keystore::{IdentityInfo, KdfParams, Keystore, Listing};
#[doc(hidden)]
pub use keystore::{decrypt_identity, read_identity_header};
pub use node_key::{NODE_KEY_FILE_HEADER, NodeKey};

#[cfg(test)]
mod tests;
