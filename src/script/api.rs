//! The definition functions scripts call while they load: `audience`,
//! `template`, `route`, `push`, plus `log.*` (and `print`, an alias of
//! `log.info`). Problems in a definition are recorded with its file:line and
//! loading goes on, so one run reports every mistake. Templates are
//! compiled in `api/template_def.rs`; a push's options are read in
//! `api/push_def.rs` (schedule) and `api/ab_def.rs` (A/B test, holdout).

mod ab_def;
mod push_def;
mod template_def;

pub(crate) use template_def::{Body, TemplateSlot};

use super::convert::check_keys;
use super::error::{Location, ScriptError};
use super::where_sql;
use super::{AudienceDef, PushDef, Shared};
use mlua::{Function, Lua, Table, Value, Variadic};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

pub(crate) struct AudienceSlot {
    pub def: AudienceDef,
    pub filter: Option<(Function, Location)>,
}

/// Everything the scripts defined, plus the problems found on the way.
#[derive(Default)]
pub(crate) struct Defs {
    pub audiences: BTreeMap<String, AudienceSlot>,
    pub templates: BTreeMap<String, TemplateSlot>,
    pub pushes: Vec<PushDef>,
    pub route: Option<(Function, Location)>,
    pub errors: Vec<ScriptError>,
    pub loading: bool,
    /// `kind "name"` calls still waiting for their `{ … }` body.
    pub pending: Vec<(&'static str, String, Location, Rc<Cell<bool>>)>,
}

impl Defs {
    /// Reports definitions written without a body (`audience "x"` alone).
    pub(crate) fn check_pending(&mut self) {
        for (kind, name, at, done) in std::mem::take(&mut self.pending) {
            if !done.get() {
                self.errors.push(ScriptError::at(
                    at,
                    format!("{kind} {name:?} has no body; write {kind} \"{name}\" {{ … }}"),
                ));
            }
        }
    }
}

type DefsRef = Rc<RefCell<Defs>>;

/// The script line calling into Rust: the first Lua frame above the callback.
pub(crate) fn caller(lua: &Lua) -> Location {
    for level in 1..8 {
        let found = lua.inspect_stack(level, |d| {
            let src = d.source();
            match (src.what, src.short_src, d.current_line()) {
                ("Lua" | "main", Some(file), Some(line)) => Some(Location {
                    file: file.into_owned(),
                    line: line as u32,
                }),
                _ => None,
            }
        });
        match found {
            Some(Some(loc)) => return loc,
            Some(None) => continue,
            None => break,
        }
    }
    Location {
        file: "?".into(),
        line: 0,
    }
}

/// Where a script function was defined.
pub(crate) fn defined_at(f: &Function) -> Location {
    let info = f.info();
    Location {
        file: info.short_src.unwrap_or_else(|| "?".into()),
        line: info.line_defined.unwrap_or(0) as u32,
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn not_loading(what: &str) -> mlua::Error {
    mlua::Error::RuntimeError(format!(
        "{what}() defines things and may only run while the scripts load, not inside filter/render/route"
    ))
}

/// Installs the API globals into a state.
pub(crate) fn install(lua: &Lua, defs: DefsRef, shared: Arc<Shared>) -> mlua::Result<()> {
    let g = lua.globals();
    g.set(
        "audience",
        definer(
            lua,
            defs.clone(),
            shared.clone(),
            "audience",
            define_audience,
        )?,
    )?;
    g.set(
        "template",
        definer(
            lua,
            defs.clone(),
            shared.clone(),
            "template",
            template_def::define_template,
        )?,
    )?;
    g.set(
        "push",
        definer(lua, defs.clone(), shared.clone(), "push", define_push)?,
    )?;
    let d = defs;
    g.set(
        "route",
        lua.create_function(move |lua, f: Value| {
            let at = caller(lua);
            let mut defs = d.borrow_mut();
            if !defs.loading {
                return Err(not_loading("route"));
            }
            match f {
                Value::Function(f) => {
                    if let Some((_, first)) = &defs.route {
                        let msg =
                            format!("route is already defined at {first}; scripts have one router");
                        defs.errors.push(ScriptError::at(at, msg));
                    } else {
                        defs.route = Some((f, at));
                    }
                }
                other => defs.errors.push(ScriptError::at(
                    at,
                    format!(
                        "route takes a function(m, msg, ctx), found {}",
                        other.type_name()
                    ),
                )),
            }
            Ok(())
        })?,
    )?;
    let log = lua.create_table()?;
    for level in ["debug", "info", "warn", "error"] {
        log.set(level, log_fn(lua, level)?)?;
    }
    g.set("print", log_fn(lua, "info")?)?;
    g.set("log", log)?;
    Ok(())
}

fn log_fn(lua: &Lua, level: &'static str) -> mlua::Result<Function> {
    lua.create_function(move |lua, args: Variadic<Value>| {
        let at = caller(lua);
        let mut text = String::new();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            match a {
                Value::String(s) => text.push_str(&s.to_string_lossy()),
                other => text.push_str(
                    &other
                        .to_string()
                        .unwrap_or_else(|_| other.type_name().into()),
                ),
            }
        }
        let at = at.to_string();
        match level {
            "debug" => tracing::debug!(target: "pushd::script", at = %at, "{text}"),
            "info" => tracing::info!(target: "pushd::script", at = %at, "{text}"),
            "warn" => tracing::warn!(target: "pushd::script", at = %at, "{text}"),
            _ => tracing::error!(target: "pushd::script", at = %at, "{text}"),
        }
        Ok(())
    })
}

type DefineFn = fn(&Lua, &DefsRef, &Shared, String, Location, Value);

/// `kind "name" { … }` (also `kind("name", { … })`).
fn definer(
    lua: &Lua,
    defs: DefsRef,
    shared: Arc<Shared>,
    kind: &'static str,
    define: DefineFn,
) -> mlua::Result<Function> {
    lua.create_function(move |lua, (name, body): (Value, Value)| {
        let at = caller(lua);
        if !defs.borrow().loading {
            return Err(not_loading(kind));
        }
        let name = match &name {
            Value::String(s) if valid_name(&s.to_string_lossy()) => s.to_string_lossy(),
            other => {
                let shown = match other {
                    Value::String(s) => format!("{:?}", s.to_string_lossy()),
                    v => format!("a {}", v.type_name()),
                };
                defs.borrow_mut().errors.push(ScriptError::at(
                    at,
                    format!(
                        "{kind} needs a name (letters, digits, '_', '-', '.', ':'), like {kind} \"name\" {{ … }}; found {shown}"
                    ),
                ));
                // Swallow the body so the script keeps loading.
                return lua.create_function(|_, _: Value| Ok(())).map(Value::Function);
            }
        };
        if !body.is_nil() {
            define(lua, &defs, &shared, name, at, body);
            return Ok(Value::Nil);
        }
        let done = Rc::new(Cell::new(false));
        defs.borrow_mut()
            .pending
            .push((kind, name.clone(), at.clone(), done.clone()));
        let defs = defs.clone();
        let shared = shared.clone();
        lua.create_function(move |lua, body: Value| {
            if !defs.borrow().loading {
                return Err(not_loading(kind));
            }
            if done.replace(true) {
                return Err(mlua::Error::RuntimeError(format!(
                    "{kind} {name:?} already has its body"
                )));
            }
            define(lua, &defs, &shared, name.clone(), at.clone(), body);
            Ok(())
        })
        .map(Value::Function)
    })
}

fn body_table<'a>(
    defs: &DefsRef,
    kind: &str,
    name: &str,
    at: &Location,
    body: &'a Value,
    allowed: &[&str],
) -> Option<&'a Table> {
    let err = match body {
        Value::Table(t) => match check_keys(t, allowed, &format!("{kind} {name:?}")) {
            Ok(()) => return Some(t),
            Err(e) => e,
        },
        other => format!(
            "{kind} {name:?} needs a table body ({kind} \"{name}\" {{ … }}), found {}",
            other.type_name()
        ),
    };
    defs.borrow_mut()
        .errors
        .push(ScriptError::at(at.clone(), err));
    None
}

