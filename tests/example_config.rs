//! The shipped example config must parse, and so must every key in it once uncommented,
//! so that the documentation cannot drift from the code (spotifyd's test_example_config).

use std::path::Path;

use paysay::config::Config;

const EXAMPLE: &str = include_str!("../config.example.toml");

#[test]
fn example_config_parses_as_shipped() {
    let config = Config::parse(EXAMPLE, Path::new("config.example.toml")).unwrap();
    assert_eq!(
        config,
        Config::default(),
        "the example's active keys must be the defaults"
    );
}

#[test]
fn every_commented_key_parses_when_uncommented() {
    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix('#') {
            // `#key = value` is a key, `#[section]` an optional section (`[mqtt]`, off
            // unless written); `# text` is prose.
            Some(rest) if !rest.starts_with(' ') && rest.contains('=') => rest.to_string(),
            Some(rest) if rest.starts_with('[') => rest.to_string(),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let keys = EXAMPLE
        .lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("# ") && l.contains('='))
        .count();
    assert!(keys >= 30, "expected every key documented, found {keys}");
    let config = Config::parse(&uncommented, Path::new("uncommented.toml"))
        .unwrap_or_else(|e| panic!("uncommented example does not parse: {e}"));
    assert_eq!(
        config.wechat.base_url.as_deref(),
        Some("http://127.0.0.1:8080")
    );
    assert_eq!(
        config.speech.system.command.as_deref(),
        Some(Path::new("/usr/bin/espeak-ng"))
    );
    let mqtt = config.mqtt.clone().expect("[mqtt] uncommented");
    assert_eq!(mqtt.client_id.as_deref(), Some("paysay-counter-1"));
    assert_eq!(config.webhooks.len(), 1);
    assert_eq!(config.webhooks[0].name.as_deref(), Some("shop"));
    assert_eq!(
        config.webhooks[0].secret.as_deref(),
        Some("a-long-random-string")
    );
    assert_eq!(
        config.vmq.server.as_deref(),
        Some("pay.example.com/0123456789abcdef")
    );
    assert_eq!(config.sink_names(), ["shop", "vmq", "mqtt"]);
    let notify = config.notify.expect("[notify] uncommented");
    assert_eq!(notify.to, "filehelper");
    assert_eq!(notify.summary_at(), Some(time::macros::time!(22:00)));
}
