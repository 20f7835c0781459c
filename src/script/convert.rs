//! Values crossing the Rust/Lua boundary: members (`m`), rendered messages
//! (`msg`), and what `render` and `route` return. Keys are interned once per
//! state and tables are pre-sized, so a member costs a few table writes and
//! no JSON text round trip.

use crate::model::{Button, Member, Message, Outbound, Routed};
use mlua::{Lua, LuaString, Table, Value};
use std::collections::HashMap;

/// Interned key strings, created once per state.
pub(crate) struct Keys {
    pub id: LuaString,
    pub channel: LuaString,
    pub platform: LuaString,
    pub channel_user_id: LuaString,
    pub name: LuaString,
    pub locale: LuaString,
    pub timezone: LuaString,
    pub tags: LuaString,
    pub attributes: LuaString,
    pub subscribed: LuaString,
    pub last_interaction_at: LuaString,
    pub text: LuaString,
    pub buttons: LuaString,
    pub quick_replies: LuaString,
    pub image: LuaString,
    pub title: LuaString,
    pub payload: LuaString,
    pub url: LuaString,
}

impl Keys {
    pub(crate) fn new(lua: &Lua) -> mlua::Result<Keys> {
        let s = |k: &str| lua.create_string(k);
        Ok(Keys {
            id: s("id")?,
            channel: s("channel")?,
            platform: s("platform")?,
            channel_user_id: s("channel_user_id")?,
            name: s("name")?,
            locale: s("locale")?,
            timezone: s("timezone")?,
            tags: s("tags")?,
            attributes: s("attributes")?,
            subscribed: s("subscribed")?,
            last_interaction_at: s("last_interaction_at")?,
            text: s("text")?,
            buttons: s("buttons")?,
            quick_replies: s("quick_replies")?,
            image: s("image")?,
            title: s("title")?,
            payload: s("payload")?,
            url: s("url")?,
        })
    }
}

/// Builds `m`. `platforms` caches the channel → platform-name strings.
pub(crate) fn member_table(
    lua: &Lua,
    k: &Keys,
    m: &Member,
    platform: &LuaString,
    channel: &LuaString,
) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 11)?;
    t.raw_set(&k.id, m.id)?;
    t.raw_set(&k.channel, channel)?;
    t.raw_set(&k.platform, platform)?;
    t.raw_set(&k.channel_user_id, m.channel_user_id.as_str())?;
    t.raw_set(&k.name, m.name.as_str())?;
    t.raw_set(&k.locale, m.locale.as_str())?;
    t.raw_set(&k.timezone, m.timezone.as_str())?;
    let tags = lua.create_table_with_capacity(0, m.tags.len())?;
    for tag in &m.tags {
        tags.raw_set(tag.as_str(), true)?;
    }
    t.raw_set(&k.tags, tags)?;
    t.raw_set(&k.attributes, json_object(lua, &m.attributes)?)?;
    t.raw_set(&k.subscribed, m.subscribed)?;
    if let Some(ms) = m.last_interaction_at {
        t.raw_set(&k.last_interaction_at, ms.div_euclid(1000))?;
    }
    Ok(t)
}

fn json_object(lua: &Lua, o: &serde_json::Map<String, serde_json::Value>) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, o.len())?;
    for (k, v) in o {
        if !v.is_null() {
            t.raw_set(k.as_str(), json_value(lua, v)?)?;
        }
    }
    Ok(t)
}

/// JSON → Lua: objects and arrays become tables, `null` becomes nil.
pub(crate) fn json_value(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(a) => {
            let t = lua.create_table_with_capacity(a.len(), 0)?;
            for (i, x) in a.iter().enumerate() {
                t.raw_set(i + 1, json_value(lua, x)?)?;
            }
            Value::Table(t)
        }
        J::Object(o) => Value::Table(json_object(lua, o)?),
    })
}

