//! `credexctl consortium init`: a whole development consortium in one folder — a dev CA, per
//! city a node certificate, client certificates for every role, log and witness keys, the
//! consortium file pinning every member's keys, and a node config on `host` ports. The layout
//! is described in [`crate::home`].
//!
//! The CA key is written beside the rest so the folder can issue more certificates; in a real
//! deployment each city generates its own keys and the consortium's administrator keeps the CA
//! offline.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use credex_core::keys::{KeyAlgorithm, SigningKeyPair};
use credex_core::policy::RecognitionPolicy;
use credex_node::config::{
    AdminConfig, Config, Consortium, KeyFiles, LimitsConfig, LogConfig, Member, NodeConfig,
    PeerConfig, RulesConfig, StorageConfig, SyncConfig,
};
use credex_node::tls::{self, Identity, Role, TlsFiles};

use crate::city::{CitySpec, check_city_id};
use crate::home::{CONSORTIUM_FILE, Home};
use crate::pki::{self, CertifiedKey};

/// The client roles that get a certificate in every city.
pub const CLIENT_ROLES: [Role; 5] = [
    Role::Publisher,
    Role::Operator,
    Role::Auditor,
    Role::Reader,
    Role::Enforcement,
];

/// What `consortium init` builds.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The folder to create (must not exist, or be empty).
    pub out: PathBuf,
    /// The consortium's name: a DNS label, used in SPIFFE IDs and checkpoint origins.
    pub name: String,
    pub cities: Vec<CitySpec>,
    /// The host every node listens on and is reached at.
    pub host: String,
    /// City i's node listens on `base_port + i`, its metrics on `base_port + 100 + i`.
    pub base_port: u16,
}

/// Creates the consortium folder; every config written is loaded back as a check.
pub fn init(options: &InitOptions) -> Result<Home> {
    init_with_rules(options, &RulesConfig::default())
}

/// [`init`] with the consortium's `[rules]` (legacy allow-list, date tolerance), which every
/// member validates records by.
pub fn init_with_rules(options: &InitOptions, rules: &RulesConfig) -> Result<Home> {
    tls::check_label("consortium name", &options.name)?;
    if options.cities.is_empty() {
        bail!("--member: a consortium needs at least one city");
    }
    for (i, city) in options.cities.iter().enumerate() {
        check_city_id(&city.id).map_err(anyhow::Error::msg)?;
        if options.cities[..i].iter().any(|c| c.id == city.id) {
            bail!("--member: {} is listed twice", city.id);
        }
    }
    let last_port = u32::from(options.base_port) + 100 + options.cities.len() as u32;
    if last_port > u32::from(u16::MAX) {
        bail!(
            "--base-port: {} leaves no room for {} cities",
            options.base_port,
            options.cities.len()
        );
    }
    if options.out.exists() && std::fs::read_dir(&options.out)?.next().is_some() {
        bail!("--out: {} exists and is not empty", options.out.display());
    }
    let home = Home::new(&options.out);
    std::fs::create_dir_all(home.root())
        .with_context(|| format!("creating {}", home.root().display()))?;

    let ca = pki::generate_ca(&options.name)?;
    write(&home.ca_cert(), &ca.cert_pem, false)?;
    write(&home.ca_key(), &ca.key_pem, true)?;

    let address = |i: usize, offset: u16| {
        format!("{}:{}", options.host, options.base_port + offset + i as u16)
    };
    let mut members = Vec::new();
    for (i, city) in options.cities.iter().enumerate() {
        let dir = home.city_dir(&city.id);
        std::fs::create_dir_all(dir.join("clients"))?;
        let log = SigningKeyPair::generate(
            &credex_core::consortium::origin(&options.name, &city.id),
            KeyAlgorithm::Ed25519,
        )?;
        let witness = SigningKeyPair::generate(
            &credex_core::consortium::witness_name(&options.name, &city.id),
            KeyAlgorithm::CosignatureV1,
        )?;
        write(&dir.join("log.key"), &format!("{}\n", log.encode()), true)?;
        write(
            &dir.join("witness.key"),
            &format!("{}\n", witness.encode()),
            true,
        )?;
        let node = Identity::new(&options.name, &city.id, Role::Node)?;
        issue(&home, &ca, &node, &[options.host.as_str(), "localhost"])?;
        for role in CLIENT_ROLES {
            issue(
                &home,
                &ca,
                &Identity::new(&options.name, &city.id, role)?,
                &[],
            )?;
        }
        members.push(Member {
            city: city.id.clone(),
            name_zh: city.name.clone(),
            division: city.division.clone(),
            log_key: log.public(),
            witness_key: witness.public(),
            address: address(i, 0),
        });
    }
    let consortium = Consortium {
        name: options.name.clone(),
        ca_cert: PathBuf::from("ca.pem"),
        rules: rules.clone(),
        members,
    };
    write(&home.consortium_file(), &consortium.to_toml()?, false)?;

    for (i, city) in options.cities.iter().enumerate() {
        let listen = listen_address(&options.host, options.base_port + i as u16)?;
        // Loopback whatever the host: beyond it the admin listener needs a token or client
        // certificates, which the operator chooses (README "Admin HTTP").
        let admin = listen_address("127.0.0.1", options.base_port + 100 + i as u16)?;
        let config = Config {
            node: NodeConfig {
                city: city.id.clone(),
                consortium_file: Path::new("..").join(CONSORTIUM_FILE),
                data_dir: PathBuf::from("data"),
                listen,
            },
            tls: TlsFiles {
                ca_cert: Path::new("..").join("ca.pem"),
                cert: PathBuf::from("node.pem"),
                key: PathBuf::from("node.key"),
            },
            keys: KeyFiles {
                log_key: PathBuf::from("log.key"),
                witness_key: PathBuf::from("witness.key"),
            },
            peers: consortium
                .members
                .iter()
                .filter(|m| m.city != city.id)
                .map(|m| PeerConfig {
                    city: m.city.clone(),
                    address: m.address.clone(),
                })
                .collect(),
            admin: AdminConfig {
                listen: Some(admin),
                ..AdminConfig::default()
            },
            sync: SyncConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            recognition: RecognitionPolicy::default(),
            log: LogConfig::default(),
            consortium: consortium.clone(),
        };
        let path = home.node_config(&city.id);
        write(&path, &config.to_toml()?, false)?;
        Config::load(&path, &Default::default())
            .with_context(|| format!("checking the config written to {}", path.display()))?;
    }
    Ok(home)
}

