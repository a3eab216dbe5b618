//! The web console in a real browser: Debian's headless Chromium, driven over WebDriver by
//! its chromedriver, against running nodes' admin listeners. It types into the query form,
//! follows the language switch and the navigation, waits for the operations page to reload
//! itself, and uploads proof bundles on the audit page; it asserts on what the page shows.
//!
//! chromedriver must be on PATH (or named by `CHROMEDRIVER`): `deploy/console/install-browser.sh`
//! installs it, and `.ci/run` runs that first. Without it the test fails; it never skips.
//!
//! With `CREDEX_CONSOLE_SCREENSHOTS=DIR` (relative to the workspace root) it also writes the
//! screenshots README shows: `DIR/console-query.png`, `DIR/console-operations.png`,
//! `DIR/console-audit.png`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use credex_cli::city::capitals;
use credex_cli::generator::{Generator, JOINT_CHANGSHA_CATEGORY, joint_subject, repaired};
use credex_core::pb;
use credex_node::config::AdminConfig;
use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

use crate::console_audit::{proof_file, tampered};
use crate::sandbox::{Sandbox, start_date, wait_within};

/// How long the browser may take to show what is awaited: the operations page reloads every
/// 5 s, and the sandbox converges in a few seconds.
const PAGE_DEADLINE: Duration = Duration::from_secs(30);

/// `name` in one of `PATH`'s folders.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A chromedriver on a loopback port of its own, killed when dropped.
struct Driver {
    _process: Child,
    url: String,
}

impl Driver {
    async fn start() -> Result<Driver> {
        let program = std::env::var_os("CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| on_path("chromedriver"))
            .context(
                "chromedriver is not on PATH (nor named by CHROMEDRIVER): the console's browser \
                 test drives Debian's chromium through chromium-driver; install both with \
                 deploy/console/install-browser.sh (as root; .ci/run does)",
            )?;
        // chromedriver binds the port itself; take one the kernel just had free.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let process = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let driver = Driver {
            _process: process,
            url,
        };
        wait_within("chromedriver listening", PAGE_DEADLINE, || async {
            Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok())
        })
        .await?;
        Ok(driver)
    }

    /// A headless Chromium session.
    async fn browser(&self) -> Result<Client> {
        let mut chrome = serde_json::json!({
            "args": [
                "--headless=new",
                // CI runs as root, where Chromium's own sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,1000",
                "--lang=zh-CN",
            ]
        });
        if let Some(chromium) = on_path("chromium") {
            chrome["binary"] = serde_json::json!(chromium);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), chrome);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .context("starting a headless Chromium session through chromedriver")
    }
}

/// The rendered text of every cell of the table `#id`, row by row (header rows left out).
async fn table(browser: &Client, id: &str) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    for row in browser
        .find_all(Locator::Css(&format!("table#{id} tr")))
        .await?
    {
        let cells = row.find_all(Locator::Css("td")).await?;
        if cells.is_empty() {
            continue;
        }
        let mut texts = Vec::new();
        for cell in cells {
            texts.push(cell.text().await?);
        }
        rows.push(texts);
    }
    Ok(rows)
}

/// The row of `table#id` whose first cell is `key`.
async fn row(browser: &Client, id: &str, key: &str) -> Result<Option<Vec<String>>> {
    Ok(table(browser, id)
        .await?
        .into_iter()
        .find(|cells| cells.first().is_some_and(|c| c == key)))
}

/// The page's visible text.
async fn text(browser: &Client) -> Result<String> {
    Ok(browser.find(Locator::Css("body")).await?.text().await?)
}

/// Types `q` into the query form and submits it with its button.
async fn search(browser: &Client, q: &str) -> Result<()> {
    let input = browser.find(Locator::Css("input[name=q]")).await?;
    input.clear().await?;
    input.send_keys(q).await?;
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    Ok(())
}

/// Waits until the page's visible text contains `needle`.
async fn wait_text(browser: &Client, needle: &str) -> Result<String> {
    let seen = std::cell::RefCell::new(String::new());
    let found = wait_within(
        &format!("the page to show {needle:?}"),
        PAGE_DEADLINE,
        || {
            let seen = &seen;
            async move {
                let shown = text(browser).await?;
                let hit = shown.contains(needle);
                *seen.borrow_mut() = shown;
                Ok(hit)
            }
        },
    )
    .await;
    let seen = seen.into_inner();
    found.with_context(|| format!("the page shows:\n{seen}"))?;
    Ok(seen)
}

