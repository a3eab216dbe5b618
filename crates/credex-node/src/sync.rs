//! Exchange.Sync, both ends (DESIGN.md "Protocol").
//!
//! - [`serve`] answers a peer's Sync request: for every origin this node holds where the peer
//!   is behind, the newest checkpoint (with a consistency proof from the peer's size) and then
//!   the entries in batches; in live mode it then waits for new commits and pushes them, with
//!   a heartbeat when idle. Every origin is served, not only this city's (relaying).
//! - [`run_peer`] keeps one outbound stream to one peer, reconnecting with exponential
//!   backoff, and feeds what arrives to the engine through a two-stage pipeline: batches are
//!   verified on a blocking thread (all cores) while the previous batch commits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credex_core::merkle;
use credex_core::pb;
use credex_core::pb::exchange_client::ExchangeClient;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tonic::Status;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::engine::Engine;
use crate::engine::ingest::Prepared;
use crate::tls::{self, Identity, Role};

/// Entries per EntryBatch frame unless the receiver asks for fewer.
pub const DEFAULT_FRAME_ENTRIES: usize = 1024;
/// An idle live stream sends a heartbeat this often, so the receiver sees the peer is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Largest gRPC message a sync frame may be: a full frame of maximal leaves.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Prepared batches waiting to commit: verification runs this far ahead of the writer.
const PIPELINE_DEPTH: usize = 4;
/// Most entries one receive-path commit groups (one atomic write, one flush).
const MAX_COMMIT_ENTRIES: usize = 8192;

/// What the operator sees of one peer.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub address: String,
    pub connected: bool,
    pub last_contact_ms: i64,
    pub last_error: String,
    pub round_trip_ms: u32,
}

/// The state of every configured peer, shared between the sync loops and Operator.Status.
#[derive(Debug, Default)]
pub struct PeerTable(Mutex<BTreeMap<String, PeerState>>);

impl PeerTable {
    pub fn snapshot(&self) -> BTreeMap<String, PeerState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, peer: &str, f: impl FnOnce(&mut PeerState)) {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(table.entry(peer.to_owned()).or_default());
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
) -> mpsc::Receiver<Result<pb::SyncFrame, Status>> {
    let (tx, rx) = mpsc::channel(4);
    let span = info_span!("sync_serve", peer = %peer);
    tokio::spawn(
        async move {
            if let Err(e) = serve_frames(&engine, request, &tx, shutdown).await {
                debug!(error = %e, "sync stream ended");
                let _ = tx.send(Err(Status::internal(e))).await;
            }
        }
        .instrument(span),
    );
    rx
}

/// What this node has sent the peer so far, per origin.
#[derive(Debug, Default, Clone)]
struct Sent {
    size: u64,
    checkpoint_size: u64,
    /// The note at `checkpoint_size` the peer holds: one that differs (more cosignatures, or
    /// another root — equivocation the peer must see) is sent.
    checkpoint_note: Vec<u8>,
}

