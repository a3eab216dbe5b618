//! Subject identifiers: the unified social credit code (USCC, 统一社会信用代码, GB 32100-2015) and the
//! resident ID number (居民身份证号码, GB 11643-1999): validation, normalisation, masking and the
//! allow-list of early-pilot USCCs that fail their checksum.
//!
//! # Formats
//! Both identifiers are 18 characters.
//!
//! - USCC: position 1 the registration authority code, 2 the organisation type, 3-8 the
//!   administrative division code (digits), 9-17 the organisation code, 18 the check character.
//!   The character set is [`USCC_CHARSET`]; a character's value is its index. The check character
//!   is `(31 − Σ value·3^(i−1) mod 31) mod 31` over positions 1-17 (ISO 7064 style MOD 31-3).
//!   Positions 1, 2 and 9-17 are checked against the character set only: the lists of authority
//!   and organisation-type codes have grown by amendment (A, N, …), so a closed list would reject
//!   codes issued after it was written, while typing errors are caught by the check character.
//! - ID number: positions 1-6 the division code, 7-14 the birth date `YYYYMMDD`, 15-17 the
//!   sequence code, 18 the check character `"10X98765432"[Σ digit·2^(18−i) mod 11]` (MOD 11-2).
//!   The division code is not checked against a list: codes are retired and renumbered, and the
//!   permanent residence ID of foreigners (2023) uses the same layout with a leading 9.
//!
//! # Normalisation
//! Lowercase letters (`x` in ID numbers, letters in USCCs) are accepted and stored uppercase.
//! Whitespace anywhere, including around the code, is an error rather than something to trim:
//! an identifier with spaces in it is bad data that should be fixed where it came from.
//!
//! # Masking
//! ID numbers are personal data. [`IdNumber`]'s `Debug` and `Display`, [`SubjectId`]'s `Display`
//! and every [`IdentError`] message about an input that could be an ID number show the masked
//! form ([`mask_id_number`]), so logging any of them never leaks a number.
//!
//! # Telling the two apart
//! Where the field says which identifier it holds (the schema has separate `uscc` and
//! `id_number` fields), use [`parse_uscc`] or [`parse_id_number`]. [`SubjectId::parse`] is for
//! input that may be either (a lookup box). The two overlap: a USCC converted from an old
//! numeric organisation code is 17 digits and a check character (e.g. `91110000710925462X`), so
//! the shape alone does not decide. The rules, in order:
//! 1. a code in the legacy allow-list is a USCC: config says so explicitly;
//! 2. 18 characters whose first 17 are digits: if it is a valid ID number it is one, else if it
//!    is a valid USCC it is one. A numeric USCC is rarely mistaken for an ID number because its
//!    positions 7-14 (end of the division code, start of the organisation code) seldom form a
//!    birth date in 1800-2099 and the MOD 11-2 check then matches only one time in eleven; a
//!    string valid as both is taken as an ID number, which errs on the side of masking;
//! 3. when both fail, the error is the one from the parser that got as far as the check
//!    character (a typing error in an otherwise well-formed code), the ID number's first: an
//!    ID number with a typo almost always still has a valid birth date, while a numeric USCC
//!    almost never does;
//! 4. anything else that looks numeric (digits, whitespace, `X`) is a USCC if it is a valid one
//!    (an organisation code whose check character is `X`, as in `9111010810000042X5`, leaves
//!    an `X` among digits), and otherwise gets the ID number's error; everything else the
//!    USCC's.
//!
//! A mistyped ID number passes the USCC check one time in 31 and is then taken for a USCC. So
//! that it is still not displayed, [`SubjectId::masked`] also masks a USCC that is shaped like
//! an ID number (digits, a birth date in positions 7-14); a mistyped ID number whose typo broke
//! the birth date is, as typed, no ID number and is shown as the USCC it parsed as.

use crate::date::Date;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Length of both a USCC and an ID number, in characters.
pub const IDENT_LEN: usize = 18;

/// The USCC character set (GB 32100-2015 table 1): digits and the capital letters other than
/// I, O, S, V and Z, which are too easily read as 1, 0, 5, U and 2. A character's value is its index.
pub const USCC_CHARSET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// 3^(i−1) mod 31 for positions 1-17.
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// 2^(18−i) mod 11 for positions 1-17.
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// Check character of an ID number, indexed by Σ mod 11.
const ID_CHECK_CHARS: &[u8; 11] = b"10X98765432";

/// Birth years an ID number may carry. GB 11643 does not bound the year, but the 18-digit number
/// dates from 1999 and was issued to the living, so a century outside 18-20 is bad data; the bound
/// is also what keeps numeric USCCs (whose positions 7-8 are mostly 00-30) from passing as ID numbers.
const BIRTH_YEARS: RangeInclusive<i32> = 1800..=2099;

/// Longest input echoed in an error message; longer input is cut and marked with `…`.
const SHOWN_MAX_CHARS: usize = 40;

/// Which identifier an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentKind {
    /// A unified social credit code.
    Uscc,
    /// A resident ID number.
    IdNumber,
    /// Empty input to [`SubjectId::parse`], which cannot say which of the two it was meant to be.
    Subject,
}

impl fmt::Display for IdentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentKind::Uscc => "uscc",
            IdentKind::IdNumber => "id number",
            IdentKind::Subject => "subject id",
        })
    }
}

/// Why an identifier was rejected. `input` is the input as the message shows it: masked when it
/// could be an ID number, cut to 40 characters when longer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("{kind} is empty")]
    Empty { kind: IdentKind },
    #[error("{kind} {input:?}: whitespace at position {position} is not allowed")]
    Whitespace {
        kind: IdentKind,
        input: String,
        /// 1-based, in characters.
        position: usize,
    },
    #[error("{kind} {input:?}: {found} characters, expected 18")]
    Length {
        kind: IdentKind,
        input: String,
        found: usize,
    },
    #[error(
        "{kind} {input:?}: character {found:?} at position {position} is not allowed ({allowed})"
    )]
    Character {
        kind: IdentKind,
        input: String,
        found: char,
        /// 1-based, in characters.
        position: usize,
        /// What the position holds and which characters it takes.
        allowed: &'static str,
    },
    /// `found` is normalised to uppercase.
    #[error("{kind} {input:?}: check character is {found}, expected {expected}")]
    CheckChar {
        kind: IdentKind,
        input: String,
        found: char,
        expected: char,
    },
    // The digits are not shown: they are the masked part of the number.
    #[error(
        "id number {input:?}: positions 7-14 are not a birth date (YYYYMMDD, a calendar date in 1800-2099)"
    )]
    BirthDate { input: String },
    #[error(
        "uscc {input:?}: passes its check character, so it does not belong in the legacy allow-list"
    )]
    NotLegacy { input: String },
}

/// A unified social credit code that has the GB 32100 shape and, unless admitted by a
/// [`LegacyAllowList`], a correct check character. Stored uppercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uscc(String);

