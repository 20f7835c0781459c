//! `[channels.<name>]`: one table per channel instance, the keys each kind
//! takes, and its secrets read from the file or the environment.

use super::Secret;
use crate::model::Platform;
use crate::util::duration;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| duration::parse(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Resolved credentials of one channel instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelSecrets {
    pub token: Option<Secret>,
    pub app_secret: Option<Secret>,
    pub verify_token: Option<Secret>,
    pub signing_secret: Option<Secret>,
    pub secret_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    /// WeChat's EncodingAESKey (safe mode), 43 characters of base64.
    pub encoding_aes_key: Option<Secret>,
}

impl ChannelSecrets {
    pub fn all(&self) -> impl Iterator<Item = &Secret> {
        [
            &self.token,
            &self.app_secret,
            &self.verify_token,
            &self.signing_secret,
            &self.secret_token,
            &self.webhook_secret,
            &self.encoding_aes_key,
        ]
        .into_iter()
        .flatten()
    }
}

/// How a WeChat channel takes callbacks, as chosen in the WeChat console
/// (消息加解密方式).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WechatEncryption {
    /// 明文模式: plaintext bodies only, signed by `signature` (the body is not signed).
    Plaintext,
    /// 兼容模式: plaintext or encrypted bodies; encrypted ones are decrypted
    /// and checked with `msg_signature`, which covers the body.
    Compatible,
    /// 安全模式: encrypted bodies only; a plaintext callback is refused.
    Safe,
}

/// One `[channels.<name>]` table: a named instance of a platform.
/// Which keys apply depends on `kind`; see config.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub kind: Platform,
    /// Platform API root, for tests and proxies.
    pub base_url: Option<String>,
    /// Graph API version for Meta platforms (default v21.0).
    pub api_version: Option<String>,
    /// Sends per second on this instance (default: the platform's documented limit).
    pub rate_per_second: Option<f64>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Free-form messages are allowed this long after the member's last inbound message.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub service_window: Option<Duration>,
    #[serde(default)]
    pub insecure_webhooks: bool,

    pub phone_number_id: Option<String>,
    pub page_id: Option<String>,
    pub app_id: Option<String>,
    pub url: Option<String>,

    pub token: Option<String>,
    pub token_env: Option<String>,
    pub app_secret: Option<String>,
    pub app_secret_env: Option<String>,
    pub verify_token: Option<String>,
    pub verify_token_env: Option<String>,
    pub signing_secret: Option<String>,
    pub signing_secret_env: Option<String>,
    pub secret_token: Option<String>,
    pub secret_token_env: Option<String>,
    pub webhook_secret: Option<String>,
    pub webhook_secret_env: Option<String>,
    pub encoding_aes_key: Option<String>,
    pub encoding_aes_key_env: Option<String>,
    /// WeChat: which callbacks are accepted (default: `compatible` when
    /// `encoding_aes_key` is set, else `plaintext`); see [`ChannelConfig::wechat_encryption`].
    pub encryption: Option<WechatEncryption>,

    // simulator
    pub seed: Option<u64>,
    pub seed_members: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub latency: Option<Duration>,
    pub block_rate: Option<f64>,
    pub invalid_rate: Option<f64>,
    pub transient_rate: Option<f64>,
    pub rate_limit_rate: Option<f64>,
    pub delivered_rate: Option<f64>,
    pub read_rate: Option<f64>,
    /// Read rates for messages whose text contains a key (the first key
    /// found, in key order), e.g. to try A/B variants:
    /// `read_rate_by_text = { "VIP" = 0.6, "% off" = 0.2 }`.
    pub read_rate_by_text: Option<std::collections::BTreeMap<String, f64>>,
    pub interact_rate: Option<f64>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub receipt_delay: Option<Duration>,

    #[serde(skip)]
    pub secrets: ChannelSecrets,
}

/// Which keys each kind accepts (besides the common ones), and which secrets
/// its webhooks need.
struct KindRules {
    keys: &'static [&'static str],
    required: &'static [&'static str],
    webhook_secrets: &'static [&'static str],
}

const COMMON_KEYS: &[&str] = &[
    "kind",
    "base_url",
    "rate_per_second",
    "timeout",
    "service_window",
    "insecure_webhooks",
];

