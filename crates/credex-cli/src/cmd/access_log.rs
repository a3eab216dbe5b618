//! `credexctl access-log`: the node's access log (查询留痕) — every view request of the
//! `enforcement` role, which sees ID numbers in full: who, when, which RPC, which subject or
//! filter, and the purpose stated (Operator.ListAccess, every page followed). `--json` prints
//! the pages as one `ListAccessResponse` (every entry, `next_page_token` empty), as proto3 JSON
//! with every field ([`Document`]) and the `node` that answered.

use anyhow::Result;
use chrono::DateTime;
use credex_node::tls::Role;
use credex_proto::v1::{AccessEntry, ListAccessRequest, ListAccessResponse};

use crate::Global;
use crate::client;
use credex_cli::json::Document;
use credex_cli::outln;
use credex_cli::output::{Table, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {}

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
        let all = ListAccessResponse {
            entries,
            next_page_token: String::new(),
        };
        return print_json(&Document::new(&all).with("node", conn.city.as_str()));
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
    DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| {
            t.with_timezone(&credex_core::date::cst())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        },
    )
}
