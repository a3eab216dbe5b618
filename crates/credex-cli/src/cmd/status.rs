//! `credexctl status`: a node's sync health (Operator.Status) — its peers, every origin's
//! log as this node holds it, quarantine counts and the size of its view. `--json` prints the
//! `StatusResponse` itself, as proto3 JSON with every field ([`Document`]): 64-bit counts as
//! strings, no `view` while the node's first count of it runs.
//!
//! `--watch` asks again every `--interval` seconds until interrupted: on a terminal it redraws
//! the screen in place; otherwise (a pipe, a log file) it prints each snapshot under a line
//! with its time, and with `--json` one JSON document per line.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;
use credex_node::tls::Role;
use credex_proto::v1::{StatusRequest, StatusResponse};

use crate::Global;
use crate::client::{self, Connection};
use credex_cli::json::Document;
use credex_cli::output::{Table, age, ago, print_json};
use credex_cli::{out, outln};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Refresh until interrupted: redraw in place on a terminal, else print each snapshot.
    #[arg(long)]
    watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, value_name = "S", default_value_t = 2, requires = "watch",
          value_parser = super::integer::<u64>(1, 3600))]
    interval: u64,
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    let conn = client::connect(global, Role::Operator).await?;
    if !args.watch {
        let status = status(&conn).await?;
        return if global.json {
            print_json(&Document::new(&status))
        } else {
            out!("{}", render(&status, now_millis()))?;
            Ok(())
        };
    }
    let terminal = std::io::stdout().is_terminal() && !global.json;
    let mut ticks = tokio::time::interval(Duration::from_secs(args.interval));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let status = status(&conn).await?;
        let now = now_millis();
        if global.json {
            outln!("{}", Document::new(&status).to_line())?;
        } else if terminal {
            // Home and clear, then the snapshot: one redraw, no scrolling.
            out!(
                "\x1b[H\x1b[2J{} every {}s\n\n{}",
                snapshot_time(now),
                args.interval,
                render(&status, now)
            )?;
        } else {
            out!("--- {}\n{}\n", snapshot_time(now), render(&status, now))?;
        }
        std::io::stdout().flush()?;
    }
}

