//! Load-time validation (state 0, before a generation goes live): every
//! template rendered and routed for sample members — each of its locales
//! (generic and platform versions) × each configured channel × inside and
//! outside the service window — and each result asked of the channel it is
//! routed to; and each platform version (`wechat = { … }`) for a platform
//! no channel is configured for rendered for a member of that platform and
//! checked against that platform's rules. A message that cannot be sent is
//! reported with the rule it breaks and the ways to fix it
//! ([`Unsendable`]), at the file:line of the template, its render or the
//! router.

use super::{Host, Runtime, platform_name, platform_of};
use crate::model::{Member, Message, Millis, Outbound, Platform, Routed, now_ms};
use crate::script::api::{Body, Defs, TemplateSlot};
use crate::script::error::{Made, ScriptError, Unsendable, unsendable_platform_template};
use std::collections::{BTreeSet, HashSet};

/// Problems found, each reported once however many samples hit it.
#[derive(Default)]
struct Found {
    seen: HashSet<String>,
    errors: Vec<ScriptError>,
}

impl Found {
    /// Records `e` unless already recorded, with the sample that showed it.
    fn push(&mut self, mut e: ScriptError, sample: &str) {
        if self.seen.insert(e.to_string()) {
            e.message = format!("{} ({sample})", e.message);
            self.errors.push(e);
        }
    }
}

impl Host {
    /// Renders and routes every template for sample members and asks the
    /// channels whether the results can be sent; returns every problem.
    pub(super) fn validate(&mut self) -> Vec<ScriptError> {
        let Host { rt, defs, .. } = self;
        let shared = rt.shared.clone();
        let now = now_ms();
        let mut channels: Vec<(&str, Option<Platform>)> = shared
            .env
            .channels
            .iter()
            .map(|(name, c)| (name.as_str(), Some(c.platform)))
            .collect();
        if channels.is_empty() {
            channels.push(("sample", None));
        }
        let mut found = Found::default();
        for tpl in defs.templates.values() {
            rt.begin_batch(now, None, Some(&tpl.def.name));
            // Every variant's body, each under its own `ctx.variant`.
            for (variant, body) in tpl.bodies() {
                rt.set_variant(variant.map(Into::into));
                for locale in sample_locales(body, &shared.env.default_locale) {
                    for (channel, _) in &channels {
                        for recent in [true, false] {
                            let m = sample_member(channel, &locale, recent.then_some(now - 60_000));
                            rt.check_sample(defs, tpl, &m, &mut found);
                        }
                    }
                }
                for (platform, tables) in &body.overrides {
                    if channels.iter().all(|(_, p)| *p != Some(*platform)) {
                        for (locale, _) in tables {
                            rt.check_platform_version(tpl, *platform, locale, now, &mut found);
                        }
                    }
                }
            }
        }
        // A router is checked even when no template exists yet.
        if defs.templates.is_empty()
            && let Some((route, at)) = &defs.route
        {
            rt.begin_batch(now, None, None);
            let msg = Message {
                text: "sample".into(),
                ..Message::default()
            };
            for (channel, platform) in &channels {
                let m = sample_member(channel, &shared.env.default_locale, Some(now - 60_000));
                rt.set_ctx_platform(*platform);
                if let Err(e) = rt.route_one(route, at, &m, *platform, msg.clone(), None) {
                    found.push(e, &format!("sample member on channel {channel}"));
                }
            }
        }
        found.errors
    }
}

