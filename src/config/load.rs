//! Reading `config.toml`: parse it, resolve its paths against the file's
//! folder, and validate each section in turn (the first problem is reported,
//! naming its key).

use super::{
    AdminEntry, ChannelConfig, Config, ConfigError, ConfigValueError, ControlConfig, DaemonConfig,
    DispatchConfig, HttpConfig, LinksConfig, PanelConfig, PolicyConfig, ReceiptsConfig,
    ScriptsConfig, parse_public_url, policy, toml_error,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A setting that fails validation: its dotted key and what is wrong with it.
type Invalid = (String, String);

fn invalid(field: &str, message: impl std::fmt::Display) -> Invalid {
    (field.into(), message.to_string())
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
        raw.validate(abs.clone())
            .map_err(|(field, message)| ConfigError::Invalid {
                path: abs,
                field,
                message,
            })
    }

    /// The built-in defaults (a simulator channel), as if read from `path`.
    pub fn default_at(path: &Path) -> Config {
        Config::parse(DEFAULT_CHANNELS, path).expect("built-in default config is valid")
    }
}

impl RawConfig {
    /// The config the daemon runs with, read from `abs`: paths resolved,
    /// every section checked in the order of the file's documentation.
    fn validate(self, abs: PathBuf) -> Result<Config, Invalid> {
        let base = abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));

        let mut daemon = self.daemon;
        daemon.data_dir = base.join(&daemon.data_dir);
        let database_path = match &daemon.database {
            Some(p) => base.join(p),
            None => daemon.data_dir.join("pushd.db"),
        };
        let mut control = self.control;
        let socket_path = match &control.socket {
            Some(p) => base.join(p),
            None => daemon.data_dir.join("pushd.sock"),
        };
        check_control(&control)?;
        control.socket = Some(socket_path.clone());

        let mut http = self.http;
        check_http(&mut http)?;
        check_panel(&http, &self.panel)?;
        check_dispatch(&self.dispatch)?;
        let mut scripts = self.scripts;
        scripts.dir = base.join(&scripts.dir);
        check_scripts(&scripts)?;

        let mut links = self.links;
        links.validate(http.enabled)?;
        let mut channels = self.channels;
        for (name, ch) in channels.iter_mut() {
            ch.validate(name)?;
        }
        let policy = PolicyConfig::from_raw(self.policy)?;

        Ok(Config {
            path: abs,
            daemon,
            control,
            http,
            panel: self.panel,
            dispatch: self.dispatch,
            scripts,
            receipts: self.receipts,
            links,
            channels,
            policy,
            database_path,
            socket_path,
        })
    }
}

fn check_control(control: &ControlConfig) -> Result<(), Invalid> {
    control
        .mode_bits()
        .map_err(|m| invalid("control.mode", m))?;
    if control.max_line_bytes < 1024 {
        return Err(invalid("control.max_line_bytes", "must be at least 1024"));
    }
    if control.max_connections == 0 {
        return Err(invalid("control.max_connections", "must be at least 1"));
    }
    for a in &control.admins {
        if let AdminEntry::Name(n) = a
            && n.trim().is_empty()
        {
            return Err(invalid("control.admins", "empty entry"));
        }
    }
    Ok(())
}

/// Checks `[http]` and normalises its `public_url`.
fn check_http(http: &mut HttpConfig) -> Result<(), Invalid> {
    if let Some(u) = &http.public_url {
        http.public_url = Some(parse_public_url(u).map_err(|m| invalid("http.public_url", m))?);
    }
    if http.enabled && http.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(invalid(
            "http.listen",
            "must be an address like \"127.0.0.1:8787\"",
        ));
    }
    Ok(())
}

fn check_panel(http: &HttpConfig, panel: &PanelConfig) -> Result<(), Invalid> {
    check_panel_exposure(http, panel).map_err(|m| invalid("panel.allow_remote", m))?;
    if panel.session_ttl < Duration::from_secs(60) {
        return Err(invalid("panel.session_ttl", "must be at least 1m"));
    }
    Ok(())
}

fn check_dispatch(dispatch: &DispatchConfig) -> Result<(), Invalid> {
    if dispatch.concurrency == 0 {
        return Err(invalid("dispatch.concurrency", "must be at least 1"));
    }
    if dispatch.max_attempts == 0 {
        return Err(invalid("dispatch.max_attempts", "must be at least 1"));
    }
    Ok(())
}

fn check_scripts(scripts: &ScriptsConfig) -> Result<(), Invalid> {
    if scripts.instruction_limit < 1000 {
        return Err(invalid(
            "scripts.instruction_limit",
            "must be at least 1000",
        ));
    }
    if scripts.memory_limit_mb == 0 {
        return Err(invalid("scripts.memory_limit_mb", "must be at least 1"));
    }
    Ok(())
}

/// The panel acts on pushes: reachable beyond this machine only when the
/// operator says so (and then a warning at start says to put TLS in front).
fn check_panel_exposure(http: &HttpConfig, panel: &PanelConfig) -> Result<(), ConfigValueError> {
    if !(http.enabled && panel.enabled) || panel.allow_remote {
        return Ok(());
    }
    match http.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if !addr.ip().is_loopback() => {
            Err(ConfigValueError::PanelExposed(http.listen.clone()))
        }
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
