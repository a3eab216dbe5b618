//! Collecting witnesses' cosignatures for this city's checkpoints (DESIGN.md "Witness").
//!
//! After each new checkpoint of its own log, the node asks every other member's
//! Witness.AddCheckpoint to cosign it — every member, not only its sync peers, so a city that
//! syncs through one relay still reaches quorum — proving consistency from the size that
//! witness last cosigned (learnt from its refusals), and merges the cosignature lines into the
//! stored note. The cosigned note then gossips through Sync like any checkpoint. A checkpoint
//! with two cosignatures is *published*; with every other member's, *final*. While the log is
//! empty the witnesses cosign its checkpoint over no entries, which is not stored: their
//! cosignatures carry their clocks, which the first entry is stamped by.
//!
//! Witnesses are asked concurrently, each request bounded by [`REQUEST_TIMEOUT`], so one
//! stalled witness delays nobody else; a witness that has not cosigned the newest checkpoint
//! is asked again every [`RETRY`], so a checkpoint made during an outage reaches quorum once
//! the witnesses are back, without waiting for the log to grow.
//!
//! When the log does not grow, the witnesses are asked to cosign the newest checkpoint again
//! every [`REFRESH`], so their clocks, which this node judges its own by, stay known.
//!
//! Intermediate checkpoints are skipped: the task always works on the newest, and starts a
//! round at most every [`ROUND_EVERY`], so a steady publisher's witnesses cosign about once a
//! second, not once a batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use credex_core::pb;
use credex_core::pb::witness_client::WitnessClient;
use futures::future::join_all;
use tokio::sync::watch;
use tonic::transport::Channel;
use tracing::{Instrument, debug, info_span, warn};

use crate::engine::Engine;
use crate::sync::{self, PeerLink};
use crate::tls::{self, Identity, Role};

/// Longest wait for one witness's answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often witnesses that have not cosigned the newest checkpoint are asked again.
pub const RETRY: Duration = Duration::from_secs(5);
/// Least time from one round of asking to the next. A witness persists what it cosigns before
/// it answers, and the origin stores the lines and gossips the cosigned note: a round per batch
/// put four fsyncs and three extra checkpoint frames beside every record a steady publisher
/// sent, on the disks and links its entries travel by (`bench propagation` at 20 records/s:
/// p50 12.0 → 9.1 ms with rounds paced). The first checkpoint after a quiet second is asked
/// for at once.
pub const ROUND_EVERY: Duration = Duration::from_secs(1);

/// How long the witnesses go unasked when this city's log does not grow: then they are asked
/// to cosign the same checkpoint again, each cosignature carrying its witness's time now. A
/// node judges its clock by its witnesses' only as learnt within the last day
/// (`engine::publish`), and a city may publish nothing for longer (a weekend, the Spring
/// Festival's week); without this its clock would go unchecked then, and a clock that jumped
/// would move its view's day, lifting or starting sanctions a day early.
pub const REFRESH: Duration = Duration::from_secs(600);
/// How often the task looks whether [`REFRESH`] has passed (by the engine's clock, whose
/// `elapsed` never goes back).
const REFRESH_POLL: Duration = Duration::from_secs(1);

/// One witness: how to reach it and the size it last cosigned, as far as this node knows.
struct WitnessPeer {
    link: PeerLink,
    channel: Option<Channel>,
    cosigned_size: u64,
}

