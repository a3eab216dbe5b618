//! A protobuf-encoded `CreditRecord`, as relayed inside an entry, through both validation
//! modes (see `credex_fuzz::records::check` for what must hold). The first byte picks the
//! validating member and the day.
#![no_main]

use credex_core::pb;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let Ok(record) = pb::CreditRecord::decode(bytes) else {
        return;
    };
    credex_fuzz::records::check(&record, control & 3, (control >> 2) as i8 - 32);
});
