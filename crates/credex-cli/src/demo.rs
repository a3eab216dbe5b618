//! `credexctl demo`: the four capitals' consortium on one machine, end to end.
//!
//! 1. `consortium init` into a temporary folder, nodes on free 127.0.0.1 ports;
//! 2. one `credexd --config <home>/<city>/node.toml` per city (the binary next to
//!    `credexctl`), each waited for through the gRPC health check over mutual TLS;
//! 3. every city publishes generated records, Changsha and Wuhan both black-list
//!    [`joint_subject`];
//! 4. the views converge: Operator.Status is polled until every node holds every origin's
//!    full log; every node's status is printed;
//! 5. Hefei, which sanctioned nobody, looks the company up and sees both cities' records;
//! 6. Wuhan repairs its record (version 2, status REPAIRED) and it leaves all four views;
//! 7. every node gets SIGTERM (SIGKILL if it has not exited in time) and the folder is
//!    removed, unless `--keep` — or unless the demo failed, when it is kept for its logs.
//!
//! Ctrl-C stops the nodes and removes the folder the same way.
//!
//! Every wait has a deadline (`--deadline`); nothing waits on a fixed sleep.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use credex_core::date::{Clock, SystemClock};
use credex_node::tls::Role;
use credex_proto::v1::{CreditRecord, LookupResponse, StatusResponse};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::Global;
use crate::client::{self, Connection};
use crate::cmd::lookup;
use crate::cmd::publish::{self, Line};
use crate::cmd::status;
use credex_cli::city::{CitySpec, capitals};
use credex_cli::consortium::{InitOptions, init};
use credex_cli::errln;
use credex_cli::generator::{
    Generator, JOINT_CHANGSHA_CATEGORY, JOINT_WUHAN_CATEGORY, joint_subject, repaired,
};
use credex_cli::health;
use credex_cli::home::Home;
use credex_cli::json::Document;
use credex_cli::outln;
use credex_cli::output::Table;