impl Uscc {
    /// The normalised (uppercase) code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form for messages: the code, masked when it is also shaped like an ID number (see
    /// [`SubjectId::masked`]).
    pub fn masked(&self) -> String {
        if id_shaped(&self.0) {
            mask_id_number(&self.0)
        } else {
            self.0.clone()
        }
    }

    /// Positions 3-8, the division code, as an error may show it beside [`Uscc::masked`]: whole,
    /// unless the code is shaped like an ID number, where positions 5-8 are masked as they are
    /// there (they would be part of the division and the birth year).
    pub fn division_code_masked(&self) -> String {
        if id_shaped(&self.0) {
            format!("{}****", &self.division_code()[..2])
        } else {
            self.division_code().to_owned()
        }
    }

    /// Position 1: the registration authority (登记管理部门) code, e.g. `9` for market regulation.
    pub fn registration_authority(&self) -> char {
        char::from(self.0.as_bytes()[0])
    }

    /// Position 2: the organisation type (机构类别) code within the registration authority.
    pub fn organisation_type(&self) -> char {
        char::from(self.0.as_bytes()[1])
    }

    /// Positions 3-8: the administrative division code of the registering office.
    pub fn division_code(&self) -> &str {
        &self.0[2..8]
    }

    /// Positions 9-17: the organisation code (主体标识码).
    pub fn organisation_code(&self) -> &str {
        &self.0[8..17]
    }
}

impl fmt::Display for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Uscc {
    type Err = IdentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_uscc(s)
    }
}

/// A resident ID number with a valid birth date and check character. Stored with an uppercase
/// `X`. `Debug` and `Display` show the masked form; [`IdNumber::as_str`] gives the full number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdNumber(String);

impl IdNumber {
    /// The full normalised number. Only for exact lookups and storage keys, never for display.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with positions 5-14 replaced by `*`, e.g. `4301**********123X`.
    pub fn masked(&self) -> String {
        mask_id_number(&self.0)
    }

    /// Positions 1-6: the administrative division code where the number was issued.
    pub fn division_code(&self) -> &str {
        &self.0[..6]
    }

    /// Positions 7-14.
    pub fn birth_date(&self) -> Date {
        birth_date_of(&self.0).expect("the birth date of an IdNumber is checked when it is parsed")
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdNumber").field(&self.masked()).finish()
    }
}

impl fmt::Display for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl FromStr for IdNumber {
    type Err = IdentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_id_number(s)
    }
}

/// Parses a USCC, requiring a correct check character.
pub fn parse_uscc(s: &str) -> Result<Uscc, IdentError> {
    parse_uscc_allowing(s, &LegacyAllowList::empty()).map(|(uscc, _)| uscc)
}

/// Parses a USCC. `Ok((uscc, legacy))`: `legacy` is true when only the allow-list admitted it
/// (its check character is wrong). Shape errors (length, characters) are never allowed.
pub fn parse_uscc_allowing(s: &str, allow: &LegacyAllowList) -> Result<(Uscc, bool), IdentError> {
    let code = uscc_shape(s)?;
    let (found, expected) = uscc_check_pair(&code);
    if found == expected {
        Ok((Uscc(code), false))
    } else if allow.contains(&code) {
        Ok((Uscc(code), true))
    } else {
        Err(IdentError::CheckChar {
            kind: IdentKind::Uscc,
            input: shown(s, may_be_id_number(s)),
            found,
            expected,
        })
    }
}

/// Parses a resident ID number: 17 digits and a check character, positions 7-14 a birth date.
pub fn parse_id_number(s: &str) -> Result<IdNumber, IdentError> {
    let kind = IdentKind::IdNumber;
    let input = || shown(s, true);
    common_shape(s, kind, input)?;
    let mut id = String::with_capacity(IDENT_LEN);
    for (i, c) in s.chars().enumerate() {
        let position = i + 1;
        let upper = c.to_ascii_uppercase();
        if !(upper.is_ascii_digit() || (position == IDENT_LEN && upper == 'X')) {
            return Err(IdentError::Character {
                kind,
                input: input(),
                found: c,
                position,
                allowed: id_allowed(position),
            });
        }
        id.push(upper);
    }
    // Before the checksum: a date that is not a date says which part is wrong, and tells a
    // numeric USCC from an ID number (see the module docs).
    if birth_date_of(&id).is_none() {
        return Err(IdentError::BirthDate { input: input() });
    }
    let bytes = id.as_bytes();
    let expected = id_check_of(&bytes[..17]).expect("17 digits were checked above");
    let found = char::from(bytes[17]);
    if found != expected {
        return Err(IdentError::CheckChar {
            kind,
            input: input(),
            found,
            expected,
        });
    }
    Ok(IdNumber(id))
}

/// The USCC check character for the first 17 characters, which must be in [`USCC_CHARSET`]
/// (lowercase accepted). `None` if there are not exactly 17 such characters.
pub fn uscc_check_char(first17: &str) -> Option<char> {
    uscc_check_of(first17.as_bytes())
}

/// The ID number check character for the first 17 characters, which must be ASCII digits.
/// `None` if there are not exactly 17 digits.
pub fn id_check_char(first17: &str) -> Option<char> {
    id_check_of(first17.as_bytes())
}

/// Masks an ID number for display: 18 characters keep the first and last 4
/// (`430102199001011234` → `4301**********1234`); any other length keeps only the last 4.
/// Works on characters, not bytes, so it is safe on any input.
pub fn mask_id_number(s: &str) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            let visible = if n == IDENT_LEN {
                !(4..IDENT_LEN - 4).contains(&i)
            } else {
                i + 4 >= n
            };
            if visible { c } else { '*' }
        })
        .collect()
}

/// Early-pilot USCCs that were issued with a wrong check character and are still in use,
/// listed explicitly in config. Codes are stored uppercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyAllowList {
    codes: BTreeSet<String>,
}

impl LegacyAllowList {
    /// Builds the list. Each code must have the USCC shape (length, character set, digits in the
    /// division code) and must fail its checksum: a code that passes does not need the list, so
    /// listing it is a mistake in the config. Duplicates are merged.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(codes: I) -> Result<Self, IdentError> {
        let mut set = BTreeSet::new();
        for code in codes {
            let code = code.as_ref();
            let normalised = uscc_shape(code)?;
            let (found, expected) = uscc_check_pair(&normalised);
            if found == expected {
                return Err(IdentError::NotLegacy {
                    input: shown(code, may_be_id_number(code)),
                });
            }
            set.insert(normalised);
        }
        Ok(Self { codes: set })
    }

    /// The list that admits nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Whether the code is listed; case-insensitive.
    pub fn contains(&self, code: &str) -> bool {
        !self.codes.is_empty()
            && code.len() == IDENT_LEN
            && self.codes.contains(&code.to_ascii_uppercase())
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The listed codes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.codes.iter().map(String::as_str)
    }
}

