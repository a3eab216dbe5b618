//! Recognition policies: which lists and categories a node recognises from which origins.
//!
//! A node's config holds one [`RecognitionPolicy`] under `[recognition]`:
//!
//! ```toml
//! [recognition]
//! # default for every member origin not listed below
//! default = { lists = ["black", "red", "watch", "penalty"], categories = ["*"] }
//! [recognition.origins.wuhan]
//! lists = ["black", "red"]
//! categories = ["court.*", "tax.*"]      # exact codes or "<field>.*" prefixes or "*"
//! ```
//!
//! A rule that leaves out `lists` or `categories` recognises all of them, and a policy that
//! leaves out `default` recognises everything from origins it does not list: mutual
//! recognition (共享互认) is the point of the consortium, so restrictions are what a city
//! opts into. The node's own records are always recognised, whatever the rules say.
//!
//! List names and category patterns are checked while the config is parsed, so a typo fails
//! with the config file's line; [`RecognitionPolicy::validate`] then checks the origins
//! against the consortium's members.

use crate::pb::ListKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What is wrong with a recognition policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "recognition.origins.{origin}: {origin:?} is not a member of the consortium (members: {members})"
    )]
    UnknownOrigin { origin: String, members: String },
    #[error(
        "recognition.origins.{origin}: {origin:?} is this node's own origin, whose records are always recognised; remove the entry"
    )]
    OwnOriginListed { origin: String },
    #[error(
        "recognition: this node's own origin {origin:?} is not a member of the consortium (members: {members})"
    )]
    OwnOriginNotMember { origin: String, members: String },
    #[error(
        "unknown list name {name:?}: expected one of \"red\", \"black\", \"watch\", \"penalty\" or \"*\""
    )]
    UnknownList { name: String },
    #[error("category pattern {pattern:?}: {reason}")]
    BadCategoryPattern { pattern: String, reason: String },
}

/// A list a rule recognises; `"*"` in config means every list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListPattern {
    All,
    Red,
    Black,
    Watch,
    Penalty,
}

impl ListPattern {
    /// Parses a config list name: `red`, `black`, `watch`, `penalty` or `*`.
    pub fn parse(name: &str) -> Result<Self, PolicyError> {
        match name {
            "*" => Ok(Self::All),
            "red" => Ok(Self::Red),
            "black" => Ok(Self::Black),
            "watch" => Ok(Self::Watch),
            "penalty" => Ok(Self::Penalty),
            _ => Err(PolicyError::UnknownList {
                name: name.to_owned(),
            }),
        }
    }

    /// The config spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::All => "*",
            Self::Red => "red",
            Self::Black => "black",
            Self::Watch => "watch",
            Self::Penalty => "penalty",
        }
    }

    /// Whether this pattern covers `list`. An unspecified list is covered by nothing: such a
    /// record fails validation anyway, and recognising it by accident would put it in the view.
    pub fn matches(&self, list: ListKind) -> bool {
        match (self, list) {
            (_, ListKind::Unspecified) => false,
            (Self::All, _) => true,
            (Self::Red, ListKind::Red)
            | (Self::Black, ListKind::Black)
            | (Self::Watch, ListKind::Watch)
            | (Self::Penalty, ListKind::Penalty) => true,
            _ => false,
        }
    }
}

impl TryFrom<String> for ListPattern {
    type Error = PolicyError;
    fn try_from(name: String) -> Result<Self, PolicyError> {
        Self::parse(&name)
    }
}

impl From<ListPattern> for String {
    fn from(pattern: ListPattern) -> String {
        pattern.as_str().to_owned()
    }
}

impl fmt::Display for ListPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of catalogue categories: `"*"`, an exact code such as `court.dishonest_debtor`, or
/// every code under a prefix, such as `court.*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CategoryPattern {
    All,
    /// Every code that starts with this prefix followed by a dot (the prefix is stored without it).
    Prefix(String),
    Exact(String),
}

