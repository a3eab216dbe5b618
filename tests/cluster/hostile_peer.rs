//! A misbehaving peer: a small gRPC server with Wuhan's real node certificate (and log key) on
//! Wuhan's address, whose Exchange.Sync answers are written byte by byte, so it can send what
//! no honest node would — an oversized message, garbage, entries out of order, a gap it never
//! fills, packed blocks that claim too much or are not zstd, an endless stream at full speed,
//! a message that stalls half-way, a checkpoint for a size it never serves, entries of an
//! origin outside the consortium. Changsha pulls from it;
//! Hefei, honest, keeps publishing. Each misbehaviour must end in the right answer (the stream
//! refused and redialled with the reason in Operator.Status, or quarantine and a long backoff),
//! memory must stay bounded, and Changsha must keep converging with Hefei throughout.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::Result;
use bytes::Bytes;
use credex_cli::city::capitals;
use credex_core::merkle::Hash;
use credex_core::note::{Checkpoint, sign_checkpoint};
use credex_core::pb;
use credex_node::config::LimitsConfig;
use credex_node::tls::{self, Role};
use futures::{Stream, StreamExt, stream};
use http_body::Frame;
use prost::Message;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::Server;

use crate::sandbox::{Sandbox, start_date, wait_until};

/// What the fake peer answers one Sync call with: body bytes, then (if the stream ends) an OK
/// status in the trailers.
type Script = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// The Exchange service as raw HTTP: every Sync call gets the current scenario's script.
#[derive(Clone)]
struct FakeExchange {
    scenario: Arc<Mutex<Arc<dyn Fn() -> Script + Send + Sync>>>,
    calls: Arc<AtomicUsize>,
}

impl NamedService for FakeExchange {
    const NAME: &'static str = "credex.v1.Exchange";
}

impl tower::Service<http::Request<tonic::body::Body>> for FakeExchange {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<tonic::body::Body>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let script = (self.scenario.lock().unwrap())();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = script
            .map(|data| Ok::<_, tonic::Status>(Frame::data(data)))
            .chain(stream::once(async move { Ok(Frame::trailers(trailers)) }));
        let body = tonic::body::Body::new(http_body_util::StreamBody::new(frames));
        let response = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(body)
            .expect("a response");
        std::future::ready(Ok(response))
    }
}

/// One gRPC message: the 5-byte prefix (uncompressed, length) and the bytes.
fn message(bytes: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(5 + bytes.len());
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(bytes);
    framed.into()
}

fn frame(frame: pb::sync_frame::Frame) -> Bytes {
    message(&pb::SyncFrame { frame: Some(frame) }.encode_to_vec())
}

/// `count` leaves of `origin` from `first_seq`: 1 KiB each, not entries anyone signed.
fn entries(origin: &str, first_seq: u64, count: usize) -> Bytes {
    frame(pb::sync_frame::Frame::Entries(pb::EntryBatch {
        origin: origin.to_owned(),
        first_seq,
        entries: (0..count)
            .map(|i| vec![(first_seq as usize + i) as u8; 1024])
            .collect(),
    }))
}

/// A PackedEntries frame of `blocks` leaf blocks of `origin` from `first_seq`, each saying it
/// holds one leaf and decompresses to `raw_len` bytes, each `zstd` the given bytes.
fn packed(origin: &str, first_seq: u64, blocks: usize, raw_len: u32, zstd: &[u8]) -> Bytes {
    frame(pb::sync_frame::Frame::Packed(pb::PackedEntries {
        origin: origin.to_owned(),
        first_seq,
        blocks: vec![
            pb::LeafBlock {
                count: 1,
                raw_len,
                zstd: zstd.to_vec(),
            };
            blocks
        ],
    }))
}

fn then_stall(script: impl Stream<Item = Bytes> + Send + 'static) -> Script {
    Box::pin(script.chain(stream::pending()))
}

/// The process's resident set, bytes (the nodes run in this process).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

struct Peer<'a> {
    sandbox: &'a Sandbox,
    fake: FakeExchange,
    honest: u64,
    generator: credex_cli::generator::Generator,
}

