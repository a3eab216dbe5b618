//! An origin that signs two histories and shows one to some peers and the other to the rest:
//! every honest node detects it, keeps the evidence verbatim, marks the origin forked and
//! stops ingesting it.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use credex_cli::city::capitals;
use credex_cli::generator::Generator;
use credex_core::entry;
use credex_core::keys::SigningKeyPair;
use credex_core::merkle::MemoryHashStore;
use credex_core::note::{self, Checkpoint};
use credex_core::pb;
use credex_core::pb::exchange_server::{Exchange, ExchangeServer};
use credex_node::tls::{self, Role, TlsFiles};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use crate::sandbox::{Sandbox, start_date, wait_until};

const ORIGIN: &str = "nanchang";
const ENTRIES: usize = 5;

/// One signed history of the equivocating origin: its leaves and its checkpoint.
#[derive(Clone)]
struct History {
    leaves: Vec<Vec<u8>>,
    checkpoint: Vec<u8>,
}

fn history(key: &SigningKeyPair, seed: u64) -> Result<History> {
    diverging(key, &[], seed, ENTRIES)
}

/// A history that starts with `shared` and continues with records from `seed` up to `size`.
fn diverging(key: &SigningKeyPair, shared: &[Vec<u8>], seed: u64, size: usize) -> Result<History> {
    let city = capitals()
        .into_iter()
        .find(|c| c.id == ORIGIN)
        .context("a capital")?;
    let mut generator = Generator::new(&city, seed, start_date());
    let mut tree = MemoryHashStore::new();
    let mut leaves = Vec::new();
    for leaf in shared {
        tree.append(leaf)?;
        leaves.push(leaf.clone());
    }
    for seq in shared.len() as u64..size as u64 {
        let entry = pb::Entry {
            origin: ORIGIN.to_owned(),
            seq,
            logged_at: 1_790_000_000_000,
            schema_version: credex_proto::SCHEMA_VERSION,
            record: Some(generator.record()),
        };
        let leaf = entry::sign_entry(key, &entry::encode_entry(&entry));
        tree.append(&leaf)?;
        leaves.push(leaf);
    }
    let checkpoint = note::sign_checkpoint(
        &Checkpoint {
            origin: key.name().to_owned(),
            size: tree.size(),
            root: tree.root(),
        },
        key,
    )?;
    Ok(History { leaves, checkpoint })
}

/// The equivocating origin's node: history B to hefei, history A to everyone else.
struct TwoFaced {
    a: Arc<History>,
    b: Arc<History>,
}

impl TwoFaced {
    async fn serve(self, sandbox: &Sandbox) -> Result<tokio::task::JoinHandle<()>> {
        let files = TlsFiles {
            ca_cert: sandbox.home.ca_cert(),
            cert: sandbox.home.cert(ORIGIN, Role::Node),
            key: sandbox.home.key(ORIGIN, Role::Node),
        };
        let listener = TcpListener::bind(sandbox.addr(ORIGIN)).await?;
        let incoming = tls::serve_incoming(listener, tls::load_server_config(&files)?);
        let server = Server::builder()
            .add_service(ExchangeServer::new(self))
            .serve_with_incoming(incoming);
        Ok(tokio::spawn(async move {
            let _ = server.await;
        }))
    }
}

