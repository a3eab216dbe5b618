//! The shared category catalogue (信用信息目录): which credit-information categories exist, which lists
//! and subject kinds each may be used with.
//!
//! The catalogue is data, not an enum: `catalogue.toml` at the crate root is versioned with the
//! repo, compiled into the binary with `include_str!` and parsed once, at first use of
//! [`Catalogue::builtin`]. A node may meet a category code it does not know in an entry relayed
//! from a peer that runs a newer catalogue; [`Catalogue::is_known`] lets the validator show it as
//! "unknown category" instead of rejecting it, which is why codes are never renamed or removed once
//! published.
//!
//! [`Catalogue::parse`] checks the whole file: every category code is dotted lowercase ascii (see
//! [`check_code`]), starts with its field's code, names a declared field, is unique, and lists only
//! known list and subject kinds.

use crate::date::Date;
use crate::pb::{ListKind, SubjectKind};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::LazyLock;

/// The catalogue compiled into this binary.
const BUILTIN_TOML: &str = include_str!("../catalogue.toml");

static BUILTIN: LazyLock<Catalogue> = LazyLock::new(|| {
    // The unit test `builtin_catalogue_parses` guarantees this never fires in a released binary.
    Catalogue::parse(BUILTIN_TOML)
        .unwrap_or_else(|e| panic!("the built-in catalogue.toml is invalid: {e}"))
});

/// Longest category code accepted, in bytes (codes are ascii).
pub const MAX_CODE_LEN: usize = 64;

/// A loaded, checked catalogue.
#[derive(Debug, Clone)]
pub struct Catalogue {
    version: String,
    published: Date,
    fields: Vec<Field>,
    categories: Vec<Category>,
    by_code: HashMap<String, usize>,
}

/// A field (领域) of credit information, e.g. 税务 tax; categories belong to exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
}

/// One credit-information category (信用信息类别).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// Dotted lowercase code, e.g. `tax.major_violation`; starts with `field`.
    pub code: String,
    /// The field's code, e.g. `tax`.
    pub field: String,
    pub name_zh: String,
    pub name_en: String,
    /// The list kinds a record of this category may be published on.
    pub lists: Vec<ListKind>,
    /// The subject kinds a record of this category may be about.
    pub subjects: Vec<SubjectKind>,
}

impl Category {
    /// Whether records of this category may be published on `list`.
    pub fn allows_list(&self, list: ListKind) -> bool {
        self.lists.contains(&list)
    }

    /// Whether records of this category may be about a subject of kind `subject`.
    pub fn allows_subject(&self, subject: SubjectKind) -> bool {
        self.subjects.contains(&subject)
    }
}

/// What is wrong with a catalogue file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("catalogue is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("catalogue version is empty")]
    EmptyVersion,
    #[error(
        "catalogue published date {value} is not a plain calendar date (YYYY-MM-DD without time)"
    )]
    BadPublished { value: String },
    #[error("field code {code:?}: {problem}")]
    BadFieldCode { code: String, problem: String },
    #[error("field {code:?} is declared twice")]
    DuplicateField { code: String },
    #[error("field {code:?}: {which} is empty")]
    EmptyFieldName { code: String, which: &'static str },
    #[error("category code {code:?}: {problem}")]
    BadCode { code: String, problem: String },
    #[error("category {code:?} is declared twice")]
    DuplicateCategory { code: String },
    #[error("category {code:?}: field {field:?} is not declared in the catalogue's [[field]] list")]
    UndeclaredField { code: String, field: String },
    #[error("category {code:?}: code must start with its field followed by a dot, \"{field}.\"")]
    CodeOutsideField { code: String, field: String },
    #[error("category {code:?}: {which} is empty")]
    EmptyName { code: String, which: &'static str },
    #[error("category {code:?}: lists is empty; give at least one of red, black, watch, penalty")]
    NoLists { code: String },
    #[error(
        "category {code:?}: subjects is empty; give at least one of legal_person, individual_business, natural_person"
    )]
    NoSubjects { code: String },
    #[error("category {code:?}: unknown list kind {name:?}; expected red, black, watch or penalty")]
    UnknownList { code: String, name: String },
    #[error(
        "category {code:?}: unknown subject kind {name:?}; expected legal_person, individual_business or natural_person"
    )]
    UnknownSubject { code: String, name: String },
    #[error("category {code:?}: list kind {name:?} is given twice")]
    RepeatedList { code: String, name: String },
    #[error("category {code:?}: subject kind {name:?} is given twice")]
    RepeatedSubject { code: String, name: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    version: String,
    published: toml::value::Datetime,
    #[serde(default)]
    field: Vec<RawField>,
    #[serde(default)]
    category: Vec<RawCategory>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    code: String,
    name_zh: String,
    name_en: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    code: String,
    field: String,
    name_zh: String,
    name_en: String,
    lists: Vec<String>,
    subjects: Vec<String>,
}