impl CategoryPattern {
    /// Parses a config category pattern. Codes follow the catalogue's grammar (dot-separated
    /// segments, each a lowercase ascii letter followed by lowercase letters, digits or `_`,
    /// see [`crate::catalogue`]); an exact code has at least two segments (`<field>.<name>`),
    /// so a bare field name such as `court` is refused rather than silently matching nothing.
    pub fn parse(pattern: &str) -> Result<Self, PolicyError> {
        let bad = |reason: String| PolicyError::BadCategoryPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern == "*" {
            return Ok(Self::All);
        }
        let (code, prefix) = match pattern.strip_suffix(".*") {
            Some(field) => (field, true),
            None => (pattern, false),
        };
        if code.is_empty() {
            return Err(bad(
                "expected \"*\", a category code such as \"court.dishonest_debtor\" or a prefix such as \"court.*\"".into(),
            ));
        }
        for segment in code.split('.') {
            if segment.is_empty() {
                return Err(bad("empty segment between dots".into()));
            }
            if segment.contains('*') {
                return Err(bad(
                    "\"*\" may only stand alone or as the last segment, as in \"court.*\"".into(),
                ));
            }
            let mut chars = segment.chars();
            let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !well_formed {
                return Err(bad(format!(
                    "segment {segment:?} must be a lowercase ascii letter followed by lowercase letters, digits or _"
                )));
            }
        }
        if prefix {
            Ok(Self::Prefix(code.to_owned()))
        } else if code.contains('.') {
            Ok(Self::Exact(code.to_owned()))
        } else {
            Err(bad(format!(
                "a category code has the form <field>.<name>; write \"{code}.*\" for every category of field {code}"
            )))
        }
    }

    /// Whether `category` is covered. Matching is purely textual, so a prefix also covers
    /// codes this node's catalogue does not know yet.
    pub fn matches(&self, category: &str) -> bool {
        match self {
            Self::All => true,
            Self::Exact(code) => category == code,
            Self::Prefix(field) => category
                .strip_prefix(field.as_str())
                .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
        }
    }
}

impl TryFrom<String> for CategoryPattern {
    type Error = PolicyError;
    fn try_from(pattern: String) -> Result<Self, PolicyError> {
        Self::parse(&pattern)
    }
}

impl From<CategoryPattern> for String {
    fn from(pattern: CategoryPattern) -> String {
        pattern.to_string()
    }
}

impl fmt::Display for CategoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Prefix(field) => write!(f, "{field}.*"),
            Self::Exact(code) => f.write_str(code),
        }
    }
}

/// What a node recognises from one origin: a record is recognised when its list matches one
/// of `lists` and its category one of `categories`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginRule {
    #[serde(default = "all_lists")]
    pub lists: Vec<ListPattern>,
    #[serde(default = "all_categories")]
    pub categories: Vec<CategoryPattern>,
}

fn all_lists() -> Vec<ListPattern> {
    vec![ListPattern::All]
}

fn all_categories() -> Vec<CategoryPattern> {
    vec![CategoryPattern::All]
}

impl Default for OriginRule {
    /// Recognises every list and category.
    fn default() -> Self {
        Self::all()
    }
}

impl OriginRule {
    /// Recognises every list and category.
    pub fn all() -> Self {
        Self {
            lists: all_lists(),
            categories: all_categories(),
        }
    }

    /// Recognises nothing: the origin's records are shown as excluded, not recognised.
    pub fn none() -> Self {
        Self {
            lists: Vec::new(),
            categories: Vec::new(),
        }
    }

