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
        vec!["status", "--watch"],
        vec!["export", "--list", "penalty", "--format", "csv"],
        vec!["export", "--list", "black", "--format", "jsonl"],
        vec!["watch", "--from-start"],
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

/// The 双公示 administrative-penalty export's headers, and 证件号码 for natural persons.
const PENALTY_HEADERS: [&str; 18] = [
    "行政相对人名称",
    "行政相对人类别",
    "统一社会信用代码",
    "法定代表人",
    "行政处罚决定书文号",
    "违法行为类型",
    "违法事实",
    "处罚依据",
    "处罚类别",
    "处罚内容",
    "罚款金额(万元)",
    "处罚决定日期",
    "公示截止期",
    "处罚机关",
    "处罚机关统一社会信用代码",
    "数据来源单位",
    "备注",
    "证件号码",
];

/// How a generated row is spoiled, the column the rejects file must name and a part of the
/// reason it must give.
const SPOILERS: [(&str, &str, &str); 8] = [
    (
        "bad authority USCC check character",
        "处罚机关统一社会信用代码",
        "check character",
    ),
    ("missing subject name", "行政相对人名称", "required"),
    ("bad date", "处罚决定日期", "\"2026-13-45\" is not a date"),
    ("unknown category", "违法行为类型", "天气预报"),
    (
        "amount not a number",
        "罚款金额(万元)",
        "\"五千\" is not an amount in 万元",
    ),
    (
        "a field missing",
        "",
        "the row has 17 fields, the header 18",
    ),
    (
        "unknown subject kind",
        "行政相对人类别",
        "\"公司\" is not a subject kind",
    ),
    (
        "publication ending before it starts",
        "公示截止期",
        "2020-01-01 is before",
    ),
];

/// A generated penalty record as a row of the 双公示 export (one line: line breaks in texts
/// become spaces), with a document number unique to `n`.
fn penalty_row(record: &credex_proto::v1::CreditRecord, n: usize) -> Vec<String> {
    let subject = record.subject.clone().unwrap();
    let decision = record.decision.clone().unwrap();
    let publication = record.publication.clone().unwrap();
    let authority = record.authority.clone().unwrap();
    let kind = match subject.kind() {
        credex_proto::v1::SubjectKind::LegalPerson => "法人及非法人组织",
        credex_proto::v1::SubjectKind::IndividualBusiness => "个体工商户",
        _ => "自然人",
    };
    let category = credex_core::catalogue::Catalogue::builtin()
        .get(&record.category)
        .unwrap()
        .name_zh
        .clone();
    let fine = match decision.fine_fen {
        0 => String::new(),
        fen => format!("{}.{:06}", fen / 1_000_000, fen % 1_000_000),
    };
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    // The export publishes from the decision date, the generator some days later: end within
    // the longest bound (3 years) from the decision.
    let decided_on = credex_core::date::parse_date(&decision.decided_on).unwrap();
    let last = decided_on + chrono::Days::new(1000);
    let ends_on = credex_core::date::parse_date(&publication.ends_on)
        .unwrap()
        .min(last);
    vec![
        subject.name,
        kind.to_owned(),
        subject.uscc,
        subject
            .legal_representative
            .map(|r| r.name)
            .unwrap_or_default(),
        format!("长测罚〔2026〕{n}号"),
        category,
        one_line(&decision.facts),
        one_line(&decision.legal_basis),
        decision.penalty_kinds.join("、"),
        one_line(&decision.penalty_content),
        fine,
        decision.decided_on,
        credex_core::date::format_date(ends_on),
        authority.name,
        authority.uscc,
        record.data_source.clone(),
        one_line(&record.remarks),
        subject.id_number,
    ]
}

/// Spoils `row` the `kind`th way of [`SPOILERS`].
fn spoil(row: &mut Vec<String>, kind: usize) {
    match kind {
        0 => {
            let uscc = &mut row[14];
            let last = uscc.pop().unwrap();
            uscc.push(if last == '0' { '1' } else { '0' });
        }
        1 => row[0] = "  ".to_owned(),
        2 => row[11] = "2026-13-45".to_owned(),
        3 => row[5] = "天气预报".to_owned(),
        4 => row[10] = "五千".to_owned(),
        5 => {
            row.pop();
        }
        6 => row[1] = "公司".to_owned(),
        _ => row[12] = "2020-01-01".to_owned(),
    }
}

