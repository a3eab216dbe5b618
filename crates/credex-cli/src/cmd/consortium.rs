//! `credexctl consortium init`: the command line of [`credex_cli::consortium::init`], which
//! writes a ready-to-run consortium folder (layout in [`credex_cli::home`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use credex_cli::city::{CitySpec, capitals};
use credex_cli::consortium::{InitOptions, init_with_rules};
use credex_cli::output::{Table, print_json};
use credex_core::ident::LegacyAllowList;
use credex_node::config::RulesConfig;
use serde::Serialize;

use crate::Global;
use credex_cli::outln;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a new consortium folder: dev CA, node and client certificates, log and witness
    /// keys, the consortium file and every node's config (full mesh of peers).
    Init(InitArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The consortium's name: a lowercase DNS label, part of every SPIFFE ID and checkpoint
    /// origin.
    #[arg(long, value_name = "NAME", default_value = "mid-yangtze")]
    name: String,
    /// A member city, as id:名称:division (e.g. zhuzhou:株洲:430200) or the id of a default
    /// city; repeat for each [default: changsha, wuhan, hefei, nanchang].
    #[arg(long = "member", value_name = "ID:名称:DIVISION")]
    members: Vec<CitySpec>,
    /// The folder to create; it must not exist or be empty.
    #[arg(long, value_name = "DIR", default_value = "credex-consortium")]
    out: PathBuf,
    /// The host the nodes listen on and are reached at (an IP address, or a DNS name they are
    /// reached at while listening on 0.0.0.0).
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    host: String,
    /// The i-th city's node (from 0) listens on this port + i, its metrics on this port +
    /// 100 + i.
    #[arg(long, value_name = "PORT", default_value_t = 7400, value_parser = super::integer::<u16>(1, u16::MAX.into()))]
    base_port: u16,
    /// An early-pilot USCC whose check character is wrong but which is in use: every member
    /// accepts records on it (flagged `legacy_code`). Written to the consortium file's
    /// `[rules]`; repeat for each.
    #[arg(long = "legacy-uscc", value_name = "USCC")]
    legacy_uscc: Vec<String>,
    /// How many days after today a decision date may lie (`[rules] decision_days_ahead`).
    #[arg(long, value_name = "DAYS", default_value_t = credex_core::rules::DEFAULT_DECISION_DAYS_AHEAD,
          value_parser = super::integer::<u32>(0, u32::MAX.into()))]
    decision_days_ahead: u32,
}

