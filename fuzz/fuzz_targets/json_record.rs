//! One line of `credexctl publish` input (JSON Lines): what parses writes back as a line that
//! parses to the same record, and the record then goes through validation.
#![no_main]

use credex_cli::json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &str| {
    match json::parse_record(line) {
        Ok(record) => {
            let written = json::record_to_line(&record);
            assert!(!written.contains('\n'), "one record, one line");
            let again = json::parse_record(&written)
                .unwrap_or_else(|e| panic!("a written record does not read back: {e}: {written}"));
            assert_eq!(again, record);
            credex_fuzz::records::check(&record, 0, 0);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
