//! Values crossing the Rust/Lua boundary: members (`m`), rendered messages
//! (`msg`), and what `render` and `route` return. Tables are built with the
//! raw C API in one protected call each and attributes go straight from
//! `serde_json` values to Lua, with no JSON text round trip.

use crate::model::{Button, Member, Message, Outbound, Routed};
use mlua::{Lua, LuaString, Table, Value, ffi};
use std::ffi::{CStr, c_char, c_int};

/// Key strings the ctx functions read, created once per state.
pub(crate) struct Keys {
    pub channel: LuaString,
    pub timezone: LuaString,
    pub last_interaction_at: LuaString,
}

impl Keys {
    pub(crate) fn new(lua: &Lua) -> mlua::Result<Keys> {
        Ok(Keys {
            channel: lua.create_string("channel")?,
            timezone: lua.create_string("timezone")?,
            last_interaction_at: lua.create_string("last_interaction_at")?,
        })
    }
}

// Members and messages are built with the raw C API inside one protected
// call (`Lua::exec_raw`): through mlua's safe API every field costs a lock,
// two registry-reference moves and a protected call, which made building `m`
// the largest cost of a routed send. Inside `exec_raw` an allocation failure
// is still caught as a Lua error; fresh tables have no metatables, so
// `lua_setfield` runs no script code.

/// JSON nesting deeper than this becomes nil in Lua (and keeps the C stack bounded).
const MAX_JSON_DEPTH: usize = 32;

unsafe fn push_str(l: *mut ffi::lua_State, s: &str) {
    unsafe { ffi::lua_pushlstring(l, s.as_ptr() as *const c_char, s.len()) };
}

/// Sets `t[key] = <top of stack>` for the table just below the top.
unsafe fn set(l: *mut ffi::lua_State, key: &CStr) {
    unsafe { ffi::lua_setfield(l, -2, key.as_ptr()) };
}

