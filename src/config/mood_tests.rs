//! Tests of the alert rules' config: a good rule is read as written, and each mistake is
//! refused with its key path.

use crate::config::{Config, ConfigError};

fn problems(toml: &str) -> Vec<String> {
    ConfigError::of(toml)
}

#[test]
fn a_good_rule_passes_and_is_read_as_written() {
    let toml = "[[alerts.rules]]\nfield = \"portfolio.max_drawdown\"\nbelow = -0.05\nlevel = \"critical\"\ncode = \"DRAWDOWN\"\nmessage = \"Drawdown past 5%\"\n";
    assert_eq!(problems(toml), Vec::<String>::new());
    let cfg = Config::parse(toml).unwrap();
    let rule = &cfg.alerts.rules[0];
    assert_eq!(
        (rule.field.as_str(), rule.below, rule.above, rule.level),
        (
            "portfolio.max_drawdown",
            Some(-0.05),
            None,
            super::AlertLevel::Critical
        )
    );
}

#[test]
fn every_bad_rule_is_named_with_its_key_path() {
    let got = problems(concat!(
        "[[alerts.rules]]\nfield = \"portfolio.drawdown\"\nbelow = -0.05\nlevel = \"warning\"\ncode = \"DD\"\nmessage = \"m\"\n",
        "[[alerts.rules]]\nfield = \"market.price\"\nlevel = \"info\"\ncode = \"DD\"\nmessage = \"\"\n",
        "[[alerts.rules]]\nfield = \"market.price\"\nabove = 1.0\nlevel = \"info\"\ncode = \"ENGINE_HALTED\"\nmessage = \"m\"\n",
    ));
    let keys: Vec<&str> = got.iter().map(|p| p.split(": ").next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "alerts.rules[0].field",
            "alerts.rules[1]",
            "alerts.rules[1].code",
            "alerts.rules[1].message",
            "alerts.rules[2].code",
        ],
        "{got:#?}"
    );
    assert!(
        got[0].starts_with("alerts.rules[0].field: \"portfolio.drawdown\" is not a packet field a rule can watch; use one of market.price, "),
        "{got:#?}"
    );
}

#[test]
fn a_rule_with_an_unknown_key_or_level_is_refused_at_parse() {
    let err = Config::parse(
        "[[alerts.rules]]\nfield = \"market.price\"\nbelow = 1.0\nlevel = \"loud\"\ncode = \"X\"\nmessage = \"m\"\n",
    )
    .unwrap_err();
    assert!(err[0].contains("loud"), "{err:?}");
    assert!(
        Config::parse(
            "[[alerts.rules]]\nfield = \"market.price\"\nbellow = 1.0\nlevel = \"info\"\ncode = \"X\"\nmessage = \"m\"\n"
        )
        .is_err()
    );
}

#[test]
fn regime_thresholds_out_of_bounds_are_named() {
    let got = problems(
        "[regime]\nmin_dwell_ms = 700000\ncrash_velocity = 0.01\nbull_velocity = -1.0\ncrash_drawdown = -2.0\nneutral_label = \" \"\n",
    );
    let keys: Vec<&str> = got.iter().map(|p| p.split(": ").next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "regime.min_dwell_ms",
            "regime.crash_velocity",
            "regime.critical_crash_velocity",
            "regime.bull_velocity",
            "regime.crash_drawdown",
            "regime.neutral_label",
        ],
        "{got:#?}"
    );
}
