//! Audit files as `credexctl audit verify` reads them: proof bundles (tlog-proof, possibly
//! extended) and evidence files. Whatever parses writes back byte for byte (proofs) or
//! re-reads equal (evidence), and is then verified against the consortium's pinned keys.
#![no_main]

use credex_audit::{self as audit, ProofFile};
use credex_cli::audit::render_proof_report;
use credex_fuzz::fixture;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let consortium = &fixture().consortium;
    let _ = audit::detect(data);

    if let Ok(file) = ProofFile::parse(data) {
        assert_eq!(
            file.to_bytes(),
            data,
            "a proof file that parses writes back byte for byte"
        );
        for quorum in [0, audit::DEFAULT_QUORUM] {
            match audit::verify_proof(&file, consortium, quorum) {
                Ok(report) => {
                    let _ = render_proof_report(&report);
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }

    if let Ok(items) = audit::parse_evidence(data) {
        let again = audit::parse_evidence(&audit::encode_evidence(&items)).unwrap();
        assert_eq!(again, items);
        for item in &items {
            match audit::verify_evidence(item, consortium) {
                Ok(report) => {
                    let _ = report.to_string();
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
});
