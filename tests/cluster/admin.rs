//! The admin HTTP listener of real nodes: metrics a Prometheus can scrape, health and
//! readiness probes, and who may use it beyond loopback (a token, operator certificates); and
//! the gRPC conventions beside it: health per service, reflection v1 and v1alpha.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use credex_cli::city::capitals;
use credex_cli::generator::Generator;
use credex_node::config::AdminConfig;
use credex_node::tls::{self, Role, TlsFiles};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_stream::StreamExt;

use crate::sandbox::{Sandbox, start_date, wait_until};

/// An HTTP response as read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// One HTTP/1.1 request over `io`, the connection closed after it, read to the end.
pub async fn request_over(
    mut io: impl AsyncRead + AsyncWrite + Unpin,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    io.write_all(head.as_bytes()).await?;
    io.write_all(body).await?;
    let mut raw = Vec::new();
    io.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).context("a UTF-8 response")?;
    let (head, body) = text.split_once("\r\n\r\n").context("a response head")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("a status line in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Reply {
        status,
        head: head.to_owned(),
        body,
    })
}

fn unchunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("a chunk size")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("a whole chunk")?);
        body = rest.get(size + 2..).context("a chunk's end")?;
    }
}

/// `GET path` over plain HTTP, with `Authorization: Bearer token` if given.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<Reply> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    request_over(TcpStream::connect(addr).await?, "GET", path, &headers, b"").await
}

/// `GET path` over HTTPS as `files`' holder.
async fn get_tls(addr: SocketAddr, path: &str, files: &TlsFiles) -> Result<Reply> {
    let mut config = (*tls::load_client_config(files)?).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = connector.connect(name, tcp).await?;
    request_over(stream, "GET", path, &[], b"").await
}

