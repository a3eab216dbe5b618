//! Full identities for the entitled, with a trail (查询留痕), through the gRPC adapters over a
//! real engine: an `enforcement` caller sees resident ID numbers in full in Lookup, List and
//! Watch, must state a purpose, and every request it makes is in the access log, durably,
//! before it is answered; a `reader` sees them masked and leaves no trail.

use std::sync::Arc;

use credex_core::date::{Clock, FixedClock, parse_date};
use credex_core::ident;
use credex_core::pb;
use credex_core::pb::{operator_server::Operator, view_server::View};
use credex_store::AccessRecord;
use futures::StreamExt;
use tempfile::TempDir;
use tonic::{Code, Request};

use super::Engine;
use super::access::MAX_PURPOSE_CHARS;
use super::harness::{NODE, PEER, TestEngine, dishonest_debtor, test_engine};
use super::publish::{self, PublishQueue};
use super::rules_tests::capitals;
use crate::auth::Authorizer;
use crate::service::Api;
use crate::sync::PeerTable;
use crate::tls::{Identity, PeerInfo, Role};

const CONSORTIUM: &str = "mid-yangtze";
const PURPOSE: &str = "（2026）湘0102执1234号 财产查控";

struct Harness {
    _dir: TempDir,
    engine: Arc<Engine>,
    clock: Arc<FixedClock>,
    queue: PublishQueue,
    api: Api,
    /// Dropping it would read as a shutdown to Watch.
    _running: tokio::sync::watch::Sender<bool>,
}

fn harness() -> Harness {
    let TestEngine {
        dir, engine, clock, ..
    } = test_engine(
        CONSORTIUM,
        capitals(),
        FixedClock::at_date(parse_date("2026-05-20").expect("a date")),
    );
    let (queue, _task) = publish::start(engine.clone());
    let (running, shutdown) = tokio::sync::watch::channel(false);
    let api = Api {
        engine: engine.clone(),
        auth: Authorizer::new(CONSORTIUM, NODE, [NODE, PEER]),
        publisher: queue.clone(),
        peers: Arc::new(PeerTable::default()),
        shutdown,
    };
    Harness {
        _dir: dir,
        engine,
        clock,
        queue,
        api,
        _running: running,
    }
}

/// A resident of Furong district, Changsha, born 1990-01-01.
fn person() -> String {
    let first17 = "43010219900101123";
    format!(
        "{first17}{}",
        ident::id_check_char(first17).expect("17 digits")
    )
}

/// 失信被执行人: [`person`] black-listed by a Changsha court.
fn black(record_id: &str) -> pb::CreditRecord {
    let person = pb::Subject {
        kind: pb::SubjectKind::NaturalPerson as i32,
        name: "张某某".into(),
        id_number: person(),
        ..Default::default()
    };
    dishonest_debtor(record_id, person, "430100")
}

fn spiffe(role: Role) -> String {
    format!("spiffe://{CONSORTIUM}/{NODE}/{role}")
}

/// `message` as a client of this city with `role` sends it over mutual TLS.
fn from<T>(role: Role, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(PeerInfo {
        remote_addr: None,
        identity: Some(Identity::new(CONSORTIUM, NODE, role).expect("identity")),
    });
    request
}

fn lookup(purpose: &str) -> pb::LookupRequest {
    pb::LookupRequest {
        subject_id: person(),
        purpose: purpose.to_owned(),
        ..Default::default()
    }
}

fn subject_ids(records: &[pb::ViewRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.record.as_ref().and_then(|r| r.subject.as_ref()))
        .map(|s| s.map(|s| s.id_number.clone()).unwrap_or_default())
        .collect()
}

impl Harness {
    async fn publish(&self) {
        self.queue
            .publish(vec![black("CS-2026-0001")])
            .await
            .expect("published");
    }

    fn log(&self) -> Vec<(u64, AccessRecord)> {
        self.engine.store.accesses(0, 100).expect("access log")
    }
}

#[tokio::test]
async fn an_enforcement_lookup_sees_the_full_id_and_is_logged_with_its_purpose() {
    let h = harness();
    h.publish().await;

    let answer = h
        .api
        .lookup(from(Role::Enforcement, lookup(PURPOSE)))
        .await
        .expect("enforcement lookup")
        .into_inner();

    assert_eq!(answer.subject_id, person());
    assert_eq!(subject_ids(&answer.in_force), [person()]);
    assert_eq!(
        h.log(),
        [(
            0,
            AccessRecord {
                at_ms: h.clock.now_millis(),
                who: spiffe(Role::Enforcement),
                rpc: "View.Lookup".into(),
                subject: person(),
                purpose: PURPOSE.into(),
            }
        )]
    );
}

