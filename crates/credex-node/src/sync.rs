//! Exchange.Sync, both ends (DESIGN.md "Protocol").
//!
//! - [`serve`] answers a peer's Sync request: for every origin this node holds where the peer
//!   is behind, the newest checkpoint (with a consistency proof from the peer's size) and then
//!   the entries in batches; in live mode it then waits for new commits and pushes them, with
//!   a heartbeat when idle. Every origin is served, not only this city's (relaying); live, a
//!   third origin's new entries are held back ([`SyncLimits::relay_holdback`]) and sent only if
//!   the peer has not shown it holds them (by a checkpoint gossiped on its own stream to this
//!   node); to a peer that has shown it is cut off from that origin, at once.
//! - [`run_peer`] keeps one outbound stream to one peer, reconnecting with exponential
//!   backoff, and feeds what arrives to the engine through a two-stage pipeline: batches are
//!   verified on a blocking thread (all cores) while the previous batch commits.
//!
//! Every await the other side controls has a deadline ([`SyncLimits`], from `[limits]`): a
//! pulled stream on which nothing arrives (the server sends a heartbeat every [`HEARTBEAT`])
//! is redialled, a served frame the peer does not take ends the stream (closing its
//! connection, see [`crate::tls::ConnCloser`]), and what waits for a
//! checkpoint is bounded in entries and bytes per origin. A peer whose stream brought entries
//! that were quarantined is dialled again only after a longer, jittered backoff, so a relay
//! that serves a tampered leaf does not have the same entries quarantined on every reconnect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credex_core::pb;
use credex_core::pb::exchange_client::ExchangeClient;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tonic::Status;
use tracing::{Instrument, debug, info, info_span, warn};

use credex_store::{PackedBlock, PackedRun, WireBlock};

use crate::engine::Engine;
use crate::engine::checkpoints::{CheckpointOutcome, SentProof};
use crate::engine::ingest::Inbox;
use crate::tls::{self, ConnCloser, Identity, Role};

/// Entries per EntryBatch frame unless the receiver asks for fewer.
pub const DEFAULT_FRAME_ENTRIES: usize = 1024;
/// An idle live stream sends a heartbeat this often, so the receiver sees the peer is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Most leaf bytes one served EntryBatch frame carries (at least one leaf, which is at most
/// `credex_core::entry::MAX_LEAF_BYTES`), so a frame stays well under any receiver's
/// `limits.max_request_bytes` (at least 8 MiB).
pub const FRAME_BYTES: usize = 4 << 20;
/// Frames read ahead of the committer: the network runs this far ahead of the writer.
const PIPELINE_DEPTH: usize = 16;
/// Most entries one receive-path commit groups (one atomic write, one flush).
const MAX_COMMIT_ENTRIES: usize = 8192;
/// Log sizes one held-back origin keeps waiting; past this the oldest is relayed early.
const RELAY_WAITING: usize = 64;
/// Held-back sizes in a row that the peer still lacked once they ripened, after which a live
/// stream relays that origin to it at once: the peer is cut off from the origin, and this node
/// is one of the ways it gets its entries.
const FEED_AFTER: u32 = 3;
/// While relaying at once, how often the next new size is held back again, to see whether the
/// peer has found its own way (its link to the origin back): then holding back resumes. Each
/// probe costs a cut-off peer one batch the holdback late; a healed one takes at most this long
/// of copies.
const FEED_PROBE_EVERY: Duration = Duration::from_secs(2);

/// What the operator sees of one peer.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub address: String,
    pub connected: bool,
    pub last_contact_ms: i64,
    pub last_error: String,
    pub round_trip_ms: u32,
}

/// What the sync side shares with the gRPC adapters: the state of every configured peer (for
/// Operator.Status), the limits served streams run under, and what each peer is known to hold.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: Mutex<BTreeMap<String, PeerState>>,
    limits: SyncLimits,
    /// peer → origin → the size of the newest checkpoint of `origin` the peer sent this node,
    /// and when: a node sends only checkpoints whose entries it holds, so the peer holds that
    /// many (what a stream serving it need not relay).
    holds: Mutex<BTreeMap<String, Holds>>,
}

/// Of one peer: origin → (entries held, when that was learned).
type Holds = BTreeMap<String, (u64, Instant)>;

impl PeerTable {
    pub fn new(limits: SyncLimits) -> Self {
        Self {
            peers: Mutex::default(),
            limits,
            holds: Mutex::default(),
        }
    }

    /// Notes that `peer` sent a checkpoint of `origin` at `size`, so holds that many entries.
    fn note_holds(&self, peer: &str, origin: &str, size: u64) {
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        let held = (size, Instant::now());
        match holds
            .get_mut(peer)
            .and_then(|origins| origins.get_mut(origin))
        {
            Some(known) => *known = held,
            None => {
                holds
                    .entry(peer.to_owned())
                    .or_default()
                    .insert(origin.to_owned(), held);
            }
        }
    }

