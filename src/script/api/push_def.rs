//! A push's scheduling options: `start_at`, `rate_per_minute`, `batch = {
//! size, every }`, `send_window = { from, to }` and `policy = "bypass"`.
//! Each reader records its problems in `errs` and returns None (or the
//! default) so loading goes on and every mistake is reported.

use super::{field, opt_string};
use crate::script::convert::check_keys;
use crate::script::{BatchDef, PushStart, SendWindow};
use mlua::{Table, Value};

fn positive_u32(v: &Value, what: &str, errs: &mut Vec<String>) -> Option<u32> {
    let n = match v {
        Value::Integer(i) => Some(*i),
        Value::Number(f) if f.fract() == 0.0 && f.is_finite() => Some(*f as i64),
        _ => None,
    };
    match n {
        Some(n) if n >= 1 && n <= u32::MAX as i64 => Some(n as u32),
        _ => {
            errs.push(format!("{what} must be a whole number of at least 1"));
            None
        }
    }
}

fn parse_hhmm(s: &str) -> Option<chrono::NaiveTime> {
    chrono::NaiveTime::parse_from_str(s, "%H:%M").ok()
}

/// `start_at = "now"` or an RFC 3339 time; required.
pub(super) fn start_at_of(t: &Table, errs: &mut Vec<String>) -> Option<PushStart> {
    match opt_string(t, "start_at", errs) {
        Some(s) if s == "now" => Some(PushStart::Now),
        Some(s) => match chrono::DateTime::parse_from_rfc3339(&s) {
            Ok(t) => Some(PushStart::At(t.timestamp_millis())),
            Err(e) => {
                errs.push(format!(
                    "start_at {s:?} is not \"now\" or an RFC 3339 time like \"2026-11-27T09:00:00+08:00\" ({e})"
                ));
                None
            }
        },
        None => {
            if !errs.iter().any(|e| e.starts_with("start_at")) {
                errs.push(
                    "start_at is required: \"now\" or an RFC 3339 time like \"2026-11-27T09:00:00+08:00\"".into(),
                );
            }
            None
        }
    }
}

/// `rate_per_minute = 600`; None when absent.
pub(super) fn rate_of(t: &Table, errs: &mut Vec<String>) -> Option<u32> {
    match field(t, "rate_per_minute") {
        Value::Nil => None,
        v => positive_u32(&v, "rate_per_minute", errs),
    }
}

/// `batch = { size = 5000, every = "1h" }`; None when absent.
pub(super) fn batch_of(t: &Table, errs: &mut Vec<String>) -> Option<BatchDef> {
    match field(t, "batch") {
        Value::Nil => None,
        Value::Table(b) => {
            if let Err(e) = check_keys(&b, &["size", "every"], "batch") {
                errs.push(e);
                None
            } else {
                let size = positive_u32(&field(&b, "size"), "batch.size", errs);
                let every = match field(&b, "every") {
                    Value::String(s) => match crate::util::duration::parse(&s.to_string_lossy()) {
                        Ok(d) if !d.is_zero() => Some(d),
                        Ok(_) => {
                            errs.push("batch.every must be longer than 0s".into());
                            None
                        }
                        Err(e) => {
                            errs.push(format!("batch.every: {e}"));
                            None
                        }
                    },
                    _ => {
                        errs.push("batch.every must be a duration like \"1h\" or \"30m\"".into());
                        None
                    }
                };
                match (size, every) {
                    (Some(size), Some(every)) => Some(BatchDef { size, every }),
                    _ => None,
                }
            }
        }
        other => {
            errs.push(format!(
                "batch must be a table {{ size = 5000, every = \"1h\" }}, found {}",
                other.type_name()
            ));
            None
        }
    }
}

/// `send_window = { from = "09:00", to = "21:00" }`; None when absent.
pub(super) fn send_window_of(t: &Table, errs: &mut Vec<String>) -> Option<SendWindow> {
    match field(t, "send_window") {
        Value::Nil => None,
        Value::Table(w) => {
            if let Err(e) = check_keys(&w, &["from", "to"], "send_window") {
                errs.push(e);
                None
            } else {
                let get = |k: &str, errs: &mut Vec<String>| match field(&w, k) {
                    Value::String(s) => match parse_hhmm(&s.to_string_lossy()) {
                        Some(t) => Some(t),
                        None => {
                            errs.push(format!("send_window.{k} must be a time like \"09:00\""));
                            None
                        }
                    },
                    _ => {
                        errs.push(format!("send_window.{k} must be a time like \"09:00\""));
                        None
                    }
                };
                let from = get("from", errs);
                let to = get("to", errs);
                match (from, to) {
                    (Some(from), Some(to)) if from == to => {
                        errs.push("send_window.from and .to are equal; leave send_window out to send at any hour".into());
                        None
                    }
                    (Some(from), Some(to)) => Some(SendWindow { from, to }),
                    _ => None,
                }
            }
        }
        other => {
            errs.push(format!(
                "send_window must be a table {{ from = \"09:00\", to = \"21:00\" }}, found {}",
                other.type_name()
            ));
            None
        }
    }
}

/// `policy = "bypass"`: true; false when absent.
pub(super) fn bypass_policy_of(t: &Table, errs: &mut Vec<String>) -> bool {
    match opt_string(t, "policy", errs).as_deref() {
        None => false,
        Some("bypass") => true,
        Some(other) => {
            errs.push(format!(
                "policy {other:?} is not \"bypass\" (frequency caps and quiet hours do not apply, \
                 for transactional messages); leave policy out to keep [policy]"
            ));
            false
        }
    }
}