impl Catalogue {
    /// The catalogue compiled into this binary (`catalogue.toml`), parsed at first use.
    pub fn builtin() -> &'static Catalogue {
        &BUILTIN
    }

    /// Parses and checks a catalogue file; the first problem found is returned.
    pub fn parse(toml_text: &str) -> Result<Catalogue, CatalogueError> {
        let raw: RawCatalogue = toml::from_str(toml_text)?;
        if raw.version.trim().is_empty() {
            return Err(CatalogueError::EmptyVersion);
        }
        let published = plain_date(&raw.published).ok_or_else(|| CatalogueError::BadPublished {
            value: raw.published.to_string(),
        })?;

        let mut fields: Vec<Field> = Vec::with_capacity(raw.field.len());
        for f in raw.field {
            check_field_code(&f.code).map_err(|problem| CatalogueError::BadFieldCode {
                code: f.code.clone(),
                problem,
            })?;
            if fields.iter().any(|known| known.code == f.code) {
                return Err(CatalogueError::DuplicateField { code: f.code });
            }
            for (which, name) in [("name_zh", &f.name_zh), ("name_en", &f.name_en)] {
                if name.trim().is_empty() {
                    return Err(CatalogueError::EmptyFieldName {
                        code: f.code,
                        which,
                    });
                }
            }
            fields.push(Field {
                code: f.code,
                name_zh: f.name_zh,
                name_en: f.name_en,
            });
        }

        let mut categories = Vec::with_capacity(raw.category.len());
        let mut by_code = HashMap::with_capacity(raw.category.len());
        for c in raw.category {
            let category = check_category(c, &fields)?;
            if by_code.contains_key(&category.code) {
                return Err(CatalogueError::DuplicateCategory {
                    code: category.code,
                });
            }
            by_code.insert(category.code.clone(), categories.len());
            categories.push(category);
        }

        Ok(Catalogue {
            version: raw.version,
            published,
            fields,
            categories,
            by_code,
        })
    }

    /// The catalogue's version, e.g. `2026.1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The date this catalogue version was published.
    pub fn published(&self) -> Date {
        self.published
    }

    /// The category with this code, if the catalogue knows it.
    pub fn get(&self, code: &str) -> Option<&Category> {
        self.by_code.get(code).map(|&i| &self.categories[i])
    }

    /// Whether the catalogue knows this category code.
    pub fn is_known(&self, code: &str) -> bool {
        self.by_code.contains_key(code)
    }

    /// Every category, in file order.
    pub fn categories(&self) -> impl Iterator<Item = &Category> {
        self.categories.iter()
    }

    /// The field with this code, if declared.
    pub fn field(&self, code: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.code == code)
    }

    /// Every field, in file order.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter()
    }
}

/// Checks the syntax of a category code: at most [`MAX_CODE_LEN`] bytes, at least two dot-separated
/// segments, each a lowercase ascii letter followed by lowercase letters, digits or `_`.
/// The error describes the problem without repeating the code.
pub fn check_code(code: &str) -> Result<(), String> {
    if code.is_empty() {
        return Err("is empty".to_owned());
    }
    if code.len() > MAX_CODE_LEN {
        return Err(format!(
            "is {} bytes long, at most {MAX_CODE_LEN}",
            code.len()
        ));
    }
    if !code.contains('.') {
        return Err(
            "needs at least two dot-separated segments, e.g. \"tax.major_violation\"".to_owned(),
        );
    }
    code.split('.').try_for_each(check_segment)
}

fn check_field_code(code: &str) -> Result<(), String> {
    if code.is_empty() {
        return Err("is empty".to_owned());
    }
    if code.len() > MAX_CODE_LEN {
        return Err(format!(
            "is {} bytes long, at most {MAX_CODE_LEN}",
            code.len()
        ));
    }
    check_segment(code)
}

fn check_segment(segment: &str) -> Result<(), String> {
    let mut chars = segment.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "segment {segment:?} must be a lowercase ascii letter followed by lowercase letters, digits or _"
        ))
    }
}

