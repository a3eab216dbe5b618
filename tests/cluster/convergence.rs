//! Convergence, 奖惩同步 (repair and revocation reach every view), expiry, relaying, restart.

use std::collections::BTreeMap;

use anyhow::Result;
use credex_audit as audit;
use credex_cli::city::capitals;
use credex_cli::generator::{self, Generator};
use credex_core::date::format_date;
use credex_core::pb;
use credex_node::tls::Role;

use crate::sandbox::{Sandbox, start_date, wait_until};

fn revoked(record: &pb::CreditRecord, on: &str) -> pb::CreditRecord {
    pb::CreditRecord {
        version: record.version + 1,
        status: Some(pb::RecordStatus {
            kind: pb::StatusKind::Revoked.into(),
            reason: "行政复议决定撤销原处罚决定".to_owned(),
            effective_on: on.to_owned(),
        }),
        ..record.clone()
    }
}

fn origins_in_force(view: &pb::LookupResponse) -> Vec<String> {
    let mut origins: Vec<String> = view
        .in_force
        .iter()
        .filter_map(|r| r.provenance.as_ref().map(|p| p.origin.clone()))
        .collect();
    origins.sort();
    origins
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_cities_converge_and_repair_and_revocation_reach_every_view() -> Result<()> {
    let sandbox = Sandbox::builder().start().await?;
    let today = start_date();
    let joint = generator::joint_subject();
    let mut expected = BTreeMap::new();
    let mut joint_records = BTreeMap::new();
    for (i, city) in capitals().iter().enumerate() {
        let mut generator = Generator::new(city, 7, today);
        let mut records: Vec<pb::CreditRecord> = (0..20).map(|_| generator.record()).collect();
        let category = match city.id.as_str() {
            "changsha" => Some(generator::JOINT_CHANGSHA_CATEGORY),
            "wuhan" => Some(generator::JOINT_WUHAN_CATEGORY),
            _ => None,
        };
        if let Some(category) = category {
            let record = generator.black_listing(joint.clone(), category);
            joint_records.insert(city.id.clone(), record.clone());
            records.push(record);
        }
        let n = records.len() as u64;
        let response = sandbox.publish(&city.id, records).await?;
        assert_eq!(
            response.tree_size, n,
            "city {i} published into an empty log"
        );
        expected.insert(city.id.clone(), n);
    }
    sandbox.wait_converged(&expected).await?;
    // Every origin's newest checkpoint is cosigned by the three other cities' witnesses, and
    // the cosigned note reaches every node: published (2) and final (all peers).
    for city in sandbox.running() {
        wait_until(&format!("{city} holds final checkpoints"), || async {
            let status = sandbox.status(city).await?;
            Ok(status.origins.iter().all(|o| {
                o.cosignatures == 3
                    && o.final_size == expected[&o.origin]
                    && o.published_size == o.final_size
            }))
        })
        .await?;
    }

    for city in sandbox.running() {
        let view = sandbox.lookup(city, &joint.uscc).await?;
        assert_eq!(
            origins_in_force(&view),
            ["changsha", "wuhan"],
            "{city} sees both listings"
        );
    }

    // An auditor exports a proof bundle of Wuhan's listing from Hefei's node; written to a
    // file, it verifies offline against the pinned keys with a quorum of two cosignatures.
    let mut audit = pb::audit_client::AuditClient::new(
        sandbox
            .channel_as("hefei", "changsha", Role::Auditor)
            .await?,
    );
    let bundle = audit
        .get_proof(pb::GetProofRequest {
            origin: "wuhan".to_owned(),
            target: Some(pb::get_proof_request::Target::RecordId(
                joint_records["wuhan"].record_id.clone(),
            )),
        })
        .await?
        .into_inner();
    let file = audit::ProofFile {
        extension: None,
        proof: audit::TlogProof::from_bundle(&bundle)?,
    }
    .to_bytes();
    let consortium = sandbox.home.load_consortium()?;
    let report = audit::verify_proof(&audit::ProofFile::parse(&file)?, &consortium, 2)?;
    assert_eq!(report.city, "wuhan");
    assert_eq!(report.entry.record, Some(joint_records["wuhan"].clone()));
    let mut tampered = file.clone();
    let at = tampered.len() / 3;
    tampered[at] ^= 0x01;
    let refused = audit::ProofFile::parse(&tampered)
        .map_err(|e| e.to_string())
        .and_then(|f| audit::verify_proof(&f, &consortium, 2).map_err(|e| e.to_string()));
    assert!(refused.is_err(), "a tampered bundle is refused");

    // Wuhan repairs its record: it leaves every view.
    let repaired = generator::repaired(&joint_records["wuhan"], today);
    sandbox.publish("wuhan", vec![repaired]).await?;
    for city in sandbox.running() {
        wait_until(&format!("{city} drops the repaired record"), || async {
            Ok(origins_in_force(&sandbox.lookup(city, &joint.uscc).await?) == ["changsha"])
        })
        .await?;
        let view = sandbox.lookup(city, &joint.uscc).await?;
        let excluded: Vec<(String, i32)> = view
            .excluded
            .iter()
            .map(|e| (e.provenance.clone().unwrap_or_default().origin, e.reason))
            .collect();
        assert_eq!(
            excluded,
            [("wuhan".to_owned(), pb::ExclusionReason::Repaired as i32)]
        );
    }

    // Changsha's decision is annulled: revoked everywhere too.
    let revocation = revoked(&joint_records["changsha"], &format_date(today));
    sandbox.publish("changsha", vec![revocation]).await?;
    for city in sandbox.running() {
        wait_until(&format!("{city} drops the revoked record"), || async {
            Ok(sandbox.lookup(city, &joint.uscc).await?.in_force.is_empty())
        })
        .await?;
    }
    // Every node agrees on every log, byte for byte (same roots in every status).
    let status = sandbox.status("hefei").await?;
    assert!(
        status.quarantine.is_empty(),
        "nothing quarantined: {:?}",
        status.quarantine
    );
    assert_eq!(status.invalid_entries, 0);
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_follows_the_injected_clock() -> Result<()> {
    let cities = capitals()[..2].to_vec();
    let sandbox = Sandbox::builder().cities(cities.clone()).start().await?;
    let today = start_date();
    let mut generator = Generator::new(&cities[0], 11, today);
    let mut record = generator.record();
    let publication = record.publication.get_or_insert_default();
    publication.starts_on = format_date(today);
    publication.ends_on = format_date(today + chrono::Days::new(10));
    let subject = {
        let s = record.subject.clone().unwrap_or_default();
        if s.uscc.is_empty() {
            s.id_number
        } else {
            s.uscc
        }
    };
    sandbox.publish("changsha", vec![record]).await?;
    sandbox
        .wait_converged(&BTreeMap::from([("changsha".to_owned(), 1)]))
        .await?;
    for city in ["changsha", "wuhan"] {
        assert_eq!(
            sandbox.lookup(city, &subject).await?.in_force.len(),
            1,
            "{city}: in force on the last day but ten"
        );
    }
    // The last day of publication is still in force; the day after is not.
    sandbox.clock.set_date(today + chrono::Days::new(10));
    assert_eq!(sandbox.lookup("wuhan", &subject).await?.in_force.len(), 1);
    sandbox.clock.set_date(today + chrono::Days::new(11));
    for city in ["changsha", "wuhan"] {
        let view = sandbox.lookup(city, &subject).await?;
        assert!(view.in_force.is_empty(), "{city}: expired");
        assert_eq!(view.excluded[0].reason, pb::ExclusionReason::Expired as i32);
    }
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cities_without_a_direct_link_converge_through_relaying() -> Result<()> {
    let cities = capitals()[..3].to_vec();
    let sandbox = Sandbox::builder()
        .cities(cities.clone())
        .without_link("changsha", "wuhan")
        .start()
        .await?;
    let today = start_date();
    let mut expected = BTreeMap::new();
    for city in &cities {
        let mut generator = Generator::new(city, 3, today);
        let records: Vec<_> = (0..30).map(|_| generator.record()).collect();
        sandbox.publish(&city.id, records).await?;
        expected.insert(city.id.clone(), 30);
    }
    sandbox.wait_converged(&expected).await?;
    let status = sandbox.status("wuhan").await?;
    let peers: Vec<&str> = status.peers.iter().map(|p| p.city.as_str()).collect();
    assert_eq!(
        peers,
        ["hefei"],
        "wuhan has no link to changsha, yet holds its log"
    );
    // Cosigning does not follow the sync links: every other member's witness is asked, so
    // wuhan's checkpoint is final (cosigned by changsha and hefei) without a link to changsha.
    wait_until("wuhan's checkpoint is final", || async {
        let status = sandbox.status("wuhan").await?;
        Ok(status
            .origins
            .iter()
            .any(|o| o.origin == "wuhan" && o.final_size == 30 && o.cosignatures == 2))
    })
    .await?;
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_reports_its_health() -> Result<()> {
    let sandbox = Sandbox::builder()
        .cities(capitals()[..1].to_vec())
        .start()
        .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        sandbox.channel("changsha", Role::Operator).await?,
    );
    for service in [
        "",
        "credex.v1.Exchange",
        "credex.v1.Witness",
        "credex.v1.Publisher",
        "credex.v1.View",
        "credex.v1.Audit",
        "credex.v1.Operator",
    ] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_resumes_where_it_was() -> Result<()> {
    let cities = capitals()[..2].to_vec();
    let mut sandbox = Sandbox::builder().cities(cities.clone()).start().await?;
    let today = start_date();
    let mut generator = Generator::new(&cities[0], 5, today);
    sandbox
        .publish("changsha", (0..50).map(|_| generator.record()).collect())
        .await?;
    sandbox
        .wait_converged(&BTreeMap::from([("changsha".to_owned(), 50)]))
        .await?;
    sandbox.stop_node("wuhan").await?;
    sandbox
        .publish("changsha", (0..50).map(|_| generator.record()).collect())
        .await?;
    sandbox.start_node("wuhan").await?;
    // Resumed from its store: it already holds the first 50 the moment it is back.
    let sizes = sandbox.sizes("wuhan").await?;
    assert!(
        sizes["changsha"] >= 50,
        "wuhan kept its log across the restart: {sizes:?}"
    );
    sandbox
        .wait_converged(&BTreeMap::from([("changsha".to_owned(), 100)]))
        .await?;
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_streams_records_entering_and_leaving_the_view() -> Result<()> {
    let cities = capitals()[..2].to_vec();
    let sandbox = Sandbox::builder().cities(cities.clone()).start().await?;
    let mut view = pb::view_client::ViewClient::new(sandbox.channel("wuhan", Role::Reader).await?);
    let mut changes = view
        .watch(pb::WatchRequest {
            after: 0,
            ..Default::default()
        })
        .await?
        .into_inner();

    let mut generator = Generator::new(&cities[0], 21, start_date());
    let record = generator.record();
    sandbox.publish("changsha", vec![record.clone()]).await?;
    let entered = tokio::time::timeout(crate::sandbox::DEADLINE, changes.message())
        .await??
        .expect("a change");
    assert_eq!(
        (
            entered.origin.as_str(),
            entered.record_id.as_str(),
            entered.kind
        ),
        (
            "changsha",
            record.record_id.as_str(),
            pb::view_change::Kind::Entered as i32
        )
    );
    sandbox
        .publish("changsha", vec![generator::repaired(&record, start_date())])
        .await?;
    let left = tokio::time::timeout(crate::sandbox::DEADLINE, changes.message())
        .await??
        .expect("a change");
    assert_eq!(
        (left.kind, left.reason, left.version),
        (
            pb::view_change::Kind::Left as i32,
            pb::ExclusionReason::Repaired as i32,
            2
        )
    );
    assert!(left.change_seq > entered.change_seq);

    // Resuming after the first change replays the second.
    let mut resumed = view
        .watch(pb::WatchRequest {
            after: entered.change_seq,
            ..Default::default()
        })
        .await?
        .into_inner();
    let replayed = tokio::time::timeout(crate::sandbox::DEADLINE, resumed.message())
        .await??
        .expect("a change");
    assert_eq!(replayed, left);
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_sends_an_origin_its_own_entries_only_up_to_what_it_held_when_the_stream_opened()
-> Result<()> {
    let sandbox = Sandbox::builder().start().await?;
    let cities = capitals();
    let mut changsha = Generator::new(&cities[0], 7, start_date());
    let mut wuhan = Generator::new(&cities[1], 7, start_date());
    let holds = |n: u64| {
        let sandbox = &sandbox;
        move || async move { Ok(sandbox.sizes("wuhan").await?.get("changsha") == Some(&n)) }
    };
    sandbox
        .publish("changsha", (0..3).map(|_| changsha.record()).collect())
        .await?;
    wait_until("Wuhan holds Changsha's 3 entries", holds(3)).await?;

    // A stream to Wuhan as Changsha's node that holds one entry of its own log (a copy
    // restored from an old backup): Wuhan sends it the two it lacks.
    let mut exchange = pb::exchange_client::ExchangeClient::new(
        sandbox.channel_as("wuhan", "changsha", Role::Node).await?,
    );
    let request = pb::SyncRequest {
        frontiers: vec![pb::OriginFrontier {
            origin: "changsha".to_owned(),
            size: 1,
            ..Default::default()
        }],
        live: true,
        max_batch: 0,
        accept_packed: false,
    };
    let mut frames = exchange.sync(request).await?.into_inner();
    // Changsha publishes two more, which reach Wuhan from Changsha itself; then Wuhan one of
    // its own, which the stream carries after anything of Changsha's it would send.
    sandbox
        .publish("changsha", (0..2).map(|_| changsha.record()).collect())
        .await?;
    wait_until("Wuhan holds Changsha's 5 entries", holds(5)).await?;
    sandbox.publish("wuhan", vec![wuhan.record()]).await?;

    let mut own = Vec::new();
    let read = async {
        while let Some(frame) = frames.message().await? {
            if let Some(pb::sync_frame::Frame::Entries(batch)) = frame.frame {
                let seqs = batch.first_seq..batch.first_seq + batch.entries.len() as u64;
                match batch.origin.as_str() {
                    "changsha" => own.extend(seqs),
                    "wuhan" => return Ok(()),
                    _ => {}
                }
            }
        }
        anyhow::bail!("the stream ended before Wuhan's own entry came")
    };
    tokio::time::timeout(crate::sandbox::DEADLINE, read).await??;
    assert_eq!(
        own,
        [1, 2],
        "Changsha is sent what Wuhan held of its log when the stream opened, and no more"
    );
    sandbox.shutdown().await
}
