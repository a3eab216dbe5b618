//! The authorisation matrix through the real mutual-TLS stack: every RPC of the descriptor set ×
//! every caller a certificate can make — each role of the node's own city, of another member,
//! of a city outside the consortium; certificates of another CA, expired ones, none; SPIFFE IDs
//! that are malformed — each cell asserting the exact outcome against the hand-written table
//! [`ADMITTED`] (DESIGN.md "Security"), not against what the node's `auth` module computes.
//!
//! Admitted calls carry an empty request, so each cell's code is what that empty request earns
//! (an `INVALID_ARGUMENT` naming a missing field, say): admitted calls get past authorisation.
//! A certificate the TLS handshake refuses gets no gRPC status: its cell is the TLS alert.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use credex_cli::city::capitals;
use credex_cli::pki::{self, CertifiedKey};
use credex_node::tls::{self, Identity, Role, TlsMaterial};
use prost::Message;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::sandbox::Sandbox;

/// Who each RPC admits and what an admitted empty request answers, by caller: `own:<role>`
/// (this node's city), `member:<role>` (another member city). Everyone else is refused. The
/// table is DESIGN.md's, written out by hand; a new RPC without a row fails the test.
const ADMITTED: &[(&str, &[(&str, Code)])] = &[
    (
        "credex.v1.Exchange/Sync",
        &[("own:node", Code::Ok), ("member:node", Code::Ok)],
    ),
    (
        "credex.v1.Witness/AddCheckpoint",
        &[
            ("own:node", Code::InvalidArgument),
            ("member:node", Code::InvalidArgument),
        ],
    ),
    (
        "credex.v1.Publisher/Publish",
        &[("own:publisher", Code::InvalidArgument)],
    ),
    ("credex.v1.View/Lookup", VIEWERS_EMPTY_SUBJECT),
    ("credex.v1.View/List", VIEWERS_OK),
    ("credex.v1.View/Watch", VIEWERS_OK),
    ("credex.v1.Operator/Status", &[("own:operator", Code::Ok)]),
    (
        "credex.v1.Operator/ListQuarantine",
        &[("own:operator", Code::Ok)],
    ),
    (
        "credex.v1.Operator/ListInvalid",
        &[("own:operator", Code::Ok)],
    ),
    (
        "credex.v1.Operator/ListAccess",
        &[("own:operator", Code::Ok)],
    ),
    ("credex.v1.Audit/GetProof", AUDITORS_NO_ORIGIN),
    ("credex.v1.Audit/GetConsistency", AUDITORS_NO_ORIGIN),
    ("credex.v1.Audit/ListEvidence", AUDITORS_OK),
    ("credex.v1.Audit/GetEntries", AUDITORS_NO_ORIGIN),
    ("credex.v1.Audit/ListCheckpoints", AUDITORS_NO_ORIGIN),
];

/// View callers; `enforcement` must state a purpose (查询事由), which an empty request lacks.
const VIEWERS_OK: &[(&str, Code)] = &[
    ("own:reader", Code::Ok),
    ("own:operator", Code::Ok),
    ("own:auditor", Code::Ok),
    ("own:enforcement", Code::InvalidArgument),
];
const VIEWERS_EMPTY_SUBJECT: &[(&str, Code)] = &[
    ("own:reader", Code::InvalidArgument),
    ("own:operator", Code::InvalidArgument),
    ("own:auditor", Code::InvalidArgument),
    ("own:enforcement", Code::InvalidArgument),
];
const AUDITORS_OK: &[(&str, Code)] = &[
    ("own:auditor", Code::Ok),
    ("member:auditor", Code::Ok),
    ("own:operator", Code::Ok),
];
const AUDITORS_NO_ORIGIN: &[(&str, Code)] = &[
    ("own:auditor", Code::InvalidArgument),
    ("member:auditor", Code::InvalidArgument),
    ("own:operator", Code::InvalidArgument),
];

