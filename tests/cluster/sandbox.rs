//! The cluster sandbox: a consortium in a temp folder and N `credexd` nodes run in-process
//! through `credex_node::server::run_with_clock` — the real gRPC + mutual TLS stack and real
//! sled stores — on ports bound before any node starts, with one injected clock.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use credex_cli::city::CitySpec;
use credex_cli::home::Home;
use credex_core::date::{Date, FixedClock, parse_date};
use credex_core::pb;
use credex_node::config::Config;
use credex_node::server::{self, Listeners};
use credex_node::tls::{self, Identity, Role, TlsFiles};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(180);

/// The date the sandbox clock starts at (noon, UTC+8).
pub fn start_date() -> Date {
    parse_date("2026-11-23").expect("a date")
}

struct RunningNode {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<()>>,
}

/// A running consortium.
pub struct Sandbox {
    _dir: tempfile::TempDir,
    pub home: Home,
    pub clock: Arc<FixedClock>,
    /// Nodes that run on a clock of their own instead ([`Sandbox::set_clock`]).
    clocks: BTreeMap<String, Arc<FixedClock>>,
    addrs: BTreeMap<String, SocketAddr>,
    /// city → the peers it syncs with.
    links: BTreeMap<String, Vec<String>>,
    nodes: BTreeMap<String, RunningNode>,
    limits: Option<credex_node::config::LimitsConfig>,
    /// Every node's `[admin]`, its listen address set per node, if the nodes have one.
    admin: Option<credex_node::config::AdminConfig>,
    admin_addrs: BTreeMap<String, SocketAddr>,
    /// Last, so it is given back once everything else is dropped.
    _gate: GateGuard,
}

/// Builds a [`Sandbox`].
#[derive(Default)]
pub struct SandboxBuilder {
    cities: Option<Vec<CitySpec>>,
    rules: credex_node::config::RulesConfig,
    cut: Vec<(String, String)>,
    stopped: Vec<String>,
    limits: Option<credex_node::config::LimitsConfig>,
    admin: Option<credex_node::config::AdminConfig>,
    alone: bool,
}

/// Counts the sandboxes running in this test process, so that a test that measures the
/// process itself (its resident memory) can run with no other test's nodes in it.
static GATE: std::sync::LazyLock<Gate> = std::sync::LazyLock::new(|| Gate {
    state: std::sync::Mutex::new(GateState::default()),
    changed: tokio::sync::Notify::new(),
});

struct Gate {
    state: std::sync::Mutex<GateState>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct GateState {
    shared: usize,
    alone: bool,
}

/// A sandbox's place in [`GATE`], given back when it is dropped.
struct GateGuard {
    alone: bool,
}

impl GateGuard {
    /// Waits until the sandbox may start: a shared one while no sandbox runs alone, one that
    /// runs alone once no other runs at all. Sandboxes already running are never waited on by
    /// a shared one, so a test holding one sandbox can always start another.
    async fn enter(alone: bool) -> GateGuard {
        loop {
            let changed = GATE.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = GATE.state.lock().unwrap_or_else(|e| e.into_inner());
                if !state.alone && (!alone || state.shared == 0) {
                    if alone {
                        state.alone = true;
                    } else {
                        state.shared += 1;
                    }
                    return GateGuard { alone };
                }
            }
            changed.await;
        }
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        let mut state = GATE.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.alone {
            state.alone = false;
        } else {
            state.shared -= 1;
        }
        GATE.changed.notify_waiters();
    }
}

impl SandboxBuilder {
    /// Runs this sandbox with no other test's sandbox in the process, for a test that measures
    /// the process (it waits until the others have ended; new ones wait for it).
    pub fn alone(mut self) -> Self {
        self.alone = true;
        self
    }

    /// The member cities (default: the four capitals).
    pub fn cities(mut self, cities: Vec<CitySpec>) -> Self {
        self.cities = Some(cities);
        self
    }

