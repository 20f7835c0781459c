//! `template "name" { … }`: the generic locale tables, the platforms' own
//! versions (`whatsapp = { en = { … } }`) and `render`, compiled at load
//! (placeholders checked, buttons read) into a [`TemplateSlot`].

use super::{DefsRef, body_table, field, opt_function, opt_string, record};
use crate::model::Platform;
use crate::script::Shared;
use crate::script::TemplateDef;
use crate::script::convert::{MESSAGE_KEYS, buttons_of, check_keys, text_of};
use crate::script::error::{Location, ScriptError};
use crate::script::template::{CompiledButton, CompiledMessage, Text, is_locale_tag};
use mlua::{Function, Lua, Value};
use std::collections::BTreeMap;

pub(crate) struct TemplateSlot {
    pub def: TemplateDef,
    /// The generic locale tables, sorted by locale key.
    pub locales: Vec<(String, CompiledMessage)>,
    /// Per-platform versions (`whatsapp = { en = … }`), each sorted by locale key.
    pub overrides: BTreeMap<Platform, Vec<(String, CompiledMessage)>>,
    pub render: Option<(Function, Location)>,
}

impl TemplateSlot {
    /// The platform's own locale tables (empty when it has none).
    pub(crate) fn overrides_for(&self, platform: Option<Platform>) -> &[(String, CompiledMessage)] {
        platform
            .and_then(|p| self.overrides.get(&p))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

fn compile(src: &str, what: &str, errs: &mut Vec<String>) -> Option<Text> {
    match Text::compile(src) {
        Ok(t) => Some(t),
        Err(e) => {
            errs.push(format!("{what}: {e}"));
            None
        }
    }
}

fn compile_locale(locale: &str, v: &Value, errs: &mut Vec<String>) -> Option<CompiledMessage> {
    let Value::Table(t) = v else {
        errs.push(format!(
            "{locale} must be a table {{ text = …, buttons = …, quick_replies = …, image = … }}, found {}",
            v.type_name()
        ));
        return None;
    };
    if let Err(e) = check_keys(t, MESSAGE_KEYS, locale) {
        errs.push(e);
        return None;
    }
    let before = errs.len();
    let text = match field(t, "text") {
        Value::Nil => {
            errs.push(format!("{locale}.text is required"));
            None
        }
        v => match text_of(&v, &format!("{locale}.text")) {
            Ok(s) => compile(&s, &format!("{locale}.text"), errs),
            Err(e) => {
                errs.push(e);
                None
            }
        },
    };
    let buttons_in = |key: &str, errs: &mut Vec<String>| -> Vec<CompiledButton> {
        let v = field(t, key);
        if v.is_nil() {
            return Vec::new();
        }
        let what = format!("{locale}.{key}");
        let mut es = Vec::new();
        let r = buttons_of(&v, &what, |title, payload, url, track| {
            let title = compile(&title, &format!("{what} title"), &mut es);
            let payload = payload.map(|p| compile(&p, &format!("{what} payload"), &mut es));
            let url = url.map(|u| compile(&u, &format!("{what} url"), &mut es));
            Ok((title, payload, url, track))
        });
        errs.extend(es);
        match r {
            Ok(list) => list
                .into_iter()
                .filter_map(|(title, payload, url, track)| {
                    Some(CompiledButton {
                        title: title?,
                        payload: payload.map(|p| p.ok_or(())).transpose().ok()?,
                        url: url.map(|u| u.ok_or(())).transpose().ok()?,
                        track,
                        link: None,
                    })
                })
                .collect(),
            Err(e) => {
                errs.push(e);
                Vec::new()
            }
        }
    };
    let buttons = buttons_in("buttons", errs);
    let quick_replies = buttons_in("quick_replies", errs);
    let image = match field(t, "image") {
        Value::Nil => None,
        v => match text_of(&v, &format!("{locale}.image")) {
            Ok(s) => {
                if !(s.starts_with("https://") || s.starts_with("http://") || s.starts_with("{{")) {
                    errs.push(format!(
                        "{locale}.image must be an http(s) URL, found {s:?}"
                    ));
                }
                compile(&s, &format!("{locale}.image"), errs)
            }
            Err(e) => {
                errs.push(e);
                None
            }
        },
    };
    if errs.len() > before {
        return None;
    }
    Some(CompiledMessage {
        text: text?,
        buttons,
        quick_replies,
        image,
    })
}

/// `whatsapp = { en = { … }, zh = { … } }`: a platform's own locale tables.
fn compile_override(
    platform: Platform,
    v: &Value,
    errs: &mut Vec<String>,
) -> Option<Vec<(String, CompiledMessage)>> {
    let shape = format!("{platform} = {{ en = {{ text = … }}, zh = {{ … }} }}");
    let Value::Table(t) = v else {
        errs.push(format!(
            "{platform} must be a table of locale tables, like {shape}; found {}",
            v.type_name()
        ));
        return None;
    };
    let before = errs.len();
    let mut locales = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let Ok((k, v)) = pair else { continue };
        match &k {
            Value::String(s) if is_locale_tag(&s.to_string_lossy()) => {
                let loc = s.to_string_lossy();
                if let Some(m) = compile_locale(&format!("{platform}.{loc}"), &v, errs) {
                    locales.push((loc, m));
                }
            }
            Value::String(s) if MESSAGE_KEYS.contains(&&*s.to_string_lossy()) => {
                errs.push(format!(
                    "{platform}.{}: a platform version takes locale tables, like the template itself: {shape}",
                    s.to_string_lossy()
                ));
                return None;
            }
            other => errs.push(format!(
                "{platform}: unknown key {}: a platform version takes locale tables, like {shape}",
                match other {
                    Value::String(s) => format!("{:?}", s.to_string_lossy()),
                    v => format!("(a {} key)", v.type_name()),
                }
            )),
        }
    }
    if errs.len() > before {
        return None;
    }
    if locales.is_empty() {
        errs.push(format!("{platform} has no locale table; write {shape}"));
        return None;
    }
    locales.sort_by(|a, b| a.0.cmp(&b.0));
    Some(locales)
}

pub(super) fn define_template(
    _lua: &Lua,
    defs: &DefsRef,
    shared: &Shared,
    name: String,
    at: Location,
    body: Value,
) {
    let prefix = format!("template {name:?}");
    let Value::Table(t) = &body else {
        body_table(defs, "template", &name, &at, &body, &[]);
        return;
    };
    let mut errs = Vec::new();
    let mut render = None;
    let mut locales: Vec<(String, CompiledMessage)> = Vec::new();
    let mut overrides = BTreeMap::new();
    for pair in t.pairs::<Value, Value>() {
        let Ok((k, v)) = pair else { continue };
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                errs.push(format!(
                    "keys must be locales, platforms or render, found a {} key",
                    other.type_name()
                ));
                continue;
            }
        };
        match key.as_str() {
            "render" => render = opt_function(t, "render", &mut errs),
            "description" => {
                opt_string(t, "description", &mut errs);
            }
            other => {
                if let Some(platform) = Platform::parse(other) {
                    if let Some(tables) = compile_override(platform, &v, &mut errs) {
                        overrides.insert(platform, tables);
                    }
                } else if is_locale_tag(other) {
                    if let Some(m) = compile_locale(other, &v, &mut errs) {
                        locales.push((other.to_string(), m));
                    }
                } else {
                    errs.push(format!(
                        "unknown key {other:?}: a template takes locale tables (en = {{ text = … }}, [\"zh-CN\"] = {{ … }}), platform versions ({} = {{ en = {{ … }} }}), render and description",
                        Platform::ALL.map(Platform::as_str).join(" | ")
                    ));
                }
            }
        }
    }
    if errs.is_empty() && locales.is_empty() && overrides.is_empty() && render.is_none() {
        errs.push(
            "needs at least one locale table (en = { text = … }) or a render function".into(),
        );
    }
    locales.sort_by(|a, b| a.0.cmp(&b.0));
    let tracked = track_links(&mut locales, &mut overrides, &shared.env.links, &mut errs);
    if !record(defs, &at, &prefix, errs) {
        return;
    }
    let mut d = defs.borrow_mut();
    if let Some(first) = d.templates.get(&name) {
        let msg = format!("{prefix} is already defined at {}", first.def.location);
        d.errors.push(ScriptError::at(at, msg));
        return;
    }
    d.templates.insert(
        name.clone(),
        TemplateSlot {
            def: TemplateDef {
                name,
                locales: locales.iter().map(|(l, _)| l.clone()).collect(),
                overrides: overrides
                    .iter()
                    .map(|(p, ls)| (*p, ls.iter().map(|(l, _)| l.clone()).collect()))
                    .collect(),
                has_render: render.is_some(),
                tracked,
                location: at,
            },
            locales,
            overrides,
            render,
        },
    );
}

/// Numbers the tracked links of every locale and platform version (one
/// list per template, so the same URL is the same link in every language
/// and on every platform) and returns the list.
fn track_links(
    locales: &mut [(String, CompiledMessage)],
    overrides: &mut BTreeMap<Platform, Vec<(String, CompiledMessage)>>,
    links: &crate::script::LinkEnv,
    errs: &mut Vec<String>,
) -> Vec<String> {
    let mut tracked = Vec::new();
    let generic = locales.iter_mut().map(|(l, m)| (l.clone(), m));
    let versions = overrides.iter_mut().flat_map(|(p, ls)| {
        ls.iter_mut()
            .map(move |(l, m)| (format!("{}.{l}", p.as_str()), m))
    });
    for (what, m) in generic.chain(versions) {
        if let Err(e) = m.number_links(&mut tracked, links.track_buttons) {
            errs.push(format!("{what}: {e}"));
        }
    }
    if !tracked.is_empty() && links.public_url.is_none() {
        errs.push(
            "tracks links, but [links] public_url is not set in config.toml: set it to the public http(s) address \
             that reaches this daemon's HTTP listener (tracked URLs are sent as <public_url>/l/TOKEN)"
                .into(),
        );
    }
    tracked
}
