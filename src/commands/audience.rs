//! The audience commands: audience.list and audience.show (what each
//! audience is — its definition as written, or its lineage — and what it
//! holds now), audience.preview (size and sample rendered messages) and
//! audience.retry. None of the reads writes anything.

use super::{Actor, CommandError, CommandResult};
use crate::model::{Member, Routed, fmt_ms, now_ms};
use crate::protocol::{
    AudienceInfo, AudienceListArgs, AudienceListData, AudiencePreviewArgs, AudienceRetryArgs,
    AudienceShowArgs, AudienceShowData, AudienceSummary, Lineage, MemberSample, PreviewData,
    PreviewSample, RetryAudienceData,
};
use crate::script::{AudienceDef, Generation, Scripts};
use crate::store::audiences::{self, AudienceRow, SavedAudience};
use crate::store::recipients::{self, RetryScope};
use crate::store::{Store, members, pushes};
use std::ops::Bound::{Excluded, Unbounded};

/// Candidates examined per page when an audience has a Lua filter.
const PAGE: usize = 2000;

/// Candidates a read-only preview runs an audience's Lua `filter` over
/// before it estimates the rest: a peer that may only read must not hold
/// the script pool for a whole large audience. `PUSHD_PREVIEW_SCAN`
/// changes it (tests use a small one).
fn filter_budget() -> u64 {
    std::env::var("PUSHD_PREVIEW_SCAN")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(100_000)
}

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
    let Walked {
        size,
        subscribed,
        samples,
        estimated,
    } = walk(store, Some(&g), &a.name, limit).await?;
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
        estimated,
        samples: out,
    })
}

/// What an audience resolves to now.
struct Walked {
    /// Members (after the Lua filter), unsubscribed included.
    size: u64,
    subscribed: u64,
    /// The first `limit` subscribed members, in id order (a saved
    /// audience's first members, subscribed or not).
    samples: Vec<Member>,
    /// `size` and `subscribed` were extrapolated from the first candidates
    /// the filter ran on (the filter's budget ran out).
    estimated: bool,
}

/// Resolves audience `name` as a push would (the scripts' `where` and
/// `filter`, else a saved audience) without writing anything. A `where`
/// alone is counted in SQL; a Lua filter is run over the candidates up to
/// [`filter_budget`], and the sizes beyond it are estimated from the share
/// it kept.
async fn walk(
    store: &Store,
    g: Option<&Generation>,
    name: &str,
    limit: usize,
) -> CommandResult<Walked> {
    let Some((g, aud)) = g.and_then(|g| Some((g, g.audiences.get(name)?))) else {
        return walk_saved(store, name, limit).await;
    };
    let (sql, args) = (aud.filter_sql.sql.clone(), aud.filter_sql.params.clone());
    if !aud.has_filter {
        return Ok(store
            .read(move |c| {
                let subscribed_sql = format!("({sql}) AND m.subscribed = 1");
                Ok(Walked {
                    size: members::count_where(c, &sql, &args)?,
                    subscribed: members::count_where(c, &subscribed_sql, &args)?,
                    samples: members::page_where(c, &subscribed_sql, &args, 0, limit)?,
                    estimated: false,
                })
            })
            .await?);
    }
    let mut w = Walked {
        size: 0,
        subscribed: 0,
        samples: Vec::new(),
        estimated: false,
    };
    let (budget, mut seen) = (filter_budget(), 0u64);
    let mut after = 0i64;
    loop {
        if seen >= budget {
            let (sql, args) = (sql.clone(), args.clone());
            let total = store
                .read(move |c| members::count_where(c, &sql, &args))
                .await?;
            if total > seen {
                let scale = |n: u64| (n as f64 * total as f64 / seen as f64).round() as u64;
                (w.size, w.subscribed, w.estimated) = (scale(w.size), scale(w.subscribed), true);
            }
            break;
        }
        let (sql, args) = (sql.clone(), args.clone());
        let page = store
            .read(move |c| members::page_where(c, &sql, &args, after, PAGE))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        seen += page.len() as u64;
        let keep = g
            .filter(name, page.clone())
            .await
            .map_err(|e| CommandError::Invalid(format!("audience filter failed: {e}")))?;
        for (m, k) in page.into_iter().zip(keep) {
            if !k {
                continue;
            }
            w.size += 1;
            if m.subscribed {
                w.subscribed += 1;
                if w.samples.len() < limit {
                    w.samples.push(m);
                }
            }
        }
    }
    Ok(w)
}

