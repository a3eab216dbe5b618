//! Identifiers (USCC, resident ID number, either, lookup keys, the legacy allow-list) and
//! dates, held against second implementations written from GB 32100 and GB 11643
//! (`credex_fuzz::reference_*`), and the masking rules.
#![no_main]

use credex_core::date::{format_date, parse_date};
use credex_core::ident::{
    self, IdentError, LegacyAllowList, SubjectId, lookup_key, mask_id_number, masked_key,
};
use credex_fuzz::{reference_id_number, reference_uscc};
use libfuzzer_sys::fuzz_target;

fn no_full_id(err: &IdentError, s: &str) {
    if let Some(id) = reference_id_number(s) {
        let message = err.to_string();
        assert!(!message.contains(&id) && !message.contains(s), "{message}");
    }
}

fuzz_target!(|s: &str| {
    let uscc = reference_uscc(s);
    let id = reference_id_number(s);

    match ident::parse_id_number(s) {
        Ok(parsed) => {
            assert_eq!(Some(parsed.as_str()), id.as_deref());
            let masked = parsed.masked();
            assert_eq!(masked.chars().filter(|&c| c == '*').count(), 10);
            assert_eq!(format!("{parsed}"), masked);
            assert_eq!(format!("{parsed:?}").contains(parsed.as_str()), false);
            assert_eq!(ident::parse_id_number(parsed.as_str()).unwrap(), parsed);
        }
        Err(e) => {
            assert_eq!(id, None, "a valid ID number refused: {e}");
            no_full_id(&e, s);
        }
    }

    match ident::parse_uscc(s) {
        Ok(parsed) => {
            assert_eq!(uscc, Some((parsed.as_str().to_owned(), true)));
            assert_eq!(ident::parse_uscc(parsed.as_str()).unwrap(), parsed);
        }
        Err(e) => {
            assert!(
                !matches!(uscc, Some((_, true))),
                "a valid USCC refused: {e}"
            );
            no_full_id(&e, s);
        }
    }

    // The allow-list admits exactly its own codes with a wrong check character.
    if let Some((code, check_ok)) = &uscc {
        match LegacyAllowList::new([code]) {
            Ok(allow) => {
                assert!(!check_ok);
                let (parsed, legacy) = ident::parse_uscc_allowing(s, &allow).unwrap();
                assert!(legacy);
                assert_eq!(parsed.as_str(), code);
            }
            Err(e) => assert!(check_ok, "allow-list refused {code}: {e}"),
        }
    }

    let empty = LegacyAllowList::empty();
    match SubjectId::parse(s, &empty) {
        Ok(SubjectId::IdNumber(parsed)) => assert_eq!(Some(parsed.as_str()), id.as_deref()),
        Ok(subject @ SubjectId::Uscc(_)) => {
            assert_eq!(id, None, "an ID number taken for a USCC");
            assert_eq!(uscc, Some((subject.as_str().to_owned(), true)));
            let _ = subject.masked();
        }
        Err(e) => {
            assert_eq!(id, None, "SubjectId refused a valid ID number: {e}");
            assert!(
                !matches!(uscc, Some((_, true))),
                "SubjectId refused a valid USCC: {e}"
            );
            no_full_id(&e, s);
        }
    }
    if id.is_some() {
        let subject = SubjectId::parse(s, &empty).unwrap();
        assert!(!subject.masked().contains(subject.as_str()));
        assert!(!subject.to_string().contains(subject.as_str()));
    }

    match lookup_key(s) {
        Ok(key) => assert!(uscc.is_some() || id.is_some(), "lookup key {key:?}"),
        Err(e) => no_full_id(&e, s),
    }
    let masked = masked_key(s);
    if let Some(id) = &id {
        assert!(!masked.contains(id.as_str()));
    }
    let masked = mask_id_number(s);
    assert_eq!(masked.chars().count(), s.chars().count());

    if let Ok(date) = parse_date(s) {
        assert_eq!(format_date(date), s, "dates have one spelling");
    }
});