/// Builds `msg` for the router.
pub(crate) fn message_table(lua: &Lua, k: &Keys, msg: &Message) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 4)?;
    t.raw_set(&k.text, msg.text.as_str())?;
    let buttons = |list: &[Button]| -> mlua::Result<Table> {
        let bt = lua.create_table_with_capacity(list.len(), 0)?;
        for (i, b) in list.iter().enumerate() {
            let e = lua.create_table_with_capacity(0, 2)?;
            e.raw_set(&k.title, b.title.as_str())?;
            if let Some(p) = &b.payload {
                e.raw_set(&k.payload, p.as_str())?;
            }
            if let Some(u) = &b.url {
                e.raw_set(&k.url, u.as_str())?;
            }
            bt.raw_set(i + 1, e)?;
        }
        Ok(bt)
    };
    if !msg.buttons.is_empty() {
        t.raw_set(&k.buttons, buttons(&msg.buttons)?)?;
    }
    if !msg.quick_replies.is_empty() {
        t.raw_set(&k.quick_replies, buttons(&msg.quick_replies)?)?;
    }
    if let Some(img) = &msg.image_url {
        t.raw_set(&k.image, img.as_str())?;
    }
    Ok(t)
}

pub(crate) const MESSAGE_KEYS: &[&str] = &["text", "buttons", "quick_replies", "image"];

/// Text of a string-ish Lua value (numbers are accepted and formatted).
pub(crate) fn text_of(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => s
            .to_str()
            .map(|s| s.to_string())
            .map_err(|_| format!("{what} is not valid UTF-8")),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!(
            "{what} must be a string, found {}",
            other.type_name()
        )),
    }
}

fn opt_text(t: &Table, key: &str, what: &str) -> Result<Option<String>, String> {
    let v: Value = t.raw_get(key).map_err(|e| e.to_string())?;
    match v {
        Value::Nil => Ok(None),
        v => text_of(&v, what).map(Some),
    }
}

