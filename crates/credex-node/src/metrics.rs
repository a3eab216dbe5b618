//! Prometheus metrics: what an operator graphs and alerts on. Served in the OpenMetrics text
//! format at `/metrics` on the admin listener ([`crate::admin`]); README "Metrics" lists every
//! name and label, `deploy/prometheus/` alerts on them.
//!
//! - [`Metrics`]: the node's own families (`credex_*`) and the process's (`process_*`, read
//!   from `/proc/self` at each scrape by `ProcessCollector`).
//! - [`GrpcMetricsLayer`]: a tower layer on the gRPC server counting every request by method
//!   and status code, with its latency.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::ingest::IngestOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabel {
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// One origin's gauges, as [`Metrics::set_origin`] takes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OriginGauges {
    /// Entries in the log.
    pub size: u64,
    /// Entries in the view.
    pub indexed: u64,
    /// Entries behind the largest checkpoint seen.
    pub lag: u64,
    pub forked: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabel {
    witness: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListLabel {
    list: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabel {
    method: Cow<'static, str>,
    code: &'static str,
}

/// Buckets of the latency histograms, 1 ms to about 33 s: a publish or an apply is a
/// sub-second disk write normally, and a slow disk or a stalled witness shows in the top ones.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Buckets of the propagation age, 10 ms to about 11 days: live sync delivers in well under a
/// second, a node back from an outage catches up on entries days old.
fn age_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 15))
}

/// The node's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    appended: Family<OriginLabel, Counter>,
    quarantined: Family<OriginLabel, Counter>,
    duplicates: Family<OriginLabel, Counter>,
    invalid: Family<OriginLabel, Counter>,
    bad_checkpoints: Family<OriginLabel, Counter>,
    published: Counter,
    steps_back: Counter,
    publish_clock_behind: Gauge,
    clock_ahead_of_witnesses: Gauge,
    clock_behind_witnesses: Gauge,
    witness_clocks: Gauge,
    log_size: Family<OriginLabel, Gauge>,
    lag: Family<OriginLabel, Gauge>,
    backlog: Family<OriginLabel, Gauge>,
    forked: Family<OriginLabel, Gauge>,
    peer_connected: Family<PeerLabel, Gauge>,
    handshakes_dropped: Family<ReasonLabel, Counter>,
    handshakes_pending: Gauge,
    publish_seconds: Histogram,
    apply_seconds: Family<OriginLabel, Histogram>,
    propagation_seconds: Family<OriginLabel, Histogram>,
    cosignature_seconds: Family<WitnessLabel, Histogram>,
    grpc_seconds: Family<GrpcLabel, Histogram>,
    view_records: Family<ListLabel, Gauge>,
    view_subjects: Gauge,
    view_excluded: Gauge,
    storage_full: Gauge,
    storage_failed: Gauge,
    storage_free: Gauge,
    index_runs: Gauge,
    index_run_bytes: Gauge,
    index_memory_bytes: Gauge,
}

