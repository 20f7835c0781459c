//! push.create / list / show / pause / resume / cancel.

use super::{Actor, CommandError, CommandResult};
use crate::config::DailyHours;
use crate::dispatch::policy::{Rules, held_until, never_open};
use crate::dispatch::{self, Control, Dispatcher, progress};
use crate::model::{PushId, now_ms};
use crate::protocol::{
    PushCreateArgs, PushCreateData, PushListArgs, PushListData, PushPickWinnerArgs, PushShowData,
};
use crate::script::{Scripts, TemplateDef};
use crate::store::pushes::{self, NewPush, PushRow, PushStatus};
use crate::store::{Store, StoreError, audiences, audit, deliveries, members, policy, variants};
use crate::util::duration::{self, human_secs};
use crate::variants::{Metric, Plan, Test, WinnerMode, parse_share};
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

/// The A/B plan of `push create`'s --test-* and --holdout options on a
/// template with `variants` (None: nothing to plan).
fn ab_plan(a: &PushCreateArgs, t: &TemplateDef) -> Result<Option<Plan>, CommandError> {
    let invalid = CommandError::Invalid;
    let test = match (&a.test_share, &a.test_wait) {
        (None, None) => {
            if a.test_metric.is_some() || a.winner.is_some() {
                return Err(invalid(
                    "--test-metric and --winner go with --test-share and --test-wait".into(),
                ));
            }
            None
        }
        (Some(share), Some(wait)) => Some(Test {
            share: parse_share(share, "--test-share").map_err(|e| invalid(e.to_string()))?,
            wait_ms: duration::parse(wait)
                .map_err(|e| invalid(format!("--test-wait: {e}")))?
                .as_millis()
                .min(i64::MAX as u128) as i64,
            metric: match &a.test_metric {
                Some(m) => Metric::parse(m).map_err(|e| invalid(format!("--test-metric: {e}")))?,
                None => Metric::Read,
            },
            winner: match &a.winner {
                Some(w) => WinnerMode::parse(w).map_err(|e| invalid(format!("--winner: {e}")))?,
                None => WinnerMode::Auto,
            },
        }),
        _ => {
            return Err(invalid(
                "--test-share and --test-wait go together (e.g. --test-share 20% --test-wait 2h)"
                    .into(),
            ));
        }
    };
    let holdout = match &a.holdout {
        Some(h) => parse_share(h, "--holdout").map_err(|e| invalid(e.to_string()))?,
        None => 0.0,
    };
    t.ab_plan(test, holdout)
        .map_err(|e| invalid(format!("template {:?}: {e}", a.template)))
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

/// The live generation, checked to define `template`, and the template's
/// A/B variants.
fn live_template(
    scripts: &Scripts,
    template: &str,
) -> Result<(Arc<crate::script::Generation>, TemplateDef), CommandError> {
    let Some(g) = scripts.live() else {
        return Err(CommandError::Unavailable(
            "no script generation is live; fix the scripts first (see `pushd status`)".into(),
        ));
    };
    let Some(t) = g.templates.get(template) else {
        return Err(CommandError::Invalid(format!(
            "template {:?} is not defined in the live scripts (generation {}); known: {}",
            template,
            g.number,
            g.templates.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let t = t.clone();
    Ok((g, t))
}

/// `--batch-size` with `--batch-every`: the batch interval in ms (None: no
/// batches).
fn parse_batch(size: Option<u32>, every: Option<&str>) -> Result<Option<i64>, CommandError> {
    match (size, every) {
        (None, None) => Ok(None),
        (Some(0), _) => Err(CommandError::Invalid(
            "--batch-size must be at least 1".into(),
        )),
        (Some(_), Some(every)) => Ok(Some(
            duration::parse(every)
                .map_err(|e| CommandError::Invalid(format!("--batch-every: {e}")))?
                .as_millis() as i64,
        )),
        _ => Err(CommandError::Invalid(
            "--batch-size and --batch-every go together".into(),
        )),
    }
}

/// `--window-from` with `--window-to`, each as HH:MM (both None: no window).
fn parse_window(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<String>, Option<String>), CommandError> {
    match (from, to) {
        (None, None) => Ok((None, None)),
        (Some(f), Some(t)) => Ok((
            Some(parse_hhmm(f, "window from")?),
            Some(parse_hhmm(t, "window to")?),
        )),
        _ => Err(CommandError::Invalid(
            "a send window needs both a from and a to time".into(),
        )),
    }
}

/// The send window as daily hours, refused when `rules`' quiet hours would
/// keep it shut for good.
fn send_window(
    from: Option<&str>,
    to: Option<&str>,
    rules: &Rules,
) -> Result<Option<DailyHours>, CommandError> {
    let window = match (from, to) {
        (Some(f), Some(t)) => Some(
            DailyHours::parse(&format!("{f}-{t}"))
                .map_err(|e| CommandError::Invalid(format!("send window: {e}")))?,
        ),
        _ => None,
    };
    if let (Some(w), Some(q)) = (&window, &rules.quiet)
        && never_open(w, q)
    {
        return Err(CommandError::Invalid(format!(
            "the send window {w} lies inside [policy] quiet_hours {q}: nothing could ever be sent; \
             widen the window (or create the push with --policy bypass if it is transactional)"
        )));
    }
    Ok(window)
}

/// A push that bypasses `[policy]` is audited as such, beside its
/// `push.create` entry.
async fn audit_bypass(store: &Store, actor: &Actor, row: &PushRow) {
    let detail = "policy = \"bypass\": [policy] frequency caps and quiet hours do not apply to this push (its sends still count toward the caps of other pushes)";
    audit::log(
        store,
        actor.uid,
        "push.policy_bypass",
        Some(&row.name),
        true,
        Some(detail.into()),
    )
    .await;
}

/// Advice for a push that sends for over an hour.
fn long_send_warning(send_secs: Option<u64>, rate: Option<f64>, size: u64) -> Option<String> {
    match send_secs {
        Some(secs) if secs > 3600 => Some(format!(
            "at {:.0} messages/minute this push needs about {} for up to {size} recipients; \
             consider splitting it into batches (--batch-size/--batch-every) or scheduling it earlier (--at)",
            rate.unwrap_or(0.0),
            human_secs(secs)
        )),
        _ => None,
    }
}

pub async fn create(
    store: &Store,
    dispatcher: &Dispatcher,
    scripts: &Scripts,
    actor: &Actor,
    a: PushCreateArgs,
) -> CommandResult<PushCreateData> {
    let (generation, template) = live_template(scripts, &a.template)?;
    let ab = ab_plan(&a, &template)?;
    let start_at = parse_at(a.at.as_deref())?;
    if a.rate_per_minute == Some(0) {
        return Err(CommandError::Invalid(
            "--rate must be at least 1 per minute".into(),
        ));
    }
    let batch_every_ms = parse_batch(a.batch_size, a.batch_every.as_deref())?;
    let (window_from, window_to) = parse_window(a.window_from.as_deref(), a.window_to.as_deref())?;
    let bypass = parse_policy(a.policy.as_deref())?;
    let rules = Rules::for_push(&dispatcher.policy(), bypass.is_some());
    // Recipients will be held (send window, quiet hours): the ETA needs to
    // know when each timezone opens.
    let window = send_window(window_from.as_deref(), window_to.as_deref(), &rules)?;
    let holds = window.is_some() || rules.quiet.is_some();
    // The audience: a script audience (its size counted now) or a saved one.
    let audience = find_audience(store, Some(&generation), &a.audience).await?;
    let retry_of = match &audience {
        Audience::Saved { source, .. } => *source,
        Audience::Script(_) => None,
    };
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
        policy: bypass.map(String::from),
        ab,
    };
    let row = store.write(move |c| pushes::create(c, &new)).await?;
    if row.bypasses_policy() {
        audit_bypass(store, actor, &row).await;
    }
    dispatcher.wake();
    // Counted after the push exists and the dispatcher is awake: a large
    // audience's count must not hold back its first sends.
    let (size, zones) = audience_size(store, audience, holds).await?;
    let counts = pushes::Counts {
        pending: size,
        ..Default::default()
    };
    let mut summary = progress::summary(&row, &counts, &dispatcher.live(row.id), None);
    let rate = progress::effective_rate(dispatcher.global_rate_per_minute(), row.rate_per_minute);
    let held = held_by_zone(&zones, window.as_ref(), &rules, start_at);
    let send_secs = progress::eta_secs(size, rate, row.batch_size, row.batch_every_ms);
    summary.eta_secs = progress::eta_with_holds(
        size,
        rate,
        row.batch_size,
        row.batch_every_ms,
        &progress::held_from(start_at, &held),
    );
    summary.eta = summary.eta_secs.map(human_secs);
    let mut warnings = Vec::new();
    forecast_holds(&mut summary, &mut warnings, &held, size);
    warnings.extend(long_send_warning(send_secs, rate, size));
    Ok(PushCreateData {
        push: summary,
        warnings,
    })
}

/// `--policy`: "bypass" or nothing.
fn parse_policy(policy: Option<&str>) -> Result<Option<&'static str>, CommandError> {
    match policy.map(str::trim) {
        None | Some("") | Some("default") => Ok(None),
        Some(p) if p == pushes::BYPASS => Ok(Some(pushes::BYPASS)),
        Some(p) => Err(CommandError::Invalid(format!(
            "--policy {p:?} is not \"bypass\" (the one per-push policy: frequency caps and quiet \
             hours do not apply, for transactional messages); leave it out to keep [policy]"
        ))),
    }
}

/// When each timezone's recipients would be released if the push started
/// at `start`: (until, recipients), earliest first; those free at once are
/// left out.
fn held_by_zone(
    zones: &[(String, u64)],
    window: Option<&DailyHours>,
    rules: &Rules,
    start: i64,
) -> Vec<(i64, u64)> {
    let mut held = std::collections::BTreeMap::new();
    for (zone, n) in zones {
        let tz = zone.parse().unwrap_or(rules.default_tz);
        if let Some(until) = held_until(window, rules.quiet.as_ref(), tz, start) {
            *held.entry(until).or_insert(0) += n;
        }
    }
    held.into_iter().collect()
}

/// Tells what the holds will do: how many wait, until when, and when
/// sending starts if nobody can be messaged at once.
fn forecast_holds(
    summary: &mut crate::protocol::PushSummary,
    warnings: &mut Vec<String>,
    held: &[(i64, u64)],
    size: u64,
) {
    let count: u64 = held.iter().map(|(_, n)| n).sum();
    let (Some(first), Some(last)) = (held.first(), held.last()) else {
        return;
    };
    summary.held = count;
    summary.held_until = Some(crate::model::fmt_ms(last.0));
    if count >= size {
        let at = crate::model::fmt_ms(first.0);
        summary.resumes_at = Some(at.clone());
        warnings.push(format!(
            "every recipient is outside the send window or in quiet hours now (in their timezones): \
             sending starts at {at}, the last of them are held until {}",
            crate::model::fmt_ms(last.0)
        ));
    } else {
        warnings.push(format!(
            "{count} of up to {size} recipients are outside the send window or in quiet hours now \
             (in their timezones); they are held until {} at the latest",
            crate::model::fmt_ms(last.0)
        ));
    }
}

/// The audience a push names: defined in the live scripts, or saved.
enum Audience {
    Script(crate::script::SqlFilter),
    Saved {
        id: i64,
        members: u64,
        source: Option<PushId>,
    },
}

/// Which audience `name` is (cheap: no member is counted), or the known
/// ones when it is neither.
async fn find_audience(
    store: &Store,
    generation: Option<&Arc<crate::script::Generation>>,
    name: &str,
) -> CommandResult<Audience> {
    if let Some(aud) = generation.and_then(|g| g.audiences.get(name)) {
        return Ok(Audience::Script(aud.filter_sql.clone()));
    }
    let scripted: Vec<String> = generation
        .iter()
        .flat_map(|g| g.audiences.keys().cloned())
        .collect();
    let name = name.to_string();
    Ok(store
        .read(move |c| match audiences::find(c, &name)? {
            Some(a) => Ok(Audience::Saved {
                id: a.id,
                members: a.members,
                source: a.source_push_id,
            }),
            None => Err(StoreError::NotFound(format!(
                "audience {name:?} is defined neither in the live scripts nor as a saved audience; script audiences: {}; saved audiences: {}",
                known(scripted),
                known(audiences::names(c, KNOWN_SAVED)?),
            ))),
        })
        .await?)
}

/// How many members the audience has now, and (when recipients may be
/// held) their timezones, for the ETA.
async fn audience_size(
    store: &Store,
    audience: Audience,
    holds: bool,
) -> CommandResult<(u64, Vec<(String, u64)>)> {
    Ok(store
        .read(move |c| match audience {
            Audience::Script(f) => {
                let n = members::count_where(c, &f.sql, &f.params)?;
                let zones = match holds {
                    true => policy::timezones(c, Some((&f.sql, &f.params[..])), None)?,
                    false => Vec::new(),
                };
                Ok((n, zones))
            }
            Audience::Saved { id, members, .. } => {
                let zones = match holds {
                    true => policy::timezones(c, None, Some(id))?,
                    false => Vec::new(),
                };
                Ok((members, zones))
            }
        })
        .await?)
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
    let (p, c, retry_of, report) = super::report::read(store, push).await?;
    Ok(PushShowData {
        push: progress::summary(&p, &c, &dispatcher.live(p.id), retry_of),
        report,
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
        Some(format!("paused by {}", actor.label())),
    )
    .await?;
    dispatcher.control(p.id, Control::Pause);
    show(store, dispatcher, &p.id.to_string()).await
}

/// `push.pick_winner`: the winner of an A/B test, chosen by an admin (a
/// manual test, or an auto test decided early). Decides once: the winner
/// and the release of the members waiting for it are one transaction.
pub async fn pick_winner(
    store: &Store,
    dispatcher: &Dispatcher,
    actor: &Actor,
    a: PushPickWinnerArgs,
) -> CommandResult<PushShowData> {
    let (p, _, _) = load(store, &a.push).await?;
    let Some(plan) = p.ab.as_ref().filter(|plan| plan.test.is_some()) else {
        return Err(CommandError::Conflict(format!(
            "push {:?} has no A/B test, so there is no winner to pick",
            p.name
        )));
    };
    if !plan.variants.contains(&a.variant) {
        return Err(CommandError::Invalid(format!(
            "variant {:?} is not one of push {:?}'s variants: {}",
            a.variant,
            p.name,
            plan.variants.join(", ")
        )));
    }
    if p.status.is_final() {
        return Err(CommandError::Conflict(format!(
            "push {:?} is {}; its winner can no longer be picked",
            p.name, p.status
        )));
    }
    if let Some(w) = &p.ab_winner {
        return Err(CommandError::Conflict(format!(
            "the winner of push {:?} is chosen already: {w} (by {})",
            p.name,
            p.ab_decided_by.as_deref().unwrap_or("-")
        )));
    }
    let (id, variant, by) = (p.id, a.variant.clone(), actor.label());
    let released = store
        .write(move |c| variants::decide(c, id, &variant, &by, now_ms()))
        .await
        .map_err(|e| match e {
            StoreError::Invalid(m) => CommandError::Conflict(m),
            e => e.into(),
        })?;
    tracing::info!(push = id, winner = %a.variant, by = %actor.label(), released, "A/B winner picked");
    dispatcher.nudge(id);
    show(store, dispatcher, &id.to_string()).await
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
