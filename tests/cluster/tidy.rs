//! Invariants of the codebase itself, checked rather than stated (rust-analyzer's "tidy"):
//! the pure core and the auditor's library reach no runtime, network or storage crate, the
//! daemon has no way to tamper with its store, every RPC in the schema has an authorisation
//! rule, README's config table is the config struct, origin strings are built in one place,
//! and only the node's writer thread writes its store (by the store's types, and by a search
//! of the node's source).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use credex_node::auth::Rpc;
use credex_node::config::{Config, load_consortium};
use prost::Message as _;

/// Crates the pure core must not reach, directly or through any dependency.
const FORBIDDEN_IN_CORE: [&str; 6] = ["tonic", "tokio", "sled", "rustls", "hyper", "h2"];

/// The crates `package` depends on, transitively, through normal (not dev or build)
/// dependencies, with features resolved for building `package` alone (as `cargo tree -p` does;
/// `cargo metadata` would unify them across the workspace), by name.
fn normal_dependencies(package: &str) -> Result<BTreeSet<String>> {
    Ok(cargo_tree(package, "{p}")?
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
    let audit = normal_dependencies("credex-audit")?;
    assert!(
        audit.contains("credex-core"),
        "the walk sees the auditor's library's dependencies: {audit:?}"
    );
    let reached: Vec<&str> = FORBIDDEN_IN_CORE
        .into_iter()
        .chain(["credex-node", "credex-store", "credex-cli"])
        .filter(|c| audit.contains(*c))
        .collect();
    assert!(
        reached.is_empty(),
        "credex-audit reaches {reached:?}: an auditor's service would compile the daemon"
    );
    let store = normal_dependencies("credex-store")?;
    assert!(
        !store.contains("tonic") && !store.contains("tokio"),
        "credex-store knows sled, not the network or the runtime"
    );
    Ok(())
}

/// The features `package`, built alone, builds its normal dependency `dep` with (`cargo tree`'s
/// `{f}`), one entry per place `dep` appears in its tree.
fn dependency_features(package: &str, dep: &str) -> Result<Vec<String>> {
    Ok(cargo_tree(package, "{p} [{f}]")?
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(dep))
        .filter_map(|l| Some(l[l.find('[')? + 1..l.find(']')?].to_owned()))
        .collect())
}

#[test]
fn the_daemon_and_credexctl_cannot_tamper_with_a_store() -> Result<()> {
    // `Store::tamper_leaf` exists only with credex-store's feature `test-support`.
    for package in ["credex-node", "credex-cli"] {
        let features = dependency_features(package, "credex-store")?;
        assert!(
            !features.is_empty(),
            "the walk sees {package}'s credex-store"
        );
        assert!(
            features
                .iter()
                .all(|f| !f.split(',').any(|f| f == "test-support")),
            "{package} builds credex-store with {features:?}"
        );
    }
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

fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The config keys README's *Configuration* table names: each backquoted key of its first
/// column, `[[peers]] city, address` as `peers.city` and `peers.address`, `[recognition]` as
/// `recognition`.
fn readme_config_keys(readme: &str) -> Result<BTreeSet<String>> {
    let section = readme
        .split("\n### Configuration\n")
        .nth(1)
        .context("README has a ### Configuration section")?;
    let table = section
        .split("\n| key | meaning |\n")
        .nth(1)
        .context("the Configuration section has a | key | meaning | table")?;
    let mut keys = BTreeSet::new();
    for row in table.lines().skip(1).take_while(|l| l.starts_with('|')) {
        let first = row.split('|').nth(1).unwrap_or_default();
        for key in first.split('`').skip(1).step_by(2) {
            if let Some(rest) = key.strip_prefix("[[") {
                let (table, fields) = rest.split_once("]]").context("[[table]] fields")?;
                for field in fields.split(',') {
                    keys.insert(format!("{table}.{}", field.trim()));
                }
            } else if let Some(table) = key.strip_prefix('[') {
                keys.insert(table.trim_end_matches(']').to_owned());
            } else {
                keys.insert(key.to_owned());
            }
        }
    }
    Ok(keys)
}

/// The keys of a node config as `Config` writes it: `section.key`, `peers.<key>` for the
/// `[[peers]]` tables, and `recognition` for the policy (its own format, README "Recognition").
fn config_struct_keys(config: &Config) -> Result<BTreeSet<String>> {
    let value: toml::Table = toml::from_str(&config.to_toml()?)?;
    let mut keys = BTreeSet::new();
    for (section, value) in value {
        let tables: Vec<&toml::Table> = match &value {
            _ if section == "recognition" => {
                keys.insert(section);
                continue;
            }
            toml::Value::Table(t) => vec![t],
            toml::Value::Array(items) => items.iter().filter_map(toml::Value::as_table).collect(),
            other => bail!("top-level key {section} is not a table: {other}"),
        };
        for table in tables {
            for key in table.keys() {
                keys.insert(format!("{section}.{key}"));
            }
        }
    }
    Ok(keys)
}

#[test]
fn the_readme_config_table_is_the_config_struct() -> Result<()> {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let documented = readme_config_keys(&readme)?;
    // The fixture sets every optional key, so the struct writes all of them.
    let fixture = root.join("crates/credex-node/tests/fixtures/config/changsha.toml");
    let config = Config::load(&fixture, &Default::default())?;
    let fields = config_struct_keys(&config)?;
    assert!(
        fields.contains("admin.listen") && fields.contains("peers.address"),
        "the fixture writes every key: {fields:?}"
    );
    let undocumented: Vec<&String> = fields.difference(&documented).collect();
    // An optional key the fixture leaves out is not written; it is still the struct's when the
    // parser knows it: given a value of the wrong type it complains of the type, not of an
    // unknown field (every section is `deny_unknown_fields`).
    let text = std::fs::read_to_string(&fixture)?;
    let unknown: Vec<&String> = documented
        .difference(&fields)
        .filter(|key| {
            let Some((section, field)) = key.split_once('.') else {
                return true;
            };
            let header = format!("[{section}]\n");
            let probe = match text.find(&header) {
                Some(at) => {
                    let at = at + header.len();
                    format!("{}{field} = [[]]\n{}", &text[..at], &text[at..])
                }
                None => format!("{text}\n[{section}]\n{field} = [[]]\n"),
            };
            match Config::parse(&probe, &fixture, &Default::default(), load_consortium) {
                Ok(_) => false,
                Err(e) => e.to_string().contains("unknown field"),
            }
        })
        .collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "README's config table misses {undocumented:?} and names keys the config does not have: {unknown:?}"
    );
    Ok(())
}

