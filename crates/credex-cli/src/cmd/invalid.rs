//! `credexctl invalid [--origin CITY]`: the entries this node lists invalid — appended under
//! their origin's signed root, kept out of the view — with origin, seq, record id and the
//! reason naming the field (Operator.ListInvalid, every page followed). `--json` prints the
//! pages as one `ListInvalidResponse` (every entry, `next_page_token` empty), as proto3 JSON with
//! every field ([`Document`]) and the `node` that answered.

use anyhow::Result;
use credex_node::tls::Role;
use credex_proto::v1::{InvalidEntry, ListInvalidRequest, ListInvalidResponse};

use crate::Global;
use crate::client;
use credex_cli::json::Document;
use credex_cli::outln;
use credex_cli::output::{Table, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this origin's entries.
    #[arg(long, value_name = "CITY")]
    origin: Option<String>,
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    if let Some(origin) = &args.origin {
        super::check_origin(&super::home(global)?.load_consortium()?, "--origin", origin)?;
    }
    let conn = client::connect(global, Role::Operator).await?;
    let origin = args.origin.unwrap_or_default();
    let entries: Vec<InvalidEntry> = client::all_pages(|page_token| {
        let request = ListInvalidRequest {
            origin: origin.clone(),
            page_size: 1000,
            page_token,
        };
        let conn = &conn;
        async move {
            let page = conn
                .operator()
                .list_invalid(conn.request(request))
                .await
                .map_err(|s| conn.rpc_error("Operator.ListInvalid", s))?
                .into_inner();
            Ok((page.entries, page.next_page_token))
        }
    })
    .await?;
    if global.json {
        let all = ListInvalidResponse {
            entries,
            next_page_token: String::new(),
        };
        return print_json(&Document::new(&all).with("node", conn.city.as_str()));
    }
    if entries.is_empty() {
        outln!("no invalid entries at {}", conn.city)?;
        return Ok(());
    }
    let mut t = Table::new(&["ORIGIN", "SEQ", "RECORD", "V", "REASON"]).right(&[1, 3]);
    for e in &entries {
        t.row(vec![
            e.origin.clone(),
            e.seq.to_string(),
            e.record_id.clone(),
            e.version.to_string(),
            e.reason.clone(),
        ]);
    }
    t.print()?;
    outln!("{} invalid entries at {}", entries.len(), conn.city)?;
    Ok(())
}