fn rules(kind: Platform) -> KindRules {
    match kind {
        Platform::Whatsapp => KindRules {
            keys: &[
                "api_version",
                "phone_number_id",
                "token",
                "app_secret",
                "verify_token",
            ],
            required: &["phone_number_id", "token"],
            webhook_secrets: &["app_secret", "verify_token"],
        },
        Platform::Messenger | Platform::Instagram => KindRules {
            keys: &[
                "api_version",
                "page_id",
                "token",
                "app_secret",
                "verify_token",
            ],
            required: &["token"],
            webhook_secrets: &["app_secret", "verify_token"],
        },
        Platform::Telegram => KindRules {
            keys: &["token", "secret_token"],
            required: &["token"],
            webhook_secrets: &["secret_token"],
        },
        Platform::Slack => KindRules {
            keys: &["token", "signing_secret"],
            required: &["token"],
            webhook_secrets: &["signing_secret"],
        },
        Platform::Wechat => KindRules {
            keys: &[
                "app_id",
                "app_secret",
                "verify_token",
                "encoding_aes_key",
                "encryption",
            ],
            required: &["app_id", "app_secret"],
            webhook_secrets: &["verify_token"],
        },
        Platform::Webchat | Platform::Custom => KindRules {
            keys: &["url", "webhook_secret"],
            required: &["url"],
            webhook_secrets: &["webhook_secret"],
        },
        Platform::Simulator => KindRules {
            keys: &[
                "seed",
                "seed_members",
                "latency",
                "block_rate",
                "invalid_rate",
                "transient_rate",
                "rate_limit_rate",
                "delivered_rate",
                "read_rate",
                "read_rate_by_text",
                "interact_rate",
                "receipt_delay",
            ],
            required: &[],
            webhook_secrets: &[],
        },
    }
}

impl ChannelConfig {
    pub fn secrets(&self) -> &ChannelSecrets {
        &self.secrets
    }

