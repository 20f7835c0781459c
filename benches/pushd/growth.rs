//! How cost grows between two runs at different sizes (e.g. 1M and 10M
//! members): `PUSHD_BENCH_SAVE=run.json` stores a run's rows with their
//! costs, and `PUSHD_BENCH_COMPARE=run.json` prints, for every row both runs
//! have, how much pushd's cost and the baseline's grew for how much more
//! work. Time is judged linear when it grows at most 1.1× as much as the
//! work (≤ 11× for 10×); the baseline's growth beside it says whether a
//! non-linear step is SQLite's or pushd's. Memory is shown, not judged here
//! (its own rows hold it to a fixed budget).

use crate::stats::growth_ok;
use crate::table::{Cost, Row, Table, Unit, markdown};

/// Linear enough: at most this much more than the work's growth.
pub const SLACK: f64 = 1.1;

/// One row of the growth comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Growth {
    pub key: String,
    pub figure: String,
    pub unit: Unit,
    pub then: Cost,
    pub now: Cost,
}

impl Growth {
    pub fn work(&self) -> f64 {
        self.now.work / self.then.work
    }

    pub fn pushd(&self) -> f64 {
        self.now.pushd / self.then.pushd
    }

    pub fn bare(&self) -> Option<f64> {
        Some(self.now.bare? / self.then.bare?)
    }

    /// None for memory (informational here).
    pub fn linear(&self) -> Option<bool> {
        match self.unit {
            Unit::Megabytes => None,
            Unit::Seconds | Unit::Millis => Some(growth_ok(self.pushd(), self.work(), SLACK)),
        }
    }
}

/// The rows both runs measured with a cost in the same unit, in this run's order.
pub fn compare(then: &Table, now: &[Row]) -> Vec<Growth> {
    now.iter()
        .filter_map(|row| {
            let now_cost = row.cost?;
            let then_cost = then
                .rows
                .iter()
                .find(|r| r.key == row.key)?
                .cost
                .filter(|c| c.unit == now_cost.unit && c.work > 0.0 && c.pushd > 0.0)?;
            Some(Growth {
                key: row.key.clone(),
                figure: row.figure.clone(),
                unit: now_cost.unit,
                then: then_cost,
                now: now_cost,
            })
        })
        .collect()
}

pub fn render(then: &Table, growth: &[Growth]) -> String {
    let fmt = |v: f64, u: Unit| format!("{v:.3} {}", u.suffix());
    let cells: Vec<Vec<String>> = growth
        .iter()
        .map(|g| {
            vec![
                g.key.clone(),
                format!(
                    "{} → {}",
                    fmt(g.then.pushd, g.unit),
                    fmt(g.now.pushd, g.unit)
                ),
                format!("{:.1}×", g.work()),
                format!("{:.2}×", g.pushd()),
                g.bare()
                    .map(|b| format!("{b:.2}×"))
                    .unwrap_or_else(|| "–".into()),
                match g.linear() {
                    Some(true) => format!("≤ {:.1}×: linear", g.work() * SLACK),
                    Some(false) => format!("> {:.1}×: NOT linear", g.work() * SLACK),
                    None => "memory (budget row)".into(),
                },
            ]
        })
        .collect();
    format!(
        "Growth from the saved run (scale {}, {}):\n\n{}",
        then.scale,
        then.machine,
        markdown(
            &[
                "row",
                "pushd",
                "work",
                "pushd growth",
                "baseline growth",
                "verdict"
            ],
            &cells
        )
    )
}

pub fn load(path: &str) -> Result<Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("PUSHD_BENCH_COMPARE: cannot read {path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| {
        format!("PUSHD_BENCH_COMPARE: {path} is not a run saved by PUSHD_BENCH_SAVE: {e}")
    })
}

pub fn save(path: &str, table: &Table) -> Result<(), String> {
    let text = serde_json::to_string_pretty(table).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("PUSHD_BENCH_SAVE: cannot write {path}: {e}"))
}
