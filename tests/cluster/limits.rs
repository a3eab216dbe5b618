//! `[limits]` through a real node: message sizes, the request rate and calls in flight per
//! client identity, each refused with the status and a message naming the limit, while other
//! identities are served.

use anyhow::Result;
use credex_cli::city::capitals;
use credex_core::pb;
use credex_node::config::LimitsConfig;
use credex_node::tls::Role;
use tonic::Code;

use crate::sandbox::Sandbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_refuse_with_the_limit_named_and_spare_other_clients() -> Result<()> {
    let sandbox = Sandbox::builder()
        .cities(capitals()[..1].to_vec())
        .limits(LimitsConfig {
            max_request_bytes: 8 << 20,
            // One token a second: the test's burst runs well within the second a new one takes.
            requests_per_second: 1,
            request_burst: 5,
            max_calls_per_client: 3,
            ..LimitsConfig::default()
        })
        .start()
        .await?;

    // A message over max_request_bytes is refused before it is decoded.
    let mut publisher = pb::publisher_client::PublisherClient::new(
        sandbox.channel("changsha", Role::Publisher).await?,
    )
    .max_encoding_message_size(64 << 20);
    let mut record =
        credex_cli::generator::Generator::new(&capitals()[0], 3, crate::sandbox::start_date())
            .record();
    record.remarks = "x".repeat(9 << 20);
    let refused = publisher
        .publish(pb::PublishRequest {
            records: vec![record],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(
        refused.message().contains("the limit is: 8388608 bytes"),
        "{}",
        refused.message()
    );

    // The reader's burst of 5, then RESOURCE_EXHAUSTED naming the rate.
    let mut reader =
        pb::view_client::ViewClient::new(sandbox.channel("changsha", Role::Reader).await?);
    let list = || pb::ListRequest::default();
    let mut served = 0;
    let refused = loop {
        match reader.list(list()).await {
            Ok(_) => served += 1,
            Err(status) => break status,
        }
        assert!(served <= 5, "more than the burst served");
    };
    assert_eq!(served, 5);
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        refused.message(),
        "spiffe://mid-yangtze/changsha/reader: request rate limit reached \
         (limits.requests_per_second = 1); retry later"
    );
    // Another identity is not held back by the reader's rate.
    let mut auditor =
        pb::view_client::ViewClient::new(sandbox.channel("changsha", Role::Auditor).await?);
    auditor.list(list()).await?;

    // Calls in flight: three Watch streams held open by the auditor, the fourth refused.
    let mut watches = Vec::new();
    for _ in 0..2 {
        watches.push(
            auditor
                .watch(pb::WatchRequest::default())
                .await?
                .into_inner(),
        );
    }
    // (the auditor's `list` above has ended, so three slots were free)
    watches.push(
        auditor
            .watch(pb::WatchRequest::default())
            .await?
            .into_inner(),
    );
    let refused = auditor
        .watch(pb::WatchRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("3 calls already in flight (limits.max_calls_per_client)"),
        "{}",
        refused.message()
    );
    // A stream's end frees its slot.
    watches.pop();
    crate::sandbox::wait_until("a freed watch slot", || async {
        let mut auditor =
            pb::view_client::ViewClient::new(sandbox.channel("changsha", Role::Auditor).await?);
        Ok(auditor.watch(pb::WatchRequest::default()).await.is_ok())
    })
    .await?;
    // The operator is still served.
    sandbox.status("changsha").await?;
    drop(watches);
    sandbox.shutdown().await
}