async fn serve_frames(
    engine: &Engine,
    request: pb::SyncRequest,
    tx: &mpsc::Sender<Result<pb::SyncFrame, Status>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let frame_entries = match request.max_batch as usize {
        0 => DEFAULT_FRAME_ENTRIES,
        n => n.min(DEFAULT_FRAME_ENTRIES),
    };
    let mut sent: BTreeMap<String, Sent> = BTreeMap::new();
    for f in &request.frontiers {
        let (checkpoint_size, checkpoint_note) = f
            .checkpoint
            .as_ref()
            .and_then(|c| engine.verify_note(&f.origin, &c.note).ok())
            .map_or((0, Vec::new()), |s| (s.checkpoint.size, s.note));
        sent.insert(
            f.origin.clone(),
            Sent {
                size: f.size,
                checkpoint_size,
                checkpoint_note,
            },
        );
    }
    // Subscribe before the first pass, so nothing committed during catch-up is missed.
    let mut advanced = engine.subscribe();
    loop {
        advanced.borrow_and_update();
        let mut idle = true;
        for (origin, state) in engine.store.origins() {
            let s = sent.entry(origin.clone()).or_default();
            let checkpoint = engine
                .store
                .checkpoint(&origin)
                .map_err(|e| e.to_string())?;
            let newer = |cp: &credex_store::StoredNote| {
                cp.size > s.checkpoint_size
                    || (cp.size == s.checkpoint_size && cp.note != s.checkpoint_note)
            };
            if let Some(cp) = checkpoint.filter(newer) {
                let from_size = if s.size <= cp.size { s.size } else { 0 };
                let proof = merkle::consistency_proof(
                    from_size,
                    cp.size,
                    &engine.store.hash_reader(&origin),
                )
                .map_err(|e| format!("consistency proof for {origin}: {e}"))?;
                let size = cp.size;
                let frame = pb::sync_frame::Frame::Checkpoint(pb::CheckpointFrame {
                    origin: origin.clone(),
                    checkpoint: Some(pb::SignedCheckpoint {
                        note: cp.note.clone(),
                    }),
                    from_size,
                    consistency_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
                });
                if !send(tx, frame).await {
                    return Ok(());
                }
                (s.checkpoint_size, s.checkpoint_note) = (size, cp.note);
                idle = false;
            }
            while s.size < state.size {
                let leaves = engine
                    .store
                    .leaves(&origin, s.size, frame_entries)
                    .map_err(|e| e.to_string())?;
                if leaves.is_empty() {
                    break;
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
        if !idle {
            continue;
        }
        tokio::select! {
            changed = advanced.changed() => if changed.is_err() { return Ok(()) },
            _ = tokio::time::sleep(HEARTBEAT) => {
                let heartbeat = pb::sync_frame::Frame::Heartbeat(pb::Heartbeat { sent_at: engine.clock.now_millis() });
                if !send(tx, heartbeat).await {
                    return Ok(());
                }
            }
            () = crate::sync::stopped(&mut shutdown) => return Ok(()),
            () = tx.closed() => return Ok(()),
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone). Holds no borrow of the
/// channel across an await, so futures using it stay `Send`.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sends a frame; false when the peer has gone.
async fn send(
    tx: &mpsc::Sender<Result<pb::SyncFrame, Status>>,
    frame: pb::sync_frame::Frame,
) -> bool {
    tx.send(Ok(pb::SyncFrame { frame: Some(frame) }))
        .await
        .is_ok()
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
        loop {
            if *shutdown.borrow() {
                return;
            }
            let started = Instant::now();
            let result = tokio::select! {
                r = pull(&engine, &link, &peers) => r,
                () = crate::sync::stopped(&mut shutdown) => return,
            };
            peers.update(&link.city, |p| p.connected = false);
            engine.metrics.set_peer_connected(&link.city, false);
            let error = match result {
                Ok(()) => "stream closed by peer".to_owned(),
                Err(e) => e,
            };
            warn!(error = %error, "sync stream down");
            peers.update(&link.city, |p| p.last_error = error.clone());
            // A stream that lived a while was healthy: start the backoff over.
            if started.elapsed() > link.backoff_max {
                backoff = link.backoff_min;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                () = crate::sync::stopped(&mut shutdown) => return,
            }
            backoff = (backoff * 2).min(link.backoff_max);
        }
    }
    .instrument(span)
    .await
}

/// One stream's life: connect, send the frontiers, take in frames until the stream ends.
async fn pull(engine: &Arc<Engine>, link: &PeerLink, peers: &PeerTable) -> Result<(), String> {
    let server =
        Identity::new(&engine.consortium, &link.city, Role::Node).map_err(|e| e.to_string())?;
    let channel = tls::connect(&link.address, &server, link.tls.clone())
        .await
        .map_err(|e| tls::error_chain(&e))?;
    let mut client = ExchangeClient::new(channel)
        .max_decoding_message_size(MAX_FRAME_BYTES)
        .max_encoding_message_size(MAX_FRAME_BYTES);
    let request = sync_request(engine).map_err(|e| e.to_string())?;
    let opened = Instant::now();
    let mut frames = client
        .sync(request)
        .await
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
    engine.metrics.set_peer_connected(&link.city, true);
    info!(rtt_ms = rtt, "sync stream up");

    // Stage two: commit prepared batches in order.
    let (prepared_tx, mut prepared_rx) = mpsc::channel::<Staged>(PIPELINE_DEPTH);
    let committer = {
        let engine = engine.clone();
        let from = link.city.clone();
        async move {
            let mut carry: Option<Staged> = None;
            loop {
                let staged = match carry.take() {
                    Some(s) => s,
                    None => match prepared_rx.recv().await {
                        Some(s) => s,
                        None => break,
                    },
                };
                match staged {
                    Staged::Entries(handle) => {
                        let mut prepared = handle
                            .await
                            .map_err(|e| format!("verification task: {e}"))?;
                        // Group commit: batches of the same origin already verified behind
                        // this one go into the same atomic write and flush.
                        while prepared.items.len() < MAX_COMMIT_ENTRIES {
                            match prepared_rx.try_recv() {
                                Ok(Staged::Entries(next)) if next.is_finished() => {
                                    let next = next
                                        .await
                                        .map_err(|e| format!("verification task: {e}"))?;
                                    let contiguous = next.origin == prepared.origin
                                        && next.first_seq
                                            == prepared.first_seq + prepared.items.len() as u64;
                                    if contiguous {
                                        prepared.items.extend(next.items);
                                    } else {
                                        carry = Some(Staged::Ready(next));
                                        break;
                                    }
                                }
                                Ok(other) => {
                                    carry = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        commit(&engine, prepared, &from).await?;
                    }
                    Staged::Ready(prepared) => commit(&engine, prepared, &from).await?,
                    Staged::Checkpoint(origin, note) => {
                        engine
                            .receive_checkpoint(&origin, &note, &from)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            Ok::<(), String>(())
        }
    };
    // Stage one: read frames and start verification.
    let reader = async {
        while let Some(frame) = frames.next().await {
            let frame = frame.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
            let now = engine.clock.now_millis();
            peers.update(&link.city, |p| p.last_contact_ms = now);
            let staged = match frame.frame {
                Some(pb::sync_frame::Frame::Entries(batch)) => {
                    let engine = engine.clone();
                    Staged::Entries(tokio::task::spawn_blocking(move || {
                        engine.prepare(&batch.origin, batch.first_seq, batch.entries)
                    }))
                }
                Some(pb::sync_frame::Frame::Checkpoint(cp)) => {
                    let note = cp.checkpoint.map(|c| c.note).unwrap_or_default();
                    Staged::Checkpoint(cp.origin, note)
                }
                Some(pb::sync_frame::Frame::Heartbeat(_)) | None => continue,
            };
            if prepared_tx.send(staged).await.is_err() {
                break;
            }
        }
        drop(prepared_tx);
        Ok::<(), String>(())
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

enum Staged {
    Entries(tokio::task::JoinHandle<Prepared>),
    /// Verified already (taken out of the queue while grouping a commit).
    Ready(Prepared),
    Checkpoint(String, Vec<u8>),
}

async fn commit(engine: &Engine, prepared: Prepared, from: &str) -> Result<(), String> {
    let outcome = engine
        .commit(prepared, from)
        .await
        .map_err(|e| e.to_string())?;
    if outcome.gap {
        // Entries ahead of our log: reconnect, which asks again from our frontier.
        return Err("batch ahead of the local log; resyncing".to_owned());
    }
    Ok(())
}

/// This node's frontier for every member origin.
pub fn sync_request(engine: &Engine) -> Result<pb::SyncRequest, credex_store::StoreError> {
    let mut frontiers = Vec::new();
    for member in engine.members() {
        let state = engine.store.origin_state(&member.city);
        let checkpoint = engine.store.checkpoint(&member.city)?;
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
    })
}
