//! A relay that flips one byte of one entry: the entries no longer give the root their origin
//! signed, so the receiver appends none of them, quarantines them with their reasons (the
//! flipped one as a bad signature, the rest as not under a signed root) and still converges
//! through an honest peer.

use std::collections::BTreeMap;

use anyhow::Result;
use credex_cli::city::capitals;
use credex_cli::generator::Generator;
use credex_core::pb;
use credex_core::pb::exchange_client::ExchangeClient;
use credex_core::pb::exchange_server::{Exchange, ExchangeServer};
use credex_node::tls::{self, Role, TlsFiles};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

use crate::sandbox::{Sandbox, start_date, wait_until};

/// The changsha entry the relay corrupts.
const FLIPPED_SEQ: u64 = 4;

/// Poses as a member's node and relays another node's Sync stream, flipping the last byte
/// (in the signature) of one changsha entry.
struct TamperingRelay {
    upstream: Channel,
}

#[tonic::async_trait]
impl Exchange for TamperingRelay {
    type SyncStream = ReceiverStream<Result<pb::SyncFrame, Status>>;

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        // It asks for the entries loose, to flip a byte of one without recompressing a block
        // (what is inside a packed block reaches the same receive path once unpacked).
        let request = pb::SyncRequest {
            accept_packed: false,
            ..request.into_inner()
        };
        let mut upstream = ExchangeClient::new(self.upstream.clone())
            .sync(request)
            .await?
            .into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(mut frame) = upstream.next().await {
                if let Ok(pb::SyncFrame {
                    frame: Some(pb::sync_frame::Frame::Entries(batch)),
                }) = &mut frame
                {
                    let end = batch.first_seq + batch.entries.len() as u64;
                    if batch.origin == "changsha" && (batch.first_seq..end).contains(&FLIPPED_SEQ) {
                        let leaf = &mut batch.entries[(FLIPPED_SEQ - batch.first_seq) as usize];
                        *leaf.last_mut().expect("a leaf") ^= 0x01;
                    }
                }
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_is_quarantined_while_everything_else_converges() -> Result<()> {
    let cities = capitals();
    let mut sandbox = Sandbox::builder()
        .stopped("hefei")
        .stopped("nanchang")
        .start()
        .await?;
    let mut expected = BTreeMap::new();
    for city in &cities[..2] {
        let mut generator = Generator::new(city, 13, start_date());
        sandbox
            .publish(&city.id, (0..10).map(|_| generator.record()).collect())
            .await?;
        expected.insert(city.id.clone(), 10);
    }

    // Hefei's address answers with a relay holding hefei's node certificate.
    let hefei_files = TlsFiles {
        ca_cert: sandbox.home.ca_cert(),
        cert: sandbox.home.cert("hefei", Role::Node),
        key: sandbox.home.key("hefei", Role::Node),
    };
    let upstream = sandbox.channel_with("changsha", &hefei_files).await?;
    let listener = TcpListener::bind(sandbox.addr("hefei")).await?;
    let incoming = tls::serve_incoming(listener, tls::load_server_config(&hefei_files)?);
    // The relay's forwarded streams never end by themselves, so it is aborted, not drained.
    let relay = tokio::spawn(
        Server::builder()
            .add_service(ExchangeServer::new(TamperingRelay { upstream }))
            .serve_with_incoming(incoming),
    );

    // Nanchang first hears only the relay: the batch holding the flipped entry gives another
    // root than changsha signed, so nothing of it is appended; all of it is quarantined.
    sandbox.set_links("nanchang", &["hefei"]);
    sandbox.start_node("nanchang").await?;
    wait_until("nanchang quarantines the flipped entry", || async {
        let status = sandbox.status("nanchang").await?;
        let count = |reason: &str| {
            status
                .quarantine
                .iter()
                .find(|q| q.reason == reason)
                .map_or(0, |q| q.count)
        };
        let sizes = sandbox.sizes("nanchang").await?;
        assert_eq!(
            sizes.get("changsha").copied().unwrap_or(0),
            0,
            "nothing of changsha's tampered batch is appended"
        );
        Ok(count("bad_signature") >= 1 && count("unsigned_root") >= 9)
    })
    .await?;
    let mut operator = pb::operator_client::OperatorClient::new(
        sandbox.channel("nanchang", Role::Operator).await?,
    );
    let listed = operator
        .list_quarantine(pb::ListQuarantineRequest {
            origin: "changsha".to_owned(),
            limit: 1000,
        })
        .await?
        .into_inner();
    // Each reconnection quarantines the batch again: every copy carries its reason.
    for entry in &listed.entries {
        let expected = if entry.seq == FLIPPED_SEQ {
            "bad_signature"
        } else {
            "unsigned_root"
        };
        assert!(
            entry.reason.starts_with(expected) && entry.received_from == "hefei",
            "seq {}: {} from {}",
            entry.seq,
            entry.reason,
            entry.received_from
        );
    }
    let seqs: std::collections::BTreeSet<u64> = listed.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..10).collect(), "the whole batch is quarantined");

    // With an honest peer too, nanchang converges on every log.
    sandbox.stop_node("nanchang").await?;
    sandbox.set_links("nanchang", &["hefei", "wuhan"]);
    sandbox.start_node("nanchang").await?;
    sandbox.wait_converged(&expected).await?;
    let status = sandbox.status("nanchang").await?;
    assert_eq!(status.invalid_entries, 0);
    assert!(
        status.origins.iter().all(|o| !o.forked),
        "a corrupted relay is not equivocation"
    );

    relay.abort();
    sandbox.shutdown().await
}
