//! `credexctl bench propagation`: how soon a record published in one city is in force in every
//! other city's view. Four nodes run in-process, fully linked. One `View.Watch` stream per peer,
//! opened before anything is published, reports records entering that peer's view; Changsha
//! publishes generated records at a steady rate, one per request, and a record's latency runs
//! from its Publish call going out to the last of the three peers reporting it. The Publish
//! calls' own latency (until the record is durable at the origin) is printed beside it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use credex_core::date::{Clock, SystemClock};
use credex_core::pb;
use credex_node::tls::Role;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Percentiles;
use super::cluster::Cluster;
use crate::city::capitals;
use crate::errln;
use crate::generator::Generator;
use crate::outln;

/// The publishing city; the other three capitals watch.
const CITY: &str = "changsha";
/// How long after the last publish every record may take to reach every peer.
const SETTLE: Duration = Duration::from_secs(60);

/// Options of `bench propagation`.
#[derive(Debug, Clone)]
pub struct PropagationOptions {
    pub count: u64,
    /// Records published per second.
    pub rate: f64,
}

/// What `bench propagation` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PropagationFigures {
    pub records: u64,
    pub rate: f64,
    pub origin: String,
    pub peers: Vec<String>,
    /// Publish call sent → the record entered every peer's view (View.Watch), ms.
    pub propagation_ms: Percentiles,
    /// Publish call sent → acknowledged (durable and checkpointed at the origin), ms.
    pub publish_ms: Percentiles,
}

/// A record entering a peer's view: the peer's index, the record id, when the stream said so.
type Seen = (usize, String, Instant);

pub async fn propagation(options: &PropagationOptions) -> Result<PropagationFigures> {
    if options.count == 0 {
        bail!("--count: must be at least 1");
    }
    if !(options.rate > 0.0 && options.rate <= 10_000.0) {
        bail!("--rate: must be above 0 and at most 10000 records per second");
    }
    let cluster = Cluster::start(4).await?;
    let peers: Vec<String> = capitals()[..4]
        .iter()
        .map(|c| c.id.clone())
        .filter(|c| c != CITY)
        .collect();

    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Seen>();
    let mut watchers = JoinSet::new();
    for (i, peer) in peers.iter().enumerate() {
        let mut view = pb::view_client::ViewClient::new(cluster.channel(peer, Role::Reader).await?);
        // The stream starts at the peer's change head when this call returns: nothing published
        // after it is missed.
        let mut changes = view
            .watch(pb::WatchRequest {
                after: 0,
                ..Default::default()
            })
            .await
            .with_context(|| format!("View.Watch on {peer}"))?
            .into_inner();
        let seen = seen_tx.clone();
        let peer = peer.clone();
        watchers.spawn(async move {
            loop {
                match changes.message().await {
                    Ok(Some(change)) => {
                        if change.origin == CITY
                            && change.kind == pb::view_change::Kind::Entered as i32
                            && seen.send((i, change.record_id, Instant::now())).is_err()
                        {
                            return Ok(());
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(status) => return Err(format!("View.Watch on {peer}: {status}")),
                }
            }
        });
    }
    drop(seen_tx);

    let publisher =
        pb::publisher_client::PublisherClient::new(cluster.channel(CITY, Role::Publisher).await?);
    let city = capitals()
        .into_iter()
        .find(|c| c.id == CITY)
        .context("a capital")?;
    let mut generator = Generator::new(&city, 11, SystemClock.today());
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut calls = JoinSet::new();
    errln!(
        "publishing {} records in {CITY}, {} per second, watching {}…",
        options.count,
        options.rate,
        peers.join(", ")
    );
    for _ in 0..options.count {
        ticker.tick().await;
        let record = generator.record();
        let mut client = publisher.clone();
        let at = Instant::now();
        sent_at.insert(record.record_id.clone(), at);
        calls.spawn(async move {
            let answer = client
                .publish(pb::PublishRequest {
                    records: vec![record],
                    ..Default::default()
                })
                .await;
            (at.elapsed(), answer)
        });
    }
    let mut publish_ms = Vec::with_capacity(sent_at.len());
    while let Some(call) = calls.join_next().await {
        let (took, answer) = call?;
        answer.context("Publisher.Publish")?;
        publish_ms.push(millis(took));
    }

    let all = (1u32 << peers.len()) - 1;
    let mut reached: HashMap<String, u32> = HashMap::new();
    let mut propagation_ms = Vec::with_capacity(sent_at.len());
    let deadline = tokio::time::Instant::now() + SETTLE;
    while propagation_ms.len() < sent_at.len() {
        let (peer, id, at) = match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some(seen)) => seen,
            Ok(None) | Err(_) => {
                watchers.abort_all();
                let mut errors = Vec::new();
                while let Some(w) = watchers.join_next().await {
                    if let Ok(Err(e)) = w {
                        errors.push(e);
                    }
                }
                bail!(
                    "{} of {} records entered every peer's view within {}s of the last publish{}",
                    propagation_ms.len(),
                    sent_at.len(),
                    SETTLE.as_secs(),
                    errors.iter().map(|e| format!("; {e}")).collect::<String>()
                );
            }
        };
        let Some(sent) = sent_at.get(&id) else {
            continue;
        };
        let mask = reached.entry(id).or_default();
        let before = *mask;
        *mask |= 1 << peer;
        if *mask == all && before != all {
            propagation_ms.push(millis(at.saturating_duration_since(*sent)));
        }
    }

    cluster.stop().await?;
    // The servers closed the streams on shutdown.
    while let Some(w) = watchers.join_next().await {
        if let Ok(Err(e)) = w {
            tracing::debug!(error = %e, "watch stream ended");
        }
    }
    Ok(PropagationFigures {
        records: options.count,
        rate: options.rate,
        origin: CITY.to_owned(),
        peers,
        propagation_ms: Percentiles::of(&mut propagation_ms),
        publish_ms: Percentiles::of(&mut publish_ms),
    })
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints the percentiles, as a table or JSON.
pub fn print(figures: &PropagationFigures, json: bool) -> Result<()> {
    if json {
        return crate::output::print_json(figures);
    }
    outln!(
        "propagation of {} records published in {} at {}/s, one per request, to the views of {}",
        figures.records,
        figures.origin,
        figures.rate,
        figures.peers.join(", ")
    )?;
    outln!(
        "  {:<44} {:>9} {:>9} {:>9} {:>9}",
        "",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms"
    )?;
    for (label, p) in [
        (
            "publish sent → in every peer's view",
            figures.propagation_ms,
        ),
        ("publish sent → acknowledged (durable)", figures.publish_ms),
    ] {
        outln!(
            "  {label:<44} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            p.p50,
            p.p90,
            p.p99,
            p.max
        )?;
    }
    Ok(())
}
