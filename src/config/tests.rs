//! Parsing and validating whole config files.

use super::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/pushd/config.toml"))
}

#[test]
fn defaults_and_relative_paths() {
    let c = parse("").unwrap();
    assert_eq!(c.dispatch.rate_per_minute, 100);
    assert_eq!(c.database_path, PathBuf::from("/etc/pushd/data/pushd.db"));
    assert_eq!(c.socket_path, PathBuf::from("/etc/pushd/data/pushd.sock"));
    assert_eq!(c.scripts.dir, PathBuf::from("/etc/pushd/scripts"));
}

#[test]
fn unknown_key_names_key_and_line() {
    let err = parse("[dispatch]\nrate_per_minute = 10\nrate_per_mintue = 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rate_per_mintue"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn malformed_urls_name_the_key_and_a_good_one_parses() {
    let tg = "[channels.tg]\nkind = \"telegram\"\ntoken = \"t\"\ninsecure_webhooks = true\n";
    for bad in [
        "ftp://example.com",
        "http://[::1",
        "http://exa mple.com",
        "example.com",
    ] {
        let err = parse(&format!("{tg}base_url = \"{bad}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("channels.tg.base_url"), "{bad}: {err}");
        assert!(err.contains("must be an http(s) URL"), "{bad}: {err}");
    }
    parse(&format!("{tg}base_url = \"http://127.0.0.1:8080/api\"\n")).unwrap();
}

#[test]
fn channel_rules_per_kind() {
    let err = parse("[channels.tg]\nkind = \"telegram\"\nphone_number_id = \"1\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("channels.tg.phone_number_id"), "{err}");
    let err = parse("[channels.tg]\nkind = \"telegram\"\ntoken = \"t\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("secret_token"), "{err}");
    assert!(err.contains("insecure_webhooks"), "{err}");
    let c = parse("[channels.tg]\nkind = \"telegram\"\ntoken = \"t\"\ninsecure_webhooks = true\n")
        .unwrap();
    assert_eq!(c.channels["tg"].secrets.token, Some(Secret::new("t")));
}

#[test]
fn secrets_from_env_and_never_printed() {
    // SAFETY: test-local variable name, no other thread reads it.
    unsafe { std::env::set_var("PUSHD_TEST_SLACK_TOKEN_XYZ", "xoxb-secret-value") };
    let c = parse(
        "[channels.sl]\nkind = \"slack\"\ntoken_env = \"PUSHD_TEST_SLACK_TOKEN_XYZ\"\nsigning_secret = \"sig\"\n",
    )
    .unwrap();
    let ch = &c.channels["sl"];
    assert_eq!(
        ch.secrets.token.as_ref().unwrap().expose(),
        "xoxb-secret-value"
    );
    assert!(!format!("{:?}", ch.secrets).contains("xoxb-secret-value"));
    let err = parse("[channels.sl]\nkind = \"slack\"\ntoken_env = \"PUSHD_NOPE_NOT_SET\"\nsigning_secret = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("PUSHD_NOPE_NOT_SET"), "{err}");
}

/// The key of a bad line is quoted, its value never: not for a misspelt
/// key, a wrong type, an unknown variant, nor a validation error.
#[test]
fn errors_name_the_key_and_never_quote_its_value() {
    let wx = "[channels.wx]\nkind = \"wechat\"\napp_id = \"wx1\"\napp_secret = \"s\"\nverify_token = \"t\"\n";
    let tg = "[channels.tg]\nkind = \"telegram\"\ninsecure_webhooks = true\ntoken = \"t\"\n";
    for (text, key, value) in [
        (format!("{tg}tokn = \"s3cr3t-AAA\"\n"), "tokn", "s3cr3t-AAA"),
        (
            format!("{wx}app_secert = 'lit3ral-BBB'\n"),
            "app_secert",
            "lit3ral-BBB",
        ),
        (
            format!("{tg}rate_per_second = \"str-CCC\"\n"),
            "rate_per_second",
            "str-CCC",
        ),
        (
            format!("{tg}rate_per_second = \"quo\\\"te-DDD\"\n"),
            "rate_per_second",
            "te-DDD",
        ),
        (
            format!("{wx}encryption = \"variant-EEE\"\n"),
            "encryption",
            "variant-EEE",
        ),
        (format!("{tg}timeout = \"dur-FFF\"\n"), "timeout", "dur-FFF"),
        (format!("{tg}seed = 987654321\n"), "seed", "987654321"),
        (
            format!("{wx}encoding_aes_key = \"aes-GGG\"\n"),
            "encoding_aes_key",
            "aes-GGG",
        ),
        (
            format!("{tg}base_url = \"https://u:pw-HHH@[::1\"\n"),
            "base_url",
            "pw-HHH",
        ),
        (
            "[control]\nmode = \"mode-III\"\n".into(),
            "control.mode",
            "mode-III",
        ),
        (
            "[http]\nlisten = \"listen-JJJ\"\n".into(),
            "http.listen",
            "listen-JJJ",
        ),
    ] {
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
        assert!(!err.contains(value), "{key} quotes its value: {err}");
    }
    // A misspelt key still says which and where.
    let err = parse(&format!("{tg}tokn = \"x\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 5") && err.contains("`tokn = …`"),
        "{err}"
    );
    assert!(err.contains("unknown field `tokn`"), "{err}");
}

#[test]
fn wechat_safe_mode_keys() {
    let wx = "[channels.wx]\nkind = \"wechat\"\napp_id = \"wx1\"\napp_secret = \"s\"\nverify_token = \"t\"\n";
    let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let c = parse(wx).unwrap();
    assert_eq!(
        c.channels["wx"].wechat_encryption(),
        WechatEncryption::Plaintext
    );
    let c = parse(&format!("{wx}encoding_aes_key = \"{key}\"\n")).unwrap();
    let ch = &c.channels["wx"];
    assert_eq!(ch.wechat_encryption(), WechatEncryption::Compatible);
    assert!(
        ch.secrets.all().any(|s| s.expose() == key),
        "scrubbed like any secret"
    );
    let c = parse(&format!(
        "{wx}encoding_aes_key = \"{key}\"\nencryption = \"safe\"\n"
    ))
    .unwrap();
    assert_eq!(c.channels["wx"].wechat_encryption(), WechatEncryption::Safe);
    let err = parse(&format!("{wx}encryption = \"safe\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("channels.wx.encoding_aes_key") && err.contains("EncodingAESKey"),
        "{err}"
    );
    let err = parse(&format!("{wx}encoding_aes_key = \"{}\"\n", &key[1..]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("43-character"), "{err}");
    let err = parse("[channels.tg]\nkind = \"telegram\"\ntoken = \"t\"\ninsecure_webhooks = true\nencryption = \"safe\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("channels.tg.encryption") && err.contains("not a setting"),
        "{err}"
    );
}

#[test]
fn panel_on_a_public_address_needs_allow_remote() {
    let err = parse("[http]\nlisten = \"0.0.0.0:8787\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("panel.allow_remote"), "{err}");
    assert!(err.contains("0.0.0.0:8787"), "{err}");
    parse("[http]\nlisten = \"0.0.0.0:8787\"\n[panel]\nallow_remote = true\n").unwrap();
    parse("[http]\nlisten = \"0.0.0.0:8787\"\n[panel]\nenabled = false\n").unwrap();
    let c = parse("[http]\nlisten = \"[::1]:8787\"\n").unwrap();
    assert_eq!(c.panel.session_ttl, Duration::from_secs(12 * 3600));
}

#[test]
fn restart_required_settings() {
    let a = parse("").unwrap();
    let b =
        parse("[control]\nsocket = \"/tmp/x.sock\"\n[dispatch]\nrate_per_minute = 5\n").unwrap();
    assert_eq!(a.restart_required(&b), vec!["control.socket"]);
    assert!(a.changed_sections(&b).contains(&"dispatch".to_string()));
}
