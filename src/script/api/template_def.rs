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
use crate::variants::{MAX_VARIANTS, MIN_VARIANTS};
use mlua::{Function, Lua, Value};
use std::collections::BTreeMap;

/// A template body: generic locale tables and platform versions.
#[derive(Default)]
pub(crate) struct Body {
    /// The generic locale tables, sorted by locale key.
    pub locales: Vec<(String, CompiledMessage)>,
    /// Per-platform versions (`whatsapp = { en = … }`), each sorted by locale key.
    pub overrides: BTreeMap<Platform, Vec<(String, CompiledMessage)>>,
}

impl Body {
    /// The platform's own locale tables (empty when it has none).
    pub(crate) fn overrides_for(&self, platform: Option<Platform>) -> &[(String, CompiledMessage)] {
        platform
            .and_then(|p| self.overrides.get(&p))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn is_empty(&self) -> bool {
        self.locales.is_empty() && self.overrides.is_empty()
    }
}

pub(crate) struct TemplateSlot {
    pub def: TemplateDef,
    /// The body of a template without variants.
    pub body: Body,
    /// `variants = { a = { … }, b = { … } }`, sorted by name.
    pub variants: Vec<(String, Body)>,
    pub render: Option<(Function, Location)>,
}

impl TemplateSlot {
    /// The body a member of `variant` gets: that variant's, else (no
    /// variant given, or one not defined) the first variant's, else the
    /// template's own.
    pub(crate) fn body(&self, variant: Option<&str>) -> &Body {
        variant
            .and_then(|v| self.variants.iter().find(|(n, _)| n == v))
            .or(self.variants.first())
            .map_or(&self.body, |(_, b)| b)
    }

