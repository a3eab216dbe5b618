//! `credexctl lookup <USCC|ID>`: every record in force for one subject across the cities
//! this node recognises, and the records about it that are not in force, with the reason.
//! `--json` prints the pages as one `LookupResponse` ([`lookup`]), as proto3 JSON with every
//! field ([`Document`]) and the `node` that answered.

use anyhow::Result;
use credex_core::date::{Date, format_date};
use credex_node::tls::Role;
use credex_proto::v1::{LookupRequest, LookupResponse, ViewRecord};

use crate::Global;
use crate::client::{self, Connection};
use credex_cli::json::{self, Document};
use credex_cli::out;
use credex_cli::output::{Table, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A unified social credit code (统一社会信用代码) or resident ID number (居民身份证号码).
    #[arg(value_name = "USCC|ID")]
    subject: String,
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
    /// Why this query is made (查询事由, e.g. a case number): required with `--role
    /// enforcement`, which sees ID numbers in full and is written to the node's access log.
    #[arg(long, value_name = "TEXT")]
    purpose: Option<String>,
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    let conn = client::connect(global, Role::Reader).await?;
    let response = lookup(
        &conn,
        &args.subject,
        args.as_of,
        args.as_known_at,
        args.as_known_at_checkpoint.unwrap_or_default(),
        args.purpose.as_deref().unwrap_or_default(),
    )
    .await?;
    if global.json {
        print_json(&Document::new(&response).with("node", conn.city.as_str()))
    } else {
        out!("{}", render(&conn.city, &response))?;
        Ok(())
    }
}

/// Calls View.Lookup, following its pages (each under the node's byte bound) into one answer.
pub async fn lookup(
    conn: &Connection,
    subject: &str,
    as_of: Option<Date>,
    as_known_at: Option<i64>,
    checkpoint: super::CheckpointArg,
    purpose: &str,
) -> Result<LookupResponse> {
    let mut request = LookupRequest {
        subject_id: subject.to_owned(),
        as_of: as_of.map(format_date).unwrap_or_default(),
        as_known_at: as_known_at.unwrap_or_default(),
        page_size: 0,
        page_token: String::new(),
        purpose: purpose.to_owned(),
        as_known_at_size: checkpoint.size,
        as_known_at_origin: checkpoint.city,
    };
    let mut whole: Option<LookupResponse> = None;
    loop {
        let page = conn
            .view()
            .lookup(conn.request(request.clone()))
            .await
            .map_err(|s| conn.rpc_error("View.Lookup", s))?
            .into_inner();
        // Later pages are evaluated for the same date; pin it in case midnight passes.
        request.as_of.clone_from(&page.as_of);
        let next = page.next_page_token.clone();
        match whole.as_mut() {
            None => whole = Some(page),
            Some(w) => {
                w.in_force.extend(page.in_force);
                w.excluded.extend(page.excluded);
            }
        }
        if next.is_empty() {
            break;
        }
        request.page_token = next;
    }
    let mut whole = whole.unwrap_or_default();
    whole.next_page_token.clear();
    Ok(whole)
}

