//! The TLS listener in front of the gRPC server: accepts TCP, runs every TLS handshake as a
//! task of its own under a deadline, and bounds how many handshakes are in flight, in all and
//! per source address, so that unauthenticated connections cannot starve authenticated ones.
//!
//! # Policy
//! - **Always accepting.** The listener is polled whenever tonic polls [`Incoming`] (all the
//!   time it serves), whatever the number of handshakes in flight: a connection is never left
//!   waiting in the kernel's accept queue behind a flood.
//! - **A deadline per handshake** ([`HandshakeLimits::timeout`], from accept to the client's
//!   Finished): a client that sends nothing, or drips its bytes, is closed when it passes.
//! - **Bounded, by eviction.** When a source address (an IPv4 address or an IPv6 /64) has
//!   [`HandshakeLimits::max_pending_per_source`] handshakes in flight, or the node has
//!   [`HandshakeLimits::max_pending`], the new connection is admitted and the *oldest* one in
//!   flight (of that source, or of all) is closed at once, preferring one whose client has not
//!   sent a byte yet. A real client sends its ClientHello the moment TCP connects and finishes
//!   within a few round trips, so it is young and talking while flood connections are old and
//!   silent: to push a real client out, a flood must open more connections than the limit
//!   within one real handshake, which even from the same address (a NAT) takes thousands of
//!   connections a second, while refusing new connections instead would hand the whole limit to
//!   whoever fills it first and hold it for the deadline. Whether a client has spoken is asked
//!   of its socket (a peek through a second descriptor, so a pending handshake costs two) when
//!   it is admitted and again whenever it is about to be evicted, not left to its task, which
//!   may not have run yet in a burst. A real client that shares its address with a flood
//!   bursting faster than that can still be closed before it speaks; it dials again.
//!   ARCHITECTURE.md's *Limits* has the figures.
//! - **Quiet logs.** A failed, timed-out or evicted handshake is a DEBUG line; once per
//!   [`REPORT_EVERY`] one WARN sums them up (with the last failure's address and reason), and
//!   the counters are Prometheus metrics (`credex_tls_handshakes_dropped_total{reason}`,
//!   `credex_tls_handshakes_pending`).
//!
//! Dropping [`Incoming`] (server shutdown) closes the listener at once and aborts every
//! handshake still in flight: no task outlives it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, warn};

use crate::metrics::Metrics;
use crate::tls::{self, TlsConn};

/// How often the dropped handshakes are summed up in one WARN line (when there were any).
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// After an accept error that is not about one connection (e.g. out of file descriptors),
/// pause before retrying instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Connections taken from the kernel per poll before yielding to the rest of the server's task.
const ACCEPTS_PER_POLL: usize = 64;

/// How many TLS handshakes a listener lets run, and for how long; `[limits]` in the node config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// From accept to a completed handshake; a connection still handshaking then is closed.
    pub timeout: Duration,
    /// Handshakes in flight at once; a new connection beyond it closes the oldest one.
    pub max_pending: usize,
    /// Handshakes in flight at once from one source address (IPv4 address or IPv6 /64); a new
    /// connection beyond it closes the oldest one from that source.
    pub max_pending_per_source: usize,
}

impl Default for HandshakeLimits {
    /// A mutual TLS 1.3 handshake takes two round trips and a few signatures, well under a
    /// second between provinces, so 3 s leaves room for a slow link while a silent client
    /// holds its slot briefly. 512 pending handshakes take about 512 descriptors and a few MiB
    /// of TLS state; 64 per source lets a NAT'd platform reconnect a burst of clients at once
    /// while one address can hold only an eighth of the node's slots.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            max_pending: 512,
            max_pending_per_source: 64,
        }
    }
}

