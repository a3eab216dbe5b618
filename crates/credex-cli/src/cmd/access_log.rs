//! `credexctl access-log`: the node's access log (查询留痕) — every view request of the
//! `enforcement` role, which sees ID numbers in full: who, when, which RPC, which subject or
//! filter, and the purpose stated (Operator.ListAccess, every page followed).

use anyhow::Result;
use chrono::{DateTime, FixedOffset};
use credex_node::tls::Role;
use credex_proto::v1::{AccessEntry, ListAccessRequest};
use serde::Serialize;

use crate::Global;
use crate::client;
use credex_cli::outln;
use credex_cli::output::{Table, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct AccessLogJson<'a> {
    node: &'a str,
    accesses: Vec<AccessJson<'a>>,
}

#[derive(Serialize)]
struct AccessJson<'a> {
    number: u64,
    /// Unix ms.
    at: i64,
    who: &'a str,
    rpc: &'a str,
    subject: &'a str,
    purpose: &'a str,
}

pub async fn run(global: &Global, _args: Args) -> Result<()> {
    let conn = client::connect(global, Role::Operator).await?;
    let entries: Vec<AccessEntry> = client::all_pages(|page_token| {
        let request = ListAccessRequest {
            page_size: 1000,
            page_token,
        };
        let conn = &conn;
        async move {
            let page = conn
                .operator()
                .list_access(conn.request(request))
                .await
                .map_err(|s| conn.rpc_error("Operator.ListAccess", s))?
                .into_inner();
            Ok((page.entries, page.next_page_token))
        }
    })
    .await?;
    if global.json {
        return print_json(&AccessLogJson {
            node: &conn.city,
            accesses: entries
                .iter()
                .map(|e| AccessJson {
                    number: e.number,
                    at: e.at,
                    who: &e.who,
                    rpc: &e.rpc,
                    subject: &e.subject,
                    purpose: &e.purpose,
                })
                .collect(),
        });
    }
    if entries.is_empty() {
        outln!("no accesses logged at {}", conn.city)?;
        return Ok(());
    }
    let mut t = Table::new(&["#", "AT (UTC+8)", "WHO", "RPC", "SUBJECT", "PURPOSE"]).right(&[0]);
    for e in &entries {
        t.row(vec![
            e.number.to_string(),
            format_millis(e.at),
            e.who.clone(),
            e.rpc.clone(),
            e.subject.clone(),
            e.purpose.clone(),
        ]);
    }
    t.print()?;
    outln!("{} accesses logged at {}", entries.len(), conn.city)?;
    Ok(())
}

fn format_millis(ms: i64) -> String {
    let cst = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| {
            t.with_timezone(&cst)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        },
    )
}
