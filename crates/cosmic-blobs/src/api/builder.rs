//! [`Builder`]: how a [`Blobs`] handle is opened, on a directory or in memory.

use super::*;

/// Opens a [`Blobs`] handle; get one from [`Blobs::builder`].
#[derive(Debug)]
pub struct Builder {
    pub(super) secret: [u8; 32],
    pub(super) config: Config,
    pub(super) bus: Bus,
    pub(super) lookup: Option<Arc<dyn AddressLookup>>,
    pub(super) policy: Arc<dyn AccessPolicy>,
}

impl Builder {
    /// Settings (bind address, limits, GC interval); default [`Config::default`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The bus [`BlobEvent`]s are published on; default a private bus.
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = bus;
        self
    }

    /// Where fetches find providers when they are given none.
    pub fn address_lookup(mut self, lookup: impl AddressLookup) -> Self {
        self.lookup = Some(Arc::new(lookup));
        self
    }

    /// Who may fetch which blob from this node; default [`PublicPins`].
    pub fn access_policy(mut self, policy: impl AccessPolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Opens (or creates) the persistent store in `dir` (the node uses `DATA_DIR/blobs`)
    /// and binds the endpoint.
    pub async fn open(self, dir: impl AsRef<Path>) -> Result<Blobs> {
        let dir = dir.as_ref().to_path_buf();
        let open_error =
            |source: io::Error| Error::Open { path: dir.clone(), source: source.into() };
        tokio::fs::create_dir_all(&dir).await.map_err(open_error)?;
        let dir = std::path::absolute(&dir).map_err(open_error)?;
        let (gc, gc_handle) = gc_config(self.config.gc_interval);
        let mut options = iroh_blobs::store::fs::options::Options::new(&dir);
        options.gc = Some(gc);
        let store = iroh_blobs::store::fs::FsStore::load_with_opts(dir.join("blobs.db"), options)
            .await
            .map_err(|source| Error::Open { path: dir.clone(), source: source.into() })?;
        // iroh-blobs writes an add in progress to `temp/` and never cleans up after a
        // crash. Once the store is open (its redb lock held, so no other process uses
        // it) and before any add of ours can start, every file there is a leftover.
        remove_leftover_temp_files(&dir.join("temp")).await;
        self.finish(store.into(), gc_handle, Some(dir)).await
    }

    /// Opens a store held in memory (for tests) and binds the endpoint.
    pub async fn open_in_memory(self) -> Result<Blobs> {
        let (gc, gc_handle) = gc_config(self.config.gc_interval);
        let options = iroh_blobs::store::mem::Options { gc_config: Some(gc) };
        let store = iroh_blobs::store::mem::MemStore::new_with_opts(options);
        self.finish(store.into(), gc_handle, None).await
    }

    async fn finish(self, store: Store, gc: GcHandle, dir: Option<PathBuf>) -> Result<Blobs> {
        let secret = SecretKey::from_bytes(&self.secret);
        let bind_addr = self.config.bind_addr;
        let bind_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Bind {
            addr: bind_addr,
            source,
        };
        // Relays and public address lookup stay off (the `Minimal` preset has neither):
        // peers' addresses come from the libp2p side.
        // The QUIC transport keeps iroh's defaults (1.25 MB stream window, multipath,
        // keep-alives). A 16 MiB stream receive window made a loopback fetch into the
        // disk store collapse to a few MB/s; see docs/BENCHMARKS.md, cosmic-blobs.
        let endpoint = Endpoint::builder(presets::Minimal)
            .secret_key(secret)
            .clear_ip_transports()
            .bind_addr(bind_addr)
            .map_err(|error| bind_error(error.into()))?
            .bind()
            .await
            .map_err(|error| bind_error(error.into()))?;
        let node = PublicKey::from_bytes(endpoint.id().as_bytes())
            .expect("an iroh endpoint id is a valid ed25519 public key");
        let (events, policy_task) = spawn_policy_task(self.policy, store.clone(), self.bus.clone());
        let router = Router::builder(endpoint.clone())
            .accept(iroh_blobs::ALPN, BlobsProtocol::new(&store, Some(events)))
            .spawn();
        Ok(Blobs {
            inner: Arc::new(Inner {
                store,
                endpoint,
                router,
                policy_task: Mutex::new(Some(policy_task)),
                bus: self.bus,
                config: self.config,
                lookup: self.lookup,
                gc,
                node,
                dir,
            }),
        })
    }
}

async fn remove_leftover_temp_files(temp: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(temp).await else { return };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        match tokio::fs::remove_file(&path).await {
            Ok(()) => tracing::info!(?path, "removed the temporary file of an interrupted add"),
            Err(error) => tracing::warn!(?path, %error, "cannot remove a leftover temporary file"),
        }
    }
}
