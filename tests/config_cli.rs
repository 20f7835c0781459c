//! Config loading as the operator meets it: errors name the key and line.

use crate::support::*;

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let d = TestDaemon::prepare(&base_config("[dispatch]\nrate_per_minutes = 10\n"));
    let mut child = d.spawn_raw();
    let status = wait_exit(&mut child, std::time::Duration::from_secs(30));
    assert!(!status.success());
    let log = d.log();
    assert!(log.contains("rate_per_minutes"), "{log}");
    assert!(log.contains("line 8"), "{log}");
    assert!(!d.socket.exists());
}

#[test]
fn missing_secret_env_is_an_error_naming_the_variable() {
    let d = TestDaemon::prepare(&base_config(
        "[channels.tg]\nkind = \"telegram\"\ntoken_env = \"PUSHD_TEST_UNSET_TOKEN_VAR\"\nsecret_token = \"s\"\n",
    ));
    let mut child = d.spawn_raw();
    assert!(!wait_exit(&mut child, std::time::Duration::from_secs(30)).success());
    assert!(
        d.log().contains("PUSHD_TEST_UNSET_TOKEN_VAR"),
        "{}",
        d.log()
    );
}

/// A config error names the key it is about and its line, never the value
/// written there: whether a value is a credential cannot be told from a
/// misspelt key (`tokn`), nor from a key whose value has the wrong type.
/// Each bad edit is reloaded into a running daemon; the values must appear
/// in none of the reload reply, `status`, the log and the audit trail.
#[test]
fn misspelt_secret_keys_never_leak_their_values() {
    let original = base_config("[dispatch]\nrate_per_minute = 0\n");
    let d = TestDaemon::start(&original);
    let wechat = "[channels.wx]\nkind = \"wechat\"\napp_id = \"wx1\"\napp_secret = \"s\"\nverify_token = \"t\"\n";
    let telegram = "[channels.tg]\nkind = \"telegram\"\ninsecure_webhooks = true\n";
    // (edit appended to the config, the key the error must name, the secret)
    let cases = [
        (
            format!("{telegram}tokn = \"123456:AAsecretTOKNvalue01\"\n"),
            "tokn",
            "AAsecretTOKNvalue01",
        ),
        (
            format!("{wechat}app_secert = \"secretAPPSECERTvalue02\"\n"),
            "app_secert",
            "secretAPPSECERTvalue02",
        ),
        (
            format!("{telegram}token = \"t\"\nsecrettoken = \"secretTOKENvalue03\"\n"),
            "secrettoken",
            "secretTOKENvalue03",
        ),
        (
            format!("{telegram}tokn = \"\"\"\nsecretMULTILINEvalue04\"\"\"\n"),
            "tokn",
            "secretMULTILINEvalue04",
        ),
        (
            format!("{telegram}token = \"t\"\nrate_per_second = \"secretWRONGTYPEvalue05\"\n"),
            "rate_per_second",
            "secretWRONGTYPEvalue05",
        ),
        (
            format!("{wechat}encryption = \"secretVARIANTvalue06\"\n"),
            "encryption",
            "secretVARIANTvalue06",
        ),
        (
            format!("{wechat}encoding_aes_key = \"secretAESKEYvalue07\"\n"),
            "encoding_aes_key",
            "secretAESKEYvalue07",
        ),
        (
            format!("{telegram}token = \"t\"\nbase_url = \"https://user:secretURLvalue08@[::1\"\n"),
            "base_url",
            "secretURLvalue08",
        ),
        (
            format!("{telegram}token = \"t\"\ntimeout = \"secretDURATIONvalue09\"\n"),
            "timeout",
            "secretDURATIONvalue09",
        ),
        (
            "[receipts]\nopt_out_keywords = \"secretSTRINGvalue10\"\n".to_string(),
            "opt_out_keywords",
            "secretSTRINGvalue10",
        ),
    ];
    let mut replies = String::new();
    for (edit, key, value) in &cases {
        std::fs::write(&d.config_path, format!("{original}{edit}")).unwrap();
        let v = d.request(r#"{"cmd":"reload"}"#);
        assert_eq!(v["data"]["config"]["ok"], false, "{key}: {v}");
        let errors = v["data"]["config"]["errors"].to_string();
        assert!(
            errors.contains(key),
            "{key}: the error must name the key: {errors}"
        );
        assert!(
            !errors.contains(value),
            "{key}: the error quotes the value: {errors}"
        );
        replies.push_str(&v.to_string());
    }
    let status = d.status().to_string();
    let log = d.log();
    let audit = strings(&d.db(), "SELECT coalesce(detail, '') FROM audit").join("\n");
    assert!(
        audit.contains("tokn"),
        "the audit trail records the refusals: {audit}"
    );
    for (_, key, value) in &cases {
        for (place, text) in [
            ("reply", &replies),
            ("status", &status),
            ("log", &log),
            ("audit", &audit),
        ] {
            assert!(
                !text.contains(value),
                "{key}: its value is in the {place}:\n{text}"
            );
        }
    }
}
