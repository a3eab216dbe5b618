//! Prometheus metrics: what an operator graphs and alerts on. Served as text on the
//! optional `metrics_listen` address (plain HTTP; it carries no record data).

use std::borrow::Cow;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::debug;

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

/// The node's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    appended: Family<OriginLabel, Counter>,
    quarantined: Family<OriginLabel, Counter>,
    invalid: Family<OriginLabel, Counter>,
    bad_checkpoints: Family<OriginLabel, Counter>,
    published: Counter,
    log_size: Family<OriginLabel, Gauge>,
    lag: Family<OriginLabel, Gauge>,
    backlog: Family<OriginLabel, Gauge>,
    forked: Family<OriginLabel, Gauge>,
    peer_connected: Family<PeerLabel, Gauge>,
    handshakes_dropped: Family<ReasonLabel, Counter>,
    handshakes_pending: Gauge,
}

impl Metrics {
    pub fn new(city: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "credex",
            [(Cow::Borrowed("city"), Cow::Owned(city.to_owned()))].into_iter(),
        );
        let appended = Family::default();
        let quarantined = Family::default();
        let invalid = Family::default();
        let bad_checkpoints = Family::default();
        let published = Counter::default();
        let log_size = Family::default();
        let lag = Family::default();
        let backlog = Family::default();
        let forked = Family::default();
        let peer_connected = Family::default();
        let handshakes_dropped = Family::default();
        let handshakes_pending = Gauge::default();
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
        Metrics {
            registry: Arc::new(registry),
            appended,
            quarantined,
            invalid,
            bad_checkpoints,
            published,
            log_size,
            lag,
            backlog,
            forked,
            peer_connected,
            handshakes_dropped,
            handshakes_pending,
        }
    }

    pub(crate) fn count_ingest(&self, origin: &str, outcome: &IngestOutcome) {
        let label = OriginLabel {
            origin: origin.to_owned(),
        };
        self.appended.get_or_create(&label).inc_by(outcome.appended);
        self.quarantined
            .get_or_create(&label)
            .inc_by(outcome.quarantined);
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

/// Serves `GET /metrics` (any path, in fact) until `shutdown` resolves. A minimal HTTP/1.0
/// responder: one request per connection, bounded read, no keep-alive.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (mut socket, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut buf))
                    .await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return;
            }
            let body = metrics.encode();
            let response = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = socket.write_all(response.as_bytes()).await {
                debug!(%peer, error = %e, "metrics write failed");
            }
        });
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
            r#"credex_log_size{city="changsha",origin="wuhan"} 3"#,
            r#"credex_origin_lag{city="changsha",origin="wuhan"} 2"#,
            r#"credex_view_backlog{city="changsha",origin="wuhan"} 2"#,
            r#"credex_peer_connected{city="changsha",peer="wuhan"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[tokio::test]
    async fn the_endpoint_serves_the_text_format() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new("wuhan");
        metrics.count_published(5);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics, async {
            let _ = stopped.await;
        }));
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        socket.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
        assert!(
            response.contains(r#"credex_records_published_total{city="wuhan"} 5"#),
            "{response}"
        );
        let _ = stop.send(());
        server.await.unwrap();
    }
}