impl Metrics {
    pub fn new(city: &str) -> Metrics {
        let mut root = Registry::with_labels(
            [(Cow::Borrowed("city"), Cow::Owned(city.to_owned()))].into_iter(),
        );
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("credex");
        let appended = Family::default();
        let quarantined = Family::default();
        let duplicates = Family::default();
        let invalid = Family::default();
        let bad_checkpoints = Family::default();
        let published = Counter::default();
        let steps_back = Counter::default();
        let publish_clock_behind = Gauge::default();
        let clock_ahead_of_witnesses = Gauge::default();
        let clock_behind_witnesses = Gauge::default();
        let witness_clocks = Gauge::default();
        let log_size = Family::default();
        let lag = Family::default();
        let backlog = Family::default();
        let forked = Family::default();
        let peer_connected = Family::default();
        let handshakes_dropped = Family::default();
        let handshakes_pending = Gauge::default();
        let publish_seconds = latency_buckets();
        let apply_seconds = Family::new_with_constructor(latency_buckets as fn() -> Histogram);
        let propagation_seconds = Family::new_with_constructor(age_buckets as fn() -> Histogram);
        let cosignature_seconds =
            Family::new_with_constructor(latency_buckets as fn() -> Histogram);
        let grpc_seconds = Family::new_with_constructor(latency_buckets as fn() -> Histogram);
        let view_records = Family::default();
        let view_subjects = Gauge::default();
        let view_excluded = Gauge::default();
        let storage_full = Gauge::default();
        let storage_failed = Gauge::default();
        let storage_free = Gauge::default();
        let index_runs = Gauge::default();
        let index_run_bytes = Gauge::default();
        let index_memory_bytes = Gauge::default();
        registry.register(
            "entries_appended",
            "Entries appended from peers",
            appended.clone(),
        );
        registry.register(
            "entries_quarantined",
            "Entries refused as not authentic",
            quarantined.clone(),
        );
        registry.register(
            "entries_duplicate",
            "Entries a peer sent that this node already held, byte for byte (copies relayed by \
             more than one peer)",
            duplicates.clone(),
        );
        registry.register(
            "entries_invalid",
            "Entries under a signed root failing their own checks (signature, origin and seq, record), kept out of the view",
            invalid.clone(),
        );
        registry.register(
            "checkpoints_invalid",
            "Checkpoints whose signatures did not verify",
            bad_checkpoints.clone(),
        );
        registry.register(
            "records_published",
            "Records this city published",
            published.clone(),
        );
        registry.register(
            "view_steps_back",
            "Times the clock moved back over a day the view had reached and the view was \
             stepped back to the clock's date (the changes that makes recorded on View.Watch)",
            steps_back.clone(),
        );
        registry.register(
            "publish_clock_behind_seconds",
            "How far this node's clock read behind its own log's last entry when it last \
             published: entries are stamped just after that entry until the clock passes it \
             (a clock put back; 0 normally)",
            publish_clock_behind.clone(),
        );
        registry.register(
            "clock_ahead_of_witnesses_seconds",
            "This node's clock less the latest of its witnesses' clocks, as their cosignatures of \
             its checkpoints give them (negative: behind); publishing is refused more than an \
             hour ahead, and the view takes the latest witness's day",
            clock_ahead_of_witnesses.clone(),
        );
        registry.register(
            "clock_behind_witnesses_seconds",
            "The earliest of this node's witnesses' clocks less its own, as their cosignatures of \
             its checkpoints give them (negative: not behind them all); more than an hour \
             behind with every other member's witness heard, the view takes the earliest \
             witness's day and publishes are stamped with its time",
            clock_behind_witnesses.clone(),
        );
        registry.register(
            "witness_clocks",
            "Witnesses whose clocks this node knows, from their cosignatures of its checkpoints \
             within the last day; under two, nothing checks its clock: publishing stamps and the \
             view's day go by it alone",
            witness_clocks.clone(),
        );
        registry.register("log_size", "Entries held per origin", log_size.clone());
        registry.register(
            "origin_lag",
            "Entries behind the largest checkpoint seen per origin",
            lag.clone(),
        );
        registry.register(
            "view_backlog",
            "Entries in the log whose own checks have not run yet, so not in the view",
            backlog.clone(),
        );
        registry.register(
            "origin_forked",
            "1 when the origin equivocated",
            forked.clone(),
        );
        registry.register(
            "peer_connected",
            "1 while the sync stream to a peer is up",
            peer_connected.clone(),
        );
        registry.register(
            "tls_handshakes_dropped",
            "TLS handshakes ended without a connection: timeout, failed, source_limit or \
             global_limit (evicted to admit a newer connection)",
            handshakes_dropped.clone(),
        );
        registry.register(
            "tls_handshakes_pending",
            "TLS handshakes in flight",
            handshakes_pending.clone(),
        );
        registry.register(
            "publish_seconds",
            "Publish requests from queueing to durable (group commit included)",
            publish_seconds.clone(),
        );
        registry.register(
            "apply_seconds",
            "Receive path: appending one range of a peer's entries under a signed root, durable",
            apply_seconds.clone(),
        );
        registry.register(
            "propagation_seconds",
            "Age of an entry when it reached this node's view: its origin's logged_at to indexed",
            propagation_seconds.clone(),
        );
        registry.register(
            "cosignature_seconds",
            "Asking one witness to cosign this city's checkpoint, to its cosignature",
            cosignature_seconds.clone(),
        );
        registry.register(
            "grpc_request_seconds",
            "gRPC requests served, by method and status code, from request to the response's \
             end (a stream's whole life)",
            grpc_seconds.clone(),
        );
        registry.register(
            "view_records",
            "Records in force in this node's view today, by list",
            view_records.clone(),
        );
        registry.register(
            "view_subjects",
            "Subjects with a record in force in this node's view today",
            view_subjects.clone(),
        );
        registry.register(
            "view_excluded",
            "Records in the view's indexes not in force today (expired, repaired, revoked, not recognised)",
            view_excluded.clone(),
        );
        registry.register(
            "storage_full",
            "1 while the store's volume has less free space than storage.min_free_mb: writes \
             are refused, reads served",
            storage_full.clone(),
        );
        registry.register(
            "storage_failed",
            "1 while the store's database handle has failed (a write met a full disk) and \
             waits to be reopened, which the next write does once there is room",
            storage_failed.clone(),
        );
        registry.register(
            "storage_free_bytes",
            "Bytes free on the store's volume when last looked at",
            storage_free.clone(),
        );
        registry.register(
            "view_index_runs",
            "Sorted run files of the view's indexes (merged in the background into about \
             log2(entries / storage.index_mb) of them)",
            index_runs.clone(),
        );
        registry.register(
            "view_index_run_bytes",
            "Bytes of the view index's run files",
            index_run_bytes.clone(),
        );
        registry.register(
            "view_index_memory_bytes",
            "View index writes held in memory, journalled, until they are written as a run \
             (bounded by storage.index_mb)",
            index_memory_bytes.clone(),
        );
        Metrics {
            registry: Arc::new(root),
            appended,
            quarantined,
            duplicates,
            invalid,
            bad_checkpoints,
            published,
            steps_back,
            publish_clock_behind,
            clock_ahead_of_witnesses,
            clock_behind_witnesses,
            witness_clocks,
            log_size,
            lag,
            backlog,
            forked,
            peer_connected,
            handshakes_dropped,
            handshakes_pending,
            publish_seconds,
            apply_seconds,
            propagation_seconds,
            cosignature_seconds,
            grpc_seconds,
            view_records,
            view_subjects,
            view_excluded,
            storage_full,
            storage_failed,
            storage_free,
            index_runs,
            index_run_bytes,
            index_memory_bytes,
        }
    }

