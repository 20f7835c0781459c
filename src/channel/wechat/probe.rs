//! `pushd channel test` on WeChat: an access-token fetch
//! (`GET /cgi-bin/token?grant_type=client_credential&appid=…&secret=…`),
//! which checks the AppID, the AppSecret and the IP whitelist and sends
//! nothing; and what WeChat's return codes ask the operator to do
//! (developers.weixin.qq.com … Global_Return_Code).
//!
//! The fetched token replaces the cached one: WeChat keeps the previous
//! token valid for five more minutes once a new one is issued, so sends in
//! flight are not hurt, and the cache holds the token WeChat considers
//! current.

use super::WeChat;
use crate::channel::onboard::Probe;
use crate::model::{Platform, SendError};

impl WeChat {
    pub(super) async fn fetch_token_now(&self) -> Probe {
        let call = format!(
            "GET /cgi-bin/token?grant_type=client_credential&appid={}",
            self.app_id
        );
        let mut cached = self.token.lock().await;
        match self.fetch_token().await {
            Ok(fresh) => {
                *cached = Some(fresh);
                Probe::ok(
                    call,
                    format!("WeChat issued an access token for AppID {}", self.app_id),
                    Vec::new(),
                )
            }
            Err(e) => Probe::failed(call, Platform::Wechat, self.scrubber.scrub(e)),
        }
    }
}

/// The address in a 40164 message: "invalid ip 203.0.113.7 ipv6
/// ::ffff:203.0.113.7, not in whitelist rid: …".
fn refused_ip(message: &str) -> Option<&str> {
    let rest = &message[message.find("invalid ip ")? + "invalid ip ".len()..];
    rest.split([' ', ',']).next().filter(|ip| !ip.is_empty())
}

/// What to do about a WeChat return code.
pub(crate) fn advice(err: &SendError) -> Option<String> {
    let text = match err.code.as_str() {
        "40164" => {
            let ip = refused_ip(&err.message).unwrap_or("this server's public address");
            return Some(format!(
                "WeChat refuses calls from {ip}: add it to the IP whitelist (mp.weixin.qq.com → 设置与开发 Settings and Development → 基本配置 Basic configuration → IP白名单 IP whitelist), then test again."
            ));
        }
        "40001" | "40125" => {
            "WeChat refused the AppSecret: copy it from 设置与开发 → 基本配置 → AppSecret (reset it there if nobody has it; the old one then stops working) into `app_secret` (or `app_secret_env`) and run `pushd reload`."
        }
        "40013" => {
            "WeChat knows no such AppID: `app_id` must be the AppID (wx…) on 设置与开发 → 基本配置 of this Official Account; then run `pushd reload`."
        }
        "41004" => {
            "No AppSecret reached WeChat: set `app_secret` (or `app_secret_env`) and run `pushd reload`."
        }
        "40243" => {
            "The AppSecret is frozen: unfreeze it on 设置与开发 → 基本配置, then test again."
        }
        "89501" | "89503" | "89506" | "89507" => {
            "The Official Account's administrator must approve calls from this IP (WeChat sent them a request to confirm): have them confirm it, or add the IP to the IP whitelist."
        }
        "48001" => {
            "This account may not use the customer-service message API: it needs a verified (认证) service account, with the permission granted under 设置与开发 → 接口权限 (API permissions)."
        }
        "45015" => {
            "This user has not written to the Official Account in the last 48 hours (or unfollowed it): have them send a message, then test again."
        }
        "45047" => {
            "The reply quota for this user's last message is used up: wait until they write again."
        }
        "43004" => "This user does not follow the Official Account: test with a follower.",
        "40003" => {
            "No such OpenID for this account: OpenIDs are per Official Account, so use the FromUserName of a message this account received (`pushd events` shows it)."
        }
        "45009" => {
            "The account's daily API quota is used up: wait until tomorrow, or reset the quota in the console."
        }
        "-1" => "WeChat is busy: test again in a moment.",
        _ => return None,
    };
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorClass;

    #[test]
    fn whitelist_advice_names_the_ip() {
        let e = SendError::new(
            ErrorClass::Auth,
            "40164",
            "cannot get an access token: invalid ip 101.45.43.1 ipv6 ::ffff:101.45.43.1, not in whitelist rid: 654e0b13",
        );
        assert!(
            advice(&e)
                .unwrap()
                .starts_with("WeChat refuses calls from 101.45.43.1:")
        );
        assert_eq!(refused_ip("nothing"), None);
    }
}
