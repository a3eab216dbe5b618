//! The view change feed behind View.Watch. Each committed batch records, in the same atomic
//! write, how every new record version moved the view as of the commit date: a record that
//! entered it, left it (and why) or was updated while in force. Downstream systems resume
//! from a change seq, so a restart of either side loses nothing.
//!
//! Changes caused by the calendar alone (a record reaching its `ends_on`) are not in the feed:
//! the feed follows the logs. Consumers that need expiry evaluate `ends_on`, or look up.

use std::collections::HashMap;

use credex_core::date::Date;
use credex_core::ident::SubjectId;
use credex_core::pb;
use credex_core::view::{self, RecordVersion};
use credex_store::WriteBatch;

use super::{Engine, EngineError};

/// Tracks, within one batch, whether each touched record is in force, and writes changes.
pub(crate) struct ChangeTracker<'a> {
    engine: &'a Engine,
    today: Date,
    in_force: HashMap<(String, String), bool>,
}

impl<'a> ChangeTracker<'a> {
    pub(crate) fn new(engine: &'a Engine) -> Self {
        ChangeTracker {
            engine,
            today: engine.clock.today(),
            in_force: HashMap::new(),
        }
    }

    /// Notes a new valid version of a record, appended at `seq`, and pushes the change it makes.
    pub(crate) fn observe(
        &mut self,
        batch: &mut WriteBatch,
        origin: &str,
        seq: u64,
        record: &pb::CreditRecord,
        subject: Option<&SubjectId>,
    ) -> Result<(), EngineError> {
        let key = (origin.to_owned(), record.record_id.clone());
        let was = match self.in_force.get(&key) {
            Some(&v) => v,
            // A first version has no predecessor to read (the common case of a catch-up).
            None if record.version <= 1 => false,
            None => match self.engine.store.record(origin, &record.record_id)? {
                Some(loc) => {
                    let previous = self.engine.record_version(origin, loc.seq)?;
                    view::evaluate_version(&previous, &self.engine.policy, self.today).is_ok()
                }
                None => false,
            },
        };
        let version = RecordVersion {
            origin: origin.to_owned(),
            seq,
            record: record.clone(),
            checkpoint_size: 0,
            invalid: None,
            unknown_category: !self.engine.catalogue.is_known(&record.category),
        };
        let now = view::evaluate_version(&version, &self.engine.policy, self.today);
        self.in_force.insert(key, now.is_ok());
        let (kind, reason) = match (&now, was) {
            (Ok(_), false) => (
                pb::view_change::Kind::Entered,
                pb::ExclusionReason::Unspecified,
            ),
            (Ok(_), true) => (
                pb::view_change::Kind::Updated,
                pb::ExclusionReason::Unspecified,
            ),
            (Err(excluded), true) => (pb::view_change::Kind::Left, excluded.reason.to_pb()),
            (Err(_), false) => return Ok(()),
        };
        let change = pb::ViewChange {
            change_seq: 0,
            subject_id: subject.map(SubjectId::masked).unwrap_or_default(),
            origin: origin.to_owned(),
            record_id: record.record_id.clone(),
            version: record.version,
            kind: kind as i32,
            reason: reason as i32,
        };
        batch.push_change(prost::Message::encode_to_vec(&change));
        Ok(())
    }
}

impl Engine {
    /// Up to `limit` changes from the store's change `from` on, with their change seqs filled
    /// in. Change seqs start at 1 (store change n is change seq n + 1), so that 0 can mean
    /// "from now on" in View.Watch.
    pub fn changes(&self, from: u64, limit: usize) -> Result<Vec<pb::ViewChange>, EngineError> {
        self.store
            .changes(from, limit)?
            .into_iter()
            .map(|(seq, bytes)| {
                let mut change: pb::ViewChange = prost::Message::decode(bytes.as_slice())
                    .map_err(|e| EngineError::Internal(format!("stored view change {seq}: {e}")))?;
                change.change_seq = seq + 1;
                Ok(change)
            })
            .collect()
    }
}
