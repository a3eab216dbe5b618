//! `credexctl list`: records in force in a node's view, filtered by origin, list and
//! category, one page or all of them. `--json` prints the pages fetched as one `ListResponse`
//! (their records, the last page's `next_page_token`), as proto3 JSON with every field
//! ([`Document`]) and the `node` that answered.

use anyhow::Result;
use credex_core::date::{Date, format_date};
use credex_node::tls::Role;
use credex_proto::v1::{ListRequest, ListResponse, ViewRecord};

use crate::Global;
use crate::client;
use credex_cli::errln;
use credex_cli::json::{self, Document};
use credex_cli::outln;
use credex_cli::output::print_json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only records from this city.
    #[arg(long, value_name = "CITY")]
    origin: Option<String>,
    /// Only this list: red, black, watch or penalty.
    #[arg(long, value_name = "LIST", value_parser = list_kind)]
    list: Option<i32>,
    /// Only this catalogue category, e.g. court.dishonest_debtor.
    #[arg(long, value_name = "CODE", value_parser = super::category_arg)]
    category: Option<String>,
    /// Valid time: evaluate the view as of this date (YYYY-MM-DD, UTC+8) instead of today.
    #[arg(long, value_name = "DATE", value_parser = super::date_arg)]
    as_of: Option<Date>,
    /// Transaction time: answer from what the origins had logged by then (Unix ms or RFC 3339),
    /// i.e. what the view showed at that moment.
    #[arg(long, value_name = "TIME", value_parser = super::instant_arg)]
    as_known_at: Option<i64>,
    /// Transaction time by a checkpoint: what the view showed when CITY's log (default: the
    /// node's own) had SIZE entries, e.g. the size of a checkpoint an auditor holds.
    #[arg(long, value_name = "[CITY:]SIZE", value_parser = super::checkpoint_arg, conflicts_with = "as_known_at")]
    as_known_at_checkpoint: Option<super::CheckpointArg>,
    /// Records per page (the node caps it at 1000).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = super::integer::<u32>(1, 1000))]
    page_size: u32,
    /// Continue from the token a previous page ended with.
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    page_token: Option<String>,
    /// Fetch every page.
    #[arg(long)]
    all: bool,
    /// Why this query is made (查询事由, e.g. a case number): required with `--role
    /// enforcement`, which sees ID numbers in full and is written to the node's access log.
    #[arg(long, value_name = "TEXT")]
    purpose: Option<String>,
}

fn list_kind(text: &str) -> Result<i32, String> {
    json::parse_enum(json::LIST_KINDS, text)
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    if let Some(origin) = &args.origin {
        super::check_origin(&super::home(global)?.load_consortium()?, "--origin", origin)?;
    }
    let checkpoint = args.as_known_at_checkpoint.unwrap_or_default();
    let conn = client::connect(global, Role::Reader).await?;
    let mut request = ListRequest {
        origin: args.origin.unwrap_or_default(),
        list: args.list.unwrap_or_default(),
        category: args.category.unwrap_or_default(),
        page_size: args.page_size,
        page_token: args.page_token.unwrap_or_default(),
        as_of: args.as_of.map(format_date).unwrap_or_default(),
        as_known_at: args.as_known_at.unwrap_or_default(),
        purpose: args.purpose.unwrap_or_default(),
        as_known_at_size: checkpoint.size,
        as_known_at_origin: checkpoint.city,
    };
    let wanted = match args.page_size {
        0 => 100,
        n => n as usize,
    };
    let mut records: Vec<ViewRecord> = Vec::new();
    let next_page_token = loop {
        let page = conn
            .view()
            .list(conn.request(request.clone()))
            .await
            .map_err(|s| conn.rpc_error("View.List", s))?
            .into_inner();
        records.extend(page.records);
        // A page may stop short of page_size, even empty, where the node's scan budget ran
        // out: follow it until the page is full (or every page with --all).
        if page.next_page_token.is_empty() || (!args.all && records.len() >= wanted) {
            break page.next_page_token;
        }
        request.page_token = page.next_page_token;
    };
    if global.json {
        let pages = ListResponse {
            records,
            next_page_token,
        };
        return print_json(&Document::new(&pages).with("node", conn.city.as_str()));
    }
    if records.is_empty() {
        outln!("no record in force matches")?;
    } else {
        super::lookup::view_table(&records, true).print()?;
    }
    if !next_page_token.is_empty() {
        errln!("more records: --page-token {next_page_token} (or --all)");
    }
    Ok(())
}
