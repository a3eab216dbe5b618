//! The node's TOML config and the consortium file it points to: typed, validated in one step,
//! with environment overrides passed in as a map.
//!
//! # Node config
//! ```toml
//! [node]
//! city = "changsha"                      # this city's id in the consortium
//! consortium_file = "consortium.toml"
//! data_dir = "data/changsha"
//! listen = "0.0.0.0:7001"                # gRPC, mutual TLS
//!
//! [admin]                                # optional: the admin HTTP listener (crate::admin)
//! listen = "127.0.0.1:9101"              # /metrics, /healthz, /readyz, the console
//! client_tls = false                     # HTTPS, client certificates of this city's operator
//! token_file = "admin.token"             # optional: requests need Authorization: Bearer <it>
//! ready_max_lag = 1024                   # /readyz: most entries any origin may be behind
//!
//! [tls]                                  # PEM files
//! ca_cert = "ca.pem"                     # optional: defaults to the consortium's ca_cert
//! cert = "changsha-node.pem"
//! key = "changsha-node.key"
//!
//! [keys]                                 # files holding signed-note signer keys
//! log_key = "changsha-log.key"
//! witness_key = "changsha-witness.key"
//!
//! [[peers]]                              # optional: defaults to every other member at its
//! city = "wuhan"                         # consortium address; may be any subset of them
//! address = "wuhan.example:7001"
//!
//! [sync]                                 # all optional, defaults shown
//! batch_max_entries = 256
//! reconnect_backoff_min_ms = 100
//! reconnect_backoff_max_ms = 30000
//!
//! [storage]                              # optional
//! cache_mb = 32                          # sled page cache, MiB (8 to 65536)
//! index_mb = 16                          # view index writes held in memory before a run is written, MiB (1 to 4096)
//! index_cache_mb = 8                     # decompressed view index blocks kept for reads, MiB (1 to 4096)
//! leaf_cache_mb = 2                      # decompressed leaf blocks (64 KiB each) kept for reads, MiB (1 to 4096)
//! min_free_mb = 64                       # writes refused while less is free on the store's volume, MiB (0: off, to 1048576)
//!
//! [limits]                               # all optional, defaults shown (see crate::acceptor)
//! handshake_timeout_ms = 3000            # accept to finished TLS handshake (100 to 60000)
//! max_pending_handshakes = 512           # in flight; beyond, the oldest is closed (1 to 65536)
//! max_pending_handshakes_per_source = 64 # per IPv4 address or IPv6 /64 (1 to the above)
//! max_request_bytes = 16777216           # a gRPC message received, every service and sync (8 MiB to 1 GiB)
//! max_response_bytes = 67108864          # a gRPC message sent, every service (8 MiB to 1 GiB)
//! max_concurrent_streams = 128           # HTTP/2 streams per connection (1 to 65536)
//! max_calls_per_client = 64              # RPCs in flight per SPIFFE ID, all its connections (1 to 65536)
//! requests_per_second = 200              # per SPIFFE ID on Publisher, View, Audit, Operator (1 to 1000000)
//! request_burst = 400                    # the token bucket's size (1 to 1000000)
//! request_timeout_ms = 60000             # a call's request read and answer, streams' headers (100 to 3600000)
//! sync_idle_timeout_ms = 30000           # a Sync stream with no frame this long is redialled (1000 to 3600000)
//! sync_send_timeout_ms = 30000           # a served frame the peer does not take this long ends it (1000 to 3600000)
//! sync_buffered_entries = 16384          # per origin, waiting for a checkpoint (1 to 1048576)
//! sync_buffered_bytes = 67108864         # the same in bytes (8 MiB to 1 GiB)
//! quarantine_backoff_min_ms = 10000      # redial a peer whose entries were quarantined after (100 to 3600000)
//! quarantine_backoff_max_ms = 600000     # doubling up to this, with jitter (min to 3600000)
//! sync_relay_holdback_ms = 250           # a third origin's new entries wait this long before they are relayed (0 to 60000)
//!
//! [recognition]                          # credex_core::policy::RecognitionPolicy
//!
//! [log]
//! filter = "info"                        # tracing EnvFilter syntax
//! format = "text"                        # or "json"
//! ```
//! Relative paths resolve against the folder of the file that holds them (environment
//! overrides included), so a config folder can move as a whole.
//!
//! # Environment overrides
//! | variable | key | |
//! |---|---|---|
//! | `CREDEX_LISTEN` | `node.listen` | |
//! | `CREDEX_DATA_DIR` | `node.data_dir` | |
//! | `CREDEX_ADMIN_LISTEN` | `admin.listen` | empty turns the admin listener off |
//! | `CREDEX_METRICS_LISTEN` | `admin.listen` | its old name, still read |
//! | `CREDEX_ADMIN_TOKEN_FILE` | `admin.token_file` | |
//! | `CREDEX_LOG` | `log.filter` | |
//! | `CREDEX_LOG_FORMAT` | `log.format` | |
//! | `CREDEX_PEERS` | `peers` | `city=host:port,city=host:port`; empty means no peers |
//!
//! Other `CREDEX_*` variables are left to their users (the binaries' flags).
//!
//! `node.metrics_listen`, the admin listener's address before it served more than metrics, is
//! still read as `admin.listen`; a file that sets both is refused.
//!
//! Rules that decide whether a record is valid are not node config: they are the consortium's,
//! in its file's `[rules]`, so that every member judges every entry the same way. A node config
//! that still has the old `[identifiers] legacy_uscc_allow_list` is refused with a message
//! saying where it moved.
//!
//! # Consortium file
//! [`Consortium`] (`credex_core::consortium`, re-exported here): the trust root every node and
//! auditor pins, parsed by [`Consortium::parse`]; [`load_consortium`] reads it from disk.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use credex_core::consortium::{Consortium, ConsortiumError, Member, RulesConfig};
use credex_core::keys::{KeyError, PublicKey, SigningKeyPair};
use credex_core::policy::{PolicyError, RecognitionPolicy};
use serde::{Deserialize, Serialize};

use crate::acceptor::HandshakeLimits;
use crate::tls::{Identity, Role, TlsFiles, check_label, parse_address};

/// Bounds of `[sync]`: a batch is one atomic write and one checkpoint, so it must stay small
/// enough to commit quickly, and the backoff must neither spin nor give up on a peer for hours.
const BATCH_MAX_ENTRIES: (u64, u64) = (1, 10_000);
const STORAGE_CACHE_MB: (u64, u64) = (8, 65_536);
/// `storage.index_mb`, `storage.index_cache_mb` and `storage.leaf_cache_mb`.
const STORAGE_INDEX_MB: (u64, u64) = (1, 4096);
/// Up to 1 TiB, so the bytes fit any volume's figures.
const STORAGE_MIN_FREE_MB: (u64, u64) = (0, 1 << 20);
const BACKOFF_MS: (u64, u64) = (1, 3_600_000);
/// Bounds of `[limits]`: a handshake deadline below 100 ms would fail real clients on a slow
/// link, one above a minute would let a silent client hold its slot for that long; the pending
/// bound must stay below any sane descriptor limit.
const HANDSHAKE_TIMEOUT_MS: (u64, u64) = (100, 60_000);
const MAX_PENDING_HANDSHAKES: (u64, u64) = (1, 65_536);
/// A message limit below 8 MiB would refuse honest publish batches (`credexctl` sends about
/// 4 MiB) and sync frames (up to `sync::FRAME_BYTES`, 4 MiB); above 1 GiB one message could take
/// a node's memory.
const MESSAGE_BYTES: (u64, u64) = (8 << 20, 1 << 30);
const COUNT: (u64, u64) = (1, 65_536);
const RATE: (u64, u64) = (1, 1_000_000);
const REQUEST_TIMEOUT_MS: (u64, u64) = (100, 3_600_000);
/// A sync deadline below a second would drop streams between the serving side's heartbeats.
const SYNC_TIMEOUT_MS: (u64, u64) = (1_000, 3_600_000);
const BUFFERED_ENTRIES: (u64, u64) = (1, 1 << 20);
const QUARANTINE_BACKOFF_MS: (u64, u64) = (100, 3_600_000);
const RELAY_HOLDBACK_MS: (u64, u64) = (0, 60_000);
/// Bounds of `admin.ready_max_lag`: entries an origin may be behind and the node still ready.
const READY_MAX_LAG: (u64, u64) = (0, 100_000_000);

