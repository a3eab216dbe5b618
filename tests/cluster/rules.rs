//! The consortium's rules through real gRPC: a legacy code on the consortium file's allow-list
//! is in force in all four views and flagged, a subject with 3,600 records is looked up page by
//! page with a stock client (4 MiB limit), and rerunning a published file publishes nothing new.

use anyhow::Result;
use credex_cli::city::capitals;
use credex_cli::generator::{Generator, JOINT_CHANGSHA_CATEGORY, joint_subject};
use credex_core::ident::{self, LegacyAllowList};
use credex_core::pb;
use credex_node::config::RulesConfig;
use credex_node::tls::Role;
use prost::Message;

use crate::sandbox::{Sandbox, start_date};

/// An early-pilot code: a valid USCC with its check character changed.
fn pilot() -> String {
    let first17 = "91430100MA4Q7R2K1";
    let good = ident::uscc_check_char(first17).expect("17 uscc characters");
    let wrong = if good == '0' { '1' } else { '0' };
    format!("{first17}{wrong}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_legacy_code_on_the_consortium_allow_list_is_in_force_in_all_four_views_and_flagged()
-> Result<()> {
    let rules = RulesConfig {
        legacy_uscc_allow_list: LegacyAllowList::new([pilot()])?,
        ..RulesConfig::default()
    };
    let sandbox = Sandbox::builder().rules(rules).start().await?;
    let mut expected = std::collections::BTreeMap::new();
    for (i, city) in capitals().iter().enumerate() {
        let mut subject = joint_subject();
        subject.uscc = pilot();
        let record = Generator::new(city, 40 + i as u64, start_date())
            .black_listing(subject, JOINT_CHANGSHA_CATEGORY);
        sandbox.publish(&city.id, vec![record]).await?;
        expected.insert(city.id.clone(), 1);
    }
    sandbox.wait_converged(&expected).await?;
    for city in capitals() {
        let view = sandbox.lookup(&city.id, &pilot()).await?;
        let held: Vec<(String, bool)> = view
            .in_force
            .iter()
            .map(|r| {
                let origin = r.provenance.as_ref().map_or("", |p| &p.origin).to_owned();
                (origin, r.legacy_code)
            })
            .collect();
        assert_eq!(
            held,
            [
                ("changsha".to_owned(), true),
                ("hefei".to_owned(), true),
                ("nanchang".to_owned(), true),
                ("wuhan".to_owned(), true),
            ],
            "view of {}",
            city.id
        );
        assert!(view.excluded.is_empty(), "{:?}", view.excluded);
    }
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subject_with_3600_records_is_looked_up_page_by_page_with_a_stock_client() -> Result<()> {
    let cities = capitals()[..1].to_vec();
    let sandbox = Sandbox::builder().cities(cities.clone()).start().await?;
    let mut generator = Generator::new(&cities[0], 7, start_date());
    let subject = joint_subject();
    let records: Vec<pb::CreditRecord> = (0..3600)
        .map(|i| {
            let mut r = generator.black_listing(subject.clone(), JOINT_CHANGSHA_CATEGORY);
            r.record_id = format!("changsha-big-{i:05}");
            // About 6 KB a record: 20 MB about one subject, five times a stock client's limit.
            r.decision.get_or_insert_default().facts = "拒不履行".repeat(500);
            r
        })
        .collect();
    let total: usize = records.iter().map(Message::encoded_len).sum();
    assert!(total > 16 << 20, "{total} bytes");
    for chunk in records.chunks(500) {
        sandbox.publish("changsha", chunk.to_vec()).await?;
    }
    // A stock client: tonic's default 4 MiB decoding limit.
    let mut view =
        pb::view_client::ViewClient::new(sandbox.channel("changsha", Role::Reader).await?);
    let (mut token, mut ids, mut pages) = (String::new(), Vec::new(), 0);
    loop {
        let page = view
            .lookup(pb::LookupRequest {
                subject_id: subject.uscc.clone(),
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(page.encoded_len() < 3 << 20, "{} bytes", page.encoded_len());
        ids.extend(page.in_force.iter().map(|r| {
            r.record
                .as_ref()
                .map(|r| r.record_id.clone())
                .unwrap_or_default()
        }));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..3600).map(|i| format!("changsha-big-{i:05}")).collect();
    assert_eq!(ids, expected);
    assert!(pages >= 7, "{pages} pages");
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rerunning_a_published_file_publishes_nothing_new() -> Result<()> {
    let cities = capitals()[..2].to_vec();
    let sandbox = Sandbox::builder().cities(cities.clone()).start().await?;
    let mut generator = Generator::new(&cities[0], 11, start_date());
    let file: Vec<pb::CreditRecord> = (0..50).map(|_| generator.record()).collect();
    let first = sandbox.publish("changsha", file.clone()).await?;
    assert!(first.published.iter().all(|p| !p.already_present));
    assert_eq!(first.tree_size, 50);
    let again = sandbox.publish("changsha", file).await?;
    assert_eq!(again.tree_size, 50);
    let seqs: Vec<(u64, bool)> = again
        .published
        .iter()
        .map(|p| (p.seq, p.already_present))
        .collect();
    let expected: Vec<(u64, bool)> = (0..50).map(|seq| (seq, true)).collect();
    assert_eq!(seqs, expected);
    sandbox
        .wait_converged(&[("changsha".to_owned(), 50)].into())
        .await?;
    assert_eq!(sandbox.sizes("wuhan").await?.get("changsha"), Some(&50));
    sandbox.shutdown().await
}
