//! `credexctl` as a user runs it: the built binary against a real node (run in-process through
//! `credex_node::server::run`, mutual TLS on 127.0.0.1), checking exit codes and what it prints.

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use credex_cli::city::capitals;
use credex_cli::consortium::{InitOptions, init};
use credex_node::config::Config;
use credex_node::server::{self, Listeners};
use tokio::sync::oneshot;

const CREDEXCTL: &str = env!("CARGO_BIN_EXE_credexctl");

/// How long a node may take to start serving.
const DEADLINE: Duration = Duration::from_secs(60);

/// A one-city consortium in a temp folder and its node, running until dropped.
struct Node {
    dir: tempfile::TempDir,
    home: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // The consortium file names the node at the port already bound.
        let home = init(&InitOptions {
            out: dir.path().join("consortium"),
            name: "mid-yangtze".to_owned(),
            cities: capitals()[..1].to_vec(),
            host: "127.0.0.1".to_owned(),
            base_port: port,
        })
        .unwrap();
        let env = HashMap::from([
            ("CREDEX_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
            ("CREDEX_METRICS_LISTEN".to_owned(), String::new()),
            ("CREDEX_PEERS".to_owned(), String::new()),
        ]);
        let config = Config::load(&home.node_config("changsha"), &env).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(
            config,
            Listeners {
                grpc: listener,
                admin: None,
            },
            async {
                let _ = stopped.await;
            },
        ));
        let node = Node {
            home: dir.path().join("consortium"),
            dir,
            stop: Some(stop),
            task: Some(task),
        };
        let started = Instant::now();
        while !ctl(&node.home, &["status"]).await.status.success() {
            assert!(started.elapsed() < DEADLINE, "the node did not start");
            // Polling interval of a condition wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node
    }