/// What is wrong with a config or consortium file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {path}: {source}")]
    Parse {
        what: &'static str,
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// `value` is shown as written (strings quoted); it is left out for secrets.
    #[error("{path}: {what} key {key}: {value}{problem}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        key: String,
        value: String,
        problem: String,
    },
    #[error("{path}: {source}")]
    Policy { path: PathBuf, source: PolicyError },
    #[error("{path}: {what} in it: {source}")]
    SignerKey {
        what: &'static str,
        path: PathBuf,
        source: KeyError,
    },
    #[error(
        "{path}: {what} {found} is not the one the consortium pins for {city} ({expected}+{expected_id:08x})",
        found = format_args!("{}+{:08x}", .found, .found_id)
    )]
    SignerKeyMismatch {
        what: &'static str,
        path: PathBuf,
        city: String,
        found: String,
        found_id: u32,
        expected: String,
        expected_id: u32,
    },
    #[error("cannot write {what} as TOML: {source}")]
    Encode {
        what: &'static str,
        source: toml::ser::Error,
    },
    #[error(transparent)]
    Consortium(#[from] ConsortiumError),
}

/// A node's validated config. Built by [`Config::load`]; `credexctl` builds one directly and
/// writes it with [`Config::to_toml`].
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub node: NodeConfig,
    pub tls: TlsFiles,
    pub keys: KeyFiles,
    pub peers: Vec<PeerConfig>,
    pub sync: SyncConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub admin: AdminConfig,
    /// Its own origin is set to `node.city` by [`Config::load`].
    pub recognition: RecognitionPolicy,
    pub log: LogConfig,
    /// The consortium file `node.consortium_file` names, loaded and validated with the config.
    #[serde(skip)]
    pub consortium: Consortium,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    pub city: String,
    pub consortium_file: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
}

/// `[admin]`: the admin HTTP listener (`crate::admin`): metrics, health probes, the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminConfig {
    /// None: no admin listener. Beyond loopback only with `client_tls` or `token_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// HTTPS with the node's certificate, admitting only clients holding a certificate the
    /// consortium CA issued to this city's `operator`.
    pub client_tls: bool,
    /// A file holding the bearer token every request must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// `/readyz` fails while an origin's view is more than this many entries behind the
    /// largest checkpoint seen of it.
    pub ready_max_lag: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: None,
            client_tls: false,
            token_file: None,
            ready_max_lag: 1024,
        }
    }
}

/// `[keys]`: files holding this city's signed-note signer keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFiles {
    pub log_key: PathBuf,
    pub witness_key: PathBuf,
}

/// One `[[peers]]` entry: a member this node keeps a Sync stream to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub city: String,
    /// `host:port` or `[ipv6]:port`.
    pub address: String,
}

/// `[sync]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// A publish batch (one atomic write, one signed checkpoint) takes at most this many
    /// entries; a record at an idle node commits at once, and requests that queue while a batch
    /// commits form the next one.
    pub batch_max_entries: u64,
    pub reconnect_backoff_min_ms: u64,
    pub reconnect_backoff_max_ms: u64,
}

impl Default for SyncConfig {
    /// The design's batch: at most 256 entries.
    fn default() -> Self {
        Self {
            batch_max_entries: 256,
            reconnect_backoff_min_ms: 100,
            reconnect_backoff_max_ms: 30_000,
        }
    }
}

impl SyncConfig {
    pub fn reconnect_backoff_min(&self) -> Duration {
        Duration::from_millis(self.reconnect_backoff_min_ms)
    }

    pub fn reconnect_backoff_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_backoff_max_ms)
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Bytes of sled page cache, in MiB. Leaves live in append-only files read through the OS
    /// page cache, so sled caches only indexes and tree hashes.
    pub cache_mb: u64,
    /// MiB of view index writes held in memory (the memtable) before they are written as a
    /// sorted run file; journalled in sled, so nothing is lost with them.
    pub index_mb: u64,
    /// MiB of decompressed view index blocks kept for reads.
    pub index_cache_mb: u64,
    /// MiB of decompressed leaf blocks (about 64 KiB each) kept for reads.
    pub leaf_cache_mb: u64,
    /// MiB kept free on the store's volume: below it every write is refused
    /// (`RESOURCE_EXHAUSTED`, naming the disk) before anything is written, reads go on, and
    /// writes resume by themselves when space returns. 0 turns the check off.
    pub min_free_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            cache_mb: 32,
            index_mb: 16,
            index_cache_mb: 8,
            leaf_cache_mb: 2,
            min_free_mb: 64,
        }
    }
}

impl StorageConfig {
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb << 20
    }

    pub fn index_bytes(&self) -> usize {
        usize::try_from(self.index_mb << 20).unwrap_or(usize::MAX)
    }

    pub fn index_cache_bytes(&self) -> usize {
        usize::try_from(self.index_cache_mb << 20).unwrap_or(usize::MAX)
    }

    pub fn leaf_cache_bytes(&self) -> usize {
        usize::try_from(self.leaf_cache_mb << 20).unwrap_or(usize::MAX)
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_mb << 20
    }
}

/// `[limits]`: what bounds the work a remote side (an unauthenticated client, a client with a
/// certificate, a peer node) can make the node do. ARCHITECTURE.md *Limits* has the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// From accept to a finished TLS handshake; a connection still handshaking then is closed.
    pub handshake_timeout_ms: u64,
    /// TLS handshakes in flight at once; a new connection beyond it closes the oldest one
    /// (one whose client has sent nothing first).
    pub max_pending_handshakes: u64,
    /// The same per source address (an IPv4 address or an IPv6 /64).
    pub max_pending_handshakes_per_source: u64,
    /// Largest gRPC message the node decodes, on every service and on its Sync streams.
    pub max_request_bytes: u64,
    /// Largest gRPC message the node encodes, on every service.
    pub max_response_bytes: u64,
    /// HTTP/2 streams (calls) one connection may have open at once.
    pub max_concurrent_streams: u64,
    /// Calls one client identity (SPIFFE ID) may have in flight at once, over all its
    /// connections; a stream counts for its whole life.
    pub max_calls_per_client: u64,
    /// Sustained calls a second per client identity on Publisher, View, Audit and Operator.
    pub requests_per_second: u64,
    /// How many calls beyond the sustained rate one identity may make at once.
    pub request_burst: u64,
    /// A call must have been read and answered (a stream: its headers sent) within this.
    pub request_timeout_ms: u64,
    /// A pulled Sync stream on which nothing arrives this long is closed and redialled; the
    /// serving side sends a heartbeat every 5 s.
    pub sync_idle_timeout_ms: u64,
    /// A served Sync frame the peer does not take within this long ends the stream.
    pub sync_send_timeout_ms: u64,
    /// Entries of one origin a pulled stream holds waiting for a checkpoint that covers them.
    pub sync_buffered_entries: u64,
    /// The same in bytes.
    pub sync_buffered_bytes: u64,
    /// After a peer's stream brought entries that were quarantined, the wait before it is
    /// dialled again, doubling per such stream up to the max, each with up to a half of jitter.
    pub quarantine_backoff_min_ms: u64,
    pub quarantine_backoff_max_ms: u64,
    /// A live Sync stream holds a third origin's new entries (neither this node's nor the
    /// peer's) back this long, then relays only those the peer has not shown it holds (by a
    /// checkpoint gossiped on its own stream to this node): time for that checkpoint to come
    /// in a full mesh, where the peer has them from their origin. 0 relays at once.
    pub sync_relay_holdback_ms: u64,
}

impl Default for LimitsConfig {
    /// [`HandshakeLimits::default`], which says why; the others are in ARCHITECTURE.md.
    fn default() -> Self {
        let limits = HandshakeLimits::default();
        Self {
            handshake_timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            max_pending_handshakes: limits.max_pending as u64,
            max_pending_handshakes_per_source: limits.max_pending_per_source as u64,
            max_request_bytes: 16 << 20,
            max_response_bytes: 64 << 20,
            max_concurrent_streams: 128,
            max_calls_per_client: 64,
            requests_per_second: 200,
            request_burst: 400,
            request_timeout_ms: 60_000,
            sync_idle_timeout_ms: 30_000,
            sync_send_timeout_ms: 30_000,
            sync_buffered_entries: 16_384,
            sync_buffered_bytes: 64 << 20,
            quarantine_backoff_min_ms: 10_000,
            quarantine_backoff_max_ms: 600_000,
            sync_relay_holdback_ms: 250,
        }
    }
}

