//! Unit tests of the bench's pure functions — the arithmetic every verdict
//! in the table rests on (targets, bracketed and paired ratios, the
//! alternating order, bursts, steady windows, growth) — run by `cargo test`
//! (`--test bench_logic`). The bench itself runs without libtest
//! (`harness = false`), so its modules are compiled here a second time.

#![allow(dead_code)]

#[path = "growth.rs"]
mod growth;
#[path = "settings.rs"]
mod settings;
#[path = "stats.rs"]
mod stats;
#[path = "table.rs"]
mod table;

use stats::*;
use std::time::{Duration, Instant};
use table::{Cost, Row, Table, Target, Unit};

#[test]
fn a_target_judges_the_ratio_and_a_missing_ratio_is_a_miss() {
    assert_eq!(Target::AtLeast(0.7).judge(Some(0.7)), Some(true));
    assert_eq!(Target::AtLeast(0.7).judge(Some(0.69)), Some(false));
    assert_eq!(Target::AtMost(1.0).judge(Some(1.01)), Some(false));
    assert_eq!(Target::Within(0.98, 1.02).judge(Some(1.019)), Some(true));
    assert_eq!(Target::Within(0.98, 1.02).judge(Some(0.979)), Some(false));
    assert_eq!(Target::AtLeast(0.7).judge(None), Some(false));
    assert_eq!(Target::AtLeast(0.7).judge(Some(f64::NAN)), Some(false));
    assert_eq!(Target::None.judge(Some(3.0)), None);
}

#[test]
fn the_verdict_is_the_ratio_s_never_the_absolute_target_s() {
    // Dispatch at 0.72× on a slow machine: below the absolute 20k msg/s,
    // still a PASS, because only the ratio is judged.
    let slow = Row::new("dispatch", "dispatch".into())
        .ratio(0.72, Target::AtLeast(0.7))
        .absolute("≥ 20k msg/s", false);
    assert_eq!(slow.verdict(), Some(true));
    // Fast absolute figure, ratio under its target: a MISS.
    let fast = Row::new("dispatch", "dispatch".into())
        .ratio(0.65, Target::AtLeast(0.7))
        .absolute("≥ 20k msg/s", true);
    assert_eq!(fast.verdict(), Some(false));
    // A condition that is not a speed (flat memory) can still fail a row.
    let leaky = Row::new("export", "export".into())
        .ratio(1.1, Target::AtLeast(0.55))
        .also("flat memory", false);
    assert_eq!(leaky.verdict(), Some(false));
}

#[test]
fn the_table_counts_pass_and_miss_and_renders_every_row() {
    let mut t = Table::default();
    t.push(Row::new("a", "a".into()).ratio(1.0, Target::AtLeast(0.5)));
    t.push(Row::new("b", "b".into()).ratio(0.1, Target::AtLeast(0.5)));
    t.push(Row::new("c", "c".into()).value("info".into()));
    assert_eq!(t.tally(), (3, 1, 1));
    let text = t.render();
    assert_eq!(text.lines().count(), 2 + 3);
    assert!(text.contains("| PASS") && text.contains("| MISS"));
}

#[test]
fn a_bracketed_ratio_compares_each_run_with_the_bare_runs_around_it() {
    // The machine slows down by half between the first and last bare run:
    // each push is at 0.8× of the baseline measured around it.
    let i = Interleaved {
        runs: vec![80.0, 60.0, 40.0],
        bare: vec![110.0, 90.0, 60.0, 40.0],
    };
    let s = i.summary();
    assert!((s.ratio - 0.8).abs() < 1e-9, "{s:?}");
    // (Against the first bare run alone the last push would look like 0.36×.)
    assert_eq!(s.spread, "; runs 0.80–0.80×");
    // A run with no bare run after it is not judged.
    let open = Interleaved {
        runs: vec![50.0, 1.0],
        bare: vec![100.0, 100.0],
    };
    assert!((open.summary().ratio - 0.5).abs() < 1e-9);
}

#[test]
fn paired_runs_alternate_abba_and_give_bare_over_pushd() {
    let order: Vec<bool> = (0..4).map(a_first).collect();
    assert_eq!(order, [true, false, true, false]);
    let mut p = Paired::default();
    p.push(Duration::from_millis(10), Duration::from_millis(8));
    p.push(Duration::from_millis(20), Duration::from_millis(18));
    p.push(Duration::from_millis(10), Duration::from_millis(5));
    let s = p.summary();
    assert!((s.ratio - 0.8).abs() < 1e-9, "{s:?}");
    assert!((s.run - 0.010).abs() < 1e-12);
    assert!((s.bare - 0.008).abs() < 1e-12);
}

