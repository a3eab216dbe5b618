//! Mutual TLS for every credex port: consortium-CA certificates, SPIFFE identities, and the glue
//! that runs tonic servers and channels over rustls.
//!
//! # Identities
//! Every certificate carries exactly one URI SAN `spiffe://<consortium>/<city>/<role>`; that, not
//! a host name, is what a peer is. [`Identity`] is its parsed form.
//!
//! # Verification
//! - Servers ([`server_config`]) require a client certificate chaining to the consortium CA
//!   (rustls `WebPkiClientVerifier`, EKU clientAuth). What the client may do is decided per RPC by
//!   [`crate::auth`] from the [`Identity`] that [`peer_identity`] reads out of the request.
//! - Clients ([`client_config`]) verify the server's chain against the consortium CA (EKU
//!   serverAuth) but do not match host names: all cities may sit behind `127.0.0.1` or behind one
//!   load balancer, so a DNS name cannot say *which city* answered. Instead [`connect`] checks,
//!   right after the handshake and before a single request is sent, that the server's SPIFFE ID is
//!   exactly the node identity the caller expects. This is SPIFFE's X509-SVID rule: the ID is the
//!   name that is verified.
//!
//! # Plugging into tonic
//! tonic's own TLS settings cannot take a custom verifier, so the server side accepts TCP itself
//! ([`serve_incoming`], to pass to `Server::serve_with_incoming_shutdown`) and the client side
//! dials through a custom connector ([`connect`], [`connect_lazy`]). ALPN is `h2` on both sides.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};
use x509_parser::extensions::GeneralName;

pub use crate::acceptor::{HandshakeLimits, Incoming};

/// How long [`connect`] and [`connect_lazy`] wait for TCP and the TLS handshake together;
/// [`connect_within`] takes the caller's.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 keep-alive on client channels: a peer that vanishes without closing its socket (a
/// partition, a killed VM) is noticed within interval + timeout, so a live Sync stream reconnects.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// How long a keep-alive ping may go unanswered before the connection counts as dead.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

const ALPN_H2: &[u8] = b"h2";