/// The TLS connections arriving on a listener, for `Server::serve_with_incoming_shutdown`.
/// It never ends and never yields an error: a failed handshake is counted and skipped, so a
/// port scanner cannot stop the server.
pub struct Incoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    timeout: Duration,
    pending: Arc<Mutex<Pending>>,
    handshakes: JoinSet<Option<TlsConn>>,
    report: Interval,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", &self.listener)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// Serves TLS on `listener` within `limits`, counting dropped handshakes in `metrics`.
    /// Must be called inside a Tokio runtime.
    pub fn new(
        listener: TcpListener,
        tls: Arc<ServerConfig>,
        limits: HandshakeLimits,
        metrics: Option<Metrics>,
    ) -> Incoming {
        let mut report = tokio::time::interval_at(Instant::now() + REPORT_EVERY, REPORT_EVERY);
        report.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Incoming {
            listener,
            acceptor: TlsAcceptor::from(tls),
            timeout: limits.timeout,
            pending: Arc::new(Mutex::new(Pending::new(limits, metrics))),
            handshakes: JoinSet::new(),
            report,
            backoff: None,
        }
    }

    /// Takes a new connection in: evicts whatever the limits say, then starts its handshake.
    fn admit(&mut self, stream: TcpStream, remote: SocketAddr) {
        let accepted = Instant::now();
        // A second descriptor of the socket, to ask it whether the client has spoken whenever
        // that decides an eviction (the task owns the stream); without one (out of
        // descriptors) the task's own first read says so.
        let probe = socket2::SockRef::from(&stream).try_clone().ok();
        let mut pending = lock(&self.pending);
        let id = pending.admit(remote, probe);
        let task = handshake(
            self.acceptor.clone(),
            stream,
            remote,
            accepted + self.timeout,
            Slot {
                pending: self.pending.clone(),
                id,
            },
        );
        // Spawned under the lock, so the task cannot finish (and free its slot) before the
        // slot holds its abort handle.
        let abort = self.handshakes.spawn(task);
        pending.set_abort(id, abort);
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) {
        for _ in 0..ACCEPTS_PER_POLL {
            if let Some(backoff) = self.backoff.as_mut() {
                if backoff.as_mut().poll(cx).is_pending() {
                    return;
                }
                self.backoff = None;
            }
            match self.listener.poll_accept(cx) {
                Poll::Pending => return,
                Poll::Ready(Ok((stream, remote))) => self.admit(stream, remote),
                Poll::Ready(Err(error)) if is_connection_error(&error) => {
                    debug!(%error, "connection failed before accept");
                }
                Poll::Ready(Err(error)) => {
                    warn!(%error, "accept failed; retrying");
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_BACKOFF)));
                }
            }
        }
        // More are waiting: come back after the rest of the server's task has had its turn.
        cx.waker().wake_by_ref();
    }
}

impl Stream for Incoming {
    type Item = Result<TlsConn, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while this.report.poll_tick(cx).is_ready() {
            lock(&this.pending).report();
        }
        this.poll_accept(cx);
        loop {
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(conn)))) => return Poll::Ready(Some(Ok(conn))),
                Poll::Ready(Some(Ok(None))) => {}
                // Evicted: aborted on purpose.
                Poll::Ready(Some(Err(e))) if e.is_cancelled() => {}
                Poll::Ready(Some(Err(e))) => error!(error = %e, "tls handshake task failed"),
                // Nothing in flight (nothing to wait for) or nothing finished yet.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Whether the client has sent something. Asked of the socket itself, not the reactor (which
/// may not have seen the bytes yet, and whose news reaches the handshake task only when that
/// task runs): a real client's ClientHello follows its connect at once, so it does not count
/// as silent while a burst of connections from its address is admitted.
fn has_spoken(probe: &socket2::Socket) -> bool {
    let mut byte = [MaybeUninit::uninit()];
    // The socket is non-blocking: nothing there is WouldBlock.
    matches!(probe.peek(&mut byte), Ok(n) if n > 0)
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection's handshake, to its deadline. The slot is freed when this ends, however it
/// ends (aborted on eviction included).
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    deadline: Instant,
    slot: Slot,
) -> Option<TlsConn> {
    // gRPC sends many small frames; Nagle would add latency to every unary reply.
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%remote, %error, "cannot set TCP_NODELAY");
    }
    // A client that has said nothing yet is the first to go when a limit is reached.
    match tokio::time::timeout_at(deadline, stream.readable()).await {
        Ok(Ok(())) => lock(&slot.pending).talking(slot.id),
        Ok(Err(error)) => {
            slot.dropped(Dropped::Failed, remote, &error);
            return None;
        }
        Err(_) => {
            slot.dropped(Dropped::Timeout, remote, &"sent nothing");
            return None;
        }
    }
    match tokio::time::timeout_at(deadline, tls::server_handshake(&acceptor, stream, remote)).await
    {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(error)) => {
            slot.dropped(Dropped::Failed, remote, &error);
            None
        }
        Err(_) => {
            slot.dropped(Dropped::Timeout, remote, &"handshake not finished");
            None
        }
    }
}