/// A lookup as text: a header line, the records in force and the excluded ones.
pub fn render(node: &str, r: &LookupResponse) -> String {
    let name = r
        .in_force
        .iter()
        .find_map(|v| v.record.as_ref()?.subject.as_ref())
        .map(|s| s.name.as_str());
    let mut out = format!(
        "{}{} — view of {node} as of {}\n",
        r.subject_id,
        name.map(|n| format!(" {n}")).unwrap_or_default(),
        r.as_of
    );
    if r.in_force.is_empty() {
        out.push_str("no record in force\n");
    } else {
        out.push_str(&format!("{} in force:\n", count(r.in_force.len())));
        out.push_str(&view_table(&r.in_force, false).render());
    }
    if !r.excluded.is_empty() {
        out.push_str(&format!("{} not in force:\n", count(r.excluded.len())));
        let mut t = Table::new(&[
            "ORIGIN", "SEQ", "RECORD", "V", "LIST", "CATEGORY", "REASON", "DETAIL",
        ])
        .right(&[1, 3]);
        for e in &r.excluded {
            let (origin, seq) = e.provenance.as_ref().map_or(("-".into(), "-".into()), |p| {
                (p.origin.clone(), p.seq.to_string())
            });
            t.row(vec![
                origin,
                seq,
                e.record_id.clone(),
                e.version.to_string(),
                json::display_enum(json::LIST_KINDS, e.list),
                e.category.clone(),
                json::display_enum(json::EXCLUSION_REASONS, e.reason),
                e.detail.clone(),
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 record".to_owned()
    } else {
        format!("{n} records")
    }
}

/// View records as a table; `with_subject` adds the subject's name and identifier (for
/// listings, where rows are about different subjects).
pub fn view_table(records: &[ViewRecord], with_subject: bool) -> Table {
    let mut headers = vec![
        "ORIGIN", "SEQ", "RECORD", "V", "LIST", "SEVERITY", "CATEGORY",
    ];
    if with_subject {
        headers.extend(["SUBJECT", "USCC / ID"]);
    }
    headers.extend(["AUTHORITY", "PUBLICATION", "NOTE"]);
    let mut t = Table::new(&headers).right(&[1, 3]);
    for v in records {
        let default = Default::default();
        let r = v.record.as_ref().unwrap_or(&default);
        let (origin, seq) = v.provenance.as_ref().map_or(("-".into(), "-".into()), |p| {
            (p.origin.clone(), p.seq.to_string())
        });
        let mut row = vec![
            origin,
            seq,
            r.record_id.clone(),
            r.version.to_string(),
            json::display_enum(json::LIST_KINDS, r.list),
            json::display_enum(json::SEVERITIES, r.severity),
            r.category.clone(),
        ];
        if with_subject {
            let s = r.subject.clone().unwrap_or_default();
            let id = if s.uscc.is_empty() {
                s.id_number
            } else {
                s.uscc
            };
            row.extend([s.name, id]);
        }
        let publication = r
            .publication
            .as_ref()
            .map_or("-".into(), |p| format!("{} – {}", p.starts_on, p.ends_on));
        let mut notes = Vec::new();
        if v.under_objection {
            notes.push("under objection");
        }
        if v.unknown_category {
            notes.push("unknown category");
        }
        if v.legacy_code {
            notes.push("legacy code");
        }
        row.extend([
            r.authority.as_ref().map_or("-".into(), |a| a.name.clone()),
            publication,
            notes.join(", "),
        ]);
        t.row(row);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use credex_cli::city::capitals;
    use credex_cli::generator::{Generator, JOINT_CHANGSHA_CATEGORY, joint_subject};
    use credex_core::date::parse_date;
    use credex_proto::v1::{ExcludedRecord, ExclusionReason, ListKind, Provenance};
    use expect_test::expect;

    fn sample() -> LookupResponse {
        let today = parse_date("2026-05-20").expect("a date");
        let record = Generator::new(&capitals()[0], 3, today)
            .black_listing(joint_subject(), JOINT_CHANGSHA_CATEGORY);
        LookupResponse {
            subject_id: "91430100MA4L8Q2K7F".into(),
            in_force: vec![ViewRecord {
                record: Some(record),
                provenance: Some(Provenance {
                    origin: "changsha".into(),
                    seq: 12,
                    checkpoint_size: 40,
                }),
                under_objection: false,
                unknown_category: false,
                legacy_code: true,
            }],
            excluded: vec![ExcludedRecord {
                record_id: "wuhan-badfe5258d95d2c1".into(),
                version: 2,
                provenance: Some(Provenance {
                    origin: "wuhan".into(),
                    seq: 57,
                    checkpoint_size: 57,
                }),
                reason: ExclusionReason::Repaired.into(),
                detail: "信用修复".into(),
                list: ListKind::Black.into(),
                category: "labour.wage_arrears".into(),
                legacy_code: false,
            }],
            as_of: "2026-05-20".into(),
            next_page_token: String::new(),
        }
    }

    #[test]
    fn renders_in_force_and_excluded_records() {
        expect![[r#"
            91430100MA4L8Q2K7F 长沙市天心区恒通建设工程有限公司 — view of hefei as of 2026-05-20
            1 record in force:
            ORIGIN    SEQ  RECORD                     V  LIST   SEVERITY  CATEGORY                AUTHORITY           PUBLICATION              NOTE
            changsha   12  changsha-c8cca9d64da65acc  1  black  serious   court.dishonest_debtor  长沙市中级人民法院  2026-01-23 – 2027-05-02  legacy code
            1 record not in force:
            ORIGIN  SEQ  RECORD                  V  LIST   CATEGORY             REASON    DETAIL
            wuhan    57  wuhan-badfe5258d95d2c1  2  black  labour.wage_arrears  repaired  信用修复
        "#]].assert_eq(&render("hefei", &sample()));
    }

    #[test]
    fn json_is_the_responses_proto3_json_and_the_node() {
        // Every field, the records' too; the node first.
        let response = sample();
        let document = Document::new(&response).with("node", "hefei");
        let pretty = serde_json::to_string_pretty(&document).expect("json");
        expect![[r#"
            {
              "node": "hefei",
              "subject_id": "91430100MA4L8Q2K7F",
              "in_force": [
                {
                  "record": {
                    "record_id": "changsha-c8cca9d64da65acc",
                    "version": 1,
                    "subject": {
                      "kind": "SUBJECT_KIND_LEGAL_PERSON",
                      "name": "长沙市天心区恒通建设工程有限公司",
                      "uscc": "91430100MA4L8Q2K7F",
                      "id_number": "",
                      "legal_representative": {
                        "name": "周建华",
                        "id_number": "430103197806154014"
                      }
                    },
                    "list": "LIST_KIND_BLACK",
                    "category": "court.dishonest_debtor",
                    "severity": "SEVERITY_SERIOUS",
                    "authority": {
                      "name": "长沙市中级人民法院",
                      "uscc": "11430100HDK4KH2WCF"
                    },
                    "decision": {
                      "document_number": "（2026）湘01执1982号",
                      "decided_on": "2026-01-11",
                      "legal_basis": "《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条",
                      "facts": "有履行能力而拒不履行生效法律文书确定的义务",
                      "penalty_kinds": [],
                      "penalty_content": "",
                      "fine_fen": "0",
                      "sanction_measures": [
                        "限制参与政府采购",
                        "限制担任企业法定代表人、高级管理人员"
                      ]
                    },
                    "publication": {
                      "starts_on": "2026-01-23",
                      "ends_on": "2027-05-02"
                    },
                    "status": {
                      "kind": "STATUS_KIND_ACTIVE",
                      "reason": "",
                      "effective_on": ""
                    },
                    "data_source": "长沙市中级人民法院",
                    "remarks": ""
                  },
                  "provenance": {
                    "origin": "changsha",
                    "seq": "12",
                    "checkpoint_size": "40"
                  },
                  "under_objection": false,
                  "unknown_category": false,
                  "legacy_code": true
                }
              ],
              "excluded": [
                {
                  "record_id": "wuhan-badfe5258d95d2c1",
                  "version": 2,
                  "provenance": {
                    "origin": "wuhan",
                    "seq": "57",
                    "checkpoint_size": "57"
                  },
                  "reason": "EXCLUSION_REASON_REPAIRED",
                  "detail": "信用修复",
                  "list": "LIST_KIND_BLACK",
                  "category": "labour.wage_arrears",
                  "legacy_code": false
                }
              ],
              "as_of": "2026-05-20",
              "next_page_token": ""
            }"#]]
        .assert_eq(&pretty);
    }
}
