//! `[limits]` through a real node: message sizes, the request rate and calls in flight per
//! client identity, each refused with the status and a message naming the limit, while other
//! identities are served; HTTP/2 streams per connection; a request that never completes; a
//! Sync stream its peer stops reading.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use credex_cli::city::capitals;
use credex_cli::generator::Generator;
use credex_core::pb;
use credex_node::config::LimitsConfig;
use credex_node::tls::Role;
use futures::{StreamExt, stream};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;

use crate::sandbox::{DEADLINE, Sandbox, start_date, wait_within};

/// Room, on a loaded two-core machine, between a deadline passing and the node acting on it.
const SLACK: Duration = Duration::from_secs(5);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_has_at_most_max_concurrent_streams_open_and_other_connections_are_served()
-> Result<()> {
    let sandbox = Sandbox::builder()
        .cities(capitals()[..1].to_vec())
        .limits(LimitsConfig {
            max_concurrent_streams: 2,
            ..LimitsConfig::default()
        })
        .start()
        .await?;

    // A client that honours the node's SETTINGS (tonic's, over hyper and h2): two Watch streams
    // open on one connection, and a third waits until one of them ends.
    let mut view =
        pb::view_client::ViewClient::new(sandbox.channel("changsha", Role::Auditor).await?);
    let first = view.watch(pb::WatchRequest::default()).await?.into_inner();
    let second = view.watch(pb::WatchRequest::default()).await?.into_inner();
    let mut third = tokio::spawn({
        let mut view = view.clone();
        async move { view.watch(pb::WatchRequest::default()).await }
    });
    // The test stays idle this long: what is shown is that the third call does not get through
    // meanwhile, while a call on another connection does.
    const HOLD: Duration = Duration::from_secs(2);
    let (held, other) = tokio::join!(
        tokio::time::timeout(HOLD, &mut third),
        sandbox.status("changsha")
    );
    assert!(held.is_err(), "a third stream opened on the connection");
    other.context("status on another connection")?;
    drop(first);
    let third = tokio::time::timeout(DEADLINE, third)
        .await
        .context("the third stream did not open when the first ended")??
        .context("the third stream")?;
    drop((second, third));

    // A client that ignores them: the node refuses its third stream with REFUSED_STREAM and
    // leaves the first two open.
    let mut raw = RawH2::connect(&sandbox, Role::Auditor).await?;
    assert_eq!(
        raw.settings.get(&SETTINGS_MAX_CONCURRENT_STREAMS),
        Some(&2),
        "the node's SETTINGS: {:?}",
        raw.settings
    );
    for stream in [1, 3, 5] {
        raw.open(stream, "/credex.v1.View/Watch").await?;
    }
    assert_eq!(raw.resets_until(5).await?, vec![(5, REFUSED_STREAM)]);
    sandbox
        .status("changsha")
        .await
        .context("status on another connection")?;
    drop(raw);
    sandbox.shutdown().await
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const REFUSED_STREAM: u32 = 0x7;

/// An HTTP/2 client written frame by frame (RFC 9113) over the node's mutual TLS. It opens
/// streams whatever the node's SETTINGS say, which hyper and h2 never do, so it shows the node
/// enforcing its limit on a client that does not keep to it.
struct RawH2 {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    /// The node's SETTINGS, by identifier.
    settings: BTreeMap<u16, u32>,
}

impl RawH2 {
    /// Connects to changsha's node as its `role`: the preface, empty SETTINGS, and the
    /// node's SETTINGS read and acknowledged.
    async fn connect(sandbox: &Sandbox, role: Role) -> Result<RawH2> {
        let mut tls = sandbox.tls_stream("changsha", "changsha", role).await?;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut raw = RawH2 {
            tls,
            settings: BTreeMap::new(),
        };
        raw.write(SETTINGS, 0, 0, &[]).await?;
        loop {
            let (kind, flags, _, payload) = raw.read().await?;
            if kind == SETTINGS && flags & ACK == 0 {
                for setting in payload.chunks_exact(6) {
                    raw.settings.insert(
                        u16::from_be_bytes([setting[0], setting[1]]),
                        u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]),
                    );
                }
                raw.write(SETTINGS, ACK, 0, &[]).await?;
                return Ok(raw);
            }
        }
    }

    async fn write(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(9 + payload.len());
        frame.extend_from_slice(&u32::try_from(payload.len())?.to_be_bytes()[1..]);
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.tls.write_all(&frame).await?;
        Ok(self.tls.flush().await?)
    }

    /// The next frame: its type, flags, stream and payload.
    async fn read(&mut self) -> Result<(u8, u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        tokio::time::timeout(DEADLINE, self.tls.read_exact(&mut head))
            .await
            .context("no frame from the node")??;
        let mut payload = vec![0; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
        self.tls.read_exact(&mut payload).await?;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Ok((head[3], head[4], stream, payload))
    }

    /// Opens `stream` with a gRPC call's request headers, and sends no body.
    async fn open(&mut self, stream: u32, path: &str) -> Result<()> {
        // HPACK (RFC 7541): :method POST and :scheme https from the static table (3, 7), the
        // rest literals without indexing, named from it where it can (:path 4, :authority 1,
        // content-type 31).
        let mut block = vec![0x83, 0x87];
        hpack_literal(&mut block, 4, path);
        hpack_literal(&mut block, 1, "127.0.0.1");
        hpack_literal(&mut block, 31, "application/grpc");
        block.push(0x00);
        hpack_string(&mut block, "te");
        hpack_string(&mut block, "trailers");
        self.write(HEADERS, END_HEADERS, stream, &block).await
    }

    /// Reads frames until `stream` is reset, answering pings: every RST_STREAM seen, as
    /// (stream, error code).
    async fn resets_until(&mut self, stream: u32) -> Result<Vec<(u32, u32)>> {
        let mut resets = Vec::new();
        loop {
            let (kind, flags, id, payload) = self.read().await?;
            match kind {
                RST_STREAM => {
                    let code = u32::from_be_bytes(payload[..4].try_into()?);
                    resets.push((id, code));
                    if id == stream {
                        return Ok(resets);
                    }
                }
                PING if flags & ACK == 0 => self.write(PING, ACK, 0, &payload).await?,
                GOAWAY => bail!("the node closed the connection (GOAWAY {payload:?})"),
                _ => {}
            }
        }
    }
}

