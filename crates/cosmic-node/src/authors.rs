//! The authors that sign a node's writes: the node author (`author.key`, for writes made
//! unattended) and the keystore identities unlocked when the node started, so that each
//! user of an app can sign as themselves.

use cosmic_auth::{AuthorId, AuthorKey};

use crate::error::{Error, Result};

/// A keystore identity unlocked for this run of the node.
#[derive(Clone)]
pub struct Identity {
    /// Its local name in the keystore.
    pub alias: String,
    /// Its secret key.
    pub key: AuthorKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("alias", &self.alias)
            .field("author", &self.key.public())
            .finish_non_exhaustive()
    }
}

/// Every author this node can sign with.
#[derive(Debug)]
pub(crate) struct Authors {
    /// The node author.
    pub(crate) node: AuthorKey,
    /// The identities unlocked at start, in the order given.
    pub(crate) identities: Vec<Identity>,
}

impl Authors {
    /// The author named `name`: an identity's alias, or the author id of the node author
    /// or of an unlocked identity. Anything else is [`Error::UnknownAuthor`].
    pub(crate) fn resolve(&self, name: &str) -> Result<&AuthorKey> {
        if let Some(identity) = self.identities.iter().find(|identity| identity.alias == name) {
            return Ok(&identity.key);
        }
        if let Ok(id) = name.parse::<AuthorId>() {
            if id == self.node.public() {
                return Ok(&self.node);
            }
            if let Some(identity) = self.identities.iter().find(|i| i.key.public() == id) {
                return Ok(&identity.key);
            }
        }
        Err(Error::UnknownAuthor { author: name.to_owned() })
    }

    /// The signer of a write: the author named `name`, or the node author.
    pub(crate) fn signer(&self, name: Option<&str>) -> Result<&AuthorKey> {
        name.map_or(Ok(&self.node), |name| self.resolve(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_author_is_named_by_alias_or_id_and_nothing_else_is_accepted() {
        let node = AuthorKey::generate();
        let alice = AuthorKey::generate();
        let stranger = AuthorKey::generate();
        let authors = Authors {
            node: node.clone(),
            identities: vec![Identity { alias: "alice".into(), key: alice.clone() }],
        };
        assert_eq!(authors.signer(None).unwrap().public(), node.public());
        assert_eq!(authors.signer(Some("alice")).unwrap().public(), alice.public());
        let by_id = alice.public().to_string();
        assert_eq!(authors.signer(Some(&by_id)).unwrap().public(), alice.public());
        let node_id = node.public().to_string();
        assert_eq!(authors.signer(Some(&node_id)).unwrap().public(), node.public());
        for name in ["bob", "", &stranger.public().to_string()] {
            match authors.signer(Some(name)) {
                Err(Error::UnknownAuthor { author }) => assert_eq!(author, name),
                other => {
                    panic!("{name:?}: expected UnknownAuthor, got {:?}", other.map(|k| k.public()))
                }
            }
        }
    }
}
