//! `credexd`: parse arguments, set up tracing, load the config, run the node until SIGTERM or
//! Ctrl-C.

/// mimalloc: the receive path and the indexer allocate per entry on several threads, where
/// glibc's malloc spent a fifth of the indexer's time (ARCHITECTURE.md, "Performance"). Built
/// with `no_thp`: its arenas in transparent huge pages held a third of a node's resident memory
/// in pages it had mostly purged.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use credex_node::config::{Config, LogFormat};
use credex_node::server::{self, Listeners};
use tracing_subscriber::EnvFilter;

/// The credex city node: exchanges signed credit records with the consortium's other cities
/// and serves this city's mutually recognised view.
#[derive(Debug, Parser)]
#[command(name = "credexd", version)]
struct Args {
    /// The node config file (TOML). `CREDEX_*` environment variables override some keys.
    #[arg(long, short, env = "CREDEX_CONFIG")]
    config: PathBuf,
}

fn main() -> ExitCode {
    credex_node::server::keep_memory_in_small_pages();
    let args = Args::parse();
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CREDEX_"))
        .collect();
    let config = match Config::load(&args.config, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("credexd: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(&config.log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("credexd: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "credexd failed");
            eprintln!("credexd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    server::run(config, listeners, shutdown_signal())
        .await
        .context("running the node")
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