impl LimitsConfig {
    /// The acceptor's limits.
    pub fn handshakes(&self) -> HandshakeLimits {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        HandshakeLimits {
            timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_pending: count(self.max_pending_handshakes),
            max_pending_per_source: count(self.max_pending_handshakes_per_source),
        }
    }

    pub fn max_request_bytes(&self) -> usize {
        usize::try_from(self.max_request_bytes).unwrap_or(usize::MAX)
    }

    pub fn max_response_bytes(&self) -> usize {
        usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX)
    }

    /// The per-client quotas.
    pub fn quotas(&self) -> crate::quota::Quotas {
        let nonzero = |n: u64| {
            std::num::NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX))
                .unwrap_or(std::num::NonZeroU32::MIN)
        };
        crate::quota::Quotas::new(
            nonzero(self.requests_per_second),
            nonzero(self.request_burst),
            usize::try_from(self.max_calls_per_client).unwrap_or(usize::MAX),
        )
    }

    /// What bounds a Sync stream, either end.
    pub fn sync(&self) -> crate::sync::SyncLimits {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        crate::sync::SyncLimits {
            max_frame_bytes: self.max_request_bytes(),
            idle_timeout: Duration::from_millis(self.sync_idle_timeout_ms),
            send_timeout: Duration::from_millis(self.sync_send_timeout_ms),
            buffered_entries: count(self.sync_buffered_entries),
            buffered_bytes: count(self.sync_buffered_bytes),
            quarantine_backoff_min: Duration::from_millis(self.quarantine_backoff_min_ms),
            quarantine_backoff_max: Duration::from_millis(self.quarantine_backoff_max_ms),
            relay_holdback: Duration::from_millis(self.sync_relay_holdback_ms),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `info,credex_node=debug`.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(()),
        }
    }
}

/// This city's signing keys, read by [`Config::signing_keys`].
#[derive(Debug)]
pub struct SigningKeys {
    pub log: SigningKeyPair,
    pub witness: SigningKeyPair,
}

// ------------------------------------------------------------------ files as written

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    tls: RawTls,
    keys: KeyFiles,
    peers: Option<Vec<PeerConfig>>,
    #[serde(default)]
    sync: SyncConfig,
    #[serde(default)]
    storage: StorageConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    recognition: RecognitionPolicy,
    /// Moved to the consortium file's `[rules]`; present only to say so.
    identifiers: Option<toml::Value>,
    #[serde(default)]
    log: RawLog,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    city: String,
    consortium_file: PathBuf,
    data_dir: PathBuf,
    listen: String,
    /// The old name of `admin.listen`.
    metrics_listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    #[serde(default)]
    client_tls: bool,
    token_file: Option<PathBuf>,
    ready_max_lag: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_cert: Option<PathBuf>,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    filter: String,
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        let defaults = LogConfig::default();
        Self {
            filter: defaults.filter,
            format: "text".to_owned(),
        }
    }
}

// ------------------------------------------------------------------ validation

/// Builds [`ConfigError::Invalid`] for one file, naming where an overridden value came from.
struct Checker<'a> {
    what: &'static str,
    path: &'a Path,
    /// Key → the environment variable that set it.
    from_env: HashMap<&'static str, &'static str>,
}

impl Checker<'_> {
    fn invalid(
        &self,
        key: &str,
        value: impl Into<Shown>,
        problem: impl fmt::Display,
    ) -> ConfigError {
        let key = match self.from_env.get(key) {
            Some(var) => format!("{key} (from {var})"),
            None => key.to_owned(),
        };
        let value = match value.into() {
            Shown::Text(text) => format!("{text:?} "),
            Shown::Number(n) => format!("{n} "),
            Shown::Hidden => String::new(),
        };
        ConfigError::Invalid {
            what: self.what,
            path: self.path.to_owned(),
            key,
            value,
            problem: problem.to_string(),
        }
    }

    fn label(&self, key: &str, value: &str) -> Result<(), ConfigError> {
        check_label("name", value).map_err(|e| match e {
            crate::tls::TlsError::BadName { reason, .. } => self.invalid(key, value, reason),
            other => self.invalid(key, value, other),
        })
    }

    fn address(&self, key: &str, value: &str) -> Result<(), ConfigError> {
        parse_address(value)
            .map(drop)
            .map_err(|problem| self.invalid(key, value, problem))
    }

    fn socket_addr(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value
            .parse()
            .map_err(|_| self.invalid(key, value, "is not a socket address (ip:port)"))
    }

    fn path(&self, key: &str, base: &Path, value: &Path) -> Result<PathBuf, ConfigError> {
        if value.as_os_str().is_empty() {
            return Err(self.invalid(key, "", "is empty"));
        }
        Ok(base.join(value))
    }

    fn range(&self, key: &str, value: u64, (min, max): (u64, u64)) -> Result<(), ConfigError> {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(self.invalid(key, value, format!("is not from {min} to {max}")))
        }
    }
}

enum Shown {
    Text(String),
    Number(u64),
    Hidden,
}

impl From<&str> for Shown {
    fn from(text: &str) -> Self {
        Shown::Text(text.to_owned())
    }
}

impl From<u64> for Shown {
    fn from(n: u64) -> Self {
        Shown::Number(n)
    }
}

fn read(what: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn folder_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

impl Config {
    /// Reads the config at `path`, applies the `CREDEX_*` overrides in `env` (pass
    /// `std::env::vars().collect()` in production), loads the consortium file it names, and
    /// validates everything; the first problem found is the error.
    pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let text = read("config file", path)?;
        Config::parse(&text, path, env, load_consortium)
    }

    /// [`Config::load`] of the config text `text` read from `path` (which names it in errors
    /// and anchors its relative paths), with the consortium file it names loaded by
    /// `load_consortium`. No I/O but the loader's, so the fuzz target and tests can hand in a
    /// consortium.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &HashMap<String, String>,
        load_consortium: impl FnOnce(&Path) -> Result<Consortium, ConfigError>,
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            what: "config file",
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let mut checker = Checker {
            what: "config",
            path,
            from_env: HashMap::new(),
        };
        apply_env(&mut raw, env, &mut checker)?;
        let base = folder_of(path);
        let consortium_file =
            checker.path("node.consortium_file", base, &raw.node.consortium_file)?;
        let consortium = load_consortium(&consortium_file)?;
        validate(raw, base, consortium_file, consortium, &checker)
    }

    /// The config as TOML, in the layout [`Config::load`] reads.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|source| ConfigError::Encode {
            what: "config",
            source,
        })
    }

    /// This node's own identity: `spiffe://<consortium>/<city>/node`.
    pub fn identity(&self) -> Identity {
        node_identity(&self.consortium, &self.node.city)
    }

    /// This city's entry in the consortium (validated to exist by [`Config::load`]).
    pub fn member(&self) -> Option<&Member> {
        self.consortium.member(&self.node.city)
    }

    /// Reads this city's signer keys and checks them against the public keys the consortium
    /// pins for it, so a node never signs with a key its peers would reject.
    pub fn signing_keys(&self) -> Result<SigningKeys, ConfigError> {
        let member = self.member();
        let load = |what: &'static str, path: &Path, pinned: Option<&PublicKey>| {
            let text = read(what, path)?;
            let pair =
                SigningKeyPair::parse(text.trim()).map_err(|source| ConfigError::SignerKey {
                    what,
                    path: path.to_owned(),
                    source,
                })?;
            match pinned {
                Some(pinned) if *pinned == pair.public() => Ok(pair),
                _ => Err(ConfigError::SignerKeyMismatch {
                    what,
                    path: path.to_owned(),
                    city: self.node.city.clone(),
                    found: pair.name().to_owned(),
                    found_id: pair.key_id(),
                    expected: pinned.map_or_else(|| "none".to_owned(), |k| k.name().to_owned()),
                    expected_id: pinned.map_or(0, PublicKey::key_id),
                }),
            }
        };
        Ok(SigningKeys {
            log: load("log key", &self.keys.log_key, member.map(|m| &m.log_key))?,
            witness: load(
                "witness key",
                &self.keys.witness_key,
                member.map(|m| &m.witness_key),
            )?,
        })
    }
}

