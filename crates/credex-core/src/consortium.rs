//! The consortium file: the member cities and the keys every node and every auditor pins. It is
//! the trust root: an entry, a checkpoint or a cosignature is authentic exactly when it verifies
//! under a key named here. Parsed and validated in one step from the file's text; reading the
//! file is the caller's (`credexd` and `credexctl` read it from disk, an auditor's service from
//! wherever it keeps it).
//!
//! ```toml
//! name = "mid-yangtze"                   # in SPIFFE IDs and origins credex/<name>/<city>
//! ca_cert = "ca.pem"
//! [rules]                                # optional; defaults shown
//! legacy_uscc_allow_list = []            # early-pilot USCCs that fail their checksum (flagged)
//! decision_days_ahead = 1                # a decision date may be at most this many days ahead
//! [[members]]
//! city = "changsha"
//! name_zh = "长沙"
//! division = "430100"                    # administrative division code
//! log_key = "credex/mid-yangtze/changsha+<id>+<key>"              # Ed25519 verifier key
//! witness_key = "credex/mid-yangtze/changsha/witness+<id>+<key>"  # cosignature/v1 verifier key
//! address = "changsha.example:7001"
//! ```
//!
//! Every origin string — a log key's name and the first line of its checkpoints — is
//! [`origin`]`(consortium, city)`, `credex/<consortium>/<city>`; nothing else builds one.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

use crate::ident::LegacyAllowList;
use crate::keys::{KeyAlgorithm, PublicKey};
use crate::rules::{DEFAULT_DECISION_DAYS_AHEAD, Rules};

/// Prefix of every credex checkpoint origin: `credex/<consortium>/<city>`.
pub const ORIGIN_PREFIX: &str = "credex/";

/// Longest `name_zh`, in characters: city names are a few characters, this only stops garbage.
const NAME_ZH_MAX_CHARS: usize = 32;
/// Bounds of `rules.decision_days_ahead`: a week covers any clock or time-zone slip; more would
/// let through decisions that have not been taken.
const DECISION_DAYS_AHEAD: (u64, u64) = (0, 7);

/// The checkpoint origin of `city`'s log in `consortium`, `credex/<consortium>/<city>`, which
/// is also the name of its log key. The one place an origin string is built.
pub fn origin(consortium: &str, city: &str) -> String {
    format!("{ORIGIN_PREFIX}{consortium}/{city}")
}

/// The name of `city`'s witness key: its [`origin`] followed by `/witness`.
pub fn witness_name(consortium: &str, city: &str) -> String {
    format!("{}/witness", origin(consortium, city))
}

/// Checks a consortium name or city id: a lowercase DNS label (`[a-z0-9-]`, 1 to 63 characters,
/// no leading or trailing `-`). Both appear in SPIFFE IDs and in checkpoint origins
/// (`credex/<consortium>/<city>`), so they must be plain enough for either. The error is the
/// reason, to follow the value in a message.
pub fn check_label(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.len() > 63 {
        return Err("is longer than 63 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may hold only a-z, 0-9 and -");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err("may not start or end with -");
    }
    Ok(())
}

/// Checks a node address, `host:port` or `[ipv6]:port`: the port from 1 to 65535, the host an
/// IP address or a DNS name as TLS accepts one for a server name (the rules of
/// `rustls_pki_types::DnsName`, which `credex_node::tls` holds this against in a test). The
/// error is the reason, to follow the value in a message.
pub fn check_address(addr: &str) -> Result<(), &'static str> {
    let (host, port) = split_address(addr)?;
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err("has a port that is not a number from 1 to 65535"),
        Ok(_) => {}
    }
    if host.parse::<IpAddr>().is_ok() || is_dns_name(host) {
        Ok(())
    } else {
        Err("has a host that is neither an IP address nor a DNS name")
    }
}