/// Checks a table's keys against `allowed`; the error names the first stranger.
pub(crate) fn check_keys(t: &Table, allowed: &[&str], what: &str) -> Result<(), String> {
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let ok = match &k {
            Value::String(s) => allowed.iter().any(|a| s.as_bytes() == a.as_bytes()),
            _ => false,
        };
        if !ok {
            let name = match &k {
                Value::String(s) => format!("{:?}", s.to_string_lossy()),
                other => format!("a {} key", other.type_name()),
            };
            return Err(format!(
                "{what}: unknown key {name} (it takes: {})",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// Reads a list of `{ title, payload }` / `{ title, url }` tables.
pub(crate) fn buttons_of<T>(
    v: &Value,
    what: &str,
    mut make: impl FnMut(String, Option<String>, Option<String>) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let Value::Table(list) = v else {
        return Err(format!(
            "{what} must be a list of {{ title = …, payload = … }} tables"
        ));
    };
    let mut out = Vec::new();
    for (i, item) in list.sequence_values::<Value>().enumerate() {
        let item = item.map_err(|e| e.to_string())?;
        let w = format!("{what}[{}]", i + 1);
        let Value::Table(b) = item else {
            return Err(format!("{w} must be a table {{ title = …, payload = … }}"));
        };
        check_keys(&b, &["title", "payload", "url"], &w)?;
        let title = opt_text(&b, "title", &format!("{w}.title"))?
            .ok_or_else(|| format!("{w} needs a title"))?;
        let payload = opt_text(&b, "payload", &format!("{w}.payload"))?;
        let url = opt_text(&b, "url", &format!("{w}.url"))?;
        if payload.is_some() == url.is_some() {
            return Err(format!("{w} needs exactly one of payload or url"));
        }
        out.push(make(title, payload, url)?);
    }
    if out.len() != list.raw_len() {
        return Err(format!("{what} must be a list (1, 2, 3, …)"));
    }
    Ok(out)
}

/// A message table as `render` returns it.
pub(crate) fn message_of(v: &Value) -> Result<Message, String> {
    let Value::Table(t) = v else {
        return Err(format!(
            "render must return a table {{ text = …, buttons = …, quick_replies = …, image = … }}, found {}",
            v.type_name()
        ));
    };
    check_keys(t, MESSAGE_KEYS, "message")?;
    let text = opt_text(t, "text", "text")?.ok_or("the message needs a text")?;
    let plain = |title, payload, url| {
        Ok(Button {
            title,
            payload,
            url,
        })
    };
    let buttons = match t.raw_get::<Value>("buttons").map_err(|e| e.to_string())? {
        Value::Nil => Vec::new(),
        v => buttons_of(&v, "buttons", plain)?,
    };
    let quick_replies = match t
        .raw_get::<Value>("quick_replies")
        .map_err(|e| e.to_string())?
    {
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
pub(crate) fn routed_of(v: &Value, message: Message, m: &Member) -> Result<Routed, String> {
    let Value::Table(t) = v else {
        return Err(format!(
            "route must return a table ({{ channel = … }} or {{ skip = \"reason\" }}), found {}",
            v.type_name()
        ));
    };
    check_keys(t, ROUTE_KEYS, "route result")?;
    if let Some(reason) = opt_text(t, "skip", "skip")? {
        if t.pairs::<Value, Value>().count() != 1 {
            return Err("a { skip = \"reason\" } result takes no other keys".into());
        }
        return Ok(Routed::Skip { reason });
    }
    let channel = opt_text(t, "channel", "channel")?
        .ok_or("route result needs a channel (or skip = \"reason\")")?;
    if channel.is_empty() {
        return Err("route result has an empty channel".into());
    }
    let kind = opt_text(t, "kind", "kind")?;
    let outbound = match kind.as_deref() {
        None | Some("message") => {
            for k in ["template", "language", "params"] {
                if !t.raw_get::<Value>(k).map_err(|e| e.to_string())?.is_nil() {
                    return Err(format!("{k} is only for kind = \"template\""));
                }
            }
            Outbound::Message {
                message,
                tag: opt_text(t, "tag", "tag")?,
            }
        }
        Some("template") => {
            if !t
                .raw_get::<Value>("tag")
                .map_err(|e| e.to_string())?
                .is_nil()
            {
                return Err("tag is only for free-form messages (kind = \"message\")".into());
            }
            let name = opt_text(t, "template", "template")?
                .ok_or("kind = \"template\" needs template = \"<platform template name>\"")?;
            let language = opt_text(t, "language", "language")?.unwrap_or_else(|| m.locale.clone());
            let params = match t.raw_get::<Value>("params").map_err(|e| e.to_string())? {
                Value::Nil => Vec::new(),
                Value::Table(p) => {
                    let mut out = Vec::new();
                    for (i, x) in p.sequence_values::<Value>().enumerate() {
                        let x = x.map_err(|e| e.to_string())?;
                        out.push(text_of(&x, &format!("params[{}]", i + 1))?);
                    }
                    if out.len() != p.raw_len() {
                        return Err("params must be a list of strings".into());
                    }
                    out
                }
                other => {
                    return Err(format!(
                        "params must be a list of strings, found {}",
                        other.type_name()
                    ));
                }
            };
            Outbound::Template {
                name,
                language,
                params,
            }
        }
        Some(other) => {
            return Err(format!(
                "kind must be \"message\" or \"template\", found {other:?}"
            ));
        }
    };
    Ok(Routed::Send { channel, outbound })
}

/// Interned per-channel strings (instance name and its platform name).
pub(crate) struct ChannelStrings {
    map: HashMap<String, (LuaString, LuaString)>,
}

impl ChannelStrings {
    pub(crate) fn new() -> ChannelStrings {
        ChannelStrings {
            map: HashMap::new(),
        }
    }

    pub(crate) fn get(
        &mut self,
        lua: &Lua,
        channel: &str,
        platform: impl FnOnce() -> &'static str,
    ) -> mlua::Result<(LuaString, LuaString)> {
        if let Some(v) = self.map.get(channel) {
            return Ok(v.clone());
        }
        let v = (lua.create_string(channel)?, lua.create_string(platform())?);
        if self.map.len() < 1024 {
            self.map.insert(channel.to_string(), v.clone());
        }
        Ok(v)
    }
}
