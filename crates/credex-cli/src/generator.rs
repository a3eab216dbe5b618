//! Realistic generated credit records for the demo, benchmarks and `credexctl gen`.
//!
//! Records look like what a city's public-credit platform discloses: Chinese company,
//! shop and person names; the deciding body of the city (长沙市市场监督管理局,
//! 武汉市税务局, 合肥市中级人民法院, 南昌市生态环境局 …) with a valid USCC; subject USCCs
//! carrying the city's division code in positions 3-8 and valid check characters; valid
//! resident ID numbers; document numbers in each body's style ("长市监处罚〔2026〕118号",
//! "（2026）鄂01执1234号"); legal bases and facts that fit the category.
//!
//! Every record passes `credex_core::validate` in publish mode: its category comes from the
//! built-in catalogue and allows its list and subject kind; black-list records are SERIOUS;
//! publication periods stay inside the NDRC Order No. 36 bounds (MINOR ≤ 3 months,
//! GENERAL ≤ 1 year, SERIOUS and red list ≤ 3 years); and the publication is in force on the
//! `today` the generator is given.
//!
//! Output is a function of (city, seed, today): the same arguments give the same records.

use chrono::{Datelike, Days};
use credex_core::catalogue::{Catalogue, Category};
use credex_core::date::{Date, format_date};
use credex_core::ident::{USCC_CHARSET, id_check_char, uscc_check_char};
use credex_proto::v1::{
    Authority, CreditRecord, Decision, LegalRepresentative, ListKind, Publication, RecordStatus,
    Severity, StatusKind, Subject, SubjectKind,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::city::CitySpec;

/// Generates one city's records.
#[derive(Debug)]
pub struct Generator {
    city: CitySpec,
    /// The city name without 市, e.g. "长沙".
    short: String,
    rng: StdRng,
    today: Date,
    catalogue: &'static Catalogue,
}

impl Generator {
    /// A generator for `city` whose records are in force on `today`. Cities given the same
    /// seed still get different records: the city id is mixed into it.
    pub fn new(city: &CitySpec, seed: u64, today: Date) -> Self {
        Self {
            short: city.name.trim_end_matches('市').to_owned(),
            city: city.clone(),
            rng: StdRng::seed_from_u64(seed ^ fnv1a(city.id.as_bytes())),
            today,
            catalogue: Catalogue::builtin(),
        }
    }

    /// The next record: a penalty disclosure half the time, otherwise a black, watch or red
    /// listing, with a subject kind the category allows.
    pub fn record(&mut self) -> CreditRecord {
        let list = match self.rng.gen_range(0..100) {
            0..=49 => ListKind::Penalty,
            50..=69 => ListKind::Black,
            70..=84 => ListKind::Watch,
            _ => ListKind::Red,
        };
        let category = self.category(list);
        let kind = *category
            .subjects
            .choose(&mut self.rng)
            .expect("catalogue categories name subject kinds");
        let subject = self.subject(kind, category);
        self.build(list, category, subject)
    }

    /// A black-list record of this city about a given subject under a given category (the
    /// demo's jointly sanctioned company). Panics if the built-in catalogue has no such
    /// category: codes are never removed from it, so the callers' codes stay valid.
    pub fn black_listing(&mut self, subject: Subject, category: &str) -> CreditRecord {
        let category = self
            .catalogue
            .get(category)
            .expect("a category of the built-in catalogue");
        let mut record = self.build(ListKind::Black, category, subject);
        // A sanction, not one under objection: the demo shows it in force everywhere.
        record.status = Some(RecordStatus {
            kind: StatusKind::Active.into(),
            ..Default::default()
        });
        record
    }

    fn category(&mut self, list: ListKind) -> &'static Category {
        let fits: Vec<&'static Category> = self
            .catalogue
            .categories()
            .filter(|c| c.allows_list(list))
            .collect();
        fits.choose(&mut self.rng)
            .expect("the catalogue has categories for every list and subject kind")
    }

    fn build(&mut self, list: ListKind, category: &Category, subject: Subject) -> CreditRecord {
        let field = field_profile(&category.field);
        let story = story(&category.code, list);
        let severity = match list {
            ListKind::Red | ListKind::Unspecified => Severity::Unspecified,
            ListKind::Black => Severity::Serious,
            ListKind::Watch => *[Severity::General, Severity::Minor]
                .choose(&mut self.rng)
                .expect("non-empty"),
            ListKind::Penalty => *[
                Severity::Minor,
                Severity::General,
                Severity::General,
                Severity::Serious,
            ]
            .choose(&mut self.rng)
            .expect("non-empty"),
        };
        // Publication length in days, inside the Order No. 36 tier bound with a margin, so
        // that no reading of "3 months" or "1 year" (calendar or day count) rejects it.
        let days = match severity {
            Severity::Minor => self.rng.gen_range(30..=85),
            Severity::General => self.rng.gen_range(90..=360),
            Severity::Serious | Severity::Unspecified => self.rng.gen_range(365..=1090),
        };
        // Started up to half its length ago, so it is in force today and stays so a while.
        let starts_on = days_before(self.today, self.rng.gen_range(0..=days / 2));
        let ends_on = days_after(starts_on, days - 1);
        let decided_on = days_before(starts_on, self.rng.gen_range(1..=20));

        let natural = subject.kind() == SubjectKind::NaturalPerson;
        let (penalty_kinds, penalty_content, fine_fen) = if list == ListKind::Penalty {
            self.penalty(natural)
        } else {
            (Vec::new(), String::new(), 0)
        };
        let sanction_measures = match list {
            ListKind::Black => self.pick(story.measures.unwrap_or(BLACK_MEASURES), 2, 3),
            ListKind::Watch => self.pick(WATCH_MEASURES, 1, 2),
            ListKind::Red => self.pick(RED_MEASURES, 1, 2),
            ListKind::Penalty | ListKind::Unspecified => Vec::new(),
        };
        let (legal_basis, facts) = *story
            .cases
            .choose(&mut self.rng)
            .expect("every story has cases");
        let authority_name = self.fill(field.authority, decided_on);
        let doc_template = if list == ListKind::Penalty {
            field.penalty_doc
        } else {
            field.listing_doc
        };
        let status = if list != ListKind::Red && self.rng.gen_bool(0.05) {
            let in_force_for = (self.today - starts_on).num_days().unsigned_abs();
            let effective_on = days_after(starts_on, self.rng.gen_range(0..=in_force_for));
            RecordStatus {
                kind: StatusKind::UnderObjection.into(),
                reason: "当事人对记录内容提出异议，认定部门正在核查".to_owned(),
                effective_on: format_date(effective_on),
            }
        } else {
            RecordStatus {
                kind: StatusKind::Active.into(),
                ..Default::default()
            }
        };
        let remarks = if self.rng.gen_bool(0.1) {
            format!(
                "已同步推送至信用中国（{}）网站",
                province(&self.city.division).0
            )
        } else {
            String::new()
        };

        CreditRecord {
            record_id: format!("{}-{:016x}", self.city.id, self.rng.r#gen::<u64>()),
            version: 1,
            subject: Some(subject),
            list: list.into(),
            category: category.code.clone(),
            severity: severity.into(),
            authority: Some(Authority {
                uscc: authority_uscc(&authority_name, &self.city.division),
                name: authority_name.clone(),
            }),
            decision: Some(Decision {
                document_number: self.fill(doc_template, decided_on),
                decided_on: format_date(decided_on),
                legal_basis: legal_basis.to_owned(),
                facts: facts.to_owned(),
                penalty_kinds,
                penalty_content,
                fine_fen,
                sanction_measures,
            }),
            publication: Some(Publication {
                starts_on: format_date(starts_on),
                ends_on: format_date(ends_on),
            }),
            status: Some(status),
            data_source: authority_name,
            remarks,
        }
    }

    fn penalty(&mut self, natural: bool) -> (Vec<String>, String, i64) {
        let mut kinds = Vec::new();
        if self.rng.gen_bool(0.3) {
            kinds.push("警告");
        }
        if kinds.is_empty() || self.rng.gen_bool(0.8) {
            kinds.push("罚款");
        }
        if self.rng.gen_bool(0.2) {
            kinds.push("没收违法所得");
        }
        if !natural && self.rng.gen_bool(0.05) {
            kinds.push(
                *["责令停产停业", "暂扣许可证件", "降低资质等级"]
                    .choose(&mut self.rng)
                    .expect("non-empty"),
            );
        }
        // Fines in whole hundreds of yuan, as decisions state them; individuals' are smaller.
        let yuan = if natural {
            self.rng.gen_range(2..=200) * 100
        } else {
            self.rng.gen_range(50..=5000) * 100
        };
        let fine_fen = if kinds.contains(&"罚款") {
            yuan * 100
        } else {
            0
        };
        let content = kinds
            .iter()
            .map(|k| match *k {
                "罚款" => format!("罚款人民币{yuan}元"),
                "没收违法所得" => {
                    format!("没收违法所得人民币{}元", self.rng.gen_range(1..=500) * 100)
                }
                other => other.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("；");
        (
            kinds.into_iter().map(str::to_owned).collect(),
            content,
            fine_fen,
        )
    }

    fn subject(&mut self, kind: SubjectKind, category: &Category) -> Subject {
        let field = field_profile(&category.field);
        match kind {
            SubjectKind::NaturalPerson => Subject {
                kind: kind.into(),
                name: self.person_name(),
                id_number: self.id_number(),
                ..Default::default()
            },
            SubjectKind::IndividualBusiness => {
                let district = self.district();
                let surname = *SURNAMES.choose(&mut self.rng).expect("non-empty");
                let shop = *field.shops.choose(&mut self.rng).expect("non-empty");
                Subject {
                    kind: kind.into(),
                    name: format!("{}市{district}{surname}记{shop}", self.short),
                    uscc: self.uscc('2'),
                    id_number: String::new(),
                    legal_representative: Some(self.representative()),
                }
            }
            SubjectKind::LegalPerson | SubjectKind::Unspecified => {
                let brand = *BRANDS.choose(&mut self.rng).expect("non-empty");
                let industry = *field.industries.choose(&mut self.rng).expect("non-empty");
                let name = match self.rng.gen_range(0..4) {
                    0 => format!(
                        "{}{brand}{industry}有限公司",
                        province(&self.city.division).0
                    ),
                    1 => format!("{}{brand}{industry}股份有限公司", self.short),
                    _ => {
                        let district = self.district();
                        format!("{}市{district}{brand}{industry}有限公司", self.short)
                    }
                };
                Subject {
                    kind: SubjectKind::LegalPerson.into(),
                    name,
                    uscc: self.uscc('1'),
                    id_number: String::new(),
                    legal_representative: Some(self.representative()),
                }
            }
        }
    }

    fn representative(&mut self) -> LegalRepresentative {
        LegalRepresentative {
            name: self.person_name(),
            id_number: self.id_number(),
        }
    }

    fn person_name(&mut self) -> String {
        let surname = *SURNAMES.choose(&mut self.rng).expect("non-empty");
        let given: String = (0..self.rng.gen_range(1..=2))
            .map(|_| *GIVEN.choose(&mut self.rng).expect("non-empty"))
            .collect();
        format!("{surname}{given}")
    }

    fn district(&mut self) -> &'static str {
        districts(&self.city.division)
            .choose(&mut self.rng)
            .expect("non-empty")
    }

    /// A USCC registered with market regulation (9) as an enterprise (1) or individual
    /// business (2) in this city. Positions 9-10 are "MA", as on codes issued since 2015,
    /// which also keeps the code from reading as an ID number.
    fn uscc(&mut self, org_type: char) -> String {
        let charset = USCC_CHARSET.as_bytes();
        let tail: String = (0..7)
            .map(|_| char::from(charset[self.rng.gen_range(0..charset.len())]))
            .collect();
        with_uscc_check(&format!("9{org_type}{}MA{tail}", self.city.division))
    }

    /// A resident ID number from one of the city's districts, born 1955-2003.
    fn id_number(&mut self) -> String {
        let district = *["02", "03", "04", "05", "11", "12", "21"]
            .choose(&mut self.rng)
            .expect("non-empty");
        let birth = Date::from_ymd_opt(1955, 1, 1).expect("valid date")
            + Days::new(self.rng.gen_range(0..17_530));
        let first17 = format!(
            "{}{district}{}{:03}",
            &self.city.division[..4],
            birth.format("%Y%m%d"),
            self.rng.gen_range(1..1000)
        );
        let check = id_check_char(&first17).expect("17 digits");
        format!("{first17}{check}")
    }

    fn pick(&mut self, from: &[&str], min: usize, max: usize) -> Vec<String> {
        let n = self.rng.gen_range(min..=max.min(from.len()));
        from.choose_multiple(&mut self.rng, n)
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// Fills a name or document-number template: `{c}` city, `{a}` its first character,
    /// `{p}` the province abbreviation, `{cc}` the intermediate court's number, `{y}` year,
    /// `{n}` a serial number.
    fn fill(&mut self, template: &str, date: Date) -> String {
        let abbr: String = self.short.chars().take(1).collect();
        template
            .replace("{c}", &self.short)
            .replace("{a}", &abbr)
            .replace("{p}", province(&self.city.division).1)
            .replace("{cc}", &self.city.division[2..4])
            .replace("{y}", &date.year().to_string())
            .replace("{n}", &self.rng.gen_range(1..=1999).to_string())
    }
}

fn days_before(date: Date, days: u64) -> Date {
    date.checked_sub_days(Days::new(days))
        .expect("generated dates are near today")
}

fn days_after(date: Date, days: u64) -> Date {
    date.checked_add_days(Days::new(days))
        .expect("generated dates are near today")
}

/// The company the demo puts on both Changsha's and Wuhan's black lists: a Changsha
/// construction firm listed by Changsha's court as a dishonest judgment debtor
/// ([`JOINT_CHANGSHA_CATEGORY`]) and by Wuhan for unpaid migrant workers' wages on a Wuhan
/// project ([`JOINT_WUHAN_CATEGORY`]).
pub fn joint_subject() -> Subject {
    Subject {
        kind: SubjectKind::LegalPerson.into(),
        name: "长沙市天心区恒通建设工程有限公司".to_owned(),
        uscc: with_uscc_check("91430100MA4L8Q2K7"),
        id_number: String::new(),
        legal_representative: Some(LegalRepresentative {
            name: "周建华".to_owned(),
            id_number: with_id_check("43010319780615401"),
        }),
    }
}

/// Changsha's black-list category for [`joint_subject`].
pub const JOINT_CHANGSHA_CATEGORY: &str = "court.dishonest_debtor";
/// Wuhan's black-list category for [`joint_subject`].
pub const JOINT_WUHAN_CATEGORY: &str = "labour.wage_arrears";

/// The next version of a record with status REPAIRED (信用修复) from `on`, which takes it out
/// of every view.
pub fn repaired(record: &CreditRecord, on: Date) -> CreditRecord {
    CreditRecord {
        version: record.version + 1,
        status: Some(RecordStatus {
            kind: StatusKind::Repaired.into(),
            reason: "当事人已履行相关义务并作出信用承诺，经审核准予信用修复".to_owned(),
            effective_on: format_date(on),
        }),
        ..record.clone()
    }
}

fn with_uscc_check(first17: &str) -> String {
    let check = uscc_check_char(first17).expect("17 USCC characters");
    format!("{first17}{check}")
}

fn with_id_check(first17: &str) -> String {
    let check = id_check_char(first17).expect("17 digits");
    format!("{first17}{check}")
}

/// A government body's USCC: registered by the establishment authority (1) as an organ of
/// state (1), with an organisation code derived from its name, so a body keeps one code
/// across runs and seeds.
fn authority_uscc(name: &str, division: &str) -> String {
    let charset = USCC_CHARSET.as_bytes();
    let mut h = fnv1a(name.as_bytes());
    let org: String = (0..9)
        .map(|_| {
            let c = charset[(h % charset.len() as u64) as usize];
            h /= charset.len() as u64;
            char::from(c)
        })
        .collect();
    with_uscc_check(&format!("11{division}{org}"))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The province of a division code: its name and the one-character abbreviation courts
/// use in case numbers.
fn province(division: &str) -> (&'static str, &'static str) {
    match &division[..2] {
        "11" => ("北京", "京"),
        "12" => ("天津", "津"),
        "13" => ("河北", "冀"),
        "14" => ("山西", "晋"),
        "15" => ("内蒙古", "内"),
        "21" => ("辽宁", "辽"),
        "22" => ("吉林", "吉"),
        "23" => ("黑龙江", "黑"),
        "31" => ("上海", "沪"),
        "32" => ("江苏", "苏"),
        "33" => ("浙江", "浙"),
        "34" => ("安徽", "皖"),
        "35" => ("福建", "闽"),
        "36" => ("江西", "赣"),
        "37" => ("山东", "鲁"),
        "41" => ("河南", "豫"),
        "42" => ("湖北", "鄂"),
        "43" => ("湖南", "湘"),
        "44" => ("广东", "粤"),
        "45" => ("广西", "桂"),
        "46" => ("海南", "琼"),
        "50" => ("重庆", "渝"),
        "51" => ("四川", "川"),
        "52" => ("贵州", "黔"),
        "53" => ("云南", "云"),
        "54" => ("西藏", "藏"),
        "61" => ("陕西", "陕"),
        "62" => ("甘肃", "甘"),
        "63" => ("青海", "青"),
        "64" => ("宁夏", "宁"),
        "65" => ("新疆", "新"),
        _ => ("中国", "国"),
    }
}

fn districts(division: &str) -> &'static [&'static str] {
    match division {
        "430100" => &[
            "芙蓉区",
            "天心区",
            "岳麓区",
            "开福区",
            "雨花区",
            "望城区",
            "长沙县",
        ],
        "420100" => &[
            "江岸区",
            "江汉区",
            "硚口区",
            "汉阳区",
            "武昌区",
            "青山区",
            "洪山区",
            "东西湖区",
        ],
        "340100" => &["瑶海区", "庐阳区", "蜀山区", "包河区", "肥东县", "肥西县"],
        "360100" => &[
            "东湖区",
            "西湖区",
            "青云谱区",
            "青山湖区",
            "新建区",
            "红谷滩区",
        ],
        _ => &["高新区", "经济技术开发区", "城区"],
    }
}

/// How one field's bodies name themselves and number their documents (see
/// [`Generator::fill`] for the placeholders), and what kind of businesses they deal with.
struct FieldProfile {
    authority: &'static str,
    penalty_doc: &'static str,
    listing_doc: &'static str,
    industries: &'static [&'static str],
    shops: &'static [&'static str],
}

const SHOPS: &[&str] = &[
    "便利店",
    "五金店",
    "服装店",
    "副食店",
    "汽车修理部",
    "装饰材料店",
];
const FOOD_SHOPS: &[&str] = &[
    "米粉店",
    "餐馆",
    "副食店",
    "水果店",
    "药店",
    "茶楼",
    "烧烤店",
];

fn field_profile(field: &str) -> FieldProfile {
    let (authority, penalty_doc, listing_doc, industries, shops): (
        _,
        _,
        _,
        &'static [&'static str],
        _,
    ) = match field {
        "business" => (
            "{c}市市场监督管理局",
            "{a}市监处罚〔{y}〕{n}号",
            "{a}市监严违字〔{y}〕{n}号",
            &["商贸", "科技", "建材", "服装", "供应链管理", "信息技术"],
            SHOPS,
        ),
        "tax" => (
            "{c}市税务局",
            "{a}税稽罚〔{y}〕{n}号",
            "{a}税稽认〔{y}〕{n}号",
            &["商贸", "建设工程", "房地产开发", "物流", "供应链管理"],
            SHOPS,
        ),
        "quality" => (
            "{c}市市场监督管理局",
            "{a}市监质罚〔{y}〕{n}号",
            "{a}市监质认〔{y}〕{n}号",
            &["机械制造", "建材", "电器", "塑料制品", "汽车配件"],
            SHOPS,
        ),
        "food_drug" => (
            "{c}市市场监督管理局",
            "{a}市监食药罚〔{y}〕{n}号",
            "{a}市监食药认〔{y}〕{n}号",
            &["食品", "餐饮管理", "医药", "农产品", "调味品"],
            FOOD_SHOPS,
        ),
        "environment" => (
            "{c}市生态环境局",
            "{a}环罚〔{y}〕{n}号",
            "{a}环认〔{y}〕{n}号",
            &["化工", "环保科技", "印染", "电镀", "再生资源"],
            &["洗车店", "汽车修理部", "干洗店"],
        ),
        "tourism" => (
            "{c}市文化和旅游局",
            "{a}文旅罚〔{y}〕{n}号",
            "{a}文旅认〔{y}〕{n}号",
            &["旅行社", "文化传媒", "酒店管理", "景区开发"],
            &["旅馆", "土特产店", "民宿"],
        ),
        "court" => (
            "{c}市中级人民法院",
            "（{y}）{p}{cc}执{n}号",
            "（{y}）{p}{cc}执{n}号",
            &["建设工程", "房地产开发", "商贸", "投资管理"],
            SHOPS,
        ),
        "procurement" => (
            "{c}市财政局",
            "{a}财采罚〔{y}〕{n}号",
            "{a}财采处〔{y}〕{n}号",
            &["信息技术", "办公设备", "建设工程", "物业管理"],
            &["办公用品店", "电脑经营部", "印刷店"],
        ),
        "work_safety" => (
            "{c}市应急管理局",
            "{a}应急罚〔{y}〕{n}号",
            "{a}应急认〔{y}〕{n}号",
            &["化工", "矿业", "建设工程", "烟花爆竹", "物流"],
            &["烟花爆竹经营部", "加油站", "五金店"],
        ),
        "customs" => (
            "{c}海关",
            "{a}关缉违字〔{y}〕{n}号",
            "{a}关企认〔{y}〕{n}号",
            &["进出口贸易", "国际货运代理", "电子科技"],
            &["外贸商行"],
        ),
        "labour" => (
            "{c}市人力资源和社会保障局",
            "{a}人社监罚〔{y}〕{n}号",
            "{a}人社认〔{y}〕{n}号",
            &["建设工程", "劳务", "物业管理", "装饰工程"],
            &["装修队", "劳务服务部"],
        ),
        "public_welfare" => (
            "{c}市精神文明建设指导委员会办公室",
            "{a}文明办〔{y}〕{n}号",
            "{a}文明办〔{y}〕{n}号",
            &["公益服务"],
            SHOPS,
        ),
        _ => (
            "{c}市发展和改革委员会",
            "{a}发改罚〔{y}〕{n}号",
            "{a}发改信用〔{y}〕{n}号",
            &["商贸", "科技"],
            SHOPS,
        ),
    };
    FieldProfile {
        authority,
        penalty_doc,
        listing_doc,
        industries,
        shops,
    }
}