    /// The consortium file's `[rules]` (default: no legacy codes, decisions up to tomorrow).
    pub fn rules(mut self, rules: credex_node::config::RulesConfig) -> Self {
        self.rules = rules;
        self
    }

    /// Removes the direct link between two cities from both their configs.
    pub fn without_link(mut self, a: &str, b: &str) -> Self {
        self.cut.push((a.to_owned(), b.to_owned()));
        self
    }

    /// Every node's `[limits]` (default: the config's).
    pub fn limits(mut self, limits: credex_node::config::LimitsConfig) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Gives every node an admin listener on a port of its own with `admin`'s settings (its
    /// `listen` is ignored).
    pub fn admin(mut self, admin: credex_node::config::AdminConfig) -> Self {
        self.admin = Some(admin);
        self
    }

    /// Creates `city`'s node but does not start it.
    pub fn stopped(mut self, city: &str) -> Self {
        self.stopped.push(city.to_owned());
        self
    }

    pub async fn start(self) -> Result<Sandbox> {
        let gate = GateGuard::enter(self.alone).await;
        // `CREDEX_TEST_LOG=debug` shows the nodes' logs beside a failing test's output.
        if let Ok(filter) = std::env::var("CREDEX_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let cities = self.cities.unwrap_or_else(credex_cli::city::capitals);
        let dir = tempfile::tempdir()?;
        let home = credex_cli::consortium::init_with_rules(
            &credex_cli::consortium::InitOptions {
                out: dir.path().join("consortium"),
                name: "mid-yangtze".to_owned(),
                cities: cities.clone(),
                host: "127.0.0.1".to_owned(),
                base_port: 7100,
            },
            &self.rules,
        )?;
        let mut listeners = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for city in &cities {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.insert(city.id.clone(), listener.local_addr()?);
            listeners.insert(city.id.clone(), listener);
        }
        let mut links = BTreeMap::new();
        for city in &cities {
            let peers: Vec<String> = cities
                .iter()
                .map(|c| c.id.clone())
                .filter(|p| *p != city.id)
                .filter(|p| {
                    !self
                        .cut
                        .iter()
                        .any(|(a, b)| (a == &city.id && b == p) || (b == &city.id && a == p))
                })
                .collect();
            links.insert(city.id.clone(), peers);
        }
        let mut sandbox = Sandbox {
            _dir: dir,
            home,
            clock: Arc::new(FixedClock::at_date(start_date())),
            clocks: BTreeMap::new(),
            addrs,
            links,
            nodes: BTreeMap::new(),
            limits: self.limits,
            admin: self.admin,
            admin_addrs: BTreeMap::new(),
            _gate: gate,
        };
        for (city, listener) in listeners {
            if !self.stopped.contains(&city) {
                sandbox.start_on(&city, listener).await?;
            }
        }
        Ok(sandbox)
    }
}

impl Sandbox {
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The config `city`'s node runs with: its own file, with the sandbox's ports and links.
    pub fn config(&self, city: &str) -> Result<Config> {
        let peers: Vec<String> = self.links[city]
            .iter()
            .map(|p| format!("{p}={}", self.addrs[p]))
            .collect();
        let env = HashMap::from([
            ("CREDEX_LISTEN".to_owned(), self.addrs[city].to_string()),
            ("CREDEX_PEERS".to_owned(), peers.join(",")),
            ("CREDEX_METRICS_LISTEN".to_owned(), String::new()),
        ]);
        let mut config = Config::load(&self.home.node_config(city), &env)?;
        // Members are reached (by witnesses, say) at their sandbox addresses.
        for member in &mut config.consortium.members {
            member.address = self.addrs[&member.city].to_string();
        }
        // Quick reconnects: tests restart nodes and wait for the others to notice.
        config.sync.reconnect_backoff_min_ms = 50;
        config.sync.reconnect_backoff_max_ms = 500;
        match &self.limits {
            Some(limits) => config.limits = limits.clone(),
            // Quick redials after a quarantine too, for tests that tamper with entries.
            None => {
                config.limits.quarantine_backoff_min_ms = 200;
                config.limits.quarantine_backoff_max_ms = 1_000;
            }
        }
        Ok(config)
    }