#[test]
fn median_of_nothing_is_not_a_number_so_its_row_misses() {
    assert!(median(&[]).is_nan());
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
}

#[test]
fn a_burst_is_counted_against_the_rate_and_the_bucket() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    // 10/s (period 100 ms): evenly spaced sends are no burst beyond one
    // (the slack, 1 ms, keeps float rounding of k periods from counting).
    let even: Vec<Instant> = (0..20).map(|i| at(i * 100)).collect();
    assert_eq!(max_burst(&even, 0.1, 0.001), 1);
    // One send 50 ms early is a burst of two.
    let mut early = even.clone();
    early[10] = at(950);
    assert_eq!(max_burst(&early, 0.1, 0.001), 2);
    // Five sends in the same millisecond, then steady: a burst of five.
    let mut bunched: Vec<Instant> = (0..5).map(|_| at(0)).collect();
    bunched.extend((1..10).map(|i| at(i * 100)));
    assert_eq!(max_burst(&bunched, 0.1, 0.001), 5);
}

#[test]
fn the_busiest_window_is_found_in_one_pass() {
    let t: Vec<f64> = vec![0.0, 0.1, 0.2, 1.05, 1.1, 1.15, 1.2, 1.9, 3.0];
    assert_eq!(max_in_window(&t, 1.0), 5); // 1.05, 1.1, 1.15, 1.2, 1.9
    assert_eq!(max_in_window(&t, 0.2), 4); // 1.05, 1.1, 1.15, 1.2
    assert_eq!(max_in_window(&[], 1.0), 0);
}

#[test]
fn a_stream_s_rate_ignores_the_window_edges() {
    // 20/s from t = 0.3 s for 10 s.
    let t: Vec<f64> = (0..=200).map(|i| 0.3 + i as f64 * 0.05).collect();
    let r = rate_in(&t, 1.0, 9.0).expect("rate");
    assert!((r - 20.0).abs() < 1e-6, "{r}");
    assert_eq!(rate_in(&t, 50.0, 60.0), None);
}

#[test]
fn the_steady_window_is_where_every_stream_sends() {
    let a = vec![0.1, 5.0, 10.0];
    let b = vec![0.5, 4.0, 8.0];
    assert_eq!(
        steady_window(&[a.clone(), b.clone()], 1.0),
        Some((1.5, 8.0))
    );
    // A stream that never sent: no window, so the row misses.
    assert_eq!(steady_window(&[a, b, vec![]], 1.0), None);
    // Streams that never overlap for long enough: no window.
    assert_eq!(steady_window(&[vec![0.0, 1.0], vec![2.0, 3.0]], 0.5), None);
}

#[test]
fn the_worst_channel_is_found_on_either_side_of_its_limit() {
    let (lo, hi) = ratio_range(&[(9.9, 10.0), (81.0, 80.0), (45.0, 45.0)]);
    assert!((lo - 0.99).abs() < 1e-9 && (hi - 1.0125).abs() < 1e-9);
}

fn run(scale: f64, rows: Vec<(&str, f64, f64, Unit, f64)>) -> Table {
    Table {
        machine: "test".into(),
        scale,
        rows: rows
            .into_iter()
            .map(|(key, pushd, bare, unit, work)| {
                Row::new(key, key.into()).cost(Cost {
                    pushd,
                    bare: Some(bare),
                    unit,
                    work,
                })
            })
            .collect(),
    }
}

