//! The web console on the admin listener: server-rendered HTML without scripts, Chinese
//! and English (`?lang=zh|en`, Chinese by default).
//!
//! - `/query` (一查便知): by USCC or ID number, every record in force across the recognised
//!   cities with its provenance, and those not in force with the reason; by part of a company
//!   name, a bounded scan of the records in force (the engine has no name index): at most
//!   [`NAME_SCAN_LIMIT`] records are read, and the page says when the scan stopped there.
//! - `/operations`: peers, origins, quarantine and invalid entries, reloading every
//!   [`REFRESH_SECS`] seconds.
//! - `/audit`: a proof bundle or an evidence file uploaded (multipart, at most
//!   [`AUDIT_UPLOAD_LIMIT`] bytes) and verified by `credex_audit` against this node's
//!   consortium file: each check with its result, the report `credexctl audit verify` prints
//!   (which stays the offline authority).
//!
//! Every resident ID number shown is masked, the one looked up included (the search box and the
//! language switch do not repeat it): the console is for operators, who need no full identity
//! (exact lookups with one are gRPC's, logged).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use credex_audit::{EvidenceVerdict, FileKind, ProofFile};
use credex_core::ident;
use credex_core::pb;
use credex_core::view::{Excluded, InForce, RecordVersion};
use serde::Deserialize;

use super::{AdminState, list_name};
use crate::engine::EngineError;
use crate::engine::query::ListFilter;

/// Most records in force a company-name search reads.
pub const NAME_SCAN_LIMIT: usize = 20_000;
/// Most matches a company-name search shows.
const NAME_MATCHES: usize = 100;
/// The operations page reloads this often.
pub const REFRESH_SECS: u32 = 5;
/// Largest upload the audit page reads: the largest audit file `credex_audit` reads (an
/// evidence file) and room for the multipart framing around it.
pub const AUDIT_UPLOAD_LIMIT: usize = credex_audit::MAX_EVIDENCE_FILE_BYTES + 64 * 1024;
/// Invalid entries shown on the operations page (Operator.ListInvalid pages the rest).
const INVALID_SHOWN: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Zh,
    En,
}

impl Lang {
    fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    fn code(self) -> &'static str {
        self.pick("zh", "en")
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct Params {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    q: String,
}

impl Params {
    fn lang(&self) -> Lang {
        if self.lang == "en" {
            Lang::En
        } else {
            Lang::Zh
        }
    }
}

pub async fn index() -> Redirect {
    Redirect::to("/query")
}

/// HTML-escapes `s`.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn url(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn page(lang: Lang, city: &str, here: &str, q: &str, refresh: bool, body: &str) -> Html<String> {
    let other = match lang {
        Lang::Zh => Lang::En,
        Lang::En => Lang::Zh,
    };
    let keep_q = if q.is_empty() {
        String::new()
    } else {
        format!("&amp;q={}", url(q))
    };
    let nav = |path: &str, zh: &str, en: &str| {
        let current = if path == here {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!(
            "<a href=\"{path}?lang={}\"{current}>{}</a>",
            lang.code(),
            lang.pick(zh, en)
        )
    };
    let meta_refresh = if refresh {
        format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">")
    } else {
        String::new()
    };
    Html(format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">{meta_refresh}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>credex · {city}</title><style>{STYLE}</style></head><body>\
         <header><strong>credex · {city}</strong> <nav>{query} {ops} {audit}</nav> \
         <a class=\"lang\" href=\"{here}?lang={other}{keep_q}\">{switch}</a></header>\
         <main>{body}</main></body></html>",
        lang = lang.pick("zh-CN", "en"),
        city = esc(city),
        query = nav("/query", "一查便知", "Query"),
        ops = nav("/operations", "运行状态", "Operations"),
        audit = nav("/audit", "核验", "Audit"),
        other = other.code(),
        switch = lang.pick("English", "中文"),
    ))
}