/// The key a lookup asks the subject index for: `s` normalised (uppercase) when it has the shape
/// of a USCC or a resident ID number. The check character is deliberately not verified: a lookup
/// answers with what the view holds, and whether a code passes its checksum (or is on the
/// consortium's legacy allow-list) is a question about records, decided when they are validated,
/// never a reason to refuse the question. The error describes a shape that neither identifier
/// has.
pub fn lookup_key(s: &str) -> Result<String, IdentError> {
    match SubjectId::parse(s, &LegacyAllowList::empty()) {
        Ok(id) => Ok(id.as_str().to_owned()),
        Err(e) => uscc_shape(s).map_err(|_| e),
    }
}

/// A lookup key as responses show it: masked when it may be a resident ID number (17 digits
/// first).
pub fn masked_key(key: &str) -> String {
    let id_shaped = key.len() == IDENT_LEN
        && key.as_bytes()[..IDENT_LEN - 1]
            .iter()
            .all(u8::is_ascii_digit);
    if id_shaped {
        mask_id_number(key)
    } else {
        key.to_owned()
    }
}

/// The identifier of a record's subject: a USCC for organisations and individual businesses,
/// an ID number for natural persons. The index key of the subject index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectId {
    Uscc(Uscc),
    IdNumber(IdNumber),
}

impl SubjectId {
    /// Parses input that may be either identifier; see the module docs for how the two are told
    /// apart and which error is reported when neither fits.
    pub fn parse(s: &str, allow: &LegacyAllowList) -> Result<Self, IdentError> {
        Self::parse_flagged(s, allow).map(|(id, _)| id)
    }

    /// As [`SubjectId::parse`], also saying whether only the legacy allow-list admitted it.
    pub fn parse_flagged(s: &str, allow: &LegacyAllowList) -> Result<(Self, bool), IdentError> {
        let as_uscc =
            |s: &str| parse_uscc_allowing(s, allow).map(|(u, legacy)| (Self::Uscc(u), legacy));
        let as_id = |s: &str| parse_id_number(s).map(|id| (Self::IdNumber(id), false));
        if s.is_empty() {
            return Err(IdentError::Empty {
                kind: IdentKind::Subject,
            });
        }
        if allow.contains(s) {
            return as_uscc(s);
        }
        let digit_prefix =
            s.len() == IDENT_LEN && s.as_bytes()[..IDENT_LEN - 1].iter().all(u8::is_ascii_digit);
        if digit_prefix {
            let id_err = match as_id(s) {
                Ok(found) => return Ok(found),
                Err(e) => e,
            };
            let uscc_err = match as_uscc(s) {
                Ok(found) => return Ok(found),
                Err(e) => e,
            };
            let reached_check = |e: &IdentError| matches!(e, IdentError::CheckChar { .. });
            return Err(if reached_check(&id_err) || !reached_check(&uscc_err) {
                id_err
            } else {
                uscc_err
            });
        }
        if may_be_id_number(s) {
            // Not 17 digits first, so no ID number; but a USCC can be digits and X.
            as_id(s).or_else(|id_err| as_uscc(s).map_err(|_| id_err))
        } else {
            as_uscc(s)
        }
    }

    /// The full normalised form: the index key. Never for display.
    pub fn as_str(&self) -> &str {
        match self {
            SubjectId::Uscc(u) => u.as_str(),
            SubjectId::IdNumber(id) => id.as_str(),
        }
    }

    /// The form for display: a USCC unchanged (organisations' codes are public), an ID number
    /// masked. Exception: a USCC that is also shaped like an ID number (17 digits with a birth
    /// date in positions 7-14, then a digit or X) is masked too, since the same string may be an
    /// ID number with one mistyped digit that happened to pass the USCC check (1 in 31 of them).
    pub fn masked(&self) -> String {
        match self {
            SubjectId::Uscc(u) => u.masked(),
            SubjectId::IdNumber(id) => id.masked(),
        }
    }
}

/// The masked form ([`SubjectId::masked`]), so that logging a subject never leaks an ID number.
impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl From<Uscc> for SubjectId {
    fn from(u: Uscc) -> Self {
        SubjectId::Uscc(u)
    }
}

impl From<IdNumber> for SubjectId {
    fn from(id: IdNumber) -> Self {
        SubjectId::IdNumber(id)
    }
}

/// Empty, whitespace and length: the checks both identifiers share, in the order that gives the
/// clearest message (a stray space would otherwise be reported as a wrong length).
fn common_shape(s: &str, kind: IdentKind, input: impl Fn() -> String) -> Result<(), IdentError> {
    if s.is_empty() {
        return Err(IdentError::Empty { kind });
    }
    if let Some(i) = s.chars().position(char::is_whitespace) {
        return Err(IdentError::Whitespace {
            kind,
            input: input(),
            position: i + 1,
        });
    }
    let found = s.chars().count();
    if found != IDENT_LEN {
        return Err(IdentError::Length {
            kind,
            input: input(),
            found,
        });
    }
    Ok(())
}

/// Checks the USCC shape and returns the code uppercased; the check character is not verified.
fn uscc_shape(s: &str) -> Result<String, IdentError> {
    let kind = IdentKind::Uscc;
    let input = || shown(s, may_be_id_number(s));
    common_shape(s, kind, input)?;
    let mut code = String::with_capacity(IDENT_LEN);
    for (i, c) in s.chars().enumerate() {
        let position = i + 1;
        let upper = c.to_ascii_uppercase();
        let ok = if (3..=8).contains(&position) {
            upper.is_ascii_digit()
        } else {
            upper.is_ascii() && uscc_value(upper as u8).is_some()
        };
        if !ok {
            return Err(IdentError::Character {
                kind,
                input: input(),
                found: c,
                position,
                allowed: uscc_allowed(position),
            });
        }
        code.push(upper);
    }
    Ok(code)
}

/// (found, expected) check characters of a code that passed [`uscc_shape`].
fn uscc_check_pair(code: &str) -> (char, char) {
    let bytes = code.as_bytes();
    let expected = uscc_check_of(&bytes[..17]).expect("uscc_shape checked the character set");
    (char::from(bytes[17]), expected)
}

fn uscc_value(b: u8) -> Option<u32> {
    USCC_CHARSET.bytes().position(|c| c == b).map(|v| v as u32)
}

fn uscc_check_of(first17: &[u8]) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (&b, w) in first17.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(b.to_ascii_uppercase())? * w;
    }
    Some(char::from(
        USCC_CHARSET.as_bytes()[((31 - sum % 31) % 31) as usize],
    ))
}

fn id_check_of(first17: &[u8]) -> Option<char> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(char::from(ID_CHECK_CHARS[(sum % 11) as usize]))
}

/// The birth date of a normalised ID number (17 digits and a check character).
fn birth_date_of(id: &str) -> Option<Date> {
    let digits = id.get(6..14)?;
    let year: i32 = digits[..4].parse().ok()?;
    let month: u32 = digits[4..6].parse().ok()?;
    let day: u32 = digits[6..].parse().ok()?;
    if !BIRTH_YEARS.contains(&year) {
        return None;
    }
    Date::from_ymd_opt(year, month, day)
}

