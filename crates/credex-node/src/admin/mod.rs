//! The admin HTTP listener (config `[admin]`): `/metrics`, `/healthz`, `/readyz` and the web
//! console ([`console`]: `/query`, `/operations`, `/audit`) on one axum router, served on its own port,
//! loopback by default.
//!
//! Beyond loopback it serves only a client that proves who it is (the config refuses anything
//! else): HTTPS whose client must hold a certificate the consortium CA issued to this city's
//! `operator` (checked right after the handshake, before any request is read), and/or a bearer
//! token every request carries. It reads the engine through the same methods the gRPC
//! adapters use and changes nothing.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use credex_core::consortium::Consortium;
use credex_core::pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::ViewCountsByList;
use crate::sync::PeerTable;
use crate::tls::{self, Identity, Role};

pub mod console;

/// The OpenMetrics text format, which `prometheus_client`'s encoder writes (`# EOF` ends it).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// TLS handshakes in flight on the admin port; an operator's scraper and browser need a few.
const MAX_PENDING_HANDSHAKES: usize = 64;
/// Shortest bearer token accepted: a token is a secret, not a password to remember.
const MIN_TOKEN_CHARS: usize = 16;

/// What the handlers read.
#[derive(Debug)]
pub struct AdminState {
    pub engine: Arc<Engine>,
    pub peers: Arc<PeerTable>,
    /// True once the node is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// `admin.ready_max_lag`.
    pub ready_max_lag: u64,
    /// The trust root the audit page verifies against (the node's consortium file).
    pub consortium: Arc<Consortium>,
}

impl AdminState {
    pub fn new(
        engine: Arc<Engine>,
        peers: Arc<PeerTable>,
        shutdown: watch::Receiver<bool>,
        ready_max_lag: u64,
        consortium: Arc<Consortium>,
    ) -> Self {
        Self {
            engine,
            peers,
            shutdown,
            ready_max_lag,
            consortium,
        }
    }
}

/// Who may use the admin listener, from `[admin]`.
#[derive(Clone)]
pub struct Access {
    /// HTTPS, admitting only `operator`.
    tls: Option<(Arc<ServerConfig>, Identity)>,
    token: Option<Arc<str>>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("client_tls", &self.tls.as_ref().map(|(_, who)| who))
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Access {
    /// Reads the token file and the TLS material `config` names.
    pub fn from_config(config: &Config) -> anyhow::Result<Access> {
        let tls = if config.admin.client_tls {
            let mut server = (*tls::load_server_config(&config.tls)
                .context("loading TLS material for admin.client_tls")?)
            .clone();
            server.alpn_protocols = vec![b"http/1.1".to_vec()];
            let operator =
                Identity::new(&config.consortium.name, &config.node.city, Role::Operator)?;
            Some((Arc::new(server), operator))
        } else {
            None
        };
        let token = match &config.admin.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading admin.token_file {}", path.display()))?;
                let token = text.trim();
                if token.chars().count() < MIN_TOKEN_CHARS
                    || !token.chars().all(|c| c.is_ascii_graphic())
                {
                    anyhow::bail!(
                        "admin.token_file {}: the token must be at least {MIN_TOKEN_CHARS} \
                         printable ASCII characters without spaces (e.g. `openssl rand -hex 32`)",
                        path.display()
                    );
                }
                Some(Arc::from(token))
            }
            None => None,
        };
        Ok(Access {
            tls,
            token,
            handshake_timeout: config.limits.handshakes().timeout,
        })
    }

    /// No TLS, no token: loopback only (tests, and the default).
    pub fn open() -> Access {
        Access {
            tls: None,
            token: None,
            handshake_timeout: Duration::from_secs(3),
        }
    }
}

/// The router, behind the token check when there is a token.
pub fn router(state: Arc<AdminState>, access: &Access) -> Router {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(console::index))
        .route("/query", get(console::query))
        .route("/operations", get(console::operations))
        .route(
            "/audit",
            get(console::audit_form)
                .post(console::audit_upload)
                .layer(DefaultBodyLimit::max(console::AUDIT_UPLOAD_LIMIT)),
        )
        .with_state(state);
    match &access.token {
        Some(token) => router.layer(middleware::from_fn_with_state(token.clone(), check_token)),
        None => router,
    }
}