const STYLE: &str = "body{font-family:system-ui,'Noto Sans CJK SC','Microsoft YaHei',sans-serif;\
margin:0;color:#1b1f24}header{background:#0b3d91;color:#fff;padding:.6em 1em;display:flex;gap:1.5em;\
align-items:center}header a{color:#fff;margin-right:1em}header a[aria-current]{text-decoration:underline;\
font-weight:bold}.lang{margin-left:auto}main{padding:1em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border:1px solid #ccd;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#eef}\
#checks td:nth-child(2){white-space:nowrap}.bad{color:#b00020;font-weight:bold}.ok{color:#0a7d32}.note{color:#555}input[type=search]{width:24em}";

fn error_html(lang: Lang, error: &EngineError) -> String {
    format!(
        "<p class=\"bad\" role=\"alert\">{}: {}</p>",
        lang.pick("查询失败", "Query failed"),
        esc(&error.to_string())
    )
}

// ----------------------------------------------------------------------------- query

pub async fn query(State(state): State<Arc<AdminState>>, Query(params): Query<Params>) -> Response {
    let lang = params.lang();
    let q = params.q.trim().to_owned();
    // What the page repeats of the question (the box, the language switch): not a resident
    // ID number, which the page shows only masked.
    let echo = if ident::masked_key(&q) == q {
        q.as_str()
    } else {
        ""
    };
    let mut body = format!(
        "<h1>{title}</h1><form method=\"get\" action=\"/query\">\
         <input type=\"hidden\" name=\"lang\" value=\"{code}\">\
         <input type=\"search\" name=\"q\" value=\"{value}\" placeholder=\"{hint}\" autofocus> \
         <button type=\"submit\">{go}</button></form>",
        title = lang.pick("一查便知", "Query"),
        code = lang.code(),
        value = esc(echo),
        hint = lang.pick(
            "统一社会信用代码、身份证号或企业名称的一部分",
            "USCC, ID number, or part of a company name"
        ),
        go = lang.pick("查询", "Search"),
    );
    if !q.is_empty() {
        // A search of today, as Lookup and List: the witnesses' day once they have answered.
        state.engine.wait_for_witnesses().await;
        let engine = state.engine.clone();
        let asked = q.clone();
        let answer = tokio::task::spawn_blocking(move || -> Result<String, EngineError> {
            if ident::lookup_key(&asked).is_ok() {
                let found = engine.lookup(&asked, "", 0)?;
                Ok(subject_html(
                    lang,
                    &found.subject_masked,
                    &found.view.in_force,
                    &found.view.excluded,
                ))
            } else {
                name_search_html(lang, &engine, &asked)
            }
        })
        .await;
        match answer {
            Ok(Ok(html)) => body.push_str(&html),
            Ok(Err(e)) => body.push_str(&error_html(lang, &e)),
            Err(e) => body.push_str(&error_html(lang, &EngineError::Internal(e.to_string()))),
        }
    }
    page(lang, &state.engine.city, "/query", echo, false, &body).into_response()
}

/// A copy of `record`'s subject with every resident ID number masked.
fn masked_subject(record: &pb::CreditRecord) -> (String, String) {
    let Some(subject) = &record.subject else {
        return (String::new(), String::new());
    };
    let id = if subject.uscc.is_empty() {
        ident::mask_id_number(&subject.id_number)
    } else {
        subject.uscc.clone()
    };
    (subject.name.clone(), id)
}

fn list_label(lang: Lang, list: pb::ListKind) -> &'static str {
    match list {
        pb::ListKind::Red => lang.pick("守信红名单", "red list"),
        pb::ListKind::Black => lang.pick("失信黑名单", "black list"),
        pb::ListKind::Watch => lang.pick("重点关注名单", "watch list"),
        pb::ListKind::Penalty => lang.pick("行政处罚", "administrative penalty"),
        pb::ListKind::Unspecified => list_name(list),
    }
}

fn category_label(lang: Lang, code: &str) -> String {
    match credex_core::catalogue::Catalogue::builtin().get(code) {
        Some(c) => esc(lang.pick(&c.name_zh, &c.name_en)),
        None => format!(
            "{} ({})",
            esc(code),
            lang.pick("未知类别", "unknown category")
        ),
    }
}