/// What went wrong loading TLS material, reading an identity or connecting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {source_name}: malformed PEM: {source}")]
    Pem {
        what: &'static str,
        source_name: String,
        source: pem::Error,
    },
    #[error("{what} {source_name}: no PEM certificate in it")]
    NoCertificate {
        what: &'static str,
        source_name: String,
    },
    #[error("private key {source_name}: no PEM private key in it")]
    NoPrivateKey { source_name: String },
    #[error("CA certificate {source_name}: not usable as a trust anchor: {source}")]
    TrustAnchor {
        source_name: String,
        source: rustls::Error,
    },
    #[error("client certificate verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    #[error("{what}: {source}")]
    Rustls {
        what: &'static str,
        source: rustls::Error,
    },
    #[error("certificate is not valid X.509 DER: {reason}")]
    X509 { reason: String },
    #[error("certificate has no spiffe:// URI SAN")]
    NoSpiffeId,
    #[error("certificate has several spiffe:// URI SANs ({uris}); exactly one is allowed")]
    SeveralSpiffeIds { uris: String },
    #[error("spiffe id {uri:?}: {reason}")]
    BadSpiffeId { uri: String, reason: String },
    #[error("{what} {value:?}: {reason}")]
    BadName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "unknown role {0:?}: expected node, publisher, operator, auditor, reader or enforcement"
    )]
    UnknownRole(String),
    #[error("address {addr:?} {reason}")]
    BadAddress { addr: String, reason: &'static str },
    #[error("tcp: {0}")]
    Tcp(#[source] io::Error),
    #[error("tls handshake: {0}")]
    Handshake(#[source] io::Error),
    #[error("{step}: no answer within {after:?}")]
    TimedOut { step: &'static str, after: Duration },
    #[error("server presented no certificate")]
    NoServerCertificate,
    #[error("server certificate: {0}")]
    ServerIdentity(#[source] Box<TlsError>),
    #[error("server is {found}, expected {expected}")]
    WrongServer { expected: Identity, found: Identity },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
}

/// The `[tls]` section of a node's config, and what every client needs: PEM file paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The consortium CA certificate(s) every peer's certificate must chain to.
    pub ca_cert: PathBuf,
    /// This party's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of `cert` (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// What a certificate holder is allowed to be; the last segment of its SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A city's credexd: syncs with and witnesses for peers.
    Node,
    /// A city's own credit platform: publishes that city's records.
    Publisher,
    /// Watches sync health; may also read the view and audit.
    Operator,
    /// Verifies provenance and log consistency.
    Auditor,
    /// A downstream system querying the view.
    Reader,
    /// A court or bank under agreement: queries the view with full ID numbers, stating a
    /// purpose (查询事由) on every request, and every access is logged.
    Enforcement,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Node,
        Role::Publisher,
        Role::Operator,
        Role::Auditor,
        Role::Reader,
        Role::Enforcement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Publisher => "publisher",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Reader => "reader",
            Role::Enforcement => "enforcement",
        }
    }
}

impl FromStr for Role {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| TlsError::UnknownRole(s.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a consortium name or city id ([`credex_core::consortium::check_label`]), naming
/// `what` in the error.
pub fn check_label(what: &'static str, value: &str) -> Result<(), TlsError> {
    credex_core::consortium::check_label(value).map_err(|reason| TlsError::BadName {
        what,
        value: value.to_owned(),
        reason,
    })
}

/// A certificate holder: `spiffe://<consortium>/<city>/<role>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub consortium: String,
    pub city: String,
    pub role: Role,
}

impl Identity {
    /// An identity with checked names.
    pub fn new(consortium: &str, city: &str, role: Role) -> Result<Self, TlsError> {
        check_label("consortium name", consortium)?;
        check_label("city id", city)?;
        Ok(Self {
            consortium: consortium.to_owned(),
            city: city.to_owned(),
            role,
        })
    }

    /// Parses `spiffe://<consortium>/<city>/<role>`.
    pub fn parse_spiffe_id(uri: &str) -> Result<Self, TlsError> {
        let bad = |reason: String| TlsError::BadSpiffeId {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("does not start with spiffe://".to_owned()))?;
        let segments: Vec<&str> = rest.split('/').collect();
        let [consortium, city, role] = segments[..] else {
            return Err(bad(format!(
                "expected spiffe://<consortium>/<city>/<role>, found {} segment(s)",
                segments.len()
            )));
        };
        let role = role.parse().map_err(|e: TlsError| bad(e.to_string()))?;
        Identity::new(consortium, city, role).map_err(|e| bad(e.to_string()))
    }

    /// The SPIFFE ID, `spiffe://<consortium>/<city>/<role>`.
    pub fn spiffe_id(&self) -> String {
        self.to_string()
    }

    /// Reads the identity from a DER certificate's single `spiffe://` URI SAN. Other URI SANs
    /// are ignored; none or several SPIFFE IDs is an error, since the holder would be ambiguous.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::X509 {
            reason: e.to_string(),
        })?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::X509 {
                reason: e.to_string(),
            })?;
        let spiffe_ids: Vec<&str> = san
            .iter()
            .flat_map(|ext| ext.value.general_names.iter())
            .filter_map(|name| match name {
                GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
                _ => None,
            })
            .collect();
        match spiffe_ids[..] {
            [] => Err(TlsError::NoSpiffeId),
            [uri] => Identity::parse_spiffe_id(uri),
            _ => Err(TlsError::SeveralSpiffeIds {
                uris: spiffe_ids.join(", "),
            }),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/{}/{}",
            self.consortium, self.city, self.role
        )
    }
}

/// Loaded PEM material: trust anchors, this party's chain and its key.
#[derive(Debug)]
pub struct TlsMaterial {
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TlsMaterial {
    /// Reads the three PEM files.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        Self::from_named_pem(
            (
                &read("CA certificate", &files.ca_cert)?,
                &files.ca_cert.display().to_string(),
            ),
            (
                &read("certificate", &files.cert)?,
                &files.cert.display().to_string(),
            ),
            (
                &read("private key", &files.key)?,
                &files.key.display().to_string(),
            ),
        )
    }

    /// Parses PEM held in memory (as `credexctl` produces it).
    pub fn from_pem(ca_cert: &[u8], cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        Self::from_named_pem(
            (ca_cert, "(in memory)"),
            (cert, "(in memory)"),
            (key, "(in memory)"),
        )
    }

    fn from_named_pem(
        (ca_pem, ca_name): (&[u8], &str),
        (cert_pem, cert_name): (&[u8], &str),
        (key_pem, key_name): (&[u8], &str),
    ) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for anchor in parse_certs("CA certificate", ca_name, ca_pem)? {
            roots.add(anchor).map_err(|source| TlsError::TrustAnchor {
                source_name: ca_name.to_owned(),
                source,
            })?;
        }
        let chain = parse_certs("certificate", cert_name, cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| match source {
            pem::Error::NoItemsFound => TlsError::NoPrivateKey {
                source_name: key_name.to_owned(),
            },
            source => TlsError::Pem {
                what: "private key",
                source_name: key_name.to_owned(),
                source,
            },
        })?;
        Ok(Self { roots, chain, key })
    }

    /// The identity in this party's own certificate.
    pub fn identity(&self) -> Result<Identity, TlsError> {
        Identity::from_cert_der(&self.chain[0])
    }
}