/// `(host, port)` of `host:port` or `[ipv6]:port`, neither checked.
pub fn split_address(addr: &str) -> Result<(&str, &str), &'static str> {
    if let Some(rest) = addr.strip_prefix('[') {
        rest.split_once("]:").ok_or("is not [ipv6]:port")
    } else {
        addr.rsplit_once(':').ok_or("is not host:port")
    }
}

/// A DNS name by the rules of rustls-pki-types: at most 253 bytes, an optional trailing dot,
/// labels of 1 to 63 bytes of `[A-Za-z0-9_-]` not ending in `-`, and the last label not a
/// decimal or `0x` hexadecimal number (which would read as an IPv4 address).
fn is_dns_name(name: &str) -> bool {
    if name.len() > 253 {
        return false;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.ends_with('-')
            && !l.starts_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !labels.iter().all(label_ok) {
        return false;
    }
    let last = labels[labels.len() - 1];
    let decimal = last.bytes().all(|b| b.is_ascii_digit());
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    !decimal && !hex
}

/// What is wrong with a consortium file.
#[derive(Debug, thiserror::Error)]
pub enum ConsortiumError {
    #[error("consortium file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// `value` is shown as written (strings quoted, then a space); it is left out for keys.
    #[error("{path}: consortium key {key}: {value}{problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        value: String,
        problem: String,
    },
    #[error("cannot write consortium as TOML: {0}")]
    Encode(#[from] toml::ser::Error),
}

/// The consortium file: the members and the keys every node pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consortium {
    pub name: String,
    pub ca_cert: PathBuf,
    pub rules: RulesConfig,
    pub members: Vec<Member>,
}

/// One `[[members]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// City id, e.g. "changsha": the `origin` of its entries.
    pub city: String,
    pub name_zh: String,
    /// Administrative division code, six digits (e.g. `430100`).
    pub division: String,
    /// Ed25519 verifier key named `credex/<consortium>/<city>`.
    pub log_key: PublicKey,
    /// cosignature/v1 verifier key named `credex/<consortium>/<city>/witness`.
    pub witness_key: PublicKey,
    /// `host:port` of its node.
    pub address: String,
}

/// The consortium file's `[rules]`: what decides validity beyond the schema, the same at every
/// member (see [`Consortium::rules`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesConfig {
    /// Early-pilot USCCs accepted despite a failing check character, flagged in every output.
    #[serde(serialize_with = "serialize_allow_list")]
    pub legacy_uscc_allow_list: LegacyAllowList,
    /// A decision date may be at most this many days after the reference date (1: tomorrow).
    pub decision_days_ahead: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            legacy_uscc_allow_list: LegacyAllowList::empty(),
            decision_days_ahead: DEFAULT_DECISION_DAYS_AHEAD,
        }
    }
}

fn serialize_allow_list<S: Serializer>(list: &LegacyAllowList, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(list.iter())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsortium {
    name: String,
    ca_cert: PathBuf,
    #[serde(default)]
    rules: RawRules,
    members: Vec<RawMember>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    legacy_uscc_allow_list: Vec<String>,
    decision_days_ahead: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    city: String,
    name_zh: String,
    division: String,
    log_key: String,
    witness_key: String,
    address: String,
}

impl Consortium {
    /// Parses and validates the consortium file text `text` read from `path`, which names it
    /// in errors and anchors its relative paths (`ca_cert`). The first problem found is the
    /// error.
    pub fn parse(text: &str, path: &Path) -> Result<Consortium, ConsortiumError> {
        let raw: RawConsortium = toml::from_str(text).map_err(|source| ConsortiumError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        validate(raw, path)
    }

    /// The consortium as TOML, in the layout [`Consortium::parse`] reads.
    pub fn to_toml(&self) -> Result<String, ConsortiumError> {
        Ok(toml::to_string_pretty(self)?)
    }

    pub fn member(&self, city: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.city == city)
    }

    /// The member whose log key signs checkpoints with the origin line `origin`.
    pub fn member_by_origin(&self, origin: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.log_key.name() == origin)
    }

    /// The rules every member validates records by: `[rules]` and the members' divisions.
    pub fn rules(&self) -> Rules {
        Rules {
            legacy_uscc_allow_list: self.rules.legacy_uscc_allow_list.clone(),
            decision_days_ahead: self.rules.decision_days_ahead,
            ..Rules::for_members(self.members.iter().map(|m| (&*m.city, &*m.division)))
        }
    }

    /// Member city ids, in file order.
    pub fn cities(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.city.as_str())
    }

    /// The checkpoint origin (and log key name) of `city`: [`origin`].
    pub fn origin(&self, city: &str) -> String {
        origin(&self.name, city)
    }

    /// The name of `city`'s witness key: [`witness_name`].
    pub fn witness_name(&self, city: &str) -> String {
        witness_name(&self.name, city)
    }
}