fn provenance(lang: Lang, v: &RecordVersion) -> String {
    format!(
        "{origin} · seq {seq} · {cp} {size}",
        origin = esc(&v.origin),
        seq = v.seq,
        cp = lang.pick("检查点", "checkpoint"),
        size = v.checkpoint_size
    )
}

fn record_row(lang: Lang, v: &RecordVersion, extra: &str) -> String {
    let r = &v.record;
    let (name, id) = masked_subject(r);
    let authority = r.authority.as_ref().map_or("", |a| a.name.as_str());
    let decision = r.decision.as_ref();
    let publication = r.publication.as_ref();
    format!(
        "<tr><td>{name}<br><code>{id}</code></td><td>{list}</td><td>{category}</td>\
         <td>{authority}<br>{doc}</td><td>{from} – {to}</td><td>{prov}</td><td>{extra}</td></tr>",
        name = esc(&name),
        id = esc(&id),
        list = list_label(lang, r.list()),
        category = category_label(lang, &r.category),
        authority = esc(authority),
        doc = esc(decision.map_or("", |d| d.document_number.as_str())),
        from = esc(publication.map_or("", |p| p.starts_on.as_str())),
        to = esc(publication.map_or("", |p| p.ends_on.as_str())),
        prov = provenance(lang, v),
    )
}

fn table_head(lang: Lang, last: &str) -> String {
    format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{last}</th></tr>",
        lang.pick("主体", "Subject"),
        lang.pick("名单", "List"),
        lang.pick("类别", "Category"),
        lang.pick("认定部门 / 文号", "Authority / document"),
        lang.pick("公示期", "Published"),
        lang.pick(
            "来源（城市 · 序号 · 检查点）",
            "Provenance (origin · seq · checkpoint)"
        ),
    )
}

fn subject_html(lang: Lang, subject: &str, in_force: &[InForce], excluded: &[Excluded]) -> String {
    let mut html = format!(
        "<h2>{} <code>{}</code></h2>",
        lang.pick("主体", "Subject"),
        esc(subject)
    );
    let _ = write!(
        html,
        "<h3 id=\"in-force\">{} ({})</h3>",
        lang.pick("有效记录", "Records in force"),
        in_force.len()
    );
    if in_force.is_empty() {
        let _ = write!(html, "<p>{}</p>", lang.pick("无", "None"));
    } else {
        html.push_str(&table_head(lang, lang.pick("标记", "Flags")));
        for r in in_force {
            let flag = if r.under_objection {
                lang.pick("异议处理中", "under objection")
            } else {
                ""
            };
            html.push_str(&record_row(lang, &r.version, flag));
        }
        html.push_str("</table>");
    }
    let _ = write!(
        html,
        "<h3 id=\"excluded\">{} ({})</h3>",
        lang.pick("不在有效期或未予认可的记录", "Records not in force"),
        excluded.len()
    );
    if excluded.is_empty() {
        let _ = write!(html, "<p>{}</p>", lang.pick("无", "None"));
    } else {
        html.push_str(&table_head(lang, lang.pick("原因", "Reason")));
        for x in excluded {
            let reason = format!(
                "<span class=\"bad\">{}</span> {}",
                exclusion_label(lang, x),
                esc(&x.detail)
            );
            html.push_str(&record_row(lang, &x.version, &reason));
        }
        html.push_str("</table>");
    }
    html
}

fn exclusion_label(lang: Lang, x: &Excluded) -> &'static str {
    use credex_core::view::Exclusion as E;
    match x.reason {
        E::Repaired => lang.pick("已信用修复", "repaired"),
        E::Revoked => lang.pick("已撤销", "revoked"),
        E::Expired => lang.pick("公示期已满", "expired"),
        E::NotYetPublished => lang.pick("尚未公示", "not yet published"),
        E::NotRecognised => lang.pick("本市未认可", "not recognised here"),
        E::UnknownCategory => lang.pick("未知类别", "unknown category"),
        E::Invalid => lang.pick("无效", "invalid"),
    }
}