/// RPCs whose answer is a stream: the cell is the call's status before the first message.
const STREAMING: &[&str] = &["credex.v1.Exchange/Sync", "credex.v1.View/Watch"];

/// What one cell shows: a gRPC status code (with its message), or a TLS alert at the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Status(Code, String),
    Alert(String),
}

/// A column of the matrix: how its certificate is made, and what every refused cell must say.
struct Column {
    name: String,
    /// `own:<role>` or `member:<role>` for callers the table may admit; `None` for the rest.
    key: Option<String>,
    material: Option<TlsMaterial>,
    /// A refusal must hold this: the TLS alert, or a fragment of the PERMISSION_DENIED message.
    refusal: Refusal,
}

enum Refusal {
    Denied(&'static str),
    Alert(&'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_by_every_caller_answers_exactly_as_the_design_says() -> Result<()> {
    let sandbox = Sandbox::builder()
        .cities(capitals()[..2].to_vec())
        .start()
        .await?;
    let ca = CertifiedKey {
        cert_pem: std::fs::read_to_string(sandbox.home.ca_cert())?,
        key_pem: std::fs::read_to_string(sandbox.home.ca_key())?,
    };
    let columns = columns(&sandbox, &ca)?;

    let methods = methods()?;
    let table: BTreeMap<&str, &[(&str, Code)]> = ADMITTED.iter().copied().collect();
    for (method, _) in ADMITTED {
        assert!(
            methods.contains(&method.to_string()),
            "{method} has a row but no such RPC"
        );
    }

    let mut wrong = Vec::new();
    let mut cells = 0;
    for column in &columns {
        let config = match &column.material {
            Some(material) => tls::client_config(material)?,
            None => no_client_certificate(&sandbox)?,
        };
        let mut channel = connect(&sandbox, config.clone()).await;
        for method in &methods {
            let row = table
                .get(method.as_str())
                .with_context(|| format!("{method}: an RPC without a row in ADMITTED"))?;
            let outcome = match &channel {
                Err(_) => refused(&sandbox, config.clone()).await,
                Ok(open) => match call(open.clone(), method).await {
                    Some(outcome) => outcome,
                    None => {
                        // The connection failed: a handshake refused (TLS 1.3 reports a
                        // client certificate's refusal after the client's Finished, so it can
                        // surface as a broken connection), or a channel to redial.
                        let outcome = refused(&sandbox, config.clone()).await;
                        channel = connect(&sandbox, config.clone()).await;
                        outcome
                    }
                },
            };
            let admitted = column
                .key
                .as_deref()
                .and_then(|key| row.iter().find(|(who, _)| *who == key))
                .map(|(_, code)| *code);
            let right = match (admitted, &outcome, &column.refusal) {
                (Some(code), Outcome::Status(got, _), _) => *got == code,
                (None, Outcome::Status(Code::PermissionDenied, message), Refusal::Denied(why)) => {
                    message.contains(why) && message.contains(&short(method))
                }
                (None, Outcome::Alert(got), Refusal::Alert(alert)) => got == alert,
                _ => false,
            };
            cells += 1;
            if !right {
                wrong.push(format!(
                    "{method} by {}: got {outcome:?}, expected {}",
                    column.name,
                    match (admitted, &column.refusal) {
                        (Some(code), _) => format!("{code:?}"),
                        (None, Refusal::Denied(why)) => format!("PermissionDenied saying {why:?}"),
                        (None, Refusal::Alert(alert)) => format!("TLS alert {alert}"),
                    }
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(cells, methods.len() * columns.len());
    sandbox.shutdown().await
}

/// Every `package.Service/Method` of the credex services, from the descriptor set the node
/// serves for reflection.
fn methods() -> Result<Vec<String>> {
    let set = prost_types::FileDescriptorSet::decode(credex_proto::FILE_DESCRIPTOR_SET)?;
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                methods.push(format!(
                    "{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    assert!(methods.len() >= ADMITTED.len(), "{methods:?}");
    Ok(methods)
}

/// `Service.Method` as refusals name it.
fn short(method: &str) -> String {
    method.trim_start_matches("credex.v1.").replace('/', ".")
}

fn columns(sandbox: &Sandbox, ca: &CertifiedKey) -> Result<Vec<Column>> {
    // A CA of another name is unknown to the node; one of the same name (another
    // `consortium init`) is found by name and its signature does not verify.
    let foreign_ca = pki::generate_ca("elsewhere")?;
    let namesake_ca = pki::generate_ca("mid-yangtze")?;
    let ca_pem = ca.cert_pem.as_bytes();
    let issued = |holder: &CertifiedKey| {
        TlsMaterial::from_pem(
            ca_pem,
            holder.cert_pem.as_bytes(),
            holder.key_pem.as_bytes(),
        )
    };
    let mut columns = Vec::new();
    for role in Role::ALL {
        for (relation, city) in [("own", "changsha"), ("member", "wuhan")] {
            let material = TlsMaterial::load(&tls::TlsFiles {
                ca_cert: sandbox.home.ca_cert(),
                cert: sandbox.home.cert(city, role),
                key: sandbox.home.key(city, role),
            })?;
            columns.push(Column {
                name: format!("{city}/{role}"),
                key: Some(format!("{relation}:{role}")),
                material: Some(material),
                refusal: Refusal::Denied(" may not call "),
            });
        }
        let outsider = Identity::new("mid-yangtze", "xian", role)?;
        columns.push(Column {
            name: format!("{outsider} (not a member)"),
            key: None,
            material: Some(issued(&pki::issue(ca, &outsider, &[])?)?),
            refusal: Refusal::Denied("xian is not a member of mid-yangtze"),
        });
        let elsewhere = Identity::new("other", "changsha", role)?;
        columns.push(Column {
            name: format!("{elsewhere} (another consortium's name)"),
            key: None,
            material: Some(issued(&pki::issue(ca, &elsewhere, &[])?)?),
            refusal: Refusal::Denied("its consortium is other, not mid-yangtze"),
        });
        let own = Identity::new("mid-yangtze", "changsha", role)?;
        columns.push(Column {
            name: format!("{own} of another CA"),
            key: None,
            material: Some(issued(&pki::issue(&foreign_ca, &own, &[])?)?),
            refusal: Refusal::Alert("UnknownCA"),
        });
        columns.push(Column {
            name: format!("{own} of another CA of the same name"),
            key: None,
            material: Some(issued(&pki::issue(&namesake_ca, &own, &[])?)?),
            refusal: Refusal::Alert("DecryptError"),
        });
        columns.push(Column {
            name: format!("{own}, expired"),
            key: None,
            material: Some(issued(&mint(ca, &[own.spiffe_id()], Validity::Expired)?)?),
            refusal: Refusal::Alert("CertificateExpired"),
        });
    }
    columns.push(Column {
        name: "no client certificate".to_owned(),
        key: None,
        material: None,
        refusal: Refusal::Alert("CertificateRequired"),
    });
    for (what, sans, why) in [
        (
            "unknown role",
            vec!["spiffe://mid-yangtze/changsha/admin".to_owned()],
            r#"unknown role "admin""#,
        ),
        (
            "four segments",
            vec!["spiffe://mid-yangtze/changsha/reader/extra".to_owned()],
            "expected spiffe://<consortium>/<city>/<role>, found 4 segment(s)",
        ),
        (
            "upper-case city",
            vec!["spiffe://mid-yangtze/Changsha/reader".to_owned()],
            r#"city id "Changsha": may hold only a-z, 0-9 and -"#,
        ),
        (
            "no spiffe id",
            vec![],
            "certificate has no spiffe:// URI SAN",
        ),
        (
            "two spiffe ids",
            vec![
                "spiffe://mid-yangtze/changsha/reader".to_owned(),
                "spiffe://mid-yangtze/changsha/operator".to_owned(),
            ],
            "several spiffe:// URI SANs",
        ),
    ] {
        columns.push(Column {
            name: format!("malformed identity ({what})"),
            key: None,
            material: Some(issued(&mint(ca, &sans, Validity::Current)?)?),
            refusal: Refusal::Denied(why),
        });
    }
    Ok(columns)
}

enum Validity {
    Current,
    Expired,
}

/// A client certificate signed by `ca` with exactly the given URI SANs: what
/// `credexctl consortium init` would never issue.
fn mint(ca: &CertifiedKey, uris: &[String], validity: Validity) -> Result<CertifiedKey> {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, KeyPair::from_pem(&ca.key_pem)?)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "odd client");
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into()?));
    }
    if let Validity::Expired = validity {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A client that trusts the consortium CA but presents no certificate of its own.
fn no_client_certificate(sandbox: &Sandbox) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(sandbox.home.ca_cert())?;
    for cert in pem_certs(&pem)? {
        roots.add(cert)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn pem_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject as _;
    Ok(rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?)
}

/// A channel to changsha's node; an error when the connection failed.
async fn connect(sandbox: &Sandbox, config: Arc<rustls::ClientConfig>) -> Result<Channel, String> {
    let server = Identity::new("mid-yangtze", "changsha", Role::Node).expect("an identity");
    tls::connect(&sandbox.addr("changsha").to_string(), &server, config)
        .await
        .map_err(|e| tls::error_chain(&e))
}

/// The TLS alert with which changsha's node refuses a handshake with `config`: a raw handshake,
/// then a read, which returns the alert the server sent once it checked the client's
/// certificate (nothing is written, so no broken pipe can hide it). Anything else is the
/// outcome of a handshake that was not refused.
async fn refused(sandbox: &Sandbox, config: Arc<rustls::ClientConfig>) -> Outcome {
    use tokio::io::AsyncReadExt;
    let tcp = match tokio::net::TcpStream::connect(sandbox.addr("changsha")).await {
        Ok(tcp) => tcp,
        Err(e) => return Outcome::Status(Code::Unavailable, format!("tcp: {e}")),
    };
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a server name");
    let connector = tokio_rustls::TlsConnector::from(config);
    let text = match connector.connect(name, tcp).await {
        Err(e) => e.to_string(),
        Ok(mut stream) => {
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(crate::sandbox::DEADLINE, stream.read(&mut buf)).await;
            match read {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(n)) => format!("handshake accepted ({n} bytes read)"),
                Err(_) => "handshake accepted (no alert)".to_owned(),
            }
        }
    };
    Outcome::Alert(alert(&text))
}

/// `name` of the first `received fatal alert: <name>` in an error text, else the text.
fn alert(text: &str) -> String {
    const ALERT: &str = "received fatal alert: ";
    match text.find(ALERT) {
        Some(start) => text[start + ALERT.len()..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect(),
        None => text.to_owned(),
    }
}

/// Calls `method` with an empty request: the status the node answers; `None` when the
/// connection failed before it answered.
async fn call(channel: Channel, method: &str) -> Option<Outcome> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.ok()?;
    let path = PathAndQuery::from_str(&format!("/{method}")).expect("a path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let answered = if STREAMING.contains(&method) {
        grpc.server_streaming(tonic::Request::new(()), path, codec)
            .await
            .map(drop)
    } else {
        grpc.unary(tonic::Request::new(()), path, codec)
            .await
            .map(drop)
    };
    match answered {
        Ok(()) => Some(Outcome::Status(Code::Ok, String::new())),
        // Statuses the client makes up for a broken connection; the node sends none of them
        // to a request it has read.
        Err(status)
            if matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled
            ) =>
        {
            None
        }
        Err(status) => Some(Outcome::Status(status.code(), status.message().to_owned())),
    }
}