/// Serves the admin router on `listener` until `shutdown` resolves, then lets requests in
/// flight finish.
pub async fn serve(
    listener: TcpListener,
    access: Access,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(state, &access);
    info!(addr = ?listener.local_addr().ok(), https = access.tls.is_some(), token = access.token.is_some(), "admin listener serving");
    match access.tls {
        Some((config, operator)) => {
            let listener = TlsListener {
                tcp: listener,
                acceptor: TlsAcceptor::from(config),
                operator,
                timeout: access.handshake_timeout,
                handshakes: JoinSet::new(),
            };
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

async fn check_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same_secret(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this endpoint needs Authorization: Bearer <the token in admin.token_file>\n",
        )
            .into_response(),
    }
}

/// Equality whose time does not depend on where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> &'static str {
    "alive\n"
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    refresh_view_counts(&state);
    // Sets the storage gauges; a failure to look shows as their last values.
    let _ = state.engine.storage();
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.engine.metrics().encode(),
    )
        .into_response()
}

/// Sets `credex_view_*` from the view's counts, kept by the writer (`engine::counts`).
fn refresh_view_counts(state: &AdminState) {
    match state.engine.view_counts() {
        Ok(tally) => {
            let lists = [
                pb::ListKind::Red,
                pb::ListKind::Black,
                pb::ListKind::Watch,
                pb::ListKind::Penalty,
            ];
            state.engine.metrics().set_view_counts(&ViewCountsByList {
                records: lists
                    .into_iter()
                    .map(|l| (list_name(l), tally.by_list.get(&l).copied().unwrap_or(0)))
                    .collect(),
                subjects: tally.counts.subjects,
                excluded: tally.counts.excluded,
            });
        }
        Err(e) => warn!(error = %e, "reading the view's counts for metrics"),
    }
}

/// The lowercase list name used in metrics and the config (`black`, ...).
pub fn list_name(list: pb::ListKind) -> &'static str {
    match list {
        pb::ListKind::Red => "red",
        pb::ListKind::Black => "black",
        pb::ListKind::Watch => "watch",
        pb::ListKind::Penalty => "penalty",
        pb::ListKind::Unspecified => "unspecified",
    }
}

/// `/readyz`: 200 when the node serves, its store answers and takes writes (its volume above
/// `storage.min_free_mb`, its handle not failed), and every origin's view is within
/// `admin.ready_max_lag` entries of the largest checkpoint seen of it; else 503 with the
/// reasons. A forked origin does not count: the node has stopped taking it on purpose, it
/// will not catch up by waiting, and `credex_origin_forked` alerts on it.
async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let reasons = not_ready(&state).await;
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "ready": reasons.is_empty(), "reasons": reasons });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn not_ready(state: &AdminState) -> Vec<String> {
    if *state.shutdown.borrow() {
        return vec!["the node is shutting down".to_owned()];
    }
    // A node that takes no writes is not ready: its views stand still however near they are.
    let storage = state.engine.storage_refusal();
    let engine = state.engine.clone();
    let figures = match tokio::task::spawn_blocking(move || engine.origin_figures()).await {
        Ok(Ok(figures)) => figures,
        Ok(Err(e)) => return vec![format!("reading the store: {e}")],
        Err(e) => return vec![format!("reading the store: {e}")],
    };
    storage
        .into_iter()
        .chain(figures.into_iter().filter(|o| !o.forked).filter_map(|o| {
            let behind = o.best_seen_size.saturating_sub(o.indexed_size);
            (behind > state.ready_max_lag).then(|| {
                format!(
                    "origin {}: the view is {behind} entries behind the largest checkpoint seen \
                     ({}), more than admin.ready_max_lag {}",
                    o.origin, o.best_seen_size, state.ready_max_lag
                )
            })
        }))
        .collect()
}

/// Accepts TCP connections, runs their TLS handshakes concurrently (each within the
/// handshake timeout), and hands axum those whose client is this city's operator.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    operator: Identity,
    timeout: Duration,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((socket, peer)) if self.handshakes.len() < MAX_PENDING_HANDSHAKES => {
                        let acceptor = self.acceptor.clone();
                        let operator = self.operator.clone();
                        let timeout = self.timeout;
                        self.handshakes.spawn(async move {
                            handshake(acceptor, socket, peer, &operator, timeout).await
                        });
                    }
                    Ok((_, peer)) => debug!(%peer, "admin: too many TLS handshakes in flight"),
                    Err(e) => {
                        // Out of descriptors, typically: give the ones in use a moment.
                        warn!(error = %e, "admin: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    socket: TcpStream,
    peer: SocketAddr,
    operator: &Identity,
    timeout: Duration,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    let stream = match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "admin: TLS handshake failed");
            return None;
        }
        Err(_) => {
            debug!(%peer, "admin: TLS handshake timed out");
            return None;
        }
    };
    let who = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| Identity::from_cert_der(cert).ok());
    if who.as_ref() == Some(operator) {
        Some((stream, peer))
    } else {
        warn!(%peer, who = ?who.map(|w| w.to_string()), expected = %operator, "admin: client is not this city's operator");
        None
    }
}