fn parse_certs(
    what: &'static str,
    source_name: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what,
            source_name: source_name.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            source_name: source_name.to_owned(),
        });
    }
    Ok(certs)
}

/// The process may link several rustls providers; naming ring keeps the choice explicit
/// instead of depending on a process-wide default someone else installs.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config that demands a client certificate chaining to the consortium CA.
pub fn server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(material.roots.clone()),
        provider.clone(),
    )
    .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "server protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain.clone(), material.key.clone_key())
        .map_err(|source| TlsError::Rustls {
            what: "server certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A client config that presents this party's certificate and accepts servers whose certificate
/// chains to the consortium CA and names a `node`. Which node is checked by [`connect`].
pub fn client_config(material: &TlsMaterial) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier {
        roots: material.roots.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "client protocol versions",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(material.chain.clone(), material.key.clone_key())
        .map_err(|source| TlsError::Rustls {
            what: "client certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// [`TlsMaterial::load`] then [`server_config`].
pub fn load_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server_config(&TlsMaterial::load(files)?)
}

/// [`TlsMaterial::load`] then [`client_config`].
pub fn load_client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    client_config(&TlsMaterial::load(files)?)
}

/// Full WebPKI chain validation without host-name matching; see the module doc for why the
/// SPIFFE ID replaces the host name.
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: RootCertStore,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let identity = Identity::from_cert_der(end_entity).map_err(certificate_error)?;
        if identity.role != Role::Node {
            return Err(certificate_error(TlsError::BadSpiffeId {
                uri: identity.spiffe_id(),
                reason: "a server must be a node".to_owned(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn certificate_error(error: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(error),
    )))
}

/// What a server knows about the other end of a connection (see [`peer_identity`]).
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// `None` when the client's certificate, although CA-signed, carries no valid SPIFFE ID;
    /// such a client is refused by every RPC.
    pub identity: Option<Identity>,
}

/// What tonic puts into every request's extensions for a connection from [`serve_incoming`]:
/// the [`PeerInfo`] and, when the client's certificate carries no usable identity, why not —
/// so a refusal can say so (see [`crate::auth::Caller`]).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: PeerInfo,
    pub identity_error: Option<Arc<str>>,
    /// Closes this connection (see [`ConnCloser`]).
    pub closer: ConnCloser,
}

/// Closes one server-side connection from a request handler, for a peer that has stopped
/// taking what it is sent. HTTP/2 gives a server no other way to end such a stream: while the
/// stream's window is shut hyper does not poll the response body, so neither its end nor an
/// error reaches the peer, and the stream, its buffered frames and its call slot stay held for
/// as long as the peer keeps the connection open.
#[derive(Debug, Clone, Default)]
pub struct ConnCloser(Arc<ConnClosed>);

#[derive(Debug, Default)]
struct ConnClosed {
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl ConnCloser {
    /// Ends the connection: its next read fails, so hyper drops it with every stream on it.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    /// Whether [`Self::close`] was called; if not, `cx` is woken when it is.
    fn poll_closed(&self, cx: &Context<'_>) -> bool {
        self.0.waker.register(cx.waker());
        self.0.closed.load(Ordering::Acquire)
    }
}

/// The identity of the client that sent `request`, if it came over [`serve_incoming`].
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Option<&Identity> {
    peer_info(request)?.identity.as_ref()
}

/// The connection details of the client that sent `request`, if it came over
/// [`serve_incoming`] (or, in adapter tests without a connection, a [`PeerInfo`] put into the
/// extensions directly).
pub fn peer_info<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
    let extensions = request.extensions();
    extensions
        .get::<ConnInfo>()
        .map(|conn| &conn.peer)
        .or_else(|| extensions.get::<PeerInfo>())
}

/// Why the certificate of the client that sent `request` carries no usable identity, when it
/// does not.
pub fn identity_error<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .extensions()
        .get::<ConnInfo>()?
        .identity_error
        .as_deref()
}

/// A server-side TLS connection whose client identity was read once, at the handshake.
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    conn: ConnInfo,
}

impl TlsConn {
    pub fn peer(&self) -> &PeerInfo {
        &self.conn.peer
    }
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("peer", &self.conn.peer)
            .finish_non_exhaustive()
    }
}

