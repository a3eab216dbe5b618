//! Nodes run in-process for the benchmarks: a dev consortium in a temp folder and one
//! `credex_node::server::run` per city on a port bound before any node starts, every node
//! syncing with every other, and clients holding the consortium's certificates.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use credex_core::pb;
use credex_node::config::{Config, Consortium};
use credex_node::server::{self, Listeners};
use credex_node::tls::{self, Role};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::city::capitals;
use crate::consortium::{InitOptions, init};
use crate::home::Home;

/// How long nodes may take to serve and to connect to each other.
const STARTUP: Duration = Duration::from_secs(60);

struct Node {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<()>>,
}

/// A running consortium of the first N capitals.
pub(crate) struct Cluster {
    // Dropped last: the nodes' stores live in it.
    _dir: tempfile::TempDir,
    home: Home,
    consortium: Consortium,
    addrs: BTreeMap<String, SocketAddr>,
    data_dirs: BTreeMap<String, PathBuf>,
    nodes: BTreeMap<String, Node>,
}

impl Cluster {
    /// Starts a node for each of the first `members` capitals and waits until every node serves
    /// and is connected to every other.
    pub(crate) async fn start(members: usize) -> Result<Cluster> {
        Cluster::start_with(members, |_| {}).await
    }

    /// [`Cluster::start`] with each node's config changed by `configure` first.
    pub(crate) async fn start_with(
        members: usize,
        configure: impl Fn(&mut Config),
    ) -> Result<Cluster> {
        let cities = capitals()[..members].to_vec();
        let dir = tempfile::tempdir()?;
        let home = init(&InitOptions {
            out: dir.path().join("consortium"),
            name: "bench".to_owned(),
            cities: cities.clone(),
            host: "127.0.0.1".to_owned(),
            base_port: 7100,
        })?;
        let consortium = home.load_consortium()?;
        let mut listeners = BTreeMap::new();
        for city in &cities {
            listeners.insert(city.id.clone(), TcpListener::bind("127.0.0.1:0").await?);
        }
        let addrs: BTreeMap<String, SocketAddr> = listeners
            .iter()
            .map(|(city, l)| Ok((city.clone(), l.local_addr()?)))
            .collect::<Result<_>>()?;
        let mut cluster = Cluster {
            _dir: dir,
            home,
            consortium,
            addrs,
            data_dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        for (city, listener) in listeners {
            let mut config = cluster.config(&city)?;
            configure(&mut config);
            cluster
                .data_dirs
                .insert(city.clone(), config.node.data_dir.clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(server::run(
                config,
                Listeners {
                    grpc: listener,
                    admin: None,
                },
                async {
                    let _ = stopped.await;
                },
            ));
            cluster.nodes.insert(city, Node { stop, task });
        }
        cluster.wait_connected().await?;
        Ok(cluster)
    }

    /// `city`'s config: its own file with this cluster's ports, peering with every other node.
    fn config(&self, city: &str) -> Result<Config> {
        let peers: Vec<String> = self
            .addrs
            .iter()
            .filter(|(peer, _)| *peer != city)
            .map(|(peer, addr)| format!("{peer}={addr}"))
            .collect();
        let env = HashMap::from([
            ("CREDEX_LISTEN".to_owned(), self.addrs[city].to_string()),
            ("CREDEX_PEERS".to_owned(), peers.join(",")),
            ("CREDEX_METRICS_LISTEN".to_owned(), String::new()),
            ("CREDEX_LOG".to_owned(), "warn".to_owned()),
        ]);
        Ok(Config::load(&self.home.node_config(city), &env)?)
    }

    /// A channel to `city`'s node as its `role` client.
    pub(crate) async fn channel(&self, city: &str, role: Role) -> Result<Channel> {
        let files = self.home.client_files(&self.consortium, city, role);
        let tls = tls::load_client_config(&files)?;
        let server = credex_node::config::node_identity(&self.consortium, city);
        tls::connect(&self.addrs[city].to_string(), &server, tls)
            .await
            .with_context(|| format!("connecting to {city}"))
    }

    /// Waits until every node answers Operator.Status and reports every peer connected.
    async fn wait_connected(&self) -> Result<()> {
        let deadline = Instant::now() + STARTUP;
        for city in self.addrs.keys() {
            loop {
                let connected = match self.channel(city, Role::Operator).await {
                    Ok(channel) => pb::operator_client::OperatorClient::new(channel)
                        .status(pb::StatusRequest { skip_view: true })
                        .await
                        .is_ok_and(|s| {
                            let peers = &s.get_ref().peers;
                            peers.len() + 1 == self.addrs.len() && peers.iter().all(|p| p.connected)
                        }),
                    Err(_) => false,
                };
                if connected {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{city} did not serve and connect to its peers within {}s",
                        STARTUP.as_secs()
                    );
                }
                // Startup polling interval.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Stops every node (each flushes and closes its store) and returns the data folders, which
    /// live as long as the returned guard.
    pub(crate) async fn stop(self) -> Result<Stopped> {
        let Cluster {
            _dir,
            data_dirs,
            nodes,
            ..
        } = self;
        let tasks: Vec<_> = nodes
            .into_iter()
            .map(|(city, node)| {
                let _ = node.stop.send(());
                (city, node.task)
            })
            .collect();
        for (city, task) in tasks {
            task.await
                .with_context(|| format!("{city}'s node"))?
                .with_context(|| format!("{city}'s node"))?;
        }
        Ok(Stopped { _dir, data_dirs })
    }
}

/// The data folders of a stopped cluster.
pub(crate) struct Stopped {
    _dir: tempfile::TempDir,
    pub(crate) data_dirs: BTreeMap<String, PathBuf>,
}