/// Records in force whose subject name contains `needle` (case-insensitive for Latin
/// letters; Chinese matches character for character), reading at most [`NAME_SCAN_LIMIT`].
fn name_search_html(
    lang: Lang,
    engine: &crate::engine::Engine,
    needle: &str,
) -> Result<String, EngineError> {
    let needle_folded = needle.to_lowercase();
    let mut matches = Vec::new();
    let mut scanned = 0;
    let mut token = String::new();
    let mut complete = false;
    while scanned < NAME_SCAN_LIMIT && matches.len() < NAME_MATCHES {
        let page = engine.list(
            &ListFilter::default(),
            (NAME_SCAN_LIMIT - scanned).min(1000),
            &token,
            "",
            0,
        )?;
        scanned += page.records.len();
        for record in page.records {
            let hit = record
                .version
                .record
                .subject
                .as_ref()
                .is_some_and(|s| s.name.to_lowercase().contains(&needle_folded));
            if hit && matches.len() < NAME_MATCHES {
                matches.push(record);
            }
        }
        if page.next_page_token.is_empty() {
            complete = true;
            break;
        }
        token = page.next_page_token;
    }
    let mut html = format!(
        "<h2>{} “{}”: {}</h2>",
        lang.pick("名称包含", "Names containing"),
        esc(needle),
        matches.len()
    );
    if !complete {
        let _ = write!(
            html,
            "<p class=\"note\" id=\"scan-limit\">{}</p>",
            esc(&match lang {
                Lang::Zh => format!(
                    "按名称查询逐条读取有效记录，本次读取 {scanned} 条后停止（上限 {NAME_SCAN_LIMIT} 条、{NAME_MATCHES} 个结果）；结果可能不全，请用统一社会信用代码或身份证号精确查询。"
                ),
                Lang::En => format!(
                    "A name search reads the records in force one by one and stopped after {scanned} (limits: {NAME_SCAN_LIMIT} records, {NAME_MATCHES} matches); there may be more: look up the USCC or ID number for every record of a subject."
                ),
            })
        );
    }
    if matches.is_empty() {
        let _ = write!(
            html,
            "<p>{}</p>",
            lang.pick("无匹配的有效记录", "No records in force match")
        );
        return Ok(html);
    }
    html.push_str(&table_head(lang, lang.pick("标记", "Flags")));
    for r in &matches {
        let flag = if r.under_objection {
            lang.pick("异议处理中", "under objection")
        } else {
            ""
        };
        html.push_str(&record_row(lang, &r.version, flag));
    }
    html.push_str("</table>");
    Ok(html)
}

// ------------------------------------------------------------------------ operations

