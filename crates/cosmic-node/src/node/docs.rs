//! [`Docs`]: the documents of a node's spaces, written as JSON and read back.

use super::*;

/// How [`Docs::get`] renders a document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Follow doc links this many levels deep (0: links stay `{"#": key}`).
    pub depth: usize,
    /// Give each field as `{"value", "hlc", "author"}` (links are then not followed).
    pub meta: bool,
}

/// The documents of a node's spaces: put, get, delete, list, subscribe. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Docs {
    pub(crate) shared: Arc<Shared>,
}

impl Docs {
    /// Merges the fields of a JSON object into a document, signed by the node author
    /// (see `cosmic_store::Store::write_json` for nested objects, links and `null`).
    /// Returns how many fields changed.
    pub async fn put(&self, space: SpaceId, key: &str, object: serde_json::Value) -> Result<usize> {
        self.put_as(None, space, key, object).await
    }

    /// Like [`Docs::put`], signed by `author` (an unlocked identity's alias, or the author
    /// id of the node author or of an unlocked identity); `None` is the node author.
    pub async fn put_as(
        &self,
        author: Option<&str>,
        space: SpaceId,
        key: &str,
        object: serde_json::Value,
    ) -> Result<usize> {
        let signer = self.shared.authors.signer(author)?.clone();
        let shared = self.shared.clone();
        let key = key.to_owned();
        blocking(move || {
            require_space(&shared, &space)?;
            let inserted = shared.store.write_json(&signer, &space, &key, &object)?;
            Ok(inserted
                .iter()
                .filter(|inserted| matches!(inserted, cosmic_store::Inserted::Applied { .. }))
                .count())
        })
        .await
    }

    /// A document's live fields as a JSON object, or [`Error::DocNotFound`].
    pub async fn get(
        &self,
        space: SpaceId,
        key: &str,
        options: GetOptions,
    ) -> Result<serde_json::Value> {
        let shared = self.shared.clone();
        let key = key.to_owned();
        blocking(move || {
            require_space(&shared, &space)?;
            let found = if options.meta {
                shared.store.get_doc(&space, &key)?.map(|document| meta_json(&document))
            } else {
                shared.store.get_json(&space, &key, options.depth)?
            };
            found.ok_or(Error::DocNotFound { space, key })
        })
        .await
    }

    /// Deletes a document (a tombstone on each live field); returns how many fields were
    /// deleted, or [`Error::DocNotFound`].
    pub async fn delete(&self, space: SpaceId, key: &str) -> Result<usize> {
        self.delete_as(None, space, key).await
    }

    /// Like [`Docs::delete`], signed by `author` (as in [`Docs::put_as`]).
    pub async fn delete_as(
        &self,
        author: Option<&str>,
        space: SpaceId,
        key: &str,
    ) -> Result<usize> {
        let signer = self.shared.authors.signer(author)?.clone();
        let shared = self.shared.clone();
        let key = key.to_owned();
        blocking(move || {
            require_space(&shared, &space)?;
            let Some(document) = shared.store.get_doc(&space, &key)? else {
                return Err(Error::DocNotFound { space, key });
            };
            let fields = document.into_keys().map(|field| (field, Value::Null)).collect();
            Ok(shared.store.write(&signer, &space, &key, fields)?.len())
        })
        .await
    }

    /// Stores entries that their authors signed elsewhere, all or nothing (see
    /// `cosmic_store::Store::insert_all`); they replicate like this node's own writes.
    pub async fn insert_signed(
        &self,
        space: SpaceId,
        entries: Vec<cosmic_store::Entry>,
    ) -> Result<Vec<cosmic_store::Inserted>> {
        let shared = self.shared.clone();
        blocking(move || {
            require_space(&shared, &space)?;
            Ok(shared.store.insert_all(entries)?)
        })
        .await
    }

    /// Keys of the live documents starting with `prefix`, after `after`, at most `limit`.
    pub async fn list(
        &self,
        space: SpaceId,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let shared = self.shared.clone();
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        blocking(move || {
            require_space(&shared, &space)?;
            Ok(shared.store.list_docs(&space, &prefix, after.as_deref(), limit)?)
        })
        .await
    }

    /// The changes of a space after sequence number `after`, stored then live. A space
    /// the node joined can be followed before its record has arrived from a peer.
    pub async fn subscribe(&self, space: SpaceId, after: u64) -> Result<Subscription> {
        if !self.shared.replicator.joined().contains(&space) {
            let shared = self.shared.clone();
            blocking(move || require_space(&shared, &space)).await?;
        }
        Ok(self.shared.store.subscribe(&space, after)?)
    }

    /// The author id that signs this node's writes.
    pub fn author(&self) -> AuthorId {
        self.shared.authors.node.public()
    }
}

fn meta_json(document: &Document) -> serde_json::Value {
    let fields = document
        .iter()
        .map(|(name, field)| {
            let value = serde_json::json!({
                "value": field.value.to_json(),
                "hlc": field.hlc.to_string(),
                "author": field.author.to_string(),
            });
            (name.clone(), value)
        })
        .collect();
    serde_json::Value::Object(fields)
}