impl Peer<'_> {
    fn set(&self, scenario: impl Fn() -> Script + Send + Sync + 'static) {
        *self.fake.scenario.lock().unwrap() = Arc::new(scenario);
    }

    async fn wuhan(&self) -> Result<(pb::PeerStatus, BTreeMap<String, pb::OriginStatus>)> {
        let status = self.sandbox.status("changsha").await?;
        let peer = status
            .peers
            .into_iter()
            .find(|p| p.city == "wuhan")
            .unwrap_or_default();
        let origins = status
            .origins
            .into_iter()
            .map(|o| (o.origin.clone(), o))
            .collect();
        Ok((peer, origins))
    }

    /// Runs `scenario` until Changsha reports `expected` as Wuhan's last error.
    async fn refused(
        &self,
        scenario: impl Fn() -> Script + Send + Sync + 'static,
        expected: &str,
    ) -> Result<()> {
        self.set(scenario);
        wait_until(&format!("changsha refuses wuhan: {expected}"), || async {
            let (peer, _) = self.wuhan().await?;
            Ok(peer.last_error.contains(expected))
        })
        .await
    }

    /// Hefei publishes a record; Changsha must take it in (log and view) meanwhile.
    async fn honest_record_arrives(&mut self) -> Result<()> {
        let record = self.generator.record();
        self.sandbox.publish("hefei", vec![record]).await?;
        self.honest += 1;
        let want = self.honest;
        wait_until("changsha takes hefei's records", || async {
            Ok(self.sandbox.in_view("changsha").await?.get("hefei") == Some(&want))
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_misbehaving_peer_is_refused_in_bounded_memory_while_honest_peers_converge() -> Result<()>
{
    let cities = capitals()[..3].to_vec();
    let limits = LimitsConfig {
        max_request_bytes: 8 << 20,
        sync_idle_timeout_ms: 2_000,
        sync_buffered_entries: 16_384,
        quarantine_backoff_min_ms: 600_000,
        quarantine_backoff_max_ms: 600_000,
        ..LimitsConfig::default()
    };
    // Memory is read off the whole test process: no other test's nodes may be in it.
    let sandbox = Sandbox::builder()
        .alone()
        .cities(cities.clone())
        .without_link("hefei", "wuhan")
        .stopped("wuhan")
        .limits(limits)
        .start()
        .await?;

    // The fake Wuhan: Wuhan's node certificate, on Wuhan's address.
    let fake = FakeExchange {
        scenario: Arc::new(Mutex::new(Arc::new(|| then_stall(stream::empty())))),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let server_tls = tls::load_server_config(&tls::TlsFiles {
        ca_cert: sandbox.home.ca_cert(),
        cert: sandbox.home.cert("wuhan", Role::Node),
        key: sandbox.home.key("wuhan", Role::Node),
    })?;
    let listener = TcpListener::bind(sandbox.addr("wuhan")).await?;
    let (stop_fake, fake_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .add_service(fake.clone())
            .serve_with_incoming_shutdown(tls::serve_incoming(listener, server_tls), async {
                let _ = fake_stopped.await;
            }),
    );
    let wuhan_key = sandbox.config("wuhan")?.signing_keys()?.log;
    let mut peer = Peer {
        sandbox: &sandbox,
        fake: fake.clone(),
        honest: 0,
        generator: credex_cli::generator::Generator::new(&cities[2], 11, start_date()),
    };
    peer.honest_record_arrives().await?;
    let before = rss();

    // A message over limits.max_request_bytes (8 MiB), sent for real.
    peer.refused(
        || {
            let mut big = vec![0u8; 5 + (9 << 20)];
            big[1..5].copy_from_slice(&(9u32 << 20).to_be_bytes());
            then_stall(stream::iter([Bytes::from(big)]))
        },
        "message length too large",
    )
    .await?;
    // Bytes that are no protobuf message.
    peer.refused(
        || then_stall(stream::iter([message(&[0xff; 64])])),
        "failed to decode",
    )
    .await?;
    // Entries out of order: seq 0..2, then seq 5.
    peer.refused(
        || {
            then_stall(stream::iter([
                entries("wuhan", 0, 2),
                entries("wuhan", 5, 2),
            ]))
        },
        "do not continue the run",
    )
    .await?;
    // A gap it never fills: entries from seq 10 of a log Changsha holds nothing of.
    peer.refused(
        || then_stall(stream::iter([entries("wuhan", 10, 4)])),
        "entries ahead of the local log",
    )
    .await?;
    peer.honest_record_arrives().await?;
    // An endless stream at full speed of entries no checkpoint covers.
    peer.refused(
        || Box::pin(stream::iter(0u64..).map(|i| entries("wuhan", i * 1024, 1024))),
        "no checkpoint of the origin covers them",
    )
    .await?;
    // A message that stops half-way: its prefix says 1,000 bytes, 10 come.
    peer.refused(
        || {
            let mut half = message(&[0u8; 1000]).to_vec();
            half.truncate(15);
            then_stall(stream::iter([Bytes::from(half)]))
        },
        "nothing from the peer within 2 s",
    )
    .await?;
    // A checkpoint Wuhan's key signed for 100 entries it never serves: Changsha learns the size
    // (lag), appends nothing, quarantines nothing, and redials when the peer falls silent.
    let note = sign_checkpoint(
        &Checkpoint {
            origin: credex_core::consortium::origin("mid-yangtze", "wuhan"),
            size: 100,
            root: Hash([7; 32]),
        },
        &wuhan_key,
    )?;
    peer.set(move || {
        then_stall(stream::iter([frame(pb::sync_frame::Frame::Checkpoint(
            pb::CheckpointFrame {
                origin: "wuhan".to_owned(),
                checkpoint: Some(pb::SignedCheckpoint { note: note.clone() }),
                from_size: 0,
                consistency_proof: Vec::new(),
            },
        ))]))
    });
    wait_until("changsha sees wuhan's checkpoint at 100", || async {
        let (_, origins) = peer.wuhan().await?;
        Ok(origins
            .get("wuhan")
            .is_some_and(|o| o.best_seen_size == 100 && o.local_size == 0 && o.lag == 100))
    })
    .await?;
    peer.refused(
        || then_stall(stream::empty()),
        "nothing from the peer within 2 s",
    )
    .await?;
    // Packed blocks that together claim more bytes decompressed than the frame limit (8 MiB):
    // refused before any is decompressed, since a few bytes of zstd can claim gigabytes.
    peer.refused(
        || {
            then_stall(stream::iter([packed(
                "wuhan",
                0,
                3,
                4 << 20,
                b"never decompressed",
            )]))
        },
        "over the frame limit",
    )
    .await?;
    // A block that is no zstd frame.
    peer.refused(
        || then_stall(stream::iter([packed("wuhan", 0, 1, 64, &[0xff; 32])])),
        "does not decompress",
    )
    .await?;
    peer.honest_record_arrives().await?;
    let after = rss();

    // Entries of an origin outside the consortium: quarantined, and the peer is not dialled
    // again before limits.quarantine_backoff_min_ms (10 minutes here), so the same entries are
    // not quarantined again and again.
    peer.refused(
        || then_stall(stream::iter([entries("xian", 0, 3)])),
        "3 entries from this peer were quarantined; next attempt in",
    )
    .await?;
    let calls = fake.calls.load(Ordering::SeqCst);
    for _ in 0..3 {
        peer.honest_record_arrives().await?;
    }
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        calls,
        "changsha redialled a peer whose entries it quarantined"
    );
    let status = sandbox.status("changsha").await?;
    let quarantined: BTreeMap<String, u64> = status
        .quarantine
        .into_iter()
        .map(|q| (q.reason, q.count))
        .collect();
    assert_eq!(
        quarantined,
        BTreeMap::from([("unknown_origin".to_owned(), 3)]),
        "only the foreign origin's entries are quarantined, once"
    );
    assert_eq!(
        sandbox
            .sizes("changsha")
            .await?
            .get("wuhan")
            .copied()
            .unwrap_or(0),
        0,
        "nothing of the misbehaving peer's was appended"
    );
    // Generous: the endless stream alone sent far more than this; what the node holds of it
    // is bounded by limits.sync_buffered_entries and the pipeline.
    let grown = after.saturating_sub(before);
    eprintln!(
        "resident memory {} MiB before the misbehaviour, {} MiB after; wuhan dialled {calls} times",
        before >> 20,
        after >> 20
    );
    assert!(
        grown < 256 << 20,
        "resident memory grew by {} MiB",
        grown >> 20
    );

    let _ = stop_fake.send(());
    server.abort();
    sandbox.shutdown().await
}