/// `rows` penalty rows of Changsha, every 100th spoiled (cycling through [`SPOILERS`]), as CSV
/// text; and for every spoiled row its line and spoiler.
fn penalty_export(rows: usize, first_document: usize) -> (String, Vec<(usize, usize)>) {
    let today = credex_core::date::Clock::today(&credex_core::date::SystemClock);
    let mut generator =
        credex_cli::generator::Generator::new(&capitals()[0], first_document as u64, today);
    let mut out = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    out.write_record(PENALTY_HEADERS).unwrap();
    let mut spoiled = Vec::new();
    let mut n = 0;
    while n < rows {
        let record = generator.record();
        if record.list() != credex_proto::v1::ListKind::Penalty {
            continue;
        }
        let mut row = penalty_row(&record, first_document + n);
        if n % 100 == 99 {
            let kind = (n / 100) % SPOILERS.len();
            spoil(&mut row, kind);
            // The header is line 1.
            spoiled.push((n + 2, kind));
        }
        out.write_record(&row).unwrap();
        n += 1;
    }
    (
        String::from_utf8(out.into_inner().unwrap()).unwrap(),
        spoiled,
    )
}

/// `credexctl --json import FILE`: its summary, and whether it exited 0.
async fn import(node: &Node, file: &Path) -> (serde_json::Value, bool) {
    let output = ctl(&node.home, &["--json", "import", file.to_str().unwrap()]).await;
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"));
    (summary, output.status.success())
}

fn counts(summary: &serde_json::Value) -> [u64; 5] {
    ["rows", "published", "new_versions", "unchanged", "rejected"].map(|k| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {summary}"))
    })
}

