//! Per-RPC authorisation: which caller identities (SPIFFE IDs from [`crate::tls`]) may call
//! which RPC on this node.
//!
//! | RPCs | admitted callers |
//! |---|---|
//! | Exchange.Sync, Witness.AddCheckpoint | `node` of any member city |
//! | Publisher.Publish | `publisher` of this city |
//! | View.* | `reader`, `operator`, `auditor`, `enforcement` of this city |
//! | Operator.* | `operator` of this city |
//! | Audit.* | `auditor` of any member city, `operator` of this city |
//!
//! Only `enforcement` (a court or bank under agreement) sees resident ID numbers in full
//! ([`sees_full_identity`]); it must state a purpose (查询事由) on every View request, and each
//! is written to the access log (`Operator.ListAccess`) before it is answered.
//!
//! A caller from another consortium, from a city that is not a member, or without an identity
//! is refused everything. Every refusal is `PERMISSION_DENIED` naming who asked for what and
//! why: the role the RPC is for, the membership or consortium that does not match, or what is
//! wrong with a certificate's SPIFFE ID (an unknown role, a malformed ID, none or several).
//! A certificate of another CA, an expired one or none at all never gets this far: the TLS
//! handshake refuses it with the alert that says why (`UnknownCA`, `CertificateExpired`,
//! `CertificateRequired`).

use std::collections::BTreeSet;
use std::fmt;

use tracing::warn;

use crate::config::Config;
use crate::quota::{InFlight, Quotas};
use crate::tls::{self, Identity, Role};

/// Every RPC of the credex services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    Sync,
    AddCheckpoint,
    Publish,
    ViewLookup,
    ViewList,
    ViewWatch,
    Status,
    ListQuarantine,
    ListInvalid,
    ListAccess,
    GetProof,
    GetConsistency,
    ListEvidence,
    GetEntries,
    ListCheckpoints,
}

/// Who an RPC admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    MemberNodes,
    OwnPublisher,
    OwnViewers,
    OwnOperator,
    Auditors,
}

impl Rpc {
    pub const ALL: [Rpc; 15] = [
        Rpc::Sync,
        Rpc::AddCheckpoint,
        Rpc::Publish,
        Rpc::ViewLookup,
        Rpc::ViewList,
        Rpc::ViewWatch,
        Rpc::Status,
        Rpc::ListQuarantine,
        Rpc::ListInvalid,
        Rpc::ListAccess,
        Rpc::GetProof,
        Rpc::GetConsistency,
        Rpc::ListEvidence,
        Rpc::GetEntries,
        Rpc::ListCheckpoints,
    ];