/// A snapshot's time, local to the consortium (UTC+8).
fn snapshot_time(unix_millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_millis)
        .map(|t| {
            t.with_timezone(&credex_core::date::cst())
                .format("%Y-%m-%d %H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
}

/// Calls Operator.Status.
pub async fn status(conn: &Connection) -> Result<StatusResponse> {
    let response = conn
        .operator()
        .status(conn.request(StatusRequest::default()))
        .await
        .map_err(|s| conn.rpc_error("Operator.Status", s))?;
    Ok(response.into_inner())
}

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The line a status gets while its node's store takes no writes.
fn storage_line(storage: &credex_proto::v1::StorageStatus) -> String {
    // Rounded down, as the node's refusal: free space just under the margin reads below it.
    let mib = |b: u64| {
        let tenths = (u128::from(b) * 10) >> 20;
        format!("{}.{}", tenths / 10, tenths % 10)
    };
    let mut line = String::new();
    if storage.full {
        line.push_str(&format!(
            "STORAGE FULL: {} MiB free, below the {} MiB kept free; writes refused until space returns\n",
            mib(storage.free_bytes),
            mib(storage.min_free_bytes)
        ));
    }
    if !storage.failed.is_empty() {
        line.push_str(&format!("STORAGE FAILED: {}\n", storage.failed));
    }
    line
}

/// A status as text; times are shown relative to `now_millis`.
pub fn render(s: &StatusResponse, now_millis: i64) -> String {
    let view = s.view.unwrap_or_default();
    let counted = match s.view {
        None => " (the view's counts were not asked for)".to_owned(),
        Some(_) if !view.current => {
            " (counts not current: the view is being counted again, or today's date changes are not yet applied)"
                .to_owned()
        }
        Some(_) => String::new(),
    };
    let mut out = format!(
        "{} ({}): {} subjects, {} records in force, {} excluded, {} invalid entries{counted}\n",
        s.city,
        s.consortium,
        view.subjects,
        view.records_in_force,
        view.excluded,
        s.invalid_entries
    );
    if let Some(storage) = s
        .storage
        .as_ref()
        .filter(|st| st.full || !st.failed.is_empty())
    {
        out.push_str(&storage_line(storage));
    }
    let mut peers = Table::new(&[
        "PEER",
        "ADDRESS",
        "CONNECTED",
        "LAST CONTACT",
        "RTT",
        "LAST ERROR",
    ])
    .right(&[3, 4]);
    for p in &s.peers {
        peers.row(vec![
            p.city.clone(),
            p.address.clone(),
            if p.connected { "yes" } else { "no" }.to_owned(),
            ago(p.last_contact, now_millis),
            if p.last_contact == 0 {
                "-".to_owned()
            } else {
                format!("{}ms", p.round_trip_ms)
            },
            p.last_error.clone(),
        ]);
    }
    if !peers.is_empty() {
        out.push('\n');
        out.push_str(&peers.render());
    }
    let mut origins = Table::new(&[
        "ORIGIN",
        "SIZE",
        "IN VIEW",
        "BEST SEEN",
        "LAG",
        "CHECKPOINT AGE",
        "PUBLISHED",
        "FINAL",
        "COSIGNATURES",
        "FORKED",
    ])
    .right(&[1, 2, 3, 4, 5, 6, 7, 8]);
    for o in &s.origins {
        origins.row(vec![
            o.origin.clone(),
            o.local_size.to_string(),
            o.indexed_size.to_string(),
            o.best_seen_size.to_string(),
            o.lag.to_string(),
            // No checkpoint held: its age would read as "0ms", as if brand new.
            if o.checkpoint_age_ms == 0 && o.published_size == 0 && o.cosignatures == 0 {
                "-".to_owned()
            } else {
                age(o.checkpoint_age_ms)
            },
            o.published_size.to_string(),
            o.final_size.to_string(),
            o.cosignatures.to_string(),
            if o.forked { "FORKED" } else { "no" }.to_owned(),
        ]);
    }
    if !origins.is_empty() {
        out.push('\n');
        out.push_str(&origins.render());
    }
    let mut quarantine = Table::new(&["QUARANTINE REASON", "COUNT"]).right(&[1]);
    for q in &s.quarantine {
        quarantine.row(vec![q.reason.clone(), q.count.to_string()]);
    }
    if !quarantine.is_empty() {
        out.push('\n');
        out.push_str(&quarantine.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use credex_proto::v1::{OriginStatus, PeerStatus, QuarantineCount, ViewCounts};
    use expect_test::expect;

    fn sample() -> StatusResponse {
        StatusResponse {
            city: "hefei".into(),
            consortium: "mid-yangtze".into(),
            peers: vec![
                PeerStatus {
                    city: "changsha".into(),
                    address: "127.0.0.1:7400".into(),
                    connected: true,
                    last_contact: 99_000,
                    last_error: String::new(),
                    round_trip_ms: 3,
                },
                PeerStatus {
                    city: "wuhan".into(),
                    address: "127.0.0.1:7401".into(),
                    connected: false,
                    last_contact: 0,
                    last_error: "connection refused".into(),
                    round_trip_ms: 0,
                },
            ],
            origins: vec![OriginStatus {
                origin: "changsha".into(),
                local_size: 250,
                indexed_size: 240,
                best_seen_size: 251,
                lag: 1,
                checkpoint_age_ms: 1_500,
                published_size: 250,
                final_size: 200,
                cosignatures: 3,
                forked: false,
            }],
            quarantine: vec![QuarantineCount {
                reason: "bad signature".into(),
                count: 2,
            }],
            view: Some(ViewCounts {
                subjects: 900,
                records_in_force: 1000,
                excluded: 12,
                counted_at: 98_000,
                current: true,
            }),
            invalid_entries: 0,
            storage: Some(credex_proto::v1::StorageStatus {
                free_bytes: 5 << 30,
                min_free_bytes: 64 << 20,
                full: false,
                failed: String::new(),
            }),
        }
    }

    #[test]
    fn a_store_that_takes_no_writes_is_said_under_the_first_line() {
        let full = StatusResponse {
            storage: Some(credex_proto::v1::StorageStatus {
                free_bytes: 3 << 19,
                min_free_bytes: 8 << 20,
                full: true,
                failed: "write: No space left on device".into(),
            }),
            ..sample()
        };
        let text = render(&full, 100_000);
        let lines: Vec<&str> = text.lines().skip(1).take(2).collect();
        assert_eq!(
            lines,
            [
                "STORAGE FULL: 1.5 MiB free, below the 8.0 MiB kept free; writes refused until space returns",
                "STORAGE FAILED: write: No space left on device",
            ]
        );
        // A store that takes writes adds nothing.
        let healthy = StatusResponse {
            storage: Some(credex_proto::v1::StorageStatus {
                free_bytes: 100 << 20,
                min_free_bytes: 8 << 20,
                full: false,
                failed: String::new(),
            }),
            ..sample()
        };
        assert_eq!(render(&healthy, 100_000), render(&sample(), 100_000));
    }

    #[test]
    fn renders_peers_origins_and_quarantine() {
        expect![[r#"
            hefei (mid-yangtze): 900 subjects, 1000 records in force, 12 excluded, 0 invalid entries

            PEER      ADDRESS         CONNECTED  LAST CONTACT  RTT  LAST ERROR
            changsha  127.0.0.1:7400  yes                1.0s  3ms
            wuhan     127.0.0.1:7401  no                    -    -  connection refused

            ORIGIN    SIZE  IN VIEW  BEST SEEN  LAG  CHECKPOINT AGE  PUBLISHED  FINAL  COSIGNATURES  FORKED
            changsha   250      240        251    1            1.5s        250    200             3  no

            QUARANTINE REASON  COUNT
            bad signature          2
        "#]]
        .assert_eq(&render(&sample(), 100_000));
    }

    #[test]
    fn json_is_the_responses_proto3_json() {
        // Every field of the response, zero values too; 64-bit integers as strings.
        expect![[r#"{"city":"hefei","consortium":"mid-yangtze","peers":[{"city":"changsha","address":"127.0.0.1:7400","connected":true,"last_contact":"99000","last_error":"","round_trip_ms":3},{"city":"wuhan","address":"127.0.0.1:7401","connected":false,"last_contact":"0","last_error":"connection refused","round_trip_ms":0}],"origins":[{"origin":"changsha","local_size":"250","best_seen_size":"251","lag":"1","checkpoint_age_ms":"1500","published_size":"250","final_size":"200","cosignatures":3,"forked":false,"indexed_size":"240"}],"quarantine":[{"reason":"bad signature","count":"2"}],"view":{"subjects":"900","records_in_force":"1000","excluded":"12","counted_at":"98000","current":true},"invalid_entries":"0","storage":{"free_bytes":"5368709120","min_free_bytes":"67108864","full":false,"failed":""}}"#]].assert_eq(&Document::new(&sample()).to_line());
        // Before the node's first count of its view the response has none, nor the document.
        let counting = StatusResponse {
            view: None,
            ..sample()
        };
        let document: serde_json::Value =
            serde_json::from_str(&Document::new(&counting).to_line()).expect("json");
        assert!(document.get("view").is_none(), "{document}");
    }
}