fn field(t: &Table, key: &str) -> Value {
    t.raw_get(key).unwrap_or(Value::Nil)
}

fn opt_string(t: &Table, key: &str, errs: &mut Vec<String>) -> Option<String> {
    match field(t, key) {
        Value::Nil => None,
        Value::String(s) => Some(s.to_string_lossy()),
        other => {
            errs.push(format!(
                "{key} must be a string, found {}",
                other.type_name()
            ));
            None
        }
    }
}

fn opt_function(t: &Table, key: &str, errs: &mut Vec<String>) -> Option<(Function, Location)> {
    match field(t, key) {
        Value::Nil => None,
        Value::Function(f) => {
            let at = defined_at(&f);
            Some((f, at))
        }
        other => {
            errs.push(format!(
                "{key} must be a function, found {}",
                other.type_name()
            ));
            None
        }
    }
}

fn record(defs: &DefsRef, at: &Location, prefix: &str, errs: Vec<String>) -> bool {
    let ok = errs.is_empty();
    let mut d = defs.borrow_mut();
    for e in errs {
        d.errors
            .push(ScriptError::at(at.clone(), format!("{prefix}: {e}")));
    }
    ok
}

fn define_audience(
    _lua: &Lua,
    defs: &DefsRef,
    shared: &Shared,
    name: String,
    at: Location,
    body: Value,
) {
    let prefix = format!("audience {name:?}");
    let Some(t) = body_table(
        defs,
        "audience",
        &name,
        &at,
        &body,
        &["description", "where", "filter"],
    ) else {
        return;
    };
    let mut errs = Vec::new();
    let description = opt_string(t, "description", &mut errs);
    let filter = opt_function(t, "filter", &mut errs);
    // The `where` as written (for the panel's Audiences page), beside its SQL.
    let mut where_text = String::new();
    let filter_sql =
        match field(t, "where") {
            Value::Nil => Some(where_sql::to_sql(
                &where_sql::Where::default(),
                &shared.instances,
            )),
            Value::Table(table) => match where_sql::parse(&table) {
                Ok(w) => {
                    if let Some(chans) = &w.channel
                        && !shared.env.channels.is_empty()
                    {
                        for c in chans {
                            if !shared.env.channels.contains_key(c) {
                                errs.push(format!(
                                "where.channel: {c:?} is not a configured channel (configured: {})",
                                shared.env.channels.keys().cloned().collect::<Vec<_>>().join(", ")
                            ));
                            }
                        }
                    }
                    where_text = where_sql::written(&table);
                    Some(where_sql::to_sql(&w, &shared.instances))
                }
                Err(es) => {
                    errs.extend(es);
                    None
                }
            },
            other => {
                errs.push(format!(
                    "where must be a table, found {}",
                    other.type_name()
                ));
                None
            }
        };
    if !record(defs, &at, &prefix, errs) {
        return;
    }
    let Some(filter_sql) = filter_sql else { return };
    let mut d = defs.borrow_mut();
    if let Some(first) = d.audiences.get(&name) {
        let msg = format!("{prefix} is already defined at {}", first.def.location);
        d.errors.push(ScriptError::at(at, msg));
        return;
    }
    d.audiences.insert(
        name.clone(),
        AudienceSlot {
            def: AudienceDef {
                name,
                description,
                filter_sql,
                where_text,
                has_filter: filter.is_some(),
                location: at,
            },
            filter,
        },
    );
}

