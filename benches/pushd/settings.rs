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
    "explorer",
    "export",
    "dispatch",
    "rss-wa",
    "receipts",
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

fn fail(msg: String) -> ! {
    eprintln!("{msg}");
    std::process::exit(2);
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(name: &str, ok: impl Fn(&T) -> bool, what: &str) -> Option<T> {
    let v = var(name)?;
    match v.trim().parse::<T>() {
        Ok(n) if ok(&n) => Some(n),
        _ => fail(format!("{name}={v:?}: expected {what}")),
    }
}

impl Settings {
    pub fn from_env() -> Settings {
        let scale = number::<f64>(
            "PUSHD_BENCH_SCALE",
            |s| *s > 0.0 && s.is_finite(),
            "a positive number (1 = 1M members, 10 = 10M)",
        )
        .unwrap_or(1.0);
        let only: BTreeSet<String> = var("PUSHD_BENCH_ONLY")
            .map(|s| {
                s.split(',')
                    .map(|k| k.trim().to_string())
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for k in &only {
            if !KEYS.contains(&k.as_str()) {
                fail(format!(
                    "PUSHD_BENCH_ONLY: unknown row {k:?} (rows: {})",
                    KEYS.join(", ")
                ));
            }
        }
        let concurrency =
            number::<usize>("PUSHD_BENCH_CONCURRENCY", |c| *c > 0, "a positive integer")
                .unwrap_or(256);
        let repeat =
            number::<usize>("PUSHD_BENCH_REPEAT", |r| *r > 0, "a positive integer").unwrap_or(3);
        let save = var("PUSHD_BENCH_SAVE");
        if let Some(path) = &save {
            let parent = std::path::Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty());
            if parent.is_some_and(|p| !p.is_dir()) {
                fail(format!(
                    "PUSHD_BENCH_SAVE={path:?}: its folder does not exist"
                ));
            }
        }
        let compare = var("PUSHD_BENCH_COMPARE").map(|path| match crate::growth::load(&path) {
            Ok(t) => (path, t),
            Err(e) => fail(e),
        });
        Settings {
            scale,
            only,
            concurrency,
            repeat,
            save,
            compare,
        }
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
