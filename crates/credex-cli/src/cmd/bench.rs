//! `credexctl bench …`: benchmarks that print their figure beside the ceiling they measured
//! in the same run. Build with `--release` for meaningful figures.

use anyhow::Result;
use credex_cli::bench::{self, CatchupOptions};

use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// One node catches up N entries from another over mutual TLS, verifying every
    /// signature; prints entries/s beside the machine's Ed25519 verification rate on all
    /// cores and their ratio.
    Catchup(CatchupArgs),
}

#[derive(Debug, clap::Args)]
pub struct CatchupArgs {
    /// Entries in the source log.
    #[arg(long, default_value_t = 100_000)]
    entries: u64,
    /// Signatures verified to measure the machine's ceiling.
    #[arg(long, default_value_t = 100_000)]
    sample: usize,
}

pub async fn run(global: &Global, command: Command) -> Result<()> {
    match command {
        Command::Catchup(args) => {
            let figures = bench::catchup(&CatchupOptions {
                entries: args.entries,
                sample: args.sample,
            })
            .await?;
            bench::print(&figures, global.json)
        }
    }
}