/// An HPACK literal header field without indexing, its name the static table's `index`.
fn hpack_literal(block: &mut Vec<u8>, index: u8, value: &str) {
    // The index as an integer with a 4-bit prefix (RFC 7541 5.1).
    if index < 15 {
        block.push(index);
    } else {
        block.extend_from_slice(&[0x0f, index - 15]);
    }
    hpack_string(block, value);
}

/// An HPACK string literal, not Huffman-coded (shorter than 127 bytes).
fn hpack_string(block: &mut Vec<u8>, text: &str) {
    block.push(u8::try_from(text.len()).expect("a short string"));
    block.extend_from_slice(text.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_whose_request_never_arrives_whole_ends_cancelled_at_request_timeout_and_others_are_served()
-> Result<()> {
    let timeout = Duration::from_millis(1_500);
    let sandbox = Sandbox::builder()
        .cities(capitals()[..1].to_vec())
        .limits(LimitsConfig {
            request_timeout_ms: 1_500,
            ..LimitsConfig::default()
        })
        .start()
        .await?;
    let channel = sandbox.channel("changsha", Role::Reader).await?;
    // A unary call and a stream, each sending 8 of the 64 bytes its request message announces
    // and then nothing, while another connection asks for status.
    for path in ["/credex.v1.View/Lookup", "/credex.v1.View/Watch"] {
        let (stalled, other) = tokio::join!(
            stalled_call(&sandbox, channel.clone(), path),
            sandbox.status("changsha")
        );
        let (status, took) = stalled?;
        other.context("status on another connection")?;
        println!(
            "{path}: {:?} ({}) after {took:?} (limit {timeout:?})",
            status.code(),
            status.message()
        );
        assert_eq!(status.code(), Code::Cancelled, "{path}: {status:?}");
        assert!(
            took >= timeout && took < timeout + SLACK,
            "{path}: ended after {took:?}, the limit is {timeout:?}"
        );
    }
    // The connection the stalled calls came over is still served.
    pb::view_client::ViewClient::new(channel)
        .list(pb::ListRequest::default())
        .await
        .context("a list on the stalled calls' connection")?;
    sandbox.shutdown().await
}

/// Calls `path` at changsha over `channel` with a request body that stops half-way through its
/// message and never ends: the status the call ends with and how long after it was sent.
async fn stalled_call(
    sandbox: &Sandbox,
    channel: Channel,
    path: &str,
) -> Result<(tonic::Status, Duration)> {
    let mut half = vec![0u8];
    half.extend_from_slice(&64u32.to_be_bytes());
    half.extend_from_slice(&[0; 8]);
    let body = stream::once(async move { Ok::<_, tonic::Status>(Frame::data(Bytes::from(half))) })
        .chain(stream::pending());
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{path}", sandbox.addr("changsha")))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            body,
        )))?;
    let sent = Instant::now();
    let response = tokio::time::timeout(DEADLINE, channel.oneshot(request))
        .await
        .context("no answer")??;
    // A status answered at once is in the headers; else the body ends with it.
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return Ok((status, sent.elapsed()));
    }
    let body = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .context("no end of the answer")??;
    let status = body
        .trailers()
        .and_then(tonic::Status::from_header_map)
        .context("an answer without a grpc-status")?;
    Ok((status, sent.elapsed()))
}

