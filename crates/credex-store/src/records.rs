//! Scanning the record index in (origin, record id) order, for paged listings.

use crate::codec::{RecordValue, or_corrupt};
use crate::error::StoreError;
use crate::keys;
use crate::store::{RecordLocation, StoreReader};

impl StoreReader {
    /// Up to `limit` records of `origin` with record id greater than `after` (all if `None`),
    /// in record id order (bytewise), each with its latest indexed version and seq.
    pub fn records(
        &self,
        origin: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, RecordLocation)>, StoreError> {
        let Some(id) = self.origin_id(origin) else {
            return Ok(Vec::new());
        };
        let prefix = keys::id(keys::RECORD, id);
        let start = match after {
            // The smallest key after `after`: the key itself followed by a zero byte.
            Some(a) => {
                let mut k = keys::id_str(keys::RECORD, id, a);
                k.push(0);
                k
            }
            None => prefix.to_vec(),
        };
        let end = match id.checked_add(1) {
            Some(next) => keys::id(keys::RECORD, next).to_vec(),
            None => vec![keys::RECORD + 1],
        };
        let mut out = Vec::new();
        for (k, v) in self.inner.index.scan(&start, &end, limit)? {
            let record_id = or_corrupt(std::str::from_utf8(&k[prefix.len()..]).ok(), || {
                format!("record index key of {origin}")
            })?
            .to_owned();
            let rec = or_corrupt(RecordValue::decode(&v), || {
                format!("record index entry of {origin} record {record_id}")
            })?;
            out.push((
                record_id,
                RecordLocation {
                    version: rec.version,
                    seq: rec.seq,
                },
            ));
        }
        Ok(out)
    }
}