pub fn run(global: &Global, command: Command) -> Result<()> {
    let Command::Init(args) = command;
    let cities = if args.members.is_empty() {
        capitals()
    } else {
        args.members
    };
    let rules = RulesConfig {
        legacy_uscc_allow_list: LegacyAllowList::new(&args.legacy_uscc).context("--legacy-uscc")?,
        decision_days_ahead: args.decision_days_ahead,
    };
    let home = init_with_rules(
        &InitOptions {
            out: args.out,
            name: args.name.clone(),
            cities,
            host: args.host,
            base_port: args.base_port,
        },
        &rules,
    )?;
    let consortium = home.load_consortium()?;
    if global.json {
        return print_json(&InitJson {
            home: home.root(),
            consortium: &consortium.name,
            members: consortium
                .members
                .iter()
                .map(|m| MemberJson {
                    city: &m.city,
                    name_zh: &m.name_zh,
                    division: &m.division,
                    address: &m.address,
                    config: home.node_config(&m.city),
                })
                .collect(),
        });
    }
    outln!(
        "consortium {} written to {}",
        consortium.name,
        home.root().display()
    )?;
    let mut t = Table::new(&["CITY", "NAME", "DIVISION", "ADDRESS", "CONFIG"]);
    for m in &consortium.members {
        t.row(vec![
            m.city.clone(),
            m.name_zh.clone(),
            m.division.clone(),
            m.address.clone(),
            home.node_config(&m.city).display().to_string(),
        ]);
    }
    t.print()?;
    if let Some(first) = consortium.cities().next() {
        outln!(
            "\nstart a node:  credexd --config {}",
            home.node_config(first).display()
        )?;
        outln!(
            "then:          export CREDEX_HOME={} CREDEX_CITY={first}; credexctl status",
            home.root().display()
        )?;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct InitJson<'a> {
    home: &'a Path,
    consortium: &'a str,
    members: Vec<MemberJson<'a>>,
}

#[derive(Debug, Serialize)]
struct MemberJson<'a> {
    city: &'a str,
    name_zh: &'a str,
    division: &'a str,
    address: &'a str,
    config: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cli;
    use clap::Parser;
    use credex_cli::consortium::CLIENT_ROLES;
    use credex_cli::home::Home;
    use credex_node::config::Config;
    use credex_node::tls::{Role, TlsMaterial};
    use std::collections::HashMap;

    fn parse(args: &[&str]) -> Result<InitArgs, String> {
        let cli = Cli::try_parse_from(std::iter::once("credexctl").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        match cli.command {
            crate::Command::Consortium(Command::Init(args)) => Ok(args),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    #[test]
    fn init_writes_a_folder_the_node_and_clients_load() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let out = dir.path().join("c");
        let args = parse(&[
            "consortium",
            "init",
            "--out",
            out.to_str().expect("utf-8"),
            "--base-port",
            "7600",
        ])
        .expect("arguments");
        let home = Home::new(&args.out);
        let global = Global {
            home: None,
            city: None,
            role: None,
            json: true,
            timeout: 30,
        };
        run(&global, Command::Init(args)).expect("init");

        let consortium = home.load_consortium().expect("the consortium file loads");
        assert_eq!(consortium.name, "mid-yangtze");
        assert_eq!(
            consortium.cities().collect::<Vec<_>>(),
            ["changsha", "wuhan", "hefei", "nanchang"]
        );
        let wuhan = consortium.member("wuhan").expect("wuhan");
        assert_eq!(
            (wuhan.name_zh.as_str(), wuhan.division.as_str()),
            ("武汉", "420100")
        );
        assert_eq!(wuhan.address, "127.0.0.1:7601");
        assert_eq!(wuhan.log_key.name(), "credex/mid-yangtze/wuhan");
        assert_eq!(wuhan.witness_key.name(), "credex/mid-yangtze/wuhan/witness");
        for city in consortium.cities() {
            let config = Config::load(&home.node_config(city), &HashMap::new())
                .expect("the node config loads");
            assert_eq!(config.node.data_dir, home.city_dir(city).join("data"));
            config
                .signing_keys()
                .expect("the signer keys match the pinned verifier keys");
            let node = TlsMaterial::load(&config.tls)
                .and_then(|m| m.identity())
                .expect("node tls");
            assert_eq!(
                node.to_string(),
                format!("spiffe://mid-yangtze/{city}/node")
            );
            for role in CLIENT_ROLES {
                let files = home.client_files(&consortium, city, role);
                let identity = TlsMaterial::load(&files)
                    .and_then(|m| m.identity())
                    .expect("client tls");
                assert_eq!(
                    identity.to_string(),
                    format!("spiffe://mid-yangtze/{city}/{role}")
                );
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: PathBuf| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode(home.ca_key()), 0o600);
            assert_eq!(mode(home.key("hefei", Role::Reader)), 0o600);
            assert_eq!(mode(home.key("hefei", Role::Enforcement)), 0o600);
            assert_eq!(mode(home.city_dir("hefei").join("witness.key")), 0o600);
        }
    }

    #[test]
    fn any_list_of_cities_works() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let args = parse(&[
            "consortium",
            "init",
            "--name",
            "chang-zhu-tan",
            "--member",
            "zhuzhou:株洲:430200",
            "--member",
            "xiangtan:湘潭市:430300",
            "--member",
            "changsha",
            "--out",
            dir.path().to_str().expect("utf-8"),
        ])
        .expect("arguments");
        let home = Home::new(&args.out);
        let global = Global {
            home: None,
            city: None,
            role: None,
            json: true,
            timeout: 30,
        };
        run(&global, Command::Init(args)).expect("init into an empty folder");
        let consortium = home.load_consortium().expect("loads");
        let members: Vec<_> = consortium
            .members
            .iter()
            .map(|m| format!("{} {} {}", m.city, m.name_zh, m.division))
            .collect();
        assert_eq!(
            members,
            [
                "zhuzhou 株洲 430200",
                "xiangtan 湘潭 430300",
                "changsha 长沙 430100"
            ]
        );
    }

    #[test]
    fn argument_errors() {
        let err = |args: &[&str]| parse(args).expect_err("an argument error");
        let e = err(&["consortium", "init", "--member", "zhuzhou"]);
        assert!(
            e.contains("\"zhuzhou\" is not one of the default cities"),
            "{e}"
        );
        let e = err(&["consortium", "init", "--member", "zhuzhou:株洲:43"]);
        assert!(e.contains("division code \"43\" is not six digits"), "{e}");
        let e = err(&["consortium", "init", "--base-port", "70000"]);
        assert!(e.contains("70000"), "{e}");
    }
}