    /// Every body with its variant name (None for a template without variants).
    pub(crate) fn bodies(&self) -> Vec<(Option<&str>, &Body)> {
        if self.variants.is_empty() {
            vec![(None, &self.body)]
        } else {
            self.variants
                .iter()
                .map(|(n, b)| (Some(n.as_str()), b))
                .collect()
        }
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

/// One key of a template body: a platform version or a locale table. False
/// when the key is neither.
fn body_key(key: &str, v: &Value, body: &mut Body, errs: &mut Vec<String>, prefix: &str) -> bool {
    if let Some(platform) = Platform::parse(key) {
        let mut es = Vec::new();
        if let Some(tables) = compile_override(platform, v, &mut es) {
            body.overrides.insert(platform, tables);
        }
        errs.extend(es.into_iter().map(|e| format!("{prefix}{e}")));
    } else if is_locale_tag(key) {
        let mut es = Vec::new();
        if let Some(m) = compile_locale(key, v, &mut es) {
            body.locales.push((key.to_string(), m));
        }
        errs.extend(es.into_iter().map(|e| format!("{prefix}{e}")));
    } else {
        return false;
    }
    true
}

fn platforms_shape() -> String {
    Platform::ALL.map(Platform::as_str).join(" | ")
}

/// `variants = { a = { en = … }, b = { … } }`.
fn compile_variants(v: &Value, errs: &mut Vec<String>) -> Vec<(String, Body)> {
    let Value::Table(t) = v else {
        errs.push(format!(
            "variants must be a table of named bodies, like variants = {{ a = {{ en = {{ text = … }} }}, b = {{ … }} }}; found {}",
            v.type_name()
        ));
        return Vec::new();
    };
    let mut out: Vec<(String, Body)> = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let Ok((k, v)) = pair else { continue };
        let name = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                errs.push(format!(
                    "variants: names must be strings like a or b, found a {} key",
                    other.type_name()
                ));
                continue;
            }
        };
        if !crate::variants::valid_name(&name) {
            errs.push(format!(
                "variants: {name:?} is not a valid variant name (1-32 letters, digits, _ or -, and not \"holdout\")"
            ));
            continue;
        }
        let prefix = format!("variants.{name}.");
        let Value::Table(bt) = &v else {
            errs.push(format!(
                "variants.{name} must be a template body like {{ en = {{ text = … }} }}, found {}",
                v.type_name()
            ));
            continue;
        };
        let mut body = Body::default();
        for pair in bt.pairs::<Value, Value>() {
            let Ok((k, v)) = pair else { continue };
            let key = match &k {
                Value::String(s) => s.to_string_lossy(),
                other => {
                    errs.push(format!(
                        "{prefix}: keys must be locales or platforms, found a {} key",
                        other.type_name()
                    ));
                    continue;
                }
            };
            if !body_key(&key, &v, &mut body, errs, &prefix) {
                errs.push(format!(
                    "{prefix}{key}: unknown key: a variant takes locale tables (en = {{ text = … }}) and platform versions ({} = {{ en = {{ … }} }})",
                    platforms_shape()
                ));
            }
        }
        if body.is_empty() {
            errs.push(format!(
                "variants.{name} needs at least one locale table (en = {{ text = … }})"
            ));
        }
        body.locales.sort_by(|a, b| a.0.cmp(&b.0));
        out.push((name, body));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if !(MIN_VARIANTS..=MAX_VARIANTS).contains(&out.len()) && errs.is_empty() {
        errs.push(format!(
            "variants: a test needs 2 to {MAX_VARIANTS} variants, found {}",
            out.len()
        ));
    }
    out
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
    let mut own = Body::default();
    let mut variants = Vec::new();
    let mut has_variants = false;
    for pair in t.pairs::<Value, Value>() {
        let Ok((k, v)) = pair else { continue };
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                errs.push(format!(
                    "keys must be locales, platforms, variants or render, found a {} key",
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
            "variants" => {
                has_variants = true;
                variants = compile_variants(&v, &mut errs);
            }
            other => {
                if !body_key(other, &v, &mut own, &mut errs, "") {
                    errs.push(format!(
                        "unknown key {other:?}: a template takes locale tables (en = {{ text = … }}, [\"zh-CN\"] = {{ … }}), platform versions ({} = {{ en = {{ … }} }}), variants, render and description",
                        platforms_shape()
                    ));
                }
            }
        }
    }
    if has_variants && !own.is_empty() {
        errs.push(
            "has both variants and its own locale tables: put every locale table and platform version inside the variants (variants = { a = { en = … }, b = { en = … } })".into(),
        );
    }
    if errs.is_empty() && own.is_empty() && !has_variants && render.is_none() {
        errs.push(
            "needs at least one locale table (en = { text = … }) or a render function".into(),
        );
    }
    own.locales.sort_by(|a, b| a.0.cmp(&b.0));
    let tracked = {
        let mut bodies: Vec<(String, &mut Body)> = vec![(String::new(), &mut own)];
        bodies.extend(
            variants
                .iter_mut()
                .map(|(n, b)| (format!("variants.{n}."), b)),
        );
        track_links(bodies, &shared.env.links, &mut errs)
    };
    if !record(defs, &at, &prefix, errs) {
        return;
    }
    let mut d = defs.borrow_mut();
    if let Some(first) = d.templates.get(&name) {
        let msg = format!("{prefix} is already defined at {}", first.def.location);
        d.errors.push(ScriptError::at(at, msg));
        return;
    }
    // What `template list` shows: the locales and platform versions of
    // every body together.
    let mut locales = std::collections::BTreeSet::new();
    let mut overrides: BTreeMap<Platform, std::collections::BTreeSet<String>> = BTreeMap::new();
    for b in std::iter::once(&own).chain(variants.iter().map(|(_, b)| b)) {
        locales.extend(b.locales.iter().map(|(l, _)| l.clone()));
        for (p, ls) in &b.overrides {
            overrides
                .entry(*p)
                .or_default()
                .extend(ls.iter().map(|(l, _)| l.clone()));
        }
    }
    d.templates.insert(
        name.clone(),
        TemplateSlot {
            def: TemplateDef {
                name,
                locales: locales.into_iter().collect(),
                overrides: overrides
                    .into_iter()
                    .map(|(p, ls)| (p, ls.into_iter().collect()))
                    .collect(),
                has_render: render.is_some(),
                tracked,
                variants: variants.iter().map(|(n, _)| n.clone()).collect(),
                location: at,
            },
            body: own,
            variants,
            render,
        },
    );
}

/// Numbers the tracked links of every body, locale and platform version
/// (one list per template, so the same URL is the same link in every
/// variant, language and platform) and returns the list.
fn track_links(
    bodies: Vec<(String, &mut Body)>,
    links: &crate::script::LinkEnv,
    errs: &mut Vec<String>,
) -> Vec<String> {
    let mut tracked = Vec::new();
    for (prefix, body) in bodies {
        let generic = body.locales.iter_mut().map(|(l, m)| (l.clone(), m));
        let versions = body.overrides.iter_mut().flat_map(|(p, ls)| {
            ls.iter_mut()
                .map(move |(l, m)| (format!("{}.{l}", p.as_str()), m))
        });
        for (what, m) in generic.chain(versions) {
            if let Err(e) = m.number_links(&mut tracked, links.track_buttons) {
                errs.push(format!("{prefix}{what}: {e}"));
            }
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