fn check_category(c: RawCategory, fields: &[Field]) -> Result<Category, CatalogueError> {
    check_code(&c.code).map_err(|problem| CatalogueError::BadCode {
        code: c.code.clone(),
        problem,
    })?;
    if !fields.iter().any(|f| f.code == c.field) {
        return Err(CatalogueError::UndeclaredField {
            code: c.code,
            field: c.field,
        });
    }
    if c.code
        .strip_prefix(c.field.as_str())
        .and_then(|rest| rest.strip_prefix('.'))
        .is_none()
    {
        return Err(CatalogueError::CodeOutsideField {
            code: c.code,
            field: c.field,
        });
    }
    for (which, name) in [("name_zh", &c.name_zh), ("name_en", &c.name_en)] {
        if name.trim().is_empty() {
            return Err(CatalogueError::EmptyName {
                code: c.code,
                which,
            });
        }
    }

    let lists = parse_kinds(
        &c.lists,
        list_kind_of,
        || CatalogueError::NoLists {
            code: c.code.clone(),
        },
        |name| CatalogueError::UnknownList {
            code: c.code.clone(),
            name,
        },
        |name| CatalogueError::RepeatedList {
            code: c.code.clone(),
            name,
        },
    )?;
    let subjects = parse_kinds(
        &c.subjects,
        subject_kind_of,
        || CatalogueError::NoSubjects {
            code: c.code.clone(),
        },
        |name| CatalogueError::UnknownSubject {
            code: c.code.clone(),
            name,
        },
        |name| CatalogueError::RepeatedSubject {
            code: c.code.clone(),
            name,
        },
    )?;

    Ok(Category {
        code: c.code,
        field: c.field,
        name_zh: c.name_zh,
        name_en: c.name_en,
        lists,
        subjects,
    })
}

/// A non-empty list of distinct kind names, each known to `kind_of`.
fn parse_kinds<K: PartialEq>(
    names: &[String],
    kind_of: fn(&str) -> Option<K>,
    empty: impl FnOnce() -> CatalogueError,
    unknown: impl Fn(String) -> CatalogueError,
    repeated: impl Fn(String) -> CatalogueError,
) -> Result<Vec<K>, CatalogueError> {
    if names.is_empty() {
        return Err(empty());
    }
    let mut kinds = Vec::with_capacity(names.len());
    for name in names {
        let kind = kind_of(name).ok_or_else(|| unknown(name.clone()))?;
        if kinds.contains(&kind) {
            return Err(repeated(name.clone()));
        }
        kinds.push(kind);
    }
    Ok(kinds)
}

/// The list kind a catalogue file names, e.g. `"black"`.
pub fn list_kind_of(name: &str) -> Option<ListKind> {
    match name {
        "red" => Some(ListKind::Red),
        "black" => Some(ListKind::Black),
        "watch" => Some(ListKind::Watch),
        "penalty" => Some(ListKind::Penalty),
        _ => None,
    }
}

/// The subject kind a catalogue file names, e.g. `"natural_person"`.
pub fn subject_kind_of(name: &str) -> Option<SubjectKind> {
    match name {
        "legal_person" => Some(SubjectKind::LegalPerson),
        "individual_business" => Some(SubjectKind::IndividualBusiness),
        "natural_person" => Some(SubjectKind::NaturalPerson),
        _ => None,
    }
}

/// The catalogue file's name of a list kind (`None` for unspecified).
pub fn list_kind_name(kind: ListKind) -> Option<&'static str> {
    match kind {
        ListKind::Unspecified => None,
        ListKind::Red => Some("red"),
        ListKind::Black => Some("black"),
        ListKind::Watch => Some("watch"),
        ListKind::Penalty => Some("penalty"),
    }
}

/// The catalogue file's name of a subject kind (`None` for unspecified).
pub fn subject_kind_name(kind: SubjectKind) -> Option<&'static str> {
    match kind {
        SubjectKind::Unspecified => None,
        SubjectKind::LegalPerson => Some("legal_person"),
        SubjectKind::IndividualBusiness => Some("individual_business"),
        SubjectKind::NaturalPerson => Some("natural_person"),
    }
}