#[tonic::async_trait]
impl Exchange for TwoFaced {
    type SyncStream = ReceiverStream<Result<pb::SyncFrame, Status>>;

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let caller = tls::peer_identity(&request)
            .map(|i| i.city.clone())
            .unwrap_or_default();
        let history = if caller == "hefei" {
            self.b.clone()
        } else {
            self.a.clone()
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let frames = [
                pb::sync_frame::Frame::Entries(pb::EntryBatch {
                    origin: ORIGIN.to_owned(),
                    first_seq: 0,
                    entries: history.leaves.clone(),
                }),
                pb::sync_frame::Frame::Checkpoint(pb::CheckpointFrame {
                    origin: ORIGIN.to_owned(),
                    checkpoint: Some(pb::SignedCheckpoint {
                        note: history.checkpoint.clone(),
                    }),
                    from_size: 0,
                    consistency_proof: Vec::new(),
                }),
            ];
            for frame in frames {
                if tx
                    .send(Ok(pb::SyncFrame { frame: Some(frame) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // A live stream: stays open until the receiver goes.
            tx.closed().await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A sandbox of the four capitals, all stopped, and the origin's log key.
async fn all_stopped() -> Result<(Sandbox, SigningKeyPair)> {
    let sandbox = Sandbox::builder()
        .stopped(ORIGIN)
        .stopped("changsha")
        .stopped("wuhan")
        .stopped("hefei")
        .start()
        .await?;
    let key = SigningKeyPair::parse(
        std::fs::read_to_string(sandbox.home.city_dir(ORIGIN).join("log.key"))?.trim(),
    )?;
    Ok((sandbox, key))
}

async fn wait_forked(sandbox: &Sandbox, city: &str) -> Result<()> {
    wait_until(&format!("{city} marks {ORIGIN} forked"), || async {
        let status = sandbox.status(city).await?;
        Ok(status
            .origins
            .iter()
            .any(|o| o.origin == ORIGIN && o.forked))
    })
    .await
}

/// The equivocation evidence `city` serves about the origin.
async fn evidence_of(sandbox: &Sandbox, city: &str) -> Result<Vec<pb::Evidence>> {
    let mut audit = pb::audit_client::AuditClient::new(sandbox.channel(city, Role::Auditor).await?);
    Ok(audit
        .list_evidence(pb::ListEvidenceRequest {
            origin: ORIGIN.to_owned(),
        })
        .await?
        .into_inner()
        .evidence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_equivocating_origin_is_detected_by_every_honest_node() -> Result<()> {
    let (mut sandbox, key) = all_stopped().await?;
    let a = Arc::new(history(&key, 1)?);
    let b = Arc::new(history(&key, 2)?);

    let origin = TwoFaced { a, b }.serve(&sandbox).await?;

    // Each honest node first hears only the origin, so each holds one history...
    let honest = ["changsha", "wuhan", "hefei"];
    for city in honest {
        sandbox.set_links(city, &[ORIGIN]);
        sandbox.start_node(city).await?;
    }
    let held = BTreeMap::from([(ORIGIN.to_owned(), ENTRIES as u64)]);
    sandbox.wait_converged(&held).await?;
    // ...then they talk to each other, and gossip exposes the two histories.
    for city in honest {
        sandbox.stop_node(city).await?;
        let others: Vec<&str> = honest
            .iter()
            .copied()
            .filter(|c| *c != city)
            .chain([ORIGIN])
            .collect();
        sandbox.set_links(city, &others);
        sandbox.start_node(city).await?;
    }
    for city in honest {
        wait_forked(&sandbox, city).await?;
        let evidence = evidence_of(&sandbox, city).await?;
        let first = evidence.first().context("evidence is served")?;
        let pieces = first.checkpoints.len() + first.signed_entries.len();
        assert_eq!(
            pieces, 2,
            "{city} keeps both signed pieces verbatim: {first:?}"
        );
        // Exported as `credexctl audit evidence` writes it, the evidence proves the
        // equivocation offline with nothing but the consortium's pinned keys.
        let file = credex_audit::encode_evidence(&evidence);
        let consortium = sandbox.home.load_consortium()?;
        for item in credex_audit::parse_evidence(&file)? {
            let report = credex_audit::verify_evidence(&item, &consortium)?;
            assert!(
                matches!(report.verdict, credex_audit::EvidenceVerdict::Proven(_)),
                "{city}: {report:?}"
            );
        }
        // A forked origin takes no more entries: its log stays where it was.
        assert_eq!(sandbox.sizes(city).await?[ORIGIN], ENTRIES as u64);
    }
    origin.abort();
    sandbox.shutdown().await
}

/// The log an auditor of `city` replays for the origin: every leaf, verbatim.
async fn held_log(sandbox: &Sandbox, city: &str) -> Result<Vec<Vec<u8>>> {
    let mut audit = pb::audit_client::AuditClient::new(sandbox.channel(city, Role::Auditor).await?);
    let batch = audit
        .get_entries(pb::GetEntriesRequest {
            origin: ORIGIN.to_owned(),
            start: 0,
            limit: 1000,
        })
        .await?
        .into_inner();
    Ok(batch.entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_of_different_sizes_are_proven_at_every_honest_node() -> Result<()> {
    let (mut sandbox, key) = all_stopped().await?;
    // A: 5 entries, shown to changsha and wuhan. B: A's first 3, then 5 others: 8 entries,
    // shown to hefei. Neither checkpoint has the other's size.
    let a = Arc::new(history(&key, 1)?);
    let b = Arc::new(diverging(&key, &a.leaves[..3], 2, 8)?);
    let origin = TwoFaced {
        a: a.clone(),
        b: b.clone(),
    }
    .serve(&sandbox)
    .await?;
    let honest = ["changsha", "wuhan", "hefei"];
    for city in honest {
        sandbox.set_links(city, &[ORIGIN]);
        sandbox.start_node(city).await?;
    }
    for (city, size) in [("changsha", 5), ("wuhan", 5), ("hefei", 8)] {
        wait_until(&format!("{city} holds {size} entries"), || async {
            Ok(sandbox.sizes(city).await?.get(ORIGIN) == Some(&size))
        })
        .await?;
    }
    // Meshed, every honest node sees the other history's checkpoint: the smaller one against
    // its own tree, the larger one through the consistency proof that comes with it.
    for city in honest {
        sandbox.stop_node(city).await?;
        let others: Vec<&str> = honest.iter().copied().filter(|c| *c != city).collect();
        sandbox.set_links(city, &others);
        sandbox.start_node(city).await?;
    }
    let consortium = sandbox.home.load_consortium()?;
    for city in honest {
        wait_forked(&sandbox, city).await?;
        // Each still holds exactly one history the origin signed, never a splice of two.
        let expected = if city == "hefei" {
            &b.leaves
        } else {
            &a.leaves
        };
        assert_eq!(&held_log(&sandbox, city).await?, expected, "{city}'s log");
        let evidence = evidence_of(&sandbox, city).await?;
        assert!(!evidence.is_empty(), "{city} serves its evidence");
        let file = credex_audit::encode_evidence(&evidence);
        for item in credex_audit::parse_evidence(&file)? {
            let report = credex_audit::verify_evidence(&item, &consortium)?;
            assert!(
                matches!(
                    report.verdict,
                    credex_audit::EvidenceVerdict::Proven(
                        credex_audit::Equivocation::Histories { .. }
                    )
                ),
                "{city}: {report:?}"
            );
        }
    }
    origin.abort();
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_no_signed_checkpoint_covers_are_never_appended() -> Result<()> {
    let (mut sandbox, key) = all_stopped().await?;
    let a = history(&key, 1)?;
    let b = history(&key, 2)?;
    // Every entry is validly signed by the origin, but the checkpoint sent with them is over
    // another history of the same size: no root the origin signed covers them.
    let liar = Arc::new(History {
        leaves: a.leaves.clone(),
        checkpoint: b.checkpoint.clone(),
    });
    let origin = TwoFaced {
        a: liar.clone(),
        b: liar,
    }
    .serve(&sandbox)
    .await?;
    sandbox.set_links("changsha", &[ORIGIN]);
    sandbox.start_node("changsha").await?;
    wait_until("changsha quarantines the uncovered entries", || async {
        let status = sandbox.status("changsha").await?;
        assert_eq!(
            sandbox
                .sizes("changsha")
                .await?
                .get(ORIGIN)
                .copied()
                .unwrap_or(0),
            0,
            "nothing is appended"
        );
        Ok(status
            .quarantine
            .iter()
            .any(|q| q.reason == "unsigned_root" && q.count >= ENTRIES as u64))
    })
    .await?;
    let status = sandbox.status("changsha").await?;
    assert!(
        status.origins.iter().all(|o| !o.forked),
        "entries that match no signed root prove nothing against the origin"
    );
    origin.abort();
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_witness_refuses_and_records_two_checkpoints_of_one_size() -> Result<()> {
    let cities = capitals()[..2].to_vec();
    let sandbox = Sandbox::builder()
        .cities(
            cities
                .into_iter()
                .chain(capitals().into_iter().filter(|c| c.id == ORIGIN))
                .collect(),
        )
        .stopped(ORIGIN)
        .start()
        .await?;
    let key = SigningKeyPair::parse(
        std::fs::read_to_string(sandbox.home.city_dir(ORIGIN).join("log.key"))?.trim(),
    )?;
    let a = history(&key, 1)?;
    let b = history(&key, 2)?;
    // The origin itself asks Wuhan's witness to cosign, with its node certificate.
    let origin_files = TlsFiles {
        ca_cert: sandbox.home.ca_cert(),
        cert: sandbox.home.cert(ORIGIN, Role::Node),
        key: sandbox.home.key(ORIGIN, Role::Node),
    };
    let mut witness =
        pb::witness_client::WitnessClient::new(sandbox.channel_with("wuhan", &origin_files).await?);
    let request = |note: &[u8], old_size| pb::AddCheckpointRequest {
        old_size,
        consistency_proof: Vec::new(),
        checkpoint: Some(pb::SignedCheckpoint {
            note: note.to_vec(),
        }),
    };
    let first = witness
        .add_checkpoint(request(&a.checkpoint, 0))
        .await?
        .into_inner();
    assert!(
        matches!(
            first.result,
            Some(pb::add_checkpoint_response::Result::Cosignature(_))
        ),
        "{first:?}"
    );
    let second = witness
        .add_checkpoint(request(&b.checkpoint, ENTRIES as u64))
        .await?
        .into_inner();
    let Some(pb::add_checkpoint_response::Result::Refusal(refusal)) = second.result else {
        panic!("the witness refuses the second history: {second:?}");
    };
    assert_eq!(refusal.latest_size, ENTRIES as u64);
    assert_eq!(
        refusal.latest.map(|c| c.note),
        Some(a.checkpoint.clone()),
        "it returns what it cosigned"
    );
    wait_until("wuhan marks the origin forked", || async {
        let status = sandbox.status("wuhan").await?;
        Ok(status
            .origins
            .iter()
            .any(|o| o.origin == ORIGIN && o.forked))
    })
    .await?;
    let mut audit =
        pb::audit_client::AuditClient::new(sandbox.channel("wuhan", Role::Auditor).await?);
    let evidence = audit
        .list_evidence(pb::ListEvidenceRequest {
            origin: ORIGIN.to_owned(),
        })
        .await?
        .into_inner()
        .evidence;
    let consortium = sandbox.home.load_consortium()?;
    let report = credex_audit::verify_evidence(evidence.first().context("evidence")?, &consortium)?;
    assert!(
        matches!(report.verdict, credex_audit::EvidenceVerdict::Proven(_)),
        "{report:?}"
    );
    sandbox.shutdown().await
}