    /// `Service.Method`, as in `Publisher.Publish`.
    pub fn name(self) -> &'static str {
        self.describe().0
    }

    /// The HTTP/2 path gRPC uses, as in `/credex.v1.Publisher/Publish`.
    pub fn grpc_path(self) -> &'static str {
        self.describe().1
    }

    /// The RPC a gRPC request path addresses; `None` for paths outside the credex services
    /// (health, reflection), which the caller decides about.
    pub fn from_grpc_path(path: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|rpc| rpc.grpc_path() == path)
    }

    fn describe(self) -> (&'static str, &'static str, Access) {
        match self {
            Rpc::Sync => (
                "Exchange.Sync",
                "/credex.v1.Exchange/Sync",
                Access::MemberNodes,
            ),
            Rpc::AddCheckpoint => (
                "Witness.AddCheckpoint",
                "/credex.v1.Witness/AddCheckpoint",
                Access::MemberNodes,
            ),
            Rpc::Publish => (
                "Publisher.Publish",
                "/credex.v1.Publisher/Publish",
                Access::OwnPublisher,
            ),
            Rpc::ViewLookup => ("View.Lookup", "/credex.v1.View/Lookup", Access::OwnViewers),
            Rpc::ViewList => ("View.List", "/credex.v1.View/List", Access::OwnViewers),
            Rpc::ViewWatch => ("View.Watch", "/credex.v1.View/Watch", Access::OwnViewers),
            Rpc::Status => (
                "Operator.Status",
                "/credex.v1.Operator/Status",
                Access::OwnOperator,
            ),
            Rpc::ListQuarantine => (
                "Operator.ListQuarantine",
                "/credex.v1.Operator/ListQuarantine",
                Access::OwnOperator,
            ),
            Rpc::ListInvalid => (
                "Operator.ListInvalid",
                "/credex.v1.Operator/ListInvalid",
                Access::OwnOperator,
            ),
            Rpc::ListAccess => (
                "Operator.ListAccess",
                "/credex.v1.Operator/ListAccess",
                Access::OwnOperator,
            ),
            Rpc::GetProof => (
                "Audit.GetProof",
                "/credex.v1.Audit/GetProof",
                Access::Auditors,
            ),
            Rpc::GetConsistency => (
                "Audit.GetConsistency",
                "/credex.v1.Audit/GetConsistency",
                Access::Auditors,
            ),
            Rpc::ListEvidence => (
                "Audit.ListEvidence",
                "/credex.v1.Audit/ListEvidence",
                Access::Auditors,
            ),
            Rpc::GetEntries => (
                "Audit.GetEntries",
                "/credex.v1.Audit/GetEntries",
                Access::Auditors,
            ),
            Rpc::ListCheckpoints => (
                "Audit.ListCheckpoints",
                "/credex.v1.Audit/ListCheckpoints",
                Access::Auditors,
            ),
        }
    }

    fn access(self) -> Access {
        self.describe().2
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who is calling, as far as the connection tells.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A certificate with a valid SPIFFE ID.
    Identified(&'a Identity),
    /// A CA-signed certificate whose SPIFFE ID is missing or malformed; the text says what is
    /// wrong with it.
    Unusable(&'a str),
    /// No certificate the node read (a request that did not come over mutual TLS).
    Anonymous,
}

impl<'a> Caller<'a> {
    /// The caller of `request`, from what [`crate::tls`] put into its extensions.
    pub fn of<T>(request: &'a tonic::Request<T>) -> Caller<'a> {
        match (tls::peer_identity(request), tls::identity_error(request)) {
            (Some(who), _) => Caller::Identified(who),
            (None, Some(why)) => Caller::Unusable(why),
            (None, None) => Caller::Anonymous,
        }
    }
}

impl<'a> From<Option<&'a Identity>> for Caller<'a> {
    fn from(who: Option<&'a Identity>) -> Self {
        who.map_or(Caller::Anonymous, Caller::Identified)
    }
}

/// Whether `who` sees resident ID numbers in full in the view: only the `enforcement` role,
/// which states a purpose on each request and is logged. Everyone else sees them masked.
pub fn sees_full_identity(who: Option<&Identity>) -> bool {
    who.is_some_and(|who| who.role == Role::Enforcement)
}

/// Decides every RPC on one node, given the consortium and its member cities, and admits the
/// calls it allows within the caller's quotas ([`Authorizer::admit`]).
#[derive(Debug, Clone)]
pub struct Authorizer {
    consortium: String,
    city: String,
    members: BTreeSet<String>,
    quotas: Quotas,
}

impl Authorizer {
    /// The authoriser of `city`'s node in `consortium`; `members` are all member city ids.
    pub fn new<S: Into<String>>(
        consortium: &str,
        city: &str,
        members: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            consortium: consortium.to_owned(),
            city: city.to_owned(),
            members: members.into_iter().map(Into::into).collect(),
            quotas: crate::config::LimitsConfig::default().quotas(),
        }
    }

    /// The authoriser of the node a loaded config describes, with its `[limits]` quotas.
    pub fn for_config(config: &Config) -> Self {
        let mut auth = Self::new(
            &config.consortium.name,
            &config.node.city,
            config.consortium.cities(),
        );
        auth.quotas = config.limits.quotas();
        auth
    }

    /// [`Authorizer::check`], then the caller's quotas: a call beyond its identity's calls in
    /// flight, or (on the client-facing services: all but Exchange and Witness, which only
    /// nodes call) beyond its request rate, is refused `RESOURCE_EXHAUSTED` naming the limit.
    /// The call holds the returned slot until it ends (a stream, for its whole life).
    pub fn admit(&self, who: Caller<'_>, rpc: Rpc) -> Result<InFlight, tonic::Status> {
        self.check(who, rpc)?;
        let Caller::Identified(who) = who else {
            // `check` admits identified callers only; this keeps the type system honest.
            return Err(tonic::Status::permission_denied(format!(
                "a client without an identity may not call {rpc}"
            )));
        };
        let admitted = (|| {
            if rpc.access() != Access::MemberNodes {
                self.quotas.rate(who)?;
            }
            self.quotas.in_flight(who)
        })();
        if let Err(refused) = &admitted {
            warn!(caller = %who, rpc = rpc.name(), reason = refused.message(), "call refused");
        }
        admitted
    }

    /// `Ok` when `who` may call `rpc` here, else `PERMISSION_DENIED` saying who may not call what
    /// and why. `who` is `None` when the client's certificate had no usable identity.
    pub fn check<'a>(&self, who: impl Into<Caller<'a>>, rpc: Rpc) -> Result<(), tonic::Status> {
        let who = match who.into() {
            Caller::Identified(who) => who,
            Caller::Unusable(why) => {
                warn!(
                    rpc = rpc.name(),
                    why, "permission denied: unusable identity"
                );
                return Err(tonic::Status::permission_denied(format!(
                    "a client whose certificate has no usable credex identity may not call {rpc} on {}: {why}",
                    self.city
                )));
            }
            Caller::Anonymous => {
                warn!(rpc = rpc.name(), "permission denied: no client certificate");
                return Err(tonic::Status::permission_denied(format!(
                    "a client without a certificate may not call {rpc} on {}",
                    self.city
                )));
            }
        };
        let why_not = if who.consortium != self.consortium {
            format!(
                "its consortium is {}, not {}",
                who.consortium, self.consortium
            )
        } else if !self.members.contains(&who.city) {
            format!("{} is not a member of {}", who.city, self.consortium)
        } else if self.admits(who, rpc.access()) {
            return Ok(());
        } else {
            format!("{rpc} is for {}", self.describe(rpc.access()))
        };
        warn!(caller = %who, rpc = rpc.name(), "permission denied");
        Err(tonic::Status::permission_denied(format!(
            "{who} may not call {rpc} on {}: {why_not}",
            self.city
        )))
    }

    fn admits(&self, who: &Identity, access: Access) -> bool {
        let own = who.city == self.city;
        match access {
            Access::MemberNodes => who.role == Role::Node,
            Access::OwnPublisher => own && who.role == Role::Publisher,
            Access::OwnViewers => {
                own && matches!(
                    who.role,
                    Role::Reader | Role::Operator | Role::Auditor | Role::Enforcement
                )
            }
            Access::OwnOperator => own && who.role == Role::Operator,
            Access::Auditors => who.role == Role::Auditor || (own && who.role == Role::Operator),
        }
    }

    fn describe(&self, access: Access) -> String {
        let city = &self.city;
        match access {
            Access::MemberNodes => "the node of any member city".to_owned(),
            Access::OwnPublisher => format!("the publisher of {city}"),
            Access::OwnViewers => format!("a reader, operator, auditor or enforcement of {city}"),
            Access::OwnOperator => format!("an operator of {city}"),
            Access::Auditors => format!("an auditor of any member city or an operator of {city}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn authorizer() -> Authorizer {
        Authorizer::new(
            "mid-yangtze",
            "changsha",
            ["changsha", "wuhan", "hefei", "nanchang"],
        )
    }

    fn id(consortium: &str, city: &str, role: Role) -> Identity {
        Identity::new(consortium, city, role).unwrap()
    }

    #[test]
    fn admits_exactly_the_roles_of_the_design() {
        let auth = authorizer();
        let mut table = String::new();
        for rpc in Rpc::ALL {
            let mut admitted = Vec::new();
            for city in ["changsha", "wuhan"] {
                for role in Role::ALL {
                    if auth
                        .check(Some(&id("mid-yangtze", city, role)), rpc)
                        .is_ok()
                    {
                        admitted.push(format!("{city}/{role}"));
                    }
                }
            }
            // Callers outside the consortium's membership are refused everything.
            for outsider in [
                id("mid-yangtze", "xian", Role::Node),
                id("mid-yangtze", "xian", Role::Auditor),
                id("other", "changsha", Role::Operator),
                id("other", "wuhan", Role::Node),
            ] {
                assert!(
                    auth.check(Some(&outsider), rpc).is_err(),
                    "{outsider} {rpc}"
                );
            }
            assert!(auth.check(None, rpc).is_err(), "anonymous {rpc}");
            table.push_str(&format!("{:<24} {}\n", rpc.name(), admitted.join(" ")));
        }
        expect![[r#"
            Exchange.Sync            changsha/node wuhan/node
            Witness.AddCheckpoint    changsha/node wuhan/node
            Publisher.Publish        changsha/publisher
            View.Lookup              changsha/operator changsha/auditor changsha/reader changsha/enforcement
            View.List                changsha/operator changsha/auditor changsha/reader changsha/enforcement
            View.Watch               changsha/operator changsha/auditor changsha/reader changsha/enforcement
            Operator.Status          changsha/operator
            Operator.ListQuarantine  changsha/operator
            Operator.ListInvalid     changsha/operator
            Operator.ListAccess      changsha/operator
            Audit.GetProof           changsha/operator changsha/auditor wuhan/auditor
            Audit.GetConsistency     changsha/operator changsha/auditor wuhan/auditor
            Audit.ListEvidence       changsha/operator changsha/auditor wuhan/auditor
            Audit.GetEntries         changsha/operator changsha/auditor wuhan/auditor
            Audit.ListCheckpoints    changsha/operator changsha/auditor wuhan/auditor
        "#]]
        .assert_eq(&table);
    }

    #[test]
    fn refusals_name_who_and_what() {
        let auth = authorizer();
        let refusal_of = |who: Caller<'_>, rpc| {
            let status = auth.check(who, rpc).unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            format!("{}\n", status.message())
        };
        let refusal = |who: Option<Identity>, rpc| refusal_of(who.as_ref().into(), rpc);
        let text = [
            refusal(Some(id("mid-yangtze", "wuhan", Role::Reader)), Rpc::Publish),
            refusal(Some(id("mid-yangtze", "wuhan", Role::Publisher)), Rpc::Sync),
            refusal(
                Some(id("mid-yangtze", "changsha", Role::Reader)),
                Rpc::Status,
            ),
            refusal(
                Some(id("mid-yangtze", "wuhan", Role::Operator)),
                Rpc::ViewLookup,
            ),
            refusal(
                Some(id("mid-yangtze", "wuhan", Role::Operator)),
                Rpc::GetProof,
            ),
            refusal(
                Some(id("mid-yangtze", "wuhan", Role::Enforcement)),
                Rpc::ViewLookup,
            ),
            refusal(
                Some(id("mid-yangtze", "changsha", Role::Enforcement)),
                Rpc::ListAccess,
            ),
            refusal(Some(id("mid-yangtze", "xian", Role::Node)), Rpc::Sync),
            refusal(Some(id("other", "wuhan", Role::Node)), Rpc::Sync),
            refusal(None, Rpc::ViewList),
            refusal_of(
                Caller::Unusable(
                    &tls::Identity::parse_spiffe_id("spiffe://mid-yangtze/changsha/admin")
                        .unwrap_err()
                        .to_string(),
                ),
                Rpc::ViewList,
            ),
        ]
        .concat();
        expect![[r#"
            spiffe://mid-yangtze/wuhan/reader may not call Publisher.Publish on changsha: Publisher.Publish is for the publisher of changsha
            spiffe://mid-yangtze/wuhan/publisher may not call Exchange.Sync on changsha: Exchange.Sync is for the node of any member city
            spiffe://mid-yangtze/changsha/reader may not call Operator.Status on changsha: Operator.Status is for an operator of changsha
            spiffe://mid-yangtze/wuhan/operator may not call View.Lookup on changsha: View.Lookup is for a reader, operator, auditor or enforcement of changsha
            spiffe://mid-yangtze/wuhan/operator may not call Audit.GetProof on changsha: Audit.GetProof is for an auditor of any member city or an operator of changsha
            spiffe://mid-yangtze/wuhan/enforcement may not call View.Lookup on changsha: View.Lookup is for a reader, operator, auditor or enforcement of changsha
            spiffe://mid-yangtze/changsha/enforcement may not call Operator.ListAccess on changsha: Operator.ListAccess is for an operator of changsha
            spiffe://mid-yangtze/xian/node may not call Exchange.Sync on changsha: xian is not a member of mid-yangtze
            spiffe://other/wuhan/node may not call Exchange.Sync on changsha: its consortium is other, not mid-yangtze
            a client without a certificate may not call View.List on changsha
            a client whose certificate has no usable credex identity may not call View.List on changsha: spiffe id "spiffe://mid-yangtze/changsha/admin": unknown role "admin": expected node, publisher, operator, auditor, reader or enforcement
        "#]].assert_eq(&text);
    }

    #[test]
    fn only_enforcement_sees_full_identity() {
        for role in Role::ALL {
            let who = id("mid-yangtze", "changsha", role);
            assert_eq!(
                sees_full_identity(Some(&who)),
                role == Role::Enforcement,
                "{who}"
            );
        }
        assert!(!sees_full_identity(None));
    }

    #[test]
    fn grpc_paths_map_back_to_their_rpcs() {
        for rpc in Rpc::ALL {
            let (service, method) = rpc.name().split_once('.').unwrap();
            assert_eq!(rpc.grpc_path(), format!("/credex.v1.{service}/{method}"));
            assert_eq!(Rpc::from_grpc_path(rpc.grpc_path()), Some(rpc));
        }
        assert_eq!(Rpc::from_grpc_path("/grpc.health.v1.Health/Check"), None);
    }
}
