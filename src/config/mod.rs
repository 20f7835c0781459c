//! `config.toml`: typed, defaulted, validated; paths are resolved against the
//! config file's folder and secrets may come from the environment.
//!
//! Unknown keys are errors (with the line), because a misspelt key silently
//! falling back to a default is how operators lose a day.

mod links;
mod live;
mod policy;
mod public_url;
mod toml_error;

pub use links::{LinksConfig, Privacy};
pub use live::LiveConfig;
pub use policy::{Caps, DailyHours, PolicyConfig};
pub use public_url::parse_public_url;

use crate::model::Platform;
use crate::util::duration;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// A credential. Never printed: `Debug`/`Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| duration::parse(&s).map_err(serde::de::Error::custom))
        .transpose()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Folder for the database and socket unless those are given explicitly.
    pub data_dir: PathBuf,
    /// SQLite database file. Default: `<data_dir>/pushd.db`.
    pub database: Option<PathBuf>,
    /// Cap on the database size; writes beyond it fail like a full disk
    /// (sends are held, nothing is lost) until the cap is raised.
    pub max_database_mb: Option<u64>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            data_dir: PathBuf::from("data"),
            database: None,
            max_database_mb: None,
        }
    }
}

/// Who may change state over the control socket, besides root.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum AdminEntry {
    Uid(u32),
    /// `"alice"`, `"uid:1000"`, `"gid:27"` or `"group:ops"`.
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Unix socket path. Default: `<data_dir>/pushd.sock`.
    pub socket: Option<PathBuf>,
    /// Octal file mode of the socket.
    pub mode: String,
    /// Group that owns the socket (so its members can connect).
    pub group: Option<String>,
    pub admins: Vec<AdminEntry>,
    /// The uid the daemon runs as may change state too.
    pub owner_is_admin: bool,
    pub max_line_bytes: usize,
    pub max_connections: usize,
    #[serde(with = "duration::serde_human")]
    pub idle_timeout: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: None,
            mode: "0660".into(),
            group: None,
            admins: Vec::new(),
            owner_is_admin: true,
            max_line_bytes: 1 << 20,
            max_connections: 2048,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl ControlConfig {
    pub fn mode_bits(&self) -> Result<u32, String> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| "must be an octal file mode like \"0660\"".to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    pub listen: String,
    pub max_body_bytes: usize,
    /// Concurrent HTTP connections served; more wait in the accept queue.
    pub max_connections: usize,
    /// A client must finish sending its request within this time.
    #[serde(with = "duration::serde_human")]
    pub request_timeout: Duration,
    /// The public base URL platforms reach the listener at (behind a TLS
    /// proxy), for `pushd channel webhook`.
    pub public_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: "127.0.0.1:8787".into(),
            max_body_bytes: 1 << 20,
            max_connections: 1024,
            request_timeout: Duration::from_secs(10),
            public_url: None,
        }
    }
}

/// `[panel]`: the web push panel served on `[http] listen`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PanelConfig {
    pub enabled: bool,
    /// How long a browser session lasts after its login link is opened.
    #[serde(with = "duration::serde_human")]
    pub session_ttl: Duration,
    /// Serve the panel on a non-loopback `http.listen` (put TLS in front).
    pub allow_remote: bool,
}