    /// How many of `origin`'s entries `peer` is known to hold from a checkpoint it sent since
    /// `since` (0 if none): one sent before (by a process of the peer since restarted from an
    /// older copy, say) says nothing.
    fn holds(&self, peer: &str, origin: &str, since: Instant) -> u64 {
        let holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        match holds.get(peer).and_then(|origins| origins.get(origin)) {
            Some(&(size, at)) if at >= since => size,
            _ => 0,
        }
    }

    pub fn limits(&self) -> &SyncLimits {
        &self.limits
    }

    pub fn snapshot(&self) -> BTreeMap<String, PeerState> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, peer: &str, f: impl FnOnce(&mut PeerState)) {
        let mut table = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        f(table.entry(peer.to_owned()).or_default());
    }
}

/// What bounds a Sync stream, either end (`[limits]`).
#[derive(Debug, Clone)]
pub struct SyncLimits {
    /// Largest frame the pulling side decodes.
    pub max_frame_bytes: usize,
    /// A pulled stream on which nothing arrives this long is redialled.
    pub idle_timeout: Duration,
    /// A served frame the peer does not take within this ends the stream.
    pub send_timeout: Duration,
    /// Entries and bytes of one origin waiting for a checkpoint, per pulled stream.
    pub buffered_entries: usize,
    pub buffered_bytes: usize,
    /// The wait before redialling a peer whose stream brought quarantined entries.
    pub quarantine_backoff_min: Duration,
    pub quarantine_backoff_max: Duration,
    /// How long a live stream holds back new entries of a third origin (neither this node's
    /// nor the peer's) before relaying them: time for the peer's own checkpoint, gossiped on its
    /// stream to this node, to say it has them already — from their origin, in a full mesh — so
    /// that each peer takes each entry once, not once per node that holds it. A peer cut off
    /// from the origin is relayed it at once after a few batches (`FEED_AFTER`).
    pub relay_holdback: Duration,
}

impl Default for SyncLimits {
    fn default() -> Self {
        crate::config::LimitsConfig::default().sync()
    }
}

// ------------------------------------------------------------------------- serving

/// The frames answering one Sync request. Ends when catch-up is done (not live), when the
/// peer goes away, or when `shutdown` turns true.
pub fn serve(
    engine: Arc<Engine>,
    request: pb::SyncRequest,
    peer: String,
    shutdown: watch::Receiver<bool>,
    peers: Arc<PeerTable>,
    conn: ConnCloser,
) -> mpsc::Receiver<Result<pb::SyncFrame, Status>> {
    let (tx, rx) = mpsc::channel(4);
    let span = info_span!("sync_serve", peer = %peer);
    tokio::spawn(
        async move {
            let tx = Sender {
                tx,
                send_timeout: peers.limits().send_timeout,
                conn,
            };
            if let Err(e) = serve_frames(&engine, request, &tx, shutdown, &peer, &peers).await {
                debug!(error = %e, "sync stream ended");
                let _ = tx.tx.send(Err(Status::internal(e))).await;
            }
        }
        .instrument(span),
    );
    rx
}

