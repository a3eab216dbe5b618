//! The view's counts, kept by the writer: each record's *standing* in the view as last
//! evaluated (in its record index value), and the totals the standings add up to — records in
//! force, by list, records excluded, and subjects with a record in force.
//!
//! The store does not evaluate records; its caller does, and says each touched record's
//! standing with [`crate::WriteBatch::set_standing`]. A standing is absolute, not a delta: the
//! store moves the totals by the difference from the standing it held, in the same atomic
//! batch, so the totals always equal the sum over the stored standings, whatever order the
//! caller's evaluations come in, and evaluating a record again never counts it twice. Subjects
//! are counted through a count of records in force per subject (keyspace `SUBJECT_COUNT`, in
//! the view index, keyed by an 8-byte tag of the subject the caller derives): a subject is
//! counted while that count is above zero.
//!
//! The totals say what they were evaluated under (`basis`, an opaque value the caller sets
//! once every record has a standing under its rules): a caller whose rules differ counts again
//! ([`crate::WriteBatch::set_count_basis`]).

use std::collections::BTreeMap;

use crate::codec::{Dec, Enc};

/// An 8-byte tag naming a subject in the count of subjects (its derivation is the caller's:
/// two subjects sharing a tag are counted as one).
pub type SubjectTag = [u8; SUBJECT_TAG_LEN];

/// Bytes of a [`SubjectTag`].
pub const SUBJECT_TAG_LEN: usize = 8;

/// A record's standing in the view, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Standing {
    /// Never evaluated (a record indexed by a store older than the counts).
    #[default]
    Uncounted,
    /// In force, on list `list` (the caller's list number), for subject `subject`.
    InForce { list: u8, subject: SubjectTag },
    /// Held but kept out of the view.
    Excluded,
}

/// The view's totals: the sum over every record's [`Standing`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewCounts {
    pub in_force: u64,
    pub excluded: u64,
    /// Subjects with at least one record in force.
    pub subjects: u64,
    /// Records in force by list number; lists with none are absent.
    pub by_list: BTreeMap<u8, u64>,
    /// What every standing was evaluated under, once the caller said so; `None` while some
    /// may not have been.
    pub basis: Option<Vec<u8>>,
}

const UNCOUNTED: u8 = 0;
const IN_FORCE: u8 = 1;
const EXCLUDED: u8 = 2;

impl Standing {
    /// Appends the standing to a record value (nothing for [`Standing::Uncounted`], so a
    /// value written before the counts existed reads as uncounted).
    pub(crate) fn encode(self, e: Enc) -> Enc {
        match self {
            Standing::Uncounted => e,
            Standing::InForce { list, subject } => e.u8(IN_FORCE).u8(list).raw(&subject),
            Standing::Excluded => e.u8(EXCLUDED),
        }
    }

    /// Reads what [`Standing::encode`] wrote at the end of a record value.
    pub(crate) fn decode(d: &mut Dec) -> Option<Standing> {
        if d.is_empty() {
            return Some(Standing::Uncounted);
        }
        match d.u8()? {
            UNCOUNTED => Some(Standing::Uncounted),
            IN_FORCE => {
                let list = d.u8()?;
                let subject = d.take(SUBJECT_TAG_LEN)?.try_into().ok()?;
                Some(Standing::InForce { list, subject })
            }
            EXCLUDED => Some(Standing::Excluded),
            _ => None,
        }
    }
}

/// A subject's count of records in force as stored: big-endian without leading zero bytes (one
/// byte for nearly every subject).
pub(crate) fn encode_subject_count(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = (n.leading_zeros() / 8).min(7) as usize;
    bytes[skip..].to_vec()
}

pub(crate) fn decode_subject_count(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 8 {
        return None;
    }
    let mut bytes = [0; 8];
    bytes[8 - v.len()..].copy_from_slice(v);
    Some(u64::from_be_bytes(bytes))
}

