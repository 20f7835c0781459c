//! `audience { where = {…} }` → a parameterised SQL condition over `members m`.
//!
//! Values never enter the SQL text: every one is a `?` parameter. Tag tests use
//! `m.id IN (SELECT member_id FROM member_tags WHERE tag …)`, which lets SQLite
//! drive the query from the `(tag, member_id)` index when a tag is selective
//! instead of probing once per member.

use super::SqlFilter;
use super::template::{is_locale_tag, valid_attribute_key};
use crate::model::Platform;
use crate::model::SqlValue as Sql;
use crate::util::duration::{self, DurationError};
use mlua::{Table, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) const WHERE_KEYS: &[&str] = &[
    "platform",
    "channel",
    "tags_all",
    "tags_any",
    "tags_none",
    "subscribed",
    "locale",
    "last_interaction_within",
    "attributes",
];

/// An attribute value to compare with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttrValue {
    Text(String),
    Integer(i64),
    Real(f64),
    Bool(bool),
}

/// A parsed `where` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Where {
    pub platform: Option<Vec<Platform>>,
    pub channel: Option<Vec<String>>,
    pub tags_all: Vec<String>,
    pub tags_any: Option<Vec<String>>,
    pub tags_none: Vec<String>,
    pub subscribed: Option<bool>,
    pub locale: Option<Vec<String>>,
    pub last_interaction_within: Option<Duration>,
    pub attributes: Vec<(String, Vec<AttrValue>)>,
}

