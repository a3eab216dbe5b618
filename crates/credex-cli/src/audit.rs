//! How `credexctl audit` shows a verified record: its fields (ID numbers masked) and every
//! check that held. Verification itself is `credex_audit`'s; its reports of evidence and
//! replays are written by their `Display`.

use credex_audit::ProofReport;
use credex_audit::text::format_millis;
use credex_core::ident::mask_id_number;
use credex_core::pb;

use crate::json;

/// A verified proof as text: the record (ID numbers masked), then every check that held. The
/// quorum line is marked `--` instead of `ok` when the report's quorum is not met, which only
/// a report verified with a lower quorum can show.
pub fn render_proof_report(r: &ProofReport) -> String {
    let record = r.entry.record.clone().unwrap_or_default();
    let mut out = format!(
        "record {} version {} — {} ({}) seq {}\n",
        record.record_id, record.version, r.city, r.city_name, r.index
    );
    out.push_str(&render_fields(&record_fields(
        &masked_record(&record),
        r.entry.logged_at,
    )));
    out.push_str("checks\n");
    for check in r.checks() {
        let mark = if check.held { "ok" } else { "--" };
        out.push_str(&format!("  {mark}  {}\n", check.text));
        if let Some(not_counted) = &check.not_counted {
            out.push_str(&format!("      not counted: {not_counted}\n"));
        }
    }
    out
}

/// The record with every ID number masked, for display and export.
pub fn masked_record(record: &pb::CreditRecord) -> pb::CreditRecord {
    let mut r = record.clone();
    if let Some(s) = r.subject.as_mut() {
        if !s.id_number.is_empty() {
            s.id_number = mask_id_number(&s.id_number);
        }
        if let Some(l) = s.legal_representative.as_mut()
            && !l.id_number.is_empty()
        {
            l.id_number = mask_id_number(&l.id_number);
        }
    }
    r
}

