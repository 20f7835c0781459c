//! The bench's settings, from the environment (see main.rs's header), each
//! checked before anything runs: a typo fails in a second, not after an hour.

use crate::table::Table;
use std::collections::BTreeSet;

/// Every row key `PUSHD_BENCH_ONLY` accepts, in table order.
pub const KEYS: &[&str] = &[
    "resolution",
    "import",
    "core",
    "rss",
    "report",
    "panel",
    "explorer",
    "export",
    "dispatch",
    "rss-wa",
    "receipts",
    "links",
    "viewers",
    "rate",
    "first-send",
    "accounts",
];

pub struct Settings {
    pub scale: f64,
    pub only: BTreeSet<String>,
    pub concurrency: usize,
    /// End-to-end pushes, each with its receipts run (each run between two
    /// bare runs), and pairs of alternated runs for the paired rows.
    pub repeat: usize,
    /// Where to save this run's rows (`PUSHD_BENCH_SAVE`).
    pub save: Option<String>,
    /// A saved run to print growth against (`PUSHD_BENCH_COMPARE`).
    pub compare: Option<(String, Table)>,
}

/// One setting read from `var`: None when unset or empty, an error that
/// names the variable and what it takes when it does not parse or fit.
fn number<T: std::str::FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    ok: impl Fn(&T) -> bool,
    what: &str,
) -> Result<Option<T>, String> {
    let Some(v) = var(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match v.trim().parse::<T>() {
        Ok(n) if ok(&n) => Ok(Some(n)),
        _ => Err(format!("{name}={v:?}: expected {what}")),
    }
}

impl Settings {
    /// The settings from the environment; a bad value ends the bench with
    /// its message before anything runs.
    pub fn from_env() -> Settings {
        match Settings::from_vars(|name| std::env::var(name).ok()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    }

    /// The settings from `var` (the environment, or a test's map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let scale = number::<f64>(
            &var,
            "PUSHD_BENCH_SCALE",
            |s| *s > 0.0 && s.is_finite(),
            "a positive number (1 = 1M members, 10 = 10M)",
        )?
        .unwrap_or(1.0);
        let only: BTreeSet<String> = var("PUSHD_BENCH_ONLY")
            .map(|s| {
                s.split(',')
                    .map(|k| k.trim().to_string())
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(k) = only.iter().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!(
                "PUSHD_BENCH_ONLY: unknown row {k:?} (rows: {})",
                KEYS.join(", ")
            ));
        }
        let concurrency = number::<usize>(
            &var,
            "PUSHD_BENCH_CONCURRENCY",
            |c| *c > 0,
            "a positive integer",
        )?
        .unwrap_or(256);
        let repeat = number::<usize>(&var, "PUSHD_BENCH_REPEAT", |r| *r > 0, "a positive integer")?
            .unwrap_or(3);
        let save = var("PUSHD_BENCH_SAVE").filter(|v| !v.trim().is_empty());
        if let Some(path) = &save {
            let parent = std::path::Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty());
            if parent.is_some_and(|p| !p.is_dir()) {
                return Err(format!(
                    "PUSHD_BENCH_SAVE={path:?}: its folder does not exist (create it, or save elsewhere)"
                ));
            }
        }
        let compare = match var("PUSHD_BENCH_COMPARE").filter(|v| !v.trim().is_empty()) {
            Some(path) => Some((path.clone(), crate::growth::load(&path)?)),
            None => None,
        };
        Ok(Settings {
            scale,
            only,
            concurrency,
            repeat,
            save,
            compare,
        })
    }

    pub fn wants(&self, key: &str) -> bool {
        self.only.is_empty() || self.only.contains(key)
    }

    pub fn any(&self, keys: &[&str]) -> bool {
        keys.iter().any(|k| self.wants(k))
    }

    /// A size at this scale (at least 100).
    pub fn size(&self, full: u64) -> u64 {
        ((full as f64 * self.scale).round() as u64).max(100)
    }

    /// Seconds a real-clock row runs at this scale: `full` at scale 1, never
    /// under `floor` (rates need time to be measured), never over `cap`.
    pub fn secs(&self, full: f64, floor: f64, cap: f64) -> f64 {
        (full * self.scale).clamp(floor, cap)
    }

    pub fn describe_only(&self) -> String {
        if self.only.is_empty() {
            "all".to_string()
        } else {
            self.only.iter().cloned().collect::<Vec<_>>().join(",")
        }
    }
}
