//! Prometheus metrics of a node, served as text at `GET /metrics`.
//!
//! Counters the node itself owns (HTTP requests and latencies, blob bytes) are updated as
//! things happen. What mirrors another layer is read from that layer when the metrics are
//! scraped, so a scrape always shows the current value and nothing needs a background
//! task: levels (peers, connections, spaces, entries) as gauges, and the layers' running
//! totals (gossip verdicts, losses and entries, sync sessions and bytes, every refusal) as
//! counters ([`Total`], exposed with the `_total` suffix) so that `rate()` works on them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// A running total kept by another layer (it only grows while the process runs), shown
/// as a Prometheus counter: [`Total::set`] copies the layer's figure at scrape time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Total(Arc<AtomicU64>);

impl Total {
    /// Shows `value`, the layer's running total.
    pub(crate) fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl TypedMetric for Total {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Total {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.0.load(Ordering::Relaxed), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Labels of the HTTP metrics: the route template (not the raw path, so ids do not
/// explode the label space), the method and the status code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub(crate) method: String,
    pub(crate) route: String,
    pub(crate) status: u16,
}

/// Labels of the gossip verdict gauge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct VerdictLabels {
    pub(crate) verdict: &'static str,
}

/// Labels of the gossip loss and entry refusal gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct LossLabels {
    pub(crate) reason: &'static str,
}

/// Labels of the blob byte counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct DirectionLabels {
    pub(crate) direction: &'static str,
}

/// The reasons of `cosmic_entries_refused`, in the order of `cosmic_store::Refusals`.
pub(crate) const REFUSAL_REASONS: [&str; 6] =
    ["clock_drift", "bad_signature", "no_right", "revoked", "malformed", "quota"];

/// The kinds of `cosmic_net_refused`.
pub(crate) const ABUSE_KINDS: [&str; 4] =
    ["bans", "rate_limited", "connections_denied", "bad_frames"];

/// The label of `cosmic_net_refused`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AbuseLabels {
    pub(crate) kind: &'static str,
}

/// The latency histograms, one per label set.
pub(crate) type LatencyFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Registers a new metric of type `M` as `name`, described by `help`, and hands it back.
fn register<M>(registry: &mut Registry, name: &str, help: &str) -> M
where
    M: Default + Clone + prometheus_client::registry::Metric,
{
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

/// Registers the HTTP latency histograms.
fn register_latency(registry: &mut Registry) -> LatencyFamily {
    let family = LatencyFamily::new_with_constructor(latency_histogram as fn() -> _);
    registry.register(
        "http_request_duration_seconds",
        "Time to answer an HTTP API request (to the response head)",
        family.clone(),
    );
    family
}

/// The node's metrics and the registry that encodes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) http_requests: Family<HttpLabels, Counter>,
    pub(crate) http_latency: LatencyFamily,
    pub(crate) blob_bytes: Family<DirectionLabels, Counter>,
    pub(crate) peers_connected: Gauge,
    pub(crate) connections: Gauge,
    pub(crate) spaces: Gauge,
    pub(crate) entries: Gauge,
    pub(crate) last_seq: Gauge<u64, AtomicU64>,
    pub(crate) gossip_verdicts: Family<VerdictLabels, Total>,
    pub(crate) sync_sessions: Total,
    pub(crate) gossip_lost: Family<LossLabels, Total>,
    pub(crate) gossip_loss_repairs: Total,
    pub(crate) reads_refused: Total,
    pub(crate) bindings_refused: Total,
    pub(crate) gossip_entries: Family<DirectionLabels, Total>,
    pub(crate) gossip_batches_published: Total,
    pub(crate) requests_refused_busy: Total,
    pub(crate) store_refusals: StoreRefusals,
    pub(crate) net_abuse: Family<AbuseLabels, Total>,
    pub(crate) sync_bytes: Total,
    pub(crate) uptime_seconds: Gauge<u64, AtomicU64>,
    pub(crate) clock_correction: Gauge<f64, AtomicU64>,
}

/// What the store refused or removed, by kind (see `cosmic_store::Refusals`).
#[derive(Debug)]
pub(crate) struct StoreRefusals {
    /// Entries refused, by reason ([`REFUSAL_REASONS`]).
    pub(crate) entries: Family<LossLabels, Total>,
    /// Entries held that a later revocation ended.
    pub(crate) entries_cut_off: Total,
    /// Capability statements refused.
    pub(crate) statements: Total,
    /// Capability statements held that a later revocation ended.
    pub(crate) statements_cut_off: Total,
}

