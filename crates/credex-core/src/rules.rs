//! The consortium's rulebook: everything besides the schema that decides whether a record is
//! valid. It comes from the consortium file every member pins (`[rules]` and the members'
//! divisions), never from one node's config, so that every node judges every entry the same way.

use crate::ident::LegacyAllowList;

/// Days after today (UTC+8) a decision date may lie by default: 1, tomorrow. A publisher's clock
/// a few hours ahead, or a decision signed in the evening and published after midnight elsewhere,
/// must not be refused; a decision dated next year must.
pub const DEFAULT_DECISION_DAYS_AHEAD: u32 = 1;

/// One member as the rules see it: its city id (the namespace of its record ids) and its
/// administrative division (which authorities may decide the records it publishes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRule {
    pub city: String,
    /// Six digits, e.g. `430100`.
    pub division: String,
}

impl MemberRule {
    /// The prefix an authority's division code must start with: the first four digits (province
    /// and prefecture-level city; GB/T 2260), so a district office (430103) belongs to its city.
    pub fn division_prefix(&self) -> &str {
        self.division.get(..4).unwrap_or(&self.division)
    }
}

/// The consortium's rules. Built from the consortium file; tests build it directly.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Early-pilot USCCs accepted despite a failing check character, flagged in every output.
    pub legacy_uscc_allow_list: LegacyAllowList,
    /// How many days after the reference date a decision date may lie.
    pub decision_days_ahead: u32,
    /// Every member city with its division.
    pub members: Vec<MemberRule>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            legacy_uscc_allow_list: LegacyAllowList::empty(),
            decision_days_ahead: DEFAULT_DECISION_DAYS_AHEAD,
            members: Vec::new(),
        }
    }
}

impl Rules {
    /// The default rules for members given as (city id, division code).
    pub fn for_members<C: Into<String>, D: Into<String>>(
        members: impl IntoIterator<Item = (C, D)>,
    ) -> Rules {
        Rules {
            members: members
                .into_iter()
                .map(|(city, division)| MemberRule {
                    city: city.into(),
                    division: division.into(),
                })
                .collect(),
            ..Rules::default()
        }
    }

    pub fn member(&self, city: &str) -> Option<&MemberRule> {
        self.members.iter().find(|m| m.city == city)
    }

    /// The member whose namespace `record_id` is in (`<city>-…`, ASCII case-insensitive), if any.
    pub fn namespace_of(&self, record_id: &str) -> Option<&MemberRule> {
        self.members.iter().find(|m| {
            record_id.len() > m.city.len()
                && record_id.as_bytes()[m.city.len()] == b'-'
                && record_id.as_bytes()[..m.city.len()].eq_ignore_ascii_case(m.city.as_bytes())
        })
    }
}
