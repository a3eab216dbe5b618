//! `credexctl gen`: realistic records of one city as JSON Lines on stdout, e.g. for
//! `credexctl gen --city wuhan --count 10000 | credexctl publish --city wuhan`.

use std::io::{BufWriter, ErrorKind, Write};

use anyhow::{Context, Result};
use credex_core::date::{Clock, Date, SystemClock};

use crate::Global;
use credex_cli::city::CitySpec;
use credex_cli::generator::Generator;
use credex_cli::home::{self, Home};
use credex_cli::json::record_to_line;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many records.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = super::integer::<u64>(0, u64::MAX.into()))]
    count: u64,
    /// Seed: the same city, seed and date give the same records.
    #[arg(long, value_name = "S", default_value_t = 1, value_parser = super::integer::<u64>(0, u64::MAX.into()))]
    seed: u64,
    /// The date the records are in force on (YYYY-MM-DD) [default: today, UTC+8].
    #[arg(long, value_name = "DATE", value_parser = super::date_arg)]
    today: Option<Date>,
}

pub fn run(global: &Global, args: Args) -> Result<()> {
    let city = resolve_city(global)?;
    let today = args.today.unwrap_or_else(|| SystemClock.today());
    let mut generator = Generator::new(&city, args.seed, today);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let written = (0..args.count)
        .try_for_each(|_| writeln!(out, "{}", record_to_line(&generator.record())))
        .and_then(|()| out.flush());
    match written {
        // `gen | head` closing the pipe early is not a failure.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// The city `--city` names: `id:名称:division`; a member of the consortium in `--home`; or
/// one of the four default capitals.
fn resolve_city(global: &Global) -> Result<CitySpec> {
    let city = global
        .city
        .as_deref()
        .context("no city: pass --city ID (or id:名称:division) or set CREDEX_CITY")?;
    if !city.contains(':')
        && let Some(home) = &global.home
    {
        let consortium = Home::new(home).load_consortium()?;
        let member = home::member(&consortium, city)?;
        return Ok(CitySpec {
            id: member.city.clone(),
            name: member.name_zh.clone(),
            division: member.division.clone(),
        });
    }
    city.parse().map_err(anyhow::Error::msg)
}