    /// Publishes `count` generated records and returns the file they were read from.
    async fn publish(&self, count: u32) -> PathBuf {
        let generated = ctl(&self.home, &["gen", "--count", &count.to_string()]).await;
        assert!(generated.status.success(), "{generated:?}");
        let file = self.dir.path().join("records.jsonl");
        std::fs::write(&file, &generated.stdout).unwrap();
        let published = ctl(&self.home, &["publish", file.to_str().unwrap()]).await;
        assert!(published.status.success(), "{published:?}");
        file
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// `credexctl --home HOME --city changsha ARGS…`, its output collected.
async fn ctl(home: &Path, args: &[&str]) -> Output {
    let mut command = base_command(home);
    command.args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn base_command(home: &Path) -> Command {
    let mut command = Command::new(CREDEXCTL);
    command
        .arg("--home")
        .arg(home)
        .args(["--city", "changsha"])
        .env_remove("CREDEX_HOME")
        .env_remove("CREDEX_CITY")
        .env_remove("CREDEX_LOG")
        .stdin(Stdio::null());
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The first company's USCC in a JSON Lines file of generated records.
fn first_uscc(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .map(|line| credex_cli::json::parse_record(line).unwrap())
        .filter_map(|record| record.subject)
        .map(|subject| subject.uscc)
        .find(|uscc| !uscc.is_empty())
        .expect("a record about a company")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_every_command_quietly() {
    let node = Node::start().await;
    let records = node.publish(40).await;
    let uscc = first_uscc(&records);
    let out = node.dir.path().join("another");
    let commands: Vec<Vec<&str>> = vec![
        vec!["lookup", &uscc],
        vec!["--json", "lookup", &uscc],
        vec!["list", "--all"],
        vec!["--json", "list", "--all"],
        vec!["status"],
        vec!["invalid"],
        vec!["audit", "log", "changsha"],
        vec!["gen", "--count", "10000"],
        vec!["consortium", "init", "--out", out.to_str().unwrap()],
    ];
    for args in commands {
        // A pipe whose reader is gone before the command starts: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut command = base_command(&node.home);
        command.args(&args).stdout(writer).stderr(Stdio::piped());
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "credexctl {}: {:?}, stderr {:?}",
            args.join(" "),
            output.status,
            stderr(&output)
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_governs_connecting_too() {
    // A port that completes TCP (the kernel's backlog) but never answers the TLS handshake.
    let silent = StdListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let home = init(&InitOptions {
        out: dir.path().join("consortium"),
        name: "mid-yangtze".to_owned(),
        cities: capitals()[..1].to_vec(),
        host: "127.0.0.1".to_owned(),
        base_port: port,
    })
    .unwrap();
    // Longer than the 10 s the dialer used to stop at whatever --timeout said.
    let started = Instant::now();
    let output = ctl(home.root(), &["--timeout", "11", "status"]).await;
    let took = started.elapsed();
    println!("gave up after {took:?}: {}", stderr(&output));
    assert!(!output.status.success());
    assert!(took >= Duration::from_secs(11), "gave up after {took:?}");
    assert_eq!(
        stderr(&output).trim_end(),
        format!(
            "credexctl: connecting to changsha: cannot connect to 127.0.0.1:{port}: \
             tls handshake: no answer within 11s"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_files_may_start_with_a_byte_order_mark() {
    let node = Node::start().await;
    let generated = ctl(&node.home, &["gen", "--count", "3"]).await;
    let file = node.dir.path().join("bom.jsonl");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(&generated.stdout);
    std::fs::write(&file, bytes).unwrap();
    let output = ctl(&node.home, &["publish", file.to_str().unwrap()]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("published 3 new records to changsha"),
        "{stdout}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_integers_are_called_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // Each is refused before anything connects, so no node is needed.
    for (args, message) in [
        (
            vec!["consortium", "init", "--base-port", "70000"],
            "invalid value '70000' for '--base-port <PORT>': 70000 is out of range 1..=65535",
        ),
        (
            vec!["list", "--page-size", "99999999999999999999"],
            "invalid value '99999999999999999999' for '--page-size <N>': \
             99999999999999999999 is out of range 1..=1000",
        ),
        (
            vec!["gen", "--count=-1"],
            "invalid value '-1' for '--count <N>': -1 is out of range 0..=18446744073709551615",
        ),
        (
            vec!["--timeout", "0", "status"],
            "invalid value '0' for '--timeout <SECS>': 0 is out of range 1..=3600",
        ),
        (
            vec![
                "lookup",
                "91430100MA4L000030",
                "--as-known-at",
                "99999999999999999999",
            ],
            "invalid value '99999999999999999999' for '--as-known-at <TIME>': \
             99999999999999999999 is out of range 1..=9223372036854775807",
        ),
    ] {
        let output = ctl(home, &args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // In a JSON Lines file, before anything is sent.
    let file = dir.path().join("records.jsonl");
    std::fs::write(&file, "{\"record_id\":\"CS-1\",\"version\":4294967296}\n").unwrap();
    let output = ctl(home, &["publish", file.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("line 1: version: 4294967296 is out of range 0..=4294967295"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_origins_and_categories_in_filters_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = init(&InitOptions {
        out: dir.path().join("consortium"),
        name: "mid-yangtze".to_owned(),
        cities: capitals(),
        host: "127.0.0.1".to_owned(),
        base_port: 7400,
    })
    .unwrap();
    // Refused before connecting: no node listens at the consortium's addresses.
    for args in [
        vec!["list", "--origin", "xian"],
        vec!["invalid", "--origin", "xian"],
        vec!["audit", "evidence", "--origin", "xian", "--out", "e.txt"],
    ] {
        let output = ctl(home.root(), &args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert_eq!(
            stderr(&output).trim_end(),
            "credexctl: --origin \"xian\": not a member of consortium mid-yangtze \
             (members: changsha, wuhan, hefei, nanchang)",
            "{args:?}"
        );
    }
    let output = ctl(home.root(), &["list", "--category", "court.nonsense"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        stderr(&output).contains(
            "invalid value 'court.nonsense' for '--category <CODE>': unknown category \
             \"court.nonsense\": not in the category catalogue"
        ) && stderr(&output).contains("the categories of field court are court."),
        "{}",
        stderr(&output)
    );
}