/// Builds [`ConsortiumError::Invalid`] for the file at `path`.
struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    /// `value` is `None` for what must not be echoed (key material).
    fn invalid(&self, key: &str, value: Option<&str>, problem: impl ToString) -> ConsortiumError {
        ConsortiumError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            value: value.map_or_else(String::new, |v| format!("{v:?} ")),
            problem: problem.to_string(),
        }
    }
}

fn validate(raw: RawConsortium, path: &Path) -> Result<Consortium, ConsortiumError> {
    let checker = Checker { path };
    let base = path.parent().unwrap_or(Path::new(""));
    check_label(&raw.name).map_err(|e| checker.invalid("name", Some(&raw.name), e))?;
    for (i, code) in raw.rules.legacy_uscc_allow_list.iter().enumerate() {
        LegacyAllowList::new([code])
            .map_err(|e| checker.invalid(&format!("rules.legacy_uscc_allow_list[{i}]"), None, e))?;
    }
    let decision_days_ahead = match raw.rules.decision_days_ahead {
        Some(days) => {
            let (min, max) = DECISION_DAYS_AHEAD;
            if !(min..=max).contains(&days) {
                return Err(ConsortiumError::Invalid {
                    path: path.to_owned(),
                    key: "rules.decision_days_ahead".to_owned(),
                    value: format!("{days} "),
                    problem: format!("is not from {min} to {max}"),
                });
            }
            u32::try_from(days).unwrap_or(u32::MAX)
        }
        None => DEFAULT_DECISION_DAYS_AHEAD,
    };
    let rules = RulesConfig {
        legacy_uscc_allow_list: LegacyAllowList::new(&raw.rules.legacy_uscc_allow_list)
            .map_err(|e| checker.invalid("rules.legacy_uscc_allow_list", None, e))?,
        decision_days_ahead,
    };
    if raw.ca_cert.as_os_str().is_empty() {
        return Err(checker.invalid("ca_cert", Some(""), "is empty"));
    }
    let mut consortium = Consortium {
        ca_cert: base.join(&raw.ca_cert),
        name: raw.name,
        rules,
        members: Vec::with_capacity(raw.members.len()),
    };
    if raw.members.is_empty() {
        return Err(checker.invalid("members", None, "is empty"));
    }
    // Key material → where it was first seen, so reuse across cities or roles is caught.
    let mut keys_seen: BTreeMap<[u8; 32], String> = BTreeMap::new();
    let mut cities_seen: HashMap<String, usize> = HashMap::new();
    let mut divisions_seen: HashMap<String, usize> = HashMap::new();
    for (i, m) in raw.members.into_iter().enumerate() {
        let key = |field: &str| format!("members[{i}].{field}");
        check_label(&m.city).map_err(|e| checker.invalid(&key("city"), Some(&m.city), e))?;
        if let Some(first) = cities_seen.insert(m.city.clone(), i) {
            return Err(checker.invalid(
                &key("city"),
                Some(&m.city),
                format!("repeats members[{first}].city"),
            ));
        }
        let name_zh = m.name_zh.trim();
        if name_zh.is_empty() || name_zh.chars().count() > NAME_ZH_MAX_CHARS {
            return Err(checker.invalid(
                &key("name_zh"),
                Some(&m.name_zh),
                format!("must be 1 to {NAME_ZH_MAX_CHARS} characters"),
            ));
        }
        if m.division.len() != 6 || !m.division.bytes().all(|b| b.is_ascii_digit()) {
            return Err(checker.invalid(
                &key("division"),
                Some(&m.division),
                "is not a six-digit division code",
            ));
        }
        if let Some(first) = divisions_seen.insert(m.division.clone(), i) {
            return Err(checker.invalid(
                &key("division"),
                Some(&m.division),
                format!("repeats members[{first}].division"),
            ));
        }
        check_address(&m.address)
            .map_err(|e| checker.invalid(&key("address"), Some(&m.address), e))?;
        let log_key = member_key(
            &checker,
            &key("log_key"),
            &m.log_key,
            KeyAlgorithm::Ed25519,
            &consortium.origin(&m.city),
        )?;
        let witness_key = member_key(
            &checker,
            &key("witness_key"),
            &m.witness_key,
            KeyAlgorithm::CosignatureV1,
            &consortium.witness_name(&m.city),
        )?;
        for (field, public) in [("log_key", &log_key), ("witness_key", &witness_key)] {
            let here = key(field);
            if let Some(first) = keys_seen.insert(public.verifying_key().to_bytes(), here.clone()) {
                return Err(checker.invalid(
                    &here,
                    None,
                    format!("uses the same key pair as {first}; every key must be its own"),
                ));
            }
        }
        consortium.members.push(Member {
            city: m.city,
            name_zh: name_zh.to_owned(),
            division: m.division,
            log_key,
            witness_key,
            address: m.address,
        });
    }
    Ok(consortium)
}

