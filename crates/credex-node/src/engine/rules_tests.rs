//! Engine tests of the consortium's rules: one rulebook for every member (the legacy allow-list
//! in force and flagged, lookups that never fail for a checksum, invalid entries listed), the
//! calendar and consortium checks at publish and on relay, idempotent publish, and bounded
//! answers.

use credex_core::rules::{MemberRule, Rules};

/// The four capitals with their divisions, as the consortium file lists them.
pub(super) fn capitals() -> Rules {
    let members = [
        ("changsha", "430100"),
        ("wuhan", "420100"),
        ("hefei", "340100"),
        ("nanchang", "360100"),
    ]
    .map(|(city, division)| MemberRule {
        city: city.into(),
        division: division.into(),
    });
    Rules {
        members: members.to_vec(),
        ..Rules::default()
    }
}
