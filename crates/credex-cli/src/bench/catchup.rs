//! `credexctl bench catchup`: one node catches up N entries from another over mutual TLS,
//! verifying everything, and the figure is printed beside the machine's own ceiling measured
//! in the same run: Ed25519 verification on all cores.
//!
//! The source log is written straight into the source node's store (signing on all cores),
//! so the measured time is the receiver's alone. Two figures: the *log* caught up (Sync frames
//! over TLS, every run appended durably under the root its origin signed, servable and
//! provable from then on), and the *view* caught up (every entry's signature strictly verified
//! and its record validated and indexed behind the append, so lookups answer from it). It looks like a real origin's log: a signed
//! checkpoint every [`CHECKPOINT_EVERY`] entries (the origin checkpoints every group-commit
//! batch), not only one at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use credex_core::date::{Clock, SystemClock};
use credex_core::entry;
use credex_core::keys::{PublicKey, SigningKeyPair};
use credex_core::note::{self, Checkpoint};
use credex_core::pb;
use credex_node::config::Config;
use credex_node::server::{self, Listeners};
use credex_node::tls::{self, Identity, Role};
use credex_store::{Store, WriteBatch};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::TcpListener;

use crate::city::capitals;
use crate::consortium::{InitOptions, init};
use crate::errln;
use crate::generator::Generator;
use crate::outln;

use super::Percentiles;

/// Entries between the source log's checkpoints: the node's default group-commit batch.
pub const CHECKPOINT_EVERY: u64 = 256;

/// Options of `bench catchup`.
#[derive(Debug, Clone)]
pub struct CatchupOptions {
    pub entries: u64,
    /// Leaves verified to measure the machine's verification rate.
    pub sample: usize,
}

/// What `bench catchup` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CatchupFigures {
    pub entries: u64,
    /// Until the receiver's log held every entry, durably, under signed roots.
    pub log_seconds: f64,
    pub log_entries_per_second: f64,
    /// Until the receiver's view held every entry (signatures verified, records indexed).
    pub view_seconds: f64,
    pub view_entries_per_second: f64,
    pub strict_verify_per_second: f64,
    pub batch_verify_per_second: f64,
    pub ratio_to_strict: f64,
    pub ratio_to_batch: f64,
    pub cores: usize,
    /// Operator.Status with the view counted, on the catching-up node.
    pub status: StatusFigures,
}

/// Latencies of Operator.Status as `credexctl status` asks it (the view's counts included) on
/// the catching-up node, each beside the gRPC health check sent on the same connection right
/// after it: the floor of a round trip in the same run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusFigures {
    /// One round a second while the node caught up.
    pub during: Percentiles,
    pub during_health: Percentiles,
    pub during_rounds: usize,
    /// `STATUS_ROUNDS_AFTER` rounds once it had caught up.
    pub after: Percentiles,
    pub after_health: Percentiles,
    /// Status calls that failed (any error, deadlines included).
    pub failed: usize,
    /// The view's counts the last round on the caught-up node answered.
    pub counts: Option<ViewCountFigures>,
}

/// The view's counts as a status answered them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ViewCountFigures {
    pub records_in_force: u64,
    pub subjects: u64,
    pub excluded: u64,
    pub current: bool,
}

/// Status rounds on the caught-up node.
const STATUS_ROUNDS_AFTER: usize = 20;

/// Timings of status rounds, in milliseconds.
#[derive(Debug, Default)]
struct StatusRounds {
    status: Vec<f64>,
    health: Vec<f64>,
    failed: usize,
    /// The view's counts in the last answer.
    counts: Option<ViewCountFigures>,
}

