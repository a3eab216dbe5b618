//! Engine tests of the consortium's rules: one rulebook for every member (the legacy allow-list
//! in force and flagged, lookups that never fail for a checksum, invalid entries listed), the
//! calendar and consortium checks at publish and on relay, idempotent publish, and bounded
//! answers.

use credex_core::rules::Rules;

/// The four capitals with their divisions, as the consortium file lists them.
pub(super) fn capitals() -> Rules {
    Rules::for_members([
        ("changsha", "430100"),
        ("wuhan", "420100"),
        ("hefei", "340100"),
        ("nanchang", "360100"),
    ])
}

use std::sync::Arc;

use credex_core::date::{Clock, FixedClock, parse_date};
use credex_core::ident::LegacyAllowList;
use credex_core::keys::SigningKeyPair;
use credex_core::pb;
use tempfile::TempDir;

use super::harness::{
    NODE, TestEngine, company, dishonest_debtor, receive_from_peer, test_engine, uscc,
};
use super::publish::{self, PublishQueue, PublishReceipt};
use super::{Engine, EngineError};

const CONSORTIUM: &str = "test";
/// The first 17 characters of the early-pilot code; its check character is computed wrong.
const PILOT: &str = "91430100MA4L00003";

struct Harness {
    _dir: TempDir,
    engine: Arc<Engine>,
    clock: Arc<FixedClock>,
    queue: PublishQueue,
    peer_key: SigningKeyPair,
}

/// The pilot code with a wrong check character.
fn pilot() -> String {
    let good = uscc(PILOT);
    let wrong = if good.ends_with('0') { '1' } else { '0' };
    format!("{PILOT}{wrong}")
}

fn harness(rules: Rules) -> Harness {
    let TestEngine {
        dir,
        engine,
        clock,
        peer_key,
    } = test_engine(
        CONSORTIUM,
        rules,
        FixedClock::at_date(parse_date("2026-05-20").expect("a date")),
    );
    let (queue, _task) = publish::start(engine.clone());
    Harness {
        _dir: dir,
        engine,
        clock,
        queue,
        peer_key,
    }
}

fn with_pilot_allowed() -> Rules {
    Rules {
        legacy_uscc_allow_list: LegacyAllowList::new([pilot()]).expect("fails its checksum"),
        ..capitals()
    }
}

/// 失信被执行人 about the company with USCC `subject`, decided by a court of `division`.
fn black(record_id: &str, subject: &str, division: &str) -> pb::CreditRecord {
    let company = pb::Subject {
        uscc: subject.to_owned(),
        ..company("91430100MA4L00003")
    };
    dishonest_debtor(record_id, company, division)
}

impl Harness {
    async fn publish(&self, records: Vec<pb::CreditRecord>) -> Result<PublishReceipt, EngineError> {
        self.queue.publish(records).await
    }

    /// Feeds Wuhan's entries in as a sync stream would: signed, under a checkpoint it signed.
    async fn receive(&self, records: Vec<pb::CreditRecord>, logged_at: i64) {
        let size = records.len() as u64;
        let (committed, indexed) =
            receive_from_peer(&self.engine, &self.peer_key, records, logged_at).await;
        assert_eq!(committed.appended, size);
        assert_eq!(indexed.indexed, size);
    }

    /// "origin/record_id in force legacy=…" or "… excluded REASON" per record of the subject.
    fn lookup(&self, subject: &str) -> String {
        let view = self.engine.lookup(subject, "", 0).expect("lookup");
        let mut out: Vec<String> = view
            .view
            .in_force
            .iter()
            .map(|f| {
                format!(
                    "{}/{} in force legacy={}",
                    f.version.origin, f.version.record.record_id, f.version.legacy_code
                )
            })
            .collect();
        out.extend(view.view.excluded.iter().map(|e| {
            format!(
                "{}/{} excluded {}",
                e.version.origin, e.version.record.record_id, e.reason
            )
        }));
        out.join("; ")
    }

