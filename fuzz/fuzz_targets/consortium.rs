//! The consortium file every node pins: whatever validates writes back (`to_toml`) as a file
//! that validates to the same consortium.
#![no_main]

use std::path::Path;

use credex_core::consortium::Consortium;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let path = Path::new("/etc/credex/consortium.toml");
    match Consortium::parse(text, path) {
        Ok(consortium) => {
            let written = consortium.to_toml().expect("a consortium writes as TOML");
            let again = Consortium::parse(&written, Path::new("/")).unwrap_or_else(|e| {
                panic!("a written consortium does not read back: {e}\n{written}")
            });
            assert_eq!(again, consortium);
            let rules = consortium.rules();
            assert_eq!(rules.members.len(), consortium.members.len());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
