//! Full identity for those entitled, with a trail (查询留痕), through real mutual TLS: a reader
//! sees resident ID numbers masked; the city's enforcement client must state a purpose, then
//! sees them in full; and its access is in the operator's access log with who and why.

use anyhow::Result;
use credex_cli::city::capitals;
use credex_cli::generator::Generator;
use credex_core::ident;
use credex_core::pb;
use credex_node::tls::Role;
use tonic::Code;

use crate::sandbox::{Sandbox, start_date};

const PURPOSE: &str = "（2026）湘0102执881号 被执行人财产调查";

fn records_ids(records: &[pb::ViewRecord]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| r.record.as_ref()?.subject.as_ref())
        .map(|s| s.id_number.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enforcement_sees_full_ids_only_with_a_purpose_and_every_access_is_logged() -> Result<()> {
    let cities = capitals()[..2].to_vec();
    let sandbox = Sandbox::builder().cities(cities.clone()).start().await?;
    let first17 = "43010219800517402";
    let id_number = format!(
        "{first17}{}",
        ident::id_check_char(first17).expect("17 digits")
    );
    let masked = ident::mask_id_number(&id_number);
    assert_ne!(masked, id_number);
    let record = Generator::new(&cities[0], 5, start_date()).black_listing(
        pb::Subject {
            kind: pb::SubjectKind::NaturalPerson.into(),
            name: "李某某".into(),
            id_number: id_number.clone(),
            ..Default::default()
        },
        "court.dishonest_debtor",
    );
    sandbox.publish("changsha", vec![record]).await?;
    let list = || pb::ListRequest {
        list: pb::ListKind::Black.into(),
        ..Default::default()
    };

    // A reader: masked, as ever.
    let mut reader =
        pb::view_client::ViewClient::new(sandbox.channel("changsha", Role::Reader).await?);
    let looked_up = reader
        .lookup(pb::LookupRequest {
            subject_id: id_number.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(looked_up.subject_id, masked);
    assert_eq!(looked_up.in_force.len(), 1);
    let listed = reader.list(list()).await?.into_inner();
    assert_eq!(records_ids(&listed.records), std::slice::from_ref(&masked));

    // Enforcement without a purpose: refused, the field named.
    let mut enforcement =
        pb::view_client::ViewClient::new(sandbox.channel("changsha", Role::Enforcement).await?);
    let refused = enforcement
        .lookup(pb::LookupRequest {
            subject_id: id_number.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("purpose"),
        "{}",
        refused.message()
    );

    // With a purpose: the full ID number, in the lookup and in the list.
    let looked_up = enforcement
        .lookup(pb::LookupRequest {
            subject_id: id_number.clone(),
            purpose: PURPOSE.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(looked_up.subject_id, id_number);
    assert_eq!(
        records_ids(&looked_up.in_force),
        std::slice::from_ref(&id_number)
    );
    let listed = enforcement
        .list(pb::ListRequest {
            purpose: PURPOSE.into(),
            ..list()
        })
        .await?
        .into_inner();
    assert_eq!(
        records_ids(&listed.records),
        std::slice::from_ref(&id_number)
    );

    // Another city's enforcement client is not this node's to serve.
    let mut outsider = pb::view_client::ViewClient::new(
        sandbox
            .channel_as("changsha", "wuhan", Role::Enforcement)
            .await?,
    );
    let denied = outsider
        .lookup(pb::LookupRequest {
            subject_id: id_number.clone(),
            purpose: PURPOSE.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // The operator's access log: both answered requests, with who and why; nothing else.
    let mut operator = pb::operator_client::OperatorClient::new(
        sandbox.channel("changsha", Role::Operator).await?,
    );
    let log = operator
        .list_access(pb::ListAccessRequest::default())
        .await?
        .into_inner();
    assert_eq!(log.next_page_token, "");
    let logged: Vec<(&str, &str, &str)> = log
        .entries
        .iter()
        .map(|e| (e.who.as_str(), e.rpc.as_str(), e.purpose.as_str()))
        .collect();
    let who = "spiffe://mid-yangtze/changsha/enforcement";
    assert_eq!(
        logged,
        [(who, "View.Lookup", PURPOSE), (who, "View.List", PURPOSE)]
    );
    assert_eq!(log.entries[0].subject, id_number);
    assert!(log.entries[0].at > 0);

    // Only the operator reads it.
    let refused = pb::operator_client::OperatorClient::new(
        sandbox.channel("changsha", Role::Enforcement).await?,
    )
    .list_access(pb::ListAccessRequest::default())
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    sandbox.shutdown().await
}
