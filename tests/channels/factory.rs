//! `channel::build` for every kind.

use super::*;
use crate::support::mocks::MockPlatform;
use pushd::model::Platform;

#[tokio::test]
async fn builds_every_http_kind_with_its_platform() {
    for platform in Platform::ALL {
        if platform == Platform::Simulator {
            continue;
        }
        let mock = MockPlatform::start(platform).await;
        let ch = channel(&mock, "");
        assert_eq!(ch.platform(), platform);
        assert_eq!(ch.name(), "ch");
    }
}

#[test]
fn simulator_builds_too() {
    let ch = build("[channels.sim]\nkind = \"simulator\"\n", "sim").expect("simulator builds");
    assert_eq!(ch.platform(), Platform::Simulator);
}

#[test]
fn bad_custom_secret_names_the_setting() {
    let err = build(
        "[channels.hook]\nkind = \"custom\"\nurl = \"http://127.0.0.1:1/x\"\nwebhook_secret = \"whsec_***\"\n",
        "hook",
    )
    .err()
    .expect("invalid base64");
    assert!(err.contains("channels.hook.webhook_secret"), "{err}");
    assert!(!err.contains("whsec_***"), "{err}");
}

/// The mock API the end-to-end tests rely on: a hung request is recorded
/// before it hangs, `wait_for_requests` sees it, and dropping the mock
/// releases it.
#[tokio::test]
async fn mock_records_hung_requests_and_releases_them_on_drop() {
    use crate::support::mocks::Behavior;
    let mock = MockPlatform::start(Platform::Telegram).await;
    let ch = channel(&mock, "");
    mock.set_default(Behavior::Hang);
    let send = tokio::spawn({
        let ch = ch.clone();
        async move { ch.send(&to("31"), &text("hi")).await }
    });
    let seen = mock.wait_for_requests(1, DEADLINE).await;
    assert_eq!(seen[0].recipient.as_deref(), Some("31"));
    drop(mock);
    let err = send
        .await
        .expect("send task")
        .expect_err("the mock answers 503 when dropped");
    assert_eq!(err.class, pushd::model::ErrorClass::Transient);
}