fn uscc_allowed(position: usize) -> &'static str {
    match position {
        1 => "registration authority code: 0-9 or A-Z except I, O, S, V, Z",
        2 => "organisation type: 0-9 or A-Z except I, O, S, V, Z",
        3..=8 => "division code: digits only",
        9..=17 => "organisation code: 0-9 or A-Z except I, O, S, V, Z",
        _ => "check character: 0-9 or A-Z except I, O, S, V, Z",
    }
}

fn id_allowed(position: usize) -> &'static str {
    match position {
        1..=6 => "division code: digits only",
        7..=14 => "birth date: digits only",
        15..=17 => "sequence code: digits only",
        _ => "check character: a digit or X",
    }
}

/// Whether a normalised code has an ID number's shape and birth date, whatever its check character.
fn id_shaped(code: &str) -> bool {
    let bytes = code.as_bytes();
    bytes.len() == IDENT_LEN
        && bytes[..17].iter().all(u8::is_ascii_digit)
        && (bytes[17].is_ascii_digit() || bytes[17] == b'X')
        && birth_date_of(code).is_some()
}

/// `s` as an error about a field that holds no identifier (a date, a category code) shows it:
/// masked ([`mask_id_number`]) when it could be an ID number pasted into the wrong field —
/// numeric, and at least as long as the old 15-digit number, so that a date typed without
/// dashes (`20260501`) is still shown as typed.
pub fn masked_if_id_like(s: &str) -> String {
    if may_be_id_number(s) && s.chars().count() >= 15 {
        mask_id_number(s)
    } else {
        s.to_owned()
    }
}

/// Whether `s` could be an ID number, for deciding what to mask: nothing but digits (any
/// script, since full-width digits are a common paste error), whitespace and X.
fn may_be_id_number(s: &str) -> bool {
    s.chars().any(char::is_numeric)
        && s.chars()
            .all(|c| c.is_numeric() || c.is_whitespace() || matches!(c, 'x' | 'X' | 'ｘ' | 'Ｘ'))
}

