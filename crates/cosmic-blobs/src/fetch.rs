//! Fetching a blob from other peers: [`Blobs::fetch`] and [`FetchOptions`].
//!
//! A fetch asks one provider at a time for the ranges of the blob the local store lacks
//! (so an interrupted fetch resumes where it stopped, even after a restart), and every
//! 16 KiB group is verified against the BLAKE3 tree before it is written. A provider that
//! fails (does not have the blob, refuses, sends bad data, stalls, disconnects) is
//! skipped; after a round over every candidate the fetch waits briefly and asks again,
//! until its deadline.
//!
//! While a fetch is unfinished, the tag `fetch/<cid>` keeps the verified part from
//! garbage collection; it is replaced by a pin when the blob is complete, and kept after
//! a timeout or cancellation if any verified bytes arrived, so that a later fetch
//! resumes. [`Blobs::unpin`] drops it.

use std::time::Duration;

use cosmic_auth::PublicKey;
use futures::StreamExt;
use iroh::{EndpointAddr, EndpointId, TransportAddr};
use iroh_blobs::api::remote::GetProgressItem;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::api::BlobState;
use crate::pins::{Visibility, fetch_tag};
use crate::{BlobEvent, Blobs, Cid, Error, PeerAddr, Result};

/// Progress events are published each time this many more bytes arrived.
pub const PROGRESS_STEP: u64 = 1 << 20;

/// Pause after a round in which no candidate delivered, doubled up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// How to fetch a blob; `FetchOptions::default()` asks the address lookup, waits up to
/// `blobs.fetch_timeout` and pins the result privately.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Peers to ask first, in order; the [`crate::AddressLookup`] is asked after them.
    pub providers: Vec<PeerAddr>,
    /// Give up after this long in all; default [`crate::Config::fetch_timeout`].
    pub timeout: Option<Duration>,
    /// Cancel the fetch from elsewhere; dropping the fetch future cancels it too.
    pub cancel: Option<CancellationToken>,
    /// How to pin the blob once complete; default [`Visibility::Private`].
    pub pin: Option<Visibility>,
    /// Give up on one provider after this long without a byte of progress (connecting
    /// included) and move to the next; default [`crate::Config::fetch_timeout`].
    pub stall_timeout: Option<Duration>,
}

impl FetchOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider to ask, after those already given.
    pub fn provider(mut self, peer: PeerAddr) -> Self {
        self.providers.push(peer);
        self
    }

    /// Sets the overall deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets a cancellation token.
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Sets how long one provider may go without progress before the next is asked.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = Some(timeout);
        self
    }

    /// Sets how the blob is pinned once complete.
    pub fn pin(mut self, visibility: Visibility) -> Self {
        self.pin = Some(visibility);
        self
    }
}

/// What a completed fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// The blob.
    pub cid: Cid,
    /// Its size.
    pub size: u64,
    /// Payload bytes received over the network by this fetch (less than `size` when a
    /// part was already present, zero when all of it was).
    pub received: u64,
    /// The peer that completed it, `None` when it was already complete locally.
    pub provider: Option<PublicKey>,
}

/// Why one provider attempt failed.
enum AttemptError {
    /// Try the next provider.
    Provider(String),
    /// Stop the whole fetch.
    Fatal(Error),
}

impl Blobs {
    /// Fetches `cid` from `provider` only; shorthand for [`Blobs::fetch`].
    pub async fn fetch_from(&self, cid: &Cid, provider: PeerAddr) -> Result<Fetched> {
        self.fetch(cid, FetchOptions::new().provider(provider)).await
    }

    /// Fetches `cid` into the local store, verified, resuming what is already here.
    ///
    /// Cancel-safe: dropping the future stops the transfer and keeps what was verified.
    pub async fn fetch(&self, cid: &Cid, options: FetchOptions) -> Result<Fetched> {
        let result = self.fetch_inner(cid, options).await;
        if result.is_err() {
            // A hold on nothing (every provider refused or lacked the blob) would only
            // pile up tags; a hold on verified bytes stays for a later resume.
            if let Ok(0) = self.present_bytes(cid).await {
                self.delete_tag(fetch_tag(cid)).await.ok();
            }
        }
        result
    }