/// Between two polls of a node: short enough to show sub-second convergence, long enough not
/// to load the nodes being measured.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a node gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Lines of a failed node's log shown in the error.
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Records each city publishes.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = crate::cmd::integer::<usize>(1, u32::MAX.into()))]
    records: usize,
    /// Seed of the generated records.
    #[arg(long, value_name = "S", default_value_t = 2026,
          value_parser = crate::cmd::integer::<u64>(0, u64::MAX.into()))]
    seed: u64,
    /// Keep the consortium folder (configs, keys, databases, node logs) and print its path.
    #[arg(long)]
    keep: bool,
    /// City i listens on this port + i (metrics on this port + 100 + i) instead of free ports.
    #[arg(long, value_name = "PORT", value_parser = crate::cmd::integer::<u16>(1, u16::MAX.into()))]
    base_port: Option<u16>,
    /// Seconds each wait may take: nodes healthy, views converged, the repair seen.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = crate::cmd::integer::<u64>(1, 86_400))]
    deadline: u64,
    /// The credexd binary [default: next to credexctl].
    #[arg(long, value_name = "PATH")]
    credexd: Option<PathBuf>,
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    let credexd = match &args.credexd {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot locate credexctl")?
            .with_file_name("credexd"),
    };
    if !credexd.is_file() {
        bail!(
            "credexd not found at {}: build it first (cargo build --bins) or pass --credexd",
            credexd.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("credex-demo-")
        .tempdir()
        .context("cannot create a temp folder")?;
    let cities = capitals();
    let base_port = match args.base_port {
        Some(base) => base,
        None => free_base_port(cities.len())?,
    };
    let home = init(&InitOptions {
        out: dir.path().to_owned(),
        name: "mid-yangtze".to_owned(),
        cities: cities.clone(),
        host: "127.0.0.1".to_owned(),
        base_port,
    })?;
    let demo = Demo {
        home,
        cities,
        json: global.json,
        deadline: Duration::from_secs(args.deadline),
    };
    demo.say(format!(
        "consortium mid-yangtze of {} cities in {}",
        demo.cities.len(),
        dir.path().display()
    ))?;

    let mut nodes = Nodes::default();
    let mut interrupted = false;
    let outcome = tokio::select! {
        outcome = demo.script(&credexd, &mut nodes, &args) => outcome,
        _ = tokio::signal::ctrl_c() => {
            interrupted = true;
            Err(anyhow!("interrupted"))
        }
    };
    let stopped = nodes.stop(&demo).await;
    let outcome = match (outcome, stopped) {
        (Ok(report), Ok(())) => Ok(report),
        (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(stop)) => {
            errln!("credexctl: {stop:#}");
            Err(e)
        }
    };
    // A failed demo keeps its folder for the nodes' logs; one the user stopped does not.
    let failed = outcome
        .as_ref()
        .is_err_and(|e| !credex_cli::output::is_broken_pipe(e))
        && !interrupted;
    if args.keep || failed {
        let path = dir.keep();
        let why = if failed {
            "kept for inspection"
        } else {
            "kept"
        };
        errln!(
            "consortium folder {why}: {} (node logs in <city>/credexd.log)",
            path.display()
        );
    } else {
        dir.close().context("cannot remove the demo folder")?;
    }
    let report = outcome?;
    if demo.json {
        credex_cli::output::print_json(&report.to_json())
    } else {
        Ok(())
    }
}

/// A base port from which `init` can use base + i (gRPC) and base + 100 + i (metrics) for
/// `n` cities: the start is one the OS hands out as free, and every port is checked by
/// binding it. They are released before credexd binds them; another process could take one
/// in between, which the health wait then reports.
fn free_base_port(n: usize) -> Result<u16> {
    const ATTEMPTS: usize = 20;
    for _ in 0..ATTEMPTS {
        let base = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .context("cannot find a free port on 127.0.0.1")?
            .port();
        let ports: Option<Vec<u16>> = (0..n)
            .flat_map(|i| [usize::from(base) + i, usize::from(base) + 100 + i])
            .map(|p| u16::try_from(p).ok())
            .collect();
        let Some(ports) = ports else { continue };
        let held: Result<Vec<TcpListener>, _> = ports
            .iter()
            .map(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, *p)))
            .collect();
        if held.is_ok() {
            return Ok(base);
        }
    }
    bail!("no run of free ports on 127.0.0.1 after {ATTEMPTS} tries; pass --base-port")
}

struct Demo {
    home: Home,
    cities: Vec<CitySpec>,
    json: bool,
    deadline: Duration,
}

/// The running nodes, by city, in consortium order.
#[derive(Default)]
struct Nodes {
    children: Vec<(String, Child)>,
}

/// What the demo saw, for `--json`.
struct Report {
    statuses: Vec<StatusResponse>,
    joint_lookup: (String, LookupResponse),
    after_repair: Vec<(String, LookupResponse)>,
}

impl Report {
    fn to_json(&self) -> ReportJson<'_> {
        ReportJson {
            statuses: self.statuses.iter().map(Document::new).collect(),
            joint_lookup: Document::new(&self.joint_lookup.1)
                .with("node", self.joint_lookup.0.as_str()),
            after_repair: self
                .after_repair
                .iter()
                .map(|(city, r)| Document::new(r).with("node", city.as_str()))
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct ReportJson<'a> {
    statuses: Vec<Document<'a, StatusResponse>>,
    joint_lookup: Document<'a, LookupResponse>,
    after_repair: Vec<Document<'a, LookupResponse>>,
}

/// Connections to one node, one per role the demo acts as.
struct Clients {
    publisher: Connection,
    operator: Connection,
    reader: Connection,
}

impl Demo {
    /// Narration: stdout normally, stderr under `--json` so stdout stays one JSON document.
    fn say(&self, text: impl AsRef<str>) -> std::io::Result<()> {
        if self.json {
            errln!("{}", text.as_ref());
            Ok(())
        } else {
            outln!("{}", text.as_ref())
        }
    }

