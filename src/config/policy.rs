//! `[policy]`: the delivery policy that holds across all pushes — frequency
//! caps per member (calendar days and weeks of the member's timezone) and
//! quiet hours (in the member's timezone), with the timezone used for
//! members who have none. Parsed and validated here; applied by the
//! dispatcher (`dispatch::policy`) and counted by the store
//! (`store::policy`).

use super::ConfigValueError;
use chrono::NaiveTime;
use serde::Deserialize;
use std::fmt;

/// Messages per member over all pushes together; `None` = no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    /// Per calendar day (local midnight to midnight).
    pub day: Option<u32>,
    /// Per calendar week (Monday 00:00 to Sunday 24:00, local).
    pub week: Option<u32>,
}

impl Caps {
    pub fn is_some(&self) -> bool {
        self.day.is_some() || self.week.is_some()
    }
}

/// Hours of the day, `from` inclusive to `to` exclusive, wrapping past
/// midnight when `from > to` ("21:00-08:00"). Never empty (`from != to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyHours {
    pub from: NaiveTime,
    pub to: NaiveTime,
}

impl DailyHours {
    /// Parses "HH:MM-HH:MM".
    pub fn parse(s: &str) -> Result<DailyHours, ConfigValueError> {
        let bad = || ConfigValueError::HoursNotRange(s.to_string());
        let (from, to) = s.trim().split_once('-').ok_or_else(bad)?;
        let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| bad());
        let (from, to) = (time(from)?, time(to)?);
        if from == to {
            return Err(ConfigValueError::HoursEmpty(s.to_string()));
        }
        Ok(DailyHours { from, to })
    }

    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.from <= self.to {
            t >= self.from && t < self.to
        } else {
            t >= self.from || t < self.to // wraps past midnight
        }
    }
}

impl fmt::Display for DailyHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.from.format("%H:%M"),
            self.to.format("%H:%M")
        )
    }
}

/// `[policy]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPolicy {
    max_per_member: Option<Caps>,
    quiet_hours: Option<String>,
    default_timezone: Option<String>,
}

/// The delivery policy in force (`[policy]`), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub max_per_member: Caps,
    /// Hours in which nobody is messaged (held until they end).
    pub quiet_hours: Option<DailyHours>,
    /// For members whose timezone is empty or not an IANA name.
    pub default_timezone: chrono_tz::Tz,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            max_per_member: Caps::default(),
            quiet_hours: None,
            default_timezone: chrono_tz::UTC,
        }
    }
}

impl PolicyConfig {
    /// Validates `[policy]`; errors are (field, what is wrong and what to write).
    pub(super) fn from_raw(raw: RawPolicy) -> Result<PolicyConfig, (String, String)> {
        let caps = raw.max_per_member.unwrap_or_default();
        if raw.max_per_member.is_some() && !caps.is_some() {
            return Err((
                "policy.max_per_member".into(),
                "is empty; write { day = 2 } and/or { week = 5 }, or leave it out for no cap"
                    .into(),
            ));
        }
        for (key, v) in [("day", caps.day), ("week", caps.week)] {
            if v == Some(0) {
                return Err((
                    format!("policy.max_per_member.{key}"),
                    format!(
                        "must be at least 1 (0 would send nothing at all); leave `{key}` out for no {key}ly cap"
                    ),
                ));
            }
        }
        let quiet_hours = raw
            .quiet_hours
            .as_deref()
            .map(DailyHours::parse)
            .transpose()
            .map_err(|m| {
                let hint = "; leave quiet_hours out to send at any hour";
                ("policy.quiet_hours".to_string(), format!("{m}{hint}"))
            })?;
        let default_timezone = match raw.default_timezone.as_deref().map(str::trim) {
            None => chrono_tz::UTC,
            Some(name) => name.parse().map_err(|_| {
                (
                    "policy.default_timezone".to_string(),
                    format!("{name:?} is not an IANA time zone like \"Asia/Hong_Kong\" or \"UTC\""),
                )
            })?,
        };
        Ok(PolicyConfig {
            max_per_member: caps,
            quiet_hours,
            default_timezone,
        })
    }

    /// Something to apply: a cap or quiet hours.
    pub fn is_active(&self) -> bool {
        self.max_per_member.is_some() || self.quiet_hours.is_some()
    }

    /// The timezone a member's calendar and quiet hours are read in: its
    /// own when it names one, else `default_timezone`.
    pub fn timezone_of(&self, member_timezone: &str) -> chrono_tz::Tz {
        member_timezone.parse().unwrap_or(self.default_timezone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Result<PolicyConfig, (String, String)> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| ("toml".into(), e.to_string()))?;
        PolicyConfig::from_raw(raw)
    }

    #[test]
    fn a_full_policy_parses() {
        let p = policy(
            "max_per_member = { day = 2, week = 5 }\nquiet_hours = \"21:00-08:00\"\ndefault_timezone = \"Asia/Hong_Kong\"\n",
        )
        .unwrap();
        assert_eq!(
            p.max_per_member,
            Caps {
                day: Some(2),
                week: Some(5)
            }
        );
        assert_eq!(p.quiet_hours.unwrap().to_string(), "21:00-08:00");
        assert_eq!(p.default_timezone, chrono_tz::Asia::Hong_Kong);
        assert!(p.is_active());
        assert_eq!(p.timezone_of(""), chrono_tz::Asia::Hong_Kong);
        assert_eq!(p.timezone_of("Europe/London"), chrono_tz::Europe::London);
        let none = policy("").unwrap();
        assert!(!none.is_active());
        assert_eq!(none, PolicyConfig::default());
    }

    #[test]
    fn malformed_policies_name_the_field() {
        for (text, field, says) in [
            (
                "quiet_hours = \"21:00\"",
                "policy.quiet_hours",
                "HH:MM-HH:MM",
            ),
            (
                "quiet_hours = \"25:00-08:00\"",
                "policy.quiet_hours",
                "21:00-08:00",
            ),
            (
                "quiet_hours = \"08:00-08:00\"",
                "policy.quiet_hours",
                "same time",
            ),
            (
                "max_per_member = { day = 0 }",
                "policy.max_per_member.day",
                "at least 1",
            ),
            ("max_per_member = {}", "policy.max_per_member", "is empty"),
            (
                "default_timezone = \"Mars/Olympus\"",
                "policy.default_timezone",
                "IANA",
            ),
        ] {
            let (f, m) = policy(text).unwrap_err();
            assert_eq!(f, field, "{text}: {m}");
            assert!(m.contains(says), "{text}: {m}");
        }
        // Unknown keys are refused by the parser (with the key's name).
        let (_, m) = policy("max_per_member = { month = 3 }").unwrap_err();
        assert!(m.contains("month"), "{m}");
    }

    #[test]
    fn daily_hours_wrap_past_midnight() {
        let q = DailyHours::parse("21:00-08:00").unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(q.contains(t(21, 0)) && q.contains(t(23, 59)) && q.contains(t(7, 59)));
        assert!(!q.contains(t(8, 0)) && !q.contains(t(20, 59)) && !q.contains(t(12, 0)));
        let day = DailyHours::parse(" 09:00 - 17:30 ").unwrap();
        assert!(day.contains(t(9, 0)) && !day.contains(t(17, 30)));
        assert_eq!(day.to_string(), "09:00-17:30");
    }
}
