//! credexctl: the command-line client of credex. It sets up a consortium (dev CA,
//! certificates, keys, consortium file, node configs), publishes records, looks them up,
//! lists the view, shows a node's sync status, generates realistic records and runs a
//! four-city demo.
//!
//! # Layout
//! - `main.rs`: arguments, tracing, dispatch.
//! - [`cmd`]: one module per subcommand.
//! - [`client`]: connections to a node over mutual TLS, gRPC errors.
//! - [`demo`]: the four-city demo.
//!
//! What the cluster tests and benchmarks share (consortium init, the folder layout, the
//! record generator and JSON format, output) is the `credex_cli` library.

mod client;
mod cmd;
mod demo;

/// mimalloc: the receive path and the indexer allocate per entry on several threads, where
/// glibc's malloc spent a fifth of the indexer's time (ARCHITECTURE.md, "Performance"). Built
/// with `no_thp`: its arenas in transparent huge pages held a third of a node's resident memory
/// in pages it had mostly purged.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use credex_cli::errln;
use credex_node::tls::Role;
use tracing_subscriber::EnvFilter;

/// credexctl — set up and use a credex consortium.
#[derive(Debug, Parser)]
#[command(name = "credexctl", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes: where the consortium folder is, which city's node to talk
/// to and as whom, and how to print.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The consortium folder `consortium init` wrote.
    #[arg(long, global = true, env = "CREDEX_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The city whose node to talk to (for `gen`: the city whose records to make, also as
    /// id:名称:division).
    #[arg(long, global = true, env = "CREDEX_CITY", value_name = "ID")]
    pub city: Option<String>,
    /// The client certificate to use: publisher, operator, auditor, reader or enforcement
    /// [default: per command: publish and import→publisher, lookup, list, export and watch→reader, status, invalid and
    /// access-log→operator, audit→auditor].
    #[arg(long, global = true, value_name = "ROLE", value_parser = parse_role)]
    pub role: Option<Role>,
    /// Machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Deadline for connecting (TCP and the TLS handshake) and for each request, in seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30,
          value_parser = cmd::integer::<u64>(1, 3600))]
    pub timeout: u64,
}

impl Global {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: credex_node::tls::TlsError| e.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set up a consortium.
    #[command(subcommand)]
    Consortium(cmd::consortium::Command),
    /// Publish records (JSON Lines) as this city's platform.
    Publish(cmd::publish::Args),
    /// Import a platform export (双公示 penalty or red/black-list CSV, UTF-8 or GBK, or JSON
    /// Lines): validate every row, publish the good ones, write the rejected ones to a file.
    Import(cmd::import::Args),
    /// Every record in force for one subject (USCC or resident ID number), across all
    /// recognised cities.
    Lookup(cmd::lookup::Args),
    /// List records in force, filtered.
    List(cmd::list::Args),
    /// Export one list in force in this city's view (红黑榜, 重点关注名单, 行政处罚) as CSV with
    /// Chinese headers or JSON Lines, ID numbers masked, with provenance.
    Export(cmd::export::Args),
    /// Follow the view's changes (View.Watch), keeping the place in a state file.
    Watch(cmd::watch::Args),
    /// A node's sync health: peers, origins, quarantine and view counts.
    Status(cmd::status::Args),
    /// Entries listed invalid (appended, kept out of the view), with the reason.
    Invalid(cmd::invalid::Args),
    /// The access log (查询留痕): every enforcement query, with who, when, what and why.
    AccessLog(cmd::access_log::Args),
    /// Generate realistic records as JSON Lines on stdout.
    Gen(cmd::generate::Args),
    /// Run a four-city consortium locally and show records crossing it.
    Demo(demo::Args),
    /// Benchmarks, each printed beside the ceiling it measured in the same run.
    #[command(subcommand)]
    Bench(cmd::bench::Command),
    /// Proof bundles, offline verification, log replay and equivocation evidence.
    #[command(subcommand)]
    Audit(cmd::audit::Command),
}

#[tokio::main]
async fn main() -> ExitCode {
    credex_node::server::keep_memory_in_small_pages();
    let cli = Cli::parse();
    // The benchmarks run nodes in-process and stop them all at once: each sees its peers'
    // streams close, which is no news there.
    let default_filter = match cli.command {
        Command::Bench(_) => "warn,credex_node::sync=error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CREDEX_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Consortium(command) => cmd::consortium::run(&cli.global, command),
        Command::Publish(args) => cmd::publish::run(&cli.global, args).await,
        Command::Import(args) => cmd::import::run(&cli.global, args).await,
        Command::Lookup(args) => cmd::lookup::run(&cli.global, args).await,
        Command::List(args) => cmd::list::run(&cli.global, args).await,
        Command::Export(args) => cmd::export::run(&cli.global, args).await,
        Command::Watch(args) => cmd::watch::run(&cli.global, args).await,
        Command::Status(args) => cmd::status::run(&cli.global, args).await,
        Command::Invalid(args) => cmd::invalid::run(&cli.global, args).await,
        Command::AccessLog(args) => cmd::access_log::run(&cli.global, args).await,
        Command::Gen(args) => cmd::generate::run(&cli.global, args),
        Command::Demo(args) => demo::run(&cli.global, args).await,
        Command::Bench(command) => cmd::bench::run(&cli.global, command).await,
        Command::Audit(command) => cmd::audit::run(&cli.global, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `credexctl … | head`: the reader has what it wanted; say nothing, like `cat`.
        Err(e) if credex_cli::output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("credexctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn enforcement_is_a_role_and_access_log_a_command() {
        let cli = Cli::try_parse_from([
            "credexctl",
            "--role",
            "enforcement",
            "lookup",
            "430102198005174021",
            "--purpose",
            "（2026）湘0102执881号",
        ])
        .expect("parses");
        assert_eq!(cli.global.role, Some(Role::Enforcement));
        assert!(
            matches!(cli.command, Command::Lookup(_)),
            "{:?}",
            cli.command
        );
        let cli = Cli::try_parse_from(["credexctl", "access-log", "--json"]).expect("parses");
        assert!(cli.global.json);
        assert!(
            matches!(cli.command, Command::AccessLog(_)),
            "{:?}",
            cli.command
        );
    }
}