/// Checks a Sync request before anything is served: at most one frontier per member origin.
pub fn check_request(engine: &Engine, request: &pb::SyncRequest) -> Result<(), Status> {
    let members = engine.members().count();
    if request.frontiers.len() > members {
        return Err(Status::invalid_argument(format!(
            "frontiers: {} origins, the consortium has {members}",
            request.frontiers.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, f) in request.frontiers.iter().enumerate() {
        if !seen.insert(f.origin.as_str()) {
            return Err(Status::invalid_argument(format!(
                "frontiers[{i}].origin: {:?} is listed twice",
                f.origin
            )));
        }
    }
    Ok(())
}

/// The served stream's sending end: a frame the peer does not take within `send_timeout`
/// (its HTTP/2 window stays shut: a stalled reader) ends the stream by closing its connection,
/// the only way to free what the stream holds (see [`ConnCloser`]).
struct Sender {
    tx: mpsc::Sender<Result<pb::SyncFrame, Status>>,
    send_timeout: Duration,
    conn: ConnCloser,
}

/// What this node has sent the peer so far, per origin.
#[derive(Debug, Default, Clone)]
struct Sent {
    /// The peer's log size once it has taken everything sent.
    size: u64,
    /// The newest checkpoint note the peer holds or was sent: one that differs (newer, more
    /// cosignatures, or another history — equivocation the peer must see) is sent.
    checkpoint_note: Vec<u8>,
}

/// The new entries of one third origin a live stream holds back
/// ([`SyncLimits::relay_holdback`]), unless the peer has shown it is cut off from the origin
/// ([`FEED_AFTER`]).
#[derive(Debug, Default)]
struct HeldBack {
    /// Log sizes this node reached, oldest first, with when.
    waiting: std::collections::VecDeque<(u64, Instant)>,
    /// The largest size reached at least the holdback ago: what may be relayed.
    ripe: u64,
    /// Ripened sizes in a row the peer still lacked.
    lacked: u32,
    /// Relaying at once until then, when the next new size is held back again as a probe.
    feeding_until: Option<Instant>,
}

impl HeldBack {
    /// What may be relayed at `now` of a log this node holds `size` of, to a peer known to
    /// hold `peer_has` of it: each size held back `holdback`, or none while the peer has
    /// lacked [`FEED_AFTER`] ripened sizes in a row (probing every [`FEED_PROBE_EVERY`]); and
    /// when more may be (None: nothing is waiting).
    fn ripe(
        &mut self,
        size: u64,
        peer_has: u64,
        now: Instant,
        holdback: Duration,
    ) -> (u64, Option<Instant>) {
        if self.feeding_until.is_some_and(|until| now < until) {
            self.waiting.clear();
            self.ripe = self.ripe.max(size);
            return (self.ripe, None);
        }
        let before = self.ripe;
        if self.waiting.back().map_or(self.ripe, |(s, _)| *s) < size {
            if self.waiting.len() == RELAY_WAITING
                && let Some((oldest, _)) = self.waiting.pop_front()
            {
                self.ripe = self.ripe.max(oldest);
            }
            self.waiting.push_back((size, now));
        }
        while let Some(&(reached, at)) = self.waiting.front()
            && at + holdback <= now
        {
            self.ripe = self.ripe.max(reached);
            self.waiting.pop_front();
        }
        if self.ripe > before {
            // Held back long enough for the peer to show it had them from elsewhere.
            if peer_has < self.ripe {
                self.lacked = self.lacked.saturating_add(1);
            } else {
                self.lacked = 0;
            }
            self.feeding_until = (self.lacked >= FEED_AFTER).then(|| now + FEED_PROBE_EVERY);
            if self.feeding_until.is_some() {
                self.waiting.clear();
                self.ripe = size;
            }
        }
        let next = self.waiting.front().map(|(_, at)| *at + holdback);
        (self.ripe, next)
    }
}

async fn serve_frames(
    engine: &Engine,
    request: pb::SyncRequest,
    tx: &Sender,
    mut shutdown: watch::Receiver<bool>,
    peer: &str,
    peers: &PeerTable,
) -> Result<(), String> {
    let frame_entries = match request.max_batch as usize {
        0 => DEFAULT_FRAME_ENTRIES,
        n => n.min(DEFAULT_FRAME_ENTRIES),
    };
    let mut sent: BTreeMap<String, Sent> = BTreeMap::new();
    for f in &request.frontiers {
        let mut s = Sent {
            size: f.size,
            ..Sent::default()
        };
        if let Some(c) = &f.checkpoint {
            // Gossip runs both ways: the peer's checkpoint is held against this node's tree
            // too (one it cannot check yet stays pending until its entries arrive).
            if engine.member(&f.origin).is_some() {
                engine
                    .receive_checkpoint(&f.origin, &c.note, &SentProof::default(), peer)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            s.checkpoint_note = c.note.clone();
        }
        sent.insert(f.origin.clone(), s);
    }
    // A peer is sent its own log's entries only up to what this node held of it when the
    // stream opened (what a peer restored from an old copy of its data dir gets back): past
    // that, all this node holds of it came from the peer itself, and sending it back cost the
    // origin a frame, a lock and a comparison per peer for every batch it published. Its
    // checkpoints still travel: they are how two copies of one city's data dir are caught.
    let own_upto = engine.origin_state(peer).size;
    // Subscribe before the first pass, so nothing committed during catch-up is missed.
    let mut advanced = engine.subscribe();
    let opened = Instant::now();
    // Past the first pass (catch-up), new entries of third origins are held back.
    let mut caught_up = false;
    let mut held_back: BTreeMap<String, HeldBack> = BTreeMap::new();
    let mut quiet_since = Instant::now();
    loop {
        advanced.borrow_and_update();
        let mut idle = true;
        // When entries held back may next be relayed.
        let mut relay_at: Option<Instant> = None;
        for (origin, state) in engine.origins_held() {
            let s = sent.entry(origin.clone()).or_default();
            // Gossip: the newest checkpoint, whenever it differs from the one the peer holds,
            // whatever its size — a smaller one is how a peer ahead of this node learns that
            // the origin showed this node another history.
            let head = engine
                .stored_checkpoint(&origin)
                .map_err(|e| e.to_string())?;
            if let Some(cp) = head.filter(|cp| cp.note != s.checkpoint_note) {
                if !send_checkpoint(engine, tx, &origin, s.size, &cp).await? {
                    return Ok(());
                }
                s.checkpoint_note = cp.note;
                idle = false;
            }
            // Catch-up: entries only up to a checkpoint the origin signed, each run preceded by
            // that checkpoint, so the peer appends every run as soon as it arrives. A forked
            // origin's entries are not served; its checkpoint still is (above), so every peer
            // can check for itself that the origin signed two histories.
            let mut end = if origin == peer {
                state.size.min(own_upto)
            } else {
                state.size
            };
            // Relaying, live: not what the peer has shown it holds (it sent this node a
            // checkpoint of that size), nor what this node took in less than the holdback ago.
            if caught_up && origin != peer && origin != engine.city {
                s.size = s.size.max(peers.holds(peer, &origin, opened));
                let (ripe, next) = held_back.entry(origin.clone()).or_default().ripe(
                    end,
                    s.size,
                    Instant::now(),
                    peers.limits().relay_holdback,
                );
                end = end.min(ripe);
                relay_at = match (relay_at, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            while s.size < end && !state.forked {
                let next = engine
                    .checkpoints_from(&origin, s.size + 1, 1)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .next()
                    .filter(|cp| cp.size <= end);
                let Some(next) = next else {
                    break; // The rest is not under a signed root yet (an own batch signing).
                };
                if next.note != s.checkpoint_note
                    && !send_checkpoint(engine, tx, &origin, s.size, &next).await?
                {
                    return Ok(());
                }
                while s.size < next.size {
                    // To a peer that takes them, whole blocks as stored; leaves loose where
                    // a block is cut (up to its end, so the next frame can be packed).
                    let mut loose_to = next.size;
                    if request.accept_packed {
                        let run = engine
                            .packed_leaves(
                                &origin,
                                s.size,
                                next.size,
                                frame_entries as u64,
                                FRAME_BYTES,
                            )
                            .map_err(|e| e.to_string())?;
                        match run {
                            PackedRun::Blocks(blocks) => {
                                let n: u64 = blocks.iter().map(|b| u64::from(b.count)).sum();
                                let frame = pb::sync_frame::Frame::Packed(pb::PackedEntries {
                                    origin: origin.clone(),
                                    first_seq: s.size,
                                    blocks: blocks.into_iter().map(wire_block).collect(),
                                });
                                if !send(tx, frame).await {
                                    return Ok(());
                                }
                                s.size += n;
                                continue;
                            }
                            PackedRun::Loose { upto } => loose_to = upto,
                        }
                    }
                    let limit = frame_entries.min((loose_to - s.size) as usize);
                    let mut leaves = engine
                        .leaves(&origin, s.size, limit)
                        .map_err(|e| e.to_string())?;
                    let mut bytes = 0;
                    let fit = leaves
                        .iter()
                        .position(|leaf| {
                            bytes += leaf.len();
                            bytes > FRAME_BYTES
                        })
                        .map_or(leaves.len(), |over| over.max(1));
                    leaves.truncate(fit);
                    if leaves.is_empty() {
                        return Err(format!(
                            "{origin}: no leaf at {} below size {}",
                            s.size, state.size
                        ));
                    }
                    let n = leaves.len() as u64;
                    let frame = pb::sync_frame::Frame::Entries(pb::EntryBatch {
                        origin: origin.clone(),
                        first_seq: s.size,
                        entries: leaves,
                    });
                    if !send(tx, frame).await {
                        return Ok(());
                    }
                    s.size += n;
                }
                idle = false;
            }
        }
        if !request.live {
            let heartbeat = pb::sync_frame::Frame::Heartbeat(pb::Heartbeat {
                sent_at: engine.clock.now_millis(),
            });
            send(tx, heartbeat).await;
            return Ok(());
        }
        caught_up = true;
        if !idle {
            quiet_since = Instant::now();
            continue;
        }
        let relay_due = async {
            match relay_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = advanced.changed() => if changed.is_err() { return Ok(()) },
            () = relay_due => {}
            () = tokio::time::sleep_until((quiet_since + HEARTBEAT).into()) => {
                let heartbeat = pb::sync_frame::Frame::Heartbeat(pb::Heartbeat { sent_at: engine.clock.now_millis() });
                if !send(tx, heartbeat).await {
                    return Ok(());
                }
                quiet_since = Instant::now();
            }
            () = crate::sync::stopped(&mut shutdown) => return Ok(()),
            () = tx.tx.closed() => return Ok(()),
        }
    }
}

fn wire_block(b: WireBlock) -> pb::LeafBlock {
    pb::LeafBlock {
        count: b.count,
        raw_len: b.raw_len,
        zstd: b.zstd,
    }
}

/// Sends a checkpoint of `origin` with a seeded consistency proof from `peer_size`, the size the
/// peer holds, when that is smaller (a checkpoint at or below the peer's size needs none: the
/// peer holds the hashes to check it). False when the peer has gone.
async fn send_checkpoint(
    engine: &Engine,
    tx: &Sender,
    origin: &str,
    peer_size: u64,
    cp: &credex_store::StoredNote,
) -> Result<bool, String> {
    let from_size = if peer_size < cp.size { peer_size } else { 0 };
    let proof = engine
        .consistency_path(origin, from_size, cp.size, true)
        .map_err(|e| e.to_string())?;
    let frame = pb::sync_frame::Frame::Checkpoint(pb::CheckpointFrame {
        origin: origin.to_owned(),
        checkpoint: Some(pb::SignedCheckpoint {
            note: cp.note.clone(),
        }),
        from_size,
        consistency_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
    });
    Ok(send(tx, frame).await)
}

/// Resolves once `shutdown` turns true (or its sender is gone). Holds no borrow of the
/// channel across an await, so futures using it stay `Send`.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sends a frame; false when the peer has gone or has not taken it within the send deadline.
async fn send(tx: &Sender, frame: pb::sync_frame::Frame) -> bool {
    let frame = Ok(pb::SyncFrame { frame: Some(frame) });
    match tokio::time::timeout(tx.send_timeout, tx.tx.send(frame)).await {
        Ok(sent) => sent.is_ok(),
        Err(_) => {
            warn!(after = ?tx.send_timeout, "peer took no frame within the send deadline; closing its connection");
            tx.conn.close();
            false
        }
    }
}

// ------------------------------------------------------------------------- pulling

/// How to reach one peer.
#[derive(Debug, Clone)]
pub struct PeerLink {
    pub city: String,
    pub address: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub limits: SyncLimits,
}

/// Why a pulled stream ended.
#[derive(Debug)]
struct Ended {
    error: String,
    /// The stream brought entries that were quarantined: back off longer before redialling.
    quarantined: bool,
}

impl From<String> for Ended {
    fn from(error: String) -> Self {
        Ended {
            error,
            quarantined: false,
        }
    }
}

/// Up to half of `wait` added at random, so nodes backing off from one peer do not redial it in
/// step.
fn jittered(wait: Duration) -> Duration {
    use rand_core::RngCore;
    let half = u64::try_from(wait.as_millis() / 2).unwrap_or(u64::MAX);
    let extra = match half {
        0 => 0,
        half => rand_core::OsRng.next_u64() % (half + 1),
    };
    wait + Duration::from_millis(extra)
}

/// Keeps a live Sync stream to one peer until `shutdown` turns true.
pub async fn run_peer(
    engine: Arc<Engine>,
    link: PeerLink,
    peers: Arc<PeerTable>,
    mut shutdown: watch::Receiver<bool>,
) {
    let span = info_span!("sync_pull", peer = %link.city);
    async move {
        peers.update(&link.city, |p| p.address = link.address.clone());
        let mut backoff = link.backoff_min;
        let mut quarantine_backoff = link.limits.quarantine_backoff_min;
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Nothing a peer sends could be stored while the store refuses writes for lack
            // of space: wait for space instead of dialling (the refusal stands as the peer's
            // last error), and dial at once when it returns.
            if let Some(full) = engine.storage_full() {
                warn!(error = %full, "not dialling until the disk has room");
                peers.update(&link.city, |p| p.last_error = full);
                engine.wait_for_space(&mut shutdown).await;
                backoff = link.backoff_min;
                continue;
            }
            let started = Instant::now();
            let result = tokio::select! {
                r = pull(&engine, &link, &peers) => r,
                () = crate::sync::stopped(&mut shutdown) => return,
            };
            peers.update(&link.city, |p| p.connected = false);
            engine.metrics().set_peer_connected(&link.city, false);
            let ended = match result {
                Ok(()) => Ended::from("stream closed by peer".to_owned()),
                Err(e) => e,
            };
            // A stream that lived a while was healthy: start the backoff over.
            if started.elapsed() > link.backoff_max {
                backoff = link.backoff_min;
            }
            let wait = if ended.quarantined {
                let wait = jittered(quarantine_backoff);
                quarantine_backoff =
                    (quarantine_backoff * 2).min(link.limits.quarantine_backoff_max);
                wait
            } else {
                if started.elapsed() > link.limits.quarantine_backoff_max {
                    quarantine_backoff = link.limits.quarantine_backoff_min;
                }
                jittered(backoff)
            };
            let error = if ended.quarantined {
                format!("{}; next attempt in {} s", ended.error, wait.as_secs())
            } else {
                ended.error
            };
            warn!(error = %error, quarantined = ended.quarantined, ?wait, "sync stream down");
            peers.update(&link.city, |p| p.last_error = error.clone());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                () = crate::sync::stopped(&mut shutdown) => return,
            }
            backoff = (backoff * 2).min(link.backoff_max);
        }
    }
    .instrument(span)
    .await
}

/// One stream's life: connect, send the frontiers, take in frames until the stream ends.
async fn pull(engine: &Arc<Engine>, link: &PeerLink, peers: &PeerTable) -> Result<(), Ended> {
    let limits = &link.limits;
    let idle = limits.idle_timeout;
    let server =
        Identity::new(&engine.consortium, &link.city, Role::Node).map_err(|e| e.to_string())?;
    let channel = tls::connect(&link.address, &server, link.tls.clone())
        .await
        .map_err(|e| tls::error_chain(&e))?;
    let mut client = ExchangeClient::new(channel)
        .max_decoding_message_size(limits.max_frame_bytes)
        .max_encoding_message_size(limits.max_frame_bytes);
    let request = sync_request(engine).map_err(|e| e.to_string())?;
    let opened = Instant::now();
    let mut frames = tokio::time::timeout(idle, client.sync(request))
        .await
        .map_err(|_| {
            format!(
                "no answer to the sync request within {} s",
                idle.as_secs_f32()
            )
        })?
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let rtt = opened.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
    let now = engine.clock.now_millis();
    peers.update(&link.city, |p| {
        p.connected = true;
        p.round_trip_ms = rtt;
        p.last_contact_ms = now;
        p.last_error.clear();
    });
    engine.metrics().set_peer_connected(&link.city, true);
    info!(rtt_ms = rtt, "sync stream up");

    // Stage two: in order, checkpoints to the engine and entries into each origin's inbox;
    // whenever no more frames have arrived (or an inbox is full), commit what signed roots
    // cover. Nothing is verified per entry here: the signed root authenticates the run, and
    // the indexer checks each entry behind the append (engine/index.rs).
    let (staged_tx, mut staged_rx) = mpsc::channel::<Staged>(PIPELINE_DEPTH);
    let committer = {
        let engine = engine.clone();
        let from = link.city.clone();
        let limits = limits.clone();
        async move {
            let mut inboxes: BTreeMap<String, Inbox> = BTreeMap::new();
            while let Some(first) = staged_rx.recv().await {
                let mut next = Some(first);
                while let Some(staged) = next.take() {
                    match staged {
                        Staged::Entries(run) => {
                            let origin = run.origin.clone();
                            let inbox = inboxes
                                .entry(origin.clone())
                                .or_insert_with(|| Inbox::new(&origin, run.first_seq, Vec::new()));
                            if let Err(stray) = inbox.extend(run) {
                                return Err(Ended::from(format!(
                                    "{origin}: entries from seq {} do not continue the run ending at {}; resyncing",
                                    stray.first_seq,
                                    inbox.end()
                                )));
                            }
                            // Commit at a group's size, or when what waits is at its bound
                            // (commit ends the stream if no checkpoint takes it below).
                            let bytes: usize = inbox.leaves.iter().map(Vec::len).sum();
                            if inbox.leaves.len() >= MAX_COMMIT_ENTRIES.min(limits.buffered_entries)
                                || bytes > limits.buffered_bytes
                            {
                                commit(&engine, inbox, &from, &limits).await?;
                            }
                        }
                        Staged::Checkpoint(origin, note, proof) => {
                            let outcome = engine
                                .receive_checkpoint(&origin, &note, &proof, &from)
                                .await
                                .map_err(|e| e.to_string())?;
                            // One consistent with this node's tree: the peer holds its entries,
                            // and the stream serving it relays it none of them.
                            if matches!(
                                outcome,
                                CheckpointOutcome::Stored
                                    | CheckpointOutcome::Pending
                                    | CheckpointOutcome::Known
                            ) && let Ok(cp) = credex_core::note::peek_checkpoint(&note)
                            {
                                peers.note_holds(&from, &origin, cp.size);
                            }
                        }
                    }
                    // Group commit: take in whatever has already arrived behind this one.
                    next = staged_rx.try_recv().ok();
                }
                commit_all(&engine, &mut inboxes, &from, &limits).await?;
            }
            Ok::<(), Ended>(())
        }
    };
    // Stage one: read frames.
    let reader = async {
        loop {
            let Ok(next) = tokio::time::timeout(idle, frames.next()).await else {
                return Err(Ended::from(format!(
                    "nothing from the peer within {} s; redialling",
                    idle.as_secs_f32()
                )));
            };
            let Some(frame) = next else { break };
            let frame = frame.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
            let now = engine.clock.now_millis();
            peers.update(&link.city, |p| p.last_contact_ms = now);
            let staged = match frame.frame {
                Some(pb::sync_frame::Frame::Entries(batch)) => {
                    Staged::Entries(Inbox::new(&batch.origin, batch.first_seq, batch.entries))
                }
                Some(pb::sync_frame::Frame::Packed(run)) => {
                    // Decompressing a frame takes a fraction of a millisecond: off the runtime.
                    let max = limits.max_frame_bytes;
                    let unpacked = tokio::task::spawn_blocking(move || unpack(run, max))
                        .await
                        .map_err(|e| format!("unpacking task: {e}"))??;
                    Staged::Entries(unpacked)
                }
                Some(pb::sync_frame::Frame::Checkpoint(cp)) => {
                    let note = cp.checkpoint.map(|c| c.note).unwrap_or_default();
                    let proof = SentProof {
                        from_size: cp.from_size,
                        hashes: cp.consistency_proof,
                    };
                    Staged::Checkpoint(cp.origin, note, proof)
                }
                Some(pb::sync_frame::Frame::Heartbeat(_)) | None => continue,
            };
            if staged_tx.send(staged).await.is_err() {
                break;
            }
        }
        drop(staged_tx);
        Ok::<(), Ended>(())
    };
    tokio::pin!(reader, committer);
    tokio::select! {
        // The committer only ends first on an error (else it waits for the reader's end).
        commit = &mut committer => commit,
        read = &mut reader => {
            read?;
            committer.await
        }
    }
}

/// The leaves of a `PackedEntries` frame, its blocks together bounded by `max` bytes
/// decompressed before any is decompressed (a few KiB of zstd can claim GiB). What is inside is
/// authenticated like any entries, by the roots their origin signed.
fn unpack(run: pb::PackedEntries, max: usize) -> Result<Inbox, String> {
    let at = format!("{}: entries from seq {}", run.origin, run.first_seq);
    let raw: u64 = run.blocks.iter().map(|b| u64::from(b.raw_len)).sum();
    if raw > max as u64 {
        return Err(format!(
            "{at}: {} leaf blocks of {raw} bytes decompressed, over the frame limit of {max} \
             (limits.max_request_bytes)",
            run.blocks.len()
        ));
    }
    let blocks = run
        .blocks
        .into_iter()
        .map(|b| {
            let wire = WireBlock {
                count: b.count,
                raw_len: b.raw_len,
                zstd: b.zstd,
            };
            PackedBlock::unpack(wire, max).map_err(|e| format!("{at}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Inbox::packed(&run.origin, run.first_seq, blocks))
}

enum Staged {
    Entries(Inbox),
    Checkpoint(String, Vec<u8>, SentProof),
}

/// Commits what signed roots cover of every inbox.
async fn commit_all(
    engine: &Arc<Engine>,
    inboxes: &mut BTreeMap<String, Inbox>,
    from: &str,
    limits: &SyncLimits,
) -> Result<(), Ended> {
    for inbox in inboxes.values_mut().filter(|i| !i.leaves.is_empty()) {
        commit(engine, inbox, from, limits).await?;
    }
    Ok(())
}

/// Commits what signed roots cover of one inbox; an error ends the stream (which reconnects
/// and asks again from the local frontier).
async fn commit(
    engine: &Arc<Engine>,
    inbox: &mut Inbox,
    from: &str,
    limits: &SyncLimits,
) -> Result<(), Ended> {
    let origin = inbox.origin.clone();
    let outcome = engine
        .commit(inbox, from)
        .await
        .map_err(|e| e.to_string())?;
    if outcome.quarantined > 0 {
        return Err(Ended {
            error: format!(
                "{origin}: {} entries from this peer were quarantined{}",
                outcome.quarantined,
                if outcome.unsigned {
                    " (they do not give the root their origin signed)"
                } else {
                    ""
                }
            ),
            quarantined: true,
        });
    }
    if outcome.gap {
        return Err(Ended::from(format!(
            "{origin}: entries ahead of the local log; resyncing"
        )));
    }
    if outcome.unsigned {
        return Err(Ended::from(format!(
            "{origin}: entries that do not give the root their origin signed; resyncing"
        )));
    }
    let bytes: usize = inbox.leaves.iter().map(Vec::len).sum();
    if inbox.leaves.len() > limits.buffered_entries || bytes > limits.buffered_bytes {
        return Err(Ended::from(format!(
            "{origin}: {} entries ({bytes} bytes) and no checkpoint of the origin covers them \
             (limits.sync_buffered_entries, limits.sync_buffered_bytes); resyncing",
            inbox.leaves.len()
        )));
    }
    Ok(())
}

/// This node's frontier for every member origin.
pub fn sync_request(engine: &Engine) -> Result<pb::SyncRequest, credex_store::StoreError> {
    let mut frontiers = Vec::new();
    for member in engine.members() {
        let state = engine.origin_state(&member.city);
        let checkpoint = engine.stored_checkpoint(&member.city)?;
        frontiers.push(pb::OriginFrontier {
            origin: member.city.clone(),
            size: state.size,
            root: if state.size == 0 {
                Vec::new()
            } else {
                state.root.0.to_vec()
            },
            checkpoint: checkpoint.map(|c| pb::SignedCheckpoint { note: c.note }),
            forked: state.forked,
        });
    }
    Ok(pb::SyncRequest {
        frontiers,
        live: true,
        max_batch: DEFAULT_FRAME_ENTRIES as u32,
        accept_packed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLDBACK: Duration = Duration::from_millis(250);

    #[test]
    fn new_entries_of_a_third_origin_may_be_relayed_once_held_back_long_enough() {
        let mut held = HeldBack::default();
        let t0 = Instant::now();
        let t1 = t0 + HOLDBACK / 2;
        assert_eq!(held.ripe(10, 0, t0, HOLDBACK), (0, Some(t0 + HOLDBACK)));
        assert_eq!(held.ripe(20, 0, t1, HOLDBACK), (0, Some(t0 + HOLDBACK)));
        assert_eq!(
            held.ripe(20, 0, t0 + HOLDBACK, HOLDBACK),
            (10, Some(t1 + HOLDBACK)),
            "the first size is ripe, the second still waits"
        );
        assert_eq!(held.ripe(20, 0, t1 + HOLDBACK, HOLDBACK), (20, None));
        assert_eq!(
            held.ripe(20, 0, t1 + 9 * HOLDBACK, HOLDBACK),
            (20, None),
            "nothing new"
        );
    }

    #[test]
    fn an_origin_growing_without_pause_has_its_oldest_held_back_size_relayed_early() {
        let mut held = HeldBack::default();
        let t0 = Instant::now();
        for size in 1..=RELAY_WAITING as u64 {
            assert_eq!(held.ripe(size, 0, t0, HOLDBACK).0, 0);
        }
        assert_eq!(held.ripe(RELAY_WAITING as u64 + 1, 0, t0, HOLDBACK).0, 1);
        assert_eq!(held.waiting.len(), RELAY_WAITING);
    }

    #[test]
    fn a_peer_that_lacked_ripened_sizes_in_a_row_is_relayed_at_once_and_probed_now_and_then() {
        let mut held = HeldBack::default();
        let mut t = Instant::now();
        // Three sizes, each held back and still lacking at the peer once ripe.
        for size in [10, 20, 30] {
            assert_eq!(
                held.ripe(size, size - 10, t, HOLDBACK).0,
                size - 10,
                "held back"
            );
            t += HOLDBACK;
            assert_eq!(held.ripe(size, size - 10, t, HOLDBACK).0, size);
        }
        // Cut off from the origin: relayed at once.
        assert_eq!(held.ripe(40, 30, t, HOLDBACK), (40, None));
        assert_eq!(
            held.ripe(50, 40, t + FEED_PROBE_EVERY / 2, HOLDBACK),
            (50, None)
        );
        // The probe: the next new size is held back again…
        let probe = t + FEED_PROBE_EVERY;
        assert_eq!(
            held.ripe(60, 50, probe, HOLDBACK),
            (50, Some(probe + HOLDBACK))
        );
        // …and the peer shows it had it from elsewhere: holding back resumes.
        assert_eq!(held.ripe(60, 60, probe + HOLDBACK, HOLDBACK), (60, None));
        assert_eq!(
            held.ripe(70, 60, probe + HOLDBACK, HOLDBACK).0,
            60,
            "held back again"
        );
    }

    #[test]
    fn a_peer_that_had_one_ripened_size_from_elsewhere_is_not_relayed_at_once() {
        let mut held = HeldBack::default();
        let mut t = Instant::now();
        // Lacking, lacking, had it (its own link was slow once), lacking: never three in a row.
        for (size, peer_has) in [(10, 0), (20, 10), (30, 30), (40, 30)] {
            held.ripe(size, peer_has, t, HOLDBACK);
            t += HOLDBACK;
            held.ripe(size, peer_has, t, HOLDBACK);
        }
        assert_eq!(held.ripe(50, 40, t, HOLDBACK).0, 40, "held back");
    }

    /// A live stream served to "hefei" by Changsha's engine, which holds Wuhan's log (a third
    /// origin to this stream), relaying at once (no holdback): Wuhan's entries the peer has
    /// shown it holds are not sent, the rest are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_stream_relays_a_third_origin_only_what_the_peer_has_not_shown_it_holds() {
        use crate::engine::harness::{
            PEER, company, dishonest_debtor, receive_from_peer, test_engine,
        };
        use credex_core::date::Clock;
        let test = test_engine(
            "test",
            credex_core::rules::Rules::default(),
            credex_core::date::FixedClock::at_date(
                credex_core::date::parse_date("2026-05-20").expect("date"),
            ),
        );
        let (engine, key) = (test.engine.clone(), &test.peer_key);
        let records: Vec<pb::CreditRecord> = (0..6)
            .map(|i| dishonest_debtor(&format!("WH-{i}"), company("91420100MA4L00001"), "420100"))
            .collect();
        let now = test.clock.now_millis();
        receive_from_peer(&engine, key, records[..2].to_vec(), now).await;
        let peers = Arc::new(PeerTable::new(SyncLimits {
            relay_holdback: Duration::ZERO,
            ..SyncLimits::default()
        }));
        let (_stop, shutdown) = watch::channel(false);
        let request = pb::SyncRequest {
            frontiers: Vec::new(),
            live: true,
            max_batch: 0,
            accept_packed: false,
        };
        let mut frames = serve(
            engine.clone(),
            request,
            "hefei".to_owned(),
            shutdown,
            peers.clone(),
            ConnCloser::default(),
        );
        // The next run of Wuhan's entries the stream sends: (first seq, count).
        let mut next_run = async || loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), frames.recv())
                .await
                .expect("a frame within a minute")
                .expect("the stream is open")
                .expect("a frame, not an error");
            if let Some(pb::sync_frame::Frame::Entries(batch)) = frame.frame
                && batch.origin == PEER
            {
                return (batch.first_seq, batch.entries.len());
            }
        };
        assert_eq!(next_run().await, (0, 2), "catch-up: what the peer lacks");

        // Hefei's own stream to this node brought a checkpoint of Wuhan's at 4: the two entries
        // that take Wuhan's log to 4 are not relayed to it; the two after are.
        peers.note_holds("hefei", PEER, 4);
        receive_from_peer(&engine, key, records[..4].to_vec(), now).await;
        receive_from_peer(&engine, key, records.clone(), now).await;
        assert_eq!(next_run().await, (4, 2));
    }

    #[test]
    fn a_peer_holds_what_it_sent_a_checkpoint_of_since_a_stream_to_it_opened() {
        let peers = PeerTable::new(SyncLimits::default());
        let before = Instant::now();
        peers.note_holds("hefei", "changsha", 7);
        assert_eq!(peers.holds("hefei", "changsha", before), 7);
        assert_eq!(peers.holds("hefei", "wuhan", before), 0);
        assert_eq!(peers.holds("wuhan", "changsha", before), 0);
        // A stream opened after the checkpoint came: its peer may have restarted since, from
        // an older copy of its data dir.
        let opened = Instant::now() + Duration::from_nanos(1);
        assert_eq!(peers.holds("hefei", "changsha", opened), 0);
    }
}