impl ViewCounts {
    /// The totals without the basis, as stored under `COUNTER ‖ "view"`.
    pub(crate) fn encode_totals(&self) -> Vec<u8> {
        let lists = u32::try_from(self.by_list.len()).expect("at most 256 lists");
        let mut e = Enc::with_capacity(28 + 9 * self.by_list.len())
            .u64(self.in_force)
            .u64(self.excluded)
            .u64(self.subjects)
            .u32(lists);
        for (&list, &n) in &self.by_list {
            e = e.u8(list).u64(n);
        }
        e.finish()
    }

    pub(crate) fn decode_totals(v: &[u8], basis: Option<Vec<u8>>) -> Option<ViewCounts> {
        let mut d = Dec::new(v);
        let in_force = d.u64()?;
        let excluded = d.u64()?;
        let subjects = d.u64()?;
        let lists = d.u32()?;
        let mut by_list = BTreeMap::new();
        for _ in 0..lists {
            by_list.insert(d.u8()?, d.u64()?);
        }
        d.end(ViewCounts {
            in_force,
            excluded,
            subjects,
            by_list,
            basis,
        })
    }

    /// Moves the totals from `old` to `new` for one record. Returns the subject counts to move:
    /// `(subject, -1)` for the one left, `(subject, +1)` for the one entered.
    pub(crate) fn shift(&mut self, old: Standing, new: Standing) -> [Option<(SubjectTag, i8)>; 2] {
        let mut moved = [None, None];
        if old == new {
            return moved;
        }
        match old {
            Standing::Uncounted => {}
            Standing::InForce { list, subject } => {
                self.in_force = self.in_force.saturating_sub(1);
                if let Some(n) = self.by_list.get_mut(&list) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.by_list.remove(&list);
                    }
                }
                moved[0] = Some((subject, -1));
            }
            Standing::Excluded => self.excluded = self.excluded.saturating_sub(1),
        }
        match new {
            Standing::Uncounted => {}
            Standing::InForce { list, subject } => {
                self.in_force += 1;
                *self.by_list.entry(list).or_default() += 1;
                moved[1] = Some((subject, 1));
            }
            Standing::Excluded => self.excluded += 1,
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standings_round_trip_and_an_old_value_reads_uncounted() {
        for standing in [
            Standing::Uncounted,
            Standing::InForce {
                list: 3,
                subject: [7; SUBJECT_TAG_LEN],
            },
            Standing::Excluded,
        ] {
            let bytes = standing.encode(Enc::default().u64(1)).finish();
            let mut d = Dec::new(&bytes);
            assert_eq!(d.u64(), Some(1));
            assert_eq!(Standing::decode(&mut d), Some(standing));
            assert!(d.is_empty());
        }
        assert_eq!(Standing::decode(&mut Dec::new(&[9])), None);
    }

    #[test]
    fn subject_counts_take_the_bytes_they_need() {
        for (n, len) in [(0, 1), (1, 1), (255, 1), (256, 2), (u64::MAX, 8)] {
            let v = encode_subject_count(n);
            assert_eq!((v.len(), decode_subject_count(&v)), (len, Some(n)));
        }
        assert_eq!(decode_subject_count(&[]), None);
        assert_eq!(decode_subject_count(&[0; 9]), None);
    }

    #[test]
    fn totals_round_trip_and_shift_by_the_difference() {
        let mut counts = ViewCounts::default();
        let a = Standing::InForce {
            list: 2,
            subject: [1; SUBJECT_TAG_LEN],
        };
        assert_eq!(
            counts.shift(Standing::Uncounted, a),
            [None, Some(([1; SUBJECT_TAG_LEN], 1))]
        );
        assert_eq!(counts.shift(a, a), [None, None]);
        assert_eq!(
            counts.shift(a, Standing::Excluded),
            [Some(([1; SUBJECT_TAG_LEN], -1)), None]
        );
        assert_eq!(
            (counts.in_force, counts.excluded, counts.by_list.len()),
            (0, 1, 0)
        );
        counts.shift(Standing::Uncounted, a);
        let decoded = ViewCounts::decode_totals(&counts.encode_totals(), None).expect("decodes");
        assert_eq!(decoded, counts);
    }
}
