//! template.list: each template of the live scripts rendered and routed for
//! a sample member of every configured platform in each of its locales —
//! the same `prepare` as `audience preview` and a push, so the page shows
//! exactly what would be sent — a page of templates at a time, by name.

use super::{CommandError, CommandResult};
use crate::config::LiveConfig;
use crate::model::{Member, Platform, now_ms};
use crate::protocol::{
    PlatformVersion, PreviewSample, TemplateInfo, TemplateListArgs, TemplateListData,
    TemplateSample,
};
use crate::script::{Scripts, TemplateDef};
use crate::store::{Store, members};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};

/// Default and largest page: rendering is the cost (platforms × locales
/// messages per template).
const PAGE: u32 = 10;
const MAX_PAGE: u32 = 50;

/// One sample to render: which platform and channel, which locale.
struct Slot {
    platform: Platform,
    channel: String,
    locale: String,
}

pub async fn list(
    store: &Store,
    scripts: &Scripts,
    config: &LiveConfig,
    a: TemplateListArgs,
) -> CommandResult<TemplateListData> {
    let g = scripts.live().ok_or_else(|| {
        CommandError::Unavailable("no script generation is live (see `pushd status`)".into())
    })?;
    let cfg = config.get();
    // The first configured channel of each platform speaks for it.
    let mut platforms: BTreeMap<Platform, String> = BTreeMap::new();
    for (name, ch) in &cfg.channels {
        platforms.entry(ch.kind).or_insert_with(|| name.clone());
    }
    let limit = a.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE) as usize;
    let after = a.after.unwrap_or_default();
    let mut page: Vec<TemplateDef> = g
        .templates
        .range::<str, _>((Excluded(after.as_str()), Unbounded))
        .take(limit + 1)
        .map(|(_, t)| t.clone())
        .collect();
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last().map(|t| t.name.clone()).unwrap_or_default()
    });
    let now = now_ms();
    let mut templates = Vec::with_capacity(page.len());
    for t in page {
        let slots = slots(&t, &platforms, &cfg.scripts.default_locale);
        let wanted: Vec<(String, String)> = slots
            .iter()
            .map(|s| (s.channel.clone(), s.locale.clone()))
            .collect();
        let found = store
            .read(move |c| {
                wanted
                    .iter()
                    .map(|(ch, locale)| members::sample(c, ch, locale))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let real: Vec<bool> = found.iter().map(Option::is_some).collect();
        let sample_members: Vec<Member> = found
            .into_iter()
            .zip(&slots)
            .map(|(m, s)| m.unwrap_or_else(|| made_up(&s.channel, &s.locale, now)))
            .collect();
        let routed = g.prepare(&t.name, sample_members.clone(), now).await;
        let samples = slots
            .into_iter()
            .zip(sample_members)
            .zip(routed)
            .zip(real)
            .map(|(((slot, m), r), real_member)| TemplateSample {
                platform: slot.platform.as_str().to_string(),
                locale: slot.locale,
                real_member,
                sample: preview_sample(m, r),
            })
            .collect();
        templates.push(TemplateInfo {
            defined_at: t.location.to_string(),
            locales: t.locales.clone(),
            platform_versions: t
                .overrides
                .iter()
                .map(|(p, locales)| PlatformVersion {
                    platform: p.as_str().to_string(),
                    locales: locales.clone(),
                    configured: platforms.contains_key(p),
                })
                .collect(),
            has_render: t.has_render,
            name: t.name,
            samples,
        });
    }
    Ok(TemplateListData {
        generation: g.number,
        templates,
        next,
    })
}

/// Every configured platform × each locale the template has for it (its
/// generic tables and that platform's version; the default locale when it
/// has none, e.g. a `render`-only template).
fn slots(t: &TemplateDef, platforms: &BTreeMap<Platform, String>, default: &str) -> Vec<Slot> {
    let mut out = Vec::new();
    for (platform, channel) in platforms {
        let mut locales: BTreeSet<&String> = t.locales.iter().collect();
        locales.extend(t.overrides.get(platform).into_iter().flatten());
        let locales: Vec<String> = if locales.is_empty() {
            vec![default.to_string()]
        } else {
            locales.into_iter().cloned().collect()
        };
        for locale in locales {
            out.push(Slot {
                platform: *platform,
                channel: channel.clone(),
                locale,
            });
        }
    }
    out
}

/// The member a template is shown for when the channel has no real member
/// with that locale (as the scripts' validation makes one): in the service
/// window, so free-form messages are what the router picks.
fn made_up(channel: &str, locale: &str, now: i64) -> Member {
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
        last_interaction_at: Some(now - 60_000),
    }
}

fn preview_sample(
    m: Member,
    r: Result<crate::model::Routed, crate::script::ScriptError>,
) -> PreviewSample {
    let (routed, error) = match r {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    PreviewSample {
        member_id: m.id,
        channel: m.channel,
        channel_user_id: m.channel_user_id,
        name: m.name,
        locale: m.locale,
        routed,
        error,
    }
}
