//! `credexctl watch`: follows View.Watch — records entering, leaving and changing in this
//! city's view — and prints each change, as a line of text or (`--json`) one JSON object per
//! line: the `ViewChange` as proto3 JSON with every field ([`json::Document`]).
//!
//! With `--state FILE` it keeps its place: the file holds the `after` that resumes the stream
//! (`WatchRequest.after`; 0 means from the first change), written when the stream starts (from
//! the response's `credex-resume-after` metadata) and after each change printed, so a restart
//! misses nothing. A change is saved after it is printed: a watcher killed between the two
//! prints that change again when restarted (at least once, never lost). The file is replaced
//! whole (written beside it, then renamed), so it is never half-written.
//!
//! When the node goes away (UNAVAILABLE, the stream ends) the watcher reconnects, backing off
//! up to 30 s, and resumes where it was; any other error, or failing to connect at all on start,
//! ends it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use credex_cli::json;
use credex_cli::{errln, outln};
use credex_node::tls::Role;
use credex_proto::v1::view_change::Kind;
use credex_proto::v1::{ViewChange, WatchRequest};
use futures::StreamExt;
use tonic::Code;

use crate::Global;
use crate::client;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the place in this file: resume from it when it exists, update it as changes come.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Without a state file: start from the first change the node recorded, not from now on.
    #[arg(long)]
    from_start: bool,
    /// Why this query is made (查询事由): required with `--role enforcement`.
    #[arg(long, value_name = "TEXT")]
    purpose: Option<String>,
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    // Where to start: the state file's place, else now (or the first change).
    let mut place = match &args.state {
        Some(path) => read_state(path)?,
        None => None,
    };
    if place.is_none() && args.from_start {
        place = Some(0);
    }
    let mut backoff = Duration::from_secs(1);
    let mut first = true;
    loop {
        let followed = follow(global, &args, &mut place, first).await;
        first = false;
        match followed {
            Ok(()) => errln!("credexctl watch: the stream ended; reconnecting"),
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Retry(e)) => errln!(
                "credexctl watch: {e:#}; reconnecting in {}s",
                backoff.as_secs()
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

enum Stop {
    /// The node is away: reconnect.
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

/// One connection's worth of the stream, from `place` (`None`: from now on), updating it. A
/// first connection that fails ends the watcher (a wrong folder, city or certificate is no
/// outage); a later one is retried.
async fn follow(
    global: &Global,
    args: &Args,
    place: &mut Option<u64>,
    first: bool,
) -> Result<(), Stop> {
    let conn = client::connect(global, Role::Reader).await.map_err(|e| {
        if first {
            Stop::Fatal(e)
        } else {
            Stop::Retry(e)
        }
    })?;
    let request = WatchRequest {
        after: place.unwrap_or(0),
        from_start: *place == Some(0),
        purpose: args.purpose.clone().unwrap_or_default(),
    };
    // No deadline: the stream lasts as long as the watcher (the connection itself was bounded).
    let response = conn
        .view()
        .watch(tonic::Request::new(request))
        .await
        .map_err(|s| classify(s.code(), conn.rpc_error("View.Watch", s)))?;
    if place.is_none() {
        let resume = response
            .metadata()
            .get("credex-resume-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .context("View.Watch answered without credex-resume-after: the node is older than this credexctl")
            .map_err(Stop::Fatal)?;
        *place = Some(resume);
    }
    if let (Some(path), Some(after)) = (&args.state, *place) {
        write_state(path, after).map_err(Stop::Fatal)?;
    }
    let mut stream = response.into_inner();
    while let Some(change) = stream.next().await {
        let change = change.map_err(|s| classify(s.code(), conn.rpc_error("View.Watch", s)))?;
        outln!("{}", line(global.json, &change))
            .map_err(|e| Stop::Fatal(anyhow::Error::from(e)))?;
        *place = Some(change.change_seq);
        if let Some(path) = &args.state {
            write_state(path, change.change_seq).map_err(Stop::Fatal)?;
        }
    }
    Ok(())
}

fn classify(code: Code, error: anyhow::Error) -> Stop {
    match code {
        Code::Unavailable | Code::Unknown | Code::Cancelled => Stop::Retry(error),
        _ => Stop::Fatal(error),
    }
}

fn kind_name(kind: i32) -> &'static str {
    match Kind::try_from(kind) {
        Ok(Kind::Entered) => "entered",
        Ok(Kind::Left) => "left",
        Ok(Kind::Updated) => "updated",
        _ => "unknown",
    }
}

/// A change as watch prints it: text, or (`as_json`) the message's proto3 JSON.
fn line(as_json: bool, c: &ViewChange) -> String {
    if as_json {
        return json::Document::new(c).to_line();
    }
    let reason = json::enum_name(json::EXCLUSION_REASONS, c.reason)
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!(
        "{} {} {:<7} {}/{} v{} {}{reason}",
        c.change_seq,
        c.effective_on,
        kind_name(c.kind),
        c.origin,
        c.record_id,
        c.version,
        c.subject_id
    )
}

/// The place a state file holds (`None` when there is no file yet).
fn read_state(path: &Path) -> Result<Option<u64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let Ok(after) = text.trim().parse::<u64>() else {
        bail!(
            "{}: {:?} is not a watch state (a change sequence number)",
            path.display(),
            text.trim()
        );
    };
    Ok(Some(after))
}

/// Replaces the state file: written beside it, then renamed over it.
fn write_state(path: &Path, after: u64) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{after}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write the watch state {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use credex_proto::v1::ExclusionReason;
    use expect_test::expect;

    #[test]
    fn a_change_prints_as_text_or_as_the_messages_proto3_json() {
        let left = ViewChange {
            change_seq: 7,
            subject_id: "91430100MA4L8Q2K7F".into(),
            origin: "wuhan".into(),
            record_id: "wuhan-badfe5258d95d2c1".into(),
            version: 2,
            kind: Kind::Left.into(),
            reason: ExclusionReason::Repaired.into(),
            effective_on: "2026-06-01".into(),
        };
        expect![
            "7 2026-06-01 left    wuhan/wuhan-badfe5258d95d2c1 v2 91430100MA4L8Q2K7F (repaired)"
        ]
        .assert_eq(&line(false, &left));
        expect![[r#"{"change_seq":"7","subject_id":"91430100MA4L8Q2K7F","origin":"wuhan","record_id":"wuhan-badfe5258d95d2c1","version":2,"kind":"KIND_LEFT","reason":"EXCLUSION_REASON_REPAIRED","effective_on":"2026-06-01"}"#]]
            .assert_eq(&line(true, &left));
        // A change that is no leaving has no reason: written as the unspecified value.
        let entered = ViewChange {
            kind: Kind::Entered.into(),
            reason: 0,
            ..left
        };
        expect![[r#"{"change_seq":"7","subject_id":"91430100MA4L8Q2K7F","origin":"wuhan","record_id":"wuhan-badfe5258d95d2c1","version":2,"kind":"KIND_ENTERED","reason":"EXCLUSION_REASON_UNSPECIFIED","effective_on":"2026-06-01"}"#]]
            .assert_eq(&line(true, &entered));
    }

    #[test]
    fn the_state_file_round_trips_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watch.state");
        assert_eq!(read_state(&path).unwrap(), None);
        write_state(&path, 42).unwrap();
        assert_eq!(read_state(&path).unwrap(), Some(42));
        std::fs::write(&path, "yesterday").unwrap();
        let err = read_state(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("\"yesterday\" is not a watch state (a change sequence number)"),
            "{err}"
        );
    }
}
