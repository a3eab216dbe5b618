//! The server as a library function: [`run`] starts everything a node does and stops it, in
//! order, when `shutdown` resolves. `credexd`'s `main` only parses arguments, sets up tracing,
//! loads the config and calls it; the cluster tests call it in-process.
//!
//! Shutdown order: report NOT_SERVING on every health name; stop the sync loops and close live
//! streams; stop accepting and drain the gRPC server; drain the publish queue (queued requests
//! are answered); flush the store.
//!
//! Supervision: the background tasks (sync loops, the date tick, cosigning, the publish queue)
//! and the store's writer thread run for the node's whole life. A task that panics, the
//! publish queue ending or the writer's thread ending while the node serves, is fatal: the
//! node reports NOT_SERVING, shuts down in the same order and [`run`] returns the error, so a
//! supervisor (systemd, docker) restarts it rather than leaving a node that answers health
//! checks but cannot publish, sync or store anything.

use std::sync::Arc;

use anyhow::Context;
use credex_core::date::{Clock, SystemClock};
use credex_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Server;
use tracing::{error, info};

use crate::auth::Authorizer;
use crate::config::Config;
use crate::engine::{Engine, EngineParts, publish};
use crate::service::Api;
use crate::sync::{self, PeerLink, PeerTable};
use crate::{admin, cosign, metrics, tls};

/// What [`run`] needs besides the config: the listeners, already bound (so tests pre-bind
/// ports and nothing races for them), and the clock.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    /// The admin HTTP listener (`[admin]`): metrics, health probes.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses the config names.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let grpc = TcpListener::bind(config.node.listen)
            .await
            .with_context(|| format!("binding node.listen {}", config.node.listen))?;
        let admin = match config.admin.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding admin.listen {addr}"))?,
            ),
            None => None,
        };
        Ok(Listeners { grpc, admin })
    }
}

/// Builds the engine of the node `config` describes, opening its store.
pub fn engine(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Engine>> {
    let keys = config.signing_keys().context("loading signing keys")?;
    std::fs::create_dir_all(&config.node.data_dir)
        .with_context(|| format!("creating data dir {}", config.node.data_dir.display()))?;
    let options = StoreOptions {
        cache_capacity: config.storage.cache_bytes(),
        min_free: config.storage.min_free_bytes(),
        index_memory: config.storage.index_bytes(),
        index_cache: config.storage.index_cache_bytes(),
        leaf_cache: config.storage.leaf_cache_bytes(),
        ..StoreOptions::default()
    };
    let store = Store::open_with(&config.node.data_dir.join("store"), &options)
        .with_context(|| format!("opening the store in {}", config.node.data_dir.display()))?;
    let consortium = &config.consortium;
    let members = consortium.members.clone();
    let engine = Engine::new(EngineParts {
        consortium: consortium.name.clone(),
        city: config.node.city.clone(),
        members,
        log_key: keys.log,
        witness_key: keys.witness,
        policy: config.recognition.clone(),
        rules: consortium.rules(),
        clock,
        store,
        batch_max_entries: usize::try_from(config.sync.batch_max_entries).unwrap_or(usize::MAX),
    })?;
    Ok(engine)
}

/// Turns transparent huge pages off for this process (Linux `PR_SET_THP_DISABLE`; elsewhere,
/// or if the kernel refuses, nothing). A huge page stays resident whole while the allocator
/// returns the small pages it no longer uses inside it: on a kernel whose THP mode is `always`
/// a node would hold a third more memory than it uses (ARCHITECTURE.md, "The allocator").
/// mimalloc's `no_thp` build covers the `madvise` mode. Called first thing by `credexd` and
/// `credexctl` (whose benchmarks and demo run nodes in-process).
pub fn keep_memory_in_small_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "transparent huge pages left as the kernel has them");
    }
}