    /// A rule from config spellings, e.g. `OriginRule::parse(&["black"], &["court.*"])`.
    pub fn parse(lists: &[&str], categories: &[&str]) -> Result<Self, PolicyError> {
        Ok(Self {
            lists: lists
                .iter()
                .map(|l| ListPattern::parse(l))
                .collect::<Result<_, _>>()?,
            categories: categories
                .iter()
                .map(|c| CategoryPattern::parse(c))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether a record on `list` with `category` is recognised under this rule.
    pub fn recognises(&self, list: ListKind, category: &str) -> bool {
        self.lists.iter().any(|l| l.matches(list))
            && self.categories.iter().any(|c| c.matches(category))
    }
}

/// A node's recognition policy (the `[recognition]` table of its config).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecognitionPolicy {
    /// The rule for every member origin not listed in `origins`.
    #[serde(default)]
    pub default: OriginRule,
    /// Rules for particular origins, by city id (e.g. `wuhan`).
    #[serde(default)]
    pub origins: BTreeMap<String, OriginRule>,
    /// Not part of the config file: the loader sets it from the node's own identity.
    #[serde(skip)]
    own_origin: Option<String>,
}

impl RecognitionPolicy {
    /// Recognises every list and category from every origin.
    pub fn recognise_all(own_origin: &str) -> Self {
        Self::default().with_own_origin(own_origin)
    }

    /// Sets the node's own origin, whose records are always recognised.
    pub fn with_own_origin(mut self, own: &str) -> Self {
        self.own_origin = Some(own.to_owned());
        self
    }

    /// Replaces the rule for one origin.
    pub fn with_origin_rule(mut self, origin: &str, rule: OriginRule) -> Self {
        self.origins.insert(origin.to_owned(), rule);
        self
    }

    /// The node's own origin, once the config loader has set it.
    pub fn own_origin(&self) -> Option<&str> {
        self.own_origin.as_deref()
    }

    /// The rule that applies to records from `origin` (its own records aside).
    pub fn rule_for(&self, origin: &str) -> &OriginRule {
        self.origins.get(origin).unwrap_or(&self.default)
    }

    /// Checks the policy against the consortium's member city ids: every listed origin must be
    /// a member other than this node, and this node must be a member.
    pub fn validate(&self, members: &[&str]) -> Result<(), PolicyError> {
        let member_list = || {
            let mut sorted = members.to_vec();
            sorted.sort_unstable();
            sorted.join(", ")
        };
        if let Some(own) = &self.own_origin
            && !members.contains(&own.as_str())
        {
            return Err(PolicyError::OwnOriginNotMember {
                origin: own.clone(),
                members: member_list(),
            });
        }
        for origin in self.origins.keys() {
            if !members.contains(&origin.as_str()) {
                return Err(PolicyError::UnknownOrigin {
                    origin: origin.clone(),
                    members: member_list(),
                });
            }
            // An entry for the node itself would be silently ignored, which misleads whoever
            // reads the config into thinking the node filters its own records.
            if self.own_origin.as_deref() == Some(origin.as_str()) {
                return Err(PolicyError::OwnOriginListed {
                    origin: origin.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether this node recognises a record from `origin` on `list` with `category`.
    pub fn recognises(&self, origin: &str, list: ListKind, category: &str) -> bool {
        self.own_origin.as_deref() == Some(origin)
            || self.rule_for(origin).recognises(list, category)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NodeConfig {
        recognition: RecognitionPolicy,
    }

    const EXAMPLE: &str = r#"
[recognition]
# default for every member origin not listed below
default = { lists = ["black", "red", "watch", "penalty"], categories = ["*"] }
[recognition.origins.wuhan]
lists = ["black", "red"]
categories = ["court.*", "tax.*"]      # exact codes or "<field>.*" prefixes or "*"
[recognition.origins.hefei]
lists = ["*"]
categories = ["court.dishonest_debtor"]
[recognition.origins.nanchang]
lists = []
"#;

    const MEMBERS: &[&str] = &["changsha", "wuhan", "hefei", "nanchang"];

    fn example() -> RecognitionPolicy {
        let config: NodeConfig = toml::from_str(EXAMPLE).expect("example config parses");
        config.recognition.with_own_origin("changsha")
    }

    fn parse_error(toml_text: &str) -> String {
        match toml::from_str::<NodeConfig>(toml_text) {
            Ok(config) => format!("parsed {:?}", config.recognition),
            Err(e) => e.to_string(),
        }
    }

    fn check_parse(toml_text: &str, expect: Expect) {
        expect.assert_eq(&parse_error(toml_text));
    }

    #[test]
    fn config_errors_name_the_bad_value() {
        check_parse(
            "[recognition]\ndefault = { lists = [\"blak\"] }\n",
            expect![[r#"
                TOML parse error at line 2, column 21
                  |
                2 | default = { lists = ["blak"] }
                  |                     ^^^^^^^^
                unknown list name "blak": expected one of "red", "black", "watch", "penalty" or "*"
            "#]],
        );
        check_parse(
            "[recognition.origins.wuhan]\ncategories = [\"court\"]\n",
            expect![[r#"
                TOML parse error at line 2, column 14
                  |
                2 | categories = ["court"]
                  |              ^^^^^^^^^
                category pattern "court": a category code has the form <field>.<name>; write "court.*" for every category of field court
            "#]],
        );
        check_parse(
            "[recognition]\nlists = [\"red\"]\n",
            expect![[r#"
                TOML parse error at line 2, column 1
                  |
                2 | lists = ["red"]
                  | ^^^^^
                unknown field `lists`, expected `default` or `origins`
            "#]],
        );
        check_parse(
            "[recognition.origins.wuhan]\nlist = [\"red\"]\n",
            expect![[r#"
                TOML parse error at line 2, column 1
                  |
                2 | list = ["red"]
                  | ^^^^
                unknown field `list`, expected `lists` or `categories`
            "#]],
        );
        check_parse(
            "[recognition]\n",
            expect![[
                r#"parsed RecognitionPolicy { default: OriginRule { lists: [All], categories: [All] }, origins: {}, own_origin: None }"#
            ]],
        );
    }

    fn check_pattern(pattern: &str, expect: Expect) {
        let got = match CategoryPattern::parse(pattern) {
            Ok(p) => format!("ok {p:?}"),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn category_patterns() {
        check_pattern("*", expect![["ok All"]]);
        check_pattern("court.*", expect![[r#"ok Prefix("court")"#]]);
        check_pattern("red.tax.*", expect![[r#"ok Prefix("red.tax")"#]]);
        check_pattern(
            "court.dishonest_debtor",
            expect![[r#"ok Exact("court.dishonest_debtor")"#]],
        );
        check_pattern("env.a_grade2", expect![[r#"ok Exact("env.a_grade2")"#]]);
        check_pattern(
            "env.2a",
            expect![[
                r#"err category pattern "env.2a": segment "2a" must be a lowercase ascii letter followed by lowercase letters, digits or _"#
            ]],
        );
        check_pattern(
            "env.a-b",
            expect![[
                r#"err category pattern "env.a-b": segment "a-b" must be a lowercase ascii letter followed by lowercase letters, digits or _"#
            ]],
        );
        check_pattern(
            "court",
            expect![[
                r#"err category pattern "court": a category code has the form <field>.<name>; write "court.*" for every category of field court"#
            ]],
        );
        check_pattern(
            "",
            expect![[
                r#"err category pattern "": expected "*", a category code such as "court.dishonest_debtor" or a prefix such as "court.*""#
            ]],
        );
        check_pattern(
            ".*",
            expect![[
                r#"err category pattern ".*": expected "*", a category code such as "court.dishonest_debtor" or a prefix such as "court.*""#
            ]],
        );
        check_pattern(
            "court..x",
            expect![[r#"err category pattern "court..x": empty segment between dots"#]],
        );
        check_pattern(
            "court.",
            expect![[r#"err category pattern "court.": empty segment between dots"#]],
        );
        check_pattern(
            "court*",
            expect![[
                r#"err category pattern "court*": "*" may only stand alone or as the last segment, as in "court.*""#
            ]],
        );
        check_pattern(
            "*.debtor",
            expect![[
                r#"err category pattern "*.debtor": "*" may only stand alone or as the last segment, as in "court.*""#
            ]],
        );
        check_pattern(
            "Court.*",
            expect![[
                r#"err category pattern "Court.*": segment "Court" must be a lowercase ascii letter followed by lowercase letters, digits or _"#
            ]],
        );
        check_pattern(
            "tax. major",
            expect![[
                r#"err category pattern "tax. major": segment " major" must be a lowercase ascii letter followed by lowercase letters, digits or _"#
            ]],
        );
    }

    fn check_validate(policy: &RecognitionPolicy, expect: Expect) {
        let got = match policy.validate(MEMBERS) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn validate_checks_origins_against_members() {
        check_validate(&example(), expect![["ok"]]);
        check_validate(&RecognitionPolicy::recognise_all("hefei"), expect![["ok"]]);
        check_validate(
            &example().with_origin_rule("wuhna", OriginRule::all()),
            expect![[
                r#"recognition.origins.wuhna: "wuhna" is not a member of the consortium (members: changsha, hefei, nanchang, wuhan)"#
            ]],
        );
        check_validate(
            &example().with_origin_rule("changsha", OriginRule::none()),
            expect![[
                r#"recognition.origins.changsha: "changsha" is this node's own origin, whose records are always recognised; remove the entry"#
            ]],
        );
        check_validate(
            &example().with_own_origin("shanghai"),
            expect![[
                r#"recognition: this node's own origin "shanghai" is not a member of the consortium (members: changsha, hefei, nanchang, wuhan)"#
            ]],
        );
    }

    fn check_recognises(
        policy: &RecognitionPolicy,
        cases: &[(&str, ListKind, &str)],
        expect: Expect,
    ) {
        let got: String = cases
            .iter()
            .map(|(origin, list, category)| {
                let verdict = if policy.recognises(origin, *list, category) {
                    "yes"
                } else {
                    "no"
                };
                format!("{origin} {} {category}: {verdict}\n", list.as_str_name())
            })
            .collect();
        expect.assert_eq(&got);
    }

    #[test]
    fn recognises_by_origin_list_and_category() {
        use ListKind::*;
        check_recognises(
            &example(),
            &[
                ("changsha", Watch, "anything.at_all"),
                ("changsha", Unspecified, "x.y"),
                ("wuhan", Black, "court.dishonest_debtor"),
                ("wuhan", Red, "tax.a_grade"),
                ("wuhan", Watch, "court.dishonest_debtor"),
                ("wuhan", Black, "environment.major_violation"),
                ("wuhan", Black, "courtyard.x"),
                ("wuhan", Black, "court.future_code_not_in_catalogue"),
                ("hefei", Penalty, "court.dishonest_debtor"),
                ("hefei", Penalty, "court.other"),
                ("nanchang", Red, "tax.a_grade"),
                ("guangzhou", Watch, "quality.x"),
                ("guangzhou", Unspecified, "quality.x"),
            ],
            expect![[r#"
                changsha LIST_KIND_WATCH anything.at_all: yes
                changsha LIST_KIND_UNSPECIFIED x.y: yes
                wuhan LIST_KIND_BLACK court.dishonest_debtor: yes
                wuhan LIST_KIND_RED tax.a_grade: yes
                wuhan LIST_KIND_WATCH court.dishonest_debtor: no
                wuhan LIST_KIND_BLACK environment.major_violation: no
                wuhan LIST_KIND_BLACK courtyard.x: no
                wuhan LIST_KIND_BLACK court.future_code_not_in_catalogue: yes
                hefei LIST_KIND_PENALTY court.dishonest_debtor: yes
                hefei LIST_KIND_PENALTY court.other: no
                nanchang LIST_KIND_RED tax.a_grade: no
                guangzhou LIST_KIND_WATCH quality.x: yes
                guangzhou LIST_KIND_UNSPECIFIED quality.x: no
            "#]],
        );
    }

    #[test]
    fn own_records_are_recognised_even_when_the_default_recognises_nothing() {
        let mut policy = RecognitionPolicy::recognise_all("changsha");
        policy.default = OriginRule::none();
        assert!(policy.recognises("changsha", ListKind::Black, "court.dishonest_debtor"));
        assert!(!policy.recognises("wuhan", ListKind::Black, "court.dishonest_debtor"));
    }

    #[test]
    fn serialises_back_to_the_same_policy() {
        let policy = example();
        let text = toml::to_string(&policy).expect("policy serialises");
        let back: RecognitionPolicy = toml::from_str(&text).expect("serialised policy parses");
        // The own origin is the node's identity, not part of the file.
        assert_eq!(back.with_own_origin("changsha"), policy);
        assert_eq!(
            OriginRule::parse(&["black", "*"], &["court.*", "tax.major_violation"]),
            Ok(OriginRule {
                lists: vec![ListPattern::Black, ListPattern::All],
                categories: vec![
                    CategoryPattern::Prefix("court".into()),
                    CategoryPattern::Exact("tax.major_violation".into())
                ],
            })
        );
    }
}
