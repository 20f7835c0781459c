//! The one summary table: each row's figure, its baseline measured in the
//! same run, the ratio between them and the verdict, which depends on the
//! ratio alone (shared, noisy machines make absolute figures meaningless on
//! their own; they are printed beside it as a reference). Printed as
//! Markdown so it pastes into docs, and saved as JSON for growth
//! comparisons between runs (`growth.rs`).

use serde::{Deserialize, Serialize};

/// The bound a row's ratio is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Target {
    /// ratio ≥ x (speeds: pushd ÷ baseline).
    AtLeast(f64),
    /// ratio ≤ x (memory: peak ÷ budget).
    AtMost(f64),
    /// lo ≤ ratio ≤ hi (rates: measured ÷ configured).
    Within(f64, f64),
    /// Informational row, no verdict.
    None,
}

impl Target {
    /// The verdict on `ratio`: None for an informational row; a missing or
    /// non-finite ratio (nothing measured) is a MISS, never a PASS.
    pub fn judge(self, ratio: Option<f64>) -> Option<bool> {
        if self == Target::None {
            return None;
        }
        let Some(r) = ratio.filter(|r| r.is_finite()) else {
            return Some(false);
        };
        Some(match self {
            Target::AtLeast(x) => r >= x,
            Target::AtMost(x) => r <= x,
            Target::Within(lo, hi) => lo <= r && r <= hi,
            Target::None => unreachable!("handled above"),
        })
    }

    pub fn describe(self) -> String {
        match self {
            Target::AtLeast(x) => format!("≥ {}", times(x)),
            Target::AtMost(x) => format!("≤ {}", times(x)),
            Target::Within(lo, hi) => format!("{lo:.2}–{hi:.2}×"),
            Target::None => "–".into(),
        }
    }
}

/// A ratio as written in the table: two decimals, or two significant
/// digits below 0.1 (a latency target such as 0.0022× must not read 0.00×).
pub fn times(x: f64) -> String {
    if x.abs() >= 0.1 || x == 0.0 || !x.is_finite() {
        format!("{x:.2}×")
    } else {
        let decimals = (1.0 - x.abs().log10().floor()) as usize;
        format!("{x:.decimals$}×")
    }
}

/// What a row cost, for the growth comparison between two runs (e.g. 1M
/// and 10M members): pushd's figure and the baseline's, in one unit, and
/// the amount of work (members, messages) they were for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub pushd: f64,
    pub bare: Option<f64>,
    pub unit: Unit,
    pub work: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    Seconds,
    Millis,
    Megabytes,
}

impl Unit {
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Millis => "ms",
            Unit::Megabytes => "MB",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Stable name of the row across runs (the growth comparison's key).
    pub key: String,
    pub figure: String,
    pub value: String,
    pub baseline: String,
    /// pushd relative to the baseline: speed ÷ baseline speed (> 1 = faster);
    /// for memory, peak ÷ budget; for rates, measured ÷ configured.
    pub ratio: Option<f64>,
    pub target: Target,
    /// A condition the verdict also needs that is not a speed (a memory
    /// budget, a burst count): (what, held). Machine load cannot move it.
    pub also: Option<(String, bool)>,
    /// The absolute target, printed for reference only, and whether this
    /// run met it.
    pub absolute: Option<(String, bool)>,
    pub cost: Option<Cost>,
}

impl Row {
    pub fn new(key: &str, figure: String) -> Row {
        Row {
            key: key.to_string(),
            figure,
            value: String::new(),
            baseline: String::new(),
            ratio: None,
            target: Target::None,
            also: None,
            absolute: None,
            cost: None,
        }
    }

    pub fn value(mut self, v: String) -> Row {
        self.value = v;
        self
    }

    pub fn baseline(mut self, b: String) -> Row {
        self.baseline = b;
        self
    }

    pub fn ratio(mut self, r: f64, target: Target) -> Row {
        self.ratio = Some(r);
        self.target = target;
        self
    }

    pub fn also(mut self, what: &str, held: bool) -> Row {
        self.also = Some((what.to_string(), held));
        self
    }

    pub fn absolute(mut self, what: &str, met: bool) -> Row {
        self.absolute = Some((what.to_string(), met));
        self
    }

    pub fn cost(mut self, c: Cost) -> Row {
        self.cost = Some(c);
        self
    }

    /// PASS/MISS from the ratio's target and the `also` condition; the
    /// absolute reference never decides.
    pub fn verdict(&self) -> Option<bool> {
        let by_ratio = self.target.judge(self.ratio);
        match (&self.also, by_ratio) {
            (Some((_, held)), Some(ok)) => Some(ok && *held),
            (Some((_, held)), None) => Some(*held),
            (None, v) => v,
        }
    }

    fn cells(&self) -> [String; 7] {
        let mut target = self.target.describe();
        if let Some((what, _)) = &self.also {
            target = if self.target == Target::None {
                what.clone()
            } else {
                format!("{target}, {what}")
            };
        }
        [
            self.figure.clone(),
            self.value.clone(),
            self.baseline.clone(),
            self.ratio.map(times).unwrap_or_else(|| "–".into()),
            target,
            match self.verdict() {
                Some(true) => "PASS".into(),
                Some(false) => "MISS".into(),
                None => "–".into(),
            },
            match &self.absolute {
                Some((what, true)) => format!("{what} (met)"),
                Some((what, false)) => format!("{what} (not met)"),
                None => "–".into(),
            },
        ]
    }
}

/// A run's rows and where it ran (the JSON a later run compares with).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Table {
    pub machine: String,
    pub scale: f64,
    pub rows: Vec<Row>,
}

/// Rows of cells as an aligned Markdown table.
pub fn markdown(header: &[&str], cells: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let parts: Vec<String> = cols
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |\n", parts.join(" | "))
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

impl Table {
    pub fn push(&mut self, row: Row) {
        eprintln!(
            "  → {}: {} ({})",
            row.figure,
            row.value,
            match row.verdict() {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "info",
            }
        );
        self.rows.push(row);
    }

    /// (rows, PASS, MISS).
    pub fn tally(&self) -> (usize, usize, usize) {
        let pass = self
            .rows
            .iter()
            .filter(|r| r.verdict() == Some(true))
            .count();
        let miss = self
            .rows
            .iter()
            .filter(|r| r.verdict() == Some(false))
            .count();
        (self.rows.len(), pass, miss)
    }

    pub fn render(&self) -> String {
        let header = [
            "figure", "value", "baseline", "ratio", "target", "result", "absolute",
        ];
        let cells: Vec<Vec<String>> = self.rows.iter().map(|r| r.cells().to_vec()).collect();
        markdown(&header, &cells)
    }

    pub fn print(&self, took_secs: f64) {
        println!();
        println!("pushd bench — {} — scale {}", self.machine, self.scale);
        println!();
        print!("{}", self.render());
        let (n, pass, miss) = self.tally();
        println!();
        println!(
            "{n} figure(s), {pass} PASS, {miss} MISS (verdicts by ratio; absolute targets for reference); bench took {took_secs:.0} s"
        );
    }
}
