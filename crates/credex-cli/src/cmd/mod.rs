//! The subcommands, one module each; `demo` lives in [`crate::demo`].

pub mod audit;
pub mod bench;
pub mod consortium;
pub mod generate;
pub mod list;
pub mod lookup;
pub mod publish;
pub mod status;

use credex_core::date::{Date, parse_date};

/// clap parser for `YYYY-MM-DD` options.
pub fn date_arg(text: &str) -> Result<Date, String> {
    parse_date(text)
}