pub async fn operations(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<Params>,
) -> Response {
    let lang = params.lang();
    let engine = state.engine.clone();
    let peers = state.peers.snapshot();
    let now = engine.clock.now_millis();
    let figures = tokio::task::spawn_blocking(move || {
        let origins = engine.origin_figures()?;
        let quarantine = engine.quarantine_counts()?;
        let invalid = engine.list_invalid(None, INVALID_SHOWN, "")?;
        Ok::<_, EngineError>((origins, quarantine, invalid))
    })
    .await;
    let mut body = format!("<h1>{}</h1>", lang.pick("运行状态", "Operations"));
    let (origins, quarantine, invalid) = match figures {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            body.push_str(&error_html(lang, &e));
            return page(lang, &state.engine.city, "/operations", "", true, &body).into_response();
        }
        Err(e) => {
            body.push_str(&error_html(lang, &EngineError::Internal(e.to_string())));
            return page(lang, &state.engine.city, "/operations", "", true, &body).into_response();
        }
    };
    let _ = write!(
        body,
        "<h2>{}</h2><table id=\"peers\"><tr><th>{}</th><th>{}</th><th>{}</th><th>RTT</th><th>{}</th></tr>",
        lang.pick("同步对端", "Peers"),
        lang.pick("城市", "City"),
        lang.pick("连接", "Connected"),
        lang.pick("最近联系", "Last contact"),
        lang.pick("最近错误", "Last error"),
    );
    for (city, peer) in &peers {
        let contact = if peer.last_contact_ms > 0 {
            format!("{} s", (now - peer.last_contact_ms).max(0) / 1000)
        } else {
            "—".to_owned()
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{contact}</td><td>{} ms</td><td>{}</td></tr>",
            esc(city),
            if peer.connected { "ok" } else { "bad" },
            if peer.connected {
                lang.pick("已连接", "yes")
            } else {
                lang.pick("未连接", "no")
            },
            peer.round_trip_ms,
            esc(&peer.last_error),
        );
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<h2>{}</h2><table id=\"origins\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.pick("各城市日志", "Origins"),
        lang.pick("城市", "Origin"),
        lang.pick("日志条数", "Log size"),
        lang.pick("已入视图", "In view"),
        lang.pick("落后", "Lag"),
        lang.pick("检查点时长", "Checkpoint age"),
        lang.pick("见证签名", "Cosignatures"),
        lang.pick("分叉", "Forked"),
    );
    for o in &origins {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} s</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&o.origin),
            o.local_size,
            o.indexed_size,
            o.best_seen_size.saturating_sub(o.local_size),
            o.checkpoint_age_ms / 1000,
            o.cosignatures,
            if o.forked { "bad" } else { "ok" },
            if o.forked {
                lang.pick("已分叉", "FORKED")
            } else {
                lang.pick("否", "no")
            },
        );
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<h2>{}</h2>",
        lang.pick("隔离条目（按原因）", "Quarantined entries by reason")
    );
    if quarantine.is_empty() {
        let _ = write!(body, "<p id=\"quarantine\">{}</p>", lang.pick("无", "None"));
    } else {
        body.push_str("<table id=\"quarantine\">");
        for (reason, count) in &quarantine {
            let _ = write!(body, "<tr><td>{}</td><td>{count}</td></tr>", esc(reason));
        }
        body.push_str("</table>");
    }
    let _ = write!(
        body,
        "<h2>{}</h2>",
        lang.pick("无效条目", "Invalid entries")
    );
    if invalid.entries.is_empty() {
        let _ = write!(body, "<p id=\"invalid\">{}</p>", lang.pick("无", "None"));
    } else {
        body.push_str("<table id=\"invalid\">");
        for e in &invalid.entries {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>seq {}</td><td>{} v{}</td><td>{}</td></tr>",
                esc(&e.origin),
                e.seq,
                esc(&e.record_id),
                e.version,
                esc(&e.reason)
            );
        }
        body.push_str("</table>");
        if !invalid.next_page_token.is_empty() {
            let _ = write!(
                body,
                "<p class=\"note\">{}</p>",
                lang.pick(
                    "仅显示前 50 条；其余用 credexctl 查看。",
                    "The first 50 are shown; credexctl lists the rest."
                )
            );
        }
    }
    let _ = write!(
        body,
        "<p class=\"note\">{}</p>",
        esc(&match lang {
            Lang::Zh => format!("每 {REFRESH_SECS} 秒自动刷新。"),
            Lang::En => format!("Reloads every {REFRESH_SECS} s."),
        })
    );
    page(lang, &state.engine.city, "/operations", "", true, &body).into_response()
}

// ----------------------------------------------------------------------------- audit

fn audit_intro(lang: Lang) -> String {
    format!(
        "<h1>{title}</h1><p>{what}</p>\
         <form method=\"post\" action=\"/audit?lang={code}\" enctype=\"multipart/form-data\">\
         <input type=\"file\" name=\"file\" required> <button type=\"submit\">{go}</button></form>",
        title = lang.pick("核验证明", "Audit"),
        what = lang.pick(
            "上传证明包（credexctl audit proof 导出的 .tlog-proof，或经 audit extend 延伸的）或分叉证据文件（credexctl audit evidence），按本节点的联盟文件所固定的公钥逐项核验。离线核验以 credexctl audit verify 为准，本页给出同一份报告。",
            "Upload a proof bundle (a .tlog-proof from credexctl audit proof, extended or not) or an evidence file (credexctl audit evidence): each check is made against the keys this node's consortium file pins. credexctl audit verify stays the offline authority; this page shows the same report."
        ),
        code = lang.code(),
        go = lang.pick("核验", "Verify"),
    )
}

