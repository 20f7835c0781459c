//! Config parsing never panics, whatever the text.

use super::*;
use crate::model::Platform;
use proptest::prelude::*;
use std::path::Path;

const VALID: &str = include_str!("../../config.toml");

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary text: a config or an error naming the file, never a panic.
    #[test]
    fn parse_never_panics(text in "\\PC{0,400}") {
        if let Err(e) = Config::parse(&text, Path::new("/x/config.toml")) {
            prop_assert!(e.to_string().contains("/x/config.toml"));
        }
    }

    /// The shipped config with one line dropped or garbled.
    #[test]
    fn mutated_shipped_config(line in 0usize..200, garbage in "[=\\[\\]\"a-z0-9 ._-]{0,20}", drop in any::<bool>()) {
        let mut lines: Vec<String> = VALID.lines().map(String::from).collect();
        let i = line % lines.len();
        if drop { lines.remove(i); } else { lines[i] = garbage; }
        let text = lines.join("\n");
        if let Err(e) = Config::parse(&text, Path::new("/x/config.toml")) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn the_shipped_config_is_valid() {
    let c = Config::parse(VALID, Path::new("/x/config.toml")).unwrap();
    assert_eq!(c.dispatch.rate_per_minute, 100);
    assert_eq!(c.channels["sim"].kind, Platform::Simulator);
}
