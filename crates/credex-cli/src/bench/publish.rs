//! `credexctl bench publish`: durable publish throughput through the real node — the streaming
//! client of `credexctl publish` sending Publisher.Publish requests over gRPC and mutual TLS to
//! an in-process `credexd` — beside a ceiling measured in the same run: sled alone writing the
//! same leaves (the signed entries the node stored), one flush per batch of the same size.
//!
//! The ceiling leaves out what publishing adds to sled's work — validation, signing, the record
//! and subject indexes, the view change feed, the checkpoint signed and flushed after every
//! batch, gRPC and TLS — so the ratio says what that costs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use credex_core::consortium;
use credex_core::date::{Clock, SystemClock};
use credex_core::keys::{KeyAlgorithm, SigningKeyPair};
use credex_core::pb;
use credex_node::tls::Role;
use credex_store::{Store, StoreOptions};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_stream::wrappers::ReceiverStream;

use super::cluster::Cluster;
use crate::errln;
use crate::generator::Generator;
use crate::outln;
use crate::publish::{self as stream, Batch, Limits};

/// The publishing city.
const CITY: &str = "changsha";

/// Options of `bench publish`.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub records: u64,
    /// Request size and requests in flight (the byte bound is the client's default).
    pub limits: Limits,
}

/// What `bench publish` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishFigures {
    pub records: u64,
    pub request_records: usize,
    pub in_flight: usize,
    pub seconds: f64,
    pub records_per_second: f64,
    /// Group-commit batches the node committed (it stores one checkpoint per batch).
    pub batches: u64,
    pub mean_leaf_bytes: f64,
    pub ceiling_seconds: f64,
    pub ceiling_records_per_second: f64,
    pub ratio: f64,
    /// Resident memory of the bench process (the node and the streaming client) after the
    /// load, and its peak, in MiB (Linux `/proc/self/status`; 0 where unavailable).
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// The node's data dir (store, leaf files, everything) divided by the records.
    pub disk_bytes_per_record: f64,
    /// sled alone holding the same leaves, divided by the records.
    pub ceiling_disk_bytes_per_record: f64,
    /// Ed25519 signing of the same entries on all cores, which publish does once a record and
    /// sled's ceiling leaves out: the most a node on this machine could publish if nothing
    /// else cost anything.
    pub signing_records_per_second: f64,
    pub signing_ratio: f64,
    pub cores: usize,
}