    /// The keys present in this table (for the per-kind check).
    fn present_keys(&self) -> Vec<&'static str> {
        let mut keys = vec!["kind"];
        macro_rules! present {
            ($($field:ident),*) => {$(
                if self.$field.is_some() { keys.push(stringify!($field)); }
            )*};
        }
        present!(
            base_url,
            api_version,
            rate_per_second,
            timeout,
            service_window,
            phone_number_id,
            page_id,
            app_id,
            url,
            seed,
            seed_members,
            latency,
            block_rate,
            invalid_rate,
            transient_rate,
            rate_limit_rate,
            delivered_rate,
            read_rate,
            read_rate_by_text,
            interact_rate,
            receipt_delay,
            encryption
        );
        macro_rules! secret_present {
            ($($field:ident / $env:ident),*) => {$(
                if self.$field.is_some() || self.$env.is_some() { keys.push(stringify!($field)); }
            )*};
        }
        secret_present!(
            token / token_env,
            app_secret / app_secret_env,
            verify_token / verify_token_env,
            signing_secret / signing_secret_env,
            secret_token / secret_token_env,
            webhook_secret / webhook_secret_env,
            encoding_aes_key / encoding_aes_key_env
        );
        keys
    }

    /// Reads secrets from the file or the environment (`*_env`).
    fn resolve_secrets(&mut self, field: &str) -> Result<(), (String, String)> {
        fn pick(
            field: &str,
            name: &str,
            inline: &Option<String>,
            env: &Option<String>,
        ) -> Result<Option<Secret>, (String, String)> {
            match (inline, env) {
                (Some(_), Some(_)) => Err((
                    format!("{field}.{name}"),
                    format!("set either `{name}` or `{name}_env`, not both"),
                )),
                (Some(v), None) => Ok(Some(Secret::new(v.clone()))),
                (None, Some(var)) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
                    _ => Err((
                        format!("{field}.{name}_env"),
                        format!("environment variable {var} is not set (or empty)"),
                    )),
                },
                (None, None) => Ok(None),
            }
        }
        self.secrets = ChannelSecrets {
            token: pick(field, "token", &self.token, &self.token_env)?,
            app_secret: pick(field, "app_secret", &self.app_secret, &self.app_secret_env)?,
            verify_token: pick(
                field,
                "verify_token",
                &self.verify_token,
                &self.verify_token_env,
            )?,
            signing_secret: pick(
                field,
                "signing_secret",
                &self.signing_secret,
                &self.signing_secret_env,
            )?,
            secret_token: pick(
                field,
                "secret_token",
                &self.secret_token,
                &self.secret_token_env,
            )?,
            webhook_secret: pick(
                field,
                "webhook_secret",
                &self.webhook_secret,
                &self.webhook_secret_env,
            )?,
            encoding_aes_key: pick(
                field,
                "encoding_aes_key",
                &self.encoding_aes_key,
                &self.encoding_aes_key_env,
            )?,
        };
        Ok(())
    }

    /// Which WeChat callbacks this channel accepts: `encryption` when set,
    /// else `compatible` when an EncodingAESKey is configured, else `plaintext`.
    pub fn wechat_encryption(&self) -> WechatEncryption {
        match (self.encryption, &self.secrets.encoding_aes_key) {
            (Some(mode), _) => mode,
            (None, Some(_)) => WechatEncryption::Compatible,
            (None, None) => WechatEncryption::Plaintext,
        }
    }

    /// WeChat safe mode needs the EncodingAESKey (that decodes to an AES-256
    /// key) and the app id the messages are encrypted for.
    fn validate_wechat(&self, field: &str) -> Result<(), (String, String)> {
        if let Some(key) = &self.secrets.encoding_aes_key
            && !encoding_aes_key_shape(key.expose())
        {
            return Err((
                format!("{field}.encoding_aes_key"),
                "must be the 43-character EncodingAESKey shown in the WeChat console (消息加解密密钥)".into(),
            ));
        }
        let mode = self.wechat_encryption();
        if mode != WechatEncryption::Plaintext && self.secrets.encoding_aes_key.is_none() {
            return Err((
                format!("{field}.encoding_aes_key"),
                format!(
                    "encryption = \"{}\" needs the EncodingAESKey from the WeChat console (set `encoding_aes_key` or `encoding_aes_key_env`)",
                    if mode == WechatEncryption::Safe {
                        "safe"
                    } else {
                        "compatible"
                    }
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn validate(&mut self, name: &str) -> Result<(), (String, String)> {
        let field = format!("channels.{name}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err((
                field,
                "channel names may use only letters, digits, '_' and '-'".into(),
            ));
        }
        let r = rules(self.kind);
        for key in self.present_keys() {
            if !COMMON_KEYS.contains(&key) && !r.keys.contains(&key) {
                return Err((
                    format!("{field}.{key}"),
                    format!(
                        "not a setting of kind \"{}\" (it takes: {})",
                        self.kind,
                        r.keys.join(", ")
                    ),
                ));
            }
        }
        self.resolve_secrets(&field)?;
        if self.kind == Platform::Wechat {
            self.validate_wechat(&field)?;
        }
        let present = self.present_keys();
        for req in r.required {
            if !present.contains(req) {
                return Err((
                    format!("{field}.{req}"),
                    format!(
                        "required for kind \"{}\" (secrets may be given as `{req}_env = \"VAR\"`)",
                        self.kind
                    ),
                ));
            }
        }
        if !self.insecure_webhooks {
            for s in r.webhook_secrets {
                if !present.contains(s) {
                    return Err((
                        format!("{field}.{s}"),
                        format!(
                            "webhooks of kind \"{}\" are checked with `{s}`; set it (or `{s}_env`), or accept unsigned webhooks with `insecure_webhooks = true`",
                            self.kind
                        ),
                    ));
                }
            }
        }
        if let Some(r) = self.rate_per_second
            && !(r > 0.0 && r.is_finite())
        {
            return Err((
                format!("{field}.rate_per_second"),
                "must be a positive number".into(),
            ));
        }
        for (key, v) in [
            ("block_rate", self.block_rate),
            ("invalid_rate", self.invalid_rate),
            ("transient_rate", self.transient_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("delivered_rate", self.delivered_rate),
            ("read_rate", self.read_rate),
            ("interact_rate", self.interact_rate),
        ]
        .into_iter()
        .chain(
            self.read_rate_by_text
                .iter()
                .flatten()
                .map(|(_, v)| ("read_rate_by_text", Some(*v))),
        ) {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err((
                    format!("{field}.{key}"),
                    "must be a share between 0.0 and 1.0".into(),
                ));
            }
        }
        for (key, url) in [("base_url", &self.base_url), ("url", &self.url)] {
            if let Some(u) = url
                && !reqwest::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https"))
            {
                return Err((
                    format!("{field}.{key}"),
                    "must be an http(s) URL like \"https://api.example.com\"".into(),
                ));
            }
        }
        Ok(())
    }
}

/// WeChat's EncodingAESKey as the console shows it: 43 letters and digits
/// (base64 of the 32-byte AES key without its padding).
pub fn encoding_aes_key_shape(text: &str) -> bool {
    let text = text.trim();
    text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric())
}
