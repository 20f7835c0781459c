//! push.create / list / show / pause / resume / cancel.

use super::{Actor, CommandError, CommandResult};
use crate::dispatch::{self, Control, Dispatcher, progress};
use crate::model::{PushId, now_ms};
use crate::protocol::{PushCreateArgs, PushCreateData, PushListArgs, PushListData, PushShowData};
use crate::script::Scripts;
use crate::store::pushes::{self, NewPush, PushRow, PushStatus};
use crate::store::{Store, StoreError, audiences, deliveries, members};
use crate::util::duration::{self, human_secs};
use std::sync::Arc;

/// Reads a push with its counters and "retry of" name.
async fn load(
    store: &Store,
    reference: &str,
) -> Result<(PushRow, pushes::Counts, Option<String>), CommandError> {
    let r = reference.to_string();
    Ok(store
        .read(move |c| {
            let p = pushes::find(c, &r)?;
            let counts = pushes::counts(c, p.id)?;
            let retry_of = match p.retry_of {
                Some(id) => pushes::get(c, id)?.map(|s| s.name),
                None => None,
            };
            Ok((p, counts, retry_of))
        })
        .await?)
}

fn parse_at(at: Option<&str>) -> Result<i64, CommandError> {
    match at.map(str::trim) {
        None | Some("") | Some("now") => Ok(now_ms()),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                CommandError::Invalid(format!(
                    "--at {t:?} is not \"now\" or an RFC 3339 time like 2026-11-27T09:00:00+08:00 ({e})"
                ))
            }),
    }
}

fn parse_hhmm(s: &str, what: &str) -> Result<String, CommandError> {
    chrono::NaiveTime::parse_from_str(s.trim(), "%H:%M")
        .map(|t| t.format("%H:%M").to_string())
        .map_err(|_| CommandError::Invalid(format!("{what} {s:?} must be HH:MM (24h)")))
}

/// Saved audiences an unknown-audience error lists (the newest).
const KNOWN_SAVED: u32 = 20;

/// `a, b, c`, or `none`.
fn known(names: Vec<String>) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