/// What is wrong with one key of a `where` table (the key is added by
/// [`parse`]).
#[derive(Debug, thiserror::Error)]
enum WhereError {
    #[error(transparent)]
    Lua(#[from] mlua::Error),
    #[error("unknown key {0:?} (where takes: {keys})", keys = WHERE_KEYS.join(", "))]
    UnknownKey(String),
    #[error(
        "unknown platform {0:?} (platforms: {names})",
        names = Platform::ALL.map(|p| p.as_str()).join(", ")
    )]
    UnknownPlatform(String),
    #[error("must be true or false, found {0}")]
    NotBool(&'static str),
    #[error("{0:?} is not a locale like \"en\" or \"zh-CN\"")]
    NotLocale(String),
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("must be longer than 0s")]
    ZeroDuration,
    #[error("must be a duration like \"30d\" or \"12h\"")]
    NotDuration,
    #[error("list items must be strings, found {0}")]
    ItemNotString(&'static str),
    #[error("must be a string or a non-empty list of strings")]
    NotStringList,
    #[error("must be a string or a list of strings, found {0}")]
    NotStrings(&'static str),
    #[error("values must be strings, numbers or booleans, found {0}")]
    NotAttrValue(&'static str),
    #[error("must be a table like {{ plan = \"pro\" }}")]
    AttributesNotTable,
    #[error("keys must be attribute names")]
    AttributeKeyNotName,
    #[error("{0:?} is not a valid attribute name (letters, digits, '_' or '-')")]
    InvalidAttributeName(String),
    #[error("{0}: an empty list matches nobody")]
    EmptyAttributeList(String),
    /// A problem with one attribute's value.
    #[error("{key}: {error}")]
    InAttribute { key: String, error: Box<WhereError> },
}

/// Reads `where`; every problem is returned (one message each).
pub(crate) fn parse(t: &Table) -> Result<Where, Vec<String>> {
    let mut w = Where::default();
    let mut errors = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = match pair {
            Ok(kv) => kv,
            Err(e) => {
                errors.push(format!("where: {e}"));
                continue;
            }
        };
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                errors.push(format!(
                    "where: keys must be names, found a {}",
                    other.type_name()
                ));
                continue;
            }
        };
        let r: Result<(), WhereError> = (|| {
            match key.as_str() {
                "platform" => {
                    let names = strings(&v)?;
                    let mut out = Vec::new();
                    for n in names {
                        let platform = Platform::parse(&n);
                        out.push(platform.ok_or(WhereError::UnknownPlatform(n))?);
                    }
                    w.platform = Some(out);
                }
                "channel" => w.channel = Some(strings(&v)?),
                "tags_all" => w.tags_all = strings(&v)?,
                "tags_any" => w.tags_any = Some(strings(&v)?),
                "tags_none" => w.tags_none = strings(&v)?,
                "subscribed" => match v {
                    Value::Boolean(b) => w.subscribed = Some(b),
                    _ => return Err(WhereError::NotBool(v.type_name())),
                },
                "locale" => {
                    let ls = strings(&v)?;
                    if let Some(bad) = ls.iter().find(|l| !is_locale_tag(l)) {
                        return Err(WhereError::NotLocale(bad.clone()));
                    }
                    w.locale = Some(ls);
                }
                "last_interaction_within" => match &v {
                    Value::String(s) => {
                        let d = duration::parse(&s.to_string_lossy())?;
                        if d.is_zero() {
                            return Err(WhereError::ZeroDuration);
                        }
                        w.last_interaction_within = Some(d);
                    }
                    _ => return Err(WhereError::NotDuration),
                },
                "attributes" => w.attributes = attributes(&v)?,
                other => return Err(WhereError::UnknownKey(other.to_string())),
            }
            Ok(())
        })();
        match r {
            Ok(()) => {}
            Err(e @ WhereError::UnknownKey(_)) => errors.push(format!("where: {e}")),
            Err(e) => errors.push(format!("where.{key}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(w)
    } else {
        Err(errors)
    }
}

/// A string, or a non-empty list of strings.
fn strings(v: &Value) -> Result<Vec<String>, WhereError> {
    match v {
        Value::String(s) => Ok(vec![s.to_str()?.to_string()]),
        Value::Table(t) => {
            let mut out = Vec::new();
            for item in t.sequence_values::<Value>() {
                match item? {
                    Value::String(s) => out.push(s.to_str()?.to_string()),
                    other => return Err(WhereError::ItemNotString(other.type_name())),
                }
            }
            if out.is_empty()
                || out.len() != t.raw_len()
                || t.pairs::<Value, Value>().count() != out.len()
            {
                return Err(WhereError::NotStringList);
            }
            Ok(out)
        }
        other => Err(WhereError::NotStrings(other.type_name())),
    }
}

fn attr_value(v: &Value) -> Result<AttrValue, WhereError> {
    match v {
        Value::String(s) => Ok(AttrValue::Text(s.to_str()?.to_string())),
        Value::Integer(i) => Ok(AttrValue::Integer(*i)),
        Value::Number(n) if n.is_finite() => Ok(AttrValue::Real(*n)),
        Value::Boolean(b) => Ok(AttrValue::Bool(*b)),
        other => Err(WhereError::NotAttrValue(other.type_name())),
    }
}

fn attributes(v: &Value) -> Result<Vec<(String, Vec<AttrValue>)>, WhereError> {
    let Value::Table(t) = v else {
        return Err(WhereError::AttributesNotTable);
    };
    let mut out = BTreeMap::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Value::String(k) = k else {
            return Err(WhereError::AttributeKeyNotName);
        };
        let key = k.to_string_lossy();
        if !valid_attribute_key(&key) {
            return Err(WhereError::InvalidAttributeName(key));
        }
        let values = match &v {
            Value::Table(list) => {
                let vals = list
                    .sequence_values::<Value>()
                    .map(|x| attr_value(&x?))
                    .collect::<Result<Vec<_>, _>>()?;
                if vals.is_empty() {
                    return Err(WhereError::EmptyAttributeList(key));
                }
                vals
            }
            other => vec![attr_value(other).map_err(|e| WhereError::InAttribute {
                key: key.clone(),
                error: Box::new(e),
            })?],
        };
        out.insert(key, values);
    }
    Ok(out.into_iter().collect())
}

/// A parsed-valid `where` table back as Lua source, for operators to read
/// what an audience selects: `{ platform = "whatsapp", tags_all = { "vip" } }`.
/// Keys come in [`WHERE_KEYS`] order (Lua does not keep the written order).
pub(crate) fn written(t: &Table) -> String {
    let mut pairs: Vec<(String, String)> = t
        .pairs::<Value, Value>()
        .filter_map(Result::ok)
        .filter_map(|(k, v)| match k {
            Value::String(k) => Some((k.to_string_lossy(), lua_literal(&v, 0))),
            _ => None,
        })
        .collect();
    let rank = |k: &str| {
        WHERE_KEYS
            .iter()
            .position(|w| *w == k)
            .unwrap_or(usize::MAX)
    };
    pairs.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then_with(|| a.0.cmp(&b.0)));
    table_text(pairs.into_iter().map(|(k, v)| format!("{k} = {v}")))
}

