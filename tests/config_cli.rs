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
