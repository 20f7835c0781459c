//! Script errors as operators read them: `file.lua:12: in filter of audience "vip": message`,
//! and the text of the most common validation failure — a template's message
//! a channel cannot carry — with the platform's rule and the ways to fix it.

use crate::model::Platform;
use std::fmt;

/// A place in a script file (the file as shown to operators, e.g. `scripts/10_vip.lua`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: String,
    pub line: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One problem in the scripts: where (file:line), in which script function, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScriptError {
    pub location: Option<Location>,
    /// The script function involved, e.g. `filter of audience "vip"` or `route`.
    pub function: Option<String>,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.location {
            write!(f, "{l}: ")?;
        }
        if let Some(func) = &self.function {
            write!(f, "in {func}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl ScriptError {
    pub fn new(message: impl Into<String>) -> ScriptError {
        ScriptError {
            location: None,
            function: None,
            message: message.into(),
        }
    }

    pub fn at(location: Location, message: impl Into<String>) -> ScriptError {
        ScriptError {
            location: Some(location),
            function: None,
            message: message.into(),
        }
    }

    pub(crate) fn in_function(mut self, function: impl Into<String>) -> ScriptError {
        self.function = Some(function.into());
        self
    }

    /// Converts an error raised while Lua code ran. The position Lua put in
    /// front of the message (or, for errors raised by Rust callbacks, the first
    /// script frame of the traceback) becomes the location; `fallback` is used
    /// when neither exists (e.g. out of memory inside a library function).
    pub(crate) fn from_lua(err: &mlua::Error, fallback: Option<&Location>) -> ScriptError {
        let (text, traceback) = describe(err);
        let (location, message) = match split_location(&text) {
            Some((loc, rest)) => (Some(loc), rest.to_string()),
            None => (
                traceback
                    .as_deref()
                    .and_then(first_script_frame)
                    .or_else(|| fallback.cloned()),
                text,
            ),
        };
        ScriptError {
            location,
            function: None,
            message,
        }
    }
}

/// The innermost readable message of an mlua error, without Lua's traceback,
/// plus the traceback of a failing Rust callback when there is one.
fn describe(err: &mlua::Error) -> (String, Option<String>) {
    use mlua::Error as E;
    match err {
        E::CallbackError { traceback, cause } => {
            let (m, inner) = describe(cause);
            (m, inner.or_else(|| Some(traceback.clone())))
        }
        E::WithContext { context, cause } => {
            let (m, tb) = describe(cause);
            (format!("{context}: {m}"), tb)
        }
        E::BadArgument { to, pos, cause, .. } => {
            let (m, tb) = describe(cause);
            let to = to.as_deref().unwrap_or("function");
            (format!("bad argument #{pos} to {to}: {m}"), tb)
        }
        E::RuntimeError(m) | E::MemoryError(m) => (strip_traceback(m), None),
        E::SyntaxError { message, .. } => (strip_traceback(message), None),
        E::ExternalError(e) => (e.to_string(), None),
        other => (strip_traceback(&other.to_string()), None),
    }
}

fn strip_traceback(m: &str) -> String {
    let m = match m.find("\nstack traceback:") {
        Some(i) => &m[..i],
        None => m,
    };
    m.trim_end().to_string()
}

/// Splits `"scripts/x.lua:12: message"` into its location and message.
pub(crate) fn split_location(text: &str) -> Option<(Location, &str)> {
    let idx = text.find(".lua:")?;
    let file = &text[..idx + 4];
    if file.contains('\n') || file.starts_with(' ') {
        return None;
    }
    let rest = &text[idx + 5..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let line: u32 = rest[..digits].parse().ok()?;
    let msg = rest[digits..].strip_prefix(':').unwrap_or(&rest[digits..]);
    Some((
        Location {
            file: file.to_string(),
            line,
        },
        msg.trim_start(),
    ))
}

/// The first `file.lua:N:` frame of a Lua traceback.
fn first_script_frame(traceback: &str) -> Option<Location> {
    traceback
        .lines()
        .filter_map(|l| split_location(l.trim()))
        .map(|(loc, _)| loc)
        .next()
}

/// Where a rendered message came from: the fix for a message a channel
/// cannot carry depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Made<'a> {
    /// Returned by the template's `render` function (defined there).
    Render(&'a Location),
    /// A locale table: the generic one (`platform: None`) or a platform's
    /// own version (`whatsapp = { en = … }`).
    Table {
        locale: &'a str,
        platform: Option<Platform>,
    },
}

/// A template's message that a channel (or, for a platform version checked
/// without a configured channel, a platform) cannot carry. Its text names
/// the template and table, the platform's rule, and the fixes: a version
/// for that platform, or routing those members elsewhere.
pub(crate) struct Unsendable<'a> {
    pub template: &'a str,
    pub made: Made<'a>,
    /// The locale of the member it was rendered for.
    pub locale: &'a str,
    /// The platform of the member it was rendered for (what picks a version).
    pub member_platform: &'a str,
    /// The channel it was routed to; `None` when no channel of `platform` is configured.
    pub channel: Option<&'a str>,
    pub platform: &'a str,
    /// The channel's own words: which rule the message breaks.
    pub rule: &'a str,
}

impl fmt::Display for Unsendable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, mp, locale) = (self.template, self.member_platform, self.locale);
        match self.made {
            Made::Render(at) => {
                write!(f, "template {t:?} (the message its render at {at} returns)")?
            }
            Made::Table {
                locale,
                platform: None,
            } => write!(f, "template {t:?} (its {locale} table)")?,
            Made::Table {
                locale,
                platform: Some(p),
            } => write!(f, "template {t:?} (its {p}.{locale} version)")?,
        }
        match self.channel {
            Some(c) => write!(f, " cannot be sent to channel {c:?} ({})", self.platform)?,
            None => write!(f, " cannot be sent on {}", self.platform)?,
        }
        write!(f, ": {}. Fix: ", self.rule)?;
        match self.made {
            Made::Table { platform: None, .. } => write!(
                f,
                "add a {mp} version of the message that fits this rule to the template, `{mp} = {{ {locale} = {{ text = … }} }}`"
            )?,
            Made::Table {
                locale,
                platform: Some(p),
            } => write!(f, "change {p}.{locale} in the template to fit this rule")?,
            Made::Render(_) => write!(
                f,
                "when ctx.platform == \"{mp}\", return a message that fits this rule from render (or return nil there and add `{mp} = {{ {locale} = {{ text = … }} }}` to the template)"
            )?,
        }
        // Routing elsewhere is a fix only where a channel was routed to.
        if self.channel.is_some() {
            write!(
                f,
                ", or route {mp} members elsewhere in route() (return another channel, or {{ skip = \"…\" }})"
            )?;
        }
        Ok(())
    }
}