/// What a category's decisions say: (legal basis, facts) pairs and, for black lists, the
/// joint sanctions they bring when they differ from the usual ones.
struct Story {
    cases: &'static [(&'static str, &'static str)],
    measures: Option<&'static [&'static str]>,
}

const BLACK_MEASURES: &[&str] = &[
    "限制参与政府采购",
    "限制取得政府供应土地",
    "限制获得财政补贴",
    "在行政审批中列为重点审查对象",
    "限制担任企业法定代表人、高级管理人员",
    "限制参加评优评先",
];
const COURT_MEASURES: &[&str] = &[
    "限制高消费",
    "限制乘坐飞机、列车软卧",
    "限制参与政府采购",
    "限制担任企业法定代表人、高级管理人员",
];
const WATCH_MEASURES: &[&str] = &[
    "列为重点监管对象，提高抽查比例",
    "在评优评先中从严审核",
    "限制适用告知承诺制",
];
const RED_MEASURES: &[&str] = &[
    "行政审批“绿色通道”",
    "减少日常检查频次",
    "优先安排财政资金支持",
    "在评优评先中优先考虑",
];

fn story(code: &str, list: ListKind) -> Story {
    let plain = |cases| Story {
        cases,
        measures: None,
    };
    match (code, list) {
        ("business.administrative_penalty", _) => plain(&[
            (
                "《中华人民共和国广告法》第五十五条",
                "发布虚假广告，欺骗、误导消费者",
            ),
            (
                "《中华人民共和国反不正当竞争法》第二十条",
                "对商品作虚假的商业宣传",
            ),
            (
                "《中华人民共和国商标法》第六十条",
                "销售侵犯注册商标专用权的商品",
            ),
        ]),
        ("business.serious_violation", _) => plain(&[(
            "《市场监督管理严重违法失信名单管理办法》第二条",
            "因同一性质违法行为在一年内受到三次以上较重行政处罚",
        )]),
        ("business.false_registration", _) => plain(&[(
            "《中华人民共和国市场主体登记管理条例》第四十四条",
            "提交虚假材料骗取市场主体登记",
        )]),
        ("business.abnormal_operation", _) => plain(&[
            (
                "《企业经营异常名录管理暂行办法》第四条",
                "未按规定期限公示年度报告",
            ),
            (
                "《企业经营异常名录管理暂行办法》第四条",
                "通过登记的住所或者经营场所无法联系",
            ),
        ]),
        ("business.contract_honouring", _) => plain(&[(
            "《守合同重信用企业公示办法》第五条",
            "连续两年守合同重信用，经公示无异议",
        )]),
        ("tax.administrative_penalty", _) => plain(&[
            (
                "《中华人民共和国税收征收管理法》第六十三条",
                "通过虚列成本、少计收入等手段少缴应纳税款",
            ),
            (
                "《中华人民共和国发票管理办法》第三十五条",
                "未按规定开具发票",
            ),
            (
                "《中华人民共和国税收征收管理法》第六十二条",
                "未按照规定的期限办理纳税申报",
            ),
        ]),
        ("tax.major_violation", _) => plain(&[
            (
                "《重大税收违法失信主体信息公布管理办法》第六条",
                "虚开增值税专用发票，涉及税款金额较大",
            ),
            (
                "《重大税收违法失信主体信息公布管理办法》第六条",
                "逃避追缴欠税，欠缴税款十万元以上",
            ),
        ]),
        ("tax.arrears", _) => plain(&[(
            "《中华人民共和国税收征收管理法》第四十五条",
            "欠缴税款超过规定期限",
        )]),
        ("tax.credit_grade_d", _) => {
            plain(&[("《纳税信用管理办法》第二十条", "年度纳税信用评价为D级")])
        }
        ("tax.credit_grade_a", _) => {
            plain(&[("《纳税信用管理办法》第十九条", "年度纳税信用评价为A级")])
        }
        ("quality.administrative_penalty", _) => plain(&[
            (
                "《中华人民共和国产品质量法》第四十九条",
                "生产不符合保障人体健康和人身、财产安全的国家标准的产品",
            ),
            (
                "《中华人民共和国计量法》第二十七条",
                "使用未经检定的计量器具",
            ),
        ]),
        ("quality.serious_violation", _) => plain(&[(
            "《市场监督管理严重违法失信名单管理办法》第八条",
            "生产销售不合格产品，造成严重后果",
        )]),
        ("quality.sampling_failure", _) => plain(&[(
            "《产品质量监督抽查管理暂行办法》第四十二条",
            "产品经监督抽查不合格，逾期未整改",
        )]),
        ("food_drug.administrative_penalty", _) => plain(&[
            (
                "《中华人民共和国食品安全法》第一百二十四条",
                "生产经营超过保质期的食品",
            ),
            (
                "《中华人民共和国食品安全法》第一百二十六条",
                "未按规定查验供货者许可证和食品合格证明文件",
            ),
            ("《中华人民共和国药品管理法》第一百一十七条", "销售劣药"),
        ]),
        ("food_drug.serious_violation", _) => plain(&[(
            "《市场监督管理严重违法失信名单管理办法》第七条",
            "在食品中添加非食用物质",
        )]),
        ("food_drug.industry_ban", _) => plain(&[(
            "《中华人民共和国食品安全法》第一百三十五条",
            "因食品安全犯罪被判处有期徒刑以上刑罚",
        )]),
        ("food_drug.sampling_failure", _) => plain(&[(
            "《食品安全抽样检验管理办法》第四十条",
            "食品经监督抽检不合格",
        )]),
        ("environment.administrative_penalty", _) => plain(&[
            (
                "《中华人民共和国大气污染防治法》第九十九条",
                "超过大气污染物排放标准排放大气污染物",
            ),
            (
                "《中华人民共和国水污染防治法》第八十三条",
                "利用渗井、暗管逃避监管排放水污染物",
            ),
        ]),
        ("environment.serious_violation", _) => plain(&[(
            "《企业环境信用评价办法（试行）》第十五条",
            "篡改、伪造污染源自动监测数据",
        )]),
        ("environment.excess_discharge", _) => plain(&[(
            "《中华人民共和国环境保护法》第五十九条",
            "重点排污单位超标排放污染物",
        )]),
        ("environment.integrity_enterprise", _) => plain(&[(
            "《企业环境信用评价办法（试行）》第十二条",
            "年度环境信用评价为环保诚信企业",
        )]),
        ("tourism.administrative_penalty", _) => plain(&[
            (
                "《中华人民共和国旅游法》第九十八条",
                "以不合理的低价组织旅游活动，诱骗旅游者",
            ),
            ("《旅行社条例》第五十五条", "未与旅游者签订旅游合同"),
        ]),
        ("tourism.serious_violation", _) => plain(&[(
            "《文化和旅游市场信用管理规定》第八条",
            "侵害旅游者合法权益，造成游客滞留",
        )]),
        ("tourism.uncivilised_conduct", _) => plain(&[(
            "《旅游不文明行为记录管理暂行办法》第四条",
            "在旅游景区刻划涂污文物古迹",
        )]),
        ("court.dishonest_debtor", _) => Story {
            cases: &[
                (
                    "《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条",
                    "有履行能力而拒不履行生效法律文书确定的义务",
                ),
                (
                    "《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条",
                    "以虚假诉讼、虚假仲裁或者以隐匿、转移财产等方法规避执行",
                ),
            ],
            measures: Some(COURT_MEASURES),
        },
        ("court.consumption_restriction", _) => plain(&[(
            "《最高人民法院关于限制被执行人高消费及有关消费的若干规定》第一条",
            "未按执行通知书指定的期间履行生效法律文书确定的给付义务",
        )]),
        ("procurement.administrative_penalty", _) => plain(&[
            (
                "《中华人民共和国政府采购法》第七十七条",
                "提供虚假材料谋取中标、成交",
            ),
            (
                "《中华人民共和国政府采购法实施条例》第七十二条",
                "中标后无正当理由拒不与采购人签订政府采购合同",
            ),
        ]),
        ("procurement.serious_violation", _) => plain(&[(
            "《中华人民共和国政府采购法》第七十七条",
            "与其他供应商恶意串通投标",
        )]),
        ("work_safety.administrative_penalty", _) => plain(&[
            (
                "《中华人民共和国安全生产法》第九十七条",
                "未按规定对从业人员进行安全生产教育和培训",
            ),
            (
                "《中华人民共和国安全生产法》第一百零二条",
                "未采取措施消除事故隐患",
            ),
        ]),
        ("work_safety.serious_violation", _) => plain(&[(
            "《安全生产严重失信主体名单管理办法》第六条",
            "发生较大生产安全事故，负有责任",
        )]),
        ("work_safety.standardisation_grade_1", _) => plain(&[(
            "《企业安全生产标准化建设定级办法》第五条",
            "通过安全生产标准化一级企业评审",
        )]),
        ("customs.dishonest_enterprise", _) => plain(&[(
            "《中华人民共和国海关注册登记和备案企业信用管理办法》第十五条",
            "因走私违法行为被海关行政处罚，罚款累计超过一百万元",
        )]),
        ("customs.aeo_advanced", _) => plain(&[(
            "《中华人民共和国海关注册登记和备案企业信用管理办法》第九条",
            "经海关认证为高级认证企业",
        )]),
        ("labour.wage_arrears", ListKind::Black) => plain(&[(
            "《拖欠农民工工资失信联合惩戒对象名单管理暂行办法》第五条",
            "克扣、无故拖欠农民工工资，数额达到认定拒不支付劳动报酬罪数额标准",
        )]),
        ("labour.wage_arrears", _) => plain(&[(
            "《保障农民工工资支付条例》第四十八条",
            "拖欠农民工工资，经责令限期支付逾期未支付",
        )]),
        ("labour.harmonious_enterprise", _) => plain(&[(
            "《关于构建和谐劳动关系的意见》",
            "劳动关系和谐稳定，获评劳动关系和谐企业",
        )]),
        ("public_welfare.outstanding_volunteer", _) => plain(&[(
            "《志愿服务条例》第三十三条",
            "累计志愿服务时长超过1500小时，获评优秀志愿者",
        )]),
        ("public_welfare.blood_donation", _) => plain(&[(
            "《中华人民共和国献血法》第十四条",
            "获得全国无偿献血奉献奖金奖",
        )]),
        // A category added to the catalogue after these texts were written.
        (_, ListKind::Red) => plain(&[(
            "《关于加快推进社会信用体系建设的指导意见》",
            "诚实守信，经认定列入守信红名单",
        )]),
        (_, ListKind::Penalty) => {
            plain(&[("《中华人民共和国行政处罚法》第二十八条", "违反行政管理秩序")])
        }
        _ => plain(&[(
            "《失信行为纠正后的信用信息修复管理办法（试行）》",
            "存在失信行为，经认定列入名单",
        )]),
    }
}