/// The value of the sample `name{labels}` in an OpenMetrics text, the labels given in the
/// order the node writes them.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_serves_metrics_health_and_readiness_over_http() -> Result<()> {
    let cities = capitals()[..2].to_vec();
    let sandbox = Sandbox::builder()
        .cities(cities.clone())
        .admin(AdminConfig::default())
        .start()
        .await?;
    let mut generator = Generator::new(&cities[0], 7, start_date());
    sandbox
        .publish("changsha", (0..12).map(|_| generator.record()).collect())
        .await?;
    sandbox
        .wait_converged(&BTreeMap::from([("changsha".to_owned(), 12)]))
        .await?;
    let (changsha, wuhan) = (sandbox.admin_addr("changsha"), sandbox.admin_addr("wuhan"));

    let alive = get(wuhan, "/healthz", None).await?;
    assert_eq!((alive.status, alive.body.as_str()), (200, "alive\n"));
    let ready = get(wuhan, "/readyz", None).await?;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.body, "{\"ready\":true,\"reasons\":[]}\n");
    assert_eq!(get(wuhan, "/nothing", None).await?.status, 404);

    // Cosignatures arrive after the publish is acknowledged: wait for them to be counted.
    wait_until("changsha counted wuhan's cosignature", || async {
        let text = get(changsha, "/metrics", None).await?.body;
        Ok(sample(
            &text,
            r#"credex_cosignature_seconds_count{city="changsha",witness="wuhan"}"#,
        )
        .is_some_and(|n| n >= 1.0))
    })
    .await?;
    let scraped = get(changsha, "/metrics", None).await?;
    assert_eq!(scraped.status, 200);
    assert_eq!(
        scraped.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = &scraped.body;
    assert!(text.ends_with("# EOF\n"), "{text}");
    // The publish above: one request, twelve records, twelve entries in force today.
    for (series, at_least) in [
        (r#"credex_publish_seconds_count{city="changsha"}"#, 1.0),
        (r#"credex_records_published_total{city="changsha"}"#, 12.0),
        (
            r#"credex_grpc_request_seconds_count{city="changsha",method="credex.v1.Publisher/Publish",code="OK"}"#,
            1.0,
        ),
        (r#"credex_view_records{city="changsha",list="black"}"#, 0.0),
        (r#"process_resident_memory_bytes{city="changsha"}"#, 1.0),
        (r#"process_cpu_seconds_total{city="changsha"}"#, 0.0),
        (r#"process_open_fds{city="changsha"}"#, 1.0),
    ] {
        let value = sample(text, series).with_context(|| format!("{series} in\n{text}"))?;
        assert!(value >= at_least, "{series} = {value}");
    }
    let in_force: f64 = ["red", "black", "watch", "penalty"]
        .iter()
        .map(|list| {
            sample(
                text,
                &format!(r#"credex_view_records{{city="changsha",list="{list}"}}"#),
            )
            .unwrap_or(0.0)
        })
        .sum();
    let status = sandbox.status("changsha").await?;
    assert_eq!(
        in_force as u64,
        status.view.context("view counts")?.records_in_force,
        "the lists add up to Operator.Status's count"
    );

    // The receiving side: wuhan applied changsha's entries and measured their age.
    let text = get(wuhan, "/metrics", None).await?.body;
    for series in [
        r#"credex_apply_seconds_count{city="wuhan",origin="changsha"}"#,
        r#"credex_grpc_request_seconds_count{city="wuhan",method="credex.v1.Witness/AddCheckpoint",code="OK"}"#,
    ] {
        let value = sample(&text, series).with_context(|| format!("{series} in\n{text}"))?;
        assert!(value >= 1.0, "{series} = {value}");
    }
    assert_eq!(
        sample(
            &text,
            r#"credex_propagation_seconds_count{city="wuhan",origin="changsha"}"#
        ),
        Some(12.0),
        "every entry of changsha's measured once as it reached wuhan's view"
    );
    // A refused request is counted with its code.
    let mut view = credex_core::pb::view_client::ViewClient::new(
        sandbox.channel("wuhan", Role::Reader).await?,
    );
    let refused = view
        .lookup(credex_core::pb::LookupRequest {
            subject_id: "not an id".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("a malformed subject id");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let text = get(wuhan, "/metrics", None).await?.body;
    assert_eq!(
        sample(
            &text,
            r#"credex_grpc_request_seconds_count{city="wuhan",method="credex.v1.View/Lookup",code="INVALID_ARGUMENT"}"#
        ),
        Some(1.0),
        "{text}"
    );
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_guards_every_admin_path() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token = "f3b1c0de5a1e4d7e9b2a6c8d0e1f2a3b";
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{token}\n"))?;
    let sandbox = Sandbox::builder()
        .cities(capitals()[..1].to_vec())
        .admin(AdminConfig {
            token_file: Some(token_file),
            ..AdminConfig::default()
        })
        .start()
        .await?;
    let addr = sandbox.admin_addr("changsha");
    for path in ["/metrics", "/healthz", "/readyz"] {
        let refused = get(addr, path, None).await?;
        assert_eq!(refused.status, 401, "{path} without a token");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        let wrong = get(addr, path, Some("f3b1c0de5a1e4d7e9b2a6c8d0e1f2a3c")).await?;
        assert_eq!(wrong.status, 401, "{path} with another token");
        assert_eq!(get(addr, path, Some(token)).await?.status, 200, "{path}");
    }
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_tls_admits_only_this_citys_operator() -> Result<()> {
    let sandbox = Sandbox::builder()
        .cities(capitals()[..2].to_vec())
        .admin(AdminConfig {
            client_tls: true,
            ..AdminConfig::default()
        })
        .start()
        .await?;
    let addr = sandbox.admin_addr("changsha");
    let files = |city: &str, role: Role| TlsFiles {
        ca_cert: sandbox.home.ca_cert(),
        cert: sandbox.home.cert(city, role),
        key: sandbox.home.key(city, role),
    };
    let answer = get_tls(addr, "/healthz", &files("changsha", Role::Operator)).await?;
    assert_eq!((answer.status, answer.body.as_str()), (200, "alive\n"));
    // Another role of this city, and another city's operator: the connection is closed
    // before any request is read.
    for (city, role) in [("changsha", Role::Reader), ("wuhan", Role::Operator)] {
        let refused = get_tls(addr, "/healthz", &files(city, role)).await;
        assert!(refused.is_err(), "{city} {role}: {refused:?}");
    }
    // Plain HTTP to the HTTPS port gets no answer.
    assert!(get(addr, "/healthz", None).await.is_err());
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_turns_not_serving_when_the_node_stops() -> Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut sandbox = Sandbox::builder()
        .cities(capitals()[..1].to_vec())
        .start()
        .await?;
    let mut health = HealthClient::new(sandbox.channel("changsha", Role::Operator).await?);
    let services = [
        "",
        "credex.v1.Exchange",
        "credex.v1.Witness",
        "credex.v1.Publisher",
        "credex.v1.View",
        "credex.v1.Audit",
        "credex.v1.Operator",
    ];
    let mut watches = Vec::new();
    for service in services {
        let mut watch = health
            .watch(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        let first = watch.next().await.context("a first status")??;
        assert_eq!(first.status, ServingStatus::Serving as i32, "{service:?}");
        watches.push((service, watch));
    }
    let stopping = tokio::spawn(async move { sandbox.stop_node("changsha").await });
    for (service, mut watch) in watches {
        let next = watch
            .next()
            .await
            .context("a status before the stream ends")??;
        assert_eq!(next.status, ServingStatus::NotServing as i32, "{service:?}");
    }
    stopping.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reflection_answers_in_v1_and_v1alpha() -> Result<()> {
    let sandbox = Sandbox::builder()
        .cities(capitals()[..1].to_vec())
        .start()
        .await?;
    let channel = sandbox.channel("changsha", Role::Reader).await?;
    let expected = [
        "credex.v1.Audit",
        "credex.v1.Exchange",
        "credex.v1.Operator",
        "credex.v1.Publisher",
        "credex.v1.View",
        "credex.v1.Witness",
        "grpc.health.v1.Health",
    ];
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::once(request))
            .await?
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.next().await.context("an answer")??.message_response
        else {
            bail!("v1: not a service list");
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        for name in expected {
            assert!(
                names.iter().any(|n| n == name),
                "v1 lists {name}: {names:?}"
            );
        }
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(channel);
        let requests = vec![
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "credex.v1.View".to_owned(),
                )),
            },
        ];
        let mut answers = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await?
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.next().await.context("an answer")??.message_response
        else {
            bail!("v1alpha: not a service list");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for name in expected {
            assert!(
                names.iter().any(|n| n == name),
                "v1alpha lists {name}: {names:?}"
            );
        }
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            answers.next().await.context("an answer")??.message_response
        else {
            bail!("v1alpha: no file for credex.v1.View");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    sandbox.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_finds_a_company_by_code_and_by_part_of_its_name() -> Result<()> {
    use credex_cli::generator::{JOINT_CHANGSHA_CATEGORY, joint_subject, repaired};
    let cities = capitals()[..2].to_vec();
    let sandbox = Sandbox::builder()
        .cities(cities.clone())
        .admin(AdminConfig::default())
        .start()
        .await?;
    let today = start_date();
    let mut generator = Generator::new(&cities[0], 11, today);
    let listed = generator.black_listing(joint_subject(), JOINT_CHANGSHA_CATEGORY);
    let second = generator.black_listing(joint_subject(), JOINT_CHANGSHA_CATEGORY);
    let mut records: Vec<_> = (0..20).map(|_| generator.record()).collect();
    records.push(listed.clone());
    records.push(second.clone());
    sandbox.publish("changsha", records).await?;
    sandbox
        .publish("changsha", vec![repaired(&second, today)])
        .await?;
    sandbox
        .wait_converged(&BTreeMap::from([("changsha".to_owned(), 23)]))
        .await?;
    let wuhan = sandbox.admin_addr("wuhan");
    let subject = joint_subject();
    let representative_id = subject
        .legal_representative
        .as_ref()
        .unwrap()
        .id_number
        .clone();

    // Wuhan's console, by USCC: Changsha's listing in force with its provenance, the repaired
    // one not in force with its reason.
    let page = get(wuhan, &format!("/query?q={}", subject.uscc), None).await?;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = &page.body;
    assert!(html.contains("有效记录 (1)"), "{html}");
    assert!(html.contains("不在有效期或未予认可的记录 (1)"), "{html}");
    assert!(html.contains("已信用修复"), "{html}");
    assert!(html.contains(&listed.decision.as_ref().unwrap().document_number));
    assert!(html.contains("changsha · seq "), "{html}");
    assert!(
        !html.contains(&representative_id),
        "no full ID number on the page"
    );

    // By part of its name, in Chinese, and the English page of the same.
    let part = "恒通建设";
    let encoded: String = part.bytes().map(|b| format!("%{b:02X}")).collect();
    let html = get(wuhan, &format!("/query?q={encoded}"), None).await?.body;
    assert!(html.contains("名称包含 “恒通建设”: 1"), "{html}");
    assert!(html.contains(&subject.name));
    let html = get(wuhan, &format!("/query?q={encoded}&lang=en"), None)
        .await?
        .body;
    assert!(html.contains("Names containing “恒通建设”: 1"), "{html}");
    assert!(html.contains("black list"), "{html}");
    assert!(
        html.contains("href=\"/query?lang=zh&amp;q="),
        "the switch keeps the query"
    );

    // The operations page: the peer and both origins, Changsha's 23 entries in Wuhan's view.
    let html = get(wuhan, "/operations?lang=en", None).await?.body;
    assert!(html.contains("<meta http-equiv=\"refresh\""), "{html}");
    assert!(
        html.contains("<tr><td>changsha</td><td class=\"ok\">yes</td>"),
        "{html}"
    );
    assert!(
        html.contains("<tr><td>changsha</td><td>23</td><td>23</td><td>0</td>"),
        "{html}"
    );
    sandbox.shutdown().await
}
