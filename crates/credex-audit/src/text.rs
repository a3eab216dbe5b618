//! How reports write times (China Standard Time, in which credex dates are) and counts.

use chrono::DateTime;
use credex_core::date::cst;

/// Unix milliseconds as a time in UTC+8.
pub fn format_millis(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| {
            t.with_timezone(&cst())
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        },
    )
}

/// Unix seconds as a time in UTC+8.
pub fn format_seconds(s: u64) -> String {
    i64::try_from(s)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .map_or_else(
            || format!("{s} s"),
            |t| {
                t.with_timezone(&cst())
                    .format("%Y-%m-%d %H:%M:%S %:z")
                    .to_string()
            },
        )
}

/// "1 entry", "2 entries".
pub fn entries(n: u64) -> String {
    if n == 1 {
        "1 entry".to_owned()
    } else {
        format!("{n} entries")
    }
}

/// "1 hash", "2 hashes".
pub fn hash_count(n: usize) -> String {
    if n == 1 {
        "1 hash".to_owned()
    } else {
        format!("{n} hashes")
    }
}

/// `n` of `what`, with an s unless `n` is 1.
pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