/// A record's fields as (label, value) lines, empty ones left out. Shows what it is given:
/// mask it first.
fn record_fields(r: &pb::CreditRecord, logged_at: i64) -> Vec<(&'static str, String)> {
    let mut fields = vec![("logged at", format_millis(logged_at))];
    if let Some(s) = &r.subject {
        let mut ids = Vec::new();
        if !s.uscc.is_empty() {
            ids.push(format!("USCC {}", s.uscc));
        }
        if !s.id_number.is_empty() {
            ids.push(format!("ID {}", s.id_number));
        }
        fields.push((
            "subject",
            format!(
                "{} ({}){}",
                s.name,
                json::display_enum(json::SUBJECT_KINDS, s.kind),
                if ids.is_empty() {
                    String::new()
                } else {
                    format!(", {}", ids.join(", "))
                }
            ),
        ));
        if let Some(l) = &s.legal_representative {
            fields.push((
                "legal rep.",
                [l.name.as_str(), l.id_number.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
        }
    }
    fields.push((
        "list",
        format!(
            "{}, {}, severity {}",
            json::display_enum(json::LIST_KINDS, r.list),
            r.category,
            json::display_enum(json::SEVERITIES, r.severity)
        ),
    ));
    if let Some(a) = &r.authority {
        fields.push(("authority", format!("{} ({})", a.name, a.uscc)));
    }
    if let Some(d) = &r.decision {
        fields.push((
            "decision",
            format!("{} of {}", d.document_number, d.decided_on),
        ));
        fields.push(("legal basis", d.legal_basis.clone()));
        fields.push(("facts", d.facts.clone()));
        fields.push(("penalty", d.penalty_kinds.join(", ")));
        fields.push(("penalty text", d.penalty_content.clone()));
        if d.fine_fen != 0 {
            fields.push((
                "fine",
                format!("{}.{:02} yuan", d.fine_fen / 100, (d.fine_fen % 100).abs()),
            ));
        }
        fields.push(("sanctions", d.sanction_measures.join(", ")));
    }
    if let Some(p) = &r.publication {
        fields.push(("publication", format!("{} – {}", p.starts_on, p.ends_on)));
    }
    if let Some(s) = &r.status {
        let mut status = json::display_enum(json::STATUS_KINDS, s.kind);
        if !s.effective_on.is_empty() {
            status.push_str(&format!(" since {}", s.effective_on));
        }
        if !s.reason.is_empty() {
            status.push_str(&format!(": {}", s.reason));
        }
        fields.push(("status", status));
    }
    fields.push(("data source", r.data_source.clone()));
    fields.push(("remarks", r.remarks.clone()));
    fields.retain(|(_, v)| !v.is_empty());
    fields
}

fn render_fields(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(label, value)| format!("  {label:<13}{}\n", value.replace(['\n', '\r'], " ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use credex_audit::testing::{Log, TS, consortium, outsider_witness_key, witness_key};
    use credex_audit::{EXTENSION_HEADER, ProofFile, verify_proof};
    use credex_core::date::parse_date;
    use credex_core::note;
    use expect_test::expect;

    use super::*;
    use crate::city::capitals;
    use crate::generator::Generator;

    #[test]
    fn the_report_shows_the_record_with_id_numbers_masked() {
        let mut log = Log::new(0);
        let mut generator = Generator::new(&capitals()[0], 3, parse_date("2026-05-20").unwrap());
        let mut record = generator.black_listing(
            crate::generator::joint_subject(),
            crate::generator::JOINT_CHANGSHA_CATEGORY,
        );
        record.subject.as_mut().unwrap().id_number = "430102196209194279".into();
        log.append_record(record);
        log.append_record(generator.record());
        let file = ProofFile {
            extension: Some(log.extension(1, 2, &[witness_key(0), witness_key(1), witness_key(3)])),
            proof: log.proof(0, 1, &[]).proof,
        };
        let mut file_bytes = file.to_bytes();
        // An unknown witness's line is carried along and ignored.
        let ext_note = file.extension.as_ref().unwrap().checkpoint.clone();
        let line = note::cosign(&log.checkpoint(2), &outsider_witness_key(), TS).unwrap();
        let with_outsider = note::add_signature_lines(&ext_note, &[line]).unwrap();
        file_bytes = [
            &file_bytes[..EXTENSION_HEADER.len() + 1 + 45],
            &b"\n"[..],
            &with_outsider,
            &file_bytes[EXTENSION_HEADER.len() + 1 + 45 + 1 + ext_note.len()..],
        ]
        .concat();
        let report =
            verify_proof(&ProofFile::parse(&file_bytes).unwrap(), &consortium(), 2).unwrap();
        let text = render_proof_report(&report);
        assert!(
            !text.contains("430102196209194279"),
            "no full ID number is shown"
        );
        expect![[r#"
            record changsha-c8cca9d64da65acc version 1 — changsha (长沙) seq 0
              logged at    2026-01-01 00:00:00 +08:00
              subject      长沙市天心区恒通建设工程有限公司 (legal_person), USCC 91430100MA4L8Q2K7F, ID 4301**********4279
              legal rep.   周建华 4301**********4014
              list         black, court.dishonest_debtor, severity serious
              authority    长沙市中级人民法院 (11430100HDK4KH2WCF)
              decision     （2026）湘01执1982号 of 2026-01-11
              legal basis  《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条
              facts        有履行能力而拒不履行生效法律文书确定的义务
              sanctions    限制参与政府采购, 限制担任企业法定代表人、高级管理人员
              publication  2026-01-23 – 2027-05-02
              status       active
              data source  长沙市中级人民法院
            checks
              ok  checkpoint credex/mid-yangtze/changsha size 1 signed by the origin's log key credex/mid-yangtze/changsha+8ddcab5f
              ok  entry signature by credex/mid-yangtze/changsha+8ddcab5f (strict Ed25519), origin changsha, seq 0
              ok  leaf hash IwhJcKBN901Ndc3cdxsZHjbBNvUCwDqo16TluwH6Vyc= included at index 0 of the tree of size 1, root IwhJcKBN901Ndc3cdxsZHjbBNvUCwDqo16TluwH6Vyc=
              ok  newer checkpoint size 2 signed by credex/mid-yangtze/changsha+8ddcab5f, consistent with size 1, root gXfELgUgnn8k6JXKQX/eo7SBpkh5oo4NiwegfcOlzHM=
              ok  2 cosignatures from other members' witnesses on size 2: wuhan at 2026-01-01 00:00:01 +08:00, nanchang at 2026-01-01 00:00:02 +08:00, quorum 2
                  not counted: the origin's own witness; 1 signature line by keys outside the consortium
        "#]].assert_eq(&text);
    }
}
