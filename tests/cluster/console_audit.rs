//! The console's audit page over plain HTTP: a real proof bundle from a node's Audit service
//! uploaded and shown check by check with the verdict `credexctl audit verify` prints, a
//! tampered one refused naming the check, an empty evidence file confirming nothing, and
//! uploads without a file or over the size limit refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use credex_audit::{DEFAULT_QUORUM, ProofFile, ProofReport, TlogProof};
use credex_cli::city::capitals;
use credex_cli::generator::{Generator, JOINT_CHANGSHA_CATEGORY, joint_subject};
use credex_core::pb;
use credex_node::admin::console::AUDIT_UPLOAD_LIMIT;
use credex_node::config::AdminConfig;
use credex_node::tls::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::admin::{Reply, request_over};
use crate::sandbox::{Sandbox, start_date, wait_until};

const BOUNDARY: &str = "credex-test-boundary-7d41c3";

/// A proof bundle of `origin`'s record `record_id`, exported by an auditor from `at`'s node
/// once its checkpoint holds the default quorum of cosignatures, as a file's bytes; and the
/// report `credex_audit` (what `credexctl audit verify` runs) gives on it.
pub async fn proof_file(
    sandbox: &Sandbox,
    at: &str,
    origin: &str,
    record_id: &str,
) -> Result<(Vec<u8>, ProofReport)> {
    let consortium = sandbox.home.load_consortium()?;
    let found = std::cell::RefCell::new(None);
    wait_until(
        &format!("a proof of {record_id} from {at} with a quorum of cosignatures"),
        || async {
            let found = &found;
            let mut audit = pb::audit_client::AuditClient::new(
                sandbox.channel_as(at, "changsha", Role::Auditor).await?,
            );
            let bundle = audit
                .get_proof(pb::GetProofRequest {
                    origin: origin.to_owned(),
                    target: Some(pb::get_proof_request::Target::RecordId(
                        record_id.to_owned(),
                    )),
                })
                .await?
                .into_inner();
            let file = ProofFile {
                extension: None,
                proof: TlogProof::from_bundle(&bundle)?,
            };
            // Cosignatures arrive after the publish is acknowledged: until two have, the
            // quorum check refuses the bundle.
            let report = credex_audit::verify_proof(&file, &consortium, DEFAULT_QUORUM)?;
            *found.borrow_mut() = Some((file.to_bytes(), report));
            Ok(true)
        },
    )
    .await?;
    found.into_inner().context("a proof")
}

/// `bytes` with one byte of the signed entry changed (the bundle still parses).
pub fn tampered(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut file = ProofFile::parse(bytes)?;
    file.proof.extra.as_mut().context("an entry")?[12] ^= 1;
    Ok(file.to_bytes())
}

/// POST /audit with `bytes` as the form's file.
async fn upload(addr: SocketAddr, name: &str, bytes: &[u8]) -> Result<Reply> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    request_over(
        TcpStream::connect(addr).await?,
        "POST",
        "/audit?lang=en",
        &[("Content-Type", &content_type)],
        &body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_page_verifies_a_real_bundle_and_refuses_a_tampered_one() -> Result<()> {
    let cities = capitals()[..3].to_vec();
    let sandbox = Sandbox::builder()
        .cities(cities.clone())
        .admin(AdminConfig::default())
        .start()
        .await?;
    let mut generator = Generator::new(&cities[0], 5, start_date());
    let listed = generator.black_listing(joint_subject(), JOINT_CHANGSHA_CATEGORY);
    let mut records: Vec<_> = (0..4).map(|_| generator.record()).collect();
    records.push(listed.clone());
    sandbox.publish("changsha", records).await?;
    sandbox
        .wait_converged(&BTreeMap::from([("changsha".to_owned(), 5)]))
        .await?;
    let (bundle, report) = proof_file(&sandbox, "hefei", "changsha", &listed.record_id).await?;
    let wuhan = sandbox.admin_addr("wuhan");

    // Wuhan's page on the bundle Hefei exported: every check the report makes, each held, in
    // the report's order and words, and the verdict line credexctl prints.
    let page = upload(wuhan, "listing.tlog-proof", &bundle).await?;
    assert_eq!(page.status, 200, "{page:?}");
    let html = &page.body;
    let mut at = 0;
    for check in report.checks() {
        let row = format!(
            "<tr><td>{}</td><td class=\"ok\">ok</td><td>{}",
            check.name,
            check.text.replace('\'', "&#39;")
        );
        let found = html[at..]
            .find(&row)
            .with_context(|| format!("{row} after the previous check in\n{html}"))?;
        at += found + row.len();
    }
    let names: Vec<&str> = report.checks().iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["checkpoint", "signed entry", "inclusion proof", "quorum"]
    );
    let verdict = format!(
        "VERIFIED: changsha seq 4 is in the log of credex/mid-yangtze/changsha at size 5, \
         cosigned by 2 other members (quorum {DEFAULT_QUORUM})"
    );
    assert_eq!(report.verdict(), verdict);
    assert!(
        html.contains(&format!("<p class=\"ok\" id=\"verdict\">{verdict}</p>")),
        "{html}"
    );
    // The record proven, with its provenance; the representative's ID number nowhere.
    assert!(html.contains(&listed.record_id), "{html}");
    assert!(html.contains("changsha · seq 4 · checkpoint 5"), "{html}");
    let representative = &joint_subject().legal_representative.unwrap().id_number;
    assert!(!html.contains(representative.as_str()));

    // One byte of the entry changed: refused at the entry's signature, as the CLI says.
    let page = upload(wuhan, "tampered.tlog-proof", &tampered(&bundle)?).await?;
    assert_eq!(page.status, 200);
    let html = &page.body;
    assert!(
        html.contains("<tr><td>signed entry</td><td class=\"bad\">failed</td><td>signed entry: "),
        "{html}"
    );
    assert!(
        html.contains("<p class=\"bad\" id=\"verdict\">NOT VERIFIED — signed entry: "),
        "{html}"
    );
    assert!(!html.contains("VERIFIED: "), "{html}");

    // An evidence file with nothing in it proves nothing.
    let empty = credex_audit::encode_evidence(&[]);
    let html = upload(wuhan, "none.evidence", &empty).await?.body;
    assert!(
        html.contains("<p class=\"bad\" id=\"verdict\">no evidence, nothing confirmed</p>"),
        "{html}"
    );
    // Neither a proof nor evidence.
    let html = upload(wuhan, "notes.txt", b"hello\n").await?.body;
    assert!(html.contains("NOT VERIFIED — "), "{html}");

    // A form without the file, and a body over the limit (refused from its Content-Length,
    // before it is sent).
    let page = request_over(
        TcpStream::connect(wuhan).await?,
        "POST",
        "/audit?lang=en",
        &[(
            "Content-Type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )],
        format!("--{BOUNDARY}--\r\n").as_bytes(),
    )
    .await?;
    assert_eq!(page.status, 400, "{page:?}");
    assert!(page.body.contains("no file"), "{}", page.body);
    let mut stream = TcpStream::connect(wuhan).await?;
    let head = format!(
        "POST /audit?lang=en HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n\r\n",
        AUDIT_UPLOAD_LIMIT + 1
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.contains(&format!(
            "the upload is larger than the {AUDIT_UPLOAD_LIMIT} bytes allowed"
        )),
        "{answer}"
    );
    sandbox.shutdown().await
}
