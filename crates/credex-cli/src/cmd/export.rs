//! `credexctl export`: one list of what is in force in this city's view (红黑榜, 重点关注名单,
//! 行政处罚) as CSV with Chinese headers or as JSON Lines, with each record's provenance
//! (origin, seq, checkpoint size).
//!
//! It follows View.List page by page and writes each page before asking for the next, so
//! memory holds one page (at most 1,000 records) however long the list. Resident ID numbers are
//! masked in the output whatever the role (DESIGN.md: masked in listings and exports); the node
//! masks them already for every role but `enforcement`.
//!
//! The CSV's headers are those `credexctl import` reads (the 双公示 export's for the penalty
//! list, the red/black-list export's for the others), plus 状态, 记录编号, 版本号 and the
//! provenance columns 来源城市, 序号 and 检查点大小. It is UTF-8 with a byte order mark, which
//! spreadsheet programs need to read Chinese text.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use credex_cli::json;
use credex_core::catalogue::Catalogue;
use credex_core::ident::mask_id_number;
use credex_node::tls::Role;
use credex_proto::v1::{ListKind, ListRequest, ViewRecord};

use crate::Global;
use crate::client;
use credex_cli::errln;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The list: red, black, watch or penalty.
    #[arg(long, value_name = "LIST", value_parser = list_kind)]
    list: i32,
    /// Only this catalogue category, e.g. court.dishonest_debtor.
    #[arg(long, value_name = "CODE", value_parser = super::category_arg)]
    category: Option<String>,
    /// Only records from this city.
    #[arg(long, value_name = "CITY")]
    origin: Option<String>,
    /// csv (Chinese headers) or jsonl (one view record per line, as `list --json` shows them).
    #[arg(long, value_enum)]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Records per View.List page (the node caps it at 1000).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = super::integer::<u32>(1, 1000))]
    page_size: u32,
    /// Why this query is made (查询事由): required with `--role enforcement`.
    #[arg(long, value_name = "TEXT")]
    purpose: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Csv,
    Jsonl,
}