    async fn start_on(&mut self, city: &str, listener: TcpListener) -> Result<()> {
        let mut config = self.config(city)?;
        let admin = match &self.admin {
            Some(template) => {
                let at = self
                    .admin_addrs
                    .get(city)
                    .copied()
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
                let admin = TcpListener::bind(at).await?;
                self.admin_addrs
                    .insert(city.to_owned(), admin.local_addr()?);
                config.admin = credex_node::config::AdminConfig {
                    listen: Some(admin.local_addr()?),
                    ..template.clone()
                };
                Some(admin)
            }
            None => None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let clock = self.clocks.get(city).unwrap_or(&self.clock).clone();
        let task = tokio::spawn(async move {
            let listeners = Listeners {
                grpc: listener,
                admin,
            };
            server::run_with_clock(config, listeners, clock, async {
                let _ = stopped.await;
            })
            .await
        });
        self.nodes
            .insert(city.to_owned(), RunningNode { stop, task });
        self.wait_healthy(city).await
    }

    /// Starts (or restarts) `city`'s node on its address.
    pub async fn start_node(&mut self, city: &str) -> Result<()> {
        let listener = TcpListener::bind(self.addrs[city])
            .await
            .with_context(|| format!("rebinding {city}'s port"))?;
        self.start_on(city, listener).await
    }

    /// Stops `city`'s node gracefully and waits until it has flushed and closed its store.
    pub async fn stop_node(&mut self, city: &str) -> Result<()> {
        let node = self.nodes.remove(city).context("node is not running")?;
        let _ = node.stop.send(());
        tokio::time::timeout(DEADLINE, node.task)
            .await
            .context("node did not stop in time")??
    }

    /// Runs `city`'s node on `clock` instead of the sandbox's, from its next start on: a
    /// clock set wrong.
    pub fn set_clock(&mut self, city: &str, clock: Arc<FixedClock>) {
        self.clocks.insert(city.to_owned(), clock);
    }

    /// Replaces the peers `city` syncs with, from its next start on.
    pub fn set_links(&mut self, city: &str, peers: &[&str]) {
        self.links.insert(
            city.to_owned(),
            peers.iter().map(|p| (*p).to_owned()).collect(),
        );
    }

    pub fn addr(&self, city: &str) -> SocketAddr {
        self.addrs[city]
    }

    /// The address of `city`'s admin listener (with [`SandboxBuilder::admin`]).
    pub fn admin_addr(&self, city: &str) -> SocketAddr {
        self.admin_addrs[city]
    }

    /// A channel to `city`'s node as `role` of `as_city`.
    pub async fn channel_as(&self, city: &str, as_city: &str, role: Role) -> Result<Channel> {
        let files = TlsFiles {
            ca_cert: self.home.ca_cert(),
            cert: self.home.cert(as_city, role),
            key: self.home.key(as_city, role),
        };
        self.channel_with(city, &files).await
    }

    /// A channel to `city`'s node with the given TLS files.
    pub async fn channel_with(&self, city: &str, files: &TlsFiles) -> Result<Channel> {
        let tls = tls::load_client_config(files)?;
        let server = Identity::new("mid-yangtze", city, Role::Node)?;
        Ok(tls::connect(&self.addrs[city].to_string(), &server, tls).await?)
    }

    pub async fn channel(&self, city: &str, role: Role) -> Result<Channel> {
        self.channel_as(city, city, role).await
    }

    /// A TLS connection (ALPN h2) to `city`'s node with `as_city`'s `role` certificate, for a
    /// client that speaks HTTP/2 its own way.
    pub async fn tls_stream(
        &self,
        city: &str,
        as_city: &str,
        role: Role,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let config = tls::load_client_config(&TlsFiles {
            ca_cert: self.home.ca_cert(),
            cert: self.home.cert(as_city, role),
            key: self.home.key(as_city, role),
        })?;
        let tcp = tokio::net::TcpStream::connect(self.addrs[city]).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        Ok(tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?)
    }

    async fn wait_healthy(&self, city: &str) -> Result<()> {
        wait_until(&format!("{city} serving"), || async {
            Ok(self.status(city).await.is_ok())
        })
        .await
    }

    pub async fn publish(
        &self,
        city: &str,
        records: Vec<pb::CreditRecord>,
    ) -> Result<pb::PublishResponse> {
        let mut client =
            pb::publisher_client::PublisherClient::new(self.channel(city, Role::Publisher).await?)
                .max_encoding_message_size(64 << 20);
        Ok(client
            .publish(pb::PublishRequest {
                records,
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    pub async fn lookup(&self, city: &str, subject: &str) -> Result<pb::LookupResponse> {
        let mut client = pb::view_client::ViewClient::new(self.channel(city, Role::Reader).await?);
        let request = pb::LookupRequest {
            subject_id: subject.to_owned(),
            as_of: String::new(),
            as_known_at: 0,
            // One page: the sandbox's subjects hold a few records each.
            page_size: 0,
            page_token: String::new(),
            purpose: String::new(),
            ..Default::default()
        };
        Ok(client.lookup(request).await?.into_inner())
    }

    pub async fn status(&self, city: &str) -> Result<pb::StatusResponse> {
        self.status_with(city, pb::StatusRequest::default()).await
    }

    async fn status_with(
        &self,
        city: &str,
        request: pb::StatusRequest,
    ) -> Result<pb::StatusResponse> {
        let mut client =
            pb::operator_client::OperatorClient::new(self.channel(city, Role::Operator).await?);
        Ok(client.status(request).await?.into_inner())
    }

    /// The log sizes `city` holds, by origin.
    pub async fn sizes(&self, city: &str) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .status_with(city, pb::StatusRequest { skip_view: true })
            .await?
            .origins
            .into_iter()
            .map(|o| (o.origin, o.local_size))
            .collect())
    }

    /// How many entries of each origin `city`'s view holds (the log may hold more, waiting
    /// for their signatures' check behind the append).
    pub async fn in_view(&self, city: &str) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .status_with(city, pb::StatusRequest { skip_view: true })
            .await?
            .origins
            .into_iter()
            .map(|o| (o.origin, o.indexed_size))
            .collect())
    }

    /// Waits until every running node holds `expected` entries of every origin listed, in
    /// its log and in its view.
    pub async fn wait_converged(&self, expected: &BTreeMap<String, u64>) -> Result<()> {
        for city in self.nodes.keys() {
            wait_until(&format!("{city} holds {expected:?}"), || async {
                let sizes = self.sizes(city).await?;
                let in_view = self.in_view(city).await?;
                Ok(expected
                    .iter()
                    .all(|(o, n)| sizes.get(o) == Some(n) && in_view.get(o) == Some(n)))
            })
            .await?;
        }
        Ok(())
    }

    pub fn running(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Stops every node.
    pub async fn shutdown(mut self) -> Result<()> {
        let cities: Vec<String> = self.nodes.keys().cloned().collect();
        for city in cities {
            self.stop_node(&city).await?;
        }
        Ok(())
    }
}

/// Polls `condition` until it holds, failing after [`DEADLINE`]. Errors inside the condition
/// (a node still starting, say) count as "not yet".
pub async fn wait_until<F, Fut>(what: &str, condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    wait_within(what, DEADLINE, condition).await
}

/// [`wait_until`] with a deadline of its own.
pub async fn wait_within<F, Fut>(what: &str, deadline: Duration, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut last_error = String::new();
    loop {
        match condition().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = format!("{e:#}"),
        }
        if tokio::time::Instant::now() > until {
            bail!("timed out after {deadline:?} waiting for: {what} (last error: {last_error})");
        }
        // Polling interval of a condition wait, not synchronisation by sleeping.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
