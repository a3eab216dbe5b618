//! Connection floods through the real stack: connections that never finish a TLS handshake —
//! silent ones held open by the thousand, or ones dripping their ClientHello a byte a second —
//! do not starve authenticated clients (`credex_node::acceptor`'s policy).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use credex_cli::city::capitals;
use credex_node::tls::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::sandbox::{DEADLINE, Sandbox, wait_until};

/// Idle connections the flood holds open.
const FLOOD: usize = 1000;

/// "Answers within a second", asserted with room for a loaded two-core CI machine; the
/// measured times are printed.
const ANSWER_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_health_answer_while_a_thousand_idle_sockets_are_held_open() -> Result<()> {
    raise_fd_limit(4 * FLOOD as u64)?;
    let sandbox = Sandbox::builder()
        .cities(capitals()[..1].to_vec())
        .start()
        .await?;
    let limits = sandbox.config("changsha")?.limits.handshakes();
    let flood = Flood::start(sandbox.addr("changsha"), FLOOD);

    // Rounds while the flood connects and while it holds its sockets, each dialling anew, so
    // each is a handshake that must get through the flood; from the same address as the flood.
    let mut worst = Duration::ZERO;
    let mut round = 0;
    let mut redials = 0;
    while round < 5 || flood.opened() < FLOOD {
        round += 1;
        let (status, status_took, status_dials) = answered(|| sandbox.status("changsha")).await?;
        let (health, health_took, health_dials) = answered(|| health(&sandbox)).await?;
        redials += status_dials + health_dials - 2;
        println!(
            "round {round}: status {status_took:?} ({status_dials} dials), health \
             {health_took:?} ({health_dials} dials); flood: {} sockets opened, {} still open",
            flood.opened(),
            flood.open()
        );
        assert_eq!(status.origins.len(), 1, "{status:?}");
        assert_eq!(health, ServingStatus::Serving as i32);
        worst = worst.max(status_took).max(health_took);
    }
    let all_open = Instant::now();
    let closed_at_once = FLOOD - flood.open();
    // The node closes the rest at their handshake deadline.
    wait_until("the node has closed every flood socket", || async {
        Ok(flood.open() == 0)
    })
    .await?;
    let rest_closed_after = all_open.elapsed();
    flood.stop().await?;
    println!(
        "flood of {FLOOD}: {closed_at_once} closed by the node when the last was opened, the rest within \
         {rest_closed_after:?} (deadline {:?}); slowest answer {worst:?} in {round} rounds, \
         {redials} redials",
        limits.timeout
    );
    // Which connections the limits close, and when, is asserted in credex_node's own tests
    // (acceptor.rs, tls.rs); how many were closed by the time the last was opened depends on
    // how far the node's accepting was behind, so it is printed, not asserted.
    assert!(worst < ANSWER_BOUND, "slowest answer {worst:?}");
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_dripping_its_hello_is_closed_at_the_deadline_while_others_are_served()
-> Result<()> {
    const DRIPPERS: usize = 8;
    let sandbox = Sandbox::builder()
        .cities(capitals()[..1].to_vec())
        .start()
        .await?;
    let deadline = sandbox.config("changsha")?.limits.handshakes().timeout;
    let addr = sandbox.addr("changsha");
    let drippers: Vec<_> = (0..DRIPPERS).map(|_| tokio::spawn(drip(addr))).collect();

    // While they drip, new clients are served.
    let started = Instant::now();
    sandbox.status("changsha").await?;
    let status_took = started.elapsed();
    let started = Instant::now();
    assert_eq!(health(&sandbox).await?, ServingStatus::Serving as i32);
    let health_took = started.elapsed();
    println!("while dripping: status {status_took:?}, health {health_took:?}");
    assert!(status_took < ANSWER_BOUND && health_took < ANSWER_BOUND);

    for dripper in drippers {
        let (open_for, sent) = tokio::time::timeout(DEADLINE, dripper).await???;
        println!("dripper closed after {open_for:?}, {sent} bytes sent");
        // The node measures from its accept, which comes after the client's connect, but its
        // timer (tokio's) works in whole milliseconds and may fire up to one early by the
        // client's clock (observed: 2.9987 s for 3 s); a few milliseconds of slack for that.
        assert!(
            open_for + TIMER_SLACK >= deadline,
            "closed after {open_for:?}, before {deadline:?}"
        );
        assert!(
            open_for < deadline + ANSWER_BOUND,
            "closed after {open_for:?}, deadline {deadline:?}"
        );
    }
    sandbox.shutdown().await
}

/// How much earlier than the deadline, by the client's clock, the node's millisecond timer may
/// close a connection.
const TIMER_SLACK: Duration = Duration::from_millis(5);

/// Connects and sends the start of a TLS ClientHello one byte a second until the node closes
/// the connection: how long it stayed open and how many bytes went out.
async fn drip(addr: SocketAddr) -> Result<(Duration, usize)> {
    // A handshake record header and the start of a ClientHello (TLS 1.2 legacy version).
    const HELLO: [u8; 16] = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x5a, 0x5a, 0x5a, 0x5a,
        0x5a,
    ];
    let mut stream = TcpStream::connect(addr).await?;
    let opened = Instant::now();
    let mut pace = tokio::time::interval(Duration::from_secs(1));
    let mut sent = 0;
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            // EOF or a reset: the node closed it (it sends nothing before the ClientHello ends).
            _ = stream.read(&mut buf) => return Ok((opened.elapsed(), sent)),
            _ = pace.tick() => {
                let Some(byte) = HELLO.get(sent) else {
                    bail!("still open after the whole prefix was sent");
                };
                if stream.write_all(&[*byte]).await.is_err() {
                    return Ok((opened.elapsed(), sent));
                }
                sent += 1;
            }
        }
    }
}