/// Why a handshake ended without a connection; the `reason` label of
/// `credex_tls_handshakes_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    Timeout,
    Failed,
    SourceLimit,
    GlobalLimit,
}

impl Dropped {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Dropped::Timeout => "timeout",
            Dropped::Failed => "failed",
            Dropped::SourceLimit => "source_limit",
            Dropped::GlobalLimit => "global_limit",
        }
    }
}

/// A handshake's place among those in flight; frees it when dropped.
struct Slot {
    pending: Arc<Mutex<Pending>>,
    id: u64,
}

impl Slot {
    fn dropped(&self, why: Dropped, remote: SocketAddr, error: &dyn std::fmt::Display) {
        debug!(%remote, %error, reason = why.as_str(), "tls handshake dropped");
        lock(&self.pending).count(why, Some((remote, error.to_string())));
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.pending).remove(self.id);
    }
}

fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    // The state stays consistent between statements, so a panic elsewhere does not spoil it.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where connections are counted from: an IPv4 address, or an IPv6 /64 (what one host is
/// usually given, so one attacker cannot take a slot per address of it).
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// The handshakes in flight and the bookkeeping of what was dropped. Ids grow with accept
/// order, so the smallest id of a set is its oldest connection.
struct Pending {
    limits: HandshakeLimits,
    next_id: u64,
    slots: BTreeMap<u64, PendingSlot>,
    /// Those whose client has not sent a byte yet.
    silent: BTreeSet<u64>,
    by_source: HashMap<IpAddr, BTreeSet<u64>>,
    /// Dropped since the last report, by reason.
    dropped: BTreeMap<&'static str, u64>,
    last_failure: Option<(SocketAddr, String)>,
    metrics: Option<Metrics>,
}

struct PendingSlot {
    source: IpAddr,
    abort: Option<AbortHandle>,
    /// A duplicate descriptor of the connection, for [`has_spoken`]; closed with the slot.
    probe: Option<socket2::Socket>,
}

impl Pending {
    fn new(limits: HandshakeLimits, metrics: Option<Metrics>) -> Pending {
        Pending {
            limits,
            next_id: 0,
            slots: BTreeMap::new(),
            silent: BTreeSet::new(),
            by_source: HashMap::new(),
            dropped: BTreeMap::new(),
            last_failure: None,
            metrics,
        }
    }

    /// Makes room for a connection from `remote` and takes it in; its id.
    fn admit(&mut self, remote: SocketAddr, probe: Option<socket2::Socket>) -> u64 {
        let source = source_of(remote.ip());
        let from_source = self.by_source.get(&source).map_or(0, BTreeSet::len);
        if from_source >= self.limits.max_pending_per_source.max(1) {
            let ids: Vec<u64> = self.by_source[&source].iter().copied().collect();
            let victim = self
                .oldest_silent(ids.iter().copied())
                .or(ids.first().copied());
            self.evict(victim, Dropped::SourceLimit);
        }
        if self.slots.len() >= self.limits.max_pending.max(1) {
            let silent: Vec<u64> = self.silent.iter().copied().collect();
            let victim = self
                .oldest_silent(silent.into_iter())
                .or_else(|| self.slots.keys().next().copied());
            self.evict(victim, Dropped::GlobalLimit);
        }
        let id = self.next_id;
        self.next_id += 1;
        let talking = probe.as_ref().is_some_and(has_spoken);
        self.slots.insert(
            id,
            PendingSlot {
                source,
                abort: None,
                probe,
            },
        );
        if !talking {
            self.silent.insert(id);
        }
        self.by_source.entry(source).or_default().insert(id);
        self.set_gauge();
        id
    }