/// Rust files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if !path.ends_with("target") {
                rust_files(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[test]
fn origin_strings_are_built_in_one_place() -> Result<()> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in [
        "crates",
        "tests",
        "fuzz/src",
        "fuzz/fuzz_targets",
        "fuzz/examples",
    ] {
        rust_files(&root.join(dir), &mut files)?;
    }
    assert!(
        files.len() > 50,
        "the walk sees the sources: {}",
        files.len()
    );
    let helper = root.join("crates/credex-core/src/consortium.rs");
    let this = root.join("tests/cluster/tidy.rs");
    // `credex/<consortium>/<city>` written out by a format string instead of
    // `credex_core::consortium::origin` (or `witness_name`).
    let patterns = [
        "format!(\"credex/",
        "\"credex/{",
        "format!(\"{}/witness\"",
        "format!(\"{origin}/witness\"",
    ];
    let mut found = Vec::new();
    for file in files.iter().filter(|f| **f != helper && **f != this) {
        let text = std::fs::read_to_string(file)?;
        for (i, line) in text.lines().enumerate() {
            // A test's expected value spelled out by hand is an oracle, not a second builder.
            if patterns.iter().any(|p| line.contains(p)) && !line.contains("assert") {
                found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "origin strings built outside credex_core::consortium:\n{}",
        found.join("\n")
    );
    Ok(())
}

/// The store's write methods (`Store::apply`, `flush`, `flush_within`, `flush_async`), as
/// called: `.name(`.
const STORE_WRITES: [&str; 4] = [".apply(", ".flush(", ".flush_within(", ".flush_async("];

/// Receivers those names may be called on outside the writer module: the engine (`self` in
/// its own methods, `engine`, `t.engine`), whose `apply`, `flush_durable` and `flush` go to
/// the writer, and the writer handle itself.
const WRITE_RECEIVERS: [&str; 3] = ["self", "engine", "writer"];

/// Every call of a store write method in `source` whose receiver is not one of
/// [`WRITE_RECEIVERS`], as `line: receiver.method(`. Comment lines are skipped and the
/// whitespace around dots dropped first, so a call chained over several lines is seen whole.
fn store_writes(source: &str) -> Vec<String> {
    // The code's characters with the line each came from, lines joined by a space.
    let mut chars: Vec<(char, usize)> = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with("//") {
            chars.extend(line.chars().chain([' ']).map(|c| (c, i + 1)));
        }
    }
    let mut code: Vec<(char, usize)> = Vec::with_capacity(chars.len());
    for (i, &(c, line)) in chars.iter().enumerate() {
        let after_dot = code.last().is_some_and(|(p, _)| *p == '.');
        let before_dot = chars[i..]
            .iter()
            .find(|(c, _)| !c.is_whitespace())
            .is_some_and(|(c, _)| *c == '.');
        if !(c.is_whitespace() && (after_dot || before_dot)) {
            code.push((c, line));
        }
    }
    let text: String = code.iter().map(|(c, _)| *c).collect();
    let mut found = Vec::new();
    for method in STORE_WRITES {
        for (at, _) in text.match_indices(method) {
            let receiver = text[..at]
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                .next()
                .unwrap_or_default();
            let last = receiver.rsplit('.').next().unwrap_or_default();
            if !WRITE_RECEIVERS.contains(&last) {
                // `text` holds `code`'s characters one for one.
                let line = code[text[..at].chars().count()].1;
                found.push(format!("{line}: {receiver}{method}"));
            }
        }
    }
    found.sort();
    found
}

/// Compiles only while `T` is not `Clone`: were it, both impls below would apply and
/// `<T as NotClone<_>>::check` would be ambiguous (the device of `static_assertions`'
/// `assert_not_impl_any!`).
trait NotClone<Ambiguity> {
    fn check() {}
}

impl<T: ?Sized> NotClone<()> for T {}

struct IfClone;

impl<T: Clone> NotClone<IfClone> for T {}

/// What a store write called on a `StoreReader` resolves to while the reader has no such
/// method: an inherent method of the same name would be chosen over this trait's, and would
/// not return [`NotAWrite`].
struct NotAWrite;

trait ReaderWrites {
    fn apply(&self, _: credex_store::WriteBatch) -> NotAWrite {
        NotAWrite
    }
    fn flush(&self) -> NotAWrite {
        NotAWrite
    }
    fn flush_within(&self, _: std::time::Duration) -> NotAWrite {
        NotAWrite
    }
    fn flush_async(&self) -> NotAWrite {
        NotAWrite
    }
    fn tamper_leaf(&self, _: &str, _: u64, _: &[u8]) -> NotAWrite {
        NotAWrite
    }
}

impl ReaderWrites for credex_store::StoreReader {}

/// One writer, held first by the types and then by a text search.
///
/// The types: `credex_store::Store` carries every write (`apply`, `flush`, `flush_within`,
/// `flush_async`, and `tamper_leaf` with `test-support`) and is not `Clone`, so the one
/// `Store` a node opens (`server.rs`) is moved into its writer (`Writer::start` takes it by
/// value, `engine/writer.rs`) and nothing else can hold it; the engine, and through it every
/// adapter, holds a `StoreReader`, which has every reader and no write. This test does not
/// compile if `Store` becomes `Clone` or `StoreReader` gains any of those methods.
///
/// The text search, a second line of defence: no call of a store write method in credex-node
/// outside `engine/writer.rs`, whatever the receiver's type, so neither the code that opens
/// the store before handing it over nor a test harness writes around the writer.
#[test]
fn the_store_is_written_only_by_the_writer() -> Result<()> {
    <credex_store::Store as NotClone<_>>::check();
    let _reader_writes =
        |reader: &credex_store::StoreReader, batch: credex_store::WriteBatch| -> [NotAWrite; 5] {
            [
                reader.apply(batch),
                reader.flush(),
                reader.flush_within(std::time::Duration::ZERO),
                reader.flush_async(),
                reader.tamper_leaf("", 0, &[]),
            ]
        };
    // The scan sees a direct write however it is spelled, and lets the engine's own through.
    assert_eq!(
        store_writes(
            "self.store.apply(batch)?;\nlet s = self\n    .store\n    .flush_within(d);\n\
             // store.flush() in a comment\nstore.flush_async().await;\nreturn self.apply(b).await;\n\
             self.writer.apply(b).await;\nt.engine.flush().await;"
        ),
        [
            "1: self.store.apply(",
            "4: self.store.flush_within(",
            "6: store.flush_async(",
        ]
        .map(str::to_owned)
    );
    let src = workspace_root().join("crates/credex-node/src");
    let writer = src.join("engine/writer.rs");
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    assert!(files.contains(&writer), "the walk sees the writer module");
    assert!(
        !store_writes(&std::fs::read_to_string(&writer)?).is_empty(),
        "the writer module's own store calls are found"
    );
    let mut found = Vec::new();
    for file in files.iter().filter(|f| **f != writer) {
        for call in store_writes(&std::fs::read_to_string(file)?) {
            found.push(format!("{}:{call}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "store writes outside engine/writer.rs (send them through the engine's writer):\n{}",
        found.join("\n")
    );
    Ok(())
}

/// `cargo tree -p package` over normal dependencies, one line per crate in `format`, features
/// resolved for building `package` alone.
fn cargo_tree(package: &str, format: &str) -> Result<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .args(["--format", format, "--locked", "--offline"])
        .current_dir(&root)
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!("cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?)
}