fn apply_env(
    raw: &mut RawConfig,
    env: &HashMap<String, String>,
    checker: &mut Checker<'_>,
) -> Result<(), ConfigError> {
    let mut take = |var: &'static str, key: &'static str| {
        let value = env.get(var)?;
        checker.from_env.insert(key, var);
        Some(value.clone())
    };
    if let Some(listen) = take("CREDEX_LISTEN", "node.listen") {
        raw.node.listen = listen;
    }
    if let Some(data_dir) = take("CREDEX_DATA_DIR", "node.data_dir") {
        raw.node.data_dir = data_dir.into();
    }
    // The old variable first, so the new one wins where a deployment sets both.
    for var in ["CREDEX_METRICS_LISTEN", "CREDEX_ADMIN_LISTEN"] {
        if let Some(listen) = take(var, "admin.listen") {
            raw.node.metrics_listen = None;
            raw.admin.listen = (!listen.is_empty()).then_some(listen);
        }
    }
    if let Some(token_file) = take("CREDEX_ADMIN_TOKEN_FILE", "admin.token_file") {
        raw.admin.token_file = (!token_file.is_empty()).then(|| token_file.into());
    }
    if let Some(filter) = take("CREDEX_LOG", "log.filter") {
        raw.log.filter = filter;
    }
    if let Some(format) = take("CREDEX_LOG_FORMAT", "log.format") {
        raw.log.format = format;
    }
    if let Some(peers) = take("CREDEX_PEERS", "peers") {
        let mut parsed = Vec::new();
        for item in peers
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let Some((city, address)) = item.split_once('=') else {
                return Err(checker.invalid("peers", item, "is not city=host:port"));
            };
            parsed.push(PeerConfig {
                city: city.trim().to_owned(),
                address: address.trim().to_owned(),
            });
        }
        raw.peers = Some(parsed);
    }
    Ok(())
}

