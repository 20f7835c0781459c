//! Human durations as operators write them in config and scripts: `"90s"`,
//! `"5m"`, `"1h30m"`, `"72h"`, `"30d"`, `"250ms"`.

use std::time::Duration;

/// Why a duration does not parse; each message gives examples of ones that do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (expected e.g. \"30s\", \"5m\", \"72h\", \"30d\")")]
    Empty,
    #[error(
        "invalid duration {text:?}: expected a number before {rest:?} (e.g. \"30s\", \"5m\", \"72h\", \"30d\")"
    )]
    MissingNumber { text: String, rest: String },
    #[error("invalid duration {0:?}: number too large")]
    NumberTooLarge(String),
    #[error("invalid duration {text:?}: missing unit after {n} (use ms, s, m, h, d or w)")]
    MissingUnit { text: String, n: u128 },
    #[error("invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m, h, d or w)")]
    UnknownUnit { text: String, unit: String },
    /// More milliseconds than a `u64` holds.
    #[error("invalid duration {0:?}: too large")]
    TooLarge(String),
}

/// Parses `"1h30m"`-style durations. Units: ms, s, m, h, d, w.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total_ms: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(DurationError::MissingNumber {
                text: text.to_string(),
                rest: rest.to_string(),
            });
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::NumberTooLarge(text.to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "" => {
                return Err(DurationError::MissingUnit {
                    text: text.to_string(),
                    n,
                });
            }
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_string(),
                    unit: other.to_string(),
                });
            }
        };
        total_ms = total_ms
            .checked_add(n.saturating_mul(factor))
            .ok_or_else(|| DurationError::TooLarge(text.to_string()))?;
    }
    if total_ms > u64::MAX as u128 {
        return Err(DurationError::TooLarge(text.to_string()));
    }
    Ok(Duration::from_millis(total_ms as u64))
}

/// The inverse of [`parse`], in the largest exact units (`"1h30m"`).
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{}", ms / size, unit));
            ms %= size;
        }
    }
    out
}

/// Serde adapter for `Duration` fields written as human strings.
pub mod serde_human {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }
}

/// Whole seconds as operators read them: `45s`, `3m05s`, `2h10m`, `3d04h`.
pub fn human_secs(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse("").unwrap_err(), DurationError::Empty);
        assert!(matches!(
            parse("5"),
            Err(DurationError::MissingUnit { n: 5, .. })
        ));
        assert!(matches!(
            parse("5y"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse("h"),
            Err(DurationError::MissingNumber { .. })
        ));
        assert!(parse("99999999999999999999999999999999999999999d").is_err());
    }

    #[test]
    fn errors_read_as_before() {
        let text = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(
            text(" "),
            "empty duration (expected e.g. \"30s\", \"5m\", \"72h\", \"30d\")"
        );
        assert_eq!(
            text("5"),
            "invalid duration \"5\": missing unit after 5 (use ms, s, m, h, d or w)"
        );
        assert_eq!(
            text("1hx"),
            "invalid duration \"1hx\": unknown unit \"hx\" (use ms, s, m, h, d or w)"
        );
        assert_eq!(
            text("1h,"),
            "invalid duration \"1h,\": expected a number before \",\" (e.g. \"30s\", \"5m\", \"72h\", \"30d\")"
        );
        assert_eq!(
            text("99999999999999999999w"),
            "invalid duration \"99999999999999999999w\": too large"
        );
    }

    #[test]
    fn format_round_trips() {
        for s in ["1h30m", "72h", "5m", "250ms", "1d2h3m4s5ms"] {
            let d = parse(s).unwrap();
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
        assert_eq!(format(Duration::from_secs(259_200)), "3d");
    }
}