/// Takes a screenshot; writes it as `name` into `CREDEX_CONSOLE_SCREENSHOTS` when set.
async fn screenshot(browser: &Client, name: &str) -> Result<()> {
    let png = browser.screenshot().await?;
    ensure!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{name}: the screenshot is not a PNG"
    );
    if let Some(dir) = std::env::var_os("CREDEX_CONSOLE_SCREENSHOTS") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join(dir).join(name);
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_in_a_browser_finds_records_and_shows_cities_converging() -> Result<()> {
    let driver = Driver::start().await?;
    let cities = capitals();
    let sandbox = Sandbox::builder()
        .cities(cities.clone())
        .admin(AdminConfig::default())
        .start()
        .await?;
    let browser = driver.browser().await?;
    let outcome = drive(&sandbox, &browser).await;
    // The browser goes whatever happened; then the nodes.
    let closed = browser.close().await;
    sandbox.shutdown().await?;
    outcome?;
    Ok(closed?)
}

async fn drive(sandbox: &Sandbox, browser: &Client) -> Result<()> {
    let cities = capitals();
    let today = start_date();
    let hefei = format!("http://{}", sandbox.admin_addr("hefei"));

    // Hefei's operations page, open before anything is published: every peer connects.
    browser.goto(&format!("{hefei}/operations")).await?;
    for peer in ["changsha", "wuhan", "nanchang"] {
        wait_within(
            &format!("hefei's page shows {peer} connected"),
            PAGE_DEADLINE,
            || async {
                Ok(row(browser, "peers", peer)
                    .await?
                    .is_some_and(|cells| cells.get(1).is_some_and(|c| c == "已连接")))
            },
        )
        .await?;
    }

    // Changsha publishes the jointly listed company twice (the second one then repaired), a
    // natural person's record, and some twenty more; Wuhan publishes 5.
    let mut generator = Generator::new(&cities[0], 11, today);
    let listed = generator.black_listing(joint_subject(), JOINT_CHANGSHA_CATEGORY);
    let second = generator.black_listing(joint_subject(), JOINT_CHANGSHA_CATEGORY);
    let mut records = vec![listed.clone(), second.clone()];
    records.extend((0..20).map(|_| generator.record()));
    let person = loop {
        let record = generator.record();
        let subject = record.subject.clone().context("a subject")?;
        records.push(record);
        if subject.kind() == pb::SubjectKind::NaturalPerson {
            break subject.id_number;
        }
    };
    sandbox.publish("changsha", records.clone()).await?;
    sandbox
        .publish("changsha", vec![repaired(&second, today)])
        .await?;
    let changsha_size = records.len() as u64 + 1;
    let mut wuhan_generator = Generator::new(&cities[1], 11, today);
    sandbox
        .publish("wuhan", (0..5).map(|_| wuhan_generator.record()).collect())
        .await?;

    // The page reloads itself: without navigating, Hefei's origins table comes to show both
    // cities' logs whole, in its view, nothing behind, and not forked.
    for (origin, size) in [("changsha", changsha_size), ("wuhan", 5)] {
        let size = size.to_string();
        wait_within(
            &format!("hefei's page shows {origin} at {size} in view"),
            PAGE_DEADLINE,
            || async {
                let cells = row(browser, "origins", origin).await?.unwrap_or_default();
                Ok(cells.len() == 7
                    && cells[1] == size
                    && cells[2] == size
                    && cells[3] == "0"
                    && cells[6] == "否")
            },
        )
        .await?;
    }
    sandbox
        .wait_converged(&BTreeMap::from([
            ("changsha".to_owned(), changsha_size),
            ("wuhan".to_owned(), 5),
        ]))
        .await?;
    screenshot(browser, "console-operations.png").await?;

    // The query page through its navigation link; the company by its USCC, typed in the form.
    browser
        .find(Locator::Css("nav a[href^=\"/query\"]"))
        .await?
        .click()
        .await?;
    let subject = joint_subject();
    search(browser, &subject.uscc).await?;
    let shown = wait_text(browser, "有效记录 (1)").await?;
    ensure!(
        shown.contains("不在有效期或未予认可的记录 (1)"),
        "the repaired listing is shown apart:\n{shown}"
    );
    let in_force = table_after(browser, "in-force").await?;
    ensure!(in_force.len() == 1, "one record in force: {in_force:?}");
    let cells = &in_force[0];
    let document = &listed
        .decision
        .as_ref()
        .context("a decision")?
        .document_number;
    ensure!(
        cells[0].contains(&subject.name) && cells[0].contains(&subject.uscc),
        "subject: {cells:?}"
    );
    ensure!(cells[1] == "失信黑名单", "list: {cells:?}");
    ensure!(cells[3].contains(document), "document: {cells:?}");
    ensure!(
        cells[5].starts_with("changsha · seq ") && cells[5].contains("检查点"),
        "provenance: {cells:?}"
    );
    let excluded = table_after(browser, "excluded").await?;
    ensure!(excluded.len() == 1, "one record not in force: {excluded:?}");
    ensure!(
        excluded[0][6].starts_with("已信用修复"),
        "the reason: {excluded:?}"
    );
    let representative = &subject
        .legal_representative
        .as_ref()
        .context("a representative")?
        .id_number;
    ensure!(
        !browser.source().await?.contains(representative.as_str()),
        "no full ID number in the page"
    );
    screenshot(browser, "console-query.png").await?;

    // A natural person by ID number: only the first and last four characters are shown.
    search(browser, &person).await?;
    let masked = format!("{}{}{}", &person[..4], "*".repeat(10), &person[14..]);
    let shown = wait_text(browser, &format!("主体 {masked}")).await?;
    ensure!(shown.contains("有效记录 (1)"), "{shown}");
    ensure!(
        !browser.source().await?.contains(person.as_str()),
        "the ID number looked up is masked everywhere on the page"
    );

    // By part of its name, then the language switch keeps the query.
    search(browser, "恒通建设").await?;
    let shown = wait_text(browser, "名称包含 “恒通建设”: 1").await?;
    ensure!(shown.contains(&subject.name), "{shown}");
    browser.find(Locator::Css("a.lang")).await?.click().await?;
    let shown = wait_text(browser, "Names containing “恒通建设”: 1").await?;
    for label in ["Query", "Operations", "Search", "black list", "Provenance"] {
        ensure!(
            shown.contains(label),
            "English label {label:?} in:\n{shown}"
        );
    }
    ensure!(
        !shown.contains("一查便知"),
        "no Chinese title left:\n{shown}"
    );
    let value = browser
        .find(Locator::Css("input[name=q]"))
        .await?
        .prop("value")
        .await?;
    ensure!(value.as_deref() == Some("恒通建设"), "the box: {value:?}");

    // The English operations page through its link.
    browser
        .find(Locator::Css("nav a[href^=\"/operations\"]"))
        .await?
        .click()
        .await?;
    let shown = wait_text(browser, "Reloads every 5 s.").await?;
    for label in ["Peers", "Origins", "Log size", "Invalid entries"] {
        ensure!(
            shown.contains(label),
            "English label {label:?} in:\n{shown}"
        );
    }
    let changsha = row(browser, "peers", "changsha").await?;
    ensure!(
        changsha.as_ref().and_then(|c| c.get(1)).map(String::as_str) == Some("yes"),
        "{changsha:?}"
    );

    // The audit page, back in Chinese: a proof bundle of the listing that an auditor exported
    // from Wuhan's node, chosen in the file picker and verified check by check; then the same
    // bundle with one byte of its entry changed.
    let (bundle, report) = proof_file(sandbox, "wuhan", "changsha", &listed.record_id).await?;
    let files = tempfile::tempdir()?;
    let good = files.path().join("listing.tlog-proof");
    let bad = files.path().join("tampered.tlog-proof");
    std::fs::write(&good, &bundle)?;
    std::fs::write(&bad, tampered(&bundle)?)?;
    browser
        .find(Locator::Css("nav a[href^=\"/audit\"]"))
        .await?
        .click()
        .await?;
    wait_text(browser, "Upload a proof bundle").await?;
    browser.find(Locator::Css("a.lang")).await?.click().await?;
    wait_text(browser, "上传证明包").await?;
    let upload = |path: PathBuf| async move {
        browser
            .find(Locator::Css("input[type=file]"))
            .await?
            .send_keys(&path.display().to_string())
            .await?;
        browser
            .find(Locator::Css("form button[type=submit]"))
            .await?
            .click()
            .await?;
        Ok::<_, anyhow::Error>(())
    };
    upload(good).await?;
    wait_text(browser, &report.verdict()).await?;
    let checks = table(browser, "checks").await?;
    let expected: Vec<Vec<String>> = report
        .checks()
        .into_iter()
        .map(|c| vec![c.name.to_owned(), "通过".to_owned(), c.text])
        .collect();
    ensure!(checks == expected, "checks: {checks:?}");
    ensure!(
        text(browser).await?.contains(&listed.record_id),
        "the record proven is shown"
    );
    screenshot(browser, "console-audit.png").await?;
    upload(bad).await?;
    let shown = wait_text(browser, "NOT VERIFIED — signed entry: ").await?;
    let checks = table(browser, "checks").await?;
    ensure!(
        checks.len() == 1 && checks[0][0] == "signed entry" && checks[0][1] == "未通过",
        "checks: {checks:?}"
    );
    ensure!(!shown.contains("VERIFIED: "), "{shown}");
    Ok(())
}

/// The data rows of the table that follows the heading `#id` on the query page.
async fn table_after(browser: &Client, id: &str) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    for row in browser
        .find_all(Locator::XPath(&format!(
            "//h3[@id='{id}']/following-sibling::table[1]//tr[td]"
        )))
        .await?
    {
        let mut cells = Vec::new();
        for cell in row.find_all(Locator::Css("td")).await? {
            cells.push(cell.text().await?);
        }
        rows.push(cells);
    }
    Ok(rows)
}