/// Rows of the main import test; `CREDEX_IMPORT_ROWS=100000` runs it at the size (README
/// "Tests": about a minute in a debug build, too long for every CI run).
fn import_rows() -> usize {
    std::env::var("CREDEX_IMPORT_ROWS")
        .ok()
        .map_or(20_000, |n| n.parse().expect("CREDEX_IMPORT_ROWS: a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_publishes_good_rows_rejects_bad_ones_by_column_and_a_rerun_publishes_nothing() {
    let node = Node::start().await;
    let rows = import_rows();
    let (text, spoiled) = penalty_export(rows, 0);
    let file = node.dir.path().join("双公示.csv");
    // A UTF-8 file with a byte order mark, as spreadsheet programs write it.
    std::fs::write(&file, format!("\u{feff}{text}")).unwrap();
    let bad = spoiled.len() as u64;
    let good = rows as u64 - bad;

    let started = Instant::now();
    let (first, ok) = import(&node, &file).await;
    println!("imported {rows} rows in {:?}", started.elapsed());
    assert!(!ok, "rejected rows make the run fail");
    assert_eq!(counts(&first), [rows as u64, good, 0, 0, bad], "{first}");
    assert_eq!(first["encoding"], "UTF-8");

    // The rejects file: one line per spoiled row, with its line, column and reason.
    let rejects = std::fs::read(node.dir.path().join("双公示.csv.rejects.csv")).unwrap();
    let rejects = rejects
        .strip_prefix(b"\xEF\xBB\xBF")
        .expect("a byte order mark");
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(rejects);
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..3], ["行号", "列", "原因"]);
    assert_eq!(header[3..], PENALTY_HEADERS);
    let rejected: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rejected.len(), spoiled.len());
    for (reject, (line, kind)) in rejected.iter().zip(&spoiled) {
        let (what, column, reason) = SPOILERS[*kind];
        assert_eq!(reject[0], line.to_string(), "{what}: {reject:?}");
        assert_eq!(&reject[1], column, "{what}: {reject:?}");
        assert!(reject[2].contains(reason), "{what}: {reject:?}");
    }

    // The same file again: nothing new.
    let (again, _) = import(&node, &file).await;
    assert_eq!(counts(&again), [rows as u64, 0, 0, good, bad], "{again}");

    // The same rows in GBK, one of them changed: one new version.
    let (text, _) = penalty_export(300, 0);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    // As Windows programs write it: CRLF line endings.
    let mut out = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    out.write_record(reader.headers().unwrap()).unwrap();
    for (i, row) in reader.records().enumerate() {
        let mut row: Vec<String> = row.unwrap().iter().map(String::from).collect();
        if i == 0 {
            row[16] = "更正说明".to_owned();
        }
        out.write_record(&row).unwrap();
    }
    let changed = String::from_utf8(out.into_inner().unwrap()).unwrap();
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&changed);
    assert!(!unmappable);
    let gbk_file = node.dir.path().join("gbk.csv");
    std::fs::write(&gbk_file, &gbk).unwrap();
    let (changed, _) = import(&node, &gbk_file).await;
    assert_eq!(changed["encoding"], "GBK");
    assert_eq!(counts(&changed), [300, 1, 1, 296, 3], "{changed}");
    let rejects = std::fs::read(node.dir.path().join("gbk.csv.rejects.csv")).unwrap();
    let rows: Vec<String> = csv::Reader::from_reader(&rejects[3..])
        .records()
        .map(|r| r.unwrap()[0].to_owned())
        .collect();
    assert_eq!(rows, ["101", "201", "301"]);

    // The view holds each good row once, as the export shows it.
    let output = ctl(
        &node.home,
        &["export", "--list", "penalty", "--format", "jsonl"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        output.stdout.iter().filter(|&&b| b == b'\n').count() as u64,
        good
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_the_list_in_force_with_chinese_headers_masked_ids_and_provenance() {
    let node = Node::start().await;
    node.publish(400).await;
    // What View.List holds of the black list, as `list` shows it.
    let listed = ctl(&node.home, &["--json", "list", "--list", "black", "--all"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed = listed["records"].as_array().unwrap();
    assert!(
        listed.len() > 20,
        "a black list to export: {}",
        listed.len()
    );

    // Pages of 7 records: the export follows the pages to the end.
    let csv_file = node.dir.path().join("黑名单.csv");
    let output = ctl(
        &node.home,
        &[
            "export",
            "--list",
            "black",
            "--format",
            "csv",
            "--page-size",
            "7",
            "--output",
            csv_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = std::fs::read(&csv_file).unwrap();
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .expect("a byte order mark");
    let mut reader = csv::Reader::from_reader(bytes);
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..3], ["主体名称", "主体类别", "统一社会信用代码"]);
    assert_eq!(
        header[header.len() - 3..],
        ["来源城市", "序号", "检查点大小"]
    );
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), listed.len());
    let mut natural_persons = 0;
    for (row, listed) in rows.iter().zip(listed) {
        let record = &listed["record"];
        assert_eq!(
            row[column("记录编号")],
            *record["record_id"].as_str().unwrap()
        );
        assert_eq!(row[column("名单类别")], *"黑名单");
        assert_eq!(row[column("来源城市")], *"changsha");
        let seq: u64 = row[column("序号")].parse().unwrap();
        let checkpoint: u64 = row[column("检查点大小")].parse().unwrap();
        // proto3 JSON writes a uint64 as a decimal string.
        let listed_seq: u64 = listed["provenance"]["seq"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(seq, listed_seq);
        assert!(
            checkpoint > seq,
            "a checkpoint covering seq {seq}: {checkpoint}"
        );
        let id = &row[column("证件号码")];
        if !id.is_empty() {
            natural_persons += 1;
            assert!(
                id.len() == 18 && id[4..14].chars().all(|c| c == '*'),
                "masked: {id}"
            );
        }
    }
    assert!(natural_persons > 0, "natural persons on the black list");

    // JSON Lines: one view record per line, the same records.
    let output = ctl(
        &node.home,
        &["export", "--list", "black", "--format", "jsonl"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, *listed);
    node.stop().await;
}

/// A running `credexctl` whose stdout lines arrive on a channel.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(home: &Path, args: &[&str]) -> Running {
        let mut command = base_command(home);
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// Lines until one satisfies `done` (that one included), within the deadline.
    async fn until(&mut self, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut got = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::task::block_in_place(|| self.lines.recv_timeout(left))
                .unwrap_or_else(|e| panic!("{e}: no such line; got {got:?}"));
            let end = done(&line);
            got.push(line);
            if end {
                return got;
            }
        }
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Publishes one generated record (seed `seed`) and returns its id.
async fn publish_one(node: &Node, seed: u32) -> String {
    let generated = ctl(
        &node.home,
        &["gen", "--count", "1", "--seed", &seed.to_string()],
    )
    .await;
    let line = String::from_utf8(generated.stdout).unwrap();
    let record = credex_cli::json::parse_record(line.trim()).unwrap();
    let file = node.dir.path().join(format!("one-{seed}.jsonl"));
    std::fs::write(&file, &line).unwrap();
    let published = ctl(&node.home, &["publish", file.to_str().unwrap()]).await;
    assert!(published.status.success(), "{}", stderr(&published));
    record.record_id
}

fn record_of(line: &str) -> String {
    let change: serde_json::Value = serde_json::from_str(line).unwrap();
    change["record_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_watcher_sees_what_it_missed_once() {
    let node = Node::start().await;
    let state = node.dir.path().join("watch.state");
    let args = ["--json", "watch", "--state", state.to_str().unwrap()];
    let mut watcher = Running::start(&node.home, &args);
    // The watcher saves its place as soon as it follows the stream.
    wait_for(|| state.exists()).await;
    let first = publish_one(&node, 1).await;
    let seen = watcher.until(|l| record_of(l) == first).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    // proto3 JSON writes a uint64 as a decimal string.
    let change_seq: u64 =
        serde_json::from_str::<serde_json::Value>(&seen[0]).unwrap()["change_seq"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    wait_for(|| std::fs::read_to_string(&state).unwrap().trim() == change_seq.to_string()).await;
    watcher.stop();

    // Published while nobody watches, then one more after the restart.
    let missed = publish_one(&node, 2).await;
    let mut watcher = Running::start(&node.home, &args);
    let after = publish_one(&node, 3).await;
    let seen: Vec<String> = watcher
        .until(|l| record_of(l) == after)
        .await
        .iter()
        .map(|l| record_of(l))
        .collect();
    assert_eq!(seen, [missed, after]);
    watcher.stop();

    // Text output: one line per change.
    let mut watcher = Running::start(&node.home, &["watch", "--from-start"]);
    let seen = watcher.until(|l| l.contains(&first)).await;
    assert!(
        seen[0].starts_with("1 ") && seen[0].contains(" entered changsha/"),
        "{seen:?}"
    );
    watcher.stop();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_prints_each_snapshot_when_not_on_a_terminal() {
    let node = Node::start().await;
    let mut watcher = Running::start(&node.home, &["status", "--watch", "--interval", "1"]);
    let mut snapshots = 0;
    let lines = watcher
        .until(|l| {
            if l.starts_with("--- ") {
                snapshots += 1;
            }
            snapshots == 2
        })
        .await;
    watcher.stop();
    assert!(lines[0].starts_with("--- "), "{lines:?}");
    let between: Vec<&String> = lines[1..lines.len() - 1].iter().collect();
    assert!(
        between[0].starts_with("changsha (mid-yangtze): "),
        "{between:?}"
    );
    // A terminal-only redraw never reaches a pipe.
    assert!(lines.iter().all(|l| !l.contains('\x1b')), "{lines:?}");
    node.stop().await;
}

/// Waits for `condition` with the deadline.
async fn wait_for(condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "the condition never held");
        // Polling interval of a condition wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reads_json_lines_whose_versions_the_node_numbers() {
    let node = Node::start().await;
    let generated = ctl(&node.home, &["gen", "--count", "30", "--seed", "7"]).await;
    let text = String::from_utf8(generated.stdout).unwrap();
    assert_eq!(text.matches("\"version\":1,").count(), 30, "{text}");
    // Versions left out, but for the last line's.
    let (head, last) = text.trim_end().rsplit_once('\n').unwrap();
    let file = node.dir.path().join("records.jsonl");
    std::fs::write(
        &file,
        format!("{}\n{last}\n", head.replace("\"version\":1,", "")),
    )
    .unwrap();
    let (first, ok) = import(&node, &file).await;
    assert!(!ok);
    assert_eq!(counts(&first), [30, 29, 0, 0, 1], "{first}");
    let rejects =
        std::fs::read_to_string(node.dir.path().join("records.jsonl.rejects.csv")).unwrap();
    let reject = rejects.lines().nth(1).unwrap();
    assert!(
        reject.starts_with("30,version,version: import numbers the versions itself"),
        "{reject}"
    );
    let (again, _) = import(&node, &file).await;
    assert_eq!(counts(&again), [30, 0, 0, 29, 1], "{again}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_as_list_prints_them_or_as_grpcurl_would_publish_back_unchanged() {
    let node = Node::start().await;
    node.publish(20).await;
    // As a court sees them: a reader's list masks ID numbers, and a masked number is no
    // number to publish.
    let listed = ctl(
        &node.home,
        &[
            "--role",
            "enforcement",
            "--json",
            "list",
            "--all",
            "--purpose",
            "（2026）湘0102执881号",
        ],
    )
    .await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let records: Vec<serde_json::Value> = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["record"].clone())
        .collect();
    assert_eq!(records.len(), 20);
    // grpcurl prints proto3 JSON's lowerCamelCase names (`legalRepresentative`,
    // `fineFen`); the names converted here by the mapping's rule.
    fn camel(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let mut parts = k.split('_');
                    let mut key = parts.next().unwrap().to_owned();
                    for part in parts {
                        key.push_str(&part[..1].to_uppercase());
                        key.push_str(&part[1..]);
                    }
                    (key, camel(v))
                })
                .collect(),
            serde_json::Value::Array(items) => items.iter().map(camel).collect(),
            other => other.clone(),
        }
    }
    for (name, form) in [
        ("as listed", records.clone()),
        ("as grpcurl prints", records.iter().map(camel).collect()),
    ] {
        let lines: String = form.iter().map(|r| format!("{r}\n")).collect();
        assert!(
            name == "as listed" || lines.contains("\"legalRepresentative\":"),
            "{lines}"
        );
        let file = node.dir.path().join("listed.jsonl");
        std::fs::write(&file, lines).unwrap();
        let rerun = ctl(&node.home, &["--json", "publish", file.to_str().unwrap()]).await;
        assert!(rerun.status.success(), "{name}: {}", stderr(&rerun));
        let answer: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
        let published = answer["published"].as_array().unwrap();
        assert_eq!(published.len(), 20, "{name}");
        assert!(
            published.iter().all(|p| p["outcome"] == "already_present"),
            "{name}: {answer}"
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_json_is_the_list_access_response_and_the_node() {
    let node = Node::start().await;
    let (subject, purpose) = ("91430100MA4L8Q2K7F", "（2026）湘0102执881号 财产调查");
    let looked_up = ctl(
        &node.home,
        &[
            "--role",
            "enforcement",
            "lookup",
            subject,
            "--purpose",
            purpose,
        ],
    )
    .await;
    assert!(looked_up.status.success(), "{}", stderr(&looked_up));

    let output = ctl(&node.home, &["--json", "access-log"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let mut document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["node"], "changsha");
    // Every field, zero values too: the first access is number 0, a uint64 as a string.
    assert_eq!(document["entries"][0]["number"], "0", "{document}");
    assert_eq!(document["next_page_token"], "", "{document}");
    // Without the node it is the response itself: a proto3 JSON parser that refuses unknown
    // fields reads it as a ListAccessResponse.
    document.as_object_mut().unwrap().remove("node");
    let response: credex_proto::v1::ListAccessResponse =
        credex_cli::json::parse_message(&document.to_string()).unwrap();
    let [entry] = response.entries.as_slice() else {
        panic!("one access: {response:?}");
    };
    assert_eq!(
        (
            entry.number,
            entry.rpc.as_str(),
            entry.subject.as_str(),
            entry.purpose.as_str()
        ),
        (0, "View.Lookup", subject, purpose)
    );
    assert!(
        entry.at > 0 && entry.who.starts_with("spiffe://"),
        "{entry:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_a_published_file_publishes_nothing_new_and_exits_zero() {
    let node = Node::start().await;
    let file = node.publish(30).await;
    let size = |status: &Output| -> u64 {
        let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        json["origins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["origin"] == "changsha")
            .unwrap()["local_size"]
            // proto3 JSON writes a uint64 as a decimal string.
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = size(&ctl(&node.home, &["--json", "status"]).await);
    assert_eq!(before, 30);

    let rerun = ctl(&node.home, &["--json", "publish", file.to_str().unwrap()]).await;
    assert!(rerun.status.success(), "{rerun:?}");
    let answer: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    let published = answer["published"].as_array().unwrap();
    assert_eq!(published.len(), 30);
    assert!(
        published.iter().all(|p| p["outcome"] == "already_present"),
        "{answer}"
    );
    assert_eq!(size(&ctl(&node.home, &["--json", "status"]).await), before);

    let human = ctl(&node.home, &["publish", file.to_str().unwrap()]).await;
    assert!(human.status.success(), "{human:?}");
    let said = String::from_utf8_lossy(&human.stdout);
    assert!(
        said.contains("published 0 new records") && said.contains("30 already present"),
        "{said}"
    );
    node.stop().await;
}
