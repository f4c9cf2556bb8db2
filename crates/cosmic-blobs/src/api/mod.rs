//! [`Blobs`]: the cloneable handle to the store, its endpoint and its provider.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cosmic_auth::{NodeKey, PublicKey};
use cosmic_events::Bus;
use futures::{Stream, StreamExt};
use iroh::endpoint::presets;
use iroh::protocol::Router;
use iroh::{Endpoint, SecretKey};
use iroh_blobs::BlobsProtocol;
use iroh_blobs::api::Store;
use iroh_blobs::api::blobs::BlobStatus;
use iroh_blobs::api::proto::ExportRangesItem;
use tokio_util::task::AbortOnDropHandle;

use crate::gc::{GcHandle, gc_config};
use crate::pins::{Pins, Visibility, fetch_tag, pin_tag};
use crate::policy::spawn_policy_task;
use crate::{
    AccessPolicy, AddressLookup, BlobEvent, Cid, Config, Error, PeerAddr, PublicPins, Result,
};

mod builder;

pub use builder::Builder;

/// A stream of a blob's bytes, in order; see [`Blobs::read`].
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// What an add returns: the blob's CID and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// The blob's content id.
    pub cid: Cid,
    /// Its size in bytes.
    pub size: u64,
}

/// How much of a blob the local store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// Nothing.
    Missing,
    /// Some verified ranges; `size` is the total size once it is known (verified).
    Partial {
        /// The blob's size, if known.
        size: Option<u64>,
    },
    /// All of it, verified.
    Complete {
        /// The blob's size.
        size: u64,
    },
}

/// One blob of the local store, as listed by [`Blobs::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob.
    pub cid: Cid,
    /// How much of it is here.
    pub state: BlobState,
    /// How it is pinned, if it is.
    pub pin: Option<Visibility>,
}

/// The blob store of a node, its iroh endpoint and the provider serving it; cheap to clone.
///
/// Call [`Blobs::shutdown`] before dropping the last clone: it closes the endpoint and
/// flushes the store.
#[derive(Clone)]
pub struct Blobs {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) endpoint: Endpoint,
    router: Router,
    /// The task answering the provider's access questions; ends with the router, and is
    /// aborted if the handle is dropped without a shutdown.
    policy_task: Mutex<Option<AbortOnDropHandle<()>>>,
    pub(crate) bus: Bus,
    pub(crate) config: Config,
    pub(crate) lookup: Option<Arc<dyn AddressLookup>>,
    gc: GcHandle,
    pub(crate) node: PublicKey,
    dir: Option<PathBuf>,
}

