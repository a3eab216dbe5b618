//! Mutual TLS and per-RPC authorisation through the real stack.

use anyhow::Result;
use credex_cli::city::capitals;
use credex_core::pb;
use credex_node::tls::{Role, TlsFiles};
use tonic::Code;

use crate::sandbox::Sandbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_of_another_ca_or_the_wrong_role_or_city_are_refused() -> Result<()> {
    let cities = capitals()[..2].to_vec();
    let sandbox = Sandbox::builder().cities(cities.clone()).start().await?;

    // The right publisher is served.
    let mut ok = pb::operator_client::OperatorClient::new(
        sandbox.channel("changsha", Role::Operator).await?,
    );
    ok.status(pb::StatusRequest::default()).await?;

    // A reader may not publish.
    let mut reader = pb::publisher_client::PublisherClient::new(
        sandbox.channel("changsha", Role::Reader).await?,
    );
    let denied = reader
        .publish(pb::PublishRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("Publisher.Publish"),
        "{}",
        denied.message()
    );

    // Wuhan's publisher may not publish into Changsha's log, nor its operator read Changsha's status.
    let mut wuhan_publisher = pb::publisher_client::PublisherClient::new(
        sandbox
            .channel_as("changsha", "wuhan", Role::Publisher)
            .await?,
    );
    let denied = wuhan_publisher
        .publish(pb::PublishRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let mut wuhan_operator = pb::operator_client::OperatorClient::new(
        sandbox
            .channel_as("changsha", "wuhan", Role::Operator)
            .await?,
    );
    assert_eq!(
        wuhan_operator
            .status(pb::StatusRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // A client (not a node) may not sync.
    let mut not_a_node = pb::exchange_client::ExchangeClient::new(
        sandbox.channel("changsha", Role::Operator).await?,
    );
    let denied = not_a_node
        .sync(pb::SyncRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // A certificate of the same name from another CA never gets a connection.
    let other_dir = tempfile::tempdir()?;
    let other = credex_cli::consortium::init(&credex_cli::consortium::InitOptions {
        out: other_dir.path().join("other"),
        name: "mid-yangtze".to_owned(),
        cities: cities.clone(),
        host: "127.0.0.1".to_owned(),
        base_port: 7100,
    })?;
    let foreign = TlsFiles {
        // Trusts our CA (so the server is accepted) but presents the other CA's certificate.
        ca_cert: sandbox.home.ca_cert(),
        cert: other.cert("changsha", Role::Operator),
        key: other.key("changsha", Role::Operator),
    };
    let refused = match sandbox.channel_with("changsha", &foreign).await {
        Err(_) => true,
        Ok(channel) => pb::operator_client::OperatorClient::new(channel)
            .status(pb::StatusRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA is refused");
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_the_field_named() -> Result<()> {
    let cities = capitals()[..1].to_vec();
    let sandbox = Sandbox::builder().cities(cities.clone()).start().await?;
    let mut generator =
        credex_cli::generator::Generator::new(&cities[0], 9, crate::sandbox::start_date());
    let mut record = generator.record();
    let subject = record.subject.get_or_insert_default();
    subject.kind = pb::SubjectKind::LegalPerson.into();
    subject.id_number.clear();
    subject.uscc = "91430100MA4L00003X".to_owned();
    let error = sandbox.publish("changsha", vec![record]).await.unwrap_err();
    let status = error
        .downcast_ref::<tonic::Status>()
        .expect("a gRPC status");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("records[0]"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("subject.uscc"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("check character"),
        "{}",
        status.message()
    );

    let lookup = sandbox.lookup("changsha", "not-an-id").await.unwrap_err();
    let status = lookup
        .downcast_ref::<tonic::Status>()
        .expect("a gRPC status");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("subject_id:"),
        "{}",
        status.message()
    );
    // Nothing was appended by the refused publish.
    assert_eq!(
        sandbox
            .sizes("changsha")
            .await?
            .get("changsha")
            .copied()
            .unwrap_or(0),
        0
    );
    sandbox.shutdown().await
}