impl StoreRefusals {
    fn register(r: &mut Registry) -> Self {
        Self {
            entries: register(
                r,
                "entries_refused",
                "Entries from peers or from clients that sign their own, refused since the node \
         started, by reason (clock_drift, bad_signature, no_right, revoked: a revocation \
         ended the author's right, malformed, quota)",
            ),
            entries_cut_off: register(
                r,
                "entries_cut_off",
                "Entries held that a revocation which arrived later ended, removed from the store",
            ),
            statements: register(
                r,
                "statements_refused",
                "Capability statements refused because their issuer may not issue them (not an \
         admin at their time, or a revoked admin)",
            ),
            statements_cut_off: register(
                r,
                "statements_cut_off",
                "Capability statements held (a revoked admin's grants) that a revocation which \
         arrived later ended, removed from the store",
            ),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `cosmic` prefix.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("cosmic");
        let r = &mut registry;
        let mut metrics = Self {
            http_requests: register(r, "http_requests", "HTTP API requests answered"),
            http_latency: register_latency(r),
            blob_bytes: register(r, "blob_bytes", "Blob bytes through the HTTP API"),
            peers_connected: register(r, "peers_connected", "Peers with an open connection"),
            connections: register(r, "net_connections", "Open peer-to-peer connections"),
            spaces: register(r, "store_spaces", "Spaces held by the store"),
            entries: register(r, "store_entries", "Entries (winning fields) in the store"),
            last_seq: register(r, "store_last_seq", "Last local change sequence number"),
            gossip_verdicts: register(
                r,
                "gossip_messages",
                "Gossip messages (batches of entries) judged by replication so far, by verdict",
            ),
            gossip_lost: register(
                r,
                "gossip_lost",
                "Gossip messages lost so far, by where the loss was seen; each started a repair",
            ),
            gossip_loss_repairs: register(
                r,
                "gossip_loss_repairs",
                "Reconciliations started so far to repair a gossip loss",
            ),
            reads_refused: register(
                r,
                "reads_refused",
                "Times a restricted space was not shared with a peer that may not read it",
            ),
            bindings_refused: register(
                r,
                "bindings_refused",
                "Presentations of peer bindings refused (forged, expired, for another node, malformed)",
            ),
            gossip_entries: register(
                r,
                "gossip_entries",
                "Entries carried by gossip batches so far: published, received, or received and accepted",
            ),
            gossip_batches_published: register(
                r,
                "gossip_batches_published",
                "Gossip batches published so far",
            ),
            requests_refused_busy: register(
                r,
                "net_requests_refused_busy",
                "Inbound requests refused so far because their handler's queue was full",
            ),
            store_refusals: StoreRefusals::register(r),
            net_abuse: register(
                r,
                "net_refused",
                "What the network layer refused or punished since the node started, by kind: \
             bans (peers banned), rate_limited (requests over the per-peer rate), \
             connections_denied (over the connection limits or from banned peers), \
             bad_frames (unreadable frames, each a strike)",
            ),
            sync_sessions: register(r, "sync_sessions", "Reconciliation sessions run so far"),
            sync_bytes: register(r, "sync_bytes", "Bytes exchanged by replication so far"),
            uptime_seconds: register(r, "uptime_seconds", "Seconds since the node started"),
            clock_correction: register(
                r,
                "clock_correction_seconds",
                "How far ahead of this machine's wall clock the node stamps and judges entries, \
             because most of its peers' clocks are ahead (0: it trusts its own)",
            ),
            registry: Registry::default(),
        };
        metrics.registry = registry;
        metrics.with_known_labels()
    }

    /// Makes the label sets known in advance show from the start, at zero.
    fn with_known_labels(self) -> Self {
        for direction in ["in", "out"] {
            let _ = self.blob_bytes.get_or_create(&DirectionLabels { direction });
        }
        for verdict in ["accept", "reject", "ignore"] {
            let _ = self.gossip_verdicts.get_or_create(&VerdictLabels { verdict });
        }
        for kind in cosmic_sync::LossKind::ALL {
            let _ = self.gossip_lost.get_or_create(&LossLabels { reason: kind.as_str() });
        }
        for reason in REFUSAL_REASONS {
            let _ = self.store_refusals.entries.get_or_create(&LossLabels { reason });
        }
        for kind in ABUSE_KINDS {
            let _ = self.net_abuse.get_or_create(&AbuseLabels { kind });
        }
        self
    }

    /// The metrics in the Prometheus text format.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