unsafe fn push_json(l: *mut ffi::lua_State, v: &serde_json::Value, depth: usize) {
    use serde_json::Value as J;
    unsafe {
        match v {
            J::Null => ffi::lua_pushnil(l),
            J::Bool(b) => ffi::lua_pushboolean(l, *b as c_int),
            J::Number(n) => match n.as_i64() {
                Some(i) => ffi::lua_pushinteger(l, i),
                None => ffi::lua_pushnumber(l, n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => push_str(l, s),
            J::Array(a) => {
                if depth >= MAX_JSON_DEPTH || ffi::lua_checkstack(l, 3) == 0 {
                    ffi::lua_pushnil(l);
                    return;
                }
                ffi::lua_createtable(l, a.len().min(c_int::MAX as usize) as c_int, 0);
                for (i, x) in a.iter().enumerate() {
                    push_json(l, x, depth + 1);
                    ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
                }
            }
            J::Object(o) => push_json_object(l, o, depth),
        }
    }
}

unsafe fn push_json_object(
    l: *mut ffi::lua_State,
    o: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
) {
    unsafe {
        if depth >= MAX_JSON_DEPTH || ffi::lua_checkstack(l, 4) == 0 {
            ffi::lua_pushnil(l);
            return;
        }
        ffi::lua_createtable(l, 0, o.len().min(c_int::MAX as usize) as c_int);
        for (k, v) in o {
            if v.is_null() {
                continue;
            }
            push_str(l, k);
            push_json(l, v, depth + 1);
            ffi::lua_rawset(l, -3);
        }
    }
}

/// Builds `m` (see `pushd.d.lua` for its fields).
pub(crate) fn member_table(lua: &Lua, m: &Member, platform: &str) -> mlua::Result<Table> {
    // SAFETY: `push_member` only pushes, inside `exec_raw`'s protected
    // call; the one result is the new table.
    unsafe { lua.exec_raw::<Table>((), |l| push_member(l, m, platform)) }
}

/// Pushes `m` onto the stack (one slot; up to 8 are used while building).
/// Must run inside a protected call: an allocation failure raises a Lua
/// error. Fresh tables have no metatables, so `lua_setfield` runs no script
/// code; `m` and `platform` are borrowed, so a Lua error skips no drop.
pub(crate) unsafe fn push_member(l: *mut ffi::lua_State, m: &Member, platform: &str) {
    unsafe {
        ffi::lua_checkstack(l, 8);
        ffi::lua_createtable(l, 0, 11);
        ffi::lua_pushinteger(l, m.id);
        set(l, c"id");
        push_str(l, &m.channel);
        set(l, c"channel");
        push_str(l, platform);
        set(l, c"platform");
        push_str(l, &m.channel_user_id);
        set(l, c"channel_user_id");
        push_str(l, &m.name);
        set(l, c"name");
        push_str(l, &m.locale);
        set(l, c"locale");
        push_str(l, &m.timezone);
        set(l, c"timezone");
        ffi::lua_createtable(l, 0, m.tags.len().min(c_int::MAX as usize) as c_int);
        for tag in &m.tags {
            push_str(l, tag);
            ffi::lua_pushboolean(l, 1);
            ffi::lua_rawset(l, -3);
        }
        set(l, c"tags");
        push_json_object(l, &m.attributes, 0);
        set(l, c"attributes");
        ffi::lua_pushboolean(l, m.subscribed as c_int);
        set(l, c"subscribed");
        if let Some(ms) = m.last_interaction_at {
            ffi::lua_pushinteger(l, ms.div_euclid(1000));
            set(l, c"last_interaction_at");
        }
    }
}

unsafe fn push_buttons(l: *mut ffi::lua_State, list: &[Button]) {
    unsafe {
        ffi::lua_createtable(l, list.len().min(c_int::MAX as usize) as c_int, 0);
        for (i, b) in list.iter().enumerate() {
            ffi::lua_createtable(l, 0, 2);
            push_str(l, &b.title);
            set(l, c"title");
            if let Some(p) = &b.payload {
                push_str(l, p);
                set(l, c"payload");
            }
            if let Some(u) = &b.url {
                push_str(l, u);
                set(l, c"url");
            }
            ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
        }
    }
}

/// Builds `msg` for the router.
pub(crate) fn message_table(lua: &Lua, msg: &Message) -> mlua::Result<Table> {
    // SAFETY: as in `member_table`.
    unsafe { lua.exec_raw::<Table>((), |l| push_message(l, msg)) }
}

/// Pushes `msg` onto the stack; the contract of [`push_member`].
pub(crate) unsafe fn push_message(l: *mut ffi::lua_State, msg: &Message) {
    unsafe {
        ffi::lua_checkstack(l, 8);
        ffi::lua_createtable(l, 0, 4);
        push_str(l, &msg.text);
        set(l, c"text");
        if !msg.buttons.is_empty() {
            push_buttons(l, &msg.buttons);
            set(l, c"buttons");
        }
        if !msg.quick_replies.is_empty() {
            push_buttons(l, &msg.quick_replies);
            set(l, c"quick_replies");
        }
        if let Some(img) = &msg.image_url {
            push_str(l, img);
            set(l, c"image");
        }
    }
}

/// `route(m, msg, ctx)` in one protected call: `m` and `msg` are built on
/// the stack and handed straight to the function, so neither becomes a
/// registry reference and the call needs no protected call of its own.
/// Errors are those of `Function::call` (same traceback handler).
pub(crate) fn route_call(
    lua: &Lua,
    route: &mlua::Function,
    ctx: &Table,
    m: &Member,
    platform: &str,
    msg: &Message,
) -> mlua::Result<Value> {
    // SAFETY: `exec_raw` pushed `route` (1) and `ctx` (2) and runs this in a
    // protected call, so a Lua error in the builders or the script unwinds
    // to it; this frame holds only borrows. It leaves exactly the result.
    unsafe {
        lua.exec_raw::<Value>((route, ctx), |l| {
            ffi::lua_checkstack(l, 4);
            ffi::lua_pushvalue(l, 1);
            push_member(l, m, platform);
            push_message(l, msg);
            ffi::lua_pushvalue(l, 2);
            ffi::lua_call(l, 3, 1);
            ffi::lua_replace(l, 1);
            ffi::lua_settop(l, 1);
        })
    }
}

pub(crate) const MESSAGE_KEYS: &[&str] = &["text", "buttons", "quick_replies", "image"];

/// What is wrong with a value a script hands back: a message table (from
/// `render` or a template definition) or `route`'s result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConvertError {
    #[error(transparent)]
    Lua(#[from] mlua::Error),
    #[error("{0} is not valid UTF-8")]
    NotUtf8(String),
    #[error("{what} must be a string, found {found}")]
    NotText { what: String, found: &'static str },
    /// `key` as written: a quoted name, or `a <type> key`.
    #[error("{what}: unknown key {key} (it takes: {allowed})")]
    UnknownKey {
        what: String,
        key: String,
        allowed: String,
    },
    #[error("{0} must be a list of {{ title = …, payload = … }} tables")]
    NotButtonList(String),
    #[error("{0} must be a list (1, 2, 3, …)")]
    NotList(String),
    #[error("{0} must be a table {{ title = …, payload = … }}")]
    ButtonNotTable(String),
    #[error("{0} needs a title")]
    ButtonWithoutTitle(String),
    #[error("{0} needs exactly one of payload or url")]
    ButtonPayloadOrUrl(String),
    #[error("{what}.track must be true or false, found {found}")]
    TrackNotBool { what: String, found: &'static str },
    #[error(
        "render must return a table {{ text = …, buttons = …, quick_replies = …, image = … }}, found {0}"
    )]
    RenderNotTable(&'static str),
    #[error("the message needs a text")]
    MessageWithoutText,
    #[error(
        "track = true works in template tables; a render function's buttons are sent as they are"
    )]
    TrackInRender,
    #[error("route must return a table ({{ channel = … }} or {{ skip = \"reason\" }}), found {0}")]
    RouteNotTable(&'static str),
    #[error("route result: unknown key {0:?} (it takes: {keys})", keys = ROUTE_KEYS.join(", "))]
    RouteUnknownKey(String),
    #[error(
        "route result: unknown key (a {0} key; it takes: {keys})",
        keys = ROUTE_KEYS.join(", ")
    )]
    RouteKeyNotName(&'static str),
    #[error("a {{ skip = \"reason\" }} result takes no other keys")]
    SkipWithOtherKeys,
    #[error("route result needs a channel (or skip = \"reason\")")]
    NoChannel,
    #[error("route result has an empty channel")]
    EmptyChannel,
    /// `template`, `language` or `params` with a free-form message.
    #[error("{0} is only for kind = \"template\"")]
    OnlyForTemplates(&'static str),
    #[error("tag is only for free-form messages (kind = \"message\")")]
    TagOnTemplate,
    #[error("kind = \"template\" needs template = \"<platform template name>\"")]
    NoTemplateName,
    #[error("params must be a list of strings")]
    ParamsNotList,
    #[error("params must be a list of strings, found {0}")]
    ParamsNotTable(&'static str),
    #[error("kind must be \"message\" or \"template\", found {0:?}")]
    UnknownKind(String),
}

/// Template definitions and `api` collect their problems as text; the
/// shared readers ([`text_of`], [`check_keys`], [`buttons_of`]) return
/// whichever of the two their caller keeps.
impl From<ConvertError> for String {
    fn from(e: ConvertError) -> String {
        e.to_string()
    }
}

/// Text of a string-ish Lua value (numbers are accepted and formatted).
pub(crate) fn text_of<E: From<ConvertError>>(v: &Value, what: &str) -> Result<String, E> {
    match v {
        Value::String(s) => s
            .to_str()
            .map(|s| s.to_string())
            .map_err(|_| ConvertError::NotUtf8(what.to_string()).into()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(ConvertError::NotText {
            what: what.to_string(),
            found: other.type_name(),
        }
        .into()),
    }
}

fn opt_text(t: &Table, key: &str, what: &str) -> Result<Option<String>, ConvertError> {
    let v: Value = t.raw_get(key)?;
    match v {
        Value::Nil => Ok(None),
        v => text_of(&v, what).map(Some),
    }
}

/// Checks a table's keys against `allowed`; the error names the first stranger.
pub(crate) fn check_keys<E: From<ConvertError>>(
    t: &Table,
    allowed: &[&str],
    what: &str,
) -> Result<(), E> {
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(ConvertError::Lua)?;
        let ok = match &k {
            Value::String(s) => allowed.iter().any(|a| s.as_bytes() == a.as_bytes()),
            _ => false,
        };
        if !ok {
            let key = match &k {
                Value::String(s) => format!("{:?}", s.to_string_lossy()),
                other => format!("a {} key", other.type_name()),
            };
            return Err(ConvertError::UnknownKey {
                what: what.to_string(),
                key,
                allowed: allowed.join(", "),
            }
            .into());
        }
    }
    Ok(())
}

/// Reads a list of `{ title, payload }` / `{ title, url [, track] }` tables.
pub(crate) fn buttons_of<T, E: From<ConvertError>>(
    v: &Value,
    what: &str,
    mut make: impl FnMut(String, Option<String>, Option<String>, Option<bool>) -> Result<T, E>,
) -> Result<Vec<T>, E> {
    let Value::Table(list) = v else {
        return Err(ConvertError::NotButtonList(what.to_string()).into());
    };
    let mut out = Vec::new();
    for (i, item) in list.sequence_values::<Value>().enumerate() {
        let item = item.map_err(ConvertError::Lua)?;
        let w = format!("{what}[{}]", i + 1);
        let Value::Table(b) = item else {
            return Err(ConvertError::ButtonNotTable(w).into());
        };
        check_keys::<E>(&b, &["title", "payload", "url", "track"], &w)?;
        let title = opt_text(&b, "title", &format!("{w}.title"))?
            .ok_or_else(|| ConvertError::ButtonWithoutTitle(w.clone()))?;
        let payload = opt_text(&b, "payload", &format!("{w}.payload"))?;
        let url = opt_text(&b, "url", &format!("{w}.url"))?;
        if payload.is_some() == url.is_some() {
            return Err(ConvertError::ButtonPayloadOrUrl(w).into());
        }
        let track = match b.raw_get::<Value>("track").map_err(ConvertError::Lua)? {
            Value::Nil => None,
            Value::Boolean(t) => Some(t),
            other => {
                return Err(ConvertError::TrackNotBool {
                    what: w,
                    found: other.type_name(),
                }
                .into());
            }
        };
        out.push(make(title, payload, url, track)?);
    }
    if out.len() != list.raw_len() {
        return Err(ConvertError::NotList(what.to_string()).into());
    }
    Ok(out)
}

/// A message table as `render` returns it.
pub(crate) fn message_of(v: &Value) -> Result<Message, ConvertError> {
    let Value::Table(t) = v else {
        return Err(ConvertError::RenderNotTable(v.type_name()));
    };
    check_keys::<ConvertError>(t, MESSAGE_KEYS, "message")?;
    let text = opt_text(t, "text", "text")?.ok_or(ConvertError::MessageWithoutText)?;
    let plain = |title, payload, url, track: Option<bool>| {
        if track == Some(true) {
            return Err(ConvertError::TrackInRender);
        }
        Ok(Button {
            title,
            payload,
            url,
        })
    };
    let buttons = match t.raw_get::<Value>("buttons")? {
        Value::Nil => Vec::new(),
        v => buttons_of(&v, "buttons", plain)?,
    };
    let quick_replies = match t.raw_get::<Value>("quick_replies")? {
        Value::Nil => Vec::new(),
        v => buttons_of(&v, "quick_replies", plain)?,
    };
    Ok(Message {
        text,
        buttons,
        quick_replies,
        image_url: opt_text(t, "image", "image")?,
    })
}

pub(crate) const ROUTE_KEYS: &[&str] = &[
    "channel", "kind", "template", "language", "params", "tag", "skip",
];

/// What `route` returned → `Routed`. `message` is the rendered message.
/// One pass over the table: this runs once per recipient.
pub(crate) fn routed_of(v: &Value, message: Message, m: &Member) -> Result<Routed, ConvertError> {
    let Value::Table(t) = v else {
        return Err(ConvertError::RouteNotTable(v.type_name()));
    };
    let (mut channel, mut kind, mut template, mut language, mut params, mut tag, mut skip) =
        (None, None, None, None, None, None, None);
    let mut count = 0;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        count += 1;
        let slot = match &k {
            Value::String(s) => match &*s.as_bytes() {
                b"channel" => &mut channel,
                b"kind" => &mut kind,
                b"template" => &mut template,
                b"language" => &mut language,
                b"params" => &mut params,
                b"tag" => &mut tag,
                b"skip" => &mut skip,
                other => {
                    let key = String::from_utf8_lossy(other).into_owned();
                    return Err(ConvertError::RouteUnknownKey(key));
                }
            },
            other => return Err(ConvertError::RouteKeyNotName(other.type_name())),
        };
        *slot = Some(v);
    }
    let text =
        |v: Option<Value>, what: &str| v.map(|v| text_of::<ConvertError>(&v, what)).transpose();
    if let Some(reason) = text(skip, "skip")? {
        if count != 1 {
            return Err(ConvertError::SkipWithOtherKeys);
        }
        return Ok(Routed::Skip { reason });
    }
    let channel = text(channel, "channel")?.ok_or(ConvertError::NoChannel)?;
    if channel.is_empty() {
        return Err(ConvertError::EmptyChannel);
    }
    let outbound = match text(kind, "kind")?.as_deref() {
        None | Some("message") => {
            for (k, v) in [
                ("template", &template),
                ("language", &language),
                ("params", &params),
            ] {
                if v.is_some() {
                    return Err(ConvertError::OnlyForTemplates(k));
                }
            }
            Outbound::Message {
                message,
                tag: text(tag, "tag")?,
            }
        }
        Some("template") => {
            if tag.is_some() {
                return Err(ConvertError::TagOnTemplate);
            }
            let name = text(template, "template")?.ok_or(ConvertError::NoTemplateName)?;
            let language = text(language, "language")?.unwrap_or_else(|| m.locale.clone());
            let params = match params {
                None => Vec::new(),
                Some(Value::Table(p)) => {
                    let mut out = Vec::new();
                    for (i, x) in p.sequence_values::<Value>().enumerate() {
                        out.push(text_of::<ConvertError>(&x?, &format!("params[{}]", i + 1))?);
                    }
                    if out.len() != p.raw_len() {
                        return Err(ConvertError::ParamsNotList);
                    }
                    out
                }
                Some(other) => return Err(ConvertError::ParamsNotTable(other.type_name())),
            };
            Outbound::Template {
                name,
                language,
                params,
            }
        }
        Some(other) => return Err(ConvertError::UnknownKind(other.to_string())),
    };
    Ok(Routed::Send { channel, outbound })
}