async fn walk_saved(store: &Store, name: &str, limit: usize) -> CommandResult<Walked> {
    let owned = name.to_string();
    let found = store
        .read(move |c| {
            let Some(aud) = audiences::find(c, &owned)? else {
                return Ok(None);
            };
            let mut samples = Vec::new();
            for id in audiences::member_ids(c, aud.id, limit as u32)? {
                if let Some(m) = members::get(c, id)? {
                    samples.push(m);
                }
            }
            Ok(Some(Walked {
                size: aud.members,
                subscribed: audiences::subscribed(c, aud.id)?,
                samples,
                estimated: false,
            }))
        })
        .await?;
    found.ok_or_else(|| {
        CommandError::NotFound(format!(
            "audience {name:?} is defined neither in the live scripts nor as a saved audience"
        ))
    })
}

/// Default and largest page of `audience.list`.
const LIST_PAGE: u32 = 50;
const LIST_MAX: u32 = 200;

/// The audiences, by name, a page at a time: the scripts' (definition as
/// written, where, size by their `where`) and the saved ones (lineage,
/// members) together.
pub async fn list(
    store: &Store,
    scripts: &Scripts,
    a: AudienceListArgs,
) -> CommandResult<AudienceListData> {
    let limit = a.limit.unwrap_or(LIST_PAGE).clamp(1, LIST_MAX) as usize;
    let after = a.after.unwrap_or_default();
    let g = scripts.live();
    let defs: Vec<AudienceDef> = g
        .iter()
        .flat_map(|g| {
            g.audiences
                .range::<str, _>((Excluded(after.as_str()), Unbounded))
        })
        .take(limit + 1)
        .map(|(_, d)| d.clone())
        .collect();
    let pushes_of = |name: &str| -> Vec<String> {
        g.iter()
            .flat_map(|g| g.pushes.iter())
            .filter(|p| p.audience == name)
            .map(|p| p.name.clone())
            .collect()
    };
    let from = after.clone();
    let (counts, saved) = store
        .read(move |c| {
            let mut counts = Vec::with_capacity(defs.len());
            for d in defs {
                let n = members::count_where(c, &d.filter_sql.sql, &d.filter_sql.params)?;
                counts.push((d, n));
            }
            Ok((counts, audiences::page(c, &from, limit as u32 + 1)?))
        })
        .await?;
    let mut all: Vec<AudienceSummary> = counts
        .into_iter()
        .map(|(d, n)| script_summary(&d, n, pushes_of(&d.name)))
        .chain(saved.into_iter().map(saved_summary))
        .collect();
    // Both lists are in name order: merged, the first `limit` names are this
    // page (a saved audience a script now shadows is listed after it).
    all.sort_by(|x, y| x.name.cmp(&y.name).then_with(|| y.kind.cmp(&x.kind)));
    let next = (all.len() > limit).then(|| {
        all.truncate(limit);
        all.last().map(|a| a.name.clone()).unwrap_or_default()
    });
    Ok(AudienceListData {
        audiences: all,
        next,
    })
}

fn script_summary(d: &AudienceDef, matches: u64, pushes: Vec<String>) -> AudienceSummary {
    AudienceSummary {
        name: d.name.clone(),
        kind: "script".into(),
        description: d.description.clone(),
        where_text: Some(if d.where_text.is_empty() {
            "{}".into()
        } else {
            d.where_text.clone()
        }),
        has_filter: d.has_filter,
        defined_at: Some(d.location.to_string()),
        size: (!d.has_filter).then_some(matches),
        matches_where: Some(matches),
        pushes,
        lineage: None,
    }
}