#[tokio::test]
async fn a_reader_lookup_is_masked_and_not_logged_whatever_purpose_it_gives() {
    let h = harness();
    h.publish().await;

    let answer = h
        .api
        .lookup(from(Role::Reader, lookup(PURPOSE)))
        .await
        .expect("reader lookup")
        .into_inner();
    let listed = h
        .api
        .list(from(Role::Reader, pb::ListRequest::default()))
        .await
        .expect("reader list")
        .into_inner();

    // GB 11643 masking: the division's first four digits and the last four stay.
    let masked = "4301**********123".to_owned() + &person()[17..];
    assert_eq!(answer.subject_id, masked);
    assert_eq!(subject_ids(&listed.records), [masked]);
    assert_eq!(h.log(), []);
}

#[tokio::test]
async fn enforcement_without_a_purpose_or_with_an_overlong_one_is_refused_naming_the_field() {
    let h = harness();
    h.publish().await;
    let too_long = "案".repeat(MAX_PURPOSE_CHARS + 1);

    for purpose in ["", "   ", too_long.as_str()] {
        let refused = h
            .api
            .lookup(from(Role::Enforcement, lookup(purpose)))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().starts_with("purpose: "), "{refused:?}");
        let refused = h
            .api
            .list(from(Role::Enforcement, pb::ListRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().starts_with("purpose: "), "{refused:?}");
    }
    // Exactly the bound is accepted.
    let at_bound = "案".repeat(MAX_PURPOSE_CHARS);
    h.api
        .lookup(from(Role::Enforcement, lookup(&at_bound)))
        .await
        .expect("a purpose at the bound");
    assert_eq!(h.log().len(), 1, "only the answered request is logged");
}

#[tokio::test]
async fn enforcement_list_and_watch_see_full_ids_and_are_logged_with_their_filters() {
    let h = harness();
    let mut changes = h
        .api
        .watch(from(
            Role::Enforcement,
            pb::WatchRequest {
                after: 0,
                purpose: PURPOSE.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("enforcement watch")
        .into_inner();
    h.publish().await;
    let change = changes
        .next()
        .await
        .expect("a change")
        .expect("not an error");
    assert_eq!(change.subject_id, person());

    let listed = h
        .api
        .list(from(
            Role::Enforcement,
            pb::ListRequest {
                list: pb::ListKind::Black as i32,
                purpose: PURPOSE.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("enforcement list")
        .into_inner();
    assert_eq!(subject_ids(&listed.records), [person()]);

    let logged: Vec<(String, String, String)> = h
        .log()
        .into_iter()
        .map(|(_, a)| (a.rpc, a.subject, a.purpose))
        .collect();
    assert_eq!(
        logged,
        [
            (
                "View.Watch".into(),
                "changes after 0".into(),
                PURPOSE.into()
            ),
            (
                "View.List".into(),
                "origin=* list=LIST_KIND_BLACK category=* as_of=today as_known_at=0 page_token="
                    .into(),
                PURPOSE.into()
            ),
        ]
    );
}

#[tokio::test]
async fn list_access_pages_through_the_log_in_the_order_written() {
    let h = harness();
    h.publish().await;
    for n in 0..3 {
        h.api
            .lookup(from(Role::Enforcement, lookup(&format!("{PURPOSE} ({n})"))))
            .await
            .expect("enforcement lookup");
    }

    let mut purposes = Vec::new();
    let mut request = pb::ListAccessRequest {
        page_size: 2,
        page_token: String::new(),
    };
    let mut pages = 0;
    loop {
        let page = h
            .api
            .list_access(from(Role::Operator, request.clone()))
            .await
            .expect("operator lists access")
            .into_inner();
        pages += 1;
        for e in page.entries {
            assert_eq!(e.who, spiffe(Role::Enforcement));
            purposes.push((e.number, e.purpose));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(pages, 2);
    assert_eq!(
        purposes,
        (0..3)
            .map(|n| (n, format!("{PURPOSE} ({n})")))
            .collect::<Vec<_>>()
    );
    let refused = h
        .api
        .list_access(from(Role::Enforcement, pb::ListAccessRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}