impl Default for PanelConfig {
    fn default() -> Self {
        PanelConfig {
            enabled: true,
            session_ttl: Duration::from_secs(12 * 3600),
            allow_remote: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Global send rate over all pushes and channels. 0 = unlimited (benchmarks only).
    pub rate_per_minute: u32,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Attempts per recipient, first try included.
    pub max_attempts: u32,
    #[serde(with = "duration::serde_human")]
    pub backoff_base: Duration,
    #[serde(with = "duration::serde_human")]
    pub backoff_max: Duration,
    /// HTTP timeout for one send to a platform.
    #[serde(with = "duration::serde_human")]
    pub send_timeout: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            rate_per_minute: 100,
            concurrency: 32,
            max_attempts: 5,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            send_timeout: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptsConfig {
    pub dir: PathBuf,
    /// Lua VM instructions one call may run.
    pub instruction_limit: u64,
    /// Wall-clock limit for one call.
    #[serde(with = "duration::serde_human")]
    pub call_timeout: Duration,
    /// Memory one Lua state may hold.
    pub memory_limit_mb: usize,
    /// Lua states per generation (0 = one per CPU core but one).
    pub states: usize,
    /// Quiet period after a change before reloading.
    #[serde(with = "duration::serde_human")]
    pub debounce: Duration,
    /// Locale templates fall back to.
    pub default_locale: String,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        ScriptsConfig {
            dir: PathBuf::from("scripts"),
            instruction_limit: 10_000_000,
            call_timeout: Duration::from_secs(2),
            memory_limit_mb: 64,
            states: 0,
            debounce: Duration::from_millis(300),
            default_locale: "en".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptsConfig {
    /// A reply or click counts for the latest push delivery within this window.
    #[serde(with = "duration::serde_human")]
    pub attribution_window: Duration,
    /// Raw inbound events older than this are deleted.
    #[serde(with = "duration::serde_human")]
    pub event_retention: Duration,
    /// Inbound texts (case-insensitive, whole message) that unsubscribe the member.
    pub opt_out_keywords: Vec<String>,
    /// Inbound texts that subscribe the member again.
    pub opt_in_keywords: Vec<String>,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        ReceiptsConfig {
            attribution_window: Duration::from_secs(72 * 3600),
            event_retention: Duration::from_secs(30 * 86400),
            opt_out_keywords: ["STOP", "UNSUBSCRIBE", "退订"].map(String::from).to_vec(),
            opt_in_keywords: ["START", "SUBSCRIBE"].map(String::from).to_vec(),
        }
    }
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

    fn validate(&mut self, name: &str) -> Result<(), (String, String)> {
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
        ] {
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

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    daemon: DaemonConfig,
    control: ControlConfig,
    http: HttpConfig,
    panel: PanelConfig,
    dispatch: DispatchConfig,
    scripts: ScriptsConfig,
    receipts: ReceiptsConfig,
    links: LinksConfig,
    channels: BTreeMap<String, ChannelConfig>,
    policy: policy::RawPolicy,
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (absolute).
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub control: ControlConfig,
    pub http: HttpConfig,
    pub panel: PanelConfig,
    pub dispatch: DispatchConfig,
    pub scripts: ScriptsConfig,
    pub receipts: ReceiptsConfig,
    pub links: LinksConfig,
    pub channels: BTreeMap<String, ChannelConfig>,
    /// `[policy]`: frequency caps and quiet hours across all pushes.
    pub policy: PolicyConfig,
    /// Resolved: database file, socket path.
    pub database_path: PathBuf,
    pub socket_path: PathBuf,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text as if read from `path` (relative paths resolve against its folder).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let abs = absolute(path);
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: abs.clone(),
            message: toml_error::one_line(&e, text),
        })?;
        let base = abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: abs.clone(),
            field: field.into(),
            message,
        };

        let mut daemon = raw.daemon;
        daemon.data_dir = base.join(&daemon.data_dir);
        let database_path = match &daemon.database {
            Some(p) => base.join(p),
            None => daemon.data_dir.join("pushd.db"),
        };
        let mut control = raw.control;
        let socket_path = match &control.socket {
            Some(p) => base.join(p),
            None => daemon.data_dir.join("pushd.sock"),
        };
        control
            .mode_bits()
            .map_err(|m| invalid("control.mode", m))?;
        if control.max_line_bytes < 1024 {
            return Err(invalid(
                "control.max_line_bytes",
                "must be at least 1024".into(),
            ));
        }
        if control.max_connections == 0 {
            return Err(invalid(
                "control.max_connections",
                "must be at least 1".into(),
            ));
        }
        for a in &control.admins {
            if let AdminEntry::Name(n) = a
                && n.trim().is_empty()
            {
                return Err(invalid("control.admins", "empty entry".into()));
            }
        }
        control.socket = Some(socket_path.clone());

        let mut http = raw.http;
        if let Some(u) = &http.public_url {
            http.public_url = Some(parse_public_url(u).map_err(|m| invalid("http.public_url", m))?);
        }
        if http.enabled && http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                "must be an address like \"127.0.0.1:8787\"".into(),
            ));
        }

        let panel = raw.panel;
        check_panel_exposure(&http, &panel).map_err(|m| invalid("panel.allow_remote", m))?;
        if panel.session_ttl < Duration::from_secs(60) {
            return Err(invalid("panel.session_ttl", "must be at least 1m".into()));
        }

        let dispatch = raw.dispatch;
        if dispatch.concurrency == 0 {
            return Err(invalid("dispatch.concurrency", "must be at least 1".into()));
        }
        if dispatch.max_attempts == 0 {
            return Err(invalid(
                "dispatch.max_attempts",
                "must be at least 1".into(),
            ));
        }

        let mut scripts = raw.scripts;
        scripts.dir = base.join(&scripts.dir);
        if scripts.instruction_limit < 1000 {
            return Err(invalid(
                "scripts.instruction_limit",
                "must be at least 1000".into(),
            ));
        }
        if scripts.memory_limit_mb == 0 {
            return Err(invalid(
                "scripts.memory_limit_mb",
                "must be at least 1".into(),
            ));
        }

        let mut links = raw.links;
        links
            .validate(http.enabled)
            .map_err(|(f, m)| invalid(&f, m))?;

        let mut channels = raw.channels;
        for (name, ch) in channels.iter_mut() {
            ch.validate(name).map_err(|(f, m)| invalid(&f, m))?;
        }
        let policy = PolicyConfig::from_raw(raw.policy).map_err(|(f, m)| invalid(&f, m))?;

        Ok(Config {
            path: abs,
            daemon,
            control,
            http,
            panel,
            dispatch,
            scripts,
            receipts: raw.receipts,
            links,
            channels,
            policy,
            database_path,
            socket_path,
        })
    }

    /// The built-in defaults (a simulator channel), as if read from `path`.
    pub fn default_at(path: &Path) -> Config {
        Config::parse(DEFAULT_CHANNELS, path).expect("built-in default config is valid")
    }

    /// Lua states per generation. By default one per CPU core but one: the
    /// store writer keeps a core busy during a push, and each state is a
    /// thread of its own (on 2 cores, two states beside the writer and the
    /// runtime's workers cost the core bench ~12 % of its throughput).
    pub fn script_states(&self) -> usize {
        if self.scripts.states > 0 {
            self.scripts.states
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get().saturating_sub(1))
                .unwrap_or(1)
                .max(1)
        }
    }

    /// Settings a running daemon cannot change; reported on reload instead of ignored.
    pub fn restart_required(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.database_path != new.database_path || self.daemon.data_dir != new.daemon.data_dir {
            out.push("daemon.database");
        }
        if self.socket_path != new.socket_path {
            out.push("control.socket");
        }
        if self.control.mode != new.control.mode {
            out.push("control.mode");
        }
        if self.control.group != new.control.group {
            out.push("control.group");
        }
        if self.control.max_connections != new.control.max_connections {
            out.push("control.max_connections");
        }
        // `public_url` is only read by `pushd channel webhook`: reloadable.
        let listener = |h: &HttpConfig| HttpConfig {
            public_url: None,
            ..h.clone()
        };
        if listener(&self.http) != listener(&new.http) {
            out.push("http");
        }
        if self.panel != new.panel {
            out.push("panel");
        }
        out
    }

    /// Names of sections that differ (for the reload audit record).
    pub fn changed_sections(&self, new: &Config) -> Vec<String> {
        let mut out = Vec::new();
        if self.daemon != new.daemon {
            out.push("daemon".into());
        }
        if self.control != new.control {
            out.push("control".into());
        }
        if self.http != new.http {
            out.push("http".into());
        }
        if self.panel != new.panel {
            out.push("panel".into());
        }
        if self.dispatch != new.dispatch {
            out.push("dispatch".into());
        }
        if self.scripts != new.scripts {
            out.push("scripts".into());
        }
        if self.receipts != new.receipts {
            out.push("receipts".into());
        }
        if self.policy != new.policy {
            out.push("policy".into());
        }
        if self.links != new.links {
            out.push("links".into());
        }
        let names: BTreeSet<&String> = self.channels.keys().chain(new.channels.keys()).collect();
        for n in names {
            if self.channels.get(n) != new.channels.get(n) {
                out.push(format!("channels.{n}"));
            }
        }
        out
    }
}

