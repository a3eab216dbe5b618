//! The consortium's development CA and the certificates it issues (rcgen), as
//! `credexctl init` writes them.
//!
//! Every certificate names its holder by one URI SAN `spiffe://<consortium>/<city>/<role>`
//! (see `credex_node::tls`). Node certificates serve and dial, so they carry EKU serverAuth and
//! clientAuth; every other role only dials, so it gets clientAuth alone and cannot pose as a
//! server. Keys are ECDSA P-256, which every TLS stack accepts.

use anyhow::{Context, Result, bail};
use chrono::{Datelike, Days, NaiveDate, Utc};
use credex_node::tls::{Identity, Role, check_label};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::fmt;
use std::net::IpAddr;

/// The CA outlives several rounds of leaf certificates, so members rarely re-pin it.
pub const CA_VALIDITY_DAYS: u64 = 3650;
/// Leaf certificates: 825 days, the longest the CA/Browser Forum ever allowed; long enough for
/// a development consortium, short enough that a leaked key expires.
pub const CERT_VALIDITY_DAYS: u64 = 825;
/// Certificates start a day early so a peer whose clock runs behind still accepts them.
const BACKDATE_DAYS: u64 = 1;

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a secret; Debug output ends up in logs.
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A new self-signed CA for `consortium`, valid for [`CA_VALIDITY_DAYS`] from today.
pub fn generate_ca(consortium: &str) -> Result<CertifiedKey> {
    check_label("consortium name", consortium)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("credex {consortium} CA"));
    // Path length 0: the CA signs leaves only, so a leaked leaf key cannot mint certificates.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY_DAYS)?;
    let key = KeyPair::generate().context("generating the CA key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the CA certificate")?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `identity` signed by `ca`, valid for [`CERT_VALIDITY_DAYS`] from today.