pub async fn audit_form(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<Params>,
) -> Response {
    let lang = params.lang();
    page(
        lang,
        &state.engine.city,
        "/audit",
        "",
        false,
        &audit_intro(lang),
    )
    .into_response()
}

pub async fn audit_upload(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let lang = params.lang();
    let mut body = audit_intro(lang);
    // A body announced over the limit is refused before any of it is read (the limit on the
    // body itself catches one sent without a length).
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let upload = match announced {
        Some(n) if n > AUDIT_UPLOAD_LIMIT as u64 => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than the {AUDIT_UPLOAD_LIMIT} bytes allowed"),
        )),
        _ => read_upload(multipart).await,
    };
    let status = match upload {
        Ok((name, bytes)) => {
            let consortium = state.consortium.clone();
            let verified =
                tokio::task::spawn_blocking(move || audit_report(lang, &name, &bytes, &consortium))
                    .await;
            match verified {
                Ok(html) => {
                    body.push_str(&html);
                    StatusCode::OK
                }
                Err(e) => {
                    body.push_str(&error_html(lang, &EngineError::Internal(e.to_string())));
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        }
        Err((status, why)) => {
            let _ = write!(
                body,
                "<p class=\"bad\" role=\"alert\" id=\"upload-error\">{}: {}</p>",
                lang.pick("无法读取上传的文件", "The upload could not be read"),
                esc(&why)
            );
            status
        }
    };
    (
        status,
        page(lang, &state.engine.city, "/audit", "", false, &body),
    )
        .into_response()
}

/// The first part named `file`: its file name and bytes.
async fn read_upload(mut multipart: Multipart) -> Result<(String, Vec<u8>), (StatusCode, String)> {
    let refused = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        let why = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the upload is larger than the {AUDIT_UPLOAD_LIMIT} bytes allowed")
        } else {
            e.body_text()
        };
        (status, why)
    };
    while let Some(field) = multipart.next_field().await.map_err(refused)? {
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or("").to_owned();
            let bytes = field.bytes().await.map_err(refused)?;
            return Ok((name, bytes.to_vec()));
        }
    }
    Err((
        StatusCode::BAD_REQUEST,
        "no file: the form's field `file` carries it".to_owned(),
    ))
}

/// The report on an uploaded file, verified as `credexctl audit verify` verifies it (the
/// default quorum): each check with its result, and the verdict.
fn audit_report(
    lang: Lang,
    name: &str,
    bytes: &[u8],
    consortium: &credex_core::consortium::Consortium,
) -> String {
    let mut html = format!(
        "<h2>{} <code>{}</code> ({} B)</h2>",
        lang.pick("文件", "File"),
        esc(name),
        bytes.len()
    );
    let not_verified = |e: &dyn std::fmt::Display| {
        format!(
            "<p class=\"bad\" id=\"verdict\">NOT VERIFIED — {}</p>",
            esc(&e.to_string())
        )
    };
    let kind = match credex_audit::detect(bytes) {
        Ok(kind) => kind,
        Err(e) => {
            html.push_str(&not_verified(&e));
            return html;
        }
    };
    match kind {
        FileKind::Proof => match ProofFile::parse(bytes) {
            Err(e) => html.push_str(&not_verified(&e)),
            Ok(file) => {
                match credex_audit::verify_proof(&file, consortium, credex_audit::DEFAULT_QUORUM) {
                    Ok(report) => proof_report_html(lang, &report, &mut html),
                    Err(e) => {
                        checks_table(lang, &mut html);
                        let _ = write!(
                            html,
                            "<tr><td>{}</td><td class=\"bad\">{}</td><td>{}</td></tr></table>",
                            e.check(),
                            lang.pick("未通过", "failed"),
                            esc(&e.to_string())
                        );
                        html.push_str(&not_verified(&e));
                    }
                }
            }
        },
        FileKind::Evidence => match credex_audit::parse_evidence(bytes) {
            Err(e) => html.push_str(&not_verified(&e)),
            Ok(items) => evidence_report_html(lang, &items, consortium, &mut html),
        },
    }
    html
}