fn saved_summary(s: SavedAudience) -> AudienceSummary {
    let a = s.row;
    AudienceSummary {
        name: a.name,
        kind: "saved".into(),
        size: Some(a.members),
        lineage: Some(Lineage {
            source_push: s.source_push,
            source_push_id: a.source_push_id,
            outcome: a.outcome,
            filter: a.filter,
            only: a.only_class,
            created_at: fmt_ms(a.created_at),
        }),
        ..AudienceSummary::default()
    }
}

/// One audience: its definition or lineage, its size now (the Lua filter
/// run within the preview budget, estimated beyond) and its first members.
pub async fn show(
    store: &Store,
    scripts: &Scripts,
    a: AudienceShowArgs,
) -> CommandResult<AudienceShowData> {
    let limit = a.limit.unwrap_or(10).min(100) as usize;
    let g = scripts.live();
    let walked = walk(store, g.as_deref(), &a.name, limit).await?;
    let summary = match g.as_ref().and_then(|g| g.audiences.get(&a.name)) {
        Some(d) => {
            let pushes = g.iter().flat_map(|g| g.pushes.iter());
            let pushes = pushes
                .filter(|p| p.audience == a.name)
                .map(|p| p.name.clone())
                .collect();
            let (sql, args) = (d.filter_sql.sql.clone(), d.filter_sql.params.clone());
            let matches = store
                .read(move |c| members::count_where(c, &sql, &args))
                .await?;
            AudienceSummary {
                size: Some(walked.size),
                ..script_summary(d, matches, pushes)
            }
        }
        None => {
            let name = a.name.clone();
            let saved = store.read(move |c| audiences::find_saved(c, &name)).await?;
            saved
                .map(saved_summary)
                .ok_or_else(|| CommandError::NotFound(format!("audience {:?} is gone", a.name)))?
        }
    };
    Ok(AudienceShowData {
        audience: summary,
        size: walked.size,
        subscribed: walked.subscribed,
        estimated: walked.estimated,
        sample: walked
            .samples
            .into_iter()
            .map(|m| MemberSample {
                member_id: m.id,
                channel: m.channel,
                channel_user_id: m.channel_user_id,
                name: m.name,
                locale: m.locale,
                tags: m.tags,
            })
            .collect(),
    })
}

pub(super) fn info(a: AudienceRow) -> AudienceInfo {
    AudienceInfo {
        id: a.id,
        name: a.name,
        source_push_id: a.source_push_id,
        only_class: a.only_class,
        outcome: a.outcome,
        filter: a.filter,
        created_at: a.created_at,
        members: a.members,
    }
}

/// A saved audience's name: not empty, and not one the scripts define.
pub(super) fn check_new_name(scripts: &Scripts, name: &str) -> Result<(), CommandError> {
    if name.trim().is_empty() {
        return Err(CommandError::Invalid("--name must not be empty".into()));
    }
    if let Some(g) = scripts.live()
        && g.audiences.contains_key(name)
    {
        return Err(CommandError::Conflict(format!(
            "{name:?} is already an audience in the scripts; pick another --name"
        )));
    }
    Ok(())
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
    check_new_name(scripts, &a.name)?;
    let uid = actor.uid;
    let data = store
        .write(move |c| {
            let p = pushes::find(c, &a.push)?;
            let audience = recipients::create_retry(c, p.id, &a.name, scope, uid)?;
            Ok(RetryAudienceData {
                audience: info(audience),
                source_push: p.name,
            })
        })
        .await?;
    tracing::info!(audience = %data.audience.name, members = data.audience.members, source = %data.source_push, at = now_ms(), "retry audience created");
    Ok(data)
}
