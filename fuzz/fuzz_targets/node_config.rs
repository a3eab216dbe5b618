//! A node's config file with its `CREDEX_*` environment overrides, against the fixture
//! consortium (handed in, so nothing is read from disk). The input is the config text, then
//! optionally a NUL byte and `NAME=value` lines for the environment. Whatever validates writes
//! back (`to_toml`) as a config that validates to the same.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use credex_fuzz::fixture;
use credex_node::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fn consortium(_: &Path) -> Result<credex_node::config::Consortium, ConfigError> {
    Ok(fixture().consortium.clone())
}

fuzz_target!(|data: &str| {
    let (text, env_text) = data.split_once('\0').unwrap_or((data, ""));
    let env: HashMap<String, String> = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let path = Path::new("/etc/credex/node.toml");
    match Config::parse(text, path, &env, consortium) {
        Ok(config) => {
            let member = config
                .member()
                .expect("a validated config's city is a member");
            assert_eq!(member.city, config.node.city);
            assert!(config.peers.iter().all(|p| p.city != config.node.city));
            let written = config.to_toml().expect("a config writes as TOML");
            let again = Config::parse(&written, path, &HashMap::new(), consortium)
                .unwrap_or_else(|e| panic!("a written config does not read back: {e}\n{written}"));
            assert_eq!(again.to_toml().unwrap(), written);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
