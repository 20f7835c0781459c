//! Message templates compiled once at load and rendered in Rust.
//!
//! Placeholders: `{{field}}` where field is one of `id, channel, platform,
//! channel_user_id, name, locale, timezone`, or `{{attributes.key}}` (nested:
//! `{{attributes.address.city}}`). `{{field|fallback}}` renders `fallback` when
//! the value is missing or empty. A missing attribute (or JSON `null`) renders
//! as the empty string; strings render as-is, numbers in their JSON form
//! (`42`, `1.5`), booleans as `true`/`false`, arrays and objects as compact
//! JSON. Spaces inside the braces are ignored. Anything else is a load error.
//!
//! Which table a member gets — a platform's own version or the generic one,
//! in which locale — is [`choose_message`]'s decision.
//!
//! `{{track "https://…"}}` is a tracked link: it renders the link's marker
//! (`crate::links::marker`), which the dispatcher turns into the delivery's
//! `/l/TOKEN` URL; so does a URL button with `track = true` (or every URL
//! button under `[links] track_buttons`). A template's tracked URLs are
//! numbered once all its texts are compiled ([`CompiledMessage::number_links`]).

use crate::links::marker;
use crate::model::{Button, Member, Message};
use std::fmt::Write as _;

pub(crate) const MEMBER_FIELDS: &[&str] = &[
    "id",
    "channel",
    "platform",
    "channel_user_id",
    "name",
    "locale",
    "timezone",
];

/// Why a template text does not compile or its tracked links cannot be
/// numbered; the caller adds which text (`en.text`, `buttons[2]` …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateError {
    #[error("contains a character from U+FDD0 to U+FDDF, which pushd reserves for tracked links")]
    ReservedCharacter,
    /// The text after the `{{` (its first 30 characters).
    #[error("unclosed placeholder \"{{{{{0}\"")]
    Unclosed(String),
    #[error(
        "unknown placeholder {{{{{0}}}}}: use one of {fields} or attributes.<key>",
        fields = MEMBER_FIELDS.join(", ")
    )]
    UnknownPlaceholder(String),
    #[error(
        "placeholder {{{{{0}}}}} has an invalid attribute key (use letters, digits, '_' or '-')"
    )]
    InvalidAttributeKey(String),
    #[error("{{{{{0}}}}} needs one quoted URL: {{{{track \"https://…\"}}}}")]
    TrackNeedsQuotedUrl(String),
    #[error("tracked URL {0:?} must be an http(s) address like \"https://shop.example.com/sale\"")]
    TrackedUrlNotHttp(String),
    #[error("tracked URL {url:?} is not a URL ({reason})")]
    TrackedUrlNotUrl { url: String, reason: String },
    #[error(
        "tracks more than {count} different URLs, the most one template can",
        count = marker::COUNT
    )]
    TooManyLinks,
    /// `track = true` on a payload button (named by `{0}`, e.g. `buttons[1]`).
    #[error("{0}: track = true is for URL buttons (url = …)")]
    TrackWithoutUrl(String),
    #[error(
        "{0}: a tracked URL must be fixed (it is registered once per push), but this one has placeholders; \
         write track = false to send it untracked"
    )]
    TrackedUrlNotFixed(String),
    /// A tracked button's URL is refused (the button is `what`).
    #[error("{what}: {error}")]
    InButton {
        what: String,
        error: Box<TemplateError>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Id,
    Channel,
    Platform,
    ChannelUserId,
    Name,
    Locale,
    Timezone,
    Attribute(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Field(Field, Option<String>),
    /// `{{track "URL"}}`: the URL (normalised) and the template's number for it.
    Track {
        url: String,
        link: u8,
    },
}

/// A text with placeholders, split into literal and field parts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Text {
    parts: Vec<Part>,
    /// Literal length, a good first guess for the rendered size.
    hint: usize,
}