    /// The providers to try: the `given` ones, then those the address lookup finds (until
    /// `deadline`), each once.
    async fn candidates(
        &self,
        cid: &Cid,
        given: &[PeerAddr],
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<Vec<PeerAddr>> {
        let mut candidates = given.to_vec();
        if let Some(lookup) = &self.inner.lookup {
            let found = tokio::select! {
                found = lookup.providers(cid) => found,
                () = cancel.cancelled() => return Err(Error::Cancelled { cid: *cid }),
                () = tokio::time::sleep_until(deadline) => Vec::new(),
            };
            for peer in found {
                if !candidates.iter().any(|known| known.node == peer.node) {
                    candidates.push(peer);
                }
            }
        }
        Ok(candidates)
    }

    async fn fetch_inner(&self, cid: &Cid, options: FetchOptions) -> Result<Fetched> {
        let timeout = options.timeout.unwrap_or(self.inner.config.fetch_timeout);
        let cancel = options.cancel.clone().unwrap_or_default();
        let pin = options.pin.unwrap_or(Visibility::Private);
        let stall = options.stall_timeout.unwrap_or(self.inner.config.fetch_timeout);
        let deadline = Instant::now() + timeout;
        if let BlobState::Complete { size } = self.stat(cid).await? {
            self.finish_fetch(cid, pin).await?;
            return Ok(Fetched { cid: *cid, size, received: 0, provider: None });
        }
        if options.providers.is_empty() && self.inner.lookup.is_none() {
            return Err(Error::NoProviders { cid: *cid });
        }
        // Hold the partial data for a later resume, whatever happens to this fetch.
        self.inner
            .store
            .tags()
            .set(fetch_tag(cid), cid.hash())
            .await
            .map_err(|error| Error::store("hold a partial blob", error))?;
        let mut attempts = 0;
        let mut last_error = String::from("no provider found");
        let mut pause = FIRST_RETRY_PAUSE;
        let mut received = 0;
        loop {
            let candidates = self.candidates(cid, &options.providers, &cancel, deadline).await?;
            for peer in candidates.into_iter().filter(|peer| peer.node != self.inner.node) {
                if Instant::now() >= deadline {
                    break;
                }
                attempts += 1;
                let provider = peer.node;
                let attempt = tokio::select! {
                    result = self.attempt(cid, &peer, deadline, stall, &mut received) => result,
                    () = cancel.cancelled() => return Err(Error::Cancelled { cid: *cid }),
                };
                match attempt {
                    Ok(()) => {
                        let size = self.finish_fetch(cid, pin).await?;
                        self.inner.bus.publish(BlobEvent::FetchCompleted {
                            cid: *cid,
                            size,
                            received,
                        });
                        return Ok(Fetched { cid: *cid, size, received, provider: Some(provider) });
                    }
                    Err(AttemptError::Fatal(error)) => return Err(error),
                    Err(AttemptError::Provider(reason)) => {
                        debug!(%cid, ?provider, %reason, "provider failed");
                        self.inner.bus.publish(BlobEvent::FetchProviderFailed {
                            cid: *cid,
                            provider,
                            reason: reason.clone(),
                        });
                        last_error = format!("{provider}: {reason}");
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout { cid: *cid, after: timeout, attempts, last_error });
            }
            tokio::select! {
                () = tokio::time::sleep(pause.min(deadline - now)) => {}
                () = cancel.cancelled() => return Err(Error::Cancelled { cid: *cid }),
            }
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }

    /// Pins a now complete blob and drops its fetch hold; returns its size.
    async fn finish_fetch(&self, cid: &Cid, pin: Visibility) -> Result<u64> {
        let size = match self.stat(cid).await? {
            BlobState::Complete { size } => size,
            BlobState::Partial { size } => {
                return Err(Error::Incomplete { cid: *cid, present: size.unwrap_or(0) });
            }
            BlobState::Missing => return Err(Error::NotFound { cid: *cid }),
        };
        // Keep an existing public pin: fetching does not make a blob private.
        if self.pins_view().visibility(cid).await? != Some(Visibility::Public) {
            self.set_pin(cid, pin).await?;
        }
        self.delete_tag(fetch_tag(cid)).await?;
        Ok(size)
    }

    /// A blob connection to `peer`, within `stall` (and before `deadline`).
    async fn connect(
        &self,
        peer: &PeerAddr,
        deadline: Instant,
        stall: Duration,
    ) -> Result<iroh::endpoint::Connection, AttemptError> {
        let endpoint_id = EndpointId::from_bytes(peer.node.as_bytes())
            .map_err(|error| AttemptError::Provider(format!("invalid node key: {error}")))?;
        let addr = EndpointAddr::from_parts(
            endpoint_id,
            peer.addrs.iter().copied().map(TransportAddr::Ip),
        );
        if peer.addrs.is_empty() {
            return Err(AttemptError::Provider("no address known".into()));
        }
        let connect = self.inner.endpoint.connect(addr, iroh_blobs::ALPN);
        match tokio::time::timeout_at(deadline.min(Instant::now() + stall), connect).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(AttemptError::Provider(format!("cannot connect: {error}"))),
            Err(_) => Err(AttemptError::Provider(format!("no connection within {stall:?}"))),
        }
    }

    /// Asks one provider for the missing ranges of `cid`; `Ok` once the blob is complete.
    async fn attempt(
        &self,
        cid: &Cid,
        peer: &PeerAddr,
        deadline: Instant,
        stall: Duration,
        received: &mut u64,
    ) -> Result<(), AttemptError> {
        let provider = peer.node;
        let connection = self.connect(peer, deadline, stall).await?;
        let present = match self.stat(cid).await.map_err(AttemptError::Fatal)? {
            BlobState::Partial { .. } => {
                self.present_bytes(cid).await.map_err(AttemptError::Fatal)?
            }
            _ => 0,
        };
        self.inner.bus.publish(BlobEvent::FetchStarted { cid: *cid, provider, present });
        let max = self.inner.config.max_blob_size;
        let mut progress = self.inner.store.remote().fetch(connection, cid.hash()).stream();
        let mut this_attempt = 0u64;
        let mut reported = 0u64;
        loop {
            let next =
                tokio::time::timeout_at(deadline.min(Instant::now() + stall), progress.next());
            let item = match next.await {
                Ok(Some(item)) => item,
                Ok(None) => {
                    return Err(AttemptError::Provider("transfer ended without result".into()));
                }
                Err(_) => {
                    return Err(AttemptError::Provider(format!("no progress within {stall:?}")));
                }
            };
            match item {
                GetProgressItem::Progress(bytes) => {
                    if bytes > this_attempt {
                        *received += bytes - this_attempt;
                        this_attempt = bytes;
                    }
                    if present + this_attempt > max {
                        return Err(AttemptError::Fatal(Error::TooLarge {
                            size: present + this_attempt,
                            max,
                        }));
                    }
                    if this_attempt - reported >= PROGRESS_STEP {
                        reported = this_attempt;
                        self.inner.bus.publish(BlobEvent::FetchProgress {
                            cid: *cid,
                            provider,
                            received: this_attempt,
                        });
                    }
                }
                GetProgressItem::Done(stats) => {
                    let read = stats.payload_bytes_read;
                    if read > this_attempt {
                        *received += read - this_attempt;
                    }
                    return match self.stat(cid).await.map_err(AttemptError::Fatal)? {
                        BlobState::Complete { .. } => Ok(()),
                        _ => Err(AttemptError::Provider(
                            "transfer ended before the blob was complete".into(),
                        )),
                    };
                }
                GetProgressItem::Error(error) => {
                    return Err(AttemptError::Provider(error.to_string()));
                }
            }
        }
    }

    /// Bytes of a partial blob already verified here.
    async fn present_bytes(&self, cid: &Cid) -> Result<u64> {
        let local = self
            .inner
            .store
            .remote()
            .local(cid.hash())
            .await
            .map_err(|error| Error::store("read a partial blob", error))?;
        Ok(local.local_bytes())
    }
}