impl StatusRounds {
    /// One round on `channel`: Operator.Status with the view's counts, then Health.Check.
    async fn round(&mut self, channel: &tonic::transport::Channel) {
        let started = Instant::now();
        let status = pb::operator_client::OperatorClient::new(channel.clone())
            .status(pb::StatusRequest { skip_view: false })
            .await;
        let status_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let health = crate::health::check(channel.clone(), "").await;
        let health_ms = started.elapsed().as_secs_f64() * 1000.0;
        match (status, health) {
            (Ok(status), Ok(_)) => {
                self.status.push(status_ms);
                self.health.push(health_ms);
                self.counts = status.into_inner().view.map(|v| ViewCountFigures {
                    records_in_force: v.records_in_force,
                    subjects: v.subjects,
                    excluded: v.excluded,
                    current: v.current,
                });
            }
            _ => self.failed += 1,
        }
    }
}

pub async fn catchup(options: &CatchupOptions) -> Result<CatchupFigures> {
    if options.entries == 0 {
        bail!("--entries: must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let cities = capitals()[..2].to_vec();
    let home = init(&InitOptions {
        out: dir.path().join("consortium"),
        name: "bench".to_owned(),
        cities: cities.clone(),
        host: "127.0.0.1".to_owned(),
        base_port: 7100,
    })?;
    let source_listener = TcpListener::bind("127.0.0.1:0").await?;
    let sink_listener = TcpListener::bind("127.0.0.1:0").await?;
    let source_addr = source_listener.local_addr()?;
    let sink_addr = sink_listener.local_addr()?;
    let env = |listen: std::net::SocketAddr, peers: String| {
        HashMap::from([
            ("CREDEX_LISTEN".to_owned(), listen.to_string()),
            ("CREDEX_PEERS".to_owned(), peers),
            ("CREDEX_METRICS_LISTEN".to_owned(), String::new()),
            ("CREDEX_LOG".to_owned(), "warn".to_owned()),
        ])
    };
    let source = Config::load(
        &home.node_config("changsha"),
        &env(source_addr, String::new()),
    )?;
    let mut sink = Config::load(
        &home.node_config("wuhan"),
        &env(sink_addr, format!("changsha={source_addr}")),
    )?;
    sink.sync.batch_max_entries = 1024;

    errln!(
        "writing {} signed entries into the source log…",
        options.entries
    );
    let leaves_for_sample = write_source_log(&source, options.entries, options.sample)?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (stop_source, source_stopped) = tokio::sync::oneshot::channel::<()>();
    let source_task = tokio::spawn(server::run_with_clock(
        source,
        Listeners {
            grpc: source_listener,
            admin: None,
        },
        clock.clone(),
        async {
            let _ = source_stopped.await;
        },
    ));
    let consortium = home.load_consortium()?;
    let operator =
        tls::load_client_config(&home.client_files(&consortium, "wuhan", Role::Operator))?;
    // The source log was written straight into the store: its own view indexes it once the
    // source starts, as a real origin's view would have at publish time. Wait for that, so the
    // measurement is the receiver's work alone.
    let source_operator =
        tls::load_client_config(&home.client_files(&consortium, "changsha", Role::Operator))?;
    let source_identity = Identity::new("bench", "changsha", Role::Node)?;
    errln!("indexing the source's own view…");
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let figures = match tls::connect(
            &source_addr.to_string(),
            &source_identity,
            source_operator.clone(),
        )
        .await
        {
            Ok(channel) => pb::operator_client::OperatorClient::new(channel)
                .status(pb::StatusRequest { skip_view: true })
                .await
                .ok()
                .and_then(|s| {
                    s.into_inner()
                        .origins
                        .into_iter()
                        .find(|o| o.origin == "changsha")
                }),
            Err(_) => None,
        };
        if figures.is_some_and(|o| o.indexed_size >= options.entries) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the source did not index its own log within an hour");
        }
        // Polling interval.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let started = Instant::now();
    let (stop_sink, sink_stopped) = tokio::sync::oneshot::channel::<()>();
    let sink_task = tokio::spawn(server::run_with_clock(
        sink,
        Listeners {
            grpc: sink_listener,
            admin: None,
        },
        clock,
        async {
            let _ = sink_stopped.await;
        },
    ));
    let bar = ProgressBar::new(options.entries).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} in view ({msg})  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let server = Identity::new("bench", "wuhan", Role::Node)?;
    let mut channel = None;
    let mut client = None;
    let mut log_seconds = None;
    let mut during = StatusRounds::default();
    let mut last_round = Instant::now();
    loop {
        if client.is_none() {
            channel = tls::connect(&sink_addr.to_string(), &server, operator.clone())
                .await
                .ok();
            client = channel
                .clone()
                .map(pb::operator_client::OperatorClient::new);
        }
        if let Some(channel) = &channel
            && last_round.elapsed() >= Duration::from_secs(1)
        {
            during.round(channel).await;
            last_round = Instant::now();
        }
        let (size, in_view) = match client.as_mut() {
            Some(c) => match c.status(pb::StatusRequest { skip_view: true }).await {
                Ok(s) => s
                    .into_inner()
                    .origins
                    .iter()
                    .find(|o| o.origin == "changsha")
                    .map_or((0, 0), |o| (o.local_size, o.indexed_size)),
                Err(_) => (0, 0),
            },
            None => (0, 0),
        };
        bar.set_position(in_view);
        bar.set_message(format!("log {size}"));
        if size >= options.entries && log_seconds.is_none() {
            log_seconds = Some(started.elapsed().as_secs_f64());
        }
        if in_view >= options.entries {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!(
                "catch-up did not finish within an hour ({size} of {} entries in the log, {in_view} in the view)",
                options.entries
            );
        }
        // Progress polling interval.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view_seconds = started.elapsed().as_secs_f64();
    let log_seconds = log_seconds.unwrap_or(view_seconds);
    bar.finish_and_clear();
    let mut after = StatusRounds::default();
    if let Some(channel) = &channel {
        for _ in 0..STATUS_ROUNDS_AFTER {
            after.round(channel).await;
        }
    }
    let _ = stop_sink.send(());
    let _ = stop_source.send(());
    sink_task.await?.context("sink node")?;
    source_task.await?.context("source node")?;

    let key = consortium
        .member("changsha")
        .context("changsha is a member")?
        .log_key
        .clone();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let strict = strict_rate(&leaves_for_sample, &key, cores);
    let batch = batch_rate(&leaves_for_sample, &key, cores);
    let rate = options.entries as f64 / view_seconds;
    let figures = CatchupFigures {
        entries: options.entries,
        log_seconds,
        log_entries_per_second: options.entries as f64 / log_seconds,
        view_seconds,
        view_entries_per_second: rate,
        strict_verify_per_second: strict,
        batch_verify_per_second: batch,
        ratio_to_strict: rate / strict,
        ratio_to_batch: rate / batch,
        cores,
        status: StatusFigures {
            during_rounds: during.status.len(),
            during: Percentiles::of(&mut during.status),
            during_health: Percentiles::of(&mut during.health),
            after: Percentiles::of(&mut after.status),
            after_health: Percentiles::of(&mut after.health),
            failed: during.failed + after.failed,
            counts: after.counts.clone(),
        },
    };
    Ok(figures)
}

/// Prints the figures with their ceilings, as a table or JSON.
pub fn print(figures: &CatchupFigures, json: bool) -> Result<()> {
    if json {
        return crate::output::print_json(figures);
    }
    outln!(
        "catch-up of {} entries over mutual TLS, every signature verified",
        figures.entries
    )?;
    outln!(
        "  log caught up in        {:>12.2} s   {:>10.0} entries/s  (durable, under signed roots)",
        figures.log_seconds,
        figures.log_entries_per_second
    )?;
    outln!(
        "  view caught up in       {:>12.2} s   {:>10.0} entries/s  (signatures verified, indexed)",
        figures.view_seconds,
        figures.view_entries_per_second
    )?;
    outln!(
        "  ceiling of the view: Ed25519 verify_strict on {} cores {:>12.0} signatures/s   ratio {:.2}",
        figures.cores,
        figures.strict_verify_per_second,
        figures.ratio_to_strict
    )?;
    outln!(
        "  reference: Ed25519 verify_batch on {} cores {:>12.0} signatures/s   ratio {:.2}",
        figures.cores,
        figures.batch_verify_per_second,
        figures.ratio_to_batch
    )?;
    outln!("  (credex verifies strictly; see ARCHITECTURE.md, \"Departures from DESIGN.md\")")?;
    let s = &figures.status;
    outln!(
        "Operator.Status with the view's counts, ms         p50      p99      max   beside Health.Check p50 / p99"
    )?;
    for (when, status, health) in [
        (
            format!("  while catching up ({} rounds)", s.during_rounds),
            &s.during,
            &s.during_health,
        ),
        (
            format!("  caught up ({STATUS_ROUNDS_AFTER} rounds)"),
            &s.after,
            &s.after_health,
        ),
    ] {
        outln!(
            "{when:<44} {:>8.1} {:>8.1} {:>8.1}   {:>8.1} / {:.1}",
            status.p50,
            status.p99,
            status.max,
            health.p50,
            health.p99
        )?;
    }
    if let Some(c) = &s.counts {
        outln!(
            "  the view's counts, caught up: {} records in force, {} subjects, {} excluded{}",
            c.records_in_force,
            c.subjects,
            c.excluded,
            if c.current { "" } else { " (not current)" }
        )?;
    }
    if s.failed > 0 {
        outln!("  status calls failed: {}", s.failed)?;
    }
    Ok(())
}

/// Signs `entries` generated records into the source node's store, as its publisher would:
/// a checkpoint over every [`CHECKPOINT_EVERY`] entries and one over the whole log. Returns up
/// to `sample` leaves for the verification ceiling.
fn write_source_log(config: &Config, entries: u64, sample: usize) -> Result<Vec<Vec<u8>>> {
    let keys = config.signing_keys()?;
    let store = Store::open(&config.node.data_dir.join("store"))?;
    let origin = config.node.city.as_str();
    let city = crate::city::capitals()
        .into_iter()
        .find(|c| c.id == origin)
        .context("a capital")?;
    let today = SystemClock.today();
    let now = SystemClock.now_millis();
    let mut generator = Generator::new(&city, 42, today);
    let mut kept = Vec::new();
    let mut seq = 0u64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bar = ProgressBar::new(entries);
    while seq < entries {
        let n = (entries - seq).min(8192);
        let records: Vec<pb::CreditRecord> = (0..n).map(|_| generator.record()).collect();
        let leaves = sign_parallel(&keys.log, origin, seq, now, records, cores);
        let mut leaves = leaves.into_iter().peekable();
        while leaves.peek().is_some() {
            // Up to the next checkpoint size, then the checkpoint over the root there.
            let mut batch = WriteBatch::new();
            for leaf in leaves.by_ref() {
                if kept.len() < sample {
                    kept.push(leaf.clone());
                }
                batch.append(origin, seq, leaf);
                seq += 1;
                if seq.is_multiple_of(CHECKPOINT_EVERY) {
                    break;
                }
            }
            store.apply(batch)?;
            let state = store.origin_state(origin);
            let checkpoint = Checkpoint {
                origin: keys.log.name().to_owned(),
                size: state.size,
                root: state.root,
            };
            let mut batch = WriteBatch::new();
            batch.set_checkpoint(
                origin,
                state.size,
                note::sign_checkpoint(&checkpoint, &keys.log)?,
            );
            store.apply(batch)?;
        }
        bar.set_position(seq);
    }
    store.flush()?;
    bar.finish_and_clear();
    Ok(kept)
}

/// `records` as entries of `origin` from `first_seq` on, signed on `cores` threads.
pub(super) fn sign_parallel(
    key: &SigningKeyPair,
    origin: &str,
    first_seq: u64,
    now: i64,
    records: Vec<pb::CreditRecord>,
    cores: usize,
) -> Vec<Vec<u8>> {
    let chunk = records.len().div_ceil(cores).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .enumerate()
            .map(|(c, records)| {
                s.spawn(move || {
                    records
                        .iter()
                        .enumerate()
                        .map(|(i, record)| {
                            let entry = pb::Entry {
                                origin: origin.to_owned(),
                                seq: first_seq + (c * chunk + i) as u64,
                                logged_at: now,
                                schema_version: credex_proto::SCHEMA_VERSION,
                                record: Some(record.clone()),
                            };
                            entry::sign_entry(key, &entry::encode_entry(&entry))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    })
}

/// Strict single-signature verifications per second on all cores (what credex does).
fn strict_rate(leaves: &[Vec<u8>], key: &PublicKey, cores: usize) -> f64 {
    let started = Instant::now();
    let chunk = leaves.len().div_ceil(cores).max(1);
    std::thread::scope(|s| {
        for part in leaves.chunks(chunk) {
            s.spawn(move || {
                let refs: Vec<&[u8]> = part.iter().map(Vec::as_slice).collect();
                let ok = entry::verify_entries(&refs, key).iter().all(Result::is_ok);
                assert!(ok, "the sample verifies");
            });
        }
    });
    leaves.len() as f64 / started.elapsed().as_secs_f64()
}

/// `ed25519_dalek::verify_batch` (batches of 256) per second on all cores, for reference.
fn batch_rate(leaves: &[Vec<u8>], key: &PublicKey, cores: usize) -> f64 {
    let parsed: Vec<(Vec<u8>, ed25519_dalek::Signature)> = leaves
        .iter()
        .map(|leaf| {
            let parts = entry::parse_leaf(leaf).expect("a well-formed leaf");
            let mut message = entry::ENTRY_DOMAIN.to_vec();
            message.extend_from_slice(parts.entry);
            (
                message,
                ed25519_dalek::Signature::from_bytes(parts.signature),
            )
        })
        .collect();
    let vk = *key.verifying_key();
    let started = Instant::now();
    let chunk = parsed.len().div_ceil(cores).max(1);
    std::thread::scope(|s| {
        for part in parsed.chunks(chunk) {
            s.spawn(move || {
                for batch in part.chunks(256) {
                    let messages: Vec<&[u8]> = batch.iter().map(|(m, _)| m.as_slice()).collect();
                    let signatures: Vec<_> = batch.iter().map(|(_, s)| *s).collect();
                    let keys = vec![vk; batch.len()];
                    ed25519_dalek::verify_batch(&messages, &signatures, &keys)
                        .expect("the sample verifies");
                }
            });
        }
    });
    parsed.len() as f64 / started.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use credex_core::merkle;

    #[test]
    fn the_source_log_has_a_signed_checkpoint_every_256_entries_and_at_its_end() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let home = init(&InitOptions {
            out: dir.path().join("consortium"),
            name: "bench".to_owned(),
            cities: capitals()[..1].to_vec(),
            host: "127.0.0.1".to_owned(),
            base_port: 7100,
        })?;
        let config = Config::load(&home.node_config("changsha"), &HashMap::new())?;
        write_source_log(&config, 600, 0)?;
        let key = home
            .load_consortium()?
            .member("changsha")
            .context("a member")?
            .log_key
            .clone();
        let store = Store::open(&config.node.data_dir.join("store"))?;
        let notes = store.checkpoints("changsha", 0, usize::MAX)?;
        let sizes: Vec<u64> = notes.iter().map(|n| n.size).collect();
        assert_eq!(sizes, [256, 512, 600]);
        for stored in notes {
            let signed = note::verify_checkpoint(&stored.note, &key, &[])?;
            assert_eq!(signed.checkpoint.size, stored.size);
            let root = merkle::root(stored.size, &store.hash_reader("changsha"))?;
            assert_eq!(signed.checkpoint.root, root, "size {}", stored.size);
        }
        Ok(())
    }
}
