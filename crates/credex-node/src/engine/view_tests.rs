//! The view over time, tested on an engine: valid time (a status from its own date, as_of over
//! the version history), transaction time (as_known_at), the date tick's changes, and the fixed
//! identity of a record on both the publish and the receive path. Changsha is the node; Wuhan
//! is a peer origin whose entries are fed in as a sync stream would.

use std::sync::Arc;

use credex_core::date::{Clock, Date, FixedClock, parse_date};
use credex_core::keys::SigningKeyPair;
use credex_core::pb;
use tempfile::TempDir;

use super::harness::{
    NODE, PEER, TestEngine, company, cosigned_behind, dishonest_debtor, metric, receive_from_peer,
    receive_logged_from_peer, test_engine, uscc,
};
use super::publish::{self, PublishQueue};
use super::{Engine, EngineError};

const CONSORTIUM: &str = "test";

struct Harness {
    _dir: TempDir,
    engine: Arc<Engine>,
    clock: Arc<FixedClock>,
    queue: PublishQueue,
    peer_key: SigningKeyPair,
}

fn date(text: &str) -> Date {
    parse_date(text).expect("fixture date")
}

fn harness() -> Harness {
    let TestEngine {
        dir,
        engine,
        clock,
        peer_key,
    } = test_engine(
        CONSORTIUM,
        super::rules_tests::capitals(),
        FixedClock::at_date(date("2026-05-20")),
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

const COMPANY: &str = "91430100MA4L00003";
const OTHER_COMPANY: &str = "91430100MA4L00007";

/// 失信被执行人 about [`COMPANY`], by a Changsha court.
fn black(record_id: &str) -> pb::CreditRecord {
    dishonest_debtor(record_id, company(COMPANY), "430100")
}

fn next(previous: &pb::CreditRecord, kind: pb::StatusKind, on: &str) -> pb::CreditRecord {
    let mut r = previous.clone();
    r.version += 1;
    let reason = match kind {
        pb::StatusKind::Active => "",
        _ => "履行完毕，信用修复",
    };
    r.status = Some(pb::RecordStatus {
        kind: kind as i32,
        reason: reason.into(),
        effective_on: on.to_owned(),
    });
    r
}

impl Harness {
    async fn publish(&self, records: Vec<pb::CreditRecord>) -> Result<(), EngineError> {
        self.queue.publish(records).await.map(drop)
    }

    /// Publishes `v1`, then its repair effective `on`.
    async fn publish_repaired(&self, v1: pb::CreditRecord, on: &str) {
        let repair = next(&v1, pb::StatusKind::Repaired, on);
        self.publish(vec![v1]).await.unwrap();
        self.publish(vec![repair]).await.unwrap();
    }

    /// "in force vN" or "excluded REASON vN" per record of the subject.
    fn lookup(&self, subject: &str, as_of: &str, as_known_at: i64) -> String {
        let view = self
            .engine
            .lookup(subject, as_of, as_known_at)
            .expect("lookup");
        let mut out: Vec<String> = view
            .view
            .in_force
            .iter()
            .map(|f| {
                format!(
                    "{} in force v{}",
                    f.version.record.record_id, f.version.record.version
                )
            })
            .collect();
        out.extend(view.view.excluded.iter().map(|e| {
            format!(
                "{} excluded {} v{}",
                e.version.record.record_id, e.reason, e.version.record.version
            )
        }));
        out.join("; ")
    }

    /// The changes recorded so far, one line each.
    fn changes(&self) -> Vec<String> {
        self.engine
            .changes(0, usize::MAX)
            .expect("changes")
            .iter()
            .map(|c| {
                format!(
                    "{} v{} {} {} {}",
                    c.record_id,
                    c.version,
                    c.kind().as_str_name(),
                    c.reason().as_str_name(),
                    c.effective_on
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn a_future_dated_repair_keeps_the_record_in_force_until_its_date_and_the_tick_lifts_it_then()
{
    let h = harness();
    h.publish_repaired(black("CS-17"), "2026-06-01").await;
    let company = uscc(COMPANY);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 in force v1");
    assert_eq!(h.lookup(&company, "2026-05-31", 0), "CS-17 in force v1");
    assert_eq!(
        h.lookup(&company, "2026-06-01", 0),
        "CS-17 excluded repaired v2"
    );
    assert_eq!(h.engine.tick().await.unwrap(), 0, "nothing is due today");
    assert_eq!(
        h.changes(),
        ["CS-17 v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20"]
    );

    h.clock.set_date(date("2026-05-31"));
    assert_eq!(h.engine.tick().await.unwrap(), 0);
    h.clock.set_date(date("2026-06-01"));
    assert_eq!(h.lookup(&company, "", 0), "CS-17 excluded repaired v2");
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(
        h.engine.tick().await.unwrap(),
        0,
        "a due date is handled once"
    );
    assert_eq!(
        h.changes(),
        [
            "CS-17 v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20",
            "CS-17 v2 KIND_LEFT EXCLUSION_REASON_REPAIRED 2026-06-01",
        ]
    );
    let list = |as_of: &str| {
        h.engine
            .list(&Default::default(), 100, "", as_of, 0)
            .expect("list")
            .records
            .len()
    };
    assert_eq!((list("2026-05-31"), list("2026-06-01")), (1, 0));
}

#[tokio::test]
async fn a_clock_a_day_ahead_of_every_witness_keeps_the_view_on_the_witnesses_day() {
    let h = harness();
    h.recount().await;
    h.publish_repaired(black("CS-17"), "2026-06-01").await;
    let company = uscc(COMPANY);
    let counted = h.counts();
    assert!(counted.3, "current: {counted:?}");
    // The clock jumps to the repair's day while the witnesses' read its eve.
    h.clock.set_date(date("2026-06-01"));
    let witness =
        |city: &str, seconds_behind: i64| cosigned_behind(&h.engine, city, seconds_behind);
    h.engine
        .note_witness_clocks(&[witness("wuhan", 86_400), witness("hefei", 86_400)]);
    assert_eq!(h.engine.view_today(), date("2026-05-31"));
    // The repair does not take effect before its day: not in a lookup of today, not by the
    // tick, not in the counts, which are current for the view's day.
    assert_eq!(h.lookup(&company, "", 0), "CS-17 in force v1");
    assert_eq!(h.engine.tick().await.unwrap(), 0);
    assert_eq!(
        h.changes(),
        ["CS-17 v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20"]
    );
    assert_eq!(h.counts(), counted, "the same counts, current");
    // Asked about the day itself, the view answers as it will then.
    assert_eq!(
        h.lookup(&company, "2026-06-01", 0),
        "CS-17 excluded repaired v2"
    );
    // A witness whose clock reads within the hour of this one's: the day has come.
    h.engine.note_witness_clocks(&[witness("nanchang", 600)]);
    assert_eq!(h.engine.view_today(), date("2026-06-01"));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 excluded repaired v2");
    assert!(h.counts().3, "current on the day come");
    h.assert_counts_match_the_view();
}

#[tokio::test]
async fn a_clock_a_day_behind_every_witness_takes_their_day_and_one_witness_alone_moves_nothing() {
    let h = harness();
    h.recount().await;
    h.publish_repaired(black("CS-17"), "2026-06-01").await;
    let company = uscc(COMPANY);
    // The repair's eve on this clock. One witness a day ahead: alone, it moves nothing (it may
    // be the one that lies).
    h.clock.set_date(date("2026-05-31"));
    h.engine.note_witness_clocks(&[
        cosigned_behind(&h.engine, "wuhan", -86_400),
        cosigned_behind(&h.engine, "hefei", 0),
    ]);
    assert_eq!(h.engine.view_today(), date("2026-05-31"));
    assert_eq!(h.engine.tick().await.unwrap(), 0);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 in force v1");
    // Two of the three witnesses a day ahead, the third not heard from: not every witness's
    // (two lying together while the honest one is silent must not move this node's day).
    h.engine
        .note_witness_clocks(&[cosigned_behind(&h.engine, "hefei", -86_400)]);
    assert_eq!(h.engine.view_today(), date("2026-05-31"));
    // Every witness's clock reads the repair's day: it has come everywhere else, and here.
    h.engine
        .note_witness_clocks(&[cosigned_behind(&h.engine, "nanchang", -86_400)]);
    assert_eq!(h.engine.view_today(), date("2026-06-01"));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 excluded repaired v2");
    assert!(h.counts().3, "current on the witnesses' day");
    h.assert_counts_match_the_view();
    assert_eq!(
        metric(&h.engine, "credex_clock_behind_witnesses_seconds"),
        86_400
    );
    // What it publishes meanwhile is stamped with the earliest witness's time, not logged a
    // day late.
    h.publish(vec![black("CS-18")]).await.unwrap();
    let size = h.engine.origin_state(NODE).size;
    let logged = h.engine.known_at(0, NODE, size).unwrap() - h.clock.now_millis();
    assert!((86_400_000..86_405_000).contains(&logged), "{logged}");
}

#[tokio::test]
async fn a_clock_moved_back_steps_the_view_back_and_a_repair_takes_effect_again_on_its_day() {
    let h = harness();
    h.recount().await;
    h.publish_repaired(black("CS-17"), "2026-06-01").await;
    let company = uscc(COMPANY);

    // The clock runs three days past the repair's date: the tick lifts the sanction.
    h.clock.set_date(date("2026-06-03"));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 excluded repaired v2");
    assert_eq!(h.counts(), (0, 0, 1, true));

    // It is put back to before the repair's date: the sanction holds again, everywhere the
    // node answers (lookup, the change feed, the counts), until the repair's own day.
    h.clock.set_date(date("2026-05-30"));
    assert_eq!(
        h.counts(),
        (0, 0, 1, false),
        "not current until stepped back"
    );
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 in force v1");
    assert_eq!(h.counts(), (1, 1, 0, true));
    h.assert_counts_match_the_view();
    assert_eq!(h.engine.tick().await.unwrap(), 0, "stepped back once");
    assert_eq!(
        metric(&h.engine, "credex_view_steps_back_total"),
        1,
        "one step back counted"
    );

    h.clock.set_date(date("2026-05-31"));
    assert_eq!(h.engine.tick().await.unwrap(), 0);
    h.clock.set_date(date("2026-06-01"));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 excluded repaired v2");
    h.assert_counts_match_the_view();
    assert_eq!(
        h.changes(),
        [
            "CS-17 v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20",
            "CS-17 v2 KIND_LEFT EXCLUSION_REASON_REPAIRED 2026-06-01",
            "CS-17 v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-30",
            "CS-17 v2 KIND_LEFT EXCLUSION_REASON_REPAIRED 2026-06-01",
        ]
    );
}

#[tokio::test]
async fn a_repair_published_while_the_clock_ran_ahead_waits_for_its_date_once_the_clock_is_put_right()
 {
    let h = harness();
    h.recount().await;
    let v1 = black("CS-17");
    h.publish(vec![v1.clone()]).await.unwrap();
    // Ten days ahead, a repair dated five days ahead of the true date is in the past: it
    // lifts the sanction as it is published.
    h.clock.set_date(date("2026-05-30"));
    assert_eq!(h.engine.tick().await.unwrap(), 0);
    h.publish(vec![next(&v1, pb::StatusKind::Repaired, "2026-05-25")])
        .await
        .unwrap();
    let company = uscc(COMPANY);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 excluded repaired v2");

    h.clock.set_date(date("2026-05-20"));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 in force v1");
    assert_eq!(h.counts(), (1, 1, 0, true));
    h.clock.set_date(date("2026-05-25"));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.lookup(&company, "", 0), "CS-17 excluded repaired v2");
    h.assert_counts_match_the_view();
    assert_eq!(
        h.changes(),
        [
            "CS-17 v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20",
            "CS-17 v2 KIND_LEFT EXCLUSION_REASON_REPAIRED 2026-05-25",
            "CS-17 v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20",
            "CS-17 v2 KIND_LEFT EXCLUSION_REASON_REPAIRED 2026-05-25",
        ]
    );
}

#[tokio::test]
async fn passed_due_dates_are_kept_for_the_kept_days_and_then_forgotten() {
    use super::changes::PASSED_KEPT_DAYS;
    use credex_core::date::day_number;
    let h = harness();
    h.publish_repaired(black("CS-17"), "2026-06-01").await;
    h.clock.set_date(date("2026-06-01"));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    let passed = || {
        h.engine
            .store
            .passed_until(u32::MAX, 100)
            .expect("passed")
            .into_iter()
            .map(|(day, ..)| day)
            .collect::<Vec<_>>()
    };
    assert!(passed().contains(&20260601), "{:?}", passed());
    // Kept while it is less than the kept days before today.
    h.clock.set_date(date("2026-07-01"));
    assert_eq!(h.engine.tick().await.unwrap(), 0);
    assert!(passed().contains(&20260601), "30 days on, still kept");
    h.clock.set_date(date("2026-07-02"));
    assert_eq!(h.engine.tick().await.unwrap(), 0);
    let kept_after = day_number(
        credex_core::date::days_before(date("2026-07-02"), PASSED_KEPT_DAYS).expect("a date"),
    );
    assert!(
        passed().iter().all(|d| *d > kept_after),
        "older than {kept_after}: {:?}",
        passed()
    );
    assert!(!passed().contains(&20260601));
}

#[tokio::test]
async fn a_record_whose_due_dates_fall_in_two_tick_batches_moves_day_by_day_from_its_earliest() {
    let h = harness();
    // CS-A is published from 2026-06-01 to 06-04: not yet in force, in force for four days,
    // then expired. Over a thousand records expire on 06-01 too, so when the tick catches up
    // on 06-10 CS-A's first due date (06-01, first by its id) and its second (06-05) fall in
    // different batches of the tick.
    let mut a = black("CS-A");
    a.publication = Some(pb::Publication {
        starts_on: "2026-06-01".into(),
        ends_on: "2026-06-04".into(),
    });
    h.publish(vec![a]).await.unwrap();
    let expiring: Vec<pb::CreditRecord> = (0..1100)
        .map(|i| {
            let mut r = black(&format!("r{i:04}"));
            r.publication.as_mut().expect("publication").ends_on = "2026-05-31".into();
            r
        })
        .collect();
    h.publish(expiring).await.unwrap();
    h.clock.set_date(date("2026-06-10"));
    assert_eq!(
        h.engine.tick().await.unwrap(),
        1102,
        "the 1,100 left; CS-A entered and left"
    );
    h.assert_the_feed_replays_to_the_view();
    let cs_a: Vec<String> = h
        .changes()
        .into_iter()
        .filter(|c| c.starts_with("CS-A"))
        .collect();
    assert_eq!(
        cs_a,
        [
            "CS-A v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-06-01",
            "CS-A v1 KIND_LEFT EXCLUSION_REASON_EXPIRED 2026-06-05",
        ]
    );
}

#[tokio::test]
async fn a_node_down_over_due_dates_records_each_change_on_its_own_day_as_one_that_ticked_daily() {
    // The same records, published on 05-20 into two nodes: one ticks every day to 06-10, the
    // other (down over those days) ticks once on 06-10. Their feeds hold the same changes, in
    // the same order, each dated the day it took effect.
    let (daily, down) = (harness(), harness());
    let mut a = black("CS-A");
    a.publication = Some(pb::Publication {
        starts_on: "2026-06-01".into(),
        ends_on: "2026-06-04".into(),
    });
    let b = black("CS-B");
    let b2 = next(&b, pb::StatusKind::Repaired, "2026-06-03");
    let c = black("CS-C");
    let c2 = next(&c, pb::StatusKind::UnderObjection, "2026-06-02");
    let c3 = next(&c2, pb::StatusKind::Active, "2026-06-06");
    for h in [&daily, &down] {
        h.publish(vec![a.clone(), b.clone(), c.clone()])
            .await
            .unwrap();
        h.publish(vec![b2.clone(), c2.clone()]).await.unwrap();
        h.publish(vec![c3.clone()]).await.unwrap();
    }
    for day in 1..=10 {
        daily.clock.set_date(date(&format!("2026-06-{day:02}")));
        daily.engine.tick().await.unwrap();
    }
    down.clock.set_date(date("2026-06-10"));
    assert_eq!(down.engine.tick().await.unwrap(), 5);
    expect_test::expect![[r#"
        [
            "CS-B v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20",
            "CS-C v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20",
            "CS-A v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-06-01",
            "CS-C v2 KIND_UPDATED EXCLUSION_REASON_UNSPECIFIED 2026-06-02",
            "CS-B v2 KIND_LEFT EXCLUSION_REASON_REPAIRED 2026-06-03",
            "CS-A v1 KIND_LEFT EXCLUSION_REASON_EXPIRED 2026-06-05",
            "CS-C v3 KIND_UPDATED EXCLUSION_REASON_UNSPECIFIED 2026-06-06",
        ]
    "#]]
    .assert_debug_eq(&down.changes());
    assert_eq!(down.changes(), daily.changes());
    down.assert_the_feed_replays_to_the_view();
}

#[tokio::test]
async fn as_of_before_a_past_repair_finds_the_record_in_force_and_expiry_is_ticked() {
    let h = harness();
    let mut v1 = black("CS-18");
    v1.publication.as_mut().unwrap().ends_on = "2026-06-10".into();
    h.publish_repaired(v1, "2026-05-02").await;
    let company = uscc(COMPANY);
    assert_eq!(h.lookup(&company, "2026-05-01", 0), "CS-18 in force v1");
    assert_eq!(
        h.lookup(&company, "2026-05-02", 0),
        "CS-18 excluded repaired v2"
    );
    // A backdated repair leaves the view at once; the change carries its own date.
    assert_eq!(
        h.changes(),
        [
            "CS-18 v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20",
            "CS-18 v2 KIND_LEFT EXCLUSION_REASON_REPAIRED 2026-05-02",
        ]
    );

    // Expiry is a change the tick records on the first day after ends_on.
    let mut v = black("CS-19");
    v.publication.as_mut().unwrap().ends_on = "2026-06-10".into();
    h.publish(vec![v]).await.unwrap();
    h.clock.set_date(date("2026-06-10"));
    assert_eq!(h.engine.tick().await.unwrap(), 0);
    h.clock.set_date(date("2026-06-11"));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(
        h.changes()[3..],
        ["CS-19 v1 KIND_LEFT EXCLUSION_REASON_EXPIRED 2026-06-11"]
    );
}

#[tokio::test]
async fn as_known_at_answers_from_the_versions_logged_by_then() {
    let h = harness();
    let v1 = black("CS-20");
    h.publish(vec![v1.clone()]).await.unwrap();
    let first = h.clock.now_millis();
    h.clock.set_date(date("2026-05-25"));
    let second = h.clock.now_millis();
    h.publish(vec![next(&v1, pb::StatusKind::Revoked, "2026-05-25")])
        .await
        .unwrap();
    let company = uscc(COMPANY);
    assert_eq!(h.lookup(&company, "", first), "CS-20 in force v1");
    assert_eq!(h.lookup(&company, "", second), "CS-20 excluded revoked v2");
    assert_eq!(h.lookup(&company, "", 0), "CS-20 excluded revoked v2");
    assert_eq!(h.lookup(&company, "", first - 1), "");
    assert!(matches!(
        h.engine.lookup(&company, "", -5),
        Err(EngineError::InvalidArgument(m)) if m.starts_with("as_known_at:")
    ));
}

#[tokio::test]
async fn listing_an_origin_outside_the_consortium_is_an_invalid_argument() {
    let h = harness();
    let filter = super::query::ListFilter {
        origin: Some("shanghai".to_owned()),
        ..Default::default()
    };
    let err = h.engine.list(&filter, 10, "", "", 0).unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidArgument(m) if m.starts_with("origin: \"shanghai\" is not a member")),
        "{err}"
    );
}

#[tokio::test]
async fn a_list_call_examines_a_bounded_number_of_records_and_its_tokens_reach_every_match() {
    let h = harness();
    // 25 records of Changsha's and 5 of Wuhan's; the filter matches 3 of Changsha's, spread out.
    let mut records: Vec<pb::CreditRecord> =
        (0..25).map(|i| black(&format!("CS-{i:02}"))).collect();
    for i in [3, 12, 24] {
        records[i].category = "tax.major_violation".into();
    }
    h.publish(records).await.unwrap();
    receive_from_peer(
        &h.engine,
        &h.peer_key,
        (0..5)
            .map(|i| dishonest_debtor(&format!("WH-{i}"), company(OTHER_COMPANY), "420100"))
            .collect(),
        1_779_000_000_000,
    )
    .await;
    let bounds = super::query::PageBounds {
        scan: 4,
        ..Default::default()
    };
    let list = |filter: &super::query::ListFilter, page_size: usize| {
        let mut token = String::new();
        let mut pages = Vec::new();
        loop {
            let page = h
                .engine
                .list_bounded(filter, page_size, bounds, &token, "", 0)
                .unwrap();
            assert!(page.records.len() <= page_size);
            pages.push(
                page.records
                    .iter()
                    .map(|r| r.version.record.record_id.clone())
                    .collect::<Vec<_>>(),
            );
            if page.next_page_token.is_empty() {
                return pages;
            }
            token = page.next_page_token;
        }
    };
    let tax = super::query::ListFilter {
        category: Some("tax.major_violation".to_owned()),
        ..Default::default()
    };
    let pages = list(&tax, 100);
    // 30 records, 4 examined a call: 8 calls, some of them empty pages that carry a token.
    assert_eq!(pages.len(), 8, "{pages:?}");
    assert!(pages.iter().any(Vec::is_empty));
    assert_eq!(pages.concat(), ["CS-03", "CS-12", "CS-24"]);
    // Unfiltered, every record once, in order, across both origins.
    let all = list(&Default::default(), 3).concat();
    assert_eq!(all.len(), 30);
    assert_eq!(all[..2], ["CS-00", "CS-01"]);
    assert_eq!(all[25..], ["WH-0", "WH-1", "WH-2", "WH-3", "WH-4"]);
}

#[tokio::test]
async fn publish_refuses_a_moved_subject_a_new_list_and_a_version_after_revocation() {
    let h = harness();
    let v1 = black("CS-21");
    h.publish(vec![v1.clone()]).await.unwrap();
    let mut moved = next(&v1, pb::StatusKind::Active, "");
    moved.subject.as_mut().unwrap().uscc = uscc(OTHER_COMPANY);
    let mut red = next(&v1, pb::StatusKind::Active, "");
    // A valid red-list record in itself: only the move from black is wrong.
    red.list = pb::ListKind::Red as i32;
    red.category = "tax.credit_grade_a".into();
    red.severity = pb::Severity::Unspecified as i32;
    let refused = |r: Result<(), EngineError>| match r {
        Err(EngineError::InvalidArgument(m)) => m,
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    };
    assert_eq!(
        refused(h.publish(vec![moved]).await),
        format!(
            "records[0]: record CS-21: subject.uscc: a record's subject never changes across versions (version 1 has \"{}\", this version \"{}\"); revoke it and publish a new record",
            uscc(COMPANY),
            uscc(OTHER_COMPANY)
        )
    );
    assert_eq!(
        refused(h.publish(vec![red]).await),
        "records[0]: record CS-21: list: a record's list never changes across versions (version 1 has LIST_KIND_BLACK, this version LIST_KIND_RED); revoke it and publish a new record"
    );
    let revoked = next(&v1, pb::StatusKind::Revoked, "2026-05-20");
    let revived = next(&revoked, pb::StatusKind::Active, "");
    // In one request too: the version before is the request's own.
    assert_eq!(
        refused(h.publish(vec![revoked.clone(), revived.clone()]).await),
        "records[1]: record CS-21: version: version 2 revoked this record (effective 2026-05-20), and revocation is final; publish a new record"
    );
    h.publish(vec![revoked]).await.unwrap();
    assert_eq!(
        refused(h.publish(vec![revived]).await),
        "records[0]: record CS-21: version: version 2 revoked this record (effective 2026-05-20), and revocation is final; publish a new record"
    );
}

#[tokio::test]
async fn a_peer_version_that_moves_its_subject_is_appended_listed_invalid_and_kept_out() {
    let h = harness();
    let mut v1 = black("WH-7");
    // Wuhan publishes only its own authorities' decisions (credex_core::rules).
    v1.authority.as_mut().unwrap().uscc = uscc("11420100006123456");
    let mut moved = next(&v1, pb::StatusKind::Active, "");
    moved.subject.as_mut().unwrap().uscc = uscc(OTHER_COMPANY);
    // Signed by Wuhan under a root it signed, as a sync stream delivers it.
    let (committed, indexed) = receive_from_peer(
        &h.engine,
        &h.peer_key,
        vec![v1, moved],
        h.clock.now_millis(),
    )
    .await;
    assert_eq!(committed.appended, 2);
    assert_eq!((indexed.indexed, indexed.invalid), (2, 1));
    let reason = h
        .engine
        .store
        .invalid(PEER, 1)
        .unwrap()
        .expect("listed invalid");
    assert!(
        reason.starts_with("record WH-7: subject.uscc: a record's subject never changes across versions (version 1 has"),
        "{reason}"
    );
    assert_eq!(h.lookup(&uscc(COMPANY), "", 0), "WH-7 in force v1");
    assert_eq!(h.lookup(&uscc(OTHER_COMPANY), "", 0), "");
    assert_eq!(
        h.changes(),
        ["WH-7 v1 KIND_ENTERED EXCLUSION_REASON_UNSPECIFIED 2026-05-20"]
    );
}

impl Harness {
    /// The counts status answers: (records in force, subjects, excluded, current).
    fn counts(&self) -> (u64, u64, u64, bool) {
        let c = self.engine.view_counts().expect("counts").counts;
        (c.records_in_force, c.subjects, c.excluded, c.current)
    }

    /// Asserts that the kept counts, by list too, are what reading the whole view finds.
    fn assert_counts_match_the_view(&self) {
        let kept = self.engine.view_counts().expect("counts");
        let read = self.engine.view_tally().expect("tally");
        assert_eq!(
            (
                kept.counts.records_in_force,
                kept.counts.subjects,
                kept.counts.excluded
            ),
            (
                read.counts.records_in_force,
                read.counts.subjects,
                read.counts.excluded
            ),
        );
        assert_eq!(kept.by_list, read.by_list);
    }

    /// Asserts that the change feed, replayed from its start, holds in force exactly what the
    /// view holds in force today (at the versions it holds), and never enters a record already
    /// in force, updates one not in force or lets one leave that is not in force.
    fn assert_the_feed_replays_to_the_view(&self) {
        use pb::view_change::Kind;
        let mut replayed = std::collections::BTreeMap::new();
        for c in self.engine.changes(0, usize::MAX).expect("changes") {
            let key = (c.origin.clone(), c.record_id.clone());
            let held = match c.kind() {
                Kind::Entered | Kind::Updated => replayed.insert(key, c.version),
                Kind::Left => replayed.remove(&key),
                Kind::Unspecified => panic!("a change of no kind: {c:?}"),
            };
            assert_eq!(
                held.is_some(),
                c.kind() != Kind::Entered,
                "{c:?} after {:?}",
                self.changes()
            );
        }
        let view: std::collections::BTreeMap<_, _> = self
            .engine
            .list(&Default::default(), 1000, "", "", 0)
            .expect("list")
            .records
            .into_iter()
            .map(|f| {
                let v = f.version;
                ((v.origin, v.record.record_id.clone()), v.record.version)
            })
            .collect();
        assert_eq!(replayed, view, "the feed replayed, and the view");
    }

    async fn recount(&self) -> u64 {
        let (_stop, stop) = tokio::sync::watch::channel(false);
        self.engine.recount_view(stop).await.expect("recount")
    }
}

#[tokio::test]
async fn status_counts_are_kept_by_each_batch_and_the_tick_and_match_the_view_read_whole() {
    let h = harness();
    assert_eq!(
        h.counts(),
        (0, 0, 0, false),
        "a store never counted under this node's rules"
    );
    assert_eq!(h.recount().await, 0, "an empty view has nothing to count");
    assert_eq!(h.counts(), (0, 0, 0, true));

    h.publish(vec![black("r1"), black("r2")]).await.unwrap();
    assert_eq!(h.counts(), (2, 1, 0, true));
    let r3 = dishonest_debtor("r3", company(OTHER_COMPANY), "430100");
    h.publish(vec![r3.clone()]).await.unwrap();
    assert_eq!(h.counts(), (3, 2, 0, true));
    h.assert_counts_match_the_view();

    // A repair dated next month lifts nothing today; one dated today lifts r3, and with it
    // its subject, which has no other record in force.
    let v1 = black("r1");
    h.publish(vec![
        next(&v1, pb::StatusKind::Repaired, "2026-06-01"),
        next(&r3, pb::StatusKind::Repaired, "2026-05-20"),
    ])
    .await
    .unwrap();
    assert_eq!(h.counts(), (2, 1, 1, true));
    h.assert_counts_match_the_view();

    // The first of June: not current until the tick has reached the day's due records.
    h.clock.set_date(date("2026-06-01"));
    assert_eq!(h.counts(), (2, 1, 1, false));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.counts(), (1, 1, 2, true));
    h.assert_counts_match_the_view();

    // A peer's version that fails validation is indexed invalid: its record is excluded.
    let mut bad = black("WH-1");
    bad.authority.as_mut().unwrap().uscc = uscc("11420100006123456");
    bad.subject.as_mut().unwrap().uscc = "91430100MA4L00003X".into(); // wrong check character
    let (_, indexed) =
        receive_from_peer(&h.engine, &h.peer_key, vec![bad], h.clock.now_millis()).await;
    assert_eq!((indexed.indexed, indexed.invalid), (1, 1));
    assert_eq!(h.counts(), (1, 1, 3, true));
    h.assert_counts_match_the_view();
}

#[tokio::test]
async fn counts_kept_under_other_rules_are_not_current_until_every_record_is_counted_again() {
    let h = harness();
    h.recount().await;
    h.publish(vec![
        black("r1"),
        dishonest_debtor("r2", company(OTHER_COMPANY), "430100"),
    ])
    .await
    .unwrap();
    // As a store counted under another policy (or before counts were kept) holds them:
    // standings that are not today's evaluation, and another basis.
    let mut batch = credex_store::WriteBatch::new();
    batch
        .set_standing(NODE, "r1", credex_store::Standing::Excluded)
        .set_standing(NODE, "r2", credex_store::Standing::Uncounted)
        .set_count_basis(Some(b"another policy".to_vec()));
    h.engine.apply(batch).await.unwrap();
    assert_eq!(h.counts(), (0, 0, 1, false));

    assert_eq!(h.recount().await, 2);
    assert_eq!(h.counts(), (2, 2, 0, true));
    h.assert_counts_match_the_view();
    assert_eq!(
        h.recount().await,
        0,
        "counted under this node's rules: nothing to do"
    );
}

#[tokio::test]
async fn as_known_at_a_checkpoint_size_answers_what_the_view_showed_at_that_checkpoint() {
    let h = harness();
    h.publish(vec![black("r1")]).await.unwrap();
    let first_logged = h.engine.known_at(0, "", 1).unwrap();
    h.clock.set_date(date("2026-05-21"));
    h.publish(vec![black("r2")]).await.unwrap();

    let at_one = h
        .engine
        .lookup(&uscc(COMPANY), "2026-05-21", first_logged)
        .unwrap();
    assert_eq!(
        at_one.view.in_force.len(),
        1,
        "only r1 was logged by size 1"
    );
    let at_two = h
        .engine
        .known_at(0, NODE, 2)
        .and_then(|t| h.engine.lookup(&uscc(COMPANY), "2026-05-21", t))
        .unwrap();
    assert_eq!(at_two.view.in_force.len(), 2);

    for (time, origin, size, field) in [
        (0, "", 3, "as_known_at_size: 3 is beyond"),
        (5, "", 1, "either as_known_at or as_known_at_size"),
        (0, "xian", 1, "as_known_at_origin: \"xian\" is not a member"),
        (
            0,
            NODE,
            0,
            "as_known_at_origin: given without as_known_at_size",
        ),
    ] {
        match h.engine.known_at(time, origin, size) {
            Err(EngineError::InvalidArgument(m)) => assert!(m.contains(field), "{m}"),
            other => panic!("({time}, {origin:?}, {size}): {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_clock_put_back_stamps_entries_after_the_logs_last_so_each_checkpoint_is_a_prefix() {
    let h = harness();
    // Ten days ahead, then put right.
    h.clock.set_date(date("2026-05-30"));
    h.publish(vec![black("CS-40")]).await.unwrap();
    let ahead = h.engine.known_at(0, NODE, 1).unwrap();
    h.clock.set_date(date("2026-05-20"));
    h.publish(vec![black("CS-41")]).await.unwrap();
    h.publish(vec![black("CS-42")]).await.unwrap();
    // Each batch a millisecond after the one before, not the clock's earlier time.
    let times: Vec<i64> = (1..=3)
        .map(|size| h.engine.known_at(0, NODE, size).unwrap())
        .collect();
    assert_eq!(times, [ahead, ahead + 1, ahead + 2]);
    assert_eq!(
        metric(&h.engine, "credex_publish_clock_behind_seconds"),
        864_000,
        "ten days behind the log's last entry"
    );
    // As known at each checkpoint: exactly the log's prefix of that size.
    let known = |size| {
        let t = h.engine.known_at(0, NODE, size).unwrap();
        h.lookup(&uscc(COMPANY), "2026-05-20", t)
    };
    assert_eq!(known(1), "CS-40 in force v1");
    assert_eq!(known(2), "CS-40 in force v1; CS-41 in force v1");
    // The clock past the log again: stamped as it reads.
    h.clock.set_date(date("2026-05-31"));
    h.publish(vec![black("CS-43")]).await.unwrap();
    assert_eq!(h.engine.known_at(0, NODE, 4).unwrap(), h.clock.now_millis());
    assert_eq!(metric(&h.engine, "credex_publish_clock_behind_seconds"), 0);
}

#[tokio::test]
async fn a_peer_entry_logged_before_one_in_the_view_is_listed_invalid_and_kept_out() {
    let h = harness();
    let t = h.clock.now_millis();
    let hour = 3_600_000;
    let wuhan = |id: &str| {
        let mut r = black(id);
        r.authority.as_mut().unwrap().uscc = uscc("11420100006123456");
        r
    };
    // Seq 2 goes back before seq 1; seq 3 is as late as seq 1 (allowed), seq 4 later still.
    // Seq 5 (a second run, checked against what the first left in the view) goes back too.
    let entries = vec![
        (wuhan("WH-0"), t),
        (wuhan("WH-1"), t + 2 * hour),
        (wuhan("WH-2"), t + hour),
        (wuhan("WH-3"), t + 2 * hour),
        (wuhan("WH-4"), t + 3 * hour),
        (wuhan("WH-5"), t + 2 * hour),
    ];
    let (_, first) = receive_logged_from_peer(&h.engine, &h.peer_key, entries[..5].to_vec()).await;
    assert_eq!((first.indexed, first.invalid), (5, 1));
    let (_, second) = receive_logged_from_peer(&h.engine, &h.peer_key, entries.clone()).await;
    assert_eq!((second.indexed, second.invalid), (1, 1));
    // An entry that goes back and fails its own validation keeps the validation's reason.
    let mut entries = entries;
    let mut no_authority = wuhan("WH-7");
    no_authority.authority = None;
    entries.push((wuhan("WH-6"), t + 4 * hour));
    entries.push((no_authority, t));
    let (_, third) = receive_logged_from_peer(&h.engine, &h.peer_key, entries).await;
    assert_eq!((third.indexed, third.invalid), (2, 1));
    let reason = h.engine.store.invalid(PEER, 7).unwrap().expect("invalid");
    assert_eq!(reason, "record WH-7: authority: is required");
    for seq in [2, 5] {
        let reason = h.engine.store.invalid(PEER, seq).unwrap().expect("invalid");
        assert!(
            reason.starts_with("logged_at: ")
                && reason.contains("an origin's log goes forward in time"),
            "{reason}"
        );
    }
    assert_eq!(
        h.lookup(&uscc(COMPANY), "", 0),
        "WH-0 in force v1; WH-1 in force v1; WH-3 in force v1; WH-4 in force v1; \
         WH-6 in force v1; WH-2 excluded invalid v1; WH-5 excluded invalid v1; \
         WH-7 excluded invalid v1"
    );
    // As known at a checkpoint whose last entry is invalid: the time of the last one in the
    // view before it, so the answer is still the log's prefix.
    assert_eq!(h.engine.known_at(0, PEER, 3).unwrap(), t + 2 * hour);
}

/// One step of [`kept_counts_equal_the_view_read_whole_after_any_steps`].
#[derive(Debug, Clone)]
enum Step {
    /// Version 1 of record `r{record}` about subject `subject`, published until `ends`.
    New { record: u8, subject: u8, ends: u8 },
    /// The record's next version: this status, effective `days` from today (negative: past).
    Next {
        record: u8,
        kind: pb::StatusKind,
        days: i8,
    },
    /// Days pass (or the clock is put back, negative: to no more than `PASSED_KEPT_DAYS`
    /// before the latest day reached); the tick runs.
    Pass { days: i8 },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (0..6u8, 0..3u8, 0..3u8).prop_map(|(record, subject, ends)| Step::New {
            record,
            subject,
            ends
        }),
        (
            0..6u8,
            prop_oneof![
                Just(pb::StatusKind::Repaired),
                Just(pb::StatusKind::Revoked),
                Just(pb::StatusKind::UnderObjection),
                Just(pb::StatusKind::Active),
            ],
            -10..30i8
        )
            .prop_map(|(record, kind, days)| Step::Next { record, kind, days }),
        prop_oneof![1..40i8, -20..0i8].prop_map(|days| Step::Pass { days }),
    ]
}

fn days_from(date: Date, days: i64) -> Date {
    date.checked_add_signed(chrono::TimeDelta::days(days))
        .expect("a date in range")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Whatever is published and whenever the days pass, or the clock is put back, the counts
    /// each batch and tick keep are what reading the whole view finds, and the change feed
    /// replayed holds in force what the view does.
    #[test]
    fn kept_counts_equal_the_view_read_whole_after_any_steps(
        steps in proptest::collection::vec(step(), 1..24)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let h = harness();
            h.recount().await;
            let subjects = [COMPANY, OTHER_COMPANY, "91430100MA4L0000X"];
            let ends = ["2026-05-25", "2026-07-01", "2028-04-02"];
            let mut latest: std::collections::BTreeMap<u8, pb::CreditRecord> = Default::default();
            // The latest day the view reached: the clock is put back at most
            // `PASSED_KEPT_DAYS` before it, as far as the view can be stepped back.
            let mut reached = h.clock.today();
            for step in steps {
                let today = h.clock.today();
                match step.clone() {
                    Step::New { record, subject, ends: e } => {
                        if latest.contains_key(&record) {
                            continue;
                        }
                        let mut v1 = dishonest_debtor(
                            &format!("r{record}"),
                            company(subjects[usize::from(subject)]),
                            "430100",
                        );
                        v1.publication.as_mut().expect("publication").ends_on =
                            ends[usize::from(e)].into();
                        if h.publish(vec![v1.clone()]).await.is_ok() {
                            latest.insert(record, v1);
                        }
                    }
                    Step::Next { record, kind, days } => {
                        let Some(previous) = latest.get(&record) else { continue };
                        let on = credex_core::date::format_date(days_from(today, days.into()));
                        let v = next(previous, kind, &on);
                        if h.publish(vec![v.clone()]).await.is_ok() {
                            latest.insert(record, v);
                        }
                    }
                    Step::Pass { days } => {
                        let kept = super::changes::PASSED_KEPT_DAYS as i64;
                        let to = days_from(today, days.into()).max(days_from(reached, -kept));
                        reached = reached.max(to);
                        h.clock.set_date(to);
                        h.engine.tick().await.expect("tick");
                    }
                }
                assert!(h.counts().3, "current after {step:?}");
                h.assert_counts_match_the_view();
                h.assert_the_feed_replays_to_the_view();
            }
        });
    }
}