/// A node listens on `host` when it is an IP address, on every interface otherwise (a
/// container's hostname names it from the outside).
fn listen_address(host: &str, port: u16) -> Result<std::net::SocketAddr> {
    let ip: std::net::IpAddr = host.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    Ok(std::net::SocketAddr::new(ip, port))
}

fn issue(home: &Home, ca: &CertifiedKey, identity: &Identity, hosts: &[&str]) -> Result<()> {
    let cert = pki::issue(ca, identity, hosts)?;
    write(
        &home.cert(&identity.city, identity.role),
        &cert.cert_pem,
        false,
    )?;
    write(
        &home.key(&identity.city, identity.role),
        &cert.key_pem,
        true,
    )
}

/// Writes a file; secrets are created 0600 (never world-readable, not even briefly).
fn write(path: &Path, contents: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_folder_every_node_config_of_which_loads() {
        let dir = tempfile::tempdir().unwrap();
        let home = init(&InitOptions {
            out: dir.path().join("c"),
            name: "mid-yangtze".to_owned(),
            cities: crate::city::capitals(),
            host: "127.0.0.1".to_owned(),
            base_port: 7100,
        })
        .unwrap();
        for (i, city) in ["changsha", "wuhan", "hefei", "nanchang"]
            .iter()
            .enumerate()
        {
            let config = Config::load(&home.node_config(city), &Default::default()).unwrap();
            assert_eq!(config.node.listen.port(), 7100 + i as u16);
            assert_eq!(config.peers.len(), 3);
            let keys = config.signing_keys().unwrap();
            assert_eq!(keys.log.name(), format!("credex/mid-yangtze/{city}"));
            for role in CLIENT_ROLES {
                assert!(home.cert(city, role).exists());
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.city_dir("wuhan").join("log.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "secret keys are private");
        }
        let again = init(&InitOptions {
            out: home.root().to_owned(),
            name: "mid-yangtze".to_owned(),
            cities: crate::city::capitals(),
            host: "127.0.0.1".to_owned(),
            base_port: 7100,
        });
        assert!(
            again
                .unwrap_err()
                .to_string()
                .contains("exists and is not empty")
        );
    }
}