impl Text {
    pub(crate) fn compile(src: &str) -> Result<Text, TemplateError> {
        if marker::contains_marker(src) {
            return Err(TemplateError::ReservedCharacter);
        }
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(truncate(after, 30)))?;
            let inner = &after[..close];
            rest = &after[close + 2..];
            if let Some(url) = tracked_url(inner)? {
                parts.push(Part::Track { url, link: 0 });
                continue;
            }
            let (name, fallback) = match inner.split_once('|') {
                Some((n, f)) => (n.trim(), Some(f.to_string())),
                None => (inner.trim(), None),
            };
            parts.push(Part::Field(parse_field(name)?, fallback));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        let hint = parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.len(),
                Part::Field(..) => 8,
                Part::Track { .. } => 3,
            })
            .sum();
        Ok(Text { parts, hint })
    }

    pub(crate) fn render(&self, m: &Member, platform: &str) -> String {
        if let [Part::Literal(s)] = self.parts.as_slice() {
            return s.clone();
        }
        let mut out = String::with_capacity(self.hint);
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Track { link, .. } => out.push(marker::marker(*link)),
                Part::Field(f, fallback) => {
                    let start = out.len();
                    write_field(&mut out, f, m, platform);
                    if out.len() == start
                        && let Some(fb) = fallback
                    {
                        out.push_str(fb);
                    }
                }
            }
        }
        out
    }
}

impl Text {
    /// The text when it has no placeholders.
    fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Numbers its `{{track}}` links in `links` (the template's list).
    fn number_links(&mut self, links: &mut Vec<String>) -> Result<(), TemplateError> {
        for p in &mut self.parts {
            if let Part::Track { url, link } = p {
                *link = link_number(links, url)?;
            }
        }
        Ok(())
    }
}

/// `url`'s number in the template's list of tracked URLs (added if new).
fn link_number(links: &mut Vec<String>, url: &str) -> Result<u8, TemplateError> {
    if let Some(i) = links.iter().position(|u| u == url) {
        return Ok(i as u8);
    }
    if links.len() >= usize::from(marker::COUNT) {
        return Err(TemplateError::TooManyLinks);
    }
    links.push(url.to_string());
    Ok((links.len() - 1) as u8)
}

/// `track "URL"` → the URL, checked and normalised; None when the
/// placeholder is not a `track`.
fn tracked_url(inner: &str) -> Result<Option<String>, TemplateError> {
    let t = inner.trim();
    let Some(arg) = t.strip_prefix("track") else {
        return Ok(None);
    };
    if !(arg.is_empty() || arg.starts_with([' ', '\t', '"'])) {
        return Ok(None);
    }
    let arg = arg.trim();
    let url = arg
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .filter(|u| !u.contains('"'))
        .ok_or_else(|| TemplateError::TrackNeedsQuotedUrl(t.to_string()))?;
    check_tracked_url(url).map(Some)
}

/// A URL a click may be sent to: absolute http(s) with a host. Returned
/// normalised (the form stored and redirected to).
pub(crate) fn check_tracked_url(url: &str) -> Result<String, TemplateError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(u.to_string())
        }
        Ok(_) => Err(TemplateError::TrackedUrlNotHttp(url.to_string())),
        Err(e) => Err(TemplateError::TrackedUrlNotUrl {
            url: url.to_string(),
            reason: e.to_string(),
        }),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn parse_field(name: &str) -> Result<Field, TemplateError> {
    let field = match name {
        "id" => Field::Id,
        "channel" => Field::Channel,
        "platform" => Field::Platform,
        "channel_user_id" => Field::ChannelUserId,
        "name" => Field::Name,
        "locale" => Field::Locale,
        "timezone" => Field::Timezone,
        other => match other.strip_prefix("attributes.") {
            Some(path) => {
                let keys: Vec<String> = path.split('.').map(str::to_string).collect();
                if keys.iter().any(|k| !valid_attribute_key(k)) {
                    return Err(TemplateError::InvalidAttributeKey(other.to_string()));
                }
                Field::Attribute(keys)
            }
            None => return Err(TemplateError::UnknownPlaceholder(other.to_string())),
        },
    };
    Ok(field)
}