    /// Sets the `credex_storage_*` gauges from the store's last look at its volume, and the
    /// `credex_view_index_*` ones from what its view index holds.
    pub(crate) fn set_storage(
        &self,
        space: &credex_store::Space,
        index: &credex_store::IndexSizes,
    ) {
        self.storage_full.set(i64::from(space.full()));
        self.storage_failed.set(i64::from(space.failed.is_some()));
        self.storage_free
            .set(i64::try_from(space.free).unwrap_or(i64::MAX));
        self.index_runs
            .set(i64::try_from(index.runs).unwrap_or(i64::MAX));
        self.index_run_bytes
            .set(i64::try_from(index.run_bytes).unwrap_or(i64::MAX));
        self.index_memory_bytes
            .set(i64::try_from(index.memory_bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn observe_publish(&self, took: Duration) {
        self.publish_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn observe_apply(&self, origin: &str, took: Duration) {
        self.apply_seconds
            .get_or_create(&OriginLabel {
                origin: origin.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Ages, in milliseconds, of `origin`'s entries that just reached the view.
    pub(crate) fn observe_propagation(&self, origin: &str, ages_ms: impl Iterator<Item = i64>) {
        let histogram = self.propagation_seconds.get_or_create(&OriginLabel {
            origin: origin.to_owned(),
        });
        for age in ages_ms {
            // A peer's clock slightly ahead of ours is no negative age.
            histogram.observe(age.max(0) as f64 / 1000.0);
        }
    }

    pub(crate) fn observe_cosignature(&self, witness: &str, took: Duration) {
        self.cosignature_seconds
            .get_or_create(&WitnessLabel {
                witness: witness.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    fn observe_grpc(&self, method: Cow<'static, str>, code: &'static str, took: Duration) {
        self.grpc_seconds
            .get_or_create(&GrpcLabel { method, code })
            .observe(took.as_secs_f64());
    }

    /// The view's counts, set when they are computed (a scan of the view, done per scrape at
    /// most every few seconds by the admin listener).
    pub(crate) fn set_view_counts(&self, counts: &ViewCountsByList) {
        for (list, n) in &counts.records {
            self.view_records
                .get_or_create(&ListLabel { list })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.view_subjects
            .set(i64::try_from(counts.subjects).unwrap_or(i64::MAX));
        self.view_excluded
            .set(i64::try_from(counts.excluded).unwrap_or(i64::MAX));
    }

    pub(crate) fn count_ingest(&self, origin: &str, outcome: &IngestOutcome) {
        let label = OriginLabel {
            origin: origin.to_owned(),
        };
        self.appended.get_or_create(&label).inc_by(outcome.appended);
        self.quarantined
            .get_or_create(&label)
            .inc_by(outcome.quarantined);
        self.duplicates
            .get_or_create(&label)
            .inc_by(outcome.duplicates);
    }

    pub(crate) fn count_invalid(&self, origin: &str, n: u64) {
        self.invalid
            .get_or_create(&OriginLabel {
                origin: origin.to_owned(),
            })
            .inc_by(n);
    }

    pub(crate) fn count_bad_checkpoint(&self, origin: &str) {
        self.bad_checkpoints
            .get_or_create(&OriginLabel {
                origin: origin.to_owned(),
            })
            .inc();
    }

    pub(crate) fn count_published(&self, n: u64) {
        self.published.inc_by(n);
    }

    pub(crate) fn count_step_back(&self) {
        self.steps_back.inc();
    }

    /// This node's clock against its witnesses': how far it reads ahead of the latest of
    /// theirs and behind the earliest (ms; negative: not so).
    pub(crate) fn set_clock_against_witnesses(&self, ahead_ms: i64, behind_ms: i64) {
        self.clock_ahead_of_witnesses.set(ahead_ms / 1000);
        self.clock_behind_witnesses.set(behind_ms / 1000);
    }

    /// How many witnesses' clocks this node knows (judges its own by two or more).
    pub(crate) fn set_witness_clocks(&self, known: usize) {
        self.witness_clocks
            .set(i64::try_from(known).unwrap_or(i64::MAX));
    }

    pub(crate) fn set_publish_clock_behind(&self, behind_ms: i64) {
        self.publish_clock_behind.set(behind_ms / 1000);
    }

    pub(crate) fn set_origin(&self, origin: &str, figures: OriginGauges) {
        let label = OriginLabel {
            origin: origin.to_owned(),
        };
        self.log_size.get_or_create(&label).set(figures.size as i64);
        self.lag.get_or_create(&label).set(figures.lag as i64);
        self.backlog
            .get_or_create(&label)
            .set(figures.size.saturating_sub(figures.indexed) as i64);
        let forked = figures.forked;
        self.forked.get_or_create(&label).set(i64::from(forked));
        // Counters of what goes wrong start at 0 for every origin held, so that an alert on
        // their increase fires at the first one rather than from the second.
        for counter in [&self.invalid, &self.quarantined, &self.bad_checkpoints] {
            counter.get_or_create(&label).inc_by(0);
        }
    }

    pub(crate) fn set_peer_connected(&self, peer: &str, connected: bool) {
        self.peer_connected
            .get_or_create(&PeerLabel {
                peer: peer.to_owned(),
            })
            .set(i64::from(connected));
    }

    pub(crate) fn count_handshake_dropped(&self, reason: &'static str) {
        self.handshakes_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn set_handshakes_pending(&self, n: usize) {
        self.handshakes_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The view's counts as the metrics take them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewCountsByList {
    /// Records in force by list name (`red`, `black`, `watch`, `penalty`), every list present.
    pub records: Vec<(&'static str, u64)>,
    pub subjects: u64,
    pub excluded: u64,
}

// ------------------------------------------------------------------------ process

/// `process_*` in the names and meanings of the Prometheus client libraries' process
/// collectors, read from `/proc/self` at each scrape (nothing on a system without it).
#[derive(Debug, Default)]
struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcessFigures {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    threads: u64,
    start_time_seconds: f64,
    open_fds: u64,
    max_fds: Option<u64>,
}

impl ProcessFigures {
    fn read() -> Option<ProcessFigures> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        Self::parse(&stat, &status, &boot, ticks, open_fds, max_fds)
    }

    /// `stat` is `/proc/self/stat` (proc(5): fields after the parenthesised command name,
    /// which may itself hold spaces and parentheses), `status` `/proc/self/status`, `boot`
    /// `/proc/stat`; `ticks` the clock ticks per second its times count in.
    fn parse(
        stat: &str,
        status: &str,
        boot: &str,
        ticks: f64,
        open_fds: u64,
        max_fds: Option<u64>,
    ) -> Option<ProcessFigures> {
        let after_name = &stat[stat.rfind(')')? + 1..];
        // Field n of proc(5) (1-based) is token n - 3 here: pid and comm come before.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
                .map(|k| k * 1024)
        };
        let boot_time: u64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(ProcessFigures {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            threads: field(20)?,
            start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
            resident_bytes: kib("VmRSS:")?,
            virtual_bytes: kib("VmSize:")?,
            open_fds,
            max_fds,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = ProcessFigures::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size",
                Some(p.resident_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size",
                Some(p.virtual_bytes),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                Some(p.open_fds),
            ),
            (
                "process_max_fds",
                "Limit of open file descriptors",
                p.max_fds,
            ),
            ("process_threads", "OS threads", Some(p.threads)),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let start = ConstGauge::new(p.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

// ------------------------------------------------------------------------ gRPC

/// Counts every gRPC request the server answers in `credex_grpc_request_seconds`, by method
/// and status code. The code is the `grpc-status` of the response's headers (an error answered
/// at once) or trailers (the end of a response body); a body dropped before its trailers (the
/// client went away) counts as `Cancelled`.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Metrics,
}

/// The method label of a request path: `credex.v1.View/Lookup`. Paths outside the services
/// this node serves share one label, so a client cannot grow the label set.
fn method_label(path: &str) -> Cow<'static, str> {
    let name = path.strip_prefix('/').unwrap_or(path);
    let known = ["credex.v1.", "grpc.health.v1.", "grpc.reflection."];
    let well_formed = name.split('/').count() == 2 && name.len() <= 128;
    if well_formed && known.iter().any(|p| name.starts_with(p)) {
        Cow::Owned(name.to_owned())
    } else {
        Cow::Borrowed("other")
    }
}

fn code_label(value: Option<&http::HeaderValue>) -> Option<&'static str> {
    let code: i32 = value?.to_str().ok()?.parse().ok()?;
    Some(code_name(tonic::Code::from_i32(code)))
}

/// The canonical gRPC name of a status code (`OK`, `INVALID_ARGUMENT`, ...), as the status
/// codes spec, `grpcurl` and these metrics' `code` label write it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let (parts, body) = response.into_parts();
            let mut pending = Some(PendingRequest {
                metrics,
                method,
                started,
            });
            if let Some(code) = code_label(parts.headers.get("grpc-status"))
                && let Some(p) = pending.take()
            {
                p.finish(code);
            }
            Ok(http::Response::from_parts(
                parts,
                ObservedBody {
                    inner: body,
                    pending,
                },
            ))
        })
    }
}

/// A request not yet counted: its code comes with the response's trailers.
#[derive(Debug)]
struct PendingRequest {
    metrics: Metrics,
    method: Cow<'static, str>,
    started: Instant,
}

impl PendingRequest {
    fn finish(self, code: &'static str) {
        self.metrics
            .observe_grpc(self.method, code, self.started.elapsed());
    }
}

/// A response body that counts its request when its trailers pass (or when it is dropped).
#[derive(Debug)]
pub struct ObservedBody<B> {
    inner: B,
    pending: Option<PendingRequest>,
}

impl<B> http_body::Body for ObservedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|t| code_label(t.get("grpc-status")).unwrap_or("UNKNOWN")),
            Poll::Ready(Some(Err(_))) => Some("INTERNAL"),
            Poll::Ready(None) => Some("UNKNOWN"),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(p) = this.pending.take()
        {
            p.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.finish("CANCELLED");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_the_city_and_per_origin_figures() {
        let metrics = Metrics::new("changsha");
        metrics.count_ingest(
            "wuhan",
            &IngestOutcome {
                appended: 3,
                quarantined: 1,
                duplicates: 2,
                ..Default::default()
            },
        );
        metrics.set_origin(
            "wuhan",
            OriginGauges {
                size: 3,
                indexed: 1,
                lag: 2,
                forked: false,
            },
        );
        metrics.set_peer_connected("wuhan", true);
        let text = metrics.encode();
        for line in [
            r#"credex_entries_appended_total{city="changsha",origin="wuhan"} 3"#,
            r#"credex_entries_quarantined_total{city="changsha",origin="wuhan"} 1"#,
            r#"credex_entries_duplicate_total{city="changsha",origin="wuhan"} 2"#,
            r#"credex_log_size{city="changsha",origin="wuhan"} 3"#,
            r#"credex_origin_lag{city="changsha",origin="wuhan"} 2"#,
            r#"credex_view_backlog{city="changsha",origin="wuhan"} 2"#,
            r#"credex_peer_connected{city="changsha",peer="wuhan"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn process_figures_parse_proc_self() {
        // A command name with a space and a parenthesis, as proc(5) allows.
        let stat = "4242 (credexd (x)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    250 50 0 0 20 0 7 0 12345 1000000 2000 18446744073709551615";
        let status = "Name:\tcredexd\nVmSize:\t  204800 kB\nVmRSS:\t   51200 kB\nThreads:\t7\n";
        let boot = "cpu  1 2 3\nbtime 1764900000\nprocesses 99\n";
        let figures = ProcessFigures::parse(stat, status, boot, 100.0, 12, Some(1024)).unwrap();
        assert_eq!(
            figures,
            ProcessFigures {
                cpu_seconds: 3.0,
                resident_bytes: 51_200 * 1024,
                virtual_bytes: 204_800 * 1024,
                threads: 7,
                start_time_seconds: 1_764_900_123.45,
                open_fds: 12,
                max_fds: Some(1024),
            }
        );
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let text = Metrics::new("wuhan").encode();
        for family in [
            "process_cpu_seconds_total{city=\"wuhan\"}",
            "process_resident_memory_bytes{city=\"wuhan\"}",
            "process_open_fds{city=\"wuhan\"}",
            "process_start_time_seconds{city=\"wuhan\"}",
        ] {
            assert!(text.contains(family), "{family} in\n{text}");
        }
    }

    #[test]
    fn method_labels_are_the_served_methods_or_other() {
        for (path, label) in [
            ("/credex.v1.View/Lookup", "credex.v1.View/Lookup"),
            (
                "/grpc.health.v1.Health/Check",
                "grpc.health.v1.Health/Check",
            ),
            (
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            ),
            ("/credex.v1.View/Lookup/extra", "other"),
            ("/random.Service/Method", "other"),
            ("/", "other"),
        ] {
            assert_eq!(method_label(path), label, "{path}");
        }
    }
}