fn checks_table(lang: Lang, html: &mut String) {
    let _ = write!(
        html,
        "<h3>{}</h3><table id=\"checks\"><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.pick("逐项核验", "Checks"),
        lang.pick("检查", "Check"),
        lang.pick("结果", "Result"),
        lang.pick("详情", "Detail"),
    );
}

fn proof_report_html(lang: Lang, report: &credex_audit::ProofReport, html: &mut String) {
    checks_table(lang, html);
    for check in report.checks() {
        let (class, result) = if check.held {
            ("ok", lang.pick("通过", "ok"))
        } else {
            ("bad", lang.pick("未达到", "not met"))
        };
        let not_counted = check
            .not_counted
            .map(|n| format!("<br><span class=\"note\">not counted: {}</span>", esc(&n)))
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"{class}\">{result}</td><td>{}{not_counted}</td></tr>",
            check.name,
            esc(&check.text),
        );
    }
    html.push_str("</table>");
    let quorum_met = report.quorum_checkpoint().cosigners.len() >= report.quorum;
    let _ = write!(
        html,
        "<p class=\"{}\" id=\"verdict\">{}</p>",
        if quorum_met { "ok" } else { "bad" },
        esc(&report.verdict())
    );
    // The record the bundle proves, ID numbers masked as everywhere on the console.
    let version = RecordVersion {
        origin: report.city.clone(),
        seq: report.index,
        record: Arc::new(report.entry.record.clone().unwrap_or_default()),
        checkpoint_size: report.checkpoint.size,
        logged_at: report.entry.logged_at,
        invalid: None,
        unknown_category: false,
        legacy_code: false,
    };
    let _ = write!(
        html,
        "<h3>{}</h3>{}{}</table>",
        lang.pick("所证明的记录", "The record proven"),
        table_head(lang, lang.pick("记录编号 / 版本", "Record id / version")),
        record_row(
            lang,
            &version,
            &format!(
                "{} v{}",
                esc(&version.record.record_id),
                version.record.version
            )
        ),
    );
}

fn evidence_report_html(
    lang: Lang,
    items: &[pb::Evidence],
    consortium: &credex_core::consortium::Consortium,
    html: &mut String,
) {
    let _ = write!(
        html,
        "<h3>{}</h3><table id=\"evidence\"><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.pick("逐条核验", "Each piece of evidence"),
        lang.pick("城市", "Origin"),
        lang.pick("结果", "Result"),
        lang.pick("详情", "Detail"),
    );
    let mut proven = 0;
    for (i, item) in items.iter().enumerate() {
        let (origin, class, result, detail) = match credex_audit::verify_evidence(item, consortium)
        {
            Ok(report) => {
                let (class, result) = match report.verdict {
                    EvidenceVerdict::Proven(_) => {
                        proven += 1;
                        ("ok", "PROVEN")
                    }
                    EvidenceVerdict::Unproven(_) => ("bad", "NOT PROVEN"),
                };
                (report.city.clone(), class, result, report.to_string())
            }
            Err(e) => (item.origin.clone(), "bad", "REFUSED", e.to_string()),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{result}</td><td>{}</td></tr>",
            i + 1,
            esc(&origin),
            esc(&detail)
        );
    }
    html.push_str("</table>");
    let (class, verdict) = if items.is_empty() {
        ("bad", "no evidence, nothing confirmed".to_owned())
    } else {
        (
            if proven == items.len() { "ok" } else { "bad" },
            format!("{proven} of {} confirmed", items.len()),
        )
    };
    let _ = write!(
        html,
        "<p class=\"{class}\" id=\"verdict\">{}</p>",
        esc(&verdict)
    );
}