/// The input as an error message shows it.
fn shown(s: &str, mask: bool) -> String {
    let n = s.chars().count();
    if n <= SHOWN_MAX_CHARS {
        return if mask {
            mask_id_number(s)
        } else {
            s.to_owned()
        };
    }
    let mut out = if mask {
        "*".repeat(SHOWN_MAX_CHARS)
    } else {
        s.chars().take(SHOWN_MAX_CHARS).collect()
    };
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};
    use proptest::prelude::*;

    fn check_uscc(input: &str, expect: Expect) {
        let actual = match parse_uscc(input) {
            Ok(u) => format!("ok {u} division {}", u.division_code()),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&actual);
    }

    fn check_id(input: &str, expect: Expect) {
        let actual = match parse_id_number(input) {
            Ok(id) => format!(
                "ok {} masked {} division {} born {}",
                id.as_str(),
                id.masked(),
                id.division_code(),
                crate::date::format_date(id.birth_date())
            ),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&actual);
    }

    fn check_subject(input: &str, allow: &LegacyAllowList, expect: Expect) {
        let actual = match SubjectId::parse_flagged(input, allow) {
            Ok((id @ SubjectId::Uscc(_), legacy)) => {
                format!("uscc {id} key {} legacy={legacy}", id.as_str())
            }
            Ok((id @ SubjectId::IdNumber(_), _)) => format!("id {id} key {}", id.as_str()),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&actual);
    }

    fn check_allow_list(codes: &[&str], expect: Expect) {
        let actual = match LegacyAllowList::new(codes) {
            Ok(list) => format!("ok {:?}", list.iter().collect::<Vec<_>>()),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn weights_and_charset_follow_the_standards() {
        let uscc: Vec<u32> = (0..17).map(|i| 3u32.pow(i) % 31).collect();
        assert_eq!(uscc, USCC_WEIGHTS);
        let id: Vec<u32> = (1..=17).map(|i| 2u32.pow(18 - i) % 11).collect();
        assert_eq!(id, ID_WEIGHTS);
        let letters: String = ('A'..='Z').filter(|c| !"IOSVZ".contains(*c)).collect();
        assert_eq!(USCC_CHARSET, format!("0123456789{letters}"));
        assert_eq!(USCC_CHARSET.len(), 31);
    }

    #[test]
    fn uscc_published_codes_and_errors() {
        // Published codes: the widely cited example, PetroChina, Huawei, Tencent, Alibaba, ICBC.
        check_uscc(
            "91350100M000100Y43",
            expect!["ok 91350100M000100Y43 division 350100"],
        );
        check_uscc(
            "91110000710925462X",
            expect!["ok 91110000710925462X division 110000"],
        );
        check_uscc(
            "914403001922038216",
            expect!["ok 914403001922038216 division 440300"],
        );
        check_uscc(
            "91440300708461136T",
            expect!["ok 91440300708461136T division 440300"],
        );
        check_uscc(
            "91330100799655058B",
            expect!["ok 91330100799655058B division 330100"],
        );
        check_uscc(
            "91100000100003962T",
            expect!["ok 91100000100003962T division 100000"],
        );
        check_uscc(
            "91350100m000100y43",
            expect!["ok 91350100M000100Y43 division 350100"],
        );
        // Σ mod 31 == 0 gives check character '0', not '31'.
        check_uscc(
            "91350100M000100Y30",
            expect!["ok 91350100M000100Y30 division 350100"],
        );
        check_uscc(
            "91430100MA4L00003X",
            expect![[r#"err uscc "91430100MA4L00003X": check character is X, expected Q"#]],
        );
        check_uscc(
            "91430100ma4l00003x",
            expect![[r#"err uscc "91430100ma4l00003x": check character is X, expected Q"#]],
        );
        check_uscc(
            "91350100M000100Y4",
            expect![[r#"err uscc "91350100M000100Y4": 17 characters, expected 18"#]],
        );
        check_uscc(
            "91350100M000100Y433",
            expect![[r#"err uscc "91350100M000100Y433": 19 characters, expected 18"#]],
        );
        check_uscc("", expect!["err uscc is empty"]);
        check_uscc(
            " 91350100M000100Y43",
            expect![[r#"err uscc " 91350100M000100Y43": whitespace at position 1 is not allowed"#]],
        );
        check_uscc(
            "91350100M000100Y43 ",
            expect![[
                r#"err uscc "91350100M000100Y43 ": whitespace at position 19 is not allowed"#
            ]],
        );
        check_uscc(
            "91350100M000100Y43\n",
            expect![[
                r#"err uscc "91350100M000100Y43\n": whitespace at position 19 is not allowed"#
            ]],
        );
        check_uscc(
            "9135010 M000100Y43",
            expect![[r#"err uscc "9135010 M000100Y43": whitespace at position 8 is not allowed"#]],
        );
        check_uscc(
            "9135\u{3000}0100M000100Y4",
            expect![[
                r#"err uscc "9135\u{3000}0100M000100Y4": whitespace at position 5 is not allowed"#
            ]],
        );
        check_uscc(
            "9143010OMA4L0000XX",
            expect![[
                r#"err uscc "9143010OMA4L0000XX": character 'O' at position 8 is not allowed (division code: digits only)"#
            ]],
        );
        check_uscc(
            "91A50100M000100Y43",
            expect![[
                r#"err uscc "91A50100M000100Y43": character 'A' at position 3 is not allowed (division code: digits only)"#
            ]],
        );
        check_uscc(
            "I1350100M000100Y43",
            expect![[
                r#"err uscc "I1350100M000100Y43": character 'I' at position 1 is not allowed (registration authority code: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        check_uscc(
            "9O350100M000100Y43",
            expect![[
                r#"err uscc "9O350100M000100Y43": character 'O' at position 2 is not allowed (organisation type: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        check_uscc(
            "91350100S000100Y43",
            expect![[
                r#"err uscc "91350100S000100Y43": character 'S' at position 9 is not allowed (organisation code: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        check_uscc(
            "91350100M000100V43",
            expect![[
                r#"err uscc "91350100M000100V43": character 'V' at position 16 is not allowed (organisation code: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        check_uscc(
            "91350100M000100Y4Z",
            expect![[
                r#"err uscc "91350100M000100Y4Z": character 'Z' at position 18 is not allowed (check character: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        check_uscc(
            "91350100i000100Y43",
            expect![[
                r#"err uscc "91350100i000100Y43": character 'i' at position 9 is not allowed (organisation code: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        check_uscc(
            "91350100M000100Y4-",
            expect![[
                r#"err uscc "91350100M000100Y4-": character '-' at position 18 is not allowed (check character: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        check_uscc(
            "９１350100M000100Y43",
            expect![[
                r#"err uscc "９１350100M000100Y43": character '９' at position 1 is not allowed (registration authority code: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        check_uscc(
            "91350100M\u{200b}00100Y43",
            expect![[
                r#"err uscc "91350100M\u{200b}00100Y43": character '\u{200b}' at position 10 is not allowed (organisation code: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        // Input that could be an ID number is masked even in USCC errors.
        check_uscc(
            "９１１１００００７１０９２５４６２Ｘ",
            expect![[
                r#"err uscc "９１１１**********４６２Ｘ": character '９' at position 1 is not allowed (registration authority code: 0-9 or A-Z except I, O, S, V, Z)"#
            ]],
        );
        check_uscc(
            "430102199001011234",
            expect![[r#"err uscc "4301**********1234": check character is 4, expected K"#]],
        );
        check_uscc(
            &"9".repeat(50),
            expect![[
                r#"err uscc "****************************************…": 50 characters, expected 18"#
            ]],
        );
        check_uscc(
            &"A".repeat(50),
            expect![[
                r#"err uscc "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA…": 50 characters, expected 18"#
            ]],
        );
    }

    #[test]
    fn uscc_parts() {
        let u = parse_uscc("91350100M000100Y43").unwrap();
        let parts = format!(
            "{} {} {} {}",
            u.registration_authority(),
            u.organisation_type(),
            u.division_code(),
            u.organisation_code()
        );
        expect!["9 1 350100 M000100Y4"].assert_eq(&parts);
        assert_eq!("91350100m000100y43".parse::<Uscc>(), Ok(u));
    }

    #[test]
    fn id_number_standard_example_and_errors() {
        // The GB 11643-1999 example.
        check_id(
            "11010519491231002X",
            expect![
                "ok 11010519491231002X masked 1101**********002X division 110105 born 1949-12-31"
            ],
        );
        check_id(
            "11010519491231002x",
            expect![
                "ok 11010519491231002X masked 1101**********002X division 110105 born 1949-12-31"
            ],
        );
        // Σ mod 11 == 1 gives check character '0'.
        check_id(
            "110105194912310070",
            expect![
                "ok 110105194912310070 masked 1101**********0070 division 110105 born 1949-12-31"
            ],
        );
        check_id(
            "110105200002290013",
            expect![
                "ok 110105200002290013 masked 1101**********0013 division 110105 born 2000-02-29"
            ],
        );
        check_id(
            "110105200402290012",
            expect![
                "ok 110105200402290012 masked 1101**********0012 division 110105 born 2004-02-29"
            ],
        );
        check_id(
            "110105190002290017",
            expect![[
                r#"err id number "1101**********0017": positions 7-14 are not a birth date (YYYYMMDD, a calendar date in 1800-2099)"#
            ]],
        );
        check_id(
            "110105202302290014",
            expect![[
                r#"err id number "1101**********0014": positions 7-14 are not a birth date (YYYYMMDD, a calendar date in 1800-2099)"#
            ]],
        );
        check_id(
            "110105194913310020",
            expect![[
                r#"err id number "1101**********0020": positions 7-14 are not a birth date (YYYYMMDD, a calendar date in 1800-2099)"#
            ]],
        );
        check_id(
            "110105194912320029",
            expect![[
                r#"err id number "1101**********0029": positions 7-14 are not a birth date (YYYYMMDD, a calendar date in 1800-2099)"#
            ]],
        );
        check_id(
            "110105194900010029",
            expect![[
                r#"err id number "1101**********0029": positions 7-14 are not a birth date (YYYYMMDD, a calendar date in 1800-2099)"#
            ]],
        );
        check_id(
            "110105179912310029",
            expect![[
                r#"err id number "1101**********0029": positions 7-14 are not a birth date (YYYYMMDD, a calendar date in 1800-2099)"#
            ]],
        );
        check_id(
            "110105210001010010",
            expect![[
                r#"err id number "1101**********0010": positions 7-14 are not a birth date (YYYYMMDD, a calendar date in 1800-2099)"#
            ]],
        );
        check_id(
            "430102199001011234",
            expect![[r#"err id number "4301**********1234": check character is 4, expected 8"#]],
        );
        check_id(
            "43010219900101123",
            expect![[r#"err id number "*************1123": 17 characters, expected 18"#]],
        );
        check_id(
            "4301021990010112345",
            expect![[r#"err id number "***************2345": 19 characters, expected 18"#]],
        );
        check_id("", expect!["err id number is empty"]);
        check_id(
            " 11010519491231002X",
            expect![[
                r#"err id number "***************002X": whitespace at position 1 is not allowed"#
            ]],
        );
        check_id(
            "110105 19491231002X",
            expect![[
                r#"err id number "***************002X": whitespace at position 7 is not allowed"#
            ]],
        );
        check_id(
            "11010519491231002Y",
            expect![[
                r#"err id number "1101**********002Y": character 'Y' at position 18 is not allowed (check character: a digit or X)"#
            ]],
        );
        check_id(
            "1101051949123100X2",
            expect![[
                r#"err id number "1101**********00X2": character 'X' at position 17 is not allowed (sequence code: digits only)"#
            ]],
        );
        check_id(
            "11010A19491231002X",
            expect![[
                r#"err id number "1101**********002X": character 'A' at position 6 is not allowed (division code: digits only)"#
            ]],
        );
        check_id(
            "1101051949A231002X",
            expect![[
                r#"err id number "1101**********002X": character 'A' at position 11 is not allowed (birth date: digits only)"#
            ]],
        );
        check_id(
            "１1010519491231002X",
            expect![[
                r#"err id number "１101**********002X": character '１' at position 1 is not allowed (division code: digits only)"#
            ]],
        );
        check_id(
            "１１０１０５１９４９１２３１００２Ｘ",
            expect![[
                r#"err id number "１１０１**********００２Ｘ": character '１' at position 1 is not allowed (division code: digits only)"#
            ]],
        );
        check_id(
            &"1".repeat(50),
            expect![[
                r#"err id number "****************************************…": 50 characters, expected 18"#
            ]],
        );
    }

    #[test]
    fn id_number_debug_and_display_are_masked() {
        let id: IdNumber = "11010519491231002x".parse().unwrap();
        let subject = SubjectId::from(id.clone());
        let actual = [
            format!("{id}"),
            format!("{id:?}"),
            format!("{subject}"),
            format!("{subject:?}"),
        ]
        .join("\n");
        expect![[r#"
            1101**********002X
            IdNumber("1101**********002X")
            1101**********002X
            IdNumber(IdNumber("1101**********002X"))"#]]
        .assert_eq(&actual);
    }

    #[test]
    fn masking() {
        let actual = [
            "430102199001011234",
            "43010219900101123X",
            "43010219900101123",
            "4301021990010112345",
            "12345",
            "1234",
            "",
            "４３０１０２１９９００１０１１２３４",
        ]
        .map(|s| format!("{s:?} -> {:?}", mask_id_number(s)))
        .join("\n");
        expect![[r#"
            "430102199001011234" -> "4301**********1234"
            "43010219900101123X" -> "4301**********123X"
            "43010219900101123" -> "*************1123"
            "4301021990010112345" -> "***************2345"
            "12345" -> "*2345"
            "1234" -> "1234"
            "" -> ""
            "４３０１０２１９９００１０１１２３４" -> "４３０１**********１２３４""#]]
        .assert_eq(&actual);
    }

    #[test]
    fn check_char_functions() {
        let actual = [
            "91350100M000100Y4",
            "91350100m000100y4",
            "91350100M000100Y",
            "91350100M000100Y43",
            "91350100O000100Y4",
            "11010519491231002",
            "1101051949123100",
            "1101051949123100X",
        ]
        .map(|s| {
            format!(
                "{s:?} uscc {:?} id {:?}",
                uscc_check_char(s),
                id_check_char(s)
            )
        })
        .join("\n");
        expect![[r#"
            "91350100M000100Y4" uscc Some('3') id None
            "91350100m000100y4" uscc Some('3') id None
            "91350100M000100Y" uscc None id None
            "91350100M000100Y43" uscc None id None
            "91350100O000100Y4" uscc None id None
            "11010519491231002" uscc Some('B') id Some('X')
            "1101051949123100" uscc None id None
            "1101051949123100X" uscc Some('Y') id None"#]]
        .assert_eq(&actual);
    }

    #[test]
    fn subject_id_tells_the_two_apart() {
        let none = LegacyAllowList::empty();
        check_subject(
            "91350100M000100Y43",
            &none,
            expect!["uscc 91350100M000100Y43 key 91350100M000100Y43 legacy=false"],
        );
        check_subject(
            "11010519491231002X",
            &none,
            expect!["id 1101**********002X key 11010519491231002X"],
        );
        check_subject(
            "11010519491231002x",
            &none,
            expect!["id 1101**********002X key 11010519491231002X"],
        );
        // Numeric USCCs: positions 7-14 are no birth date, so they are not ID numbers.
        check_subject(
            "91110000710925462X",
            &none,
            expect!["uscc 91110000710925462X key 91110000710925462X legacy=false"],
        );
        check_subject(
            "914403001922038216",
            &none,
            expect!["uscc 914403001922038216 key 914403001922038216 legacy=false"],
        );
        // Valid as both: taken as an ID number.
        check_subject(
            "11010519491231037X",
            &none,
            expect!["id 1101**********037X key 11010519491231037X"],
        );
        // Both fail. The ID number reached its check character: its error.
        check_subject(
            "430102199001011234",
            &none,
            expect![[r#"err id number "4301**********1234": check character is 4, expected 8"#]],
        );
        // Not a birth date but the USCC reached its check character: the USCC's error, masked.
        check_subject(
            "91110000710925463X",
            &none,
            expect![[r#"err uscc "9111**********463X": check character is X, expected 1"#]],
        );
        // Position 18 rules out an ID number.
        check_subject(
            "91110000710925462Y",
            &none,
            expect![[r#"err uscc "91110000710925462Y": check character is Y, expected X"#]],
        );
        // Both fail on shape: the ID number's error.
        check_subject(
            "43010219900101123Z",
            &none,
            expect![[
                r#"err id number "4301**********123Z": character 'Z' at position 18 is not allowed (check character: a digit or X)"#
            ]],
        );
        check_subject("", &none, expect!["err subject id is empty"]);
        check_subject(
            "abc",
            &none,
            expect![[r#"err uscc "abc": 3 characters, expected 18"#]],
        );
        check_subject(
            "43010219900101123",
            &none,
            expect![[r#"err id number "*************1123": 17 characters, expected 18"#]],
        );
        check_subject(
            " 11010519491231002X",
            &none,
            expect![[
                r#"err id number "***************002X": whitespace at position 1 is not allowed"#
            ]],
        );
        check_subject(
            "91350100M000100Y4 ",
            &none,
            expect![[r#"err uscc "91350100M000100Y4 ": whitespace at position 18 is not allowed"#]],
        );
        check_subject(
            "１1010519491231002X",
            &none,
            expect![[
                r#"err id number "１101**********002X": character '１' at position 1 is not allowed (division code: digits only)"#
            ]],
        );
        check_subject(
            "91430100MA4L00003X",
            &none,
            expect![[r#"err uscc "91430100MA4L00003X": check character is X, expected Q"#]],
        );
    }

    /// Found by the `ident` fuzz target: a valid USCC made only of digits and X, but not 17
    /// digits first, looked numeric and was refused as an ID number. Check characters computed
    /// by hand (GB 32100 MOD 31-3).
    #[test]
    fn subject_id_takes_a_valid_uscc_of_digits_and_x() {
        let none = LegacyAllowList::empty();
        // Organisation code 10000042X (its own check character X), then check character 5.
        check_subject(
            "9111010810000042X5",
            &none,
            expect!["uscc 9111010810000042X5 key 9111010810000042X5 legacy=false"],
        );
        // The fuzzer's: X at position 1.
        check_subject(
            "X10105004113030000",
            &none,
            expect!["uscc X10105004113030000 key X10105004113030000 legacy=false"],
        );
        // With a wrong check character it is still the ID number's error, as before.
        check_subject(
            "9111010810000042X6",
            &none,
            expect![[
                r#"err id number "9111**********42X6": character 'X' at position 17 is not allowed (sequence code: digits only)"#
            ]],
        );
    }

    #[test]
    fn subject_id_mistyped_id_number_passing_as_uscc_is_masked() {
        let none = LegacyAllowList::empty();
        // A valid ID number, then the same with position 12 mistyped (4 for 8), which happens
        // to pass the USCC check: taken for a USCC, as the rules say, but displayed masked.
        check_subject(
            "582338184408161019",
            &none,
            expect!["id 5823**********1019 key 582338184408161019"],
        );
        check_subject(
            "582338184404161019",
            &none,
            expect!["uscc 5823**********1019 key 582338184404161019 legacy=false"],
        );
        check_subject(
            "763186193311017861",
            &none,
            expect!["id 7631**********7861 key 763186193311017861"],
        );
        check_subject(
            "766186193311017861",
            &none,
            expect!["uscc 7661**********7861 key 766186193311017861 legacy=false"],
        );
    }

    #[test]
    fn subject_id_with_allow_list() {
        // The standard's ID number fails the USCC check (it would need B): listing it says it is
        // a USCC, and that wins over it being a valid ID number.
        let allow = LegacyAllowList::new(["91430100MA4L00003X", "11010519491231002X"]).unwrap();
        check_subject(
            "91430100MA4L00003X",
            &allow,
            expect!["uscc 91430100MA4L00003X key 91430100MA4L00003X legacy=true"],
        );
        check_subject(
            "91430100ma4l00003x",
            &allow,
            expect!["uscc 91430100MA4L00003X key 91430100MA4L00003X legacy=true"],
        );
        check_subject(
            "11010519491231002X",
            &allow,
            expect!["uscc 1101**********002X key 11010519491231002X legacy=true"],
        );
        check_subject(
            "91350100M000100Y43",
            &allow,
            expect!["uscc 91350100M000100Y43 key 91350100M000100Y43 legacy=false"],
        );
        check_subject(
            "91430100MA4L00004X",
            &allow,
            expect![[r#"err uscc "91430100MA4L00004X": check character is X, expected U"#]],
        );
        assert_eq!(
            SubjectId::parse("91430100MA4L00003X", &allow).map(|s| s.to_string()),
            Ok("91430100MA4L00003X".to_owned())
        );
    }

    #[test]
    fn legacy_allow_list() {
        check_allow_list(&[], expect!["ok []"]);
        check_allow_list(
            &[
                "91430100MA4L00003X",
                "91430100ma4l00003x",
                "91430100MA4L00004X",
            ],
            expect![[r#"ok ["91430100MA4L00003X", "91430100MA4L00004X"]"#]],
        );
        check_allow_list(
            &["91430100MA4L00003X", "9143010OMA4L0000XX"],
            expect![[
                r#"err uscc "9143010OMA4L0000XX": character 'O' at position 8 is not allowed (division code: digits only)"#
            ]],
        );
        check_allow_list(
            &["91430100MA4L00003"],
            expect![[r#"err uscc "91430100MA4L00003": 17 characters, expected 18"#]],
        );
        check_allow_list(&[""], expect!["err uscc is empty"]);
        check_allow_list(
            &[" 91430100MA4L00003X"],
            expect![[r#"err uscc " 91430100MA4L00003X": whitespace at position 1 is not allowed"#]],
        );
        check_allow_list(
            &["91350100M000100Y43"],
            expect![[
                r#"err uscc "91350100M000100Y43": passes its check character, so it does not belong in the legacy allow-list"#
            ]],
        );

        let allow = LegacyAllowList::new(["91430100ma4l00003x"]).unwrap();
        assert_eq!((allow.len(), allow.is_empty()), (1, false));
        assert!(allow.contains("91430100MA4L00003X"));
        assert!(allow.contains("91430100ma4l00003X"));
        assert!(!allow.contains("91430100MA4L00004X"));
        assert!(!allow.contains(""));
        let empty = LegacyAllowList::empty();
        assert_eq!((empty.len(), empty.is_empty()), (0, true));

        let outcome = |s: &str| match parse_uscc_allowing(s, &allow) {
            Ok((u, legacy)) => format!("ok {u} legacy={legacy}"),
            Err(e) => format!("err {e}"),
        };
        let actual = [
            "91430100MA4L00003X",
            "91430100ma4l00003x",
            "91350100M000100Y43",
            "91430100MA4L00004X",
            " 91430100MA4L00003X",
            "91430100MA4L00003",
        ]
        .map(outcome)
        .join("\n");
        expect![[r#"
            ok 91430100MA4L00003X legacy=true
            ok 91430100MA4L00003X legacy=true
            ok 91350100M000100Y43 legacy=false
            err uscc "91430100MA4L00004X": check character is X, expected U
            err uscc " 91430100MA4L00003X": whitespace at position 1 is not allowed
            err uscc "91430100MA4L00003": 17 characters, expected 18"#]]
        .assert_eq(&actual);
        // Without the list the same code is refused.
        assert!(parse_uscc("91430100MA4L00003X").is_err());
    }

    /// Every single-character substitution, at every position, of a few valid codes is caught.
    /// Why it must hold: a substitution a→b at position i changes Σ by w_i·(b−a); 31 is prime,
    /// w_i = 3^(i−1) is nonzero mod 31 and 0 < |b−a| < 31, so the product is nonzero mod 31. The
    /// check position behaves like weight 1, and distinct characters have distinct values.
    #[test]
    fn uscc_every_single_substitution_is_detected() {
        for code in [
            "91350100M000100Y43",
            "91110000710925462X",
            "91350100M000100Y30",
        ] {
            for position in 0..IDENT_LEN {
                for c in USCC_CHARSET.chars() {
                    let mut chars: Vec<char> = code.chars().collect();
                    if chars[position] == c {
                        continue;
                    }
                    chars[position] = c;
                    let mutated: String = chars.into_iter().collect();
                    assert!(parse_uscc(&mutated).is_err(), "{mutated} accepted");
                }
            }
        }
    }

    const USCC_CLASS: &str = "[0-9A-HJ-NP-RTUWXY]";

    fn regex(pattern: &str) -> impl Strategy<Value = String> + use<> {
        proptest::string::string_regex(pattern).unwrap()
    }

    fn uscc_prefix() -> impl Strategy<Value = String> {
        regex(&format!("{USCC_CLASS}{{2}}[0-9]{{6}}{USCC_CLASS}{{9}}"))
    }

    fn valid_uscc() -> impl Strategy<Value = String> {
        uscc_prefix().prop_map(|p| {
            let check = uscc_check_char(&p).unwrap();
            format!("{p}{check}")
        })
    }

    fn valid_id_number() -> impl Strategy<Value = String> {
        let first = Date::from_ymd_opt(1800, 1, 1).unwrap();
        let last = Date::from_ymd_opt(2099, 12, 31).unwrap();
        let days = (last - first).num_days() as u64;
        ("[0-9]{6}", 0..=days, "[0-9]{3}").prop_map(move |(division, offset, seq)| {
            let born = first.checked_add_days(chrono::Days::new(offset)).unwrap();
            let p = format!("{division}{}{seq}", born.format("%Y%m%d"));
            let check = id_check_char(&p).unwrap();
            format!("{p}{check}")
        })
    }

    fn mutate(s: &str, position: usize, replacement: char) -> String {
        s.chars()
            .enumerate()
            .map(|(i, c)| if i == position { replacement } else { c })
            .collect()
    }

    proptest! {
        #[test]
        fn any_charset_prefix_gets_a_check_char_that_zeroes_the_sum(
            p in regex(&format!("{USCC_CLASS}{{17}}"))
        ) {
            let check = uscc_check_char(&p).unwrap();
            let full = format!("{p}{check}");
            let sum: u32 = full
                .bytes()
                .zip(USCC_WEIGHTS.into_iter().chain([1]))
                .map(|(b, w)| uscc_value(b).unwrap() * w)
                .sum();
            prop_assert_eq!(sum % 31, 0);
            // Parses exactly when the division code is digits.
            let shape_ok = full.as_bytes()[2..8].iter().all(u8::is_ascii_digit);
            prop_assert_eq!(parse_uscc(&full).is_ok(), shape_ok);
        }

        #[test]
        fn valid_uscc_parses_in_either_case(code in valid_uscc(), lower in any::<bool>()) {
            let input = if lower { code.to_ascii_lowercase() } else { code.clone() };
            let u = parse_uscc(&input).unwrap();
            prop_assert_eq!(u.as_str(), code.as_str());
            prop_assert_eq!(u.division_code(), &code[2..8]);
        }

        #[test]
        fn uscc_single_substitution_fails(
            code in valid_uscc(),
            position in 0..IDENT_LEN,
            shift in 1..31usize,
        ) {
            let value = uscc_value(code.as_bytes()[position]).unwrap() as usize;
            let replacement = char::from(USCC_CHARSET.as_bytes()[(value + shift) % 31]);
            let mutated = mutate(&code, position, replacement);
            let shape_ok = !(2..8).contains(&position) || replacement.is_ascii_digit();
            match parse_uscc(&mutated) {
                Err(IdentError::CheckChar { .. }) => prop_assert!(shape_ok),
                Err(IdentError::Character { position: p, .. }) => {
                    prop_assert!(!shape_ok);
                    prop_assert_eq!(p, position + 1);
                }
                other => prop_assert!(false, "{} gave {:?}", mutated, other),
            }
        }

        /// Adjacent transpositions are caught too: swapping a and b at positions i, i+1 changes Σ
        /// by (w_i − w_{i+1})·(a − b), and w_{i+1} = 3·w_i (or 1 for the check position) differs
        /// from w_i mod 31.
        #[test]
        fn uscc_adjacent_transposition_fails(code in valid_uscc(), position in 0..IDENT_LEN - 1) {
            let mut bytes = code.clone().into_bytes();
            if bytes[position] == bytes[position + 1] {
                return Ok(()); // swapping equal characters changes nothing
            }
            bytes.swap(position, position + 1);
            let swapped = String::from_utf8(bytes).unwrap();
            prop_assert!(parse_uscc(&swapped).is_err());
        }

        #[test]
        fn valid_id_number_parses(id in valid_id_number(), lower in any::<bool>()) {
            let input = if lower { id.to_ascii_lowercase() } else { id.clone() };
            let parsed = parse_id_number(&input).unwrap();
            prop_assert_eq!(parsed.as_str(), id.as_str());
            prop_assert_eq!(
                crate::date::format_date(parsed.birth_date()).replace('-', ""),
                &id[6..14]
            );
            let subject = SubjectId::parse(&input, &LegacyAllowList::empty()).unwrap();
            prop_assert_eq!(subject.as_str(), id.as_str());
            prop_assert_eq!(subject.to_string(), mask_id_number(&id));
        }

        /// MOD 11-2: w_i = 2^(18−i) is nonzero mod 11 (prime) and digits differ by 1..9, so a
        /// substituted digit changes Σ mod 11; the check alphabet maps 11 remainders to 11
        /// distinct characters. Changes to positions 7-14 may instead break the birth date.
        /// Either way the message never shows the masked middle.
        #[test]
        fn id_single_substitution_fails_without_leaking(
            id in valid_id_number(),
            position in 0..IDENT_LEN,
            shift in 1..10usize,
        ) {
            let alphabet = if position == IDENT_LEN - 1 { "0123456789X" } else { "0123456789" };
            let current = alphabet.find(char::from(id.as_bytes()[position])).unwrap();
            let replacement = alphabet.as_bytes()[(current + shift) % alphabet.len()];
            let mutated = mutate(&id, position, char::from(replacement));
            let err = parse_id_number(&mutated).unwrap_err();
            prop_assert!(
                matches!(err, IdentError::CheckChar { .. } | IdentError::BirthDate { .. }),
                "{:?}", err
            );
            let message = err.to_string();
            prop_assert!(!message.contains(&mutated[4..14]), "{}", message);
            // SubjectId::parse may take the mutated number for a USCC (1 in 31 pass its check);
            // it is then shown masked unless the mutation broke the birth date, which makes
            // the string no longer an ID number at all.
            let shown = match SubjectId::parse(&mutated, &LegacyAllowList::empty()) {
                Ok(_) if !id_shaped(&mutated) => return Ok(()),
                Ok(subject) => subject.to_string(),
                Err(e) => e.to_string(),
            };
            prop_assert!(!shown.contains(&mutated[4..14]), "{}", shown);
        }

        #[test]
        fn id_adjacent_transposition_fails(id in valid_id_number(), position in 0..IDENT_LEN - 1) {
            let mut bytes = id.clone().into_bytes();
            if bytes[position] == bytes[position + 1] {
                return Ok(()); // swapping equal characters changes nothing
            }
            bytes.swap(position, position + 1);
            let swapped = String::from_utf8(bytes).unwrap();
            prop_assert!(parse_id_number(&swapped).is_err());
        }

        #[test]
        fn mask_keeps_length_and_hides_the_middle(s in "\\PC{0,30}") {
            let masked = mask_id_number(&s);
            let chars: Vec<char> = s.chars().collect();
            let masked_chars: Vec<char> = masked.chars().collect();
            prop_assert_eq!(masked_chars.len(), chars.len());
            for (i, (&m, &c)) in masked_chars.iter().zip(&chars).enumerate() {
                let visible = if chars.len() == IDENT_LEN {
                    !(4..14).contains(&i)
                } else {
                    i + 4 >= chars.len()
                };
                prop_assert_eq!(m, if visible { c } else { '*' });
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_uscc(&s);
            let _ = parse_id_number(&s);
            let _ = SubjectId::parse(&s, &LegacyAllowList::empty());
        }
    }
}
