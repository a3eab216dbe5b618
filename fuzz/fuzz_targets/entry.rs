//! The signed bytes of an entry (an encoded `Entry`), signed here with Changsha's log key so
//! every input gets past the signature: the leaf must verify exactly when the bytes decode to
//! an entry with a record, keep the bytes verbatim, and its record is then validated in relay
//! mode as a receiver does after appending it.
#![no_main]

use credex_core::date::date_of_millis;
use credex_core::entry::{self, EntryError, MAX_ENTRY_BYTES};
use credex_core::pb;
use credex_core::validate::Mode;
use credex_fuzz::fixture;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|entry_bytes: &[u8]| {
    if entry_bytes.len() > MAX_ENTRY_BYTES {
        return;
    }
    let f = fixture();
    let key = &f.log_keys[0];
    let leaf = entry::sign_entry(key, entry_bytes);
    let parts = entry::parse_leaf(&leaf).expect("sign_entry writes the accepted framing");
    assert_eq!(parts.entry, entry_bytes);

    let decoded = pb::Entry::decode(entry_bytes);
    match entry::verify_entry(&leaf, &key.public()) {
        Ok(verified) => {
            assert_eq!(verified.leaf, leaf);
            assert_eq!(Some(&verified.entry), decoded.as_ref().ok());
            let record = verified
                .entry
                .record
                .as_ref()
                .expect("verified entries have a record");
            let validator = f.validator(Mode::Relay, 0, date_of_millis(verified.entry.logged_at));
            match validator.validate(record) {
                Ok(v) => assert!(!v.subject_keys.is_empty()),
                Err(e) => assert!(!e.errors.is_empty()),
            }
        }
        Err(EntryError::MalformedEntry { .. }) => assert!(decoded.is_err()),
        Err(EntryError::NoRecord) => assert!(decoded.expect("decodes").record.is_none()),
        Err(other) => panic!("a freshly signed leaf fails with {other}"),
    }
});