    fn cities(&self) -> impl Iterator<Item = &str> {
        self.cities.iter().map(|c| c.id.as_str())
    }

    async fn script(&self, credexd: &Path, nodes: &mut Nodes, args: &Args) -> Result<Report> {
        for city in self.cities() {
            nodes.spawn(credexd, &self.home, city)?;
        }
        let started = Instant::now();
        let mut clients = BTreeMap::new();
        for city in self.cities() {
            clients.insert(city.to_owned(), self.wait_healthy(nodes, city).await?);
        }
        self.say(format!(
            "{} nodes healthy after {:.1?}",
            clients.len(),
            started.elapsed()
        ))?;

        // Publish: generated records everywhere, and the joint sanction in Changsha and Wuhan.
        let today = SystemClock.today();
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        let mut wuhan_listing: Option<CreditRecord> = None;
        let mut published = Table::new(&["CITY", "RECORDS", "LOG SIZE", "TOOK"]).right(&[1, 2, 3]);
        for spec in &self.cities {
            let city = spec.id.as_str();
            let mut generator = Generator::new(spec, args.seed, today);
            let mut records: Vec<CreditRecord> =
                (0..args.records).map(|_| generator.record()).collect();
            let joint = match city {
                "changsha" => {
                    Some(generator.black_listing(joint_subject(), JOINT_CHANGSHA_CATEGORY))
                }
                "wuhan" => Some(generator.black_listing(joint_subject(), JOINT_WUHAN_CATEGORY)),
                _ => None,
            };
            if city == "wuhan" {
                wuhan_listing.clone_from(&joint);
            }
            records.extend(joint);
            let lines: Vec<Line> = records
                .into_iter()
                .enumerate()
                .map(|(i, record)| Line {
                    number: i + 1,
                    record,
                })
                .collect();
            let t = Instant::now();
            let conn = &clients[city].publisher;
            let result =
                publish::publish(conn, &lines, 256, &indicatif::ProgressBar::hidden()).await?;
            expected.insert(city.to_owned(), result.tree_size);
            published.row(vec![
                city.to_owned(),
                lines.len().to_string(),
                result.tree_size.to_string(),
                format!("{:.1?}", t.elapsed()),
            ]);
        }
        self.say("\npublished:")?;
        self.say(published.render().trim_end())?;

        // Converge: every node holds every origin's full log.
        let t = Instant::now();
        self.wait_converged(nodes, &clients, &expected).await?;
        self.say(format!(
            "views converged {:.1?} after the last publish\n",
            t.elapsed()
        ))?;
        let mut statuses = Vec::new();
        for city in self.cities() {
            let s = status::status(&clients[city].operator).await?;
            self.say(status::render(&s, status::now_millis()))?;
            statuses.push(s);
        }

        // Mutual recognition: a city that sanctioned nobody sees both sanctions.
        let subject = joint_subject().uscc;
        let observer = self.observer();
        let joint_lookup = self
            .wait_lookup(nodes, &clients[observer].reader, &subject, |r| {
                ["changsha", "wuhan"]
                    .iter()
                    .all(|o| in_force_from(r, o).is_some())
            })
            .await
            .context("waiting for the joint sanction to show in a third city's view")?;
        self.say(format!(
            "{observer} looks up {subject}, black-listed in Changsha and Wuhan:"
        ))?;
        self.say(lookup::render(observer, &joint_lookup))?;

        // Credit repair in Wuhan reaches every view (奖惩同步).
        let listing = wuhan_listing.context("the consortium has no wuhan to repair a record in")?;
        let repair = repaired(&listing, today);
        let t = Instant::now();
        publish::publish(
            &clients["wuhan"].publisher,
            &[Line {
                number: 1,
                record: repair,
            }],
            1,
            &indicatif::ProgressBar::hidden(),
        )
        .await?;
        self.say(format!(
            "wuhan repairs {} (version 2, status repaired)",
            listing.record_id
        ))?;
        let mut after_repair = Vec::new();
        for city in self.cities() {
            let gone = self
                .wait_lookup(nodes, &clients[city].reader, &subject, |r| {
                    r.in_force.iter().all(|v| {
                        v.record
                            .as_ref()
                            .is_none_or(|rec| rec.record_id != listing.record_id)
                    })
                })
                .await
                .with_context(|| {
                    format!("waiting for the repaired record to leave {city}'s view")
                })?;
            self.say(format!("  left {city}'s view after {:.1?}", t.elapsed()))?;
            after_repair.push((city.to_owned(), gone));
        }
        if let Some((city, response)) = after_repair.iter().find(|(c, _)| c == observer) {
            self.say(format!("\n{city} after the repair:"))?;
            self.say(lookup::render(city, response))?;
        }
        Ok(Report {
            statuses,
            joint_lookup: (observer.to_owned(), joint_lookup),
            after_repair,
        })
    }

