//! Member cities as the command line names them: `id:名称:division`, and the four
//! Middle Yangtze capitals that `consortium init` and `demo` use by default.

use std::fmt;
use std::str::FromStr;

/// A member city: its id (in origins, certificate SANs and folder names), its Chinese
/// name without the trailing 市, and its six-digit administrative division code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitySpec {
    pub id: String,
    pub name: String,
    pub division: String,
}

impl CitySpec {
    fn new(id: &str, name: &str, division: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            division: division.to_owned(),
        }
    }
}

/// Changsha, Wuhan, Hefei and Nanchang, in that order.
pub fn capitals() -> Vec<CitySpec> {
    vec![
        CitySpec::new("changsha", "长沙", "430100"),
        CitySpec::new("wuhan", "武汉", "420100"),
        CitySpec::new("hefei", "合肥", "340100"),
        CitySpec::new("nanchang", "南昌", "360100"),
    ]
}

/// Checks a city id: it becomes a path segment of SPIFFE URIs, a checkpoint origin and a
/// folder name, so it is lowercase ASCII letters, digits and `-`, starting with a letter.
pub fn check_city_id(id: &str) -> Result<(), String> {
    let ok = id.len() <= 32
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "city id {id:?} must be 1-32 lowercase ASCII letters, digits or '-', starting with a letter"
        ))
    }
}

impl FromStr for CitySpec {
    type Err = String;

    /// `id:名称:division`, e.g. `zhuzhou:株洲:430200`; a bare id names one of the capitals.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let spec = match parts[..] {
            [id] => {
                return capitals().into_iter().find(|c| c.id == id).ok_or_else(|| {
                    format!("{id:?} is not one of the default cities; give it as id:名称:division, e.g. zhuzhou:株洲:430200")
                });
            }
            [id, name, division] => CitySpec::new(id, name.trim_end_matches('市'), division),
            _ => {
                return Err(format!(
                    "{s:?} is not of the form id:名称:division, e.g. zhuzhou:株洲:430200"
                ));
            }
        };
        check_city_id(&spec.id)?;
        if spec.name.is_empty() {
            return Err(format!("city {}: the name is empty", spec.id));
        }
        if spec.division.len() != 6 || !spec.division.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "city {}: division code {:?} is not six digits",
                spec.id, spec.division
            ));
        }
        Ok(spec)
    }
}

impl fmt::Display for CitySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.id, self.name, self.division)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn check(input: &str, expect: Expect) {
        let got = match input.parse::<CitySpec>() {
            Ok(c) => format!("ok {c}"),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn parses_city_specs() {
        check("wuhan", expect!["ok wuhan:武汉:420100"]);
        check("zhuzhou:株洲市:430200", expect!["ok zhuzhou:株洲:430200"]);
        check(
            "zhuzhou",
            expect![[
                r#"err "zhuzhou" is not one of the default cities; give it as id:名称:division, e.g. zhuzhou:株洲:430200"#
            ]],
        );
        check(
            "Zhuzhou:株洲:430200",
            expect![[
                r#"err city id "Zhuzhou" must be 1-32 lowercase ASCII letters, digits or '-', starting with a letter"#
            ]],
        );
        check(
            "zhuzhou::430200",
            expect!["err city zhuzhou: the name is empty"],
        );
        check(
            "zhuzhou:株洲:4302",
            expect![[r#"err city zhuzhou: division code "4302" is not six digits"#]],
        );
        check(
            "a:b",
            expect![[r#"err "a:b" is not of the form id:名称:division, e.g. zhuzhou:株洲:430200"#]],
        );
    }
}
