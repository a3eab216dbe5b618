//! The subcommands, one module each; `demo` lives in [`crate::demo`].

pub mod access_log;
pub mod audit;
pub mod bench;
pub mod consortium;
pub mod generate;
pub mod invalid;
pub mod list;
pub mod lookup;
pub mod publish;
pub mod status;

use credex_core::date::{Date, parse_date};

/// clap parser for `YYYY-MM-DD` options.
pub fn date_arg(text: &str) -> Result<Date, String> {
    parse_date(text)
}

/// Parses a transaction time for `--as-known-at`: Unix milliseconds, or an RFC 3339 time
/// (`2026-05-20T09:30:00+08:00`).
pub fn instant_arg(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return if ms > 0 {
            Ok(ms)
        } else {
            Err(format!(
                "{ms} is not a Unix time in milliseconds after 1970"
            ))
        };
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{text:?} is neither Unix milliseconds nor an RFC 3339 time: {e}"))
}
