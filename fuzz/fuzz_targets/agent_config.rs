//! The stand-alone agent's inputs: its TOML file (`standalone::parse_file`) and the facts JSON a facts
//! command prints (`standalone::parse_facts_json`). Never a panic; a configuration that parses
//! serialises back to TOML that parses to the same configuration; facts that parse and validate make
//! a security query the collector accepts.
#![no_main]

use beacon_agent::standalone::{FactsSource, parse_facts_json, parse_file};
use beacon_agent::{Config, HostFacts};
use libfuzzer_sys::fuzz_target;

fn facts_make_a_valid_query(f: &HostFacts) {
    if f.validate().is_ok() {
        // The same facts with another diagnostic id and a last check time still validate.
        let mut g = f.clone();
        g.teams = Some(u64::MAX);
        g.users = Some(0);
        assert!(g.validate().is_ok(), "counts changed validity: {g:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        if let Ok(file) = parse_file(text) {
            let toml_text = toml::to_string(&file.agent).expect("a parsed config serialises");
            let back: Config = toml::from_str(&toml_text)
                .unwrap_or_else(|e| panic!("{toml_text:?} does not parse back: {e}"));
            assert_eq!(back, file.agent, "{toml_text}");
            let _ = file.agent.switches(&|_| None);
            let _ = file.agent.switches(&|_| Some("1".into()));
            if let FactsSource::Fixed(f) = &file.facts {
                assert!(f.validate().is_ok());
                facts_make_a_valid_query(f);
            }
        }
    } else if let Ok(f) = parse_facts_json(rest) {
        facts_make_a_valid_query(&f);
        let json = serde_json::to_vec(&f).expect("facts serialise");
        assert_eq!(parse_facts_json(&json).expect("facts parse back"), f);
    }
});
