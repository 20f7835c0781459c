//! The one summary table, printed as Markdown so it pastes into the README.

use std::time::Duration;

pub struct Row {
    pub figure: String,
    pub value: String,
    pub baseline: String,
    /// pushd relative to the baseline: speed ÷ baseline speed (> 1 = faster);
    /// for memory, peak ÷ idle; for rates, measured ÷ configured.
    pub ratio: Option<f64>,
    pub target: String,
    /// None: informational only.
    pub pass: Option<bool>,
}

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn print(&self, machine: &str, took: Duration) {
        let header = ["figure", "value", "baseline", "ratio", "target", "result"];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.figure.clone(),
                    r.value.clone(),
                    r.baseline.clone(),
                    r.ratio
                        .map(|x| format!("{x:.2}×"))
                        .unwrap_or_else(|| "–".into()),
                    r.target.clone(),
                    match r.pass {
                        Some(true) => "PASS".into(),
                        Some(false) => "MISS".into(),
                        None => "–".into(),
                    },
                ]
            })
            .collect();
        let mut width = header.map(|h| h.chars().count());
        for row in &cells {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: &[String]| {
            let parts: Vec<String> = cols
                .iter()
                .zip(width)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |", parts.join(" | "))
        };
        println!();
        println!("pushd bench — {machine}");
        println!();
        println!("{}", line(&header.map(String::from)));
        let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for row in &cells {
            println!("{}", line(row));
        }
        let missed = self.rows.iter().filter(|r| r.pass == Some(false)).count();
        println!();
        println!(
            "{} figure(s), {} PASS, {} MISS; bench took {:.0} s",
            self.rows.len(),
            self.rows.iter().filter(|r| r.pass == Some(true)).count(),
            missed,
            took.as_secs_f64()
        );
    }
}