/// `hosts` become DNS or IP SANs (a node's addresses, so generic TLS tools can reach it too).
pub fn issue(ca: &CertifiedKey, identity: &Identity, hosts: &[&str]) -> Result<CertifiedKey> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("reading the CA key")?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).context("reading the CA certificate")?;

    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("{} {}", identity.city, identity.role));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match identity.role {
        Role::Node => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Publisher | Role::Operator | Role::Auditor | Role::Reader | Role::Enforcement => {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        }
    };
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = vec![SanType::URI(
        identity
            .spiffe_id()
            .try_into()
            .context("spiffe id as a URI SAN")?,
    )];
    for host in hosts {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == ':') {
                    bail!("host {host:?} is neither an IP address nor a DNS name");
                }
                SanType::DnsName(
                    (*host)
                        .try_into()
                        .with_context(|| format!("host {host:?}"))?,
                )
            }
        };
        params.subject_alt_names.push(san);
    }
    set_validity(&mut params, CERT_VALIDITY_DAYS)?;

    let key = KeyPair::generate().context("generating a certificate key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .with_context(|| format!("signing the certificate of {identity}"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "credex");
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(params: &mut CertificateParams, days: u64) -> Result<()> {
    let today = Utc::now().date_naive();
    let (year, month, day) = ymd(today.checked_sub_days(Days::new(BACKDATE_DAYS)))?;
    params.not_before = rcgen::date_time_ymd(year, month, day);
    let (year, month, day) = ymd(today.checked_add_days(Days::new(days)))?;
    params.not_after = rcgen::date_time_ymd(year, month, day);
    Ok(())
}

/// rcgen takes dates as numbers (its `time` types are not ours to name).
fn ymd(date: Option<NaiveDate>) -> Result<(i32, u8, u8)> {
    let date = date.context("certificate validity out of the calendar's range")?;
    // chrono guarantees month 1..=12 and day 1..=31, so the narrowing cannot fail.
    let month = u8::try_from(date.month()).context("month out of range")?;
    let day = u8::try_from(date.day()).context("day out of range")?;
    Ok((date.year(), month, day))
}

#[cfg(test)]
mod tests {
    use super::*;
    use credex_node::auth::{Authorizer, Rpc};
    use credex_node::tls::{self, TlsMaterial, peer_identity};
    use credex_proto::v1::operator_client::OperatorClient;
    use credex_proto::v1::operator_server::{Operator, OperatorServer};
    use credex_proto::v1::{
        ListQuarantineRequest, ListQuarantineResponse, StatusRequest, StatusResponse,
    };
    use expect_test::expect;
    use tokio::net::TcpListener;

    const CONSORTIUM: &str = "mid-yangtze";

    fn id(city: &str, role: Role) -> Identity {
        Identity::new(CONSORTIUM, city, role).unwrap()
    }

    fn material(ca: &CertifiedKey, holder: &CertifiedKey) -> TlsMaterial {
        TlsMaterial::from_pem(
            ca.cert_pem.as_bytes(),
            holder.cert_pem.as_bytes(),
            holder.key_pem.as_bytes(),
        )
        .unwrap()
    }

    /// Operator.Status as changsha's node would guard it, answering with the caller's SPIFFE ID
    /// as the server saw it.
    struct EchoOperator {
        auth: Authorizer,
    }

    #[tonic::async_trait]
    impl Operator for EchoOperator {
        async fn status(
            &self,
            request: tonic::Request<StatusRequest>,
        ) -> Result<tonic::Response<StatusResponse>, tonic::Status> {
            let caller = peer_identity(&request);
            self.auth.check(caller, Rpc::Status)?;
            let mut response = tonic::Response::new(StatusResponse::default());
            let caller = caller.map(Identity::spiffe_id).unwrap_or_default();
            response
                .metadata_mut()
                .insert("x-caller", caller.parse().unwrap());
            Ok(response)
        }

        async fn list_quarantine(
            &self,
            _request: tonic::Request<ListQuarantineRequest>,
        ) -> Result<tonic::Response<ListQuarantineResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not part of this test"))
        }

        async fn list_invalid(
            &self,
            _request: tonic::Request<credex_proto::v1::ListInvalidRequest>,
        ) -> Result<tonic::Response<credex_proto::v1::ListInvalidResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not part of this test"))
        }

        async fn list_access(
            &self,
            _request: tonic::Request<credex_proto::v1::ListAccessRequest>,
        ) -> Result<tonic::Response<credex_proto::v1::ListAccessResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not part of this test"))
        }
    }

    struct TestNode {
        addr: String,
        shutdown: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    }

    async fn start_node(tls: TlsMaterial) -> TestNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let incoming = tls::serve_incoming(listener, tls::server_config(&tls).unwrap());
        let service = EchoOperator {
            auth: Authorizer::new(CONSORTIUM, "changsha", ["changsha", "wuhan"]),
        };
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(OperatorServer::new(service))
                .serve_with_incoming_shutdown(incoming, async {
                    signal.await.ok();
                }),
        );
        TestNode {
            addr,
            shutdown,
            task,
        }
    }

    /// Calls Operator.Status as `client`: the caller identity the server reported, or why the
    /// call failed. With TLS 1.3 a server refuses a client certificate after the client's
    /// handshake is done, so the refusal surfaces at connect or at the first call, depending on
    /// which reads the server's alert first; the alert is the stable part.
    async fn status_as(node: &TestNode, client: &TlsMaterial) -> String {
        let refused = |text: String| {
            let port = node.addr.rsplit_once(':').unwrap().1;
            const ALERT: &str = "received fatal alert: ";
            let text = match text.find(ALERT) {
                Some(start) => {
                    let rest = &text[start + ALERT.len()..];
                    let name: String = rest
                        .chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .collect();
                    format!("{ALERT}{name}")
                }
                None => text.replace(port, "PORT"),
            };
            format!("refused: {text}")
        };
        let config = tls::client_config(client).unwrap();
        let channel = match tls::connect(&node.addr, &id("changsha", Role::Node), config).await {
            Ok(channel) => channel,
            Err(error) => return refused(error.to_string()),
        };
        match OperatorClient::new(channel)
            .status(StatusRequest::default())
            .await
        {
            Ok(response) => {
                let caller = response.metadata().get("x-caller").unwrap();
                format!("served {}", caller.to_str().unwrap())
            }
            Err(status) if status.code() == tonic::Code::PermissionDenied => {
                format!("denied: {}", status.message())
            }
            Err(status) => refused(tls::error_chain(&status)),
        }
    }

    #[tokio::test]
    async fn issued_certificates_carry_their_identity_through_mutual_tls() {
        let ca = generate_ca(CONSORTIUM).unwrap();
        let issue_for = |city, role, hosts: &[&str]| issue(&ca, &id(city, role), hosts).unwrap();
        let changsha = issue_for("changsha", Role::Node, &["localhost", "127.0.0.1"]);
        let operator = issue_for("changsha", Role::Operator, &[]);
        let reader = issue_for("changsha", Role::Reader, &[]);
        let wuhan_auditor = issue_for("wuhan", Role::Auditor, &[]);
        for (holder, expected) in [
            (&changsha, "spiffe://mid-yangtze/changsha/node"),
            (&operator, "spiffe://mid-yangtze/changsha/operator"),
        ] {
            let identity = material(&ca, holder).identity().unwrap();
            assert_eq!(identity.spiffe_id(), expected);
        }

        let node = start_node(material(&ca, &changsha)).await;
        let outcomes = [
            status_as(&node, &material(&ca, &operator)).await,
            status_as(&node, &material(&ca, &reader)).await,
            status_as(&node, &material(&ca, &wuhan_auditor)).await,
        ];
        // A certificate for the very same identity from another CA is refused. That CA has the
        // real one's name, so the server finds an issuer by name and its signature check fails.
        let rogue_ca = generate_ca(CONSORTIUM).unwrap();
        let rogue = issue(&rogue_ca, &id("changsha", Role::Operator), &[]).unwrap();
        let rogue_outcome = status_as(&node, &material(&ca, &rogue)).await;
        let outcomes = [&outcomes[..], &[rogue_outcome]].concat().join("\n") + "\n";
        expect![[r#"
            served spiffe://mid-yangtze/changsha/operator
            denied: spiffe://mid-yangtze/changsha/reader may not call Operator.Status on changsha: Operator.Status is for an operator of changsha
            denied: spiffe://mid-yangtze/wuhan/auditor may not call Operator.Status on changsha: Operator.Status is for an operator of changsha
            refused: received fatal alert: DecryptError
        "#]]
        .assert_eq(&outcomes);
        node.shutdown.send(()).unwrap();
        node.task.await.unwrap().unwrap();

        // Only node certificates may serve: a reader's lacks EKU serverAuth.
        let impostor = start_node(material(&ca, &reader)).await;
        let outcome = status_as(&impostor, &material(&ca, &operator)).await;
        expect!["refused: cannot connect to 127.0.0.1:PORT: tls handshake: invalid peer certificate: certificate does not allow extended key usage for server authentication, allows client authentication"]
            .assert_eq(&outcome);
        impostor.shutdown.send(()).unwrap();
        impostor.task.await.unwrap().unwrap();
    }

    #[test]
    fn refuses_bad_names() {
        let ca = generate_ca(CONSORTIUM).unwrap();
        expect![[r#"consortium name "Mid Yangtze": may hold only a-z, 0-9 and -"#]]
            .assert_eq(&generate_ca("Mid Yangtze").unwrap_err().to_string());
        expect![[r#"host "bad host" is neither an IP address nor a DNS name"#]].assert_eq(
            &issue(&ca, &id("changsha", Role::Node), &["bad host"])
                .unwrap_err()
                .to_string(),
        );
    }
}
