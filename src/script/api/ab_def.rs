//! A push's A/B options: `test = { share, wait, metric, winner }` (the
//! test share sent first, the winner after `wait`) and `holdout` (a
//! control group sent nothing).

use super::field;
use crate::script::convert::check_keys;
use crate::variants::{Metric, PlanError, Test, WinnerMode, check_share, parse_share};
use mlua::{Table, Value};

const TEST_SHAPE: &str =
    "test = { share = 0.2, wait = \"2h\", metric = \"read\", winner = \"auto\" }";

/// A share given as a number (0.2) or a string ("20%").
fn share(v: &Value, what: &str, errs: &mut Vec<String>) -> Option<f64> {
    let r = match v {
        Value::Number(n) => check_share(*n, what),
        Value::Integer(n) => check_share(*n as f64, what),
        Value::String(s) => parse_share(&s.to_string_lossy(), what),
        other => {
            errs.push(format!(
                "{what} must be a share like 0.2 or \"20%\", found {}",
                other.type_name()
            ));
            return None;
        }
    };
    r.map_err(|e| errs.push(e.to_string())).ok()
}

/// A string option read with `parse`; `default` when absent.
fn word<T>(
    t: &Table,
    key: &str,
    default: T,
    parse: fn(&str) -> Result<T, PlanError>,
    errs: &mut Vec<String>,
) -> Option<T> {
    match field(t, key) {
        Value::Nil => Some(default),
        Value::String(s) => parse(&s.to_string_lossy())
            .map_err(|e| errs.push(format!("test.{key}: {e}")))
            .ok(),
        other => {
            errs.push(format!(
                "test.{key} must be a string, found {}",
                other.type_name()
            ));
            None
        }
    }
}

/// `test = { … }`, or None (with errors recorded when it is malformed).
pub(super) fn test_of(t: &Table, errs: &mut Vec<String>) -> Option<Test> {
    let v = field(t, "test");
    let tt = match v {
        Value::Nil => return None,
        Value::Table(tt) => tt,
        other => {
            errs.push(format!(
                "test must be a table like {TEST_SHAPE}, found {}",
                other.type_name()
            ));
            return None;
        }
    };
    if let Err(e) = check_keys(&tt, &["share", "wait", "metric", "winner"], "test") {
        errs.push(e);
        return None;
    }
    let share = match field(&tt, "share") {
        Value::Nil => {
            errs.push(format!("test.share is required: {TEST_SHAPE}"));
            None
        }
        v => share(&v, "test.share", errs),
    };
    let wait = match field(&tt, "wait") {
        Value::String(s) => match crate::util::duration::parse(&s.to_string_lossy()) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(format!("test.wait: {e}"));
                None
            }
        },
        Value::Nil => {
            errs.push(format!("test.wait is required: {TEST_SHAPE}"));
            None
        }
        other => {
            errs.push(format!(
                "test.wait must be a duration like \"2h\", found {}",
                other.type_name()
            ));
            None
        }
    };
    let metric = word(&tt, "metric", Metric::Read, Metric::parse, errs);
    let winner = word(&tt, "winner", WinnerMode::Auto, WinnerMode::parse, errs);
    Some(Test {
        share: share?,
        wait_ms: wait?.as_millis().min(i64::MAX as u128) as i64,
        metric: metric?,
        winner: winner?,
    })
}

/// `holdout = 0.05` (or "5%"); 0 when absent.
pub(super) fn holdout_of(t: &Table, errs: &mut Vec<String>) -> f64 {
    match field(t, "holdout") {
        Value::Nil => 0.0,
        v => share(&v, "holdout", errs).unwrap_or(0.0),
    }
}