/// What `call` answers, how long it took and how many times it dialled. A client that shares
/// its address with a flood opening connections faster than the per-source limit per
/// ClientHello latency can be closed before it has spoken (see `credex_node::acceptor`); like
/// any gRPC client it dials again after a backoff (50 ms, doubling: a gRPC client's starts at a
/// second), not again within the same burst, and the time counts from the first dial, so the
/// backoff counts against `ANSWER_BOUND`.
async fn answered<T, F, Fut>(call: F) -> Result<(T, Duration, u32)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut dials = 0;
    let mut backoff = Duration::from_millis(50);
    loop {
        dials += 1;
        match tokio::time::timeout(DEADLINE, call()).await? {
            Ok(answer) => return Ok((answer, started.elapsed(), dials)),
            Err(e) if dials < 5 => println!("dial {dials} failed: {e:#}"),
            Err(e) => return Err(e),
        }
        // A redial's backoff, as every gRPC client has, not synchronisation.
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

/// gRPC health of the whole server over a new connection.
async fn health(sandbox: &Sandbox) -> Result<i32> {
    let channel = sandbox.channel("changsha", Role::Reader).await?;
    Ok(HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await?
        .into_inner()
        .status)
}

/// A flooder on a thread and runtime of its own, like another process: opens `n` TCP
/// connections that never send a byte and holds each open until the node closes it.
struct Flood {
    open: Arc<AtomicUsize>,
    opened: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Flood {
    fn start(addr: SocketAddr, n: usize) -> Flood {
        let open = Arc::new(AtomicUsize::new(0));
        let opened = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = watch::channel(false);
        let counters = (open.clone(), opened.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut holders = tokio::task::JoinSet::new();
                // One connect at a time: a thousand SYNs at once overflow the kernel's SYN
                // queue, and with SYN cookies the client then believes in connections the
                // node never saw (which it could neither serve nor close).
                for _ in 0..n {
                    let (open, opened) = counters.clone();
                    let mut stopped = stopped.clone();
                    let mut socket = TcpStream::connect(addr).await?;
                    open.fetch_add(1, Ordering::SeqCst);
                    opened.fetch_add(1, Ordering::SeqCst);
                    // Until the node closes it, or the test stops (or drops) the flood.
                    holders.spawn(async move {
                        let mut byte = [0u8; 1];
                        tokio::select! {
                            _ = socket.read(&mut byte) => {}
                            _ = stopped.changed() => {}
                        }
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                while let Some(held) = holders.join_next().await {
                    held?;
                }
                anyhow::Ok(())
            })
        });
        Flood {
            open,
            opened,
            stop,
            thread,
        }
    }

    /// Sockets opened so far.
    fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }

    /// Sockets open now (the node has not closed them).
    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    async fn stop(self) -> Result<()> {
        self.stop.send_replace(true);
        tokio::task::spawn_blocking(move || self.thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?
    }
}

/// Raises this process's soft limit on open files to at least `needed` (up to the hard limit):
/// the flood's sockets and the node's ends of them are all in this one process.
fn raise_fd_limit(needed: u64) -> Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|soft| soft >= needed) {
        return Ok(());
    }
    let raised = limit.maximum.map_or(needed, |hard| hard.min(needed));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        },
    )
    .context("raising the open-file limit")?;
    if raised < needed {
        bail!("the open-file limit is {raised}; this test needs {needed} (ulimit -n)");
    }
    Ok(())
}