const BRANDS: &[&str] = &[
    "湘味", "楚天", "江城", "徽商", "赣鄱", "恒通", "鑫源", "华泰", "众诚", "宏达", "瑞丰", "盛世",
    "天成", "金桥", "佳和", "顺达", "长盛", "远航", "康达", "汇通", "中南", "新华", "锦程", "博远",
    "兴隆", "永安", "正邦", "凯旋",
];

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "高", "彭", "邓", "曾", "谢", "熊", "万", "欧阳",
];

const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "建", "国", "志", "文", "红", "玲", "斌", "辉",
    "鹏", "婷", "雪", "颖", "浩", "宇",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::city::capitals;
    use crate::json::record_to_line;
    use credex_core::date::parse_date;
    use credex_core::ident::{parse_id_number, parse_uscc};
    use credex_core::rules::Rules;
    use credex_core::validate::{Mode, Validator};

    fn today() -> Date {
        parse_date("2026-05-20").expect("a date")
    }

    #[test]
    fn a_thousand_records_per_city_validate() {
        let cities = capitals();
        let rules = Rules::for_members(cities.iter().map(|c| (&*c.id, &*c.division)));
        for city in cities {
            let validator = Validator {
                catalogue: Catalogue::builtin(),
                rules: &rules,
                mode: Mode::Publish,
                origin: &city.id,
                today: today(),
            };
            let mut generator = Generator::new(&city, 7, today());
            for _ in 0..1000 {
                let record = generator.record();
                if let Err(e) = validator.validate(&record) {
                    panic!("{e}: {}", record_to_line(&record));
                }
            }
        }
        for (city, category) in [
            ("changsha", JOINT_CHANGSHA_CATEGORY),
            ("wuhan", JOINT_WUHAN_CATEGORY),
        ] {
            let city: crate::city::CitySpec = city.parse().expect("a capital");
            let validator = Validator {
                catalogue: Catalogue::builtin(),
                rules: &rules,
                mode: Mode::Publish,
                origin: &city.id,
                today: today(),
            };
            let record = Generator::new(&city, 1, today()).black_listing(joint_subject(), category);
            validator
                .validate(&record)
                .expect("the joint sanction validates");
            validator
                .validate(&repaired(&record, today()))
                .expect("its repair validates");
        }
    }

    #[test]
    fn covers_every_list_severity_and_subject_kind() {
        let mut generator = Generator::new(&capitals()[0], 7, today());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let r = generator.record();
            let subject = r.subject.as_ref().expect("a subject");
            seen.insert(format!("list {:?}", r.list()));
            seen.insert(format!("severity {:?}", r.severity()));
            seen.insert(format!("subject {:?}", subject.kind()));
            seen.insert(format!(
                "status {:?}",
                r.status.as_ref().expect("a status").kind()
            ));
            let d = r.decision.as_ref().expect("a decision");
            if d.penalty_kinds.iter().any(|k| k == "罚款") {
                assert!(d.fine_fen > 0, "a fine of zero: {}", record_to_line(&r));
            }
            if !subject.uscc.is_empty() {
                let uscc = parse_uscc(&subject.uscc).expect("a valid USCC");
                assert_eq!(uscc.division_code(), "430100");
            }
            if !subject.id_number.is_empty() {
                parse_id_number(&subject.id_number).expect("a valid ID number");
            }
            let from = parse_date(&r.publication.as_ref().expect("a publication").starts_on)
                .expect("a date");
            let to = parse_date(&r.publication.as_ref().expect("a publication").ends_on)
                .expect("a date");
            assert!(
                from <= today() && today() <= to,
                "not in force: {}",
                record_to_line(&r)
            );
        }
        let seen: Vec<_> = seen.into_iter().collect();
        expect_test::expect![[r#"
            [
                "list Black",
                "list Penalty",
                "list Red",
                "list Watch",
                "severity General",
                "severity Minor",
                "severity Serious",
                "severity Unspecified",
                "status Active",
                "status UnderObjection",
                "subject IndividualBusiness",
                "subject LegalPerson",
                "subject NaturalPerson",
            ]
        "#]]
        .assert_debug_eq(&seen);
    }

    #[test]
    fn is_deterministic_from_the_seed() {
        let city = &capitals()[1];
        let a: Vec<_> = (0..5)
            .map({
                let mut g = Generator::new(city, 42, today());
                move |_| g.record()
            })
            .collect();
        let b: Vec<_> = (0..5)
            .map({
                let mut g = Generator::new(city, 42, today());
                move |_| g.record()
            })
            .collect();
        assert_eq!(a, b);
        let c = Generator::new(city, 43, today()).record();
        assert_ne!(a[0], c);
    }

    #[test]
    fn a_sample_record_reads_like_a_disclosure() {
        let mut generator = Generator::new(&capitals()[0], 3, today());
        let penalty = std::iter::repeat_with(|| generator.record())
            .find(|r| {
                r.list() == ListKind::Penalty
                    && r.subject
                        .as_ref()
                        .is_some_and(|s| s.kind() == SubjectKind::LegalPerson)
            })
            .expect("a penalty on a company");
        expect_test::expect![[r#"{"record_id":"changsha-a00482d5e46b99bd","version":1,"subject":{"kind":"SUBJECT_KIND_LEGAL_PERSON","name":"长沙市芙蓉区楚天印染有限公司","uscc":"91430100MAA8JQ8QNQ","legal_representative":{"name":"郭霞","id_number":"430102196209194279"}},"list":"LIST_KIND_PENALTY","category":"environment.administrative_penalty","severity":"SEVERITY_MINOR","authority":{"name":"长沙市生态环境局","uscc":"11430100LMEXTY07BK"},"decision":{"document_number":"长环罚〔2026〕1197号","decided_on":"2026-05-02","legal_basis":"《中华人民共和国大气污染防治法》第九十九条","facts":"超过大气污染物排放标准排放大气污染物","penalty_kinds":["罚款"],"penalty_content":"罚款人民币219000元","fine_fen":"21900000"},"publication":{"starts_on":"2026-05-05","ends_on":"2026-07-19"},"status":{"kind":"STATUS_KIND_ACTIVE"},"data_source":"长沙市生态环境局"}"#]].assert_eq(&record_to_line(&penalty));
        expect_test::expect![[r#"{"record_id":"wuhan-badfe5258d95d2c1","version":1,"subject":{"kind":"SUBJECT_KIND_LEGAL_PERSON","name":"长沙市天心区恒通建设工程有限公司","uscc":"91430100MA4L8Q2K7F","legal_representative":{"name":"周建华","id_number":"430103197806154014"}},"list":"LIST_KIND_BLACK","category":"labour.wage_arrears","severity":"SEVERITY_SERIOUS","authority":{"name":"武汉市人力资源和社会保障局","uscc":"11420100MB7FENMF1G"},"decision":{"document_number":"武人社认〔2025〕1368号","decided_on":"2025-11-19","legal_basis":"《拖欠农民工工资失信联合惩戒对象名单管理暂行办法》第五条","facts":"克扣、无故拖欠农民工工资，数额达到认定拒不支付劳动报酬罪数额标准","sanction_measures":["限制参加评优评先","限制取得政府供应土地"]},"publication":{"starts_on":"2025-12-09","ends_on":"2028-03-01"},"status":{"kind":"STATUS_KIND_ACTIVE"},"data_source":"武汉市人力资源和社会保障局"}"#]].assert_eq(&record_to_line(&Generator::new(&capitals()[1], 3, today()).black_listing(joint_subject(), JOINT_WUHAN_CATEGORY)));
    }
}