    /// The city whose view shows mutual recognition: one that sanctioned nobody.
    fn observer(&self) -> &str {
        self.cities()
            .find(|c| !["changsha", "wuhan"].contains(c))
            .unwrap_or("changsha")
    }

    /// Waits until `city`'s node answers the health check as SERVING over mutual TLS, then
    /// connects the demo's three roles.
    async fn wait_healthy(&self, nodes: &mut Nodes, city: &str) -> Result<Clients> {
        let deadline = Instant::now() + self.deadline;
        loop {
            nodes.check_running(&self.home, city)?;
            let last_error =
                match client::connect_to(&self.home, city, Role::Operator, Duration::from_secs(2))
                    .await
                {
                    Ok(conn) => match health::check(conn.channel(), "").await {
                        Ok(health::SERVING) => break,
                        Ok(other) => format!("health {}", health::status_name(other)),
                        Err(status) => client::status_text(&status),
                    },
                    Err(e) => format!("{e:#}"),
                };
            if Instant::now() >= deadline {
                bail!(
                    "{city}'s node not healthy within {:?}: {last_error}",
                    self.deadline
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let timeout = Duration::from_secs(30);
        Ok(Clients {
            publisher: client::connect_to(&self.home, city, Role::Publisher, timeout).await?,
            operator: client::connect_to(&self.home, city, Role::Operator, timeout).await?,
            reader: client::connect_to(&self.home, city, Role::Reader, timeout).await?,
        })
    }

    /// Polls every node's status until each holds `expected` entries of every origin,
    /// printing progress when it changes.
    async fn wait_converged(
        &self,
        nodes: &mut Nodes,
        clients: &BTreeMap<String, Clients>,
        expected: &BTreeMap<String, u64>,
    ) -> Result<()> {
        let deadline = Instant::now() + self.deadline;
        let total: u64 = expected.values().sum();
        let mut last_line = String::new();
        loop {
            let mut held = Vec::new();
            for city in self.cities() {
                nodes.check_running(&self.home, city)?;
                let s = status::status(&clients[city].operator).await?;
                let sizes: BTreeMap<&str, u64> = s
                    .origins
                    .iter()
                    // In the view, not only in the log: what a lookup would show.
                    .map(|o| (origin_city(&o.origin), o.indexed_size.min(o.local_size)))
                    .collect();
                let have: u64 = expected
                    .iter()
                    .map(|(o, want)| sizes.get(o.as_str()).copied().unwrap_or(0).min(*want))
                    .sum();
                held.push((city, have));
            }
            let line = held
                .iter()
                .map(|(c, h)| format!("{c} {h}/{total}"))
                .collect::<Vec<_>>()
                .join("  ");
            if line != last_line {
                self.say(format!("  entries in view: {line}"))?;
                last_line = line;
            }
            if held.iter().all(|(_, h)| *h == total) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "views did not converge within {:?}: {last_line}",
                    self.deadline
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Polls a lookup until `done` holds for it.
    async fn wait_lookup(
        &self,
        nodes: &mut Nodes,
        conn: &Connection,
        subject: &str,
        done: impl Fn(&LookupResponse) -> bool,
    ) -> Result<LookupResponse> {
        let deadline = Instant::now() + self.deadline;
        loop {
            nodes.check_running(&self.home, &conn.city)?;
            let response =
                lookup::lookup(conn, subject, None, None, Default::default(), "").await?;
            if done(&response) {
                return Ok(response);
            }
            if Instant::now() >= deadline {
                bail!(
                    "not within {:?}; {}'s last answer:\n{}",
                    self.deadline,
                    conn.city,
                    lookup::render(&conn.city, &response)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// An origin as Status names it, reduced to its city id (`credex/<consortium>/<city>` or
/// `<city>`).
fn origin_city(origin: &str) -> &str {
    origin.rsplit('/').next().unwrap_or(origin)
}

fn in_force_from<'a>(r: &'a LookupResponse, origin: &str) -> Option<&'a CreditRecord> {
    r.in_force
        .iter()
        .find(|v| {
            v.provenance
                .as_ref()
                .is_some_and(|p| origin_city(&p.origin) == origin)
        })
        .and_then(|v| v.record.as_ref())
}

impl Nodes {
    /// Starts `city`'s credexd with its output in `<home>/<city>/credexd.log`.
    fn spawn(&mut self, credexd: &Path, home: &Home, city: &str) -> Result<()> {
        let log_path = home.node_log(city);
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = Command::new(credexd)
            .arg("--config")
            .arg(home.node_config(city))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the node log")?)
            .stderr(log)
            // A demo that dies before `stop` must not leave nodes behind.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", credexd.display()))?;
        self.children.push((city.to_owned(), child));
        Ok(())
    }

    /// Fails, with the end of its log, if `city`'s node has exited.
    fn check_running(&mut self, home: &Home, city: &str) -> Result<()> {
        let Some((_, child)) = self.children.iter_mut().find(|(c, _)| c == city) else {
            bail!("{city}'s node was never started");
        };
        match child
            .try_wait()
            .with_context(|| format!("cannot check on {city}'s node"))?
        {
            None => Ok(()),
            Some(status) => bail!(
                "{city}'s node exited ({status}); the end of its log:\n{}",
                log_tail(&home.node_log(city))
            ),
        }
    }

    /// SIGTERM to every node, then waits for each; one that outstays [`STOP_GRACE`] is
    /// killed. Errors if any node did not exit cleanly.
    async fn stop(&mut self, demo: &Demo) -> Result<()> {
        for (city, child) in &self.children {
            if let Some(pid) = child.id() {
                // std has no signal API and unsafe code is forbidden, so kill(1) sends it.
                let sent = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
                if !sent.is_ok_and(|s| s.success()) {
                    tracing::warn!(city = %city, pid, "could not send SIGTERM");
                }
            }
        }
        let mut failures = Vec::new();
        for (city, child) in &mut self.children {
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => failures.push(format!("{city}: {status}")),
                Ok(Err(e)) => failures.push(format!("{city}: {e}")),
                Err(_) => {
                    child.kill().await.ok();
                    failures.push(format!(
                        "{city}: still running {STOP_GRACE:?} after SIGTERM, killed"
                    ));
                }
            }
        }
        let stopped = self.children.len();
        self.children.clear();
        if failures.is_empty() {
            if stopped > 0 {
                demo.say(format!("stopped {stopped} nodes"))?;
            }
            Ok(())
        } else {
            Err(anyhow!(
                "nodes did not stop cleanly: {}",
                failures.join("; ")
            ))
        }
    }
}

/// The last [`LOG_TAIL_LINES`] lines of a node's log.
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
