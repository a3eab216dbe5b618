//! Invariants of the codebase itself, checked rather than stated (rust-analyzer's "tidy"):
//! the pure core reaches no runtime, network or storage crate, and every RPC in the schema has
//! an authorisation rule.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use credex_node::auth::Rpc;
use prost::Message as _;

/// Crates the pure core must not reach, directly or through any dependency.
const FORBIDDEN_IN_CORE: [&str; 6] = ["tonic", "tokio", "sled", "rustls", "hyper", "h2"];

/// The crates `package` depends on, transitively, through normal (not dev or build)
/// dependencies, with features resolved for building `package` alone (as `cargo tree -p` does;
/// `cargo metadata` would unify them across the workspace), by name.
fn normal_dependencies(package: &str) -> Result<BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}", "--locked", "--offline"])
        .current_dir(&root)
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!("cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_owned)
        .collect())
}

#[test]
fn the_core_reaches_no_runtime_network_or_storage_crate() -> Result<()> {
    let deps = normal_dependencies("credex-core")?;
    assert!(
        deps.contains("credex-proto"),
        "the walk sees the core's dependencies: {deps:?}"
    );
    let reached: Vec<&str> = FORBIDDEN_IN_CORE
        .into_iter()
        .filter(|c| deps.contains(*c))
        .collect();
    assert!(reached.is_empty(), "credex-core reaches {reached:?}");
    let store = normal_dependencies("credex-store")?;
    assert!(
        !store.contains("tonic") && !store.contains("tokio"),
        "credex-store knows sled, not the network or the runtime"
    );
    Ok(())
}

#[test]
fn every_rpc_in_the_schema_has_an_authorisation_rule() -> Result<()> {
    let set = prost_types::FileDescriptorSet::decode(credex_proto::FILE_DESCRIPTOR_SET)?;
    let mut paths = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "credex.v1") {
        for service in &file.service {
            for method in &service.method {
                paths.push(format!("/credex.v1.{}/{}", service.name(), method.name()));
            }
        }
    }
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| Rpc::from_grpc_path(p).is_none())
        .collect();
    assert!(paths.len() >= Rpc::ALL.len(), "{paths:?}");
    assert!(
        missing.is_empty(),
        "RPCs without an authorisation rule: {missing:?}"
    );
    Ok(())
}