fn define_push(
    _lua: &Lua,
    defs: &DefsRef,
    _shared: &Shared,
    name: String,
    at: Location,
    body: Value,
) {
    let prefix = format!("push {name:?}");
    const KEYS: &[&str] = &[
        "audience",
        "template",
        "start_at",
        "rate_per_minute",
        "batch",
        "send_window",
        "policy",
        "test",
        "holdout",
    ];
    let Some(t) = body_table(defs, "push", &name, &at, &body, KEYS) else {
        return;
    };
    let mut errs = Vec::new();
    let audience = opt_string(t, "audience", &mut errs);
    let template = opt_string(t, "template", &mut errs);
    if audience.is_none() && !errs.iter().any(|e| e.starts_with("audience")) {
        errs.push("audience = \"<audience name>\" is required".into());
    }
    if template.is_none() && !errs.iter().any(|e| e.starts_with("template")) {
        errs.push("template = \"<template name>\" is required".into());
    }
    let start_at = push_def::start_at_of(t, &mut errs);
    let rate_per_minute = push_def::rate_of(t, &mut errs);
    let batch = push_def::batch_of(t, &mut errs);
    let send_window = push_def::send_window_of(t, &mut errs);
    let bypass_policy = push_def::bypass_policy_of(t, &mut errs);
    let test = ab_def::test_of(t, &mut errs);
    let holdout = ab_def::holdout_of(t, &mut errs);
    if !record(defs, &at, &prefix, errs) {
        return;
    }
    let (Some(audience), Some(template), Some(start_at)) = (audience, template, start_at) else {
        return;
    };
    let mut d = defs.borrow_mut();
    if let Some(first) = d.pushes.iter().find(|p| p.name == name) {
        let msg = format!("{prefix} is already defined at {}", first.location);
        d.errors.push(ScriptError::at(at, msg));
        return;
    }
    d.pushes.push(PushDef {
        name,
        audience,
        template,
        start_at,
        rate_per_minute,
        batch,
        send_window,
        bypass_policy,
        test,
        holdout,
        location: at,
    });
}