fn validate(
    raw: RawConfig,
    base: &Path,
    consortium_file: PathBuf,
    consortium: Consortium,
    checker: &Checker<'_>,
) -> Result<Config, ConfigError> {
    let city = raw.node.city;
    checker.label("node.city", &city)?;
    if consortium.member(&city).is_none() {
        return Err(checker.invalid(
            "node.city",
            city.as_str(),
            format!(
                "is not a member of consortium {} (members: {})",
                consortium.name,
                consortium.cities().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let listen = checker.socket_addr("node.listen", &raw.node.listen)?;
    let admin = validate_admin(raw.admin, raw.node.metrics_listen, listen, base, checker)?;
    let node = NodeConfig {
        data_dir: checker.path("node.data_dir", base, &raw.node.data_dir)?,
        city,
        consortium_file,
        listen,
    };

    let tls = TlsFiles {
        ca_cert: match &raw.tls.ca_cert {
            Some(ca_cert) => checker.path("tls.ca_cert", base, ca_cert)?,
            None => consortium.ca_cert.clone(),
        },
        cert: checker.path("tls.cert", base, &raw.tls.cert)?,
        key: checker.path("tls.key", base, &raw.tls.key)?,
    };
    let keys = KeyFiles {
        log_key: checker.path("keys.log_key", base, &raw.keys.log_key)?,
        witness_key: checker.path("keys.witness_key", base, &raw.keys.witness_key)?,
    };

    let peers = validate_peers(raw.peers, &node.city, &consortium, checker)?;
    let sync = validate_sync(raw.sync, checker)?;
    checker.range("storage.cache_mb", raw.storage.cache_mb, STORAGE_CACHE_MB)?;
    checker.range("storage.index_mb", raw.storage.index_mb, STORAGE_INDEX_MB)?;
    checker.range(
        "storage.index_cache_mb",
        raw.storage.index_cache_mb,
        STORAGE_INDEX_MB,
    )?;
    checker.range(
        "storage.leaf_cache_mb",
        raw.storage.leaf_cache_mb,
        STORAGE_INDEX_MB,
    )?;
    checker.range(
        "storage.min_free_mb",
        raw.storage.min_free_mb,
        STORAGE_MIN_FREE_MB,
    )?;
    let storage = raw.storage;
    let limits = validate_limits(raw.limits, checker)?;

    let recognition = raw.recognition.with_own_origin(&node.city);
    let cities: Vec<&str> = consortium.cities().collect();
    recognition
        .validate(&cities)
        .map_err(|source| ConfigError::Policy {
            path: checker.path.to_owned(),
            source,
        })?;

    if raw.identifiers.is_some() {
        return Err(checker.invalid(
            "identifiers",
            Shown::Hidden,
            format!(
                "has moved: legacy_uscc_allow_list is a rule of the consortium now, in the \
                 [rules] section of the consortium file ({}), so that every member judges every \
                 entry the same way; remove [identifiers] from this file",
                node.consortium_file.display()
            ),
        ));
    }

    let format = raw.log.format.parse().map_err(|()| {
        checker.invalid(
            "log.format",
            raw.log.format.as_str(),
            "is neither text nor json",
        )
    })?;
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.filter) {
        return Err(checker.invalid(
            "log.filter",
            raw.log.filter.as_str(),
            format!("is not a tracing filter: {e}"),
        ));
    }
    let log = LogConfig {
        filter: raw.log.filter,
        format,
    };

    Ok(Config {
        node,
        tls,
        keys,
        peers,
        sync,
        storage,
        limits,
        admin,
        recognition,
        log,
        consortium,
    })
}

fn validate_admin(
    raw: RawAdmin,
    old_listen: Option<String>,
    node_listen: SocketAddr,
    base: &Path,
    checker: &Checker<'_>,
) -> Result<AdminConfig, ConfigError> {
    let (key, listen) = match (raw.listen, old_listen) {
        (Some(_), Some(old)) => {
            return Err(checker.invalid(
                "node.metrics_listen",
                old.as_str(),
                "is the old name of admin.listen, which is set too; keep only admin.listen",
            ));
        }
        (Some(listen), None) => ("admin.listen", Some(listen)),
        (None, old) => ("node.metrics_listen", old),
    };
    let listen = match listen {
        Some(text) => {
            let addr = checker.socket_addr(key, &text)?;
            if addr == node_listen {
                return Err(checker.invalid(
                    key,
                    text.as_str(),
                    "is node.listen too; the admin listener needs a port of its own",
                ));
            }
            // Metrics and the console show what a city's operators see: beyond this host only
            // to a client that proves who it is.
            if !addr.ip().is_loopback() && !raw.client_tls && raw.token_file.is_none() {
                return Err(checker.invalid(
                    key,
                    text.as_str(),
                    "is not a loopback address: serving beyond this host needs \
                     admin.client_tls = true (client certificates from the consortium CA) or \
                     admin.token_file (a bearer token)",
                ));
            }
            Some(addr)
        }
        None => None,
    };
    let token_file = match &raw.token_file {
        Some(path) => Some(checker.path("admin.token_file", base, path)?),
        None => None,
    };
    let defaults = AdminConfig::default();
    let ready_max_lag = raw.ready_max_lag.unwrap_or(defaults.ready_max_lag);
    checker.range("admin.ready_max_lag", ready_max_lag, READY_MAX_LAG)?;
    Ok(AdminConfig {
        listen,
        client_tls: raw.client_tls,
        token_file,
        ready_max_lag,
    })
}

fn validate_peers(
    peers: Option<Vec<PeerConfig>>,
    city: &str,
    consortium: &Consortium,
    checker: &Checker<'_>,
) -> Result<Vec<PeerConfig>, ConfigError> {
    let Some(peers) = peers else {
        // Without a [[peers]] list, sync with every other member at its published address.
        return Ok(consortium
            .members
            .iter()
            .filter(|m| m.city != city)
            .map(|m| PeerConfig {
                city: m.city.clone(),
                address: m.address.clone(),
            })
            .collect());
    };
    let from_env = checker.from_env.contains_key("peers");
    let mut seen = HashSet::new();
    for (i, peer) in peers.iter().enumerate() {
        // An override is one string, so its errors point at the variable, not an index.
        let key = |field| {
            if from_env {
                "peers".to_owned()
            } else {
                format!("peers[{i}].{field}")
            }
        };
        let problem = if peer.city == city {
            Some("is this node itself".to_owned())
        } else if consortium.member(&peer.city).is_none() {
            Some(format!("is not a member of consortium {}", consortium.name))
        } else if !seen.insert(peer.city.as_str()) {
            Some("is listed twice".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(checker.invalid(&key("city"), peer.city.as_str(), problem));
        }
        checker.address(&key("address"), &peer.address)?;
    }
    Ok(peers)
}

fn validate_sync(sync: SyncConfig, checker: &Checker<'_>) -> Result<SyncConfig, ConfigError> {
    checker.range(
        "sync.batch_max_entries",
        sync.batch_max_entries,
        BATCH_MAX_ENTRIES,
    )?;
    checker.range(
        "sync.reconnect_backoff_min_ms",
        sync.reconnect_backoff_min_ms,
        BACKOFF_MS,
    )?;
    checker.range(
        "sync.reconnect_backoff_max_ms",
        sync.reconnect_backoff_max_ms,
        (sync.reconnect_backoff_min_ms, BACKOFF_MS.1),
    )?;
    Ok(sync)
}

fn validate_limits(
    limits: LimitsConfig,
    checker: &Checker<'_>,
) -> Result<LimitsConfig, ConfigError> {
    checker.range(
        "limits.handshake_timeout_ms",
        limits.handshake_timeout_ms,
        HANDSHAKE_TIMEOUT_MS,
    )?;
    checker.range(
        "limits.max_pending_handshakes",
        limits.max_pending_handshakes,
        MAX_PENDING_HANDSHAKES,
    )?;
    checker.range(
        "limits.max_pending_handshakes_per_source",
        limits.max_pending_handshakes_per_source,
        (1, limits.max_pending_handshakes),
    )?;
    let ranges = [
        (
            "limits.max_request_bytes",
            limits.max_request_bytes,
            MESSAGE_BYTES,
        ),
        (
            "limits.max_response_bytes",
            limits.max_response_bytes,
            MESSAGE_BYTES,
        ),
        (
            "limits.max_concurrent_streams",
            limits.max_concurrent_streams,
            COUNT,
        ),
        (
            "limits.max_calls_per_client",
            limits.max_calls_per_client,
            COUNT,
        ),
        (
            "limits.requests_per_second",
            limits.requests_per_second,
            RATE,
        ),
        ("limits.request_burst", limits.request_burst, RATE),
        (
            "limits.request_timeout_ms",
            limits.request_timeout_ms,
            REQUEST_TIMEOUT_MS,
        ),
        (
            "limits.sync_idle_timeout_ms",
            limits.sync_idle_timeout_ms,
            SYNC_TIMEOUT_MS,
        ),
        (
            "limits.sync_send_timeout_ms",
            limits.sync_send_timeout_ms,
            SYNC_TIMEOUT_MS,
        ),
        (
            "limits.sync_buffered_entries",
            limits.sync_buffered_entries,
            BUFFERED_ENTRIES,
        ),
        (
            "limits.sync_buffered_bytes",
            limits.sync_buffered_bytes,
            MESSAGE_BYTES,
        ),
        (
            "limits.quarantine_backoff_min_ms",
            limits.quarantine_backoff_min_ms,
            QUARANTINE_BACKOFF_MS,
        ),
        (
            "limits.quarantine_backoff_max_ms",
            limits.quarantine_backoff_max_ms,
            (limits.quarantine_backoff_min_ms, QUARANTINE_BACKOFF_MS.1),
        ),
        (
            "limits.sync_relay_holdback_ms",
            limits.sync_relay_holdback_ms,
            RELAY_HOLDBACK_MS,
        ),
    ];
    for (key, value, range) in ranges {
        checker.range(key, value, range)?;
    }
    Ok(limits)
}

/// Reads and validates the consortium file at `path` ([`Consortium::parse`]).
pub fn load_consortium(path: &Path) -> Result<Consortium, ConfigError> {
    let text = read("consortium file", path)?;
    Ok(Consortium::parse(&text, path)?)
}

/// The identity `city`'s node presents: `spiffe://<consortium>/<city>/node`.
pub fn node_identity(consortium: &Consortium, city: &str) -> Identity {
    Identity {
        consortium: consortium.name.clone(),
        city: city.to_owned(),
        role: Role::Node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credex_core::keys::KeyAlgorithm;
    use expect_test::{Expect, expect};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/config");
    const CHANGSHA: &str = include_str!("../tests/fixtures/config/changsha.toml");
    const CONSORTIUM: &str = include_str!("../tests/fixtures/config/consortium.toml");

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(FIXTURES).join(name)
    }

    /// The config written with the fixture folder shown as `FIXTURES`.
    fn shown(config: &Config) -> String {
        config.to_toml().unwrap().replace(FIXTURES, "FIXTURES")
    }

    #[test]
    fn loads_the_documented_config() {
        let config = Config::load(&fixture("changsha.toml"), &env(&[])).unwrap();
        assert_eq!(
            config.identity().to_string(),
            "spiffe://mid-yangtze/changsha/node"
        );
        assert_eq!(config.recognition.own_origin(), Some("changsha"));
        expect![[r#"
            [node]
            city = "changsha"
            consortium_file = "FIXTURES/consortium.toml"
            data_dir = "FIXTURES/data/changsha"
            listen = "127.0.0.1:7001"

            [tls]
            ca_cert = "FIXTURES/../tls/ca.pem"
            cert = "FIXTURES/../tls/changsha-node.pem"
            key = "FIXTURES/../tls/changsha-node.key"

            [keys]
            log_key = "FIXTURES/changsha-log.key"
            witness_key = "FIXTURES/changsha-witness.key"

            [[peers]]
            city = "wuhan"
            address = "127.0.0.1:7002"

            [[peers]]
            city = "nanchang"
            address = "localhost:7004"

            [sync]
            batch_max_entries = 128
            reconnect_backoff_min_ms = 100
            reconnect_backoff_max_ms = 5000

            [storage]
            cache_mb = 32
            index_mb = 16
            index_cache_mb = 8
            leaf_cache_mb = 2
            min_free_mb = 64

            [limits]
            handshake_timeout_ms = 5000
            max_pending_handshakes = 1024
            max_pending_handshakes_per_source = 64
            max_request_bytes = 16777216
            max_response_bytes = 67108864
            max_concurrent_streams = 128
            max_calls_per_client = 64
            requests_per_second = 200
            request_burst = 400
            request_timeout_ms = 60000
            sync_idle_timeout_ms = 30000
            sync_send_timeout_ms = 30000
            sync_buffered_entries = 16384
            sync_buffered_bytes = 67108864
            quarantine_backoff_min_ms = 10000
            quarantine_backoff_max_ms = 600000
            sync_relay_holdback_ms = 250

            [admin]
            listen = "127.0.0.1:9101"
            client_tls = false
            ready_max_lag = 64

            [recognition.default]
            lists = [
                "black",
                "red",
            ]
            categories = ["*"]

            [recognition.origins.wuhan]
            lists = ["*"]
            categories = [
                "court.*",
                "tax.*",
            ]

            [log]
            filter = "info,credex_node=debug"
            format = "json"
        "#]]
        .assert_eq(&shown(&config));
    }

    #[test]
    fn fills_in_defaults() {
        let config = Config::load(&fixture("minimal.toml"), &env(&[])).unwrap();
        expect![[r#"
            [node]
            city = "wuhan"
            consortium_file = "FIXTURES/consortium.toml"
            data_dir = "/var/lib/credex"
            listen = "0.0.0.0:7002"

            [tls]
            ca_cert = "FIXTURES/../tls/ca.pem"
            cert = "/etc/credex/wuhan-node.pem"
            key = "/etc/credex/wuhan-node.key"

            [keys]
            log_key = "/etc/credex/wuhan-log.key"
            witness_key = "/etc/credex/wuhan-witness.key"

            [[peers]]
            city = "changsha"
            address = "127.0.0.1:7001"

            [[peers]]
            city = "hefei"
            address = "127.0.0.1:7003"

            [[peers]]
            city = "nanchang"
            address = "127.0.0.1:7004"

            [sync]
            batch_max_entries = 256
            reconnect_backoff_min_ms = 100
            reconnect_backoff_max_ms = 30000

            [storage]
            cache_mb = 32
            index_mb = 16
            index_cache_mb = 8
            leaf_cache_mb = 2
            min_free_mb = 64

            [limits]
            handshake_timeout_ms = 3000
            max_pending_handshakes = 512
            max_pending_handshakes_per_source = 64
            max_request_bytes = 16777216
            max_response_bytes = 67108864
            max_concurrent_streams = 128
            max_calls_per_client = 64
            requests_per_second = 200
            request_burst = 400
            request_timeout_ms = 60000
            sync_idle_timeout_ms = 30000
            sync_send_timeout_ms = 30000
            sync_buffered_entries = 16384
            sync_buffered_bytes = 67108864
            quarantine_backoff_min_ms = 10000
            quarantine_backoff_max_ms = 600000
            sync_relay_holdback_ms = 250

            [admin]
            client_tls = false
            ready_max_lag = 1024

            [recognition.default]
            lists = ["*"]
            categories = ["*"]

            [recognition.origins]

            [log]
            filter = "info"
            format = "text"
        "#]]
        .assert_eq(&shown(&config));
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = Config::load(
            &fixture("changsha.toml"),
            &env(&[
                ("CREDEX_LISTEN", "[::1]:8001"),
                ("CREDEX_DATA_DIR", "/srv/credex"),
                ("CREDEX_METRICS_LISTEN", ""),
                ("CREDEX_LOG", "warn"),
                ("CREDEX_LOG_FORMAT", "text"),
                ("CREDEX_PEERS", "hefei=hefei.example:7003, wuhan=[::1]:7002"),
                ("CREDEX_CONFIG", "ignored: not a config key"),
            ]),
        )
        .unwrap();
        let summary = format!(
            "listen {}\ndata_dir {}\nmetrics {:?}\nlog {} {:?}\npeers {:?}\n",
            config.node.listen,
            config.node.data_dir.display(),
            config.admin.listen,
            config.log.filter,
            config.log.format,
            config.peers,
        );
        expect![[r#"
            listen [::1]:8001
            data_dir /srv/credex
            metrics None
            log warn Text
            peers [PeerConfig { city: "hefei", address: "hefei.example:7003" }, PeerConfig { city: "wuhan", address: "[::1]:7002" }]
        "#]].assert_eq(&summary);
        let no_peers = Config::load(&fixture("changsha.toml"), &env(&[("CREDEX_PEERS", "")]));
        assert!(no_peers.unwrap().peers.is_empty());
    }

    #[test]
    fn writes_what_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&fixture("changsha.toml"), &env(&[])).unwrap();
        let consortium_copy = dir.path().join("consortium.toml");
        std::fs::write(&consortium_copy, config.consortium.to_toml().unwrap()).unwrap();
        assert_eq!(
            load_consortium(&consortium_copy).unwrap(),
            config.consortium
        );

        let mut moved = config.clone();
        moved.node.consortium_file = consortium_copy;
        let path = dir.path().join("changsha.toml");
        std::fs::write(&path, moved.to_toml().unwrap()).unwrap();
        let reloaded = Config::load(&path, &env(&[])).unwrap();
        assert_eq!(reloaded.to_toml().unwrap(), moved.to_toml().unwrap());
        assert_eq!(reloaded.consortium, config.consortium);
    }

    /// Loads `config` (and `consortium`) from a temporary folder: the error, with the folder
    /// shown as `DIR`.
    fn load_error(config: &str, consortium: &str, vars: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("consortium.toml"), consortium).unwrap();
        let path = dir.path().join("changsha.toml");
        std::fs::write(&path, config).unwrap();
        let error = Config::load(&path, &env(vars)).unwrap_err().to_string();
        error.replace(&dir.path().display().to_string(), "DIR")
    }

    #[test]
    fn names_the_key_and_value_of_every_bad_config_value() {
        fn check(from: &str, to: &str, expect: Expect) {
            assert!(CHANGSHA.contains(from), "{from}");
            expect.assert_eq(&load_error(
                &CHANGSHA.replacen(from, to, 1),
                CONSORTIUM,
                &[],
            ));
        }
        check(
            "127.0.0.1:7001",
            "127.0.0.1:99999",
            expect![[
                r#"DIR/changsha.toml: config key node.listen: "127.0.0.1:99999" is not a socket address (ip:port)"#
            ]],
        );
        check(
            "127.0.0.1:9101",
            "127.0.0.1:7001",
            expect![[
                r#"DIR/changsha.toml: config key admin.listen: "127.0.0.1:7001" is node.listen too; the admin listener needs a port of its own"#
            ]],
        );
        check(
            "city = \"changsha\"",
            "city = \"xian\"",
            expect![[
                r#"DIR/changsha.toml: config key node.city: "xian" is not a member of consortium mid-yangtze (members: changsha, wuhan, hefei, nanchang)"#
            ]],
        );
        check(
            "city = \"changsha\"",
            "city = \"Changsha\"",
            expect![[
                r#"DIR/changsha.toml: config key node.city: "Changsha" may hold only a-z, 0-9 and -"#
            ]],
        );
        check(
            "data/changsha",
            "",
            expect![[r#"DIR/changsha.toml: config key node.data_dir: "" is empty"#]],
        );
        check(
            "city = \"wuhan\"",
            "city = \"changsha\"",
            expect![[
                r#"DIR/changsha.toml: config key peers[0].city: "changsha" is this node itself"#
            ]],
        );
        check(
            "city = \"nanchang\"",
            "city = \"wuhan\"",
            expect![[r#"DIR/changsha.toml: config key peers[1].city: "wuhan" is listed twice"#]],
        );
        check(
            "city = \"nanchang\"",
            "city = \"xian\"",
            expect![[
                r#"DIR/changsha.toml: config key peers[1].city: "xian" is not a member of consortium mid-yangtze"#
            ]],
        );
        check(
            "localhost:7004",
            "localhost",
            expect![[
                r#"DIR/changsha.toml: config key peers[1].address: "localhost" is not host:port"#
            ]],
        );
        check(
            "localhost:7004",
            "local host:7004",
            expect![[
                r#"DIR/changsha.toml: config key peers[1].address: "local host:7004" has a host that is neither an IP address nor a DNS name"#
            ]],
        );
        check(
            "batch_max_entries = 128",
            "batch_max_entries = 0",
            expect![
                "DIR/changsha.toml: config key sync.batch_max_entries: 0 is not from 1 to 10000"
            ],
        );
        check(
            "reconnect_backoff_max_ms = 5000",
            "reconnect_backoff_max_ms = 5000\n\n[storage]\ncache_mb = 4",
            expect!["DIR/changsha.toml: config key storage.cache_mb: 4 is not from 8 to 65536"],
        );
        check(
            "reconnect_backoff_max_ms = 5000",
            "reconnect_backoff_max_ms = 5000\n\n[limits]\nhandshake_timeout_ms = 10",
            expect![[r#"
                config file DIR/changsha.toml: TOML parse error at line 47, column 1
                   |
                47 | [limits]
                   | ^
                invalid table header
                duplicate key `limits` in document root
            "#]],
        );
        check(
            "reconnect_backoff_max_ms = 5000",
            "reconnect_backoff_max_ms = 5000\n\n[limits]\nmax_pending_handshakes = 0",
            expect![[r#"
                config file DIR/changsha.toml: TOML parse error at line 47, column 1
                   |
                47 | [limits]
                   | ^
                invalid table header
                duplicate key `limits` in document root
            "#]],
        );
        check(
            "reconnect_backoff_max_ms = 5000",
            "reconnect_backoff_max_ms = 5000\n\n[limits]\nmax_pending_handshakes = 100\nmax_pending_handshakes_per_source = 200",
            expect![[r#"
                config file DIR/changsha.toml: TOML parse error at line 48, column 1
                   |
                48 | [limits]
                   | ^
                invalid table header
                duplicate key `limits` in document root
            "#]],
        );
        check(
            "reconnect_backoff_max_ms = 5000",
            "reconnect_backoff_max_ms = 5000\n\n[limits]\nmax_handshakes = 100",
            expect![[r#"
                config file DIR/changsha.toml: TOML parse error at line 47, column 1
                   |
                47 | [limits]
                   | ^
                invalid table header
                duplicate key `limits` in document root
            "#]],
        );
        check(
            "batch_max_entries = 128",
            "batch_max_entries = 128\nbatch_max_delay_ms = 50",
            expect![[r#"
                config file DIR/changsha.toml: TOML parse error at line 31, column 1
                   |
                31 | batch_max_delay_ms = 50
                   | ^^^^^^^^^^^^^^^^^^
                unknown field `batch_max_delay_ms`, expected one of `batch_max_entries`, `reconnect_backoff_min_ms`, `reconnect_backoff_max_ms`
            "#]],
        );
        check(
            "reconnect_backoff_max_ms = 5000",
            "reconnect_backoff_max_ms = 50",
            expect![
                "DIR/changsha.toml: config key sync.reconnect_backoff_max_ms: 50 is not from 100 to 3600000"
            ],
        );
        check(
            "origins.wuhan]",
            "origins.xian]",
            expect![[
                r#"DIR/changsha.toml: recognition.origins.xian: "xian" is not a member of the consortium (members: changsha, hefei, nanchang, wuhan)"#
            ]],
        );
        check(
            "origins.wuhan]",
            "origins.changsha]",
            expect![[
                r#"DIR/changsha.toml: recognition.origins.changsha: "changsha" is this node's own origin, whose records are always recognised; remove the entry"#
            ]],
        );
        check(
            "\"court.*\"",
            "\"court\"",
            expect![[r#"
                config file DIR/changsha.toml: TOML parse error at line 38, column 14
                   |
                38 | categories = ["court", "tax.*"]
                   |              ^^^^^^^^^^^^^^^^^^
                category pattern "court": a category code has the form <field>.<name>; write "court.*" for every category of field court
            "#]],
        );
        check(
            "[log]",
            "[identifiers]\nlegacy_uscc_allow_list = [\"91350100M000100Y42\"]\n\n[log]",
            expect![
                "DIR/changsha.toml: config key identifiers: has moved: legacy_uscc_allow_list is a rule of the consortium now, in the [rules] section of the consortium file (DIR/consortium.toml), so that every member judges every entry the same way; remove [identifiers] from this file"
            ],
        );
        check(
            "format = \"json\"",
            "format = \"yaml\"",
            expect![[
                r#"DIR/changsha.toml: config key log.format: "yaml" is neither text nor json"#
            ]],
        );
        check(
            "info,credex_node=debug",
            "info,[",
            expect![[
                r#"DIR/changsha.toml: config key log.filter: "info,[" is not a tracing filter: invalid filter directive"#
            ]],
        );
        check(
            "listen = ",
            "lsiten = ",
            expect![[r#"
            config file DIR/changsha.toml: TOML parse error at line 6, column 1
              |
            6 | lsiten = "127.0.0.1:7001"
              | ^^^^^^
            unknown field `lsiten`, expected one of `city`, `consortium_file`, `data_dir`, `listen`, `metrics_listen`
        "#]],
        );
        check(
            "batch_max_entries = 128",
            "batch_max_entries = \"128\"",
            expect![[r#"
                config file DIR/changsha.toml: TOML parse error at line 30, column 21
                   |
                30 | batch_max_entries = "128"
                   |                     ^^^^^
                invalid type: string "128", expected u64
            "#]],
        );
        check(
            "[keys]",
            "[key]",
            expect![[r#"
                config file DIR/changsha.toml: TOML parse error at line 16, column 2
                   |
                16 | [key]
                   |  ^^^
                unknown field `key`, expected one of `node`, `tls`, `keys`, `peers`, `sync`, `storage`, `limits`, `admin`, `recognition`, `identifiers`, `log`
            "#]],
        );
    }

    #[test]
    fn the_admin_listener_leaves_loopback_only_with_client_tls_or_a_token() {
        let check = |admin: &str, vars: &[(&str, &str)], expect: Expect| {
            let config = CHANGSHA.replacen("[admin]\nlisten = \"127.0.0.1:9101\"\n", admin, 1);
            expect.assert_eq(&load_error(&config, CONSORTIUM, vars));
        };
        check(
            "[admin]\nlisten = \"0.0.0.0:9101\"\n",
            &[],
            expect![[
                r#"DIR/changsha.toml: config key admin.listen: "0.0.0.0:9101" is not a loopback address: serving beyond this host needs admin.client_tls = true (client certificates from the consortium CA) or admin.token_file (a bearer token)"#
            ]],
        );
        check(
            "[admin]\n",
            &[("CREDEX_ADMIN_LISTEN", "[::]:9101")],
            expect![[
                r#"DIR/changsha.toml: config key admin.listen (from CREDEX_ADMIN_LISTEN): "[::]:9101" is not a loopback address: serving beyond this host needs admin.client_tls = true (client certificates from the consortium CA) or admin.token_file (a bearer token)"#
            ]],
        );
    }

    #[test]
    fn admin_listen_beyond_loopback_with_client_tls_or_a_token() {
        let load = |admin: &str, vars: &[(&str, &str)]| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("consortium.toml"), CONSORTIUM).unwrap();
            let path = dir.path().join("changsha.toml");
            let text = CHANGSHA.replacen("[admin]\nlisten = \"127.0.0.1:9101\"\n", admin, 1);
            std::fs::write(&path, text).unwrap();
            let config = Config::load(&path, &env(vars)).unwrap();
            (config.admin, dir)
        };
        let (admin, _dir) = load(
            "[admin]\nlisten = \"0.0.0.0:9101\"\nclient_tls = true\n",
            &[],
        );
        assert_eq!(admin.listen, Some("0.0.0.0:9101".parse().unwrap()));
        assert!(admin.client_tls);
        let (admin, dir) = load(
            "[admin]\nlisten = \"0.0.0.0:9101\"\ntoken_file = \"admin.token\"\n",
            &[],
        );
        assert_eq!(admin.token_file, Some(dir.path().join("admin.token")));
        assert_eq!(admin.ready_max_lag, 64, "the rest of the section stays");
        let (admin, dir) = load(
            "[admin]\n",
            &[
                ("CREDEX_ADMIN_LISTEN", "0.0.0.0:9101"),
                ("CREDEX_ADMIN_TOKEN_FILE", "secret/token"),
            ],
        );
        assert_eq!(admin.listen, Some("0.0.0.0:9101".parse().unwrap()));
        assert_eq!(admin.token_file, Some(dir.path().join("secret/token")));
    }

    #[test]
    fn the_old_metrics_listen_key_is_read_as_admin_listen() {
        let old = CHANGSHA
            .replacen("[admin]\nlisten = \"127.0.0.1:9101\"\n", "[admin]\n", 1)
            .replacen(
                "listen = \"127.0.0.1:7001\"\n",
                "listen = \"127.0.0.1:7001\"\nmetrics_listen = \"127.0.0.1:9109\"\n",
                1,
            );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("consortium.toml"), CONSORTIUM).unwrap();
        let path = dir.path().join("changsha.toml");
        std::fs::write(&path, &old).unwrap();
        let config = Config::load(&path, &env(&[])).unwrap();
        assert_eq!(config.admin.listen, Some("127.0.0.1:9109".parse().unwrap()));
        // The old environment variable too; the new one wins over it.
        let config = Config::load(&path, &env(&[("CREDEX_METRICS_LISTEN", "")])).unwrap();
        assert_eq!(config.admin.listen, None);
        let config = Config::load(
            &path,
            &env(&[
                ("CREDEX_METRICS_LISTEN", "127.0.0.1:1"),
                ("CREDEX_ADMIN_LISTEN", "127.0.0.1:2"),
            ]),
        )
        .unwrap();
        assert_eq!(config.admin.listen, Some("127.0.0.1:2".parse().unwrap()));
        let both = old.replacen("[admin]\n", "[admin]\nlisten = \"127.0.0.1:9101\"\n", 1);
        expect![[
            r#"DIR/changsha.toml: config key node.metrics_listen: "127.0.0.1:9109" is the old name of admin.listen, which is set too; keep only admin.listen"#
        ]]
        .assert_eq(&load_error(&both, CONSORTIUM, &[]));
    }

    #[test]
    fn names_the_environment_variable_of_a_bad_override() {
        fn check(var: &str, value: &str, expect: Expect) {
            expect.assert_eq(&load_error(CHANGSHA, CONSORTIUM, &[(var, value)]));
        }
        check(
            "CREDEX_LISTEN",
            "localhost:7001",
            expect![[
                r#"DIR/changsha.toml: config key node.listen (from CREDEX_LISTEN): "localhost:7001" is not a socket address (ip:port)"#
            ]],
        );
        check(
            "CREDEX_METRICS_LISTEN",
            "9101",
            expect![[
                r#"DIR/changsha.toml: config key admin.listen (from CREDEX_METRICS_LISTEN): "9101" is not a socket address (ip:port)"#
            ]],
        );
        check(
            "CREDEX_LOG_FORMAT",
            "JSON",
            expect![[
                r#"DIR/changsha.toml: config key log.format (from CREDEX_LOG_FORMAT): "JSON" is neither text nor json"#
            ]],
        );
        check(
            "CREDEX_PEERS",
            "wuhan",
            expect![[
                r#"DIR/changsha.toml: config key peers (from CREDEX_PEERS): "wuhan" is not city=host:port"#
            ]],
        );
        check(
            "CREDEX_PEERS",
            "wuhan=127.0.0.1:7002,changsha=127.0.0.1:7001",
            expect![[
                r#"DIR/changsha.toml: config key peers (from CREDEX_PEERS): "changsha" is this node itself"#
            ]],
        );
        check(
            "CREDEX_PEERS",
            "hefei=hefei",
            expect![[
                r#"DIR/changsha.toml: config key peers (from CREDEX_PEERS): "hefei" is not host:port"#
            ]],
        );
    }

    #[test]
    fn checks_members_and_their_keys() {
        fn check(consortium: &str, expect: Expect) {
            expect.assert_eq(&load_error(CHANGSHA, consortium, &[]));
        }
        let member_line = |city: &str, field: &str| {
            let start = CONSORTIUM.find(&format!("city = \"{city}\"")).unwrap();
            let line = CONSORTIUM[start..]
                .lines()
                .find(|l| l.starts_with(&format!("{field} = ")))
                .unwrap();
            line.to_owned()
        };
        let edit = |from: &str, to: &str| {
            assert!(CONSORTIUM.contains(from), "{from}");
            CONSORTIUM.replacen(from, to, 1)
        };
        check(
            &edit("mid-yangtze\"", "Mid Yangtze\""),
            expect![[
                r#"DIR/consortium.toml: consortium key name: "Mid Yangtze" may hold only a-z, 0-9 and -"#
            ]],
        );
        check(
            &edit("city = \"wuhan\"", "city = \"changsha\""),
            expect![[
                r#"DIR/consortium.toml: consortium key members[1].city: "changsha" repeats members[0].city"#
            ]],
        );
        check(
            &edit("\"长沙\"", "\"  \""),
            expect![[
                r#"DIR/consortium.toml: consortium key members[0].name_zh: "  " must be 1 to 32 characters"#
            ]],
        );
        check(
            &edit("M000100Y42", "M000100Y43"),
            expect![[
                r#"DIR/consortium.toml: consortium key rules.legacy_uscc_allow_list[0]: uscc "91350100M000100Y43": passes its check character, so it does not belong in the legacy allow-list"#
            ]],
        );
        check(
            &edit("decision_days_ahead = 1", "decision_days_ahead = 30"),
            expect![
                "DIR/consortium.toml: consortium key rules.decision_days_ahead: 30 is not from 0 to 7"
            ],
        );
        check(
            &edit("decision_days_ahead = 1", "decision_days_ahed = 1"),
            expect![[r#"
                consortium file DIR/consortium.toml: TOML parse error at line 40, column 1
                   |
                40 | decision_days_ahed = 1
                   | ^^^^^^^^^^^^^^^^^^
                unknown field `decision_days_ahed`, expected `legacy_uscc_allow_list` or `decision_days_ahead`
            "#]],
        );
        check(
            &edit("420100", "43010"),
            expect![[
                r#"DIR/consortium.toml: consortium key members[1].division: "43010" is not a six-digit division code"#
            ]],
        );
        check(
            &edit("420100", "430100"),
            expect![[
                r#"DIR/consortium.toml: consortium key members[1].division: "430100" repeats members[0].division"#
            ]],
        );
        check(
            &edit("127.0.0.1:7002", "127.0.0.1"),
            expect![[
                r#"DIR/consortium.toml: consortium key members[1].address: "127.0.0.1" is not host:port"#
            ]],
        );
        // Wuhan's log key under changsha: the name gives it away.
        check(
            &edit(
                &member_line("changsha", "log_key"),
                &member_line("wuhan", "log_key"),
            ),
            expect![
                "DIR/consortium.toml: consortium key members[0].log_key: key is named credex/mid-yangtze/wuhan, expected credex/mid-yangtze/changsha"
            ],
        );
        // A witness key where the log key belongs.
        let witness_as_log =
            member_line("changsha", "witness_key").replace("witness_key", "log_key");
        check(
            &edit(&member_line("changsha", "log_key"), &witness_as_log),
            expect![
                "DIR/consortium.toml: consortium key members[0].log_key: key credex/mid-yangtze/changsha/witness is cosignature/v1, expected ed25519"
            ],
        );
        check(
            &edit(
                &member_line("changsha", "log_key"),
                "log_key = \"not a key\"",
            ),
            expect![
                "DIR/consortium.toml: consortium key members[0].log_key: verifier key is malformed: expected <name>+<key id>+<key data>"
            ],
        );
        // A signer key pasted by mistake is refused without being echoed.
        let secret = std::fs::read_to_string(fixture("changsha-log.key")).unwrap();
        let error = load_error(
            CHANGSHA,
            &edit(
                &member_line("changsha", "log_key"),
                &format!("log_key = \"{}\"", secret.trim()),
            ),
            &[],
        );
        assert!(!error.contains(secret.trim()), "{error}");
        expect!["DIR/consortium.toml: consortium key members[0].log_key: verifier key is malformed: it is a signer key (PRIVATE+KEY+...); give the public verifier key"].assert_eq(&error);
        // One key pair used by two cities.
        let changsha_log = load_consortium(&fixture("consortium.toml"))
            .unwrap()
            .members[0]
            .log_key
            .clone();
        let reused = PublicKey::from_verifying_key(
            "credex/mid-yangtze/wuhan",
            KeyAlgorithm::Ed25519,
            changsha_log.verifying_key(),
        )
        .unwrap();
        check(
            &edit(
                &member_line("wuhan", "log_key"),
                &format!("log_key = \"{reused}\""),
            ),
            expect![
                "DIR/consortium.toml: consortium key members[1].log_key: uses the same key pair as members[0].log_key; every key must be its own"
            ],
        );
        let no_members =
            CONSORTIUM.split("[[members]]").next().unwrap().to_owned() + "members = []\n";
        check(
            &no_members,
            expect!["DIR/consortium.toml: consortium key members: is empty"],
        );
        check(
            &edit("ca_cert", "ca_certs"),
            expect![[r#"
                consortium file DIR/consortium.toml: TOML parse error at line 3, column 1
                  |
                3 | ca_certs = "../tls/ca.pem"
                  | ^^^^^^^^
                unknown field `ca_certs`, expected one of `name`, `ca_cert`, `rules`, `members`
            "#]],
        );
    }

    #[test]
    fn reads_signing_keys_that_match_the_consortium() {
        let config = Config::load(&fixture("changsha.toml"), &env(&[])).unwrap();
        let keys = config.signing_keys().unwrap();
        assert_eq!(keys.log.public(), config.member().unwrap().log_key);
        assert_eq!(keys.witness.public(), config.member().unwrap().witness_key);

        let mut wrong = config.clone();
        wrong.keys.log_key = fixture("wuhan-log.key");
        let error = wrong.signing_keys().unwrap_err().to_string();
        expect!["FIXTURES/wuhan-log.key: log key credex/mid-yangtze/wuhan+93e18478 is not the one the consortium pins for changsha (credex/mid-yangtze/changsha+0f725965)"].assert_eq(&error.replace(FIXTURES, "FIXTURES"));
        wrong.keys.witness_key = fixture("changsha-log.key");
        wrong.keys.log_key = fixture("changsha-log.key");
        let error = wrong.signing_keys().unwrap_err().to_string();
        expect!["FIXTURES/changsha-log.key: witness key credex/mid-yangtze/changsha+0f725965 is not the one the consortium pins for changsha (credex/mid-yangtze/changsha/witness+6d4f9818)"].assert_eq(&error.replace(FIXTURES, "FIXTURES"));
    }
}