fn list_kind(text: &str) -> Result<i32, String> {
    json::parse_enum(json::LIST_KINDS, text)
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    if let Some(origin) = &args.origin {
        super::check_origin(&super::home(global)?.load_consortium()?, "--origin", origin)?;
    }
    let conn = client::connect(global, Role::Reader).await?;
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let out = BufWriter::with_capacity(1 << 16, out);
    let list = ListKind::try_from(args.list).unwrap_or(ListKind::Unspecified);
    let mut writer = match args.format {
        Format::Csv => Writer::csv(out, list)?,
        Format::Jsonl => Writer::Jsonl(out),
    };
    let mut request = ListRequest {
        origin: args.origin.unwrap_or_default(),
        list: args.list,
        category: args.category.unwrap_or_default(),
        page_size: args.page_size,
        purpose: args.purpose.unwrap_or_default(),
        ..Default::default()
    };
    let mut written = 0u64;
    loop {
        let page = conn
            .view()
            .list(conn.request(request.clone()))
            .await
            .map_err(|s| conn.rpc_error("View.List", s))?
            .into_inner();
        for record in page.records {
            writer.write(masked(record))?;
            written += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    writer.finish()?;
    if let Some(path) = &args.output {
        errln!("{written} records written to {}", path.display());
    }
    Ok(())
}

/// The record with every resident ID number masked.
fn masked(mut v: ViewRecord) -> ViewRecord {
    if let Some(subject) = v.record.as_mut().and_then(|r| r.subject.as_mut()) {
        if !subject.id_number.is_empty() {
            subject.id_number = mask_id_number(&subject.id_number);
        }
        if let Some(rep) = subject.legal_representative.as_mut()
            && !rep.id_number.is_empty()
        {
            rep.id_number = mask_id_number(&rep.id_number);
        }
    }
    v
}

enum Writer<W: Write> {
    Csv(Box<csv::Writer<W>>, &'static Catalogue),
    Jsonl(W),
}

impl<W: Write> Writer<W> {
    fn csv(mut out: W, list: ListKind) -> Result<Self> {
        out.write_all(b"\xEF\xBB\xBF")?;
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(headers(list))?;
        Ok(Writer::Csv(Box::new(csv), Catalogue::builtin()))
    }

    fn write(&mut self, v: ViewRecord) -> Result<()> {
        match self {
            Writer::Csv(csv, catalogue) => csv.write_record(row(&v, catalogue))?,
            Writer::Jsonl(out) => {
                // A record as `list --json` writes it in its document: every field.
                serde_json::to_writer(&mut *out, &json::Document::new(&v))?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Writer::Csv(mut csv, _) => csv.flush()?,
            Writer::Jsonl(mut out) => out.flush()?,
        }
        Ok(())
    }
}

/// The CSV header of a list: `credexctl import`'s names for the fields, then status, id,
/// version and provenance.
fn headers(list: ListKind) -> Vec<&'static str> {
    let penalty = list == ListKind::Penalty;
    let pick = |penalty_name, list_name| if penalty { penalty_name } else { list_name };
    vec![
        pick("行政相对人名称", "主体名称"),
        pick("行政相对人类别", "主体类别"),
        "统一社会信用代码",
        "证件号码",
        "法定代表人",
        pick("行政处罚决定书文号", "认定文书文号"),
        "名单类别",
        pick("违法行为类型", "信用信息类别"),
        "失信程度",
        pick("违法事实", "列入事由"),
        pick("处罚依据", "认定依据"),
        "处罚类别",
        "处罚内容",
        "罚款金额(万元)",
        pick("处罚决定日期", "列入日期"),
        "公示起始日期",
        "公示截止期",
        pick("处罚机关", "认定部门"),
        pick("处罚机关统一社会信用代码", "认定部门统一社会信用代码"),
        "惩戒措施",
        "数据来源单位",
        "备注",
        "状态",
        "记录编号",
        "版本号",
        "来源城市",
        "序号",
        "检查点大小",
    ]
}

/// One view record as a CSV row, in [`headers`]' order.
fn row(v: &ViewRecord, catalogue: &Catalogue) -> Vec<String> {
    let r = v.record.clone().unwrap_or_default();
    let (kind, list, severity) = (
        r.subject.clone().unwrap_or_default().kind(),
        r.list(),
        r.severity(),
    );
    let subject = r.subject.unwrap_or_default();
    let rep = subject.legal_representative.unwrap_or_default();
    let decision = r.decision.unwrap_or_default();
    let publication = r.publication.unwrap_or_default();
    let authority = r.authority.unwrap_or_default();
    let provenance = v.provenance.clone().unwrap_or_default();
    let category = catalogue
        .get(&r.category)
        .map_or_else(|| r.category.clone(), |c| c.name_zh.clone());
    vec![
        subject.name,
        match kind {
            credex_proto::v1::SubjectKind::LegalPerson => "法人及非法人组织",
            credex_proto::v1::SubjectKind::IndividualBusiness => "个体工商户",
            credex_proto::v1::SubjectKind::NaturalPerson => "自然人",
            credex_proto::v1::SubjectKind::Unspecified => "",
        }
        .to_owned(),
        subject.uscc,
        subject.id_number,
        rep.name,
        decision.document_number,
        match list {
            ListKind::Red => "红名单",
            ListKind::Black => "黑名单",
            ListKind::Watch => "重点关注名单",
            ListKind::Penalty => "行政处罚",
            ListKind::Unspecified => "",
        }
        .to_owned(),
        category,
        match severity {
            credex_proto::v1::Severity::Minor => "轻微",
            credex_proto::v1::Severity::General => "一般",
            credex_proto::v1::Severity::Serious => "严重",
            credex_proto::v1::Severity::Unspecified => "",
        }
        .to_owned(),
        decision.facts,
        decision.legal_basis,
        decision.penalty_kinds.join("、"),
        decision.penalty_content,
        wan_yuan(decision.fine_fen),
        decision.decided_on,
        publication.starts_on,
        publication.ends_on,
        authority.name,
        authority.uscc,
        decision.sanction_measures.join("、"),
        r.data_source,
        r.remarks,
        if v.under_objection {
            "异议处理中"
        } else {
            "有效"
        }
        .to_owned(),
        r.record_id,
        r.version.to_string(),
        provenance.origin,
        provenance.seq.to_string(),
        provenance.checkpoint_size.to_string(),
    ]
}

/// Fen as 万元, exact: 500,000 → `0.5`; no fine → empty.
fn wan_yuan(fen: i64) -> String {
    if fen == 0 {
        return String::new();
    }
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    let fraction = format!("{:06}", fen % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{sign}{}", fen / 1_000_000)
    } else {
        format!("{sign}{}.{fraction}", fen / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fines_are_written_in_wan_yuan_exactly() {
        let got: Vec<String> = [0, 500_000, 1_200_000_000, 3_123_456, 1]
            .map(wan_yuan)
            .into();
        assert_eq!(got, ["", "0.5", "1200", "3.123456", "0.000001"]);
    }

    #[test]
    fn every_row_has_a_cell_per_header() {
        for list in [ListKind::Red, ListKind::Penalty] {
            assert_eq!(
                row(&ViewRecord::default(), Catalogue::builtin()).len(),
                headers(list).len()
            );
        }
    }
}
