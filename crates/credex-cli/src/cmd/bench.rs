//! `credexctl bench …`: benchmarks that print their figure beside what they measured it
//! against in the same run. Build with `--release` for meaningful figures.

use anyhow::Result;
use credex_cli::bench::catchup::{self, CatchupOptions};
use credex_cli::bench::propagation::{self, PropagationOptions};
use credex_cli::bench::publish::{self, PublishOptions};
use credex_cli::publish::Limits;

use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// One node catches up N entries from another over mutual TLS, verifying every
    /// signature; prints entries/s beside the machine's Ed25519 verification rate on all
    /// cores and their ratio.
    Catchup(CatchupArgs),
    /// Durable publish throughput through a node (Publisher.Publish over mutual TLS, the
    /// streaming client of `credexctl publish`); prints records/s beside sled writing the same
    /// leaves with one flush per batch of the same size, and their ratio.
    Publish(PublishArgs),
    /// Four nodes; one city publishes at a steady rate and each record's time until it is in
    /// every other city's view (View.Watch) is measured; prints p50/p90/p99/max.
    Propagation(PropagationArgs),
}

#[derive(Debug, clap::Args)]
pub struct CatchupArgs {
    /// Entries in the source log.
    #[arg(long, default_value_t = 100_000, value_parser = super::integer::<u64>(1, u64::MAX.into()))]
    entries: u64,
    /// Signatures verified to measure the machine's ceiling.
    #[arg(long, default_value_t = 100_000, value_parser = super::integer::<usize>(1, u32::MAX.into()))]
    sample: usize,
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Records to publish.
    #[arg(long, default_value_t = 100_000, value_parser = super::integer::<u64>(1, u64::MAX.into()))]
    records: u64,
    /// Records per Publish request (and per batch of the ceiling's writes).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = super::integer::<u32>(1, 10_000))]
    batch_size: u32,
    /// Publish requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = super::integer::<u32>(1, 64))]
    in_flight: u32,
}

#[derive(Debug, clap::Args)]
pub struct PropagationArgs {
    /// Records to publish.
    #[arg(long, default_value_t = 200, value_parser = super::integer::<u64>(1, u64::MAX.into()))]
    count: u64,
    /// Records published per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
}

pub async fn run(global: &Global, command: Command) -> Result<()> {
    match command {
        Command::Catchup(args) => {
            let figures = catchup::catchup(&CatchupOptions {
                entries: args.entries,
                sample: args.sample,
            })
            .await?;
            catchup::print(&figures, global.json)
        }
        Command::Publish(args) => {
            let figures = publish::publish(&PublishOptions {
                records: args.records,
                limits: Limits {
                    records: args.batch_size as usize,
                    in_flight: args.in_flight as usize,
                    ..Limits::default()
                },
            })
            .await?;
            publish::print(&figures, global.json)
        }
        Command::Propagation(args) => {
            let figures = propagation::propagation(&PropagationOptions {
                count: args.count,
                rate: args.rate,
            })
            .await?;
            propagation::print(&figures, global.json)
        }
    }
}