    fn set_abort(&mut self, id: u64, abort: AbortHandle) {
        // Always there: neither the task's end nor an eviction can free it while the caller
        // holds the lock it was admitted under.
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.abort = Some(abort);
        }
    }

    /// The client of `id` has sent its first bytes.
    fn talking(&mut self, id: u64) {
        self.silent.remove(&id);
    }

    /// The first of `ids` (oldest first) whose client is silent still, asking each socket
    /// again: one may have spoken since it was last asked.
    fn oldest_silent(&mut self, ids: impl Iterator<Item = u64>) -> Option<u64> {
        for id in ids {
            if !self.silent.contains(&id) {
                continue;
            }
            let spoken = self
                .slots
                .get(&id)
                .and_then(|slot| slot.probe.as_ref())
                .is_some_and(has_spoken);
            if !spoken {
                return Some(id);
            }
            self.silent.remove(&id);
        }
        None
    }

    fn evict(&mut self, victim: Option<u64>, why: Dropped) {
        let Some(id) = victim else { return };
        if let Some(slot) = self.remove(id) {
            debug!(source = %slot.source, reason = why.as_str(), "tls handshake evicted");
            if let Some(abort) = slot.abort {
                abort.abort();
            }
        }
        self.count(why, None);
    }

    fn remove(&mut self, id: u64) -> Option<PendingSlot> {
        let slot = self.slots.remove(&id)?;
        self.silent.remove(&id);
        if let Some(ids) = self.by_source.get_mut(&slot.source) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_source.remove(&slot.source);
            }
        }
        self.set_gauge();
        Some(slot)
    }

    fn count(&mut self, why: Dropped, failure: Option<(SocketAddr, String)>) {
        *self.dropped.entry(why.as_str()).or_default() += 1;
        if why == Dropped::Failed {
            self.last_failure = failure;
        }
        if let Some(metrics) = &self.metrics {
            metrics.count_handshake_dropped(why.as_str());
        }
    }

    fn set_gauge(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.set_handshakes_pending(self.slots.len());
        }
    }

    /// One WARN for everything dropped since the last report, if anything was.
    fn report(&mut self) {
        if self.dropped.is_empty() {
            return;
        }
        let dropped = std::mem::take(&mut self.dropped);
        let n = |why: Dropped| dropped.get(why.as_str()).copied().unwrap_or(0);
        let (last_failure_from, last_failure) = match self.last_failure.take() {
            Some((remote, error)) => (Some(remote), Some(error)),
            None => (None, None),
        };
        warn!(
            timed_out = n(Dropped::Timeout),
            failed = n(Dropped::Failed),
            evicted_source_limit = n(Dropped::SourceLimit),
            evicted_global_limit = n(Dropped::GlobalLimit),
            pending = self.slots.len(),
            last_failure_from = last_failure_from.map(tracing::field::display),
            last_failure,
            "tls handshakes dropped in the last {}s",
            REPORT_EVERY.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// Admits connections (`+ADDR`) and marks them talking (`!ID`) in order; what was evicted
    /// and why, and what is left in flight.
    fn run(limits: (usize, usize), steps: &[&str]) -> String {
        let metrics = Metrics::new("test");
        let mut pending = Pending::new(
            HandshakeLimits {
                timeout: Duration::from_secs(3),
                max_pending: limits.0,
                max_pending_per_source: limits.1,
            },
            Some(metrics.clone()),
        );
        let mut out = String::new();
        for step in steps {
            if let Some(remote) = step.strip_prefix('+') {
                let before: BTreeSet<u64> = pending.slots.keys().copied().collect();
                let dropped = pending.dropped.clone();
                let id = pending.admit(addr(remote), None);
                let gone: Vec<u64> = before
                    .into_iter()
                    .filter(|id| !pending.slots.contains_key(id))
                    .collect();
                let why: Vec<&str> = pending
                    .dropped
                    .iter()
                    .filter(|(k, v)| dropped.get(*k) != Some(*v))
                    .map(|(k, _)| *k)
                    .collect();
                out.push_str(&format!("{id} from {remote}: evicted {gone:?} {why:?}\n"));
            } else if let Some(id) = step.strip_prefix('!') {
                pending.talking(id.parse().unwrap());
            }
        }
        let left: Vec<String> = pending
            .slots
            .iter()
            .map(|(id, slot)| {
                let state = if pending.silent.contains(id) {
                    "silent"
                } else {
                    "talking"
                };
                format!("{id} {} {state}", slot.source)
            })
            .collect();
        out.push_str(&format!("in flight: {}\n", left.join(", ")));
        let text = metrics.encode();
        for line in text.lines().filter(|l| l.starts_with("credex_tls")) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    #[test]
    fn a_source_at_its_limit_loses_its_oldest_silent_connection() {
        expect![[r#"
            0 from 10.0.0.1:1000: evicted [] []
            1 from 10.0.0.1:1001: evicted [] []
            2 from 10.0.0.2:1000: evicted [] []
            3 from 10.0.0.1:1002: evicted [1] ["source_limit"]
            4 from 10.0.0.1:1003: evicted [3] ["source_limit"]
            in flight: 0 10.0.0.1 talking, 2 10.0.0.2 silent, 4 10.0.0.1 silent
            credex_tls_handshakes_dropped_total{city="test",reason="source_limit"} 2
            credex_tls_handshakes_pending{city="test"} 3
        "#]]
        .assert_eq(&run(
            (10, 2),
            &[
                "+10.0.0.1:1000",
                "!0",
                "+10.0.0.1:1001",
                "+10.0.0.2:1000",
                "+10.0.0.1:1002",
                "+10.0.0.1:1003",
            ],
        ));
    }

    #[test]
    fn a_source_of_talking_connections_loses_its_oldest() {
        expect![[r#"
            0 from 10.0.0.1:1000: evicted [] []
            1 from 10.0.0.1:1001: evicted [] []
            2 from 10.0.0.1:1002: evicted [0] ["source_limit"]
            in flight: 1 10.0.0.1 talking, 2 10.0.0.1 silent
            credex_tls_handshakes_dropped_total{city="test",reason="source_limit"} 1
            credex_tls_handshakes_pending{city="test"} 2
        "#]]
        .assert_eq(&run(
            (10, 2),
            &[
                "+10.0.0.1:1000",
                "!0",
                "+10.0.0.1:1001",
                "!1",
                "+10.0.0.1:1002",
            ],
        ));
    }

    #[test]
    fn the_node_at_its_limit_loses_the_oldest_silent_connection_of_any_source_then_the_oldest() {
        expect![[r#"
            0 from 10.0.0.1:1000: evicted [] []
            1 from 10.0.0.2:1000: evicted [] []
            2 from 10.0.0.3:1000: evicted [] []
            3 from 10.0.0.4:1000: evicted [1] ["global_limit"]
            4 from 10.0.0.5:1000: evicted [3] ["global_limit"]
            5 from 10.0.0.6:1000: evicted [0] ["global_limit"]
            in flight: 2 10.0.0.3 talking, 4 10.0.0.5 talking, 5 10.0.0.6 silent
            credex_tls_handshakes_dropped_total{city="test",reason="global_limit"} 3
            credex_tls_handshakes_pending{city="test"} 3
        "#]]
        .assert_eq(&run(
            (3, 2),
            &[
                "+10.0.0.1:1000",
                "!0",
                "+10.0.0.2:1000",
                "+10.0.0.3:1000",
                "!2",
                "+10.0.0.4:1000",
                "+10.0.0.5:1000",
                "!4",
                "+10.0.0.6:1000",
            ],
        ));
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        expect![[r#"
            0 from [2001:db8:0:1::1]:1000: evicted [] []
            1 from [2001:db8:0:1:ffff::2]:1000: evicted [0] ["source_limit"]
            2 from [2001:db8:0:2::1]:1000: evicted [] []
            3 from [::ffff:10.0.0.1]:1000: evicted [] []
            4 from 10.0.0.1:1001: evicted [3] ["source_limit"]
            in flight: 1 2001:db8:0:1:: silent, 2 2001:db8:0:2:: silent, 4 10.0.0.1 silent
            credex_tls_handshakes_dropped_total{city="test",reason="source_limit"} 2
            credex_tls_handshakes_pending{city="test"} 3
        "#]]
        .assert_eq(&run(
            (10, 1),
            &[
                "+[2001:db8:0:1::1]:1000",
                "+[2001:db8:0:1:ffff::2]:1000",
                "+[2001:db8:0:2::1]:1000",
                "+[::ffff:10.0.0.1]:1000",
                "+10.0.0.1:1001",
            ],
        ));
    }
}