impl fmt::Debug for Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blobs")
            .field("node", &self.inner.node)
            .field("dir", &self.inner.dir)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Blobs {
    /// A builder for a handle whose endpoint is keyed by `key` (the node key, so the
    /// endpoint id equals the node's libp2p PeerId key).
    pub fn builder(key: &NodeKey) -> Builder {
        Builder {
            secret: *key.secret_bytes(),
            config: Config::default(),
            bus: Bus::new(),
            lookup: None,
            policy: Arc::new(PublicPins),
        }
    }

    /// This node's key, which is also its endpoint id.
    pub fn node(&self) -> PublicKey {
        self.inner.node
    }

    /// The UDP socket addresses the endpoint is bound to.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner.endpoint.bound_sockets()
    }

    /// This node as a provider others can fetch from: its key and bound addresses, with
    /// an unspecified IP (`0.0.0.0`, `::`) replaced by loopback.
    pub fn peer_addr(&self) -> PeerAddr {
        let addrs = self.local_addrs().into_iter().map(|mut addr| {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            addr
        });
        PeerAddr::new(self.inner.node, addrs)
    }

    /// The bus events are published on.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// The settings this handle was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A read-only view of the pins, as the [`AccessPolicy`] sees them.
    pub fn pins_view(&self) -> Pins {
        Pins::new(self.inner.store.clone())
    }

    fn check_size(&self, size: u64) -> Result<()> {
        let max = self.inner.config.max_blob_size;
        if size > max { Err(Error::TooLarge { size, max }) } else { Ok(()) }
    }

    fn added(&self, cid: Cid, size: u64) -> Added {
        self.inner.bus.publish(BlobEvent::Added { cid, size });
        Added { cid, size }
    }

    /// Adds `data` and pins it with `pin`.
    pub async fn add_bytes(&self, data: impl Into<Bytes>, pin: Visibility) -> Result<Added> {
        let data = data.into();
        let size = data.len() as u64;
        self.check_size(size)?;
        let cid = Cid::of_bytes(&data);
        self.inner
            .store
            .blobs()
            .add_bytes(data)
            .with_named_tag(pin_tag(&cid, pin))
            .await
            .map_err(|error| Error::store("add bytes", error))?;
        Ok(self.added(cid, size))
    }

    /// Adds the file at `path` without reading it all into memory, and pins it with `pin`.
    ///
    /// The file is copied into the store; later changes to it do not affect the blob.
    pub async fn add_file(&self, path: impl AsRef<Path>, pin: Visibility) -> Result<Added> {
        let path = path.as_ref();
        let io_error = |source| Error::Io { operation: "read", path: path.to_path_buf(), source };
        let size = tokio::fs::metadata(path).await.map_err(io_error)?.len();
        self.check_size(size)?;
        let path = std::path::absolute(path).map_err(io_error)?;
        let blobs = self.inner.store.blobs();
        // A temporary tag protects the blob until it is pinned under its CID's name.
        let temp = blobs
            .add_path(&path)
            .temp_tag()
            .await
            .map_err(|error| Error::store("add a file", error))?;
        let cid = Cid::from_hash(temp.hash());
        self.set_pin(&cid, pin).await?;
        drop(temp);
        let size = self.complete_size(&cid).await?;
        Ok(self.added(cid, size))
    }

    /// Adds the bytes of `stream` (up to `blobs.max_blob_size`) and pins them with `pin`.
    pub async fn add_stream(
        &self,
        stream: impl Stream<Item = io::Result<Bytes>> + Send + Sync + 'static,
        pin: Visibility,
    ) -> Result<Added> {
        let max = self.inner.config.max_blob_size;
        let mut total = 0u64;
        // iroh-blobs 0.104's `add_stream` can panic when its source fails while it reports
        // progress (its generator yields twice without an await between). So its source
        // never fails: on the first error (ours or the caller's) we note it, wake the
        // select below and stall; dropping the add then makes the store abort the import.
        let failure = Arc::new(FirstFailure::default());
        let (noted, stalled) = (failure.clone(), failure.clone());
        let limited = stream
            .map(move |item| {
                let error = match item {
                    Ok(bytes) => {
                        total += bytes.len() as u64;
                        if total <= max {
                            return Some(bytes);
                        }
                        Error::TooLarge { size: total, max }
                    }
                    Err(error) => Error::store("add a stream", error),
                };
                noted.note(error);
                None
            })
            .take_while(|item| futures::future::ready(item.is_some()))
            .filter_map(futures::future::ready)
            .map(io::Result::Ok)
            // After a failure, stall rather than end (an end would complete the import).
            .chain(
                futures::stream::once(async move {
                    if stalled.failed() {
                        futures::future::pending::<()>().await;
                    }
                })
                .filter_map(|()| futures::future::ready(None)),
            );
        let blobs = self.inner.store.blobs();
        let temp = tokio::select! {
            temp = async { blobs.add_stream(limited).await.temp_tag().await } => temp,
            error = failure.wait() => return Err(error),
        };
        let temp = temp.map_err(|error| Error::store("add a stream", error))?;
        let cid = Cid::from_hash(temp.hash());
        self.set_pin(&cid, pin).await?;
        drop(temp);
        let size = self.complete_size(&cid).await?;
        Ok(self.added(cid, size))
    }

    async fn complete_size(&self, cid: &Cid) -> Result<u64> {
        match self.stat(cid).await? {
            BlobState::Complete { size } => Ok(size),
            BlobState::Partial { size } => {
                Err(Error::Incomplete { cid: *cid, present: size.unwrap_or(0) })
            }
            BlobState::Missing => Err(Error::NotFound { cid: *cid }),
        }
    }

    /// How much of `cid` the local store holds.
    pub async fn stat(&self, cid: &Cid) -> Result<BlobState> {
        let status = self
            .inner
            .store
            .blobs()
            .status(cid.hash())
            .await
            .map_err(|error| Error::store("read a blob's status", error))?;
        Ok(match status {
            BlobStatus::NotFound => BlobState::Missing,
            BlobStatus::Partial { size } => BlobState::Partial { size },
            BlobStatus::Complete { size } => BlobState::Complete { size },
        })
    }

    /// Whether the local store holds all of `cid`.
    pub async fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(matches!(self.stat(cid).await?, BlobState::Complete { .. }))
    }

    /// Streams the bytes of `range` (any range syntax, clipped to the blob's size) of a
    /// complete local blob.
    pub async fn read(&self, cid: &Cid, range: impl RangeBounds<u64>) -> Result<ByteStream> {
        let size = self.complete_size(cid).await?;
        let start = match range.start_bound() {
            Bound::Included(&start) => start,
            Bound::Excluded(&start) => start.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&end) => end.saturating_add(1),
            Bound::Excluded(&end) => end,
            Bound::Unbounded => size,
        };
        if start > end || start > size {
            return Err(Error::InvalidRange { cid: *cid, start, end, size });
        }
        let end = end.min(size);
        if start == end {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let stream =
            self.inner.store.blobs().export_ranges(cid.hash(), start..end).stream().filter_map(
                |item| {
                    std::future::ready(match item {
                        ExportRangesItem::Size(_) => None,
                        ExportRangesItem::Data(leaf) => Some(Ok(leaf.data)),
                        ExportRangesItem::Error(error) => {
                            Some(Err(Error::store("read a blob", error)))
                        }
                    })
                },
            );
        Ok(Box::pin(stream))
    }

    /// Reads a whole complete local blob into memory.
    pub async fn read_to_bytes(&self, cid: &Cid) -> Result<Bytes> {
        let size = self.complete_size(cid).await?;
        self.check_size(size)?;
        self.inner
            .store
            .blobs()
            .get_bytes(cid.hash())
            .await
            .map_err(|error| Error::store("read a blob", error))
    }

    /// Copies a complete local blob to the file `target` (created or replaced).
    pub async fn export(&self, cid: &Cid, target: impl AsRef<Path>) -> Result<u64> {
        self.complete_size(cid).await?;
        let target = target.as_ref();
        let target = std::path::absolute(target).map_err(|source| Error::Io {
            operation: "write",
            path: target.to_path_buf(),
            source,
        })?;
        self.inner
            .store
            .blobs()
            .export(cid.hash(), target)
            .finish()
            .await
            .map_err(|error| Error::store("export a blob", error))
    }

    /// Every blob in the local store, complete or partial, with its pin.
    pub async fn list(&self) -> Result<Vec<BlobInfo>> {
        let hashes = self
            .inner
            .store
            .blobs()
            .list()
            .hashes()
            .await
            .map_err(|error| Error::store("list blobs", error))?;
        let pins = self.pins_view();
        let mut infos = Vec::with_capacity(hashes.len());
        for hash in hashes {
            let cid = Cid::from_hash(hash);
            let state = self.stat(&cid).await?;
            let pin = pins.visibility(&cid).await?;
            infos.push(BlobInfo { cid, state, pin });
        }
        Ok(infos)
    }

    /// Every pinned blob and how it is pinned (public wins if both).
    pub async fn pins(&self) -> Result<Vec<(Cid, Visibility)>> {
        let mut pins: Vec<(Cid, Visibility)> = Vec::new();
        for visibility in [Visibility::Public, Visibility::Private] {
            let prefix = visibility.tag_prefix();
            let mut tags = self
                .inner
                .store
                .tags()
                .list_prefix(prefix.as_bytes())
                .await
                .map_err(|error| Error::store("list pins", error))?;
            while let Some(tag) = tags.next().await {
                let tag = tag.map_err(|error| Error::store("list pins", error))?;
                let cid = Cid::from_hash(tag.hash);
                if !pins.iter().any(|(pinned, _)| *pinned == cid) {
                    pins.push((cid, visibility));
                }
            }
        }
        Ok(pins)
    }

    /// Pins a local blob (complete or partial) so garbage collection keeps it; pinning
    /// an already pinned blob changes its visibility.
    pub async fn pin(&self, cid: &Cid, visibility: Visibility) -> Result<()> {
        if self.stat(cid).await? == BlobState::Missing {
            return Err(Error::NotFound { cid: *cid });
        }
        self.set_pin(cid, visibility).await?;
        let other = match visibility {
            Visibility::Public => Visibility::Private,
            Visibility::Private => Visibility::Public,
        };
        self.delete_tag(pin_tag(cid, other)).await?;
        Ok(())
    }

    pub(crate) async fn set_pin(&self, cid: &Cid, visibility: Visibility) -> Result<()> {
        self.inner
            .store
            .tags()
            .set(pin_tag(cid, visibility), cid.hash())
            .await
            .map_err(|error| Error::store("set a pin", error))
    }

    pub(crate) async fn delete_tag(&self, name: String) -> Result<u64> {
        self.inner
            .store
            .tags()
            .delete(name)
            .await
            .map_err(|error| Error::store("delete a tag", error))
    }

    /// Removes every pin of `cid` and the hold of an unfinished fetch, so the next
    /// garbage collection removes it. Returns whether anything was pinned.
    pub async fn unpin(&self, cid: &Cid) -> Result<bool> {
        let mut removed = 0;
        for name in
            [pin_tag(cid, Visibility::Public), pin_tag(cid, Visibility::Private), fetch_tag(cid)]
        {
            removed += self.delete_tag(name).await?;
        }
        Ok(removed > 0)
    }

    /// Runs garbage collection now: removes every blob that is neither pinned, nor held
    /// by an unfinished fetch, nor being added. Returns when the run has finished.
    pub async fn gc(&self) -> Result<()> {
        self.inner.gc.run().await
    }

    /// Closes the endpoint (refusing new requests), then flushes and stops the store.
    ///
    /// Every clone stops working; calling it twice is harmless.
    pub async fn shutdown(&self) -> Result<()> {
        // The blobs protocol handler shuts the store down when the router stops.
        self.inner.router.shutdown().await.map_err(|error| Error::store("shut down", error))?;
        self.inner.endpoint.close().await;
        // Nothing is served any more: end the policy task and the checks it holds.
        let policy_task =
            self.inner.policy_task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(task) = policy_task {
            task.abort();
            let _ = task.await;
        }
        Ok(())
    }
}

/// The first failure of an added stream, and a wake-up for whoever waits for it.
#[derive(Default)]
struct FirstFailure {
    failed: std::sync::atomic::AtomicBool,
    error: std::sync::Mutex<Option<Error>>,
    noticed: tokio::sync::Notify,
}

impl FirstFailure {
    /// Keeps `error` if it is the first, and wakes the waiter.
    fn note(&self, error: Error) {
        let mut slot = self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.failed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            *slot = Some(error);
            // A stored permit: the waiter wakes even if it starts waiting later.
            self.noticed.notify_one();
        }
    }

    /// Whether a failure was noted.
    fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits for the first failure and takes it.
    async fn wait(&self) -> Error {
        loop {
            self.noticed.notified().await;
            let taken = self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(error) = taken {
                return error;
            }
        }
    }
}
