//! The subcommands, one module each; `demo` lives in [`crate::demo`].

pub mod access_log;
pub mod audit;
pub mod bench;
pub mod consortium;
pub mod export;
pub mod generate;
pub mod import;
pub mod invalid;
pub mod list;
pub mod lookup;
pub mod publish;
pub mod status;
pub mod watch;

use anyhow::{Context, Result, bail};
use credex_cli::home::Home;
use credex_core::catalogue::Catalogue;
use credex_core::date::{Date, parse_date};
use credex_node::config::Consortium;

/// clap parser for `YYYY-MM-DD` options.
pub fn date_arg(text: &str) -> Result<Date, String> {
    parse_date(text)
}

/// Parses a transaction time for `--as-known-at`: Unix milliseconds, or an RFC 3339 time
/// (`2026-05-20T09:30:00+08:00`).
pub fn instant_arg(text: &str) -> Result<i64, String> {
    if is_integer(text) {
        return match integer::<i64>(1, i64::MAX.into())(text) {
            Ok(ms) => Ok(ms),
            Err(_) if text.parse::<i128>().is_ok_and(|n| n < 1) => Err(format!(
                "{text} is not a Unix time in milliseconds after 1970"
            )),
            Err(e) => Err(e),
        };
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{text:?} is neither Unix milliseconds nor an RFC 3339 time: {e}"))
}

/// A transaction time given by a checkpoint, for `--as-known-at-checkpoint [CITY:]SIZE`: the
/// city (empty: the node's own) and the size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointArg {
    pub city: String,
    pub size: u64,
}

/// Parses `--as-known-at-checkpoint`: `SIZE` (the node's own log) or `CITY:SIZE`.
pub fn checkpoint_arg(text: &str) -> Result<CheckpointArg, String> {
    let (city, size) = match text.rsplit_once(':') {
        Some((city, size)) if !city.is_empty() => (city, size),
        Some(_) => return Err(format!("{text:?}: the city before ':' is empty")),
        None => ("", text),
    };
    let size = integer::<u64>(1, u64::MAX.into())(size)?;
    Ok(CheckpointArg {
        city: city.to_owned(),
        size,
    })
}

/// clap parser for a whole number from `min` to `max`: one outside is called out of range
/// (Rust's own parsing would say "number too large to fit in target type", or "invalid
/// digit" for a negative count), with the range.
pub fn integer<T: TryFrom<i128>>(
    min: i128,
    max: i128,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| {
        let out_of_range = || format!("{text} is out of range {min}..={max}");
        if !is_integer(text) {
            return Err(format!("{text:?} is not a whole number"));
        }
        // Digits beyond i128 are out of range too.
        let n = text.parse::<i128>().map_err(|_| out_of_range())?;
        if !(min..=max).contains(&n) {
            return Err(out_of_range());
        }
        T::try_from(n).map_err(|_| out_of_range())
    }
}

/// An optional sign and one or more ASCII digits.
fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// clap parser for a category filter: a code of the shared catalogue. Records of a category the
/// catalogue does not know are never in force, so such a filter would only ever match nothing.
pub fn category_arg(code: &str) -> Result<String, String> {
    let catalogue = Catalogue::builtin();
    if catalogue.is_known(code) {
        return Ok(code.to_owned());
    }
    let field = code.split_once('.').map_or(code, |(field, _)| field);
    let known: Vec<&str> = if catalogue.field(field).is_some() {
        catalogue
            .categories()
            .filter(|c| c.field == field)
            .map(|c| c.code.as_str())
            .collect()
    } else {
        catalogue.fields().map(|f| f.code.as_str()).collect()
    };
    let what = if catalogue.field(field).is_some() {
        format!("the categories of field {field} are")
    } else {
        "its fields are".to_owned()
    };
    Err(format!(
        "unknown category {code:?}: not in the category catalogue {}; {what} {}",
        catalogue.version(),
        known.join(", ")
    ))
}

/// The consortium folder `--home` names.
pub fn home(global: &crate::Global) -> Result<Home> {
    global
        .home
        .as_ref()
        .map(Home::new)
        .context("no consortium folder: pass --home DIR or set CREDEX_HOME")
}

/// Checks an origin filter (`flag`) against the consortium: a city that is not a member is an
/// error naming the members, not an empty answer.
pub fn check_origin(consortium: &Consortium, flag: &str, origin: &str) -> Result<()> {
    if consortium.member(origin).is_none() {
        bail!(
            "{flag} {origin:?}: not a member of consortium {} (members: {})",
            consortium.name,
            consortium.cities().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn integers_outside_their_range_are_called_out_of_range() {
        let check = |text: &str| match integer::<u16>(1, 65_535)(text) {
            Ok(n) => format!("{text}: {n}"),
            Err(e) => format!("{text}: error: {e}"),
        };
        let got: Vec<String> = [
            "7400",
            "65535",
            "65536",
            "0",
            "-1",
            "99999999999999999999999999999999999999999",
            "12a",
            "",
        ]
        .map(check)
        .into();
        expect![[r#"
            [
                "7400: 7400",
                "65535: 65535",
                "65536: error: 65536 is out of range 1..=65535",
                "0: error: 0 is out of range 1..=65535",
                "-1: error: -1 is out of range 1..=65535",
                "99999999999999999999999999999999999999999: error: 99999999999999999999999999999999999999999 is out of range 1..=65535",
                "12a: error: \"12a\" is not a whole number",
                ": error: \"\" is not a whole number",
            ]
        "#]]
        .assert_debug_eq(&got);
        expect!["99999999999999999999 is out of range 1..=9223372036854775807"]
            .assert_eq(&instant_arg("99999999999999999999").unwrap_err());
        expect!["0 is not a Unix time in milliseconds after 1970"]
            .assert_eq(&instant_arg("0").unwrap_err());
        assert_eq!(instant_arg("1760000000000"), Ok(1_760_000_000_000));
    }

    #[test]
    fn unknown_categories_are_named_with_what_there_is() {
        assert_eq!(
            category_arg("court.dishonest_debtor").as_deref(),
            Ok("court.dishonest_debtor")
        );
        let field = category_arg("court.nonsense").unwrap_err();
        assert!(
            field.starts_with(
                r#"unknown category "court.nonsense": not in the category catalogue "#
            ) && field.contains("the categories of field court are court."),
            "{field}"
        );
        let unknown = category_arg("weather.rain").unwrap_err();
        assert!(
            unknown.contains("its fields are ") && unknown.contains("court"),
            "{unknown}"
        );
    }
}
