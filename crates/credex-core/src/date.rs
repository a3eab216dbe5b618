//! Calendar dates in China Standard Time (UTC+8) and the injectable clock.
//!
//! Every date in the schema is a `YYYY-MM-DD` calendar date in UTC+8: publication
//! periods, decision and status dates. "Today" is likewise the UTC+8 date, taken
//! from a [`Clock`] so that tests and `credexctl` can move time.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Utc};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A calendar date (UTC+8).
pub type Date = NaiveDate;

const CST_OFFSET_SECS: i32 = 8 * 3600;

/// Parses a `YYYY-MM-DD` calendar date; the error says what is wrong with the text.
pub fn parse_date(text: &str) -> Result<Date, String> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape_ok {
        let shown = crate::ident::masked_if_id_like(text);
        return Err(format!("{shown:?} is not a date of the form YYYY-MM-DD"));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a calendar date"))
}

/// The date `days` days before `date`, if it is in range.
pub fn days_before(date: Date, days: u64) -> Option<Date> {
    date.checked_sub_days(chrono::Days::new(days))
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// A date as an ordered day number, e.g. 2027-06-01 → 20270601 (the store keys its due dates so).
pub fn day_number(date: Date) -> u32 {
    u32::try_from(date.year()).map_or(u32::MAX, |year| {
        year * 10_000 + date.month() * 100 + date.day()
    })
}

/// The date of a [`day_number`], if it is one.
pub fn date_of_day_number(day: u32) -> Option<Date> {
    let (year, md) = (i32::try_from(day / 10_000).ok()?, day % 10_000);
    Date::from_ymd_opt(year, md / 100, md % 100)
}

/// China Standard Time (UTC+8), in which every credex date is and every time is shown.
pub fn cst() -> FixedOffset {
    FixedOffset::east_opt(CST_OFFSET_SECS).expect("UTC+8 is a valid offset")
}

/// The UTC+8 calendar date of a Unix-millisecond instant.
pub fn date_of_millis(unix_millis: i64) -> Date {
    DateTime::<Utc>::from_timestamp_millis(unix_millis)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .with_timezone(&cst())
        .date_naive()
}

/// A Unix-millisecond instant as its UTC+8 time to the millisecond,
/// `2026-06-01T12:00:00.000+08:00` (for messages; reports use `credex_audit::text`).
pub fn format_millis(unix_millis: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(unix_millis) {
        Some(t) => t
            .with_timezone(&cst())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        None => format!("{unix_millis} ms (out of range)"),
    }
}

/// Where "now" comes from. The node uses [`SystemClock`]; tests inject a [`FixedClock`].
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix milliseconds.
    fn now_millis(&self) -> i64;

    /// Time gone by since a fixed point of this clock's, which never goes back whatever the
    /// wall clock does: what a node measures the age of something it learnt by (a witness's
    /// clock, as of when it cosigned), so that a wall clock set wrong is seen as wrong.
    fn elapsed(&self) -> Duration;

    /// Today's calendar date in UTC+8.
    fn today(&self) -> Date {
        date_of_millis(self.now_millis())
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        Utc::now().timestamp_millis()
    }

    /// The monotonic clock's time since the process first asked.
    fn elapsed(&self) -> Duration {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that stands still until moved; for tests and simulated time. Moved forward, time
/// has gone by ([`Clock::elapsed`] grows by as much, as days passing are simulated); moved
/// back, it was put back, and no time went by.
#[derive(Debug)]
pub struct FixedClock {
    unix_millis: AtomicI64,
    elapsed_millis: AtomicU64,
}

impl FixedClock {
    /// A clock at the given Unix milliseconds.
    pub fn at_millis(unix_millis: i64) -> Self {
        Self {
            unix_millis: AtomicI64::new(unix_millis),
            elapsed_millis: AtomicU64::new(0),
        }
    }

    /// A clock at noon (UTC+8) of the given date.
    pub fn at_date(date: Date) -> Self {
        Self::at_millis(noon_cst_millis(date))
    }

    /// Moves the clock to noon (UTC+8) of the given date.
    pub fn set_date(&self, date: Date) {
        self.set_millis(noon_cst_millis(date));
    }

    /// Moves the clock to the given Unix milliseconds.
    pub fn set_millis(&self, unix_millis: i64) {
        let before = self.unix_millis.swap(unix_millis, Ordering::SeqCst);
        let forward = u64::try_from(unix_millis.saturating_sub(before)).unwrap_or(0);
        self.elapsed_millis.fetch_add(forward, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_millis(&self) -> i64 {
        self.unix_millis.load(Ordering::SeqCst)
    }

    fn elapsed(&self) -> Duration {
        Duration::from_millis(self.elapsed_millis.load(Ordering::SeqCst))
    }
}

fn noon_cst_millis(date: Date) -> i64 {
    let noon = date.and_hms_opt(12, 0, 0).expect("noon exists");
    (noon.and_utc().timestamp() - i64::from(CST_OFFSET_SECS)) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn check(input: &str, expect: expect_test::Expect) {
        let got = match parse_date(input) {
            Ok(d) => format!("ok {}", format_date(d)),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn day_numbers_order_as_dates_and_read_back() {
        let dates = [
            "0001-01-01",
            "2026-12-31",
            "2027-01-01",
            "2027-06-01",
            "9999-12-31",
        ];
        let numbers: Vec<u32> = dates
            .iter()
            .map(|d| day_number(parse_date(d).expect("a date")))
            .collect();
        assert_eq!(numbers[3], 20270601);
        assert!(numbers.is_sorted());
        for (date, n) in dates.iter().zip(numbers) {
            assert_eq!(
                date_of_day_number(n).map(format_date).as_deref(),
                Some(*date)
            );
        }
        assert_eq!(date_of_day_number(20270230), None, "no 30 February");
        assert_eq!(date_of_day_number(20271301), None);
    }

    #[test]
    fn instants_format_in_china_standard_time() {
        // 2026-05-31T16:00:00Z is the next day in UTC+8.
        assert_eq!(
            format_millis(1_780_243_200_123),
            "2026-06-01T00:00:00.123+08:00"
        );
        assert_eq!(
            format_millis(i64::MAX),
            format!("{} ms (out of range)", i64::MAX)
        );
    }

    #[test]
    fn parses_calendar_dates_only() {
        check("2026-04-01", expect![["ok 2026-04-01"]]);
        check("2024-02-29", expect![["ok 2024-02-29"]]);
        check(
            "2026-02-29",
            expect![[r#"err "2026-02-29" is not a calendar date"#]],
        );
        check(
            "2026-13-01",
            expect![[r#"err "2026-13-01" is not a calendar date"#]],
        );
        check(
            "2026-4-1",
            expect![[r#"err "2026-4-1" is not a date of the form YYYY-MM-DD"#]],
        );
        check(
            "20260401",
            expect![[r#"err "20260401" is not a date of the form YYYY-MM-DD"#]],
        );
        check(
            "",
            expect![[r#"err "" is not a date of the form YYYY-MM-DD"#]],
        );
    }

    /// Found by the `record_structured` fuzz target: an ID number in a date field (a column
    /// mapped wrong) was echoed in full by the error.
    #[test]
    fn an_id_number_in_a_date_field_is_masked() {
        check(
            "420111197503019307",
            expect![[r#"err "4201**********9307" is not a date of the form YYYY-MM-DD"#]],
        );
        check(
            "20260401123",
            expect![[r#"err "20260401123" is not a date of the form YYYY-MM-DD"#]],
        );
    }

    #[test]
    fn today_is_the_utc8_date() {
        // 2026-03-31T16:30:00Z is 2026-04-01 00:30 in Changsha.
        let clock = FixedClock::at_millis(1_774_974_600_000);
        assert_eq!(format_date(clock.today()), "2026-04-01");
        let d = parse_date("2026-05-20").unwrap();
        clock.set_date(d);
        assert_eq!(clock.today(), d);
    }

    #[test]
    fn a_fixed_clock_moved_forward_lets_time_go_by_and_put_back_does_not() {
        let clock = FixedClock::at_date(parse_date("2026-05-20").unwrap());
        assert_eq!(clock.elapsed(), Duration::ZERO);
        clock.set_date(parse_date("2026-05-22").unwrap());
        assert_eq!(clock.elapsed(), Duration::from_secs(2 * 86_400));
        // Put back a day: the wall clock goes back, time gone by does not.
        clock.set_date(parse_date("2026-05-21").unwrap());
        assert_eq!(clock.elapsed(), Duration::from_secs(2 * 86_400));
        clock.set_date(parse_date("2026-05-23").unwrap());
        assert_eq!(clock.elapsed(), Duration::from_secs(4 * 86_400));
    }
}