impl Connected for TlsConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.conn.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // hyper always has a read pending on a connection, so this is where a close is seen.
        if self.conn.closer.poll_closed(cx) {
            return Poll::Ready(Err(closed_by_server()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

fn closed_by_server() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by the server",
    )
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.conn.closer.poll_closed(cx) {
            return Poll::Ready(Err(closed_by_server()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The TLS connections arriving on `listener`, for `Server::serve_with_incoming_shutdown`, with
/// the default [`HandshakeLimits`] and no metrics; `credexd` uses [`Incoming::new`] with its
/// config's. See [`crate::acceptor`] for how handshakes are bounded.
pub fn serve_incoming(listener: TcpListener, tls: Arc<ServerConfig>) -> Incoming {
    Incoming::new(listener, tls, HandshakeLimits::default(), None)
}

/// The server side of one connection's TLS handshake, and the client identity it carries.
/// [`crate::acceptor`] runs it under the handshake deadline.
pub(crate) async fn server_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
) -> io::Result<TlsConn> {
    let stream = acceptor.accept(stream).await?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first());
    let (identity, identity_error) = match leaf.map(|der| Identity::from_cert_der(der)) {
        Some(Ok(identity)) => (Some(identity), None),
        Some(Err(error)) => {
            warn!(%remote, %error, "client certificate has no usable identity");
            (None, Some(error.to_string().into()))
        }
        None => (None, None),
    };
    debug!(%remote, identity = identity.as_ref().map(tracing::field::display), "tls connection accepted");
    Ok(TlsConn {
        stream,
        conn: ConnInfo {
            peer: PeerInfo {
                remote_addr: Some(remote),
                identity,
            },
            identity_error,
            closer: ConnCloser::default(),
        },
    })
}

/// Opens a channel to the node at `addr` (`host:port`) over mutual TLS and fails unless the
/// server proves to be `server` (its SPIFFE ID). The channel redials through the same checks
/// whenever it reconnects.
pub async fn connect(
    addr: &str,
    server: &Identity,
    tls: Arc<ClientConfig>,
) -> Result<Channel, TlsError> {
    connect_within(addr, server, tls, CONNECT_TIMEOUT).await
}

/// [`connect`] with the caller's deadline for TCP and the TLS handshake together (and for every
/// reconnection of the channel).
pub async fn connect_within(
    addr: &str,
    server: &Identity,
    tls: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Channel, TlsError> {
    let (endpoint, connector) = dialer(addr, server, tls, timeout)?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|error| TlsError::Connect {
            addr: addr.to_owned(),
            reason: dial_failure(&error),
        })
}

/// Like [`connect`] but dials on first use, so a peer that is down now does not fail the call.
pub fn connect_lazy(
    addr: &str,
    server: &Identity,
    tls: Arc<ClientConfig>,
) -> Result<Channel, TlsError> {
    let (endpoint, connector) = dialer(addr, server, tls, CONNECT_TIMEOUT)?;
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// The connector tonic calls for every (re)connection: TCP, TLS, then the SPIFFE ID check.
#[derive(Clone)]
struct Dialer {
    addr: Arc<str>,
    server: Arc<Identity>,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    timeout: Duration,
}

type ClientTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

fn dialer(
    addr: &str,
    server: &Identity,
    tls: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<(Endpoint, Dialer), TlsError> {
    let server_name = server_name(addr)?;
    // The URI only supplies the :authority header; the Dialer does the dialling, so the scheme
    // is http to keep tonic from wrapping the stream in TLS of its own.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| TlsError::BadAddress {
            addr: addr.to_owned(),
            reason: "is not a valid URI authority",
        })?
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let dialer = Dialer {
        addr: addr.into(),
        server: Arc::new(server.clone()),
        server_name,
        connector: TlsConnector::from(tls),
        timeout,
    };
    Ok((endpoint, dialer))
}

impl tower::Service<http::Uri> for Dialer {
    type Response = TokioIo<ClientTlsStream>;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, TlsError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TlsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move { dialer.dial().await.map(TokioIo::new) })
    }
}

impl Dialer {
    /// TCP, TLS and the identity check, all within the dialer's one deadline (the dialer
    /// enforces it rather than tonic's `connect_timeout`, so the error says which step hung).
    async fn dial(&self) -> Result<ClientTlsStream, TlsError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = |step| TlsError::TimedOut {
            step,
            after: self.timeout,
        };
        let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(&*self.addr))
            .await
            .map_err(|_| timed_out("tcp connect"))?
            .map_err(TlsError::Tcp)?;
        tcp.set_nodelay(true).map_err(TlsError::Tcp)?;
        let handshake = self.connector.connect(self.server_name.clone(), tcp);
        let stream = tokio::time::timeout_at(deadline, handshake)
            .await
            .map_err(|_| timed_out("tls handshake"))?
            .map_err(TlsError::Handshake)?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .ok_or(TlsError::NoServerCertificate)?;
        let found = Identity::from_cert_der(leaf)
            .map_err(|source| TlsError::ServerIdentity(Box::new(source)))?;
        if found != *self.server {
            return Err(TlsError::WrongServer {
                expected: (*self.server).clone(),
                found,
            });
        }
        Ok(stream)
    }
}