pub(crate) fn valid_attribute_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn write_field(out: &mut String, f: &Field, m: &Member, platform: &str) {
    match f {
        Field::Id => {
            let _ = write!(out, "{}", m.id);
        }
        Field::Channel => out.push_str(&m.channel),
        Field::Platform => out.push_str(platform),
        Field::ChannelUserId => out.push_str(&m.channel_user_id),
        Field::Name => out.push_str(&m.name),
        Field::Locale => out.push_str(&m.locale),
        Field::Timezone => out.push_str(&m.timezone),
        Field::Attribute(path) => {
            let mut v = m.attributes.get(&path[0]);
            for k in &path[1..] {
                v = v.and_then(|v| v.get(k));
            }
            match v {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(s)) => out.push_str(s),
                Some(serde_json::Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
                Some(serde_json::Value::Number(n)) => {
                    let _ = write!(out, "{n}");
                }
                Some(other) => {
                    let _ = write!(out, "{other}");
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompiledButton {
    pub title: Text,
    pub payload: Option<Text>,
    pub url: Option<Text>,
    /// The button's `track` (None: `[links] track_buttons` decides).
    pub track: Option<bool>,
    /// Its tracked link's number, once [`CompiledMessage::number_links`]
    /// found it tracked.
    pub link: Option<u8>,
}

/// One locale's message, compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompiledMessage {
    pub text: Text,
    pub buttons: Vec<CompiledButton>,
    pub quick_replies: Vec<CompiledButton>,
    pub image: Option<Text>,
}

impl CompiledMessage {
    pub(crate) fn render(&self, m: &Member, platform: &str) -> Message {
        let buttons = |list: &[CompiledButton]| -> Vec<Button> {
            list.iter()
                .map(|b| Button {
                    title: b.title.render(m, platform),
                    payload: b.payload.as_ref().map(|t| t.render(m, platform)),
                    url: match b.link {
                        Some(link) => Some(marker::marker(link).to_string()),
                        None => b.url.as_ref().map(|t| t.render(m, platform)),
                    },
                })
                .collect()
        };
        Message {
            text: self.text.render(m, platform),
            buttons: buttons(&self.buttons),
            quick_replies: buttons(&self.quick_replies),
            image_url: self.image.as_ref().map(|t| t.render(m, platform)),
        }
    }
}

impl CompiledMessage {
    /// Numbers the message's tracked links in `links` (the template's
    /// list, shared by its locales): `{{track}}` placeholders and the URL
    /// buttons that are tracked (their own `track`, else `track_buttons`).
    /// A tracked button's URL must be fixed: the URL is registered once per
    /// push, not per recipient.
    pub(crate) fn number_links(
        &mut self,
        links: &mut Vec<String>,
        track_buttons: bool,
    ) -> Result<(), TemplateError> {
        self.text.number_links(links)?;
        if let Some(img) = &mut self.image {
            img.number_links(links)?;
        }
        for (key, list) in [
            ("buttons", &mut self.buttons),
            ("quick_replies", &mut self.quick_replies),
        ] {
            for (i, b) in list.iter_mut().enumerate() {
                let what = format!("{key}[{}]", i + 1);
                for t in [Some(&mut b.title), b.payload.as_mut(), b.url.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    t.number_links(links)?;
                }
                let Some(url) = &b.url else {
                    if b.track == Some(true) {
                        return Err(TemplateError::TrackWithoutUrl(what));
                    }
                    continue;
                };
                if !b.track.unwrap_or(track_buttons)
                    || matches!(url.parts.as_slice(), [Part::Track { .. }])
                {
                    continue;
                }
                let fixed = url
                    .literal()
                    .ok_or_else(|| TemplateError::TrackedUrlNotFixed(what.clone()))?;
                let fixed = check_tracked_url(fixed).map_err(|e| TemplateError::InButton {
                    what,
                    error: Box::new(e),
                })?;
                b.link = Some(link_number(links, &fixed)?);
            }
        }
        Ok(())
    }
}

/// `"zh_CN"` and `"zh-cn"` name the same locale.
pub(crate) fn same_locale(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let n = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            n(x) == n(y)
        })
}

/// The language part of a locale tag: `"zh-CN"` → `"zh"`.
pub(crate) fn language(locale: &str) -> &str {
    locale.split(['-', '_']).next().unwrap_or(locale)
}

/// Whether a template key looks like a locale tag (`en`, `zh`, `zh-CN`, `pt_BR`).
pub(crate) fn is_locale_tag(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let first = parts.next().unwrap_or("");
    (2..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The table a member's message comes from: which locale, and whether it
/// is the platform's own version (`whatsapp = { en = … }`) or the generic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chosen<'a, T> {
    pub locale: &'a str,
    pub message: &'a T,
    pub from_override: bool,
}

/// Picks a member's table from its platform's versions (`platform`, empty
/// when the template has none for it) and the generic ones (`generic`):
/// the member's locale, else its language, else the default locale, else
/// its language — at each step the platform's version before the generic
/// one, so a platform version in the member's language wins and a generic
/// table in the member's language beats a platform version in another —
/// else the platform's first table, else the generic first. Both lists are
/// sorted by locale; `None` only when both are empty.
pub(crate) fn choose_message<'a, T>(
    platform: &'a [(String, T)],
    generic: &'a [(String, T)],
    member_locale: &str,
    default_locale: &str,
) -> Option<Chosen<'a, T>> {
    let pick = |list: &'a [(String, T)], from_override: bool, i: usize| Chosen {
        locale: list[i].0.as_str(),
        message: &list[i].1,
        from_override,
    };
    let wants = [
        member_locale,
        language(member_locale),
        default_locale,
        language(default_locale),
    ];
    for want in wants {
        for (list, from_override) in [(platform, true), (generic, false)] {
            if let Some(i) = list.iter().position(|(l, _)| same_locale(l, want)) {
                return Some(pick(list, from_override, i));
            }
        }
    }
    if !platform.is_empty() {
        return Some(pick(platform, true, 0));
    }
    (!generic.is_empty()).then(|| pick(generic, false, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Member {
        let mut attributes = serde_json::Map::new();
        attributes.insert("spend".into(), serde_json::json!(120));
        attributes.insert("city".into(), serde_json::json!("Hong Kong"));
        attributes.insert("vip".into(), serde_json::json!(true));
        attributes.insert("addr".into(), serde_json::json!({"zip": "999077"}));
        Member {
            id: 7,
            channel: "sim".into(),
            channel_user_id: "sim-0007".into(),
            name: "Ada".into(),
            locale: "zh-CN".into(),
            timezone: "Asia/Hong_Kong".into(),
            tags: vec![],
            attributes,
            subscribed: true,
            last_interaction_at: None,
        }
    }

    #[test]
    fn renders_fields_attributes_and_fallbacks() {
        let t = Text::compile(
            "Hi {{ name }} #{{id}} on {{platform}}: {{attributes.spend}} {{attributes.city}} {{attributes.vip}} {{attributes.addr.zip}} [{{attributes.none}}] {{attributes.none|friend}}",
        )
        .unwrap();
        assert_eq!(
            t.render(&member(), "simulator"),
            "Hi Ada #7 on simulator: 120 Hong Kong true 999077 [] friend"
        );
    }

    #[test]
    fn rejects_unknown_and_unclosed_placeholders() {
        let e = |src: &str| Text::compile(src).unwrap_err().to_string();
        assert_eq!(
            e("{{nme}}"),
            "unknown placeholder {{nme}}: use one of id, channel, platform, channel_user_id, name, locale, timezone or attributes.<key>"
        );
        assert_eq!(e("Hi {{name"), "unclosed placeholder \"{{name\"");
        assert_eq!(
            e("{{attributes.}}"),
            "placeholder {{attributes.}} has an invalid attribute key (use letters, digits, '_' or '-')"
        );
        assert_eq!(
            Text::compile("{{attributes.a b}}").unwrap_err(),
            TemplateError::InvalidAttributeKey("attributes.a b".into())
        );
    }

    #[test]
    fn tracked_links_render_markers_numbered_per_template() {
        let mut t = Text::compile(
            r#"A {{ track "https://Shop.example.com/sale?x=1|2" }} B {{track "https://b.example"}} {{name}}"#,
        )
        .unwrap();
        let mut links = vec!["https://b.example/".to_string()];
        t.number_links(&mut links).unwrap();
        assert_eq!(
            links,
            vec!["https://b.example/", "https://shop.example.com/sale?x=1|2"]
        );
        assert_eq!(
            t.render(&member(), "simulator"),
            format!("A {} B {} Ada", marker::marker(1), marker::marker(0))
        );
        for (src, words) in [
            (r#"{{track}}"#, "quoted URL"),
            (r#"{{track https://x.example}}"#, "quoted URL"),
            (r#"{{track "ftp://x.example"}}"#, "http(s)"),
            (r#"{{track "/relative"}}"#, "not a URL"),
            ("x \u{FDD3} y", "reserves"),
        ] {
            let e = Text::compile(src).unwrap_err().to_string();
            assert!(e.contains(words), "{src}: {e}");
        }
        // Not a track: an unknown placeholder like any other.
        assert_eq!(
            Text::compile("{{tracking}}").unwrap_err(),
            TemplateError::UnknownPlaceholder("tracking".into())
        );
        assert_eq!(
            Text::compile("{{track}}").unwrap_err().to_string(),
            "{{track}} needs one quoted URL: {{track \"https://…\"}}"
        );
    }

    #[test]
    fn tracked_buttons_need_a_fixed_url() {
        let button = |url: &str, track: Option<bool>| CompiledButton {
            title: Text::compile("Go").unwrap(),
            payload: None,
            url: Some(Text::compile(url).unwrap()),
            track,
            link: None,
        };
        let mut m = CompiledMessage {
            text: Text::compile("hi").unwrap(),
            buttons: vec![
                button("https://a.example/x", Some(true)),
                button("https://b.example/{{id}}", None),
            ],
            quick_replies: vec![],
            image: None,
        };
        let mut links = Vec::new();
        m.clone().number_links(&mut links, false).unwrap();
        assert_eq!(links, vec!["https://a.example/x"]);
        let msg = {
            let mut m = m.clone();
            m.number_links(&mut Vec::new(), false).unwrap();
            m.render(&member(), "telegram")
        };
        assert_eq!(msg.buttons[0].url, Some(marker::marker(0).to_string()));
        assert_eq!(msg.buttons[1].url.as_deref(), Some("https://b.example/7"));
        // `track_buttons` tracks the second one too, and it has a placeholder.
        let e = m.number_links(&mut Vec::new(), true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "buttons[2]: a tracked URL must be fixed (it is registered once per push), but this one has placeholders; \
             write track = false to send it untracked"
        );
        m.buttons[1].track = Some(false);
        let mut links = Vec::new();
        m.number_links(&mut links, true).unwrap();
        assert_eq!(links.len(), 1);
    }

    #[test]
    fn locale_choice_order() {
        let ls = vec![
            ("en".to_string(), 'e'),
            ("es".to_string(), 's'),
            ("zh".to_string(), 'z'),
        ];
        let pick = |l: &str, d: &str| choose_message(&[], &ls, l, d).map(|c| *c.message);
        assert_eq!(pick("zh-CN", "en"), Some('z'));
        assert_eq!(pick("es", "en"), Some('s'));
        assert_eq!(pick("fr", "en"), Some('e'));
        assert_eq!(pick("fr", "es-MX"), Some('s'));
        let ls = vec![("es".to_string(), 's'), ("zh-CN".to_string(), 'z')];
        let pick = |l: &str, d: &str| choose_message(&[], &ls, l, d).map(|c| *c.message);
        assert_eq!(pick("zh_cn", "en"), Some('z'));
        assert_eq!(pick("fr", "en"), Some('s'));
        assert!(choose_message::<()>(&[], &[], "en", "en").is_none());
    }

    #[test]
    fn platform_versions_come_first_at_each_step() {
        let generic = vec![("en".to_string(), 'e'), ("zh-TW".to_string(), 't')];
        let wa = vec![("en".to_string(), 'E'), ("zh".to_string(), 'Z')];
        let pick = |l: &str| {
            let c = choose_message(&wa, &generic, l, "en").unwrap();
            (*c.message, c.locale, c.from_override)
        };
        assert_eq!(pick("en-GB"), ('E', "en", true));
        // The exact generic locale beats the platform's version of the language.
        assert_eq!(pick("zh-TW"), ('t', "zh-TW", false));
        assert_eq!(pick("zh-CN"), ('Z', "zh", true));
        // No table in the member's language: the default locale, platform first.
        assert_eq!(pick("fr"), ('E', "en", true));
        // A generic table in the member's language beats the platform's default.
        let generic = vec![("es".to_string(), 's')];
        let c = choose_message(&wa, &generic, "es", "en").unwrap();
        assert_eq!((*c.message, c.from_override), ('s', false));
        // Nothing matches: the platform's first table.
        let c = choose_message(&wa, &generic, "fr", "de").unwrap();
        assert_eq!((*c.message, c.from_override), ('E', true));
    }
}