    fn invalid(&self) -> Vec<String> {
        let page = self.engine.list_invalid(None, 0, "").expect("list invalid");
        assert!(page.next_page_token.is_empty());
        page.entries
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} v{}: {}",
                    e.origin, e.seq, e.record_id, e.version, e.reason
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn a_legacy_code_on_the_consortium_allow_list_is_in_force_from_every_origin_and_flagged() {
    let h = harness(with_pilot_allowed());
    h.publish(vec![black("CS-1", &pilot(), "430100")])
        .await
        .expect("published");
    h.receive(
        vec![black("WH-1", &pilot(), "420100")],
        h.clock.now_millis(),
    )
    .await;
    assert_eq!(
        h.lookup(&pilot()),
        "changsha/CS-1 in force legacy=true; wuhan/WH-1 in force legacy=true"
    );
    assert!(h.invalid().is_empty());
    // A valid code is not flagged.
    h.publish(vec![black("CS-2", &uscc("91430100MA4L00007"), "430100")])
        .await
        .expect("published");
    assert_eq!(
        h.lookup(&uscc("91430100MA4L00007")),
        "changsha/CS-2 in force legacy=false"
    );
}

#[tokio::test]
async fn without_the_allow_list_the_legacy_code_is_looked_up_not_refused_and_its_entries_are_listed_invalid()
 {
    let h = harness(capitals());
    let refused = h
        .publish(vec![black("CS-1", &pilot(), "430100")])
        .await
        .expect_err("refused at publish");
    assert!(
        refused
            .to_string()
            .contains("records[0]: record CS-1: subject.uscc:"),
        "{refused}"
    );
    h.receive(
        vec![black("WH-1", &pilot(), "420100")],
        h.clock.now_millis(),
    )
    .await;
    // The lookup answers with what the view holds: nothing in force, the invalid entry shown.
    assert_eq!(h.lookup(&pilot()), "wuhan/WH-1 excluded invalid");
    let invalid = h.invalid();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(
        invalid[0].starts_with(&format!(
            "wuhan 0 WH-1 v1: record WH-1: subject.uscc: uscc \"{}\": check character is",
            pilot()
        )),
        "{invalid:?}"
    );
    // An identifier of no shape is still refused, naming the field.
    let err = h.engine.lookup("not-a-code", "", 0).expect_err("no shape");
    assert!(err.to_string().starts_with("subject_id: "), "{err}");
}

#[tokio::test]
async fn impossible_records_are_refused_at_publish_naming_the_field() {
    let h = harness(capitals());
    let company = uscc("91430100MA4L00003");
    let mut future_decision = black("CS-1", &company, "430100");
    future_decision.decision.as_mut().unwrap().decided_on = "2030-01-02".into();
    future_decision.publication = Some(pb::Publication {
        starts_on: "2030-01-02".into(),
        ends_on: "2031-01-01".into(),
    });
    let wuhan_authority = black("CS-2", &company, "420100");
    let wuhan_namespace = black("wuhan-3", &company, "430100");
    for (record, field) in [
        (
            future_decision,
            "decision.decided_on: 2030-01-02 is in the future",
        ),
        (wuhan_authority, "authority.uscc: "),
        (
            wuhan_namespace,
            "record_id: wuhan-3 is in wuhan's namespace",
        ),
    ] {
        let err = h.publish(vec![record]).await.expect_err("refused");
        assert!(err.to_string().contains(field), "{err}");
    }
    assert_eq!(h.engine.store.origin_state(NODE).size, 0);
}

#[tokio::test]
async fn relayed_entries_are_judged_on_the_day_their_origin_logged_them() {
    let h = harness(capitals());
    let company = uscc("91430100MA4L00003");
    // Decided 2026-05-21, logged by Wuhan on 2026-05-20: tomorrow then, valid on any day.
    let mut tomorrow = black("WH-1", &company, "420100");
    tomorrow.decision.as_mut().unwrap().decided_on = "2026-05-21".into();
    tomorrow.publication.as_mut().unwrap().starts_on = "2026-05-21".into();
    // A Changsha authority's decision and a Changsha record id, published by Wuhan.
    let changsha_authority = black("WH-2", &company, "430100");
    let changsha_namespace = black("changsha-3", &company, "420100");
    let logged = h.clock.now_millis();
    h.clock.set_date(parse_date("2026-05-01").expect("a date"));
    h.receive(
        vec![tomorrow, changsha_authority, changsha_namespace],
        logged,
    )
    .await;
    let invalid = h.invalid();
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    assert!(
        invalid[0].starts_with("wuhan 1 WH-2 v1: record WH-2: authority.uscc: "),
        "{invalid:?}"
    );
    assert!(
        invalid[1].starts_with("wuhan 2 changsha-3 v1: record changsha-3: record_id: changsha-3 is in changsha's namespace"),
        "{invalid:?}"
    );
}

#[tokio::test]
async fn republishing_a_published_version_appends_nothing_and_acknowledges_its_seq() {
    let h = harness(capitals());
    let company = uscc("91430100MA4L00003");
    let v1 = black("CS-1", &company, "430100");
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.remarks = "更正".into();
    let first = h
        .publish(vec![v1.clone(), v2.clone()])
        .await
        .expect("published");
    assert_eq!(first.tree_size, 2);
    assert!(first.published.iter().all(|p| !p.already_present));
    // The same file again: both acknowledged where they are, nothing appended.
    let again = h
        .publish(vec![v1.clone(), v2.clone()])
        .await
        .expect("rerun");
    let seen: Vec<(u32, u64, bool)> = again
        .published
        .iter()
        .map(|p| (p.version, p.seq, p.already_present))
        .collect();
    assert_eq!(seen, [(1, 0, true), (2, 1, true)]);
    assert_eq!(h.engine.store.origin_state(NODE).size, 2);
    // After a partial failure: what is there is acknowledged, what is missing appended.
    let mut v3 = v2.clone();
    v3.version = 3;
    v3.remarks = "再次更正".into();
    let rest = h.publish(vec![v2.clone(), v3]).await.expect("rest");
    let seen: Vec<(u32, u64, bool)> = rest
        .published
        .iter()
        .map(|p| (p.version, p.seq, p.already_present))
        .collect();
    assert_eq!(seen, [(2, 1, true), (3, 2, false)]);
    // The same version with other content is refused.
    let mut changed = v1;
    changed.remarks = "不同".into();
    let err = h.publish(vec![changed]).await.expect_err("refused");
    assert!(
        err.to_string()
            .contains("record CS-1: version: 1 is already published with other content (seq 0)"),
        "{err}"
    );
}

#[tokio::test]
async fn assigned_versions_skip_unchanged_content_and_number_a_change_next() {
    let h = harness(capitals());
    let company = uscc("91430100MA4L00003");
    let mut row = black("CS-1", &company, "430100");
    row.version = 0;
    let assign = async |records: Vec<pb::CreditRecord>| {
        h.queue
            .publish_with(records, publish::Versions::Assign)
            .await
    };
    let seen = |receipt: PublishReceipt| -> Vec<(u32, u64, bool)> {
        receipt
            .published
            .iter()
            .map(|p| (p.version, p.seq, p.already_present))
            .collect()
    };
    // New, then the same row twice: numbered 1, then answered where it is.
    assert_eq!(
        seen(assign(vec![row.clone()]).await.expect("new")),
        [(1, 0, false)]
    );
    assert_eq!(
        seen(assign(vec![row.clone()]).await.expect("rerun")),
        [(1, 0, true)]
    );
    // A changed row: the next version; its unchanged rerun, nothing.
    let mut changed = row.clone();
    changed.remarks = "更正".into();
    assert_eq!(
        seen(assign(vec![changed.clone()]).await.expect("changed")),
        [(2, 1, false)]
    );
    assert_eq!(
        seen(
            assign(vec![changed.clone(), row.clone()])
                .await
                .expect("both")
        ),
        // The old content again after the change is a change too: version 3.
        [(2, 1, true), (3, 2, false)]
    );
    assert_eq!(h.engine.store.origin_state(NODE).size, 3);
    // A version given where the node assigns them is refused, naming the field.
    let mut numbered = row;
    numbered.version = 4;
    let err = assign(vec![numbered]).await.expect_err("refused");
    assert!(
        err.to_string().contains(
            "records[0]: record CS-1: version: must be 0 (unset) when the node assigns versions, found 4"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn lookup_pages_stay_under_their_byte_bound_and_together_hold_every_record() {
    let h = harness(capitals());
    let company = uscc("91430100MA4L00003");
    let records: Vec<pb::CreditRecord> = (0..300)
        .map(|i| {
            let mut r = black(&format!("CS-{i:04}"), &company, "430100");
            r.decision.as_mut().unwrap().facts = "事".repeat(1000);
            r
        })
        .collect();
    h.publish(records).await.expect("published");
    let whole = h.engine.lookup(&company, "", 0).expect("lookup");
    assert_eq!(whole.view.in_force.len(), 300);
    let (mut token, mut ids, mut pages) = (String::new(), Vec::new(), 0);
    let bound = 64 << 10;
    loop {
        let page = h
            .engine
            .lookup_page(&company, "", 0, 1000, bound, &token)
            .expect("page");
        let bytes: usize = page
            .view
            .in_force
            .iter()
            .map(|r| prost::Message::encoded_len(&r.to_pb()))
            .sum();
        assert!(bytes <= bound, "{bytes}");
        ids.extend(
            page.view
                .in_force
                .iter()
                .map(|r| r.version.record.record_id.clone()),
        );
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..300).map(|i| format!("CS-{i:04}")).collect();
    assert_eq!(ids, expected);
    assert!(pages > 4, "{pages} pages");
}
