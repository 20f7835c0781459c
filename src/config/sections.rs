//! The plain `config.toml` sections: `[daemon]`, `[control]`, `[http]`,
//! `[panel]`, `[dispatch]`, `[scripts]` and `[receipts]`, with their defaults.

use super::ConfigValueError;
use crate::util::duration;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

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
    pub fn mode_bits(&self) -> Result<u32, ConfigValueError> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or(ConfigValueError::ModeNotOctal)
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