impl Runtime {
    /// Prepares `tpl` for the sample member `m` and checks the result with
    /// the channel it is routed to.
    fn check_sample(&mut self, defs: &Defs, tpl: &TemplateSlot, m: &Member, found: &mut Found) {
        let sample = format!(
            "{}sample member: locale {}, channel {}, last interaction {}",
            self.variant_label(),
            m.locale,
            m.channel,
            if m.last_interaction_at.is_some() {
                "1 minute ago"
            } else {
                "never"
            }
        );
        let (routed, made) = match self.prepare_traced(defs, tpl, m) {
            Ok(r) => r,
            Err(e) => return found.push(e, &sample),
        };
        let Routed::Send {
            channel: to,
            mut outbound,
        } = routed
        else {
            return;
        };
        // Checked in the shape it is sent in: tracked links as URLs.
        let url = crate::links::marker::sample_url(self.shared.env.links.public_url.as_deref());
        crate::links::marker::substitute(&mut outbound, |_| Some(url.clone()));
        if let Outbound::Message { message, .. } = &outbound
            && message_is_empty(message)
        {
            let e = ScriptError::at(
                tpl.def.location.clone(),
                format!("template {:?} renders an empty message", tpl.def.name),
            );
            found.push(e, &sample);
        }
        let Some(target) = self.shared.env.channels.get(&to) else {
            return;
        };
        let Err(rule) = (self.shared.env.validate)(&to, &outbound) else {
            return;
        };
        let platform = target.platform.as_str();
        let e = match &outbound {
            Outbound::Template { name, .. } => {
                let at = defs.route.as_ref().map(|(_, at)| at);
                ScriptError::at(
                    at.unwrap_or(&tpl.def.location).clone(),
                    unsendable_platform_template(&tpl.def.name, name, &to, platform, &rule),
                )
            }
            Outbound::Message { .. } => unsendable(
                tpl,
                made,
                Unsendable {
                    template: &tpl.def.name,
                    made,
                    locale: &m.locale,
                    member_platform: platform_name(platform_of(&self.shared, &m.channel)),
                    channel: Some(&to),
                    platform,
                    rule: &rule,
                },
            ),
        };
        found.push(e, &sample);
    }

    /// "variant b, " while a variant is checked.
    fn variant_label(&self) -> String {
        self.variant
            .as_deref()
            .map(|v| format!("variant {v}, "))
            .unwrap_or_default()
    }

    /// Renders `tpl` for a member of `platform`, which no configured channel
    /// speaks, and checks the message against the platform's rules.
    fn check_platform_version(
        &mut self,
        tpl: &TemplateSlot,
        platform: Platform,
        locale: &str,
        now: Millis,
        found: &mut Found,
    ) {
        let m = sample_member(&format!("sample-{platform}"), locale, Some(now - 60_000));
        let sample = format!(
            "{}sample {platform} member: locale {locale}; no {platform} channel is configured, so the platform's rules apply",
            self.variant_label()
        );
        self.budget.clear_last_trip();
        self.set_ctx_platform(Some(platform));
        let (message, made) = match self.render(tpl, &m, Some(platform), &mut None) {
            Ok(r) => r,
            Err(e) => return found.push(e, &sample),
        };
        let outbound = Outbound::Message { message, tag: None };
        if let Err(rule) = crate::channel::rules(platform, &outbound) {
            let u = Unsendable {
                template: &tpl.def.name,
                made,
                locale,
                member_platform: platform.as_str(),
                channel: None,
                platform: platform.as_str(),
                rule: &rule.to_string(),
            };
            found.push(unsendable(tpl, made, u), &sample);
        }
    }
}

/// The error for a message a channel cannot carry, at the line of what made it.
fn unsendable(tpl: &TemplateSlot, made: Made<'_>, u: Unsendable<'_>) -> ScriptError {
    let at = match made {
        Made::Render(at) => at.clone(),
        Made::Table { .. } => tpl.def.location.clone(),
    };
    ScriptError::at(at, u.to_string())
}

/// Every locale a body has a table for, generic or platform version (the
/// default locale when it has none, e.g. a template with only `render`).
fn sample_locales(body: &Body, default_locale: &str) -> BTreeSet<String> {
    let mut locales: BTreeSet<String> = body
        .locales
        .iter()
        .chain(body.overrides.values().flatten())
        .map(|(l, _)| l.clone())
        .collect();
    if locales.is_empty() {
        locales.insert(default_locale.to_string());
    }
    locales
}

fn message_is_empty(m: &Message) -> bool {
    m.text.trim().is_empty() && m.image_url.is_none() && m.buttons.is_empty()
}

/// The member templates and the router are tried against at load.
fn sample_member(channel: &str, locale: &str, last_interaction_at: Option<Millis>) -> Member {
    Member {
        id: 0,
        channel: channel.to_string(),
        channel_user_id: "sample-user".into(),
        name: "Sample Member".into(),
        locale: locale.to_string(),
        timezone: "UTC".into(),
        tags: Vec::new(),
        attributes: serde_json::Map::new(),
        subscribed: true,
        last_interaction_at,
    }
}