/// Sync streams the stalled peer holds open at once: its every call slot.
const STALLED: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_stream_its_peer_stops_reading_is_ended_at_sync_send_timeout_while_honest_peers_converge()
-> Result<()> {
    let send_timeout = Duration::from_millis(1_000);
    let cities = capitals()[..3].to_vec();
    let sandbox = Sandbox::builder()
        .cities(cities.clone())
        // The stalled peer holds Wuhan's node certificate; Changsha and Hefei are honest.
        .stopped("wuhan")
        .limits(LimitsConfig {
            sync_send_timeout_ms: 1_000,
            // Every slot of the stalled peer's identity is one of its stalled streams, so a
            // slot comes free only when the node has let go of one (a stream holds its slot
            // for its whole life, its buffers with it).
            max_calls_per_client: STALLED as u64,
            ..LimitsConfig::default()
        })
        .start()
        .await?;
    // Far more of Changsha's log than a stalled stream's windows and buffers hold.
    const PUBLISHED: u64 = 1_500;
    let mut changsha = Generator::new(&cities[0], 5, start_date());
    let mut hefei = Generator::new(&cities[2], 7, start_date());
    sandbox
        .publish(
            "changsha",
            (0..PUBLISHED).map(|_| changsha.record()).collect(),
        )
        .await?;
    let mut expected =
        BTreeMap::from([("changsha".to_owned(), PUBLISHED), ("hefei".to_owned(), 0)]);

    // Twice, so what a stalled stream held is shown to be let go of each time, not to pile up.
    for round in 1..=2 {
        let mut stalled = Vec::new();
        let mut opened = Instant::now();
        for _ in 0..STALLED {
            opened = Instant::now();
            stalled.push(open_stalled(&sandbox).await?);
        }
        let refused = stalling_peer(&sandbox)
            .await?
            .sync(sync_request())
            .await
            .expect_err("a call beyond the stalled peer's slots");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

        // Meanwhile both honest nodes publish, and each takes the other's records in.
        let honest = async {
            sandbox
                .publish("changsha", (0..10).map(|_| changsha.record()).collect())
                .await?;
            sandbox
                .publish("hefei", (0..10).map(|_| hefei.record()).collect())
                .await?;
            *expected.get_mut("changsha").expect("changsha") += 10;
            *expected.get_mut("hefei").expect("hefei") += 10;
            sandbox.wait_converged(&expected).await
        };
        // The node ends every stalled stream once a frame has waited sync_send_timeout_ms: the
        // stalled peer's every slot is free again.
        let freed = async {
            wait_within(
                "every slot of the stalled peer free",
                send_timeout + SLACK,
                || async {
                    let mut held = Vec::new();
                    for _ in 0..STALLED {
                        held.push(stalling_peer(&sandbox).await?.sync(sync_request()).await?);
                    }
                    Ok(true)
                },
            )
            .await?;
            Ok::<_, anyhow::Error>(opened.elapsed())
        };
        let (honest, freed) = tokio::join!(honest, freed);
        let freed = freed?;
        honest.context("the honest nodes converging")?;

        // Read now, a stalled stream gives what was in flight when the node ended it, then its
        // end: never the log it was asked for.
        let mut delivered = Vec::new();
        for mut frames in stalled {
            let mut entries = 0;
            let end = loop {
                let next = tokio::time::timeout(DEADLINE, frames.message())
                    .await
                    .context("a stalled stream neither delivers nor ends")?;
                match next {
                    Ok(Some(pb::SyncFrame {
                        frame: Some(pb::sync_frame::Frame::Entries(batch)),
                    })) => entries += batch.entries.len() as u64,
                    Ok(Some(_)) => {}
                    Ok(None) => break "OK".to_owned(),
                    Err(status) => break format!("{:?}: {}", status.code(), status.message()),
                }
            };
            delivered.push((entries, end));
        }
        println!(
            "round {round}: slots free {freed:?} after the last stalled stream opened (limit \
             {send_timeout:?}); entries and end of each stalled stream read afterwards: {delivered:?}"
        );
        assert!(
            freed >= send_timeout && freed < send_timeout + SLACK,
            "the stalled streams ended {freed:?} after opening; the limit is {send_timeout:?}"
        );
        for (entries, end) in &delivered {
            assert!(
                *entries < PUBLISHED,
                "a stalled stream delivered {entries} entries, ending {end}"
            );
        }
    }
    sandbox.shutdown().await
}