fn table_text(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "{}".into()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

/// A value of a `where` as Lua source (strings quoted, lists and tables
/// nested; deeper than a `where` can be, `{…}`).
fn lua_literal(v: &Value, depth: usize) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Table(_) if depth > 2 => "{…}".into(),
        Value::Table(t) => {
            let seq: Vec<String> = t
                .sequence_values::<Value>()
                .filter_map(Result::ok)
                .map(|x| lua_literal(&x, depth + 1))
                .collect();
            if !seq.is_empty() {
                return table_text(seq.into_iter());
            }
            let mut pairs: Vec<(String, String)> = t
                .pairs::<Value, Value>()
                .filter_map(Result::ok)
                .map(|(k, v)| {
                    let key = match &k {
                        Value::String(s) => s.to_string_lossy(),
                        other => format!("[{}]", lua_literal(other, depth + 1)),
                    };
                    (key, lua_literal(&v, depth + 1))
                })
                .collect();
            pairs.sort();
            table_text(pairs.into_iter().map(|(k, v)| format!("{k} = {v}")))
        }
        other => other.type_name().to_string(),
    }
}

/// Builds the SQL. `instances` maps each platform to its configured channel instances.
pub(crate) fn to_sql(w: &Where, instances: &BTreeMap<Platform, Vec<String>>) -> SqlFilter {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Sql> = Vec::new();
    let placeholders = |n: usize| vec!["?"; n].join(", ");

    if let Some(ps) = &w.platform {
        let chans: Vec<&String> = ps
            .iter()
            .flat_map(|p| instances.get(p).into_iter().flatten())
            .collect();
        if chans.is_empty() {
            clauses.push("0".into());
        } else {
            clauses.push(format!("m.channel IN ({})", placeholders(chans.len())));
            params.extend(chans.into_iter().map(|c| Sql::Text(c.clone())));
        }
    }
    if let Some(cs) = &w.channel {
        clauses.push(format!("m.channel IN ({})", placeholders(cs.len())));
        params.extend(cs.iter().map(|c| Sql::Text(c.clone())));
    }
    for tag in &w.tags_all {
        clauses.push("m.id IN (SELECT t.member_id FROM member_tags t WHERE t.tag = ?)".into());
        params.push(Sql::Text(tag.clone()));
    }
    if let Some(tags) = &w.tags_any {
        clauses.push(format!(
            "m.id IN (SELECT t.member_id FROM member_tags t WHERE t.tag IN ({}))",
            placeholders(tags.len())
        ));
        params.extend(tags.iter().map(|t| Sql::Text(t.clone())));
    }
    if !w.tags_none.is_empty() {
        clauses.push(format!(
            "m.id NOT IN (SELECT t.member_id FROM member_tags t WHERE t.tag IN ({}))",
            placeholders(w.tags_none.len())
        ));
        params.extend(w.tags_none.iter().map(|t| Sql::Text(t.clone())));
    }
    if let Some(s) = w.subscribed {
        clauses.push("m.subscribed = ?".into());
        params.push(Sql::Integer(s as i64));
    }
    if let Some(ls) = &w.locale {
        // A bare language ("zh") also matches its regional forms ("zh-CN", "zh_TW").
        let mut any = Vec::new();
        for l in ls {
            let l = l.to_ascii_lowercase().replace('_', "-");
            any.push("replace(lower(m.locale), '_', '-') = ?".to_string());
            params.push(Sql::Text(l.clone()));
            if !l.contains('-') {
                any.push(format!(
                    "replace(lower(substr(m.locale, 1, {})), '_', '-') = ?",
                    l.len() + 1
                ));
                params.push(Sql::Text(format!("{l}-")));
            }
        }
        clauses.push(format!("({})", any.join(" OR ")));
    }
    if let Some(d) = w.last_interaction_within {
        // Evaluated when the query runs, not when the script loaded.
        clauses.push("m.last_interaction_at >= (unixepoch('now') * 1000 - ?)".into());
        params.push(Sql::Integer(d.as_millis().min(i64::MAX as u128) as i64));
    }
    for (key, values) in &w.attributes {
        let path = format!("$.\"{key}\"");
        let mut any = Vec::new();
        for v in values {
            match v {
                AttrValue::Bool(b) => {
                    any.push("json_type(m.attributes, ?) = ?".to_string());
                    params.push(Sql::Text(path.clone()));
                    params.push(Sql::Text(if *b { "true" } else { "false" }.into()));
                }
                AttrValue::Text(s) => {
                    any.push(
                        "json_type(m.attributes, ?) = 'text' AND json_extract(m.attributes, ?) = ?"
                            .to_string(),
                    );
                    params.push(Sql::Text(path.clone()));
                    params.push(Sql::Text(path.clone()));
                    params.push(Sql::Text(s.clone()));
                }
                AttrValue::Integer(i) => {
                    any.push("json_type(m.attributes, ?) IN ('integer', 'real') AND json_extract(m.attributes, ?) = ?".to_string());
                    params.push(Sql::Text(path.clone()));
                    params.push(Sql::Text(path.clone()));
                    params.push(Sql::Integer(*i));
                }
                AttrValue::Real(r) => {
                    any.push("json_type(m.attributes, ?) IN ('integer', 'real') AND json_extract(m.attributes, ?) = ?".to_string());
                    params.push(Sql::Text(path.clone()));
                    params.push(Sql::Text(path.clone()));
                    params.push(Sql::Real(*r));
                }
            }
        }
        clauses.push(format!("(({}))", any.join(") OR (")));
    }

    let sql = if clauses.is_empty() {
        "1".to_string()
    } else {
        clauses
            .into_iter()
            .map(|c| format!("({c})"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    SqlFilter { sql, params }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_where_matches_all() {
        let f = to_sql(&Where::default(), &BTreeMap::new());
        assert_eq!(f.sql, "1");
        assert!(f.params.is_empty());
    }

    #[test]
    fn values_are_parameters_never_sql_text() {
        let w = Where {
            channel: Some(vec!["x'); DROP TABLE members; --".into()]),
            tags_all: vec!["a'b".into()],
            attributes: vec![("plan".into(), vec![AttrValue::Text("p'ro".into())])],
            ..Where::default()
        };
        let f = to_sql(&w, &BTreeMap::new());
        assert!(!f.sql.contains("DROP"), "{}", f.sql);
        assert!(!f.sql.contains("a'b"), "{}", f.sql);
        assert!(!f.sql.contains("p'ro"), "{}", f.sql);
        assert_eq!(f.sql.matches('?').count(), f.params.len());
    }

    #[test]
    fn written_reads_as_the_script_does() {
        let lua = mlua::Lua::new();
        let t: Table = lua
            .load(r#"{ attributes = { plan = { "pro", "team" } }, tags_all = { "vip" }, platform = "whatsapp", subscribed = true, last_interaction_within = "30d" }"#)
            .eval()
            .unwrap();
        assert_eq!(
            written(&t),
            r#"{ platform = "whatsapp", tags_all = { "vip" }, subscribed = true, last_interaction_within = "30d", attributes = { plan = { "pro", "team" } } }"#
        );
        let empty: Table = lua.load("{}").eval().unwrap();
        assert_eq!(written(&empty), "{}");
        let quoted: Table = lua.load(r#"{ channel = 'a"b' }"#).eval().unwrap();
        assert_eq!(written(&quoted), r#"{ channel = "a\"b" }"#);
    }

    #[test]
    fn platform_without_instances_matches_nobody() {
        let w = Where {
            platform: Some(vec![Platform::Whatsapp]),
            ..Where::default()
        };
        assert_eq!(to_sql(&w, &BTreeMap::new()).sql, "(0)");
    }
}
