//! Script errors as operators read them: `file.lua:12: in filter of audience "vip": message`.

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
}