pub async fn publish(options: &PublishOptions) -> Result<PublishFigures> {
    if options.records == 0 {
        bail!("--records: must be at least 1");
    }
    let limits = options.limits;
    let cluster = Cluster::start(1).await?;
    let client =
        pb::publisher_client::PublisherClient::new(cluster.channel(CITY, Role::Publisher).await?);

    // Records are generated on a thread of their own, as `credexctl publish` reads its input
    // there, and sent as they come.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let total = options.records;
    let generator = std::thread::Builder::new()
        .name("bench-records".to_owned())
        .spawn(move || {
            let city = crate::city::capitals()
                .into_iter()
                .find(|c| c.id == CITY)
                .expect("a capital");
            let mut generator = Generator::new(&city, 7, SystemClock.today());
            let mut line = 1;
            while line <= total {
                let n = (total + 1 - line).min(limits.records as u64);
                let records = (0..n).map(|_| generator.record()).collect();
                if tx
                    .blocking_send(Batch::numbered(line as usize, records))
                    .is_err()
                {
                    return;
                }
                line += n;
            }
        })
        .context("starting the record generator")?;

    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let sent = stream::send(
        ReceiverStream::new(rx),
        limits.in_flight,
        |request| {
            let mut client = client.clone();
            async move { client.publish(request).await.map(|r| r.into_inner()) }
        },
        |_, _| bar.inc(1),
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let _ = generator.join();
    if let Some(refused) = sent.refused.first() {
        bail!(
            "Publisher.Publish refused records {}: {}",
            stream::refused_lines(&sent.refused),
            refused.status
        );
    }
    if sent.published != total {
        bail!("published {} of {total} records", sent.published);
    }

    let (rss_mib, peak_rss_mib) = process_memory_mib();
    let stopped = cluster.stop().await?;
    // Opened before it is measured: a merge of the view index's runs the stop cut short left
    // an output no listing names, which opening removes (it is not the node's footprint).
    let store = Store::open(&stopped.data_dirs[CITY].join("store"))?;
    let disk = dir_bytes(&stopped.data_dirs[CITY])?;
    let batches = store.checkpoints(CITY, 0, usize::MAX)?.len() as u64;
    errln!("writing the same leaves with sled alone…");
    let (ceiling, leaf_bytes, ceiling_disk) = sled_ceiling(&store, total, limits.records)?;
    let ceiling_seconds = ceiling.as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let signing = signing_rate(total.min(SIGNING_SAMPLE), cores)?;
    let rate = total as f64 / seconds;
    let ceiling_rate = total as f64 / ceiling_seconds;
    Ok(PublishFigures {
        records: total,
        request_records: limits.records,
        in_flight: limits.in_flight,
        seconds,
        records_per_second: rate,
        batches,
        mean_leaf_bytes: leaf_bytes as f64 / total as f64,
        ceiling_seconds,
        ceiling_records_per_second: ceiling_rate,
        ratio: rate / ceiling_rate,
        rss_mib,
        peak_rss_mib,
        disk_bytes_per_record: disk as f64 / total as f64,
        ceiling_disk_bytes_per_record: ceiling_disk as f64 / total as f64,
        signing_records_per_second: signing,
        signing_ratio: rate / signing,
        cores,
    })
}

/// Records the signing ceiling is measured on.
const SIGNING_SAMPLE: u64 = 20_000;

/// Entries signed per second on `cores` threads: `records` generated records of the publishing
/// city, each encoded and signed as publish signs them (`entry::sign_entry`).
fn signing_rate(records: u64, cores: usize) -> Result<f64> {
    let city = crate::city::capitals()
        .into_iter()
        .find(|c| c.id == CITY)
        .context("a capital")?;
    let clock = SystemClock;
    let mut generator = Generator::new(&city, 11, clock.today());
    let records: Vec<pb::CreditRecord> = (0..records).map(|_| generator.record()).collect();
    let key = SigningKeyPair::generate(&consortium::origin("bench", CITY), KeyAlgorithm::Ed25519)?;
    let started = Instant::now();
    let signed = super::catchup::sign_parallel(&key, CITY, 0, clock.now_millis(), records, cores);
    Ok(signed.len() as f64 / started.elapsed().as_secs_f64())
}

/// Current and peak resident memory of this process in MiB, from `/proc/self/status`.
fn process_memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes of every file under `path`.
fn dir_bytes(path: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Writes the first `records` leaves of the published log into a fresh sled database opened
/// as the store opens its own, in batches of `batch` with one flush each. Returns the time the
/// writes and flushes took (reading the leaves back is not counted), the bytes written and the
/// bytes the database then occupies on disk.
fn sled_ceiling(store: &Store, records: u64, batch: usize) -> Result<(Duration, u64, u64)> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(StoreOptions::default().cache_capacity)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let mut took = Duration::ZERO;
    let mut bytes = 0;
    let mut seq = 0;
    while seq < records {
        let leaves = store.leaves(CITY, seq, batch)?;
        if leaves.is_empty() {
            bail!("the published log ends at {seq}, before {records}");
        }
        let started = Instant::now();
        let mut writes = sled::Batch::default();
        for leaf in leaves {
            bytes += leaf.len() as u64;
            writes.insert(&seq.to_be_bytes()[..], leaf);
            seq += 1;
        }
        db.apply_batch(writes)?;
        db.flush()?;
        took += started.elapsed();
    }
    drop(db);
    Ok((took, bytes, dir_bytes(dir.path())?))
}

/// Prints the figures beside their ceiling, as a table or JSON.
pub fn print(figures: &PublishFigures, json: bool) -> Result<()> {
    if json {
        return crate::output::print_json(figures);
    }
    outln!(
        "durable publish of {} records through Publisher.Publish over mutual TLS ({} per request, {} in flight)",
        figures.records,
        figures.request_records,
        figures.in_flight
    )?;
    outln!("  published in            {:>12.2} s", figures.seconds)?;
    outln!(
        "  publish rate            {:>12.0} records/s",
        figures.records_per_second
    )?;
    outln!(
        "  batches committed       {:>12} (mean {:.1} records, one checkpoint each)",
        figures.batches,
        figures.records as f64 / figures.batches.max(1) as f64
    )?;
    outln!(
        "  ceiling: sled writing the same leaves ({:.0} bytes each), one flush per {}   {:>10.0} records/s   ratio {:.2}",
        figures.mean_leaf_bytes,
        figures.request_records,
        figures.ceiling_records_per_second,
        figures.ratio
    )?;
    outln!(
        "  ceiling: Ed25519 signing of the same entries on {} cores                  {:>10.0} records/s   ratio {:.2}",
        figures.cores,
        figures.signing_records_per_second,
        figures.signing_ratio
    )?;
    outln!(
        "  memory: bench process (node + client) {:.0} MiB after the load, peak {:.0} MiB",
        figures.rss_mib,
        figures.peak_rss_mib
    )?;
    outln!(
        "  disk: {:.0} bytes per record in the node's data dir; sled alone holding the same leaves {:.0} bytes per record",
        figures.disk_bytes_per_record,
        figures.ceiling_disk_bytes_per_record
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    async fn publisher(
        cluster: &Cluster,
    ) -> Result<pb::publisher_client::PublisherClient<tonic::transport::Channel>> {
        Ok(pb::publisher_client::PublisherClient::new(
            cluster.channel(CITY, Role::Publisher).await?,
        ))
    }

    fn generator() -> Generator {
        let city = crate::city::capitals()
            .into_iter()
            .find(|c| c.id == CITY)
            .expect("a capital");
        Generator::new(&city, 3, SystemClock.today())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_at_an_idle_origin_is_not_held_for_the_batch_window() -> Result<()> {
        let cluster = Cluster::start_with(1, |_| {}).await?;
        let mut client = publisher(&cluster).await?;
        let request = pb::PublishRequest {
            records: vec![generator().record()],
            ..Default::default()
        };
        let answer = tokio::time::timeout(Duration::from_secs(30), client.publish(request))
            .await
            .context("the record was held")??
            .into_inner();
        assert_eq!(answer.tree_size, 1);
        cluster.stop().await?;
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_batch_is_acknowledged_at_a_size_with_its_own_checkpoint() -> Result<()> {
        let cluster = Cluster::start_with(1, |config| {
            config.sync.batch_max_entries = 16;
        })
        .await?;
        let client = publisher(&cluster).await?;
        let mut generator = generator();
        // Concurrent requests, so that some queue behind a commit and are batched together.
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let records = (0..5).map(|_| generator.record()).collect();
            let mut client = client.clone();
            calls.spawn(async move {
                client
                    .publish(pb::PublishRequest {
                        records,
                        ..Default::default()
                    })
                    .await
            });
        }
        let mut acknowledged = BTreeSet::new();
        while let Some(call) = calls.join_next().await {
            acknowledged.insert(call??.into_inner().tree_size);
        }
        let stopped = cluster.stop().await?;
        let store = Store::open(&stopped.data_dirs[CITY].join("store"))?;
        let checkpointed: BTreeSet<u64> = store
            .checkpoints(CITY, 0, usize::MAX)?
            .into_iter()
            .map(|c| c.size)
            .collect();
        // Each acknowledged size ends a batch; the batches are all the checkpoints there are.
        assert_eq!(checkpointed, acknowledged);
        assert_eq!(acknowledged.last(), Some(&200));
        Ok(())
    }
}
