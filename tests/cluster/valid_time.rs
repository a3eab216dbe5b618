//! The view tells the truth over time, through real gRPC: a status takes effect on its own
//! date in every city (Watch included), a version that moves its record's subject or list, or
//! follows a revocation, is refused with the field named, and a city whose clock is wrong —
//! new, or quiet for days — is judged by its witnesses' clocks.

use std::sync::Arc;

use anyhow::Result;
use credex_cli::city::capitals;
use credex_cli::generator::{self, Generator};
use credex_core::date::{Clock, FixedClock, date_of_millis, format_date};
use credex_core::pb;
use credex_node::tls::Role;

use crate::sandbox::{DEADLINE, Sandbox, start_date, wait_until};

fn subject_of(record: &pb::CreditRecord) -> String {
    let s = record.subject.clone().unwrap_or_default();
    if s.uscc.is_empty() {
        s.id_number
    } else {
        s.uscc
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_future_dated_repair_keeps_the_sanction_in_every_city_until_its_date() -> Result<()> {
    let cities = capitals()[..3].to_vec();
    let sandbox = Sandbox::builder().cities(cities.clone()).start().await?;
    let today = start_date();
    let repair_on = today + chrono::Days::new(10);
    let mut view = pb::view_client::ViewClient::new(sandbox.channel("wuhan", Role::Reader).await?);
    let mut changes = view
        .watch(pb::WatchRequest {
            after: 0,
            ..Default::default()
        })
        .await?
        .into_inner();

    let mut generator = Generator::new(&cities[0], 31, today);
    let mut record = generator.record();
    record.list = pb::ListKind::Black.into();
    record.category = "court.dishonest_debtor".into();
    record.severity = pb::Severity::Serious.into();
    let publication = record.publication.get_or_insert_default();
    publication.starts_on = format_date(today);
    publication.ends_on = format_date(today + chrono::Days::new(300));
    let subject = subject_of(&record);
    sandbox.publish("changsha", vec![record.clone()]).await?;
    // Published today, effective in ten days.
    sandbox
        .publish("changsha", vec![generator::repaired(&record, repair_on)])
        .await?;
    sandbox
        .wait_converged(&[("changsha".to_owned(), 2)].into())
        .await?;
    for city in ["changsha", "wuhan", "hefei"] {
        let view = sandbox.lookup(city, &subject).await?;
        let held: Vec<u32> = view
            .in_force
            .iter()
            .map(|r| r.record.as_ref().map_or(0, |r| r.version))
            .collect();
        assert_eq!(
            held,
            [1],
            "{city}: version 1 in force until the repair's date"
        );
    }
    let entered = tokio::time::timeout(DEADLINE, changes.message())
        .await??
        .expect("a change");
    assert_eq!(
        (entered.kind, entered.version, entered.effective_on.as_str()),
        (
            pb::view_change::Kind::Entered as i32,
            1,
            format_date(today).as_str()
        )
    );

    sandbox.clock.set_date(repair_on - chrono::Days::new(1));
    for city in ["changsha", "wuhan", "hefei"] {
        assert_eq!(
            sandbox.lookup(city, &subject).await?.in_force.len(),
            1,
            "{city}: the day before"
        );
    }
    sandbox.clock.set_date(repair_on);
    for city in ["changsha", "wuhan", "hefei"] {
        let view = sandbox.lookup(city, &subject).await?;
        assert!(view.in_force.is_empty(), "{city}: repaired from its date");
        assert_eq!(
            (view.excluded[0].reason, view.excluded[0].version),
            (pb::ExclusionReason::Repaired as i32, 2),
            "{city}"
        );
    }
    // The next change Watch sends is the repair, on its date: nothing left the view before.
    let left = tokio::time::timeout(DEADLINE, changes.message())
        .await??
        .expect("a change");
    assert_eq!(
        (
            left.kind,
            left.reason,
            left.version,
            left.effective_on.as_str()
        ),
        (
            pb::view_change::Kind::Left as i32,
            pb::ExclusionReason::Repaired as i32,
            2,
            format_date(repair_on).as_str()
        )
    );
    assert_eq!(left.record_id, record.record_id);
    sandbox.shutdown().await
}

/// The gRPC status of a refused publish.
fn refusal(result: Result<pb::PublishResponse>) -> tonic::Status {
    let error = result.expect_err("the version is refused");
    error.downcast::<tonic::Status>().expect("a gRPC status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_that_move_the_subject_or_list_or_revive_a_revoked_record_are_refused()
-> Result<()> {
    let cities = capitals()[..1].to_vec();
    let sandbox = Sandbox::builder().cities(cities.clone()).start().await?;
    let mut generator = Generator::new(&cities[0], 41, start_date());
    let mut record = generator.record();
    while record.list != pb::ListKind::Black as i32 {
        record = generator.record();
    }
    sandbox.publish("changsha", vec![record.clone()]).await?;
    let other = generator.record();
    let mut moved = generator::repaired(&record, start_date());
    moved.subject = other.subject.clone();
    let status = refusal(sandbox.publish("changsha", vec![moved]).await);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with(&format!(
            "records[0]: record {}: subject.",
            record.record_id
        )) && status
            .message()
            .contains("a record's subject never changes across versions (version 1 has"),
        "{}",
        status.message()
    );

    let mut red = record.clone();
    red.version = 2;
    red.list = pb::ListKind::Red.into();
    red.category = "tax.credit_grade_a".into();
    red.severity = pb::Severity::Unspecified.into();
    let status = refusal(sandbox.publish("changsha", vec![red]).await);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        format!(
            "records[0]: record {}: list: a record's list never changes across versions (version 1 has LIST_KIND_BLACK, this version LIST_KIND_RED); revoke it and publish a new record",
            record.record_id
        )
    );

    let on = format_date(start_date());
    let mut revoked = generator::repaired(&record, start_date());
    revoked.status.get_or_insert_default().kind = pb::StatusKind::Revoked.into();
    sandbox.publish("changsha", vec![revoked.clone()]).await?;
    let mut revived = revoked.clone();
    revived.version = 3;
    revived.status = Some(pb::RecordStatus {
        kind: pb::StatusKind::Active.into(),
        ..Default::default()
    });
    let status = refusal(sandbox.publish("changsha", vec![revived]).await);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        format!(
            "records[0]: record {}: version: version 2 revoked this record (effective {on}), and revocation is final; publish a new record",
            record.record_id
        )
    );
    wait_until("nothing else was published", || async {
        Ok(sandbox.sizes("changsha").await?.get("changsha") == Some(&2))
    })
    .await?;
    sandbox.shutdown().await
}

/// A new city's first entry would be stamped by its own clock alone: with no entries, it had no
/// checkpoint for the witnesses to cosign, and so no witness's clock to judge its own by. Its
/// witnesses cosign the checkpoint over its empty log instead, and a node a day ahead of them
/// all logs nothing until it is set right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_city_a_day_ahead_of_its_witnesses_logs_nothing_until_its_clock_is_right()
-> Result<()> {
    let cities = capitals()[..3].to_vec();
    let new_city = cities[2].id.clone();
    let mut sandbox = Sandbox::builder()
        .cities(cities.clone())
        .stopped(&new_city)
        .start()
        .await?;
    let day_ahead = Arc::new(FixedClock::at_millis(
        sandbox.clock.now_millis() + 86_400_000,
    ));
    sandbox.set_clock(&new_city, day_ahead.clone());
    sandbox.start_node(&new_city).await?;
    let mut generator = Generator::new(&cities[2], 51, start_date());
    let record = generator.record();

    let status = refusal(sandbox.publish(&new_city, vec![record.clone()]).await);
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("ahead of every witness's"),
        "{status:?}"
    );
    assert_eq!(
        sandbox
            .sizes(&new_city)
            .await?
            .get(&new_city)
            .copied()
            .unwrap_or(0),
        0,
        "nothing logged a day ahead"
    );

    // Set right, it publishes, stamped by the witnesses' time: what the view knew an hour
    // from now holds it.
    day_ahead.set_date(start_date());
    let published = sandbox.publish(&new_city, vec![record.clone()]).await?;
    assert_eq!(published.tree_size, 1, "{published:?}");
    let mut view =
        pb::view_client::ViewClient::new(sandbox.channel(&new_city, Role::Reader).await?);
    let known = view
        .lookup(pb::LookupRequest {
            subject_id: subject_of(&record),
            as_known_at: sandbox.clock.now_millis() + 3_600_000,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        known.in_force.len() + known.excluded.len(),
        1,
        "logged within the hour, not a day ahead: {known:?}"
    );
    sandbox.shutdown().await
}

/// A city that publishes nothing for days (a weekend, a holiday) keeps its clock judged by its
/// witnesses': when they have gone unasked for `cosign::REFRESH`, they cosign its checkpoint
/// again, for their time. Without it the clocks learnt at start age out after a day, and a
/// clock that then jumped ahead would move the city's view a day on, ending listings and lifting
/// sanctions there before their day came anywhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_city_quiet_for_days_keeps_its_clock_judged_by_its_witnesses() -> Result<()> {
    let cities = capitals()[..3].to_vec();
    let quiet = cities[0].id.clone();
    let mut sandbox = Sandbox::builder()
        .cities(cities.clone())
        .stopped(&quiet)
        .start()
        .await?;
    let own = Arc::new(FixedClock::at_millis(sandbox.clock.now_millis()));
    sandbox.set_clock(&quiet, own.clone());
    sandbox.start_node(&quiet).await?;
    let mut generator = Generator::new(&cities[0], 61, start_date());
    let record = generator.record();
    sandbox.publish(&quiet, vec![record.clone()]).await?;
    let subject = subject_of(&record);
    wait_until("its checkpoint cosigned by both witnesses", || async {
        let status = sandbox.status(&quiet).await?;
        Ok(status
            .origins
            .iter()
            .any(|o| o.origin == quiet && o.final_size == 1))
    })
    .await?;

    // Two days go by with nothing published anywhere; the quiet city's clock reads a day more.
    let later = sandbox.clock.now_millis() + 2 * 86_400_000;
    sandbox.clock.set_millis(later);
    own.set_millis(later + 86_400_000);
    let witnesses_day = format_date(date_of_millis(later));
    wait_until("the quiet city's view on its witnesses' day", || async {
        Ok(sandbox.lookup(&quiet, &subject).await?.as_of == witnesses_day)
    })
    .await?;
    let status = refusal(sandbox.publish(&quiet, vec![generator.record()]).await);
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("ahead of every witness's"),
        "{status:?}"
    );
    sandbox.shutdown().await
}