/// The TLS server name for `host:port` (or `[v6]:port`): sent as SNI when it is a DNS name, never
/// matched against the certificate (see the module doc).
fn server_name(addr: &str) -> Result<ServerName<'static>, TlsError> {
    parse_address(addr).map_err(|reason| TlsError::BadAddress {
        addr: addr.to_owned(),
        reason,
    })
}

/// Checks a peer address, `host:port` or `[ipv6]:port`, and returns its host; the error says
/// what is wrong with it.
pub fn parse_address(addr: &str) -> Result<ServerName<'static>, &'static str> {
    // The consortium file's addresses are checked by the same rule, in the core.
    credex_core::consortium::check_address(addr)?;
    let (host, _) = credex_core::consortium::split_address(addr)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned())
        .map_err(|_| "has a host that is neither an IP address nor a DNS name")
}

/// Why dialling failed: the [`Dialer`]'s own error when there is one (tonic wraps it in a
/// generic "transport error"), else the whole chain of causes.
fn dial_failure(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<TlsError>() {
            return tls.to_string();
        }
        source = cause.source();
    }
    error_chain(error)
}

/// `error: cause: cause`, since tonic's transport errors hide the useful part in their sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};
    use std::sync::Mutex;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    const CA: &[u8] = include_bytes!("../tests/fixtures/tls/ca.pem");

    /// The core checks the consortium file's addresses without rustls; the oracle is rustls's
    /// own server-name parser, which the dialer uses on the same hosts.
    #[test]
    fn the_core_accepts_the_hosts_rustls_accepts() {
        let hosts = [
            "wuhan.example",
            "wuhan.example.",
            "WUHAN.Example",
            "node_1",
            "a-b.c",
            "x",
            "127.0.0.1",
            "::1",
            "fe80::1",
            "",
            ".",
            "..",
            "a..b",
            "-a",
            "a-",
            "a.-b",
            "1.2.3",
            "1.2.3.4.5",
            "0x1f",
            "a.0x1f",
            "a.0xg",
            "a.123",
            "a.0",
            "123a",
            "长沙.example",
            "a b",
            "a/b",
            "a:b",
            &"a".repeat(63),
            &"a".repeat(64),
            &["a"; 127].join("."),
            &["a"; 128].join("."),
        ];
        for host in hosts {
            let addr = if host.contains(':') {
                format!("[{host}]:7001")
            } else {
                format!("{host}:7001")
            };
            let core = credex_core::consortium::check_address(&addr).is_ok();
            let rustls = ServerName::try_from(host.to_owned()).is_ok();
            assert_eq!(
                core, rustls,
                "{host:?}: the core says {core}, rustls {rustls}"
            );
        }
    }
    const OTHER_CA: &[u8] = include_bytes!("../tests/fixtures/tls/other-ca.pem");

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../tests/fixtures/tls/", $name))
        };
    }

    fn material(ca: &[u8], name: &str) -> TlsMaterial {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
        let cert = std::fs::read(format!("{dir}/{name}.pem")).unwrap();
        let key = std::fs::read(format!("{dir}/{name}.key")).unwrap();
        TlsMaterial::from_pem(ca, &cert, &key).unwrap()
    }

    fn node(city: &str) -> Identity {
        Identity::new("mid-yangtze", city, Role::Node).unwrap()
    }

    fn first_der(pem: &[u8]) -> Vec<u8> {
        parse_certs("certificate", "test", pem).unwrap()[0].to_vec()
    }

    #[test]
    fn parses_spiffe_ids() {
        fn check(uri: &str, expect: Expect) {
            let actual = match Identity::parse_spiffe_id(uri) {
                Ok(id) => format!("{} / {} / {:?} -> {id}", id.consortium, id.city, id.role),
                Err(e) => format!("error: {e}"),
            };
            expect.assert_eq(&actual);
        }
        check(
            "spiffe://mid-yangtze/changsha/node",
            expect!["mid-yangtze / changsha / Node -> spiffe://mid-yangtze/changsha/node"],
        );
        check(
            "spiffe://c1/x-2/reader",
            expect!["c1 / x-2 / Reader -> spiffe://c1/x-2/reader"],
        );
        check(
            "https://mid-yangtze/changsha/node",
            expect![[
                r#"error: spiffe id "https://mid-yangtze/changsha/node": does not start with spiffe://"#
            ]],
        );
        check(
            "spiffe://mid-yangtze/changsha",
            expect![[
                r#"error: spiffe id "spiffe://mid-yangtze/changsha": expected spiffe://<consortium>/<city>/<role>, found 2 segment(s)"#
            ]],
        );
        check(
            "spiffe://mid-yangtze/changsha/node/extra",
            expect![[
                r#"error: spiffe id "spiffe://mid-yangtze/changsha/node/extra": expected spiffe://<consortium>/<city>/<role>, found 4 segment(s)"#
            ]],
        );
        check(
            "spiffe://mid-yangtze/changsha/admin",
            expect![[
                r#"error: spiffe id "spiffe://mid-yangtze/changsha/admin": unknown role "admin": expected node, publisher, operator, auditor, reader or enforcement"#
            ]],
        );
        check(
            "spiffe://mid-yangtze/ChangSha/node",
            expect![[
                r#"error: spiffe id "spiffe://mid-yangtze/ChangSha/node": city id "ChangSha": may hold only a-z, 0-9 and -"#
            ]],
        );
        check(
            "spiffe:///changsha/node",
            expect![[
                r#"error: spiffe id "spiffe:///changsha/node": consortium name "": is empty"#
            ]],
        );
        check(
            "spiffe://mid-yangtze/-changsha/node",
            expect![[
                r#"error: spiffe id "spiffe://mid-yangtze/-changsha/node": city id "-changsha": may not start or end with -"#
            ]],
        );
        check(
            &format!("spiffe://{}/changsha/node", "a".repeat(64)),
            expect![[
                r#"error: spiffe id "spiffe://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/changsha/node": consortium name "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": is longer than 63 characters"#
            ]],
        );
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        expect![[r#"unknown role "Node": expected node, publisher, operator, auditor, reader or enforcement"#]]
            .assert_eq(&"Node".parse::<Role>().unwrap_err().to_string());
    }

    #[test]
    fn reads_identity_from_certificates() {
        fn check(der: &[u8], expect: Expect) {
            let actual = match Identity::from_cert_der(der) {
                Ok(id) => id.to_string(),
                Err(e) => format!("error: {e}"),
            };
            expect.assert_eq(&actual);
        }
        check(
            &first_der(fixture!("changsha-node.pem")),
            expect!["spiffe://mid-yangtze/changsha/node"],
        );
        check(
            &first_der(fixture!("changsha-reader.pem")),
            expect!["spiffe://mid-yangtze/changsha/reader"],
        );
        check(
            &first_der(fixture!("no-spiffe.pem")),
            expect!["error: certificate has no spiffe:// URI SAN"],
        );
        check(
            &first_der(fixture!("two-spiffe.pem")),
            expect![
                "error: certificate has several spiffe:// URI SANs (spiffe://mid-yangtze/changsha/node, spiffe://mid-yangtze/wuhan/node); exactly one is allowed"
            ],
        );
        check(
            &first_der(fixture!("bad-role.pem")),
            expect![[
                r#"error: spiffe id "spiffe://mid-yangtze/changsha/admin": unknown role "admin": expected node, publisher, operator, auditor, reader or enforcement"#
            ]],
        );
        check(
            b"not a certificate",
            expect!["error: certificate is not valid X.509 DER: Parsing Error: NomError(Eof)"],
        );
    }

    #[test]
    fn reports_bad_tls_material() {
        fn check(result: Result<TlsMaterial, TlsError>, expect: Expect) {
            expect.assert_eq(&result.unwrap_err().to_string());
        }
        let cert = fixture!("changsha-node.pem");
        let key = fixture!("changsha-node.key");
        check(
            TlsMaterial::from_pem(b"", cert, key),
            expect!["CA certificate (in memory): no PEM certificate in it"],
        );
        check(
            TlsMaterial::from_pem(CA, key, key),
            expect!["certificate (in memory): no PEM certificate in it"],
        );
        check(
            TlsMaterial::from_pem(CA, cert, cert),
            expect!["private key (in memory): no PEM private key in it"],
        );
        check(
            TlsMaterial::from_pem(
                CA,
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                key,
            ),
            expect![
                "certificate (in memory): malformed PEM: base64 decode error: InvalidCharacter(33)"
            ],
        );
        check(
            TlsMaterial::load(&TlsFiles {
                ca_cert: "/nonexistent/ca.pem".into(),
                cert: "/nonexistent/cert.pem".into(),
                key: "/nonexistent/key.pem".into(),
            }),
            expect![
                "cannot read CA certificate /nonexistent/ca.pem: No such file or directory (os error 2)"
            ],
        );
        // A key that does not belong to the certificate is caught when the config is built.
        let mismatched = TlsMaterial::from_pem(CA, cert, fixture!("wuhan-node.key")).unwrap();
        expect!["server certificate and key: keys may not be consistent: KeyMismatch"]
            .assert_eq(&server_config(&mismatched).unwrap_err().to_string());
    }

    #[test]
    fn derives_server_names_from_addresses() {
        fn check(addr: &str, expect: Expect) {
            let actual = match server_name(addr) {
                Ok(name) => format!("{name:?}"),
                Err(e) => format!("error: {e}"),
            };
            expect.assert_eq(&actual);
        }
        check(
            "127.0.0.1:7001",
            expect!["IpAddress(V4(Ipv4Addr([127, 0, 0, 1])))"],
        );
        check(
            "[::1]:7001",
            expect!["IpAddress(V6(Ipv6Addr([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])))"],
        );
        check(
            "changsha.credex.internal:7001",
            expect![[r#"DnsName("changsha.credex.internal")"#]],
        );
        check(
            "changsha",
            expect![[r#"error: address "changsha" is not host:port"#]],
        );
        check(
            "changsha:0",
            expect![[
                r#"error: address "changsha:0" has a port that is not a number from 1 to 65535"#
            ]],
        );
        check(
            "changsha:99999",
            expect![[
                r#"error: address "changsha:99999" has a port that is not a number from 1 to 65535"#
            ]],
        );
        check(
            "[::1]7001",
            expect![[r#"error: address "[::1]7001" is not [ipv6]:port"#]],
        );
        check(
            "bad host:7001",
            expect![[
                r#"error: address "bad host:7001" has a host that is neither an IP address nor a DNS name"#
            ]],
        );
    }

    /// A health server on 127.0.0.1 behind [`serve_incoming`], recording the identity of every
    /// request's caller as the request extensions show it.
    struct TestServer {
        addr: String,
        seen: Arc<Mutex<Vec<String>>>,
        shutdown: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    }

    impl TestServer {
        async fn start(material: &TlsMaterial) -> Self {
            Self::start_with(material, HandshakeLimits::default(), None).await
        }

        async fn start_with(
            material: &TlsMaterial,
            limits: HandshakeLimits,
            metrics: Option<crate::metrics::Metrics>,
        ) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let incoming =
                Incoming::new(listener, server_config(material).unwrap(), limits, metrics);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let record = seen.clone();
            let interceptor = move |request: tonic::Request<()>| {
                let who = peer_identity(&request).map_or("(none)".to_owned(), |id| id.to_string());
                record.lock().unwrap().push(who);
                Ok(request)
            };
            let (_, health) = tonic_health::server::health_reporter();
            let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(
                tonic::transport::Server::builder()
                    .layer(tonic::service::InterceptorLayer::new(interceptor))
                    .add_service(health)
                    .serve_with_incoming_shutdown(incoming, async {
                        signal.await.ok();
                    }),
            );
            Self {
                addr,
                seen,
                shutdown,
                task,
            }
        }

        async fn stop(self) {
            self.shutdown.send(()).unwrap();
            self.task.await.unwrap().unwrap();
        }
    }

    async fn health_check(channel: Channel) -> Result<i32, tonic::Status> {
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await?;
        Ok(response.into_inner().status)
    }

    /// Connects and makes one call; the error text of whichever step failed, with the
    /// server's ephemeral port written as PORT.
    async fn call(addr: &str, server: &Identity, client: &TlsMaterial) -> Result<i32, String> {
        let port = addr.rsplit_once(':').unwrap().1;
        let channel = connect(addr, server, client_config(client).unwrap())
            .await
            .map_err(|e| e.to_string().replace(port, "PORT"))?;
        health_check(channel).await.map_err(|e| error_chain(&e))
    }

    /// With TLS 1.3 a server rejects a client certificate after the client has finished its
    /// handshake, so the rejection surfaces at connect or at the first call, depending on which
    /// reads the server's alert first; either way the alert is the stable part.
    async fn refusal(addr: &str, server: &Identity, client: &TlsMaterial) -> String {
        let text = match connect(addr, server, client_config(client).unwrap()).await {
            Err(e) => e.to_string(),
            Ok(channel) => error_chain(&health_check(channel).await.unwrap_err()),
        };
        tls_alert(&text).unwrap_or(text)
    }

    /// `received fatal alert: <name>` out of an error text, if it holds one.
    fn tls_alert(text: &str) -> Option<String> {
        const ALERT: &str = "received fatal alert: ";
        let start = text.find(ALERT)? + ALERT.len();
        let name: String = text[start..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        Some(format!("{ALERT}{name}"))
    }

    #[tokio::test]
    async fn serves_mutual_tls_and_exposes_the_client_identity() {
        let server = TestServer::start(&material(CA, "changsha-node")).await;
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;

        // A client that sends nothing must not hold up the handshakes of others.
        let _stalled = TcpStream::connect(&server.addr).await.unwrap();

        let wuhan = material(CA, "wuhan-node");
        assert_eq!(
            call(&server.addr, &node("changsha"), &wuhan).await,
            Ok(serving)
        );
        let reader = material(CA, "changsha-reader");
        assert_eq!(
            call(&server.addr, &node("changsha"), &reader).await,
            Ok(serving)
        );

        // The server is changsha: a client expecting wuhan there refuses it.
        let refused = call(&server.addr, &node("wuhan"), &wuhan).await;
        expect!["cannot connect to 127.0.0.1:PORT: server is spiffe://mid-yangtze/changsha/node, expected spiffe://mid-yangtze/wuhan/node"]
            .assert_eq(&refused.unwrap_err());
        // A certificate from another CA is refused by the server...
        let intruder = material(CA, "intruder");
        expect!["received fatal alert: UnknownCA"]
            .assert_eq(&refusal(&server.addr, &node("changsha"), &intruder).await);
        // ...and a client that does not trust the consortium CA refuses the server.
        let distrustful = material(OTHER_CA, "wuhan-node");
        let refused = call(&server.addr, &node("changsha"), &distrustful).await;
        expect!["cannot connect to 127.0.0.1:PORT: tls handshake: invalid peer certificate: UnknownIssuer"]
            .assert_eq(&refused.unwrap_err());

        // Failed handshakes are skipped, not fatal: the server still serves.
        assert_eq!(
            call(&server.addr, &node("changsha"), &wuhan).await,
            Ok(serving)
        );
        expect![[r#"
            [
                "spiffe://mid-yangtze/wuhan/node",
                "spiffe://mid-yangtze/changsha/reader",
                "spiffe://mid-yangtze/wuhan/node",
            ]
        "#]]
        .assert_debug_eq(&server.seen.lock().unwrap());
        server.stop().await;
    }

    /// Waits (up to a minute) until the node closes `socket`: EOF or a reset.
    async fn closed(socket: &mut TcpStream) -> Duration {
        use tokio::io::AsyncReadExt;
        let started = std::time::Instant::now();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
        started.elapsed()
    }

    #[tokio::test]
    async fn a_silent_client_is_closed_at_the_handshake_deadline() {
        let timeout = Duration::from_millis(300);
        let limits = HandshakeLimits {
            timeout,
            ..HandshakeLimits::default()
        };
        let metrics = crate::metrics::Metrics::new("changsha");
        let server = TestServer::start_with(
            &material(CA, "changsha-node"),
            limits,
            Some(metrics.clone()),
        )
        .await;
        let mut silent = TcpStream::connect(&server.addr).await.unwrap();
        let open_for = closed(&mut silent).await;
        // The deadline runs from the server's accept, which follows the client's connect.
        assert!(open_for >= timeout, "closed after {open_for:?}");
        assert!(
            open_for < timeout + Duration::from_secs(5),
            "closed after {open_for:?}"
        );
        let text = metrics.encode();
        let line = r#"credex_tls_handshakes_dropped_total{city="changsha",reason="timeout"} 1"#;
        assert!(text.contains(line), "{line} in\n{text}");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_real_client_beyond_the_source_limit_closes_the_oldest_silent_connection() {
        let limits = HandshakeLimits {
            timeout: Duration::from_secs(60),
            max_pending: 512,
            max_pending_per_source: 4,
        };
        let metrics = crate::metrics::Metrics::new("changsha");
        let server = TestServer::start_with(
            &material(CA, "changsha-node"),
            limits,
            Some(metrics.clone()),
        )
        .await;
        let mut silent = Vec::new();
        for _ in 0..limits.max_pending_per_source {
            silent.push(TcpStream::connect(&server.addr).await.unwrap());
        }
        // The same source (127.0.0.1) is at its limit, yet a real client is served...
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        let wuhan = material(CA, "wuhan-node");
        assert_eq!(
            call(&server.addr, &node("changsha"), &wuhan).await,
            Ok(serving)
        );
        // ...because the oldest silent connection made room for it, and only that one.
        closed(&mut silent[0]).await;
        for socket in &silent[1..] {
            let mut byte = [0u8; 1];
            let read = socket.try_read(&mut byte);
            assert!(
                matches!(&read, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
                "{read:?}"
            );
        }
        let text = metrics.encode();
        for line in [
            r#"credex_tls_handshakes_dropped_total{city="changsha",reason="source_limit"} 1"#,
            r#"credex_tls_handshakes_pending{city="changsha"} 3"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        server.stop().await;
    }
}
