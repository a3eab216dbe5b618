//! `credexctl audit`: proof bundles of single entries, their extension to a newer checkpoint,
//! offline verification of bundles and evidence files, replay of a whole log, and export of
//! equivocation evidence.
//!
//! The commands that talk to a node connect as its `auditor` by default; `verify` needs no
//! network, only the consortium file with the pinned keys. The file formats and every check
//! are the `credex_audit` crate's; how a verified record is shown is [`credex_cli::audit`]'s.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use credex_audit::{
    self as audit, CheckpointReport, EvidenceVerdict, Extension, FileKind, LogReplay, ProofFile,
    ProofReport, TlogProof,
};
use credex_cli::audit::{masked_record, render_proof_report};
use credex_cli::home::Home;
use credex_cli::json::Json;
use credex_cli::output::print_json;
use credex_core::consortium::Consortium;
use credex_core::merkle;
use credex_node::tls::Role;
use credex_proto::v1::audit_client::AuditClient;
use credex_proto::v1::{
    GetConsistencyRequest, GetEntriesRequest, GetProofRequest, ListCheckpointsRequest,
    ListEvidenceRequest, get_proof_request,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::home;
use crate::Global;
use crate::client::{self, Connection};
use credex_cli::{out, outln};

/// Largest Audit response accepted: a page of 10,000 leaves of a few kilobytes each.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Largest page Audit.GetEntries serves.
const MAX_PAGE: u32 = 10_000;
/// Times `audit log` lists the checkpoints again when the log it replayed has no checkpoint
/// of its size yet, and the pause between tries: a node signs within its 50 ms batch window.
const RELIST_ATTEMPTS: usize = 3;
const RELIST_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Fetch one entry's proof bundle (Audit.GetProof) and write it as a C2SP tlog-proof.
    Proof(ProofArgs),
    /// Extend a proof bundle with the node's newest checkpoint and the consistency proof
    /// leading to it (Audit.GetConsistency).
    Extend(ExtendArgs),
    /// Verify a proof bundle or an evidence file offline against the consortium's pinned
    /// keys; exits non-zero naming the check that failed. An evidence file passes (PROVEN for
    /// each piece, exit 0) only when it holds at least one piece and every piece proves an
    /// equivocation; a piece refused or not proven, or a file with none, exits non-zero.
    Verify(VerifyArgs),
    /// Replay an origin's whole log from the node and check every entry and checkpoint.
    /// Exits non-zero on any failure, including a log whose root matches no checkpoint the
    /// origin signed at its size, and an origin the node marks forked (holds evidence about).
    Log(LogArgs),
    /// Export the equivocation evidence the node holds (Audit.ListEvidence).
    Evidence(EvidenceArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProofArgs {
    /// The city whose log holds the entry, e.g. changsha.
    #[arg(value_name = "ORIGIN")]
    origin: String,
    /// The entry's seq, or a record id (its latest version).
    #[arg(value_name = "SEQ|RECORD_ID")]
    target: String,
    /// Take the target as a record id even if it is all digits.
    #[arg(long)]
    record_id: bool,
    /// Where to write the bundle (conventionally `*.tlog-proof`).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ExtendArgs {
    /// A proof bundle; an extended one has its extension replaced.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where to write the extended bundle (may be FILE itself).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A proof bundle (plain or extended) or an evidence file; the kind is read from its
    /// first line.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The consortium file holding the pinned log and witness keys [default: consortium.toml
    /// in --home].
    #[arg(long, value_name = "FILE")]
    consortium: Option<PathBuf>,
    /// Cosignatures by other members' witnesses the checkpoint (the newer one of an extended
    /// bundle) needs; 2 makes it published.
    #[arg(long, value_name = "N", default_value_t = audit::DEFAULT_QUORUM, value_parser = super::integer::<usize>(0, 1000))]
    quorum: usize,
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// The city whose log to replay, e.g. wuhan.
    #[arg(value_name = "ORIGIN")]
    origin: String,
    /// Entries per Audit.GetEntries request.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = super::integer::<u32>(1, MAX_PAGE.into()))]
    page: u32,
}

#[derive(Debug, clap::Args)]
pub struct EvidenceArgs {
    /// Only evidence about this origin city [default: all].
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    /// Where to write the evidence file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub async fn run(global: &Global, command: Command) -> Result<()> {
    match command {
        Command::Proof(args) => proof(global, args).await,
        Command::Extend(args) => extend(global, args).await,
        Command::Verify(args) => verify(global, args),
        Command::Log(args) => log(global, args).await,
        Command::Evidence(args) => evidence(global, args).await,
    }
}

// ------------------------------------------------------------------ proof, extend

async fn proof(global: &Global, args: ProofArgs) -> Result<()> {
    let consortium = home(global)?.load_consortium()?;
    let conn = client::connect(global, Role::Auditor).await?;
    let target = if args.record_id || !args.target.bytes().all(|b| b.is_ascii_digit()) {
        get_proof_request::Target::RecordId(args.target.clone())
    } else {
        let seq = super::integer::<u64>(0, u64::MAX.into())(&args.target)
            .map_err(|e| anyhow!("seq {e} (pass --record-id if it is a record id)"))?;
        get_proof_request::Target::Seq(seq)
    };
    let bundle = audit_client(&conn)
        .get_proof(conn.request(GetProofRequest {
            origin: args.origin.clone(),
            target: Some(target.clone()),
        }))
        .await
        .map_err(|s| conn.rpc_error("Audit.GetProof", s))?
        .into_inner();
    let served = |problem: String| {
        anyhow!(
            "the proof {} served for {} {} {problem}",
            conn.city,
            args.origin,
            args.target
        )
    };
    let file = ProofFile {
        extension: None,
        proof: TlogProof::from_bundle(&bundle).map_err(|e| served(format!("is malformed: {e}")))?,
    };
    // Nothing is written that does not verify; the quorum is reported, not required, since a
    // fresh checkpoint may still be collecting its cosignatures.
    let report = audit::verify_proof(&file, &consortium, 0)
        .map_err(|e| served(format!("does not verify: {e}")))?;
    if report.city != args.origin {
        return Err(served(format!("is for the log of {}", report.city)));
    }
    if let get_proof_request::Target::Seq(seq) = target
        && report.index != seq
    {
        return Err(served(format!("is for seq {}", report.index)));
    }
    write_file(&args.out, &file.to_bytes())?;
    print_proof_outcome(global, &args.out, &report)
}

async fn extend(global: &Global, args: ExtendArgs) -> Result<()> {
    let consortium = home(global)?.load_consortium()?;
    let bytes = read_file(&args.file, audit::MAX_PROOF_FILE_BYTES)?;
    let file = ProofFile::parse(&bytes).with_context(|| args.file.display().to_string())?;
    let inner = ProofFile {
        extension: None,
        proof: file.proof,
    };
    let old = audit::verify_proof(&inner, &consortium, 0)
        .map_err(|e| anyhow!("{}: NOT VERIFIED — {e}", args.file.display()))?;

    let conn = client::connect(global, Role::Auditor).await?;
    let response = audit_client(&conn)
        .get_consistency(conn.request(GetConsistencyRequest {
            origin: old.city.clone(),
            old_size: old.checkpoint.size,
            new_size: 0,
        }))
        .await
        .map_err(|s| conn.rpc_error("Audit.GetConsistency", s))?
        .into_inner();
    let served = |problem: String| {
        anyhow!(
            "the consistency proof {} served for {} from size {} {problem}",
            conn.city,
            old.city,
            old.checkpoint.size
        )
    };
    let checkpoint = response
        .checkpoint
        .map(|c| c.note)
        .ok_or_else(|| served("has no checkpoint".to_owned()))?;
    let consistency = response
        .path
        .iter()
        .map(|h| merkle::hash_from_bytes(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| served(format!("is malformed: {e}")))?;
    let extended = ProofFile {
        extension: Some(Extension {
            consistency,
            checkpoint,
        }),
        proof: inner.proof,
    };
    let report = audit::verify_proof(&extended, &consortium, 0).map_err(|e| match e {
        audit::VerifyError::Consistency(_) => served(format!(
            "does not verify: {e}; both checkpoints carry the origin's signature, so unless {} served a wrong proof the origin forked",
            conn.city
        )),
        e => served(format!("does not verify: {e}")),
    })?;
    write_file(&args.out, &extended.to_bytes())?;
    print_proof_outcome(global, &args.out, &report)
}

/// After `proof` and `extend`: the report, where the file went and whether its checkpoint is
/// published yet.
fn print_proof_outcome(global: &Global, path: &Path, report: &ProofReport) -> Result<()> {
    if global.json {
        return print_json(&json!({
            "file": path.display().to_string(),
            "report": proof_json(report),
        }));
    }
    // Shown against the quorum that publishes a checkpoint, which was not required here.
    let shown = ProofReport {
        quorum: audit::DEFAULT_QUORUM,
        ..report.clone()
    };
    out!("{}", render_proof_report(&shown))?;
    let last = report.quorum_checkpoint();
    outln!(
        "wrote {} — verify it offline with `credexctl audit verify {} --consortium <consortium.toml>`",
        path.display(),
        path.display()
    )?;
    if last.cosigners.len() < audit::DEFAULT_QUORUM {
        outln!(
            "note: its checkpoint (size {}) has {} from other members, fewer than the {} that publish it; `credexctl audit extend` picks up a newer cosigned checkpoint later",
            last.size,
            count(last.cosigners.len(), "cosignature"),
            audit::DEFAULT_QUORUM
        )?;
    }
    Ok(())
}

// ------------------------------------------------------------------ verify

fn verify(global: &Global, args: VerifyArgs) -> Result<()> {
    let consortium_file = match (&args.consortium, &global.home) {
        (Some(file), _) => file.clone(),
        (None, Some(home)) => Home::new(home).consortium_file(),
        (None, None) => bail!("no consortium file: pass --consortium FILE (or --home DIR)"),
    };
    let consortium = credex_node::config::load_consortium(&consortium_file)?;
    let bytes = read_file(&args.file, audit::MAX_EVIDENCE_FILE_BYTES)?;
    let name = args.file.display().to_string();
    match audit::detect(&bytes).with_context(|| name.clone())? {
        FileKind::Proof => {
            let file = ProofFile::parse(&bytes).with_context(|| name.clone())?;
            verify_proof_file(global, &name, &file, &consortium, args.quorum)
        }
        FileKind::Evidence => {
            let items = audit::parse_evidence(&bytes).with_context(|| name.clone())?;
            verify_evidence_file(global, &name, &items, &consortium)
        }
    }
}

fn verify_proof_file(
    global: &Global,
    name: &str,
    file: &ProofFile,
    consortium: &Consortium,
    quorum: usize,
) -> Result<()> {
    match audit::verify_proof(file, consortium, quorum) {
        Ok(report) => {
            if global.json {
                return print_json(&json!({
                    "file": name,
                    "verified": true,
                    "report": proof_json(&report),
                }));
            }
            out!("{}", render_proof_report(&report))?;
            outln!("{}", report.verdict())?;
            Ok(())
        }
        Err(e) => {
            if global.json {
                print_json(&json!({
                    "file": name,
                    "verified": false,
                    "check": e.check(),
                    "error": e.to_string(),
                }))?;
            }
            bail!("{name}: NOT VERIFIED — {e}")
        }
    }
}

fn verify_evidence_file(
    global: &Global,
    name: &str,
    items: &[credex_proto::v1::Evidence],
    consortium: &Consortium,
) -> Result<()> {
    let mut proven = 0;
    let mut lines = Vec::new();
    let mut docs = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        match audit::verify_evidence(item, consortium) {
            Ok(report) => {
                if matches!(report.verdict, EvidenceVerdict::Proven(_)) {
                    proven += 1;
                }
                docs.push(json!({
                    "item": n,
                    "origin": report.city,
                    "kind": audit::kind_name(report.kind),
                    "proven": matches!(report.verdict, EvidenceVerdict::Proven(_)),
                    "detail": report.to_string(),
                }));
                lines.push(format!("evidence {n}: {report}"));
            }
            Err(e) => {
                docs.push(json!({
                    "item": n,
                    "origin": item.origin,
                    "proven": false,
                    "refused": e.to_string(),
                }));
                lines.push(format!("evidence {n}: {}: REFUSED — {e}", item.origin));
            }
        }
    }
    if global.json {
        print_json(&json!({ "file": name, "items": docs }))?;
    } else {
        for line in &lines {
            outln!("{line}")?;
        }
    }
    // A file with nothing in it proves nothing: an auditor scripting `verify` on an export
    // must not read an empty one as confirmation.
    if items.is_empty() {
        bail!("{name}: no evidence, nothing confirmed");
    }
    if proven < items.len() {
        bail!(
            "{name}: {} of {} confirmed",
            pieces_of_evidence(proven),
            items.len()
        );
    }
    if !global.json {
        outln!(
            "CONFIRMED: every piece of evidence in {name} proves an equivocation ({})",
            items.len()
        )?;
    }
    Ok(())
}

// ------------------------------------------------------------------ log

async fn log(global: &Global, args: LogArgs) -> Result<()> {
    let consortium = home(global)?.load_consortium()?;
    let conn = client::connect(global, Role::Auditor).await?;
    let mut client = audit_client(&conn);
    let notes = list_checkpoints(&mut client, &conn, &args.origin).await?;
    let mut replay = LogReplay::new(&consortium, &args.origin, &notes)?;
    // The node holds evidence about an origin exactly when it marks it forked.
    let evidence = client
        .list_evidence(conn.request(ListEvidenceRequest {
            origin: args.origin.clone(),
        }))
        .await
        .map_err(|s| conn.rpc_error("Audit.ListEvidence", s))?
        .into_inner()
        .evidence;
    if !evidence.is_empty() {
        replay.marked_forked(evidence.len());
    }

    let bar = ProgressBar::new(replay.target_size());
    if global.json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} entries ({per_sec}, {eta} left)",
        )
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    bar.set_message(format!("replaying {}", args.origin));
    loop {
        let start = replay.size();
        let batch = client
            .get_entries(conn.request(GetEntriesRequest {
                origin: args.origin.clone(),
                start,
                limit: args.page,
            }))
            .await
            .map_err(|s| conn.rpc_error("Audit.GetEntries", s))?
            .into_inner();
        if batch.first_seq != start {
            bail!(
                "{} answered Audit.GetEntries from {start} with entries from {}",
                conn.city,
                batch.first_seq
            );
        }
        if batch.entries.is_empty() {
            break;
        }
        for leaf in &batch.entries {
            replay.push(leaf);
        }
        if replay.size() > bar.length().unwrap_or(0) {
            bar.set_length(replay.size());
        }
        bar.set_position(replay.size());
    }
    bar.finish_and_clear();
    // The log may have grown since the history was listed, and a node stores a checkpoint a
    // moment after the entries it covers: look again before calling the root unsigned.
    for attempt in 0..RELIST_ATTEMPTS {
        if replay.root_signed() {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(RELIST_DELAY).await;
        }
        let notes = list_checkpoints(&mut client, &conn, &args.origin).await?;
        replay.add_checkpoints(&consortium, &notes);
    }

    let report = replay.finish();
    if global.json {
        print_json(&json!({
            "origin": report.city,
            "node": conn.city,
            "entries": report.entries,
            "entries_valid": report.entries_valid,
            "root": report.root.to_string(),
            "checkpoints_held": report.checkpoints_held,
            "checkpoints_verified": report.checkpoints_verified,
            "roots_matched": report.roots_matched,
            "consistency_checked": report.consistency_checked,
            "newest": report.newest.as_ref().map(checkpoint_json),
            "forked": report.forked.is_some(),
            "evidence": report.forked.unwrap_or(0),
            "failure_count": report.failure_count,
            "failures": report.failures.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))?;
    } else {
        out!("{report}")?;
    }
    match report.failures.first() {
        Some(first) => bail!(
            "log of {} as {} serves it: {} found, the first: {first}",
            args.origin,
            conn.city,
            count(report.failure_count as usize, "failure")
        ),
        None => {
            if !global.json {
                outln!(
                    "OK: the log of {} as {} serves it verifies: every entry, checkpoint and consistency proof, and its root at size {} is one the origin signed",
                    args.origin,
                    conn.city,
                    report.entries
                )?;
            }
            Ok(())
        }
    }
}

async fn list_checkpoints(
    client: &mut AuditClient<Channel>,
    conn: &Connection,
    origin: &str,
) -> Result<Vec<Vec<u8>>> {
    Ok(client
        .list_checkpoints(conn.request(ListCheckpointsRequest {
            origin: origin.to_owned(),
        }))
        .await
        .map_err(|s| conn.rpc_error("Audit.ListCheckpoints", s))?
        .into_inner()
        .checkpoints
        .into_iter()
        .map(|c| c.note)
        .collect())
}

// ------------------------------------------------------------------ evidence

async fn evidence(global: &Global, args: EvidenceArgs) -> Result<()> {
    let consortium = home(global)?.load_consortium()?;
    if let Some(origin) = &args.origin {
        super::check_origin(&consortium, "--origin", origin)?;
    }
    let conn = client::connect(global, Role::Auditor).await?;
    let items = audit_client(&conn)
        .list_evidence(conn.request(ListEvidenceRequest {
            origin: args.origin.clone().unwrap_or_default(),
        }))
        .await
        .map_err(|s| conn.rpc_error("Audit.ListEvidence", s))?
        .into_inner()
        .evidence;
    write_file(&args.out, &audit::encode_evidence(&items))?;
    if global.json {
        return print_json(&json!({
            "file": args.out.display().to_string(),
            "node": conn.city,
            "items": items.len(),
        }));
    }
    for (i, item) in items.iter().enumerate() {
        match audit::verify_evidence(item, &consortium) {
            Ok(report) => outln!("evidence {}: {report}", i + 1)?,
            Err(e) => outln!("evidence {}: {}: REFUSED — {e}", i + 1, item.origin)?,
        }
    }
    outln!(
        "wrote {} from {} to {} — verify it offline with `credexctl audit verify {} --consortium <consortium.toml>`",
        pieces_of_evidence(items.len()),
        conn.city,
        args.out.display(),
        args.out.display()
    )?;
    Ok(())
}

// ------------------------------------------------------------------ helpers

fn audit_client(conn: &Connection) -> AuditClient<Channel> {
    AuditClient::new(conn.channel()).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// Reads a whole file of at most `limit` bytes.
fn read_file(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > limit {
        bail!(
            "{} is larger than the {limit} bytes allowed",
            path.display()
        );
    }
    Ok(bytes)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn pieces_of_evidence(n: usize) -> String {
    if n == 1 {
        "1 piece of evidence".to_owned()
    } else {
        format!("{n} pieces of evidence")
    }
}

fn proof_json(r: &ProofReport) -> Value {
    let record = r
        .entry
        .record
        .as_ref()
        .map(masked_record)
        .unwrap_or_default();
    json!({
        "origin": r.city,
        "seq": r.index,
        "logged_at": r.entry.logged_at,
        "record": Json(&record),
        "leaf_hash": r.leaf_hash.to_string(),
        "checkpoint": checkpoint_json(&r.checkpoint),
        "newer_checkpoint": r.newer.as_ref().map(checkpoint_json),
        "quorum": r.quorum,
    })
}

fn checkpoint_json(c: &CheckpointReport) -> Value {
    json!({
        "origin": c.origin,
        "size": c.size,
        "root": c.root.to_string(),
        "signed_by": c.signed_by,
        "cosigners": c.cosigners.iter().map(|s| json!({
            "city": s.city,
            "timestamp": s.timestamp,
        })).collect::<Vec<_>>(),
        "own_cosignature": c.own_cosignature,
        "ignored_signatures": c.ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evidence_file_with_no_evidence_or_a_refused_piece_fails_verification() {
        let global = Global {
            home: None,
            city: None,
            role: None,
            json: false,
            timeout: 30,
        };
        let consortium = Consortium {
            rules: Default::default(),
            name: "mid-yangtze".to_owned(),
            ca_cert: "ca.pem".into(),
            members: Vec::new(),
        };
        let outcome = |items: &[credex_proto::v1::Evidence]| {
            verify_evidence_file(&global, "forks.evidence", items, &consortium)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            outcome(&[]),
            Err("forks.evidence: no evidence, nothing confirmed".to_owned())
        );
        let refused = credex_proto::v1::Evidence {
            origin: "shanghai".to_owned(),
            ..Default::default()
        };
        assert_eq!(
            outcome(&[refused]),
            Err("forks.evidence: 0 pieces of evidence of 1 confirmed".to_owned())
        );
    }
}