/// Runs until `shutdown` turns true. `peers` holds one link per other member.
pub async fn run(engine: Arc<Engine>, peers: Vec<PeerLink>, mut shutdown: watch::Receiver<bool>) {
    let mut witnesses: Vec<WitnessPeer> = peers
        .into_iter()
        .map(|link| WitnessPeer {
            link,
            channel: None,
            cosigned_size: 0,
        })
        .collect();
    if witnesses.is_empty() {
        return;
    }
    let mut advanced = engine.subscribe();
    let mut done: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_round: Option<tokio::time::Instant> = None;
    // When a witness last answered, or the witnesses were last asked again, by
    // `Clock::elapsed`: witnesses that refuse (this city's log forked, say) are asked again no
    // sooner than REFRESH later, not at every poll.
    let mut fresh_since = engine.clock.elapsed();
    async move {
        loop {
            // Paced: a round comes at most every ROUND_EVERY, and then asks for the newest.
            if let Some(at) = last_round {
                tokio::select! {
                    () = tokio::time::sleep_until(at + ROUND_EVERY) => {}
                    () = sync::stopped(&mut shutdown) => return,
                }
            }
            last_round = Some(tokio::time::Instant::now());
            let checkpoint = match engine.checkpoint_to_cosign() {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "reading own checkpoint");
                    None
                }
            };
            let mut missing = false;
            if let Some(cp) = checkpoint {
                let asked: Vec<_> = witnesses
                    .iter_mut()
                    .filter(|w| done.get(&w.link.city).copied() != Some(cp.size))
                    .map(|w| ask(&engine, w, &cp.note, cp.size))
                    .collect();
                let answers = join_all(asked).await;
                missing = answers.iter().any(Option::is_none);
                let mut lines = Vec::new();
                for (city, line) in answers.into_iter().flatten() {
                    done.insert(city, cp.size);
                    lines.push(line);
                }
                if !lines.is_empty() {
                    fresh_since = engine.clock.elapsed();
                    if let Err(e) = engine.add_cosignatures(cp.size, lines).await {
                        warn!(error = %e, "storing cosignatures");
                    }
                }
            }
            // The first round is over, answered or not: publishing waits no longer.
            engine.witnesses_heard();
            let retry = async {
                if missing {
                    tokio::time::sleep(RETRY).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let (clock, since) = (engine.clock.clone(), fresh_since);
            let refresh = async move {
                while clock.elapsed().saturating_sub(since) < REFRESH {
                    tokio::time::sleep(REFRESH_POLL).await;
                }
            };
            tokio::select! {
                changed = advanced.changed() => if changed.is_err() { return },
                () = retry => {}
                () = refresh => {
                    debug!("asking the witnesses to cosign again, for their clocks");
                    fresh_since = engine.clock.elapsed();
                    done.clear();
                }
                () = sync::stopped(&mut shutdown) => return,
            }
        }
    }
    .instrument(info_span!("cosign"))
    .await;
}

/// Asks one witness to cosign `note` (of `size`); retries once from the size the witness
/// reports when it refuses for a stale `old_size`.
async fn ask(
    engine: &Engine,
    witness: &mut WitnessPeer,
    note: &[u8],
    size: u64,
) -> Option<(String, Vec<u8>)> {
    let city = witness.link.city.clone();
    if witness.channel.is_none() {
        let server = Identity::new(&engine.consortium, &city, Role::Node).ok()?;
        match tls::connect_lazy(&witness.link.address, &server, witness.link.tls.clone()) {
            Ok(c) => witness.channel = Some(c),
            Err(e) => {
                warn!(witness = %city, error = %e, "witness unreachable");
                return None;
            }
        }
    }
    let mut client = WitnessClient::new(witness.channel.clone()?);
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let old_size = witness.cosigned_size.min(size);
        let proof = engine
            .consistency_path(&engine.city, old_size, size, false)
            .ok()?;
        let request = pb::AddCheckpointRequest {
            old_size,
            consistency_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
            checkpoint: Some(pb::SignedCheckpoint {
                note: note.to_vec(),
            }),
        };
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, client.add_checkpoint(request))
            .await
        {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                debug!(witness = %city, code = ?status.code(), message = status.message(), "cosigning failed");
                return None;
            }
            Err(_) => {
                warn!(witness = %city, timeout = ?REQUEST_TIMEOUT, "witness did not answer in time");
                return None;
            }
        };
        match answer.result {
            Some(pb::add_checkpoint_response::Result::Cosignature(line)) => {
                engine
                    .metrics()
                    .observe_cosignature(&city, started.elapsed());
                witness.cosigned_size = size;
                return Some((city, line));
            }
            Some(pb::add_checkpoint_response::Result::Refusal(refusal)) => {
                if refusal.latest_size == old_size || refusal.latest_size > size {
                    warn!(witness = %city, reason = refusal.reason, "witness refused the checkpoint");
                    return None;
                }
                witness.cosigned_size = refusal.latest_size;
            }
            None => return None,
        }
    }
    None
}
