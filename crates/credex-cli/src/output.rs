//! Terminal output: aligned tables that measure Chinese text by its display width, and
//! JSON documents for `--json`.
//!
//! Everything `credexctl` prints on stdout goes through [`crate::outln!`] and [`crate::out!`] (or a writer
//! whose errors are returned), never `println!`: `credexctl … | head` closes stdout early,
//! `println!` panics then, and a returned error lets `main` end quietly instead
//! ([`is_broken_pipe`]). Notes on stderr go through [`crate::errln!`], which ignores a closed stderr.

use std::io::{self, Write};

use serde::Serialize;

/// `println!` to stdout that returns the write's `io::Result` instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        ::std::writeln!(::std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` to stdout that returns the write's `io::Result` instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        ::std::write!(::std::io::stdout().lock(), $($arg)*)
    }};
}

/// `eprintln!` that ignores a failed write instead of panicking: with stderr gone (`2>&1 |
/// head`) there is nowhere left to say anything.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

/// Whether `error` comes from writing to a pipe whose reader has gone (`… | head`): not a
/// failure of the command, which ends quietly then, as `cat` would.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<io::Error>()
            .map(io::Error::kind)
            .or_else(|| cause.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

/// A table printed with columns aligned on display width, so a column of company names
/// in Chinese lines up with the ASCII columns around it.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, every column left-aligned.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            right: vec![false; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the given columns (numbers).
    pub fn right(mut self, columns: &[usize]) -> Self {
        for &c in columns {
            self.right[c] = true;
        }
        self
    }

    /// Adds a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "table row width");
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row after the header, each line ending in `\n`.
    /// Cells are single-line: line breaks inside a cell are shown as spaces.
    pub fn render(&self) -> String {
        let rows: Vec<Vec<String>> = std::iter::once(&self.headers)
            .chain(&self.rows)
            .map(|row| {
                row.iter()
                    .map(|c| c.replace(['\n', '\r', '\t'], " "))
                    .collect()
            })
            .collect();
        let mut widths = vec![0; self.headers.len()];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(display_width(cell));
            }
        }
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - display_width(cell);
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) -> io::Result<()> {
        io::stdout().lock().write_all(self.render().as_bytes())
    }
}

/// Columns a string takes in a terminal: East Asian wide and fullwidth characters take two.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    let c = u32::from(c);
    // The wide ranges of Unicode's East Asian Width property that Chinese text uses: Hangul
    // Jamo, CJK radicals to Yi (incl. CJK punctuation and unified ideographs), Hangul
    // syllables, compatibility ideographs, vertical and small forms, fullwidth forms and the
    // supplementary ideograph planes.
    let wide = matches!(c,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE10..=0xFE19
        | 0xFE30..=0xFE6F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x20000..=0x3FFFD);
    let zero = matches!(c, 0x0300..=0x036F | 0x200B..=0x200F | 0xFE00..=0xFE0F);
    if zero {
        0
    } else if wide {
        2
    } else {
        1
    }
}

/// Prints a value as pretty JSON on stdout, with a final newline.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// A fine in fen as yuan, e.g. `5000000` → `50,000.00`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    let whole = (fen / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{:02}", fen % 100)
}

/// How long ago a Unix-millisecond instant was, for status tables: `-` for 0 (never).
pub fn ago(unix_millis: i64, now_millis: i64) -> String {
    if unix_millis == 0 {
        return "-".to_owned();
    }
    age(now_millis.saturating_sub(unix_millis))
}

/// A duration in milliseconds, short: `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn age(millis: i64) -> String {
    let ms = millis.max(0);
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn aligns_chinese_text_by_display_width() {
        let mut t = Table::new(&["ORIGIN", "SEQ", "SUBJECT", "LIST"]).right(&[1]);
        t.row(vec![
            "changsha".into(),
            "7".into(),
            "长沙市岳麓区湘味食品有限公司".into(),
            "black".into(),
        ]);
        t.row(vec![
            "wuhan".into(),
            "1024".into(),
            "李记米粉店".into(),
            "penalty".into(),
        ]);
        t.row(vec![
            "hefei".into(),
            "12".into(),
            "Anhui Foo\nBar Co.".into(),
            "".into(),
        ]);
        expect![[r#"
            ORIGIN     SEQ  SUBJECT                       LIST
            changsha     7  长沙市岳麓区湘味食品有限公司  black
            wuhan     1024  李记米粉店                    penalty
            hefei       12  Anhui Foo Bar Co.
        "#]]
        .assert_eq(&t.render());
    }

    #[test]
    fn widths() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("长沙"), 4);
        assert_eq!(display_width("〔2026〕"), 8);
        assert_eq!(display_width("（"), 2);
    }

    #[test]
    fn formats_money_and_durations() {
        let got: Vec<String> = [0, 5, 100, 123_456, 5_000_000, 100_000_000_000, -250]
            .map(yuan)
            .into();
        expect![[
            r#"["0.00", "0.05", "1.00", "1,234.56", "50,000.00", "1,000,000,000.00", "-2.50"]"#
        ]]
        .assert_eq(&format!("{got:?}"));
        let got: Vec<String> = [0, 850, 12_345, 245_000, 7_800_000].map(age).into();
        expect![[r#"["0ms", "850ms", "12.3s", "4m05s", "2h10m"]"#]].assert_eq(&format!("{got:?}"));
        assert_eq!(ago(0, 5_000), "-");
        assert_eq!(ago(1_000, 3_500), "2.5s");
    }
}