/// The panel acts on pushes: reachable beyond this machine only when the
/// operator says so (and then a warning at start says to put TLS in front).
fn check_panel_exposure(http: &HttpConfig, panel: &PanelConfig) -> Result<(), String> {
    if !(http.enabled && panel.enabled) || panel.allow_remote {
        return Ok(());
    }
    match http.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if !addr.ip().is_loopback() => Err(format!(
            "http.listen {} is not a loopback address, so the panel would be reachable from the network; \
             set [panel] allow_remote = true (and put TLS in front of it), or [panel] enabled = false, \
             or listen on 127.0.0.1",
            http.listen
        )),
        _ => Ok(()),
    }
}

const DEFAULT_CHANNELS: &str = "[channels.sim]\nkind = \"simulator\"\n";

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// WeChat's EncodingAESKey as the console shows it: 43 letters and digits
/// (base64 of the 32-byte AES key without its padding).
pub fn encoding_aes_key_shape(text: &str) -> bool {
    let text = text.trim();
    text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c =
            parse("[channels.tg]\nkind = \"telegram\"\ntoken = \"t\"\ninsecure_webhooks = true\n")
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
        let b = parse("[control]\nsocket = \"/tmp/x.sock\"\n[dispatch]\nrate_per_minute = 5\n")
            .unwrap();
        assert_eq!(a.restart_required(&b), vec!["control.socket"]);
        assert!(a.changed_sections(&b).contains(&"dispatch".to_string()));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

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
}
