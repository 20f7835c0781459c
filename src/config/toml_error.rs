//! How a toml error reaches an operator: one line with the line number,
//! the column and the key, and toml's message without the value.
//!
//! The value is never quoted because the error is about its key, and
//! whether a value is a credential cannot be told from a key's name: a
//! misspelt key (`tokn = "…"`, `app_secert = "…"`) is exactly what these
//! errors report, and the message goes to `status`, the log and the audit
//! trail.

/// toml errors span several lines with a caret drawing; keep the facts:
/// "line 3, column 1 (`foo = …`): unknown field `foo`, expected one of …".
/// The line is quoted up to its key; the value on it is cut from the message.
pub(super) fn one_line(e: &toml::de::Error, src: &str) -> String {
    let msg = e.message().trim();
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(src, span.start);
            let text = src.lines().nth(line - 1).unwrap_or("");
            let msg = without_values(msg, text);
            match key_of_line(text) {
                Some(key) => format!("line {line}, column {col} (`{key}`): {msg}"),
                None => format!("line {line}, column {col}: {msg}"),
            }
        }
        None => without_values(msg, ""),
    }
}

/// What of a config line may be quoted: a table header as written, or
/// `key = …` for an assignment; nothing for anything else (the middle of a
/// multi-line array or string, which is all value).
fn key_of_line(line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || t.len() > 120 {
        return None;
    }
    if t.starts_with('[') {
        // A header holds no value; drop a trailing comment all the same.
        let end = t.find(']').map(|i| i + 1)?;
        let header = t.get(..end)?;
        return Some(if t.starts_with("[[") {
            format!("{header}]")
        } else {
            header.to_string()
        });
    }
    let (key, _) = t.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| format!("{key} = …"))
}

/// toml's `msg` with every rendering of a value replaced by `…`: serde's
/// `string "…"`, `integer `…``, `unknown variant `…``, our own
/// deserializers' `"…"`, and any other appearance of the value written on
/// `line`.
fn without_values(msg: &str, line: &str) -> String {
    let mut out = redact_after(msg, "string \"", '"');
    for prefix in [
        "integer `",
        "floating point `",
        "boolean `",
        "character `",
        "unknown variant `",
        "bytes `",
    ] {
        out = redact_after(&out, prefix, '`');
    }
    if let Some(value) = line_value(line) {
        for rendering in [format!("{value:?}"), format!("`{value}`"), value.clone()] {
            // A bare value of a few characters ("1", "on") would cut
            // unrelated words from the message; quoted renderings cover it.
            if rendering == value && value.chars().count() < 4 {
                continue;
            }
            out = out.replace(&rendering, "…");
        }
    }
    out
}

/// `text` with what follows each `prefix` up to `close` replaced by `…`
/// (a backslash escapes `close`, as in Rust's `{:?}` of a string).
fn redact_after(text: &str, prefix: &str, close: char) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let (head, tail) = rest.split_at(i + prefix.len());
        out.push_str(head);
        let mut end = None;
        let mut escaped = false;
        for (j, c) in tail.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == close {
                end = Some(j);
                break;
            }
        }
        out.push('…');
        match end {
            Some(j) => rest = &tail[j..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// The value assigned on a `key = value` line, as TOML reads it (strings
/// unescaped), when it fits on the line.
fn line_value(line: &str) -> Option<String> {
    let (_, raw) = line.split_once('=')?;
    let table: toml::Table = toml::from_str(&format!("v = {}", raw.trim())).ok()?;
    match table.get("v")? {
        toml::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
    .filter(|v| !v.is_empty())
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_redaction_keeps_the_rest_of_the_message() {
        assert_eq!(
            without_values(
                "invalid type: string \"a\\\"b\", expected u32",
                "x = \"a\\\"b\""
            ),
            "invalid type: string \"…\", expected u32"
        );
        assert_eq!(
            without_values("invalid type: integer `5`, expected a string", "token = 5"),
            "invalid type: integer `…`, expected a string"
        );
        assert_eq!(
            without_values(
                "unknown variant `safe2`, expected one of `plaintext`",
                "encryption = \"safe2\""
            ),
            "unknown variant `…`, expected one of `plaintext`"
        );
        assert_eq!(
            key_of_line("  [channels.wx] # c"),
            Some("[channels.wx]".into())
        );
        assert_eq!(key_of_line("[[a.b]]"), Some("[[a.b]]".into()));
        assert_eq!(key_of_line("tokn = \"v\""), Some("tokn = …".into()));
        assert_eq!(key_of_line("  \"just a value\","), None);
    }
}