/// A TOML local date (no time, no offset) as a calendar date.
fn plain_date(dt: &toml::value::Datetime) -> Option<Date> {
    if dt.time.is_some() || dt.offset.is_some() {
        return None;
    }
    let d = dt.date?;
    Date::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn builtin_catalogue_parses() {
        let parsed = Catalogue::parse(BUILTIN_TOML).expect("catalogue.toml parses");
        let builtin = Catalogue::builtin();
        assert_eq!(builtin.version(), "2026.1");
        assert_eq!(builtin.version(), parsed.version());
        assert_eq!(crate::date::format_date(builtin.published()), "2026-03-20");
        assert_eq!(builtin.categories().count(), parsed.categories().count());
    }

    #[test]
    fn builtin_catalogue_covers_the_agreed_fields_and_lists() {
        let cat = Catalogue::builtin();
        // The 2017 agreement's six fields, and the fields added since.
        for field in [
            "business",
            "tax",
            "quality",
            "food_drug",
            "environment",
            "tourism",
            "court",
            "procurement",
            "work_safety",
        ] {
            assert!(cat.field(field).is_some(), "field {field} declared");
            assert!(
                cat.categories().any(|c| c.field == field),
                "field {field} has categories"
            );
        }
        for kind in [
            ListKind::Red,
            ListKind::Black,
            ListKind::Watch,
            ListKind::Penalty,
        ] {
            assert!(
                cat.categories().any(|c| c.allows_list(kind)),
                "{kind:?} has categories"
            );
        }
        assert!(
            cat.categories()
                .any(|c| c.allows_list(ListKind::Red)
                    && c.allows_subject(SubjectKind::NaturalPerson)),
            "natural persons can be on the red list"
        );
        let n = cat.categories().count();
        assert!((30..=40).contains(&n), "{n} categories");
    }

    #[test]
    fn builtin_catalogue_table() {
        let cat = Catalogue::builtin();
        let table: String = cat
            .categories()
            .map(|c| {
                let lists: Vec<_> = c.lists.iter().filter_map(|&k| list_kind_name(k)).collect();
                let subjects: Vec<_> = c
                    .subjects
                    .iter()
                    .filter_map(|&k| subject_kind_name(k))
                    .collect();
                format!(
                    "{} {} [{}] [{}]\n",
                    c.code,
                    c.name_zh,
                    lists.join(","),
                    subjects.join(",")
                )
            })
            .collect();
        expect![[r#"
            business.abnormal_operation 经营异常名录 [watch] [legal_person,individual_business]
            business.serious_violation 市场监督管理严重违法失信名单 [black] [legal_person,individual_business]
            business.false_registration 提交虚假材料取得登记 [black,watch] [legal_person,individual_business]
            business.administrative_penalty 市场监管行政处罚 [penalty] [legal_person,individual_business,natural_person]
            business.contract_honouring 守合同重信用企业 [red] [legal_person]
            tax.major_violation 重大税收违法失信主体 [black] [legal_person,individual_business,natural_person]
            tax.arrears 欠税公告 [watch] [legal_person,individual_business,natural_person]
            tax.credit_grade_d 纳税信用D级纳税人 [watch] [legal_person,individual_business]
            tax.administrative_penalty 税务行政处罚 [penalty] [legal_person,individual_business,natural_person]
            tax.credit_grade_a 纳税信用A级纳税人 [red] [legal_person,individual_business]
            quality.serious_violation 产品质量严重违法失信 [black] [legal_person,individual_business]
            quality.sampling_failure 产品质量监督抽查不合格 [watch] [legal_person,individual_business]
            quality.administrative_penalty 质量技术监督行政处罚 [penalty] [legal_person,individual_business,natural_person]
            food_drug.serious_violation 食品药品安全严重违法失信 [black] [legal_person,individual_business,natural_person]
            food_drug.industry_ban 食品药品行业从业禁止人员 [black] [natural_person]
            food_drug.sampling_failure 食品安全监督抽检不合格 [watch] [legal_person,individual_business]
            food_drug.administrative_penalty 食品药品行政处罚 [penalty] [legal_person,individual_business,natural_person]
            environment.serious_violation 环境违法严重失信 [black] [legal_person,individual_business]
            environment.excess_discharge 重点排污单位超标排放 [watch] [legal_person]
            environment.administrative_penalty 生态环境行政处罚 [penalty] [legal_person,individual_business,natural_person]
            environment.integrity_enterprise 环保诚信企业 [red] [legal_person]
            tourism.serious_violation 文化和旅游市场严重失信主体 [black] [legal_person,individual_business,natural_person]
            tourism.uncivilised_conduct 游客不文明行为记录 [watch] [natural_person]
            tourism.administrative_penalty 旅游行政处罚 [penalty] [legal_person,individual_business,natural_person]
            court.dishonest_debtor 失信被执行人 [black] [legal_person,individual_business,natural_person]
            court.consumption_restriction 限制高消费人员 [watch] [legal_person,individual_business,natural_person]
            procurement.serious_violation 政府采购严重违法失信行为记录 [black] [legal_person,individual_business,natural_person]
            procurement.administrative_penalty 政府采购行政处罚 [penalty] [legal_person,individual_business,natural_person]
            work_safety.serious_violation 安全生产严重失信主体 [black] [legal_person,individual_business]
            work_safety.administrative_penalty 安全生产行政处罚 [penalty] [legal_person,individual_business,natural_person]
            work_safety.standardisation_grade_1 安全生产标准化一级企业 [red] [legal_person]
            customs.dishonest_enterprise 海关失信企业 [black] [legal_person,individual_business]
            customs.aeo_advanced 海关高级认证企业 [red] [legal_person]
            labour.wage_arrears 拖欠农民工工资失信联合惩戒对象 [black,watch] [legal_person,individual_business,natural_person]
            labour.harmonious_enterprise 劳动关系和谐企业 [red] [legal_person]
            public_welfare.outstanding_volunteer 优秀志愿者 [red] [natural_person]
            public_welfare.blood_donation 无偿献血奉献奖获得者 [red] [natural_person]
        "#]]
        .assert_eq(&table);
    }

    #[test]
    fn lookups() {
        let cat = Catalogue::builtin();
        let debtor = cat.get("court.dishonest_debtor").expect("known");
        assert_eq!(debtor.name_zh, "失信被执行人");
        assert_eq!(debtor.field, "court");
        assert!(debtor.allows_list(ListKind::Black));
        assert!(!debtor.allows_list(ListKind::Red));
        assert!(debtor.allows_subject(SubjectKind::NaturalPerson));
        assert!(cat.is_known("tax.major_violation"));
        assert!(!cat.is_known("tax.future_category"));
        assert!(!cat.is_known("tax"));
        assert!(cat.get("").is_none());
    }

    const HEAD: &str = r#"version = "t.1"
published = 2026-01-02
[[field]]
code = "tax"
name_zh = "税务"
name_en = "Tax"
"#;

    fn category(code: &str, field: &str, lists: &str, subjects: &str) -> String {
        format!(
            "[[category]]\ncode = \"{code}\"\nfield = \"{field}\"\nname_zh = \"某类\"\nname_en = \"Some\"\nlists = {lists}\nsubjects = {subjects}\n"
        )
    }

    fn check(text: &str, expect: expect_test::Expect) {
        let got = match Catalogue::parse(text) {
            Ok(c) => format!("ok {} {} categories", c.version(), c.categories().count()),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn parse_rejects_bad_catalogues() {
        let good = |code: &str| category(code, "tax", r#"["black"]"#, r#"["legal_person"]"#);
        check(
            &format!("{HEAD}{}{}", good("tax.a"), good("tax.b_2")),
            expect![["ok t.1 2 categories"]],
        );
        check(HEAD, expect![["ok t.1 0 categories"]]);
        check(
            &format!("{HEAD}{}{}", good("tax.a"), good("tax.a")),
            expect![[r#"err category "tax.a" is declared twice"#]],
        );
        check(
            &format!("{HEAD}{}", good("tax.Major")),
            expect![[
                r#"err category code "tax.Major": segment "Major" must be a lowercase ascii letter followed by lowercase letters, digits or _"#
            ]],
        );
        check(
            &format!("{HEAD}{}", good("tax")),
            expect![[
                r#"err category code "tax": needs at least two dot-separated segments, e.g. "tax.major_violation""#
            ]],
        );
        check(
            &format!("{HEAD}{}", good("tax..a")),
            expect![[
                r#"err category code "tax..a": segment "" must be a lowercase ascii letter followed by lowercase letters, digits or _"#
            ]],
        );
        check(
            &format!("{HEAD}{}", good("tax.1a")),
            expect![[
                r#"err category code "tax.1a": segment "1a" must be a lowercase ascii letter followed by lowercase letters, digits or _"#
            ]],
        );
        check(
            &format!("{HEAD}{}", good(&format!("tax.{}", "a".repeat(61)))),
            expect![[
                r#"err category code "tax.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": is 65 bytes long, at most 64"#
            ]],
        );
        check(
            &format!(
                "{HEAD}{}",
                category("court.x", "court", r#"["black"]"#, r#"["legal_person"]"#)
            ),
            expect![[
                r#"err category "court.x": field "court" is not declared in the catalogue's [[field]] list"#
            ]],
        );
        check(
            &format!(
                "{HEAD}{}",
                category("taxes.x", "tax", r#"["black"]"#, r#"["legal_person"]"#)
            ),
            expect![[
                r#"err category "taxes.x": code must start with its field followed by a dot, "tax.""#
            ]],
        );
        check(
            &format!(
                "{HEAD}{}",
                category("tax.x", "tax", r#"["grey"]"#, r#"["legal_person"]"#)
            ),
            expect![[
                r#"err category "tax.x": unknown list kind "grey"; expected red, black, watch or penalty"#
            ]],
        );
        check(
            &format!(
                "{HEAD}{}",
                category("tax.x", "tax", r#"["red", "red"]"#, r#"["legal_person"]"#)
            ),
            expect![[r#"err category "tax.x": list kind "red" is given twice"#]],
        );
        check(
            &format!(
                "{HEAD}{}",
                category("tax.x", "tax", "[]", r#"["legal_person"]"#)
            ),
            expect![[
                r#"err category "tax.x": lists is empty; give at least one of red, black, watch, penalty"#
            ]],
        );
        check(
            &format!(
                "{HEAD}{}",
                category("tax.x", "tax", r#"["red"]"#, r#"["person"]"#)
            ),
            expect![[
                r#"err category "tax.x": unknown subject kind "person"; expected legal_person, individual_business or natural_person"#
            ]],
        );
        check(
            &format!(
                "{HEAD}{}",
                category(
                    "tax.x",
                    "tax",
                    r#"["red"]"#,
                    r#"["natural_person", "natural_person"]"#
                )
            ),
            expect![[r#"err category "tax.x": subject kind "natural_person" is given twice"#]],
        );
        check(
            &format!("{HEAD}{}", category("tax.x", "tax", r#"["red"]"#, "[]")),
            expect![[
                r#"err category "tax.x": subjects is empty; give at least one of legal_person, individual_business, natural_person"#
            ]],
        );
        check(
            &format!("{HEAD}{}", good("tax.x").replace("某类", " ")),
            expect![[r#"err category "tax.x": name_zh is empty"#]],
        );
        check(
            &format!("{HEAD}[[field]]\ncode = \"tax\"\nname_zh = \"税\"\nname_en = \"T\"\n"),
            expect![[r#"err field "tax" is declared twice"#]],
        );
        check(
            &format!("{HEAD}[[field]]\ncode = \"Tax\"\nname_zh = \"税\"\nname_en = \"T\"\n"),
            expect![[
                r#"err field code "Tax": segment "Tax" must be a lowercase ascii letter followed by lowercase letters, digits or _"#
            ]],
        );
        check(
            "version = \"\"\npublished = 2026-01-02\n",
            expect![["err catalogue version is empty"]],
        );
        check(
            "version = \"1\"\npublished = 2026-01-02T10:00:00\n",
            expect![[
                "err catalogue published date 2026-01-02T10:00:00 is not a plain calendar date (YYYY-MM-DD without time)"
            ]],
        );
    }

    #[test]
    fn parse_rejects_unknown_keys_and_bad_toml() {
        let text = format!(
            "{HEAD}{}",
            category("tax.x", "tax", r#"["red"]"#, r#"["legal_person"]"#)
        )
        .replace(
            "name_en = \"Some\"",
            "name_en = \"Some\"\nseverity = \"serious\"",
        );
        let err = Catalogue::parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("catalogue is not valid TOML"), "{err}");
        assert!(err.contains("unknown field `severity`"), "{err}");

        let err = Catalogue::parse("version = ").unwrap_err().to_string();
        assert!(err.starts_with("catalogue is not valid TOML"), "{err}");
    }

    #[test]
    fn code_syntax() {
        assert_eq!(check_code("court.dishonest_debtor"), Ok(()));
        assert_eq!(check_code("a.b.c3_d"), Ok(()));
        assert_eq!(check_code(""), Err("is empty".to_owned()));
        assert!(check_code("tax.").is_err());
        assert!(check_code(".tax").is_err());
        assert!(check_code("tax.major-violation").is_err());
        assert!(check_code("税务.x").is_err());
    }
}