pub async fn create(
    store: &Store,
    dispatcher: &Dispatcher,
    scripts: &Scripts,
    actor: &Actor,
    a: PushCreateArgs,
) -> CommandResult<PushCreateData> {
    let generation = scripts.live();
    if let Some(g) = &generation {
        if !g.templates.contains_key(&a.template) {
            return Err(CommandError::Invalid(format!(
                "template {:?} is not defined in the live scripts (generation {}); known: {}",
                a.template,
                g.number,
                g.templates.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    } else {
        return Err(CommandError::Unavailable(
            "no script generation is live; fix the scripts first (see `pushd status`)".into(),
        ));
    }
    let start_at = parse_at(a.at.as_deref())?;
    if a.rate_per_minute == Some(0) {
        return Err(CommandError::Invalid(
            "--rate must be at least 1 per minute".into(),
        ));
    }
    let batch_every_ms = match (&a.batch_size, &a.batch_every) {
        (None, None) => None,
        (Some(0), _) => {
            return Err(CommandError::Invalid(
                "--batch-size must be at least 1".into(),
            ));
        }
        (Some(_), Some(every)) => Some(
            duration::parse(every)
                .map_err(|e| CommandError::Invalid(format!("--batch-every: {e}")))?
                .as_millis() as i64,
        ),
        _ => {
            return Err(CommandError::Invalid(
                "--batch-size and --batch-every go together".into(),
            ));
        }
    };
    let (window_from, window_to) = match (&a.window_from, &a.window_to) {
        (None, None) => (None, None),
        (Some(f), Some(t)) => (
            Some(parse_hhmm(f, "window from")?),
            Some(parse_hhmm(t, "window to")?),
        ),
        _ => {
            return Err(CommandError::Invalid(
                "a send window needs both a from and a to time".into(),
            ));
        }
    };
    // The audience: a script audience (its size counted now) or a saved one.
    let g = generation.clone();
    let audience_name = a.audience.clone();
    let (size, retry_of) = store
        .read(move |c| {
            if let Some(aud) = g.as_ref().and_then(|g| g.audiences.get(&audience_name)) {
                let n = members::count_where(c, &aud.filter_sql.sql, &aud.filter_sql.params)?;
                return Ok((n, None));
            }
            match audiences::find(c, &audience_name)? {
                Some(a) => Ok((a.members, a.source_push_id)),
                None => Err(StoreError::NotFound(format!(
                    "audience {audience_name:?} is defined neither in the live scripts nor as a saved audience; script audiences: {}; saved audiences: {}",
                    known(g.iter().flat_map(|g| g.audiences.keys().cloned()).collect()),
                    known(audiences::names(c, KNOWN_SAVED)?),
                ))),
            }
        })
        .await?;
    let name = a.name.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            a.audience,
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )
    });
    let new = NewPush {
        name,
        origin: "cli".into(),
        audience: a.audience.clone(),
        template: a.template.clone(),
        start_at,
        rate_per_minute: a.rate_per_minute,
        batch_size: a.batch_size,
        batch_every_ms,
        window_from,
        window_to,
        retry_of,
        created_by: actor.uid,
    };
    let row = store.write(move |c| pushes::create(c, &new)).await?;
    dispatcher.wake();
    let counts = pushes::Counts {
        pending: size,
        ..Default::default()
    };
    let mut summary = progress::summary(&row, &counts, &dispatcher.live(row.id), None);
    let rate = progress::effective_rate(dispatcher.global_rate_per_minute(), row.rate_per_minute);
    summary.eta_secs = progress::eta_secs(size, rate, row.batch_size, row.batch_every_ms);
    summary.eta = summary.eta_secs.map(human_secs);
    let mut warnings = Vec::new();
    if let Some(secs) = summary.eta_secs
        && secs > 3600
    {
        warnings.push(format!(
            "at {:.0} messages/minute this push needs about {} for up to {size} recipients; \
             consider splitting it into batches (--batch-size/--batch-every) or scheduling it earlier (--at)",
            rate.unwrap_or(0.0),
            human_secs(secs)
        ));
    }
    Ok(PushCreateData {
        push: summary,
        warnings,
    })
}

pub async fn list(
    store: &Store,
    dispatcher: &Dispatcher,
    a: PushListArgs,
) -> CommandResult<PushListData> {
    let status = match a.status.as_deref() {
        None => None,
        Some(s) => Some(PushStatus::parse(s).ok_or_else(|| {
            CommandError::Invalid(format!(
                "status {s:?} is not one of scheduled, running, paused, completed, cancelled"
            ))
        })?),
    };
    let limit = a.limit.unwrap_or(50).min(1000);
    let rows = store
        .read(move |c| {
            let mut out = Vec::new();
            for p in pushes::list(c, status, limit)? {
                let counts = pushes::counts(c, p.id)?;
                out.push((p, counts));
            }
            Ok(out)
        })
        .await?;
    let pushes = rows
        .iter()
        .map(|(p, c)| progress::summary(p, c, &dispatcher.live(p.id), None))
        .collect();
    Ok(PushListData { pushes })
}

/// One push's progress and report.
pub async fn show(
    store: &Store,
    dispatcher: &Dispatcher,
    push: &str,
) -> CommandResult<PushShowData> {
    let (p, c, retry_of) = load(store, push).await?;
    Ok(PushShowData {
        push: progress::summary(&p, &c, &dispatcher.live(p.id), retry_of.clone()),
        report: crate::analytics::build(&p, &c, retry_of),
    })
}

async fn set_status(
    store: &Store,
    id: PushId,
    status: PushStatus,
    reason: Option<String>,
) -> Result<(), CommandError> {
    store
        .write(move |c| pushes::set_status(c, id, status, reason.as_deref()))
        .await?;
    Ok(())
}

pub async fn pause(
    store: &Store,
    dispatcher: &Dispatcher,
    actor: &Actor,
    push: &str,
) -> CommandResult<PushShowData> {
    let (p, _, _) = load(store, push).await?;
    match p.status {
        PushStatus::Scheduled | PushStatus::Running => {}
        other => {
            return Err(CommandError::Conflict(format!(
                "push {:?} is {other}; only scheduled or running pushes can be paused",
                p.name
            )));
        }
    }
    set_status(
        store,
        p.id,
        PushStatus::Paused,
        Some(format!("paused by {}", actor.label)),
    )
    .await?;
    dispatcher.control(p.id, Control::Pause);
    show(store, dispatcher, &p.id.to_string()).await
}

pub async fn resume(
    store: &Store,
    dispatcher: &Arc<Dispatcher>,
    push: &str,
) -> CommandResult<PushShowData> {
    let (p, _, _) = load(store, push).await?;
    if p.status != PushStatus::Paused {
        return Err(CommandError::Conflict(format!(
            "push {:?} is {}; only paused pushes can be resumed",
            p.name, p.status
        )));
    }
    let back_to = if p.started_at.is_some() {
        PushStatus::Running
    } else {
        PushStatus::Scheduled
    };
    set_status(store, p.id, back_to, None).await?;
    if back_to == PushStatus::Running {
        dispatch::resume(dispatcher, p.id);
    }
    dispatcher.wake();
    show(store, dispatcher, &p.id.to_string()).await
}

pub async fn cancel(
    store: &Store,
    dispatcher: &Dispatcher,
    push: &str,
) -> CommandResult<PushShowData> {
    let (p, _, _) = load(store, push).await?;
    if p.status.is_final() {
        return Err(CommandError::Conflict(format!(
            "push {:?} is already {}",
            p.name, p.status
        )));
    }
    let id = p.id;
    // Recipients not yet sent end cancelled now; sends already in flight
    // finish and are recorded as whatever the platform answered.
    store
        .write(move |c| {
            deliveries::cancel_pending(c, id)?;
            pushes::set_status(c, id, PushStatus::Cancelled, None)
        })
        .await?;
    dispatcher.control(id, Control::Cancel);
    show(store, dispatcher, &id.to_string()).await
}