/// A Sync stream as the stalled peer, once one of its slots is free (the previous round's
/// probes free theirs as their connections close).
async fn open_stalled(sandbox: &Sandbox) -> Result<tonic::Streaming<pb::SyncFrame>> {
    let until = Instant::now() + DEADLINE;
    loop {
        match stalling_peer(sandbox).await?.sync(sync_request()).await {
            Ok(frames) => return Ok(frames.into_inner()),
            Err(status) if status.code() == Code::ResourceExhausted && Instant::now() < until => {
                // The polling interval of a condition wait.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => return Err(status.into()),
        }
    }
}

/// What the stalled peer asks for: every origin from the start, live, 8 entries a frame,
/// loose (the frames stay small).
fn sync_request() -> pb::SyncRequest {
    pb::SyncRequest {
        frontiers: Vec::new(),
        live: true,
        max_batch: 8,
        accept_packed: false,
    }
}

/// An Exchange client to changsha with Wuhan's node certificate, on a connection of its own
/// whose HTTP/2 windows are the protocol's initial 64 KiB, so that a stream it does not read
/// stops the node's sending early.
async fn stalling_peer(sandbox: &Sandbox) -> Result<pb::exchange_client::ExchangeClient<Channel>> {
    let mut tls = Some(sandbox.tls_stream("changsha", "wuhan", Role::Node).await?);
    let channel = Endpoint::from_shared(format!("http://{}", sandbox.addr("changsha")))?
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect_with_connector(tower::service_fn(move |_| {
            let tls = tls.take().map(TokioIo::new);
            async move { tls.context("the connection is used once") }
        }))
        .await?;
    Ok(pb::exchange_client::ExchangeClient::new(channel))
}