#[test]
fn growth_from_1m_to_10m_is_linear_up_to_11x() {
    let then = run(
        1.0,
        vec![
            ("import", 5.0, 3.0, Unit::Seconds, 1e6),
            ("export", 1.5, 1.6, Unit::Seconds, 1e6),
            ("report", 0.07, 600.0, Unit::Millis, 1e6),
            ("rss", 48.0, 38.0, Unit::Megabytes, 1e6),
            ("only-then", 1.0, 1.0, Unit::Seconds, 1e6),
        ],
    );
    let now = run(
        10.0,
        vec![
            ("import", 55.0, 33.0, Unit::Seconds, 1e7),
            ("export", 16.6, 16.0, Unit::Seconds, 1e7),
            ("report", 0.08, 6000.0, Unit::Millis, 1e7),
            ("rss", 52.0, 38.0, Unit::Megabytes, 1e7),
            ("only-now", 1.0, 1.0, Unit::Seconds, 1e7),
        ],
    );
    let g = growth::compare(&then, &now.rows);
    let keys: Vec<&str> = g.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["import", "export", "report", "rss"]);
    assert!((g[0].pushd() - 11.0).abs() < 1e-9);
    assert_eq!(g[0].linear(), Some(true), "11× for 10× is linear enough");
    assert_eq!(g[1].linear(), Some(false), "11.07× is not");
    assert_eq!(g[2].linear(), Some(true));
    assert_eq!(g[3].linear(), None, "memory is judged by its budget row");
    assert_eq!(g[0].bare(), Some(11.0));
    let text = growth::render(&then, &g);
    assert!(text.contains("NOT linear") && text.contains("memory"));
}

#[test]
fn a_saved_run_loads_back_and_a_bad_file_says_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.json");
    let path = path.to_str().expect("utf-8");
    let t = run(1.0, vec![("import", 5.0, 3.0, Unit::Seconds, 1e6)]);
    growth::save(path, &t).expect("save");
    let back = growth::load(path).expect("load");
    assert_eq!(back.rows, t.rows);
    std::fs::write(path, "{ not json").expect("write");
    let err = growth::load(path).expect_err("bad file");
    assert!(err.contains("not a run saved by PUSHD_BENCH_SAVE"), "{err}");
    let missing = growth::load("/nonexistent/run.json").expect_err("missing");
    assert!(missing.contains("cannot read"), "{missing}");
}

#[test]
fn small_ratios_keep_two_significant_digits() {
    assert_eq!(table::times(0.7), "0.70×");
    assert_eq!(table::times(12.345), "12.35×");
    assert_eq!(table::times(0.088), "0.088×");
    assert_eq!(table::times(0.0022), "0.0022×");
    assert_eq!(Target::AtLeast(0.0022).describe(), "≥ 0.0022×");
}

fn settings_from(vars: &[(&str, &str)]) -> Result<settings::Settings, String> {
    let vars: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    settings::Settings::from_vars(|name| vars.get(name).cloned())
}

#[test]
fn the_defaults_are_the_full_table() {
    let s = settings_from(&[]).expect("defaults");
    assert_eq!((s.scale, s.concurrency, s.repeat), (1.0, 256, 3));
    assert!(s.only.is_empty() && s.save.is_none() && s.compare.is_none());
    assert!(s.wants("accounts") && s.wants("first-send"));
    assert_eq!(s.size(1_000_000), 1_000_000);
    let ten = settings_from(&[
        ("PUSHD_BENCH_SCALE", "10"),
        ("PUSHD_BENCH_ONLY", "import, core"),
    ])
    .expect("10M");
    assert_eq!(ten.size(1_000_000), 10_000_000);
    assert!(ten.wants("core") && !ten.wants("dispatch"));
    assert_eq!(ten.secs(20.0, 10.0, 60.0), 60.0);
}

#[test]
fn a_bad_setting_is_refused_with_what_it_takes() {
    for (var, value, says) in [
        ("PUSHD_BENCH_SCALE", "abc", "expected a positive number"),
        ("PUSHD_BENCH_SCALE", "-1", "expected a positive number"),
        ("PUSHD_BENCH_SCALE", "inf", "expected a positive number"),
        (
            "PUSHD_BENCH_CONCURRENCY",
            "0",
            "expected a positive integer",
        ),
        ("PUSHD_BENCH_REPEAT", "two", "expected a positive integer"),
        (
            "PUSHD_BENCH_ONLY",
            "dispatch,acounts",
            "unknown row \"acounts\"",
        ),
        (
            "PUSHD_BENCH_SAVE",
            "/nonexistent-dir/run.json",
            "its folder does not exist",
        ),
        (
            "PUSHD_BENCH_COMPARE",
            "/nonexistent-dir/run.json",
            "cannot read",
        ),
    ] {
        let err = settings_from(&[(var, value)])
            .err()
            .unwrap_or_else(|| panic!("{var}={value} was accepted"));
        assert!(
            err.contains(var) && err.contains(says),
            "{var}={value}: {err}"
        );
    }
    // An empty value is the default, not an error.
    assert_eq!(
        settings_from(&[("PUSHD_BENCH_SCALE", " ")]).map(|s| s.scale),
        Ok(1.0)
    );
}
