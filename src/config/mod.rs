//! `config.toml`: typed, defaulted, validated; paths are resolved against the
//! config file's folder and secrets may come from the environment.
//!
//! Unknown keys are errors (with the line), because a misspelt key silently
//! falling back to a default is how operators lose a day.

mod channels;
mod links;
mod live;
mod load;
mod policy;
mod public_url;
mod sections;
mod toml_error;
mod value_error;

pub use channels::{ChannelConfig, ChannelSecrets, WechatEncryption, encoding_aes_key_shape};
pub use links::{LinksConfig, Privacy};
pub use live::LiveConfig;
pub use policy::{Caps, DailyHours, PolicyConfig};
pub use public_url::parse_public_url;
pub use sections::{
    AdminEntry, ControlConfig, DaemonConfig, DispatchConfig, HttpConfig, PanelConfig,
    ReceiptsConfig, ScriptsConfig,
};
pub use value_error::ConfigValueError;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

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

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