fn member_key(
    checker: &Checker<'_>,
    key: &str,
    text: &str,
    algorithm: KeyAlgorithm,
    name: &str,
) -> Result<PublicKey, ConsortiumError> {
    // The text is not echoed: a signer key pasted here by mistake must not reach a log.
    let public = PublicKey::parse(text).map_err(|e| checker.invalid(key, None, e))?;
    if public.algorithm() != algorithm {
        return Err(checker.invalid(
            key,
            None,
            format!(
                "key {} is {}, expected {algorithm}",
                public.name(),
                public.algorithm()
            ),
        ));
    }
    if public.name() != name {
        return Err(checker.invalid(
            key,
            None,
            format!("key is named {}, expected {name}", public.name()),
        ));
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_witness_names_have_the_documented_form() {
        assert_eq!(
            origin("mid-yangtze", "changsha"),
            "credex/mid-yangtze/changsha"
        );
        assert_eq!(
            witness_name("mid-yangtze", "changsha"),
            "credex/mid-yangtze/changsha/witness"
        );
    }

    #[test]
    fn addresses_are_host_and_port() {
        let cases = [
            ("wuhan.example:7001", Ok(())),
            ("127.0.0.1:7001", Ok(())),
            ("[::1]:7001", Ok(())),
            ("node_1.local:1", Ok(())),
            ("wuhan.example", Err("is not host:port")),
            ("[::1]7001", Err("is not [ipv6]:port")),
            (
                "wuhan.example:0",
                Err("has a port that is not a number from 1 to 65535"),
            ),
            (
                "wuhan.example:65536",
                Err("has a port that is not a number from 1 to 65535"),
            ),
            (
                "-wuhan:7001",
                Err("has a host that is neither an IP address nor a DNS name"),
            ),
            (
                "a..b:7001",
                Err("has a host that is neither an IP address nor a DNS name"),
            ),
            (
                "1.2.3:7001",
                Err("has a host that is neither an IP address nor a DNS name"),
            ),
            (
                ":7001",
                Err("has a host that is neither an IP address nor a DNS name"),
            ),
        ];
        for (addr, expected) in cases {
            assert_eq!(check_address(addr), expected, "{addr}");
        }
    }
}