/// The router sent a platform template (`kind = "template"`) to a channel
/// that cannot carry it.
pub(crate) fn unsendable_platform_template(
    template: &str,
    name: &str,
    channel: &str,
    platform: &str,
    rule: &str,
) -> String {
    format!(
        "route() sends the platform template {name:?} (for template {template:?}) to channel {channel:?} ({platform}), which cannot carry it: {rule}. Fix route() for these members: return {{ channel = … }} for a free-form message, or {{ skip = \"…\" }}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_location_function_message() {
        let e = ScriptError::at(
            Location {
                file: "scripts/10_vip.lua".into(),
                line: 12,
            },
            "boom",
        )
        .in_function("filter of audience \"vip\"");
        assert_eq!(
            e.to_string(),
            "scripts/10_vip.lua:12: in filter of audience \"vip\": boom"
        );
        assert_eq!(ScriptError::new("plain").to_string(), "plain");
    }

    #[test]
    fn splits_lua_positions() {
        let (l, m) = split_location("scripts/a.lua:7: attempt to index a nil value").unwrap();
        assert_eq!(
            (l.file.as_str(), l.line, m),
            ("scripts/a.lua", 7, "attempt to index a nil value")
        );
        assert!(split_location("no position here").is_none());
        assert!(split_location("x.lua:abc: nope").is_none());
    }

    #[test]
    fn runtime_error_loses_traceback() {
        let err = mlua::Error::RuntimeError("s/a.lua:3: bad\nstack traceback:\n\t[C]: in ?".into());
        let e = ScriptError::from_lua(&err, None);
        assert_eq!(e.to_string(), "s/a.lua:3: bad");
    }

    #[test]
    fn unsendable_names_the_rule_and_both_fixes() {
        let at = Location {
            file: "scripts/20_t.lua".into(),
            line: 9,
        };
        let mut u = Unsendable {
            template: "welcome",
            made: Made::Table {
                locale: "en",
                platform: None,
            },
            locale: "en",
            member_platform: "whatsapp",
            channel: Some("wa"),
            platform: "whatsapp",
            rule: "WhatsApp: at most 3 reply buttons",
        };
        let text = u.to_string();
        for needle in [
            "template \"welcome\" (its en table) cannot be sent to channel \"wa\" (whatsapp)",
            "WhatsApp: at most 3 reply buttons. Fix: ",
            "`whatsapp = { en = { text = … } }`",
            "or route whatsapp members elsewhere in route()",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
        u.made = Made::Table {
            locale: "en",
            platform: Some(Platform::Whatsapp),
        };
        assert!(u.to_string().contains("change whatsapp.en in the template"));
        u.channel = None;
        assert!(!u.to_string().contains("route()"), "{u}");
        u.made = Made::Render(&at);
        u.channel = Some("wa");
        let text = u.to_string();
        assert!(text.contains("render at scripts/20_t.lua:9"), "{text}");
        assert!(text.contains("ctx.platform == \"whatsapp\""), "{text}");
    }
}
