//! The consortium folder: what `credexctl consortium init` writes and what every other
//! command reads (`--home DIR`, or `CREDEX_HOME`).
//!
//! ```text
//! <home>/
//!   consortium.toml          the consortium file: name, CA, members with address,
//!                            division and pinned log / witness verifier keys
//!   ca.pem                   the consortium CA certificate (every party's trust anchor)
//!   ca.key                   the CA's private key (0600; a dev CA: keep it offline in earnest)
//!   <city>/                  one folder per member, e.g. changsha/
//!     node.toml              credexd's config: `credexd --config <home>/<city>/node.toml`
//!     node.pem  node.key     the node's certificate (server and client auth) and key (0600)
//!     log.key                the log signer key, signed-note encoding (0600)
//!     witness.key            the witness signer key (0600)
//!     clients/
//!       publisher.pem  publisher.key
//!       operator.pem   operator.key
//!       auditor.pem    auditor.key
//!       reader.pem     reader.key
//!       enforcement.pem enforcement.key   a court or bank: full ID numbers, purpose logged
//!     data/                  credexd's database (created by credexd)
//!     credexd.log            credexd's output when `credexctl demo` runs it
//! ```
//!
//! Every path inside the TOML files is relative to the file that holds it, so the folder can
//! be moved or copied to another machine as a whole; each city's folder is what that city's
//! operator needs, and `ca.key` is what nobody but the consortium's administrator does.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use credex_node::config::{Consortium, Member};
use credex_node::tls::{Role, TlsFiles};

/// The consortium file's name inside the folder.
pub const CONSORTIUM_FILE: &str = "consortium.toml";
/// A city's node config inside its folder.
pub const NODE_CONFIG: &str = "node.toml";

/// A consortium folder.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn consortium_file(&self) -> PathBuf {
        self.root.join(CONSORTIUM_FILE)
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    pub fn city_dir(&self, city: &str) -> PathBuf {
        self.root.join(city)
    }

    pub fn node_config(&self, city: &str) -> PathBuf {
        self.city_dir(city).join(NODE_CONFIG)
    }

    /// Where credexd's output goes when the demo runs it.
    pub fn node_log(&self, city: &str) -> PathBuf {
        self.city_dir(city).join("credexd.log")
    }

    /// The certificate of `role` in `city`: the node's own, or a client's.
    pub fn cert(&self, city: &str, role: Role) -> PathBuf {
        self.party_file(city, role, "pem")
    }

    /// The private key of `role` in `city`.
    pub fn key(&self, city: &str, role: Role) -> PathBuf {
        self.party_file(city, role, "key")
    }

    fn party_file(&self, city: &str, role: Role, ext: &str) -> PathBuf {
        match role {
            Role::Node => self.city_dir(city).join(format!("node.{ext}")),
            other => self
                .city_dir(city)
                .join("clients")
                .join(format!("{other}.{ext}")),
        }
    }

    /// Reads and validates the consortium file.
    pub fn load_consortium(&self) -> Result<Consortium> {
        let path = self.consortium_file();
        credex_node::config::load_consortium(&path).with_context(|| {
            format!(
                "consortium folder {}: expected what `credexctl consortium init` writes",
                self.root.display()
            )
        })
    }

    /// The TLS files `role` of `city` connects with: its certificate and key, and the
    /// consortium's CA.
    pub fn client_files(&self, consortium: &Consortium, city: &str, role: Role) -> TlsFiles {
        TlsFiles {
            ca_cert: consortium.ca_cert.clone(),
            cert: self.cert(city, role),
            key: self.key(city, role),
        }
    }
}

/// The member `city` of a consortium; the error lists the members.
pub fn member<'a>(consortium: &'a Consortium, city: &str) -> Result<&'a Member> {
    consortium.member(city).with_context(|| {
        format!(
            "city {city:?} is not a member of consortium {} (members: {})",
            consortium.name,
            consortium.cities().collect::<Vec<_>>().join(", ")
        )
    })
}