/// Runs the node until `shutdown` resolves, then stops it in order.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with_clock(config, listeners, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with an injected clock (tests move time to check expiry).
pub async fn run_with_clock(
    config: Config,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // The admin listener's token and certificates are checked before anything starts.
    let admin_access = match listeners.admin {
        Some(_) => Some(crate::admin::Access::from_config(&config)?),
        None => None,
    };
    let engine = engine(&config, clock)?;
    let server_tls = tls::load_server_config(&config.tls).context("loading TLS material")?;
    let client_tls = tls::load_client_config(&config.tls).context("loading TLS material")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    if config.consortium.members.len() > 1 {
        engine.hear_witnesses_first();
    }
    let (publisher, mut publisher_task) = publish::start(engine.clone());
    let sync_limits = config.limits.sync();
    let peers = Arc::new(PeerTable::new(sync_limits.clone()));

    let links: Vec<PeerLink> = config
        .peers
        .iter()
        .map(|peer| PeerLink {
            city: peer.city.clone(),
            address: peer.address.clone(),
            tls: client_tls.clone(),
            backoff_min: config.sync.reconnect_backoff_min(),
            backoff_max: config.sync.reconnect_backoff_max(),
            limits: sync_limits.clone(),
        })
        .collect();
    let mut tasks: JoinSet<&'static str> = JoinSet::new();
    for link in &links {
        let task = sync::run_peer(engine.clone(), link.clone(), peers.clone(), stop_rx.clone());
        tasks.spawn(async move {
            task.await;
            "sync"
        });
    }
    let indexer = engine.clone().run_indexer(stop_rx.clone());
    tasks.spawn(async move {
        indexer.await;
        "indexer"
    });
    let counting = crate::engine::counts::run_counts(engine.clone(), stop_rx.clone());
    tasks.spawn(async move {
        counting.await;
        "view count"
    });
    let ticks = crate::engine::changes::run_ticks(engine.clone(), stop_rx.clone());
    tasks.spawn(async move {
        ticks.await;
        "date tick"
    });
    // Every other member's witness, at its sync peer address where one is configured (a
    // deployment may reach it differently), else at its consortium address.
    let witnesses: Vec<PeerLink> = config
        .consortium
        .members
        .iter()
        .filter(|m| m.city != config.node.city)
        .map(|m| {
            links
                .iter()
                .find(|l| l.city == m.city)
                .cloned()
                .unwrap_or_else(|| PeerLink {
                    city: m.city.clone(),
                    address: m.address.clone(),
                    tls: client_tls.clone(),
                    backoff_min: config.sync.reconnect_backoff_min(),
                    backoff_max: config.sync.reconnect_backoff_max(),
                    limits: sync_limits.clone(),
                })
        })
        .collect();
    let cosigning = cosign::run(engine.clone(), witnesses, stop_rx.clone());
    tasks.spawn(async move {
        cosigning.await;
        "cosign"
    });
    // The admin listener outlives the gRPC server's drain, so /readyz answers "shutting down"
    // while it drains; it stops last.
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = listeners.admin.zip(admin_access).map(|(listener, access)| {
        let state = Arc::new(admin::AdminState::new(
            engine.clone(),
            peers.clone(),
            stop_rx.clone(),
            config.admin.ready_max_lag,
            Arc::new(config.consortium.clone()),
        ));
        tokio::spawn(admin::serve(listener, access, state, async move {
            let _ = admin_stopped.await;
        }))
    });

    let api = Api {
        engine: engine.clone(),
        auth: Authorizer::for_config(&config),
        publisher: publisher.clone(),
        peers,
        shutdown: stop_rx.clone(),
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&health_reporter, true).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(credex_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    // v1alpha too: older grpcurl, Postman and evans ask only for it.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(credex_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection service (v1alpha)")?;

    let local = listeners.grpc.local_addr().ok();
    let incoming = tls::Incoming::new(
        listeners.grpc,
        server_tls,
        config.limits.handshakes(),
        Some(engine.metrics().clone()),
    );
    use credex_core::pb::{
        audit_server::AuditServer, exchange_server::ExchangeServer,
        operator_server::OperatorServer, publisher_server::PublisherServer,
        view_server::ViewServer, witness_server::WitnessServer,
    };
    // Every credex service decodes and encodes within `[limits]`; health and reflection keep
    // tonic's defaults (4 MiB decoded), their requests being small.
    let (decode, encode) = (
        config.limits.max_request_bytes(),
        config.limits.max_response_bytes(),
    );
    let router = Server::builder()
        // One span per RPC: what a handler logs carries the method and who called it.
        .trace_fn(rpc_span)
        .http2_keepalive_interval(Some(tls::KEEP_ALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(tls::KEEP_ALIVE_TIMEOUT))
        .max_concurrent_streams(u32::try_from(config.limits.max_concurrent_streams).ok())
        // Bounds a unary call from its first byte to its answer (and a stream to its
        // headers), so a client that stalls mid-request does not hold its stream for ever.
        .timeout(std::time::Duration::from_millis(
            config.limits.request_timeout_ms,
        ))
        .layer(metrics::GrpcMetricsLayer::new(engine.metrics().clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            ExchangeServer::new(api.clone())
                .max_decoding_message_size(decode)
                .max_encoding_message_size(encode),
        )
        .add_service(
            WitnessServer::new(api.clone())
                .max_decoding_message_size(decode)
                .max_encoding_message_size(encode),
        )
        .add_service(
            PublisherServer::new(api.clone())
                .max_decoding_message_size(decode)
                .max_encoding_message_size(encode),
        )
        .add_service(
            ViewServer::new(api.clone())
                .max_decoding_message_size(decode)
                .max_encoding_message_size(encode),
        )
        .add_service(
            AuditServer::new(api.clone())
                .max_decoding_message_size(decode)
                .max_encoding_message_size(encode),
        )
        .add_service(
            OperatorServer::new(api.clone())
                .max_decoding_message_size(decode)
                .max_encoding_message_size(encode),
        );
    info!(city = %engine.city, addr = ?local, peers = config.peers.len(), "credexd serving");

    let stop_for_server = stop_tx.clone();
    let health_for_server = health_reporter.clone();
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = router.serve_with_incoming_shutdown(incoming, async move {
        tokio::select! {
            () = shutdown => info!("shutting down"),
            _ = fail_rx => error!("shutting down after a task failed"),
        }
        // Balancers stop sending before anything drains.
        set_health(&health_for_server, false).await;
        // Live sync and watch streams end when they see this, so the server can drain.
        let _ = stop_for_server.send(true);
    });
    tokio::pin!(serve);
    let mut failure: Option<anyhow::Error> = None;
    // Set once the supervisor has joined the publish queue's task, which must not be awaited
    // twice.
    let mut publisher_joined = false;
    let served = {
        let supervise = supervise(
            &mut tasks,
            &mut publisher_task,
            engine.writer_stopped(),
            &stop_rx,
        );
        tokio::select! {
            served = &mut serve => served,
            (failed, joined) = supervise => {
                error!(error = %failed, "fatal");
                failure = Some(failed);
                publisher_joined = joined;
                let _ = fail_tx.send(());
                serve.await
            }
        }
    };
    let _ = stop_tx.send(true);
    set_health(&health_reporter, false).await;
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            error!(error = %e, "background task failed");
        }
    }
    let _ = admin_stop.send(());
    if let Some(task) = admin_task
        && let Ok(Err(e)) = task.await
    {
        error!(error = %e, "admin listener failed");
    }
    // The servers' clones of the queue are gone with the router; dropping ours lets the
    // publisher answer what is queued and end.
    drop(api);
    drop(publisher);
    if !publisher_joined && let Err(e) = publisher_task.await {
        error!(error = %e, "publish queue failed");
    }
    let flushed = engine.flush_durable().await.context("flushing the store");
    info!("stopped");
    if let Some(failure) = failure {
        // A dead writer cannot flush either; the failure is what the caller must see.
        if let Err(e) = flushed {
            error!(error = %format!("{e:#}"), "shutting down after a failure");
        }
        return Err(failure);
    }
    flushed?;
    served.context("serving gRPC")
}

/// Waits for a reason to stop the node while it serves, and returns it: a background task that
/// ended or panicked (only cosigning may end early: a consortium of one has no witness), the
/// publish queue's task ending, or the store's writer ending (`writer_stopped`): nothing could
/// be written any more — no publish, no catch-up, no checkpoint. The flag says whether the
/// publish task was joined (it must not be awaited twice). Tasks that end once `stop` is set
/// are the node stopping, not a failure.
async fn supervise(
    tasks: &mut JoinSet<&'static str>,
    publisher_task: &mut tokio::task::JoinHandle<()>,
    writer_stopped: impl std::future::Future<Output = String>,
    stop: &watch::Receiver<bool>,
) -> (anyhow::Error, bool) {
    tokio::pin!(writer_stopped);
    loop {
        tokio::select! {
            done = tasks.join_next(), if !tasks.is_empty() => match done {
                Some(Err(e)) => break (anyhow::anyhow!("a background task failed: {e}"), false),
                Some(Ok(name)) if !*stop.borrow() && name != "cosign" => {
                    break (
                        anyhow::anyhow!("the {name} task ended while the node was serving"),
                        false,
                    );
                }
                _ => {}
            },
            joined = &mut *publisher_task => break (match joined {
                Err(e) => anyhow::anyhow!("the publish queue failed: {e}"),
                Ok(()) => anyhow::anyhow!("the publish queue ended while the node was serving"),
            }, true),
            why = &mut writer_stopped => break (
                anyhow::anyhow!("the store writer ended while the node was serving: {why}"),
                false,
            ),
        }
    }
}

/// Reports every service of the node SERVING or NOT_SERVING under its gRPC health name (and
/// the whole server under "").
async fn set_health(reporter: &tonic_health::server::HealthReporter, serving: bool) {
    use credex_core::pb::{
        audit_server::AuditServer, exchange_server::ExchangeServer,
        operator_server::OperatorServer, publisher_server::PublisherServer,
        view_server::ViewServer, witness_server::WitnessServer,
    };
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    for name in [
        <ExchangeServer<Api> as tonic::server::NamedService>::NAME,
        <WitnessServer<Api> as tonic::server::NamedService>::NAME,
        <PublisherServer<Api> as tonic::server::NamedService>::NAME,
        <ViewServer<Api> as tonic::server::NamedService>::NAME,
        <AuditServer<Api> as tonic::server::NamedService>::NAME,
        <OperatorServer<Api> as tonic::server::NamedService>::NAME,
    ] {
        reporter.set_service_status(name, status).await;
    }
}

/// The span every RPC runs in: its method (`/credex.v1.View/Lookup`), the caller's SPIFFE ID
/// (empty for a certificate without a usable one) and address.
fn rpc_span(request: &http::Request<()>) -> tracing::Span {
    let peer = request.extensions().get::<tls::ConnInfo>().map(|c| &c.peer);
    let caller = peer
        .and_then(|p| p.identity.as_ref())
        .map(tls::Identity::spiffe_id)
        .unwrap_or_default();
    let addr = peer
        .and_then(|p| p.remote_addr)
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info_span!("rpc", method = request.uri().path(), caller, addr)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use credex_core::date::{FixedClock, parse_date};
    use credex_core::rules::Rules;

    use super::*;
    use crate::engine::harness::test_engine;

    /// A background task that runs until the node stops.
    fn forever(tasks: &mut JoinSet<&'static str>, name: &'static str) {
        tasks.spawn(async move {
            std::future::pending::<()>().await;
            name
        });
    }

    fn clock() -> FixedClock {
        FixedClock::at_date(parse_date("2026-05-20").expect("fixture date"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_store_writer_stops_the_node() {
        let t = test_engine("test", Rules::default(), clock());
        let engine = t.engine.clone();
        let (_stop_tx, stop) = watch::channel(false);
        let (_queue, mut publisher_task) = publish::start(engine.clone());
        let mut tasks = JoinSet::new();
        forever(&mut tasks, "sync");
        forever(&mut tasks, "indexer");
        let supervising = tokio::spawn(async move {
            supervise(
                &mut tasks,
                &mut publisher_task,
                engine.writer_stopped(),
                &stop,
            )
            .await
        });
        t.engine.kill_writer().await;
        let (failed, publisher_joined) = tokio::time::timeout(Duration::from_secs(30), supervising)
            .await
            .expect("the supervisor saw the writer end")
            .expect("no panic");
        let failed = failed.to_string();
        assert!(
            failed.starts_with("the store writer ended while the node was serving: "),
            "{failed}"
        );
        assert!(failed.contains("killed by a test"), "{failed}");
        assert!(!publisher_joined);
    }

    #[tokio::test]
    async fn a_task_ending_while_serving_stops_the_node_but_cosigning_may_end() {
        let t = test_engine("test", Rules::default(), clock());
        let (stop_tx, stop) = watch::channel(false);
        let (_queue, mut publisher_task) = publish::start(t.engine.clone());
        let mut tasks = JoinSet::new();
        // A consortium of one has no witness to ask: cosigning ends at once.
        let cosign = tasks.spawn(async { "cosign" });
        while !cosign.is_finished() {
            tokio::task::yield_now().await;
        }
        let (end_sync, sync_ended) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _ = sync_ended.await;
            "sync"
        });
        let supervising = supervise(
            &mut tasks,
            &mut publisher_task,
            std::future::pending(),
            &stop,
        );
        tokio::pin!(supervising);
        // Cosigning ended, and nothing else: the node serves on.
        assert!(
            futures::poll!(&mut supervising).is_pending(),
            "cosigning's end stopped the node"
        );
        let _ = end_sync.send(());
        let (failed, publisher_joined) = supervising.await;
        assert_eq!(
            failed.to_string(),
            "the sync task ended while the node was serving"
        );
        assert!(!publisher_joined);
        drop(stop_tx);
    }
}
