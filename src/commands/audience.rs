//! audience.preview and audience.retry.

use super::{Actor, CommandError, CommandResult};
use crate::model::{Member, Routed, now_ms};
use crate::protocol::{
    AudienceInfo, AudiencePreviewArgs, AudienceRetryArgs, PreviewData, PreviewSample,
    RetryAudienceData,
};
use crate::script::Scripts;
use crate::store::audiences::{self, AudienceRow, RetryScope};
use crate::store::{Store, members, pushes};

/// Candidates examined per page when an audience has a Lua filter.
const PAGE: usize = 2000;

/// Audience size and sample rendered messages. Nothing is sent or written.
pub async fn preview(
    store: &Store,
    scripts: &Scripts,
    a: AudiencePreviewArgs,
) -> CommandResult<PreviewData> {
    let limit = a.limit.unwrap_or(5).min(100) as usize;
    let g = scripts.live().ok_or_else(|| {
        CommandError::Unavailable("no script generation is live (see `pushd status`)".into())
    })?;
    let template = match &a.template {
        Some(t) => Some(t.clone()),
        None => g
            .pushes
            .iter()
            .find(|p| p.audience == a.name)
            .map(|p| p.template.clone())
            .or_else(|| g.templates.keys().next().cloned()),
    };
    if let Some(t) = &template
        && !g.templates.contains_key(t)
    {
        return Err(CommandError::Invalid(format!(
            "template {t:?} is not defined in the live scripts"
        )));
    }
    let (mut size, mut subscribed) = (0u64, 0u64);
    let mut samples: Vec<Member> = Vec::new();
    if let Some(aud) = g.audiences.get(&a.name) {
        let mut after = 0i64;
        loop {
            let (sql, args) = (aud.filter_sql.sql.clone(), aud.filter_sql.params.clone());
            let page = store
                .read(move |c| members::page_where(c, &sql, &args, after, PAGE))
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            let keep = if aud.has_filter {
                g.filter(&a.name, page.clone())
                    .await
                    .map_err(|e| CommandError::Invalid(format!("audience filter failed: {e}")))?
            } else {
                vec![true; page.len()]
            };
            for (m, k) in page.into_iter().zip(keep) {
                if !k {
                    continue;
                }
                size += 1;
                if m.subscribed {
                    subscribed += 1;
                    if samples.len() < limit {
                        samples.push(m);
                    }
                }
            }
        }
    } else {
        let name = a.name.clone();
        let found = store
            .read(move |c| {
                let Some(aud) = audiences::find(c, &name)? else {
                    return Ok(None);
                };
                let mut ms = Vec::new();
                for id in audiences::member_ids(c, aud.id, limit as u32)? {
                    if let Some(m) = members::get(c, id)? {
                        ms.push(m);
                    }
                }
                Ok(Some((aud.members, ms)))
            })
            .await?;
        match found {
            Some((n, ms)) => {
                size = n;
                subscribed = ms.iter().filter(|m| m.subscribed).count() as u64;
                samples = ms;
            }
            None => {
                return Err(CommandError::NotFound(format!(
                    "audience {:?} is defined neither in the live scripts nor as a saved audience",
                    a.name
                )));
            }
        }
    }
    let mut routed = match &template {
        Some(t) => g.prepare(t, samples.clone(), now_ms()).await,
        None => Vec::new(),
    };
    // Nothing is sent, so no delivery has a tracked URL yet: show where
    // each tracked link leads.
    if let Some(t) = template.as_ref().and_then(|t| g.templates.get(t)) {
        for r in routed.iter_mut() {
            if let Ok(Routed::Send { outbound, .. }) = r {
                crate::links::marker::substitute(outbound, |l| {
                    t.tracked.get(usize::from(l)).cloned()
                });
            }
        }
    }
    let mut out = Vec::new();
    for (i, m) in samples.into_iter().enumerate() {
        let (routed, error) = match routed.get(i) {
            Some(Ok(r)) => (Some(r.clone()), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        out.push(PreviewSample {
            member_id: m.id,
            channel: m.channel,
            channel_user_id: m.channel_user_id,
            name: m.name,
            locale: m.locale,
            routed,
            error,
        });
    }
    Ok(PreviewData {
        audience: a.name,
        template,
        size,
        subscribed,
        samples: out,
    })
}

fn info(a: AudienceRow) -> AudienceInfo {
    AudienceInfo {
        id: a.id,
        name: a.name,
        source_push_id: a.source_push_id,
        only_class: a.only_class,
        created_at: a.created_at,
        members: a.members,
    }
}

/// A static audience of the push's failed recipients, linked to the push.
pub async fn retry(
    store: &Store,
    scripts: &Scripts,
    actor: &Actor,
    a: AudienceRetryArgs,
) -> CommandResult<RetryAudienceData> {
    let scope = match a.only.as_deref() {
        None | Some("all") => RetryScope::AllFailed,
        Some("transient") => RetryScope::Transient,
        Some(o) => {
            return Err(CommandError::Invalid(format!(
                "--only {o:?}: the choices are \"transient\" (or \"all\")"
            )));
        }
    };
    if a.name.trim().is_empty() {
        return Err(CommandError::Invalid("--name must not be empty".into()));
    }
    if let Some(g) = scripts.live()
        && g.audiences.contains_key(&a.name)
    {
        return Err(CommandError::Conflict(format!(
            "{:?} is already an audience in the scripts; pick another --name",
            a.name
        )));
    }
    let uid = actor.uid;
    let data = store
        .write(move |c| {
            let p = pushes::find(c, &a.push)?;
            let audience = audiences::create_retry(c, p.id, &a.name, scope, uid)?;
            Ok(RetryAudienceData {
                audience: info(audience),
                source_push: p.name,
            })
        })
        .await?;
    tracing::info!(audience = %data.audience.name, members = data.audience.members, source = %data.source_push, at = now_ms(), "retry audience created");
    Ok(data)
}
