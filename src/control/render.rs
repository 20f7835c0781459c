//! Human output of the CLI: aligned tables over the typed reply payloads.

use crate::model::fmt_ms;
use crate::protocol::{
    AbSummary, AudienceListData, AudienceShowData, AudienceSummary, AuditData, ChannelStep,
    ChannelTestData, ChannelWebhookData, EventsData, FailuresData, ImportData, PolicyStatus,
    PreviewData, PushCreateData, PushSummary, RecipientsData, ReloadData, ReloadStatus,
    RetryAudienceData, StatusData,
};
use crate::util::{duration, table};
use crate::variants::HOLDOUT;

pub fn status(s: &StatusData) -> String {
    let mut out = table::kv(&[
        ("pushd", format!("{} (pid {})", s.version, s.pid)),
        ("uptime", duration::human_secs(s.uptime_secs)),
        (
            "config",
            format!("{} (loaded {})", s.config_path, s.config_loaded_at),
        ),
        ("database", s.database_path.clone()),
        ("socket", s.socket_path.clone()),
        (
            "webhooks",
            s.http_listen.clone().unwrap_or_else(|| "disabled".into()),
        ),
        ("members", s.members.to_string()),
        ("global rate", format!("{}/min", s.rate_per_minute)),
        ("policy", policy_line(&s.policy)),
    ]);
    if let Some(sc) = &s.scripts {
        out.push_str(&table::kv(&[(
            "scripts",
            format!(
                "generation {} ({}), loaded {}, {} file(s)",
                sc.generation,
                &sc.hash[..sc.hash.len().min(12)],
                sc.loaded_at,
                sc.files.len()
            ),
        )]));
    }
    for r in [&s.last_config_reload, &s.last_script_reload]
        .into_iter()
        .flatten()
    {
        out.push_str(&table::kv(&[("last reload", reload_line(r))]));
        for e in &r.errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    if !s.channels.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .channels
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.kind.clone(),
                    c.rate_per_second
                        .map(|r| format!("{r}/s"))
                        .unwrap_or_else(|| "default".into()),
                ]
            })
            .collect();
        out.push_str(&table::render(&["CHANNEL", "KIND", "RATE"], &rows));
    }
    if !s.pushes.is_empty() {
        out.push('\n');
        out.push_str(&pushes(&s.pushes));
    }
    for a in &s.alerts {
        out.push_str(&format!("\n! {a}"));
    }
    if !s.alerts.is_empty() {
        out.push('\n');
    }
    out
}

/// `[policy]` in one line: "at most 2/day, 5/week per member; quiet hours …".
fn policy_line(p: &PolicyStatus) -> String {
    let caps: Vec<String> = [(p.max_per_day, "day"), (p.max_per_week, "week")]
        .into_iter()
        .filter_map(|(n, per)| n.map(|n| format!("{n}/{per}")))
        .collect();
    let mut parts = Vec::new();
    if !caps.is_empty() {
        parts.push(format!(
            "at most {} per member over all pushes",
            caps.join(", ")
        ));
    }
    if let Some(q) = &p.quiet_hours {
        parts.push(format!("quiet hours {q}"));
    }
    if parts.is_empty() {
        return "none (no frequency caps, no quiet hours)".into();
    }
    format!(
        "{} (members' timezones; default {})",
        parts.join("; "),
        p.default_timezone
    )
}

/// "waiting: the winner is due at …", "winner b (auto)", …
pub fn ab_phase(ab: &AbSummary) -> String {
    match ab.phase.as_str() {
        "test" => "test: sending the test share".into(),
        "waiting" => match &ab.decide_at {
            Some(t) => format!("waiting: the winner is chosen at {t}"),
            None => "waiting: pick the winner with `pushd push pick-winner PUSH VARIANT`".into(),
        },
        "winner" => format!(
            "winner {} (chosen by {}): sending it to the rest",
            ab.winner.as_deref().unwrap_or("-"),
            ab.decided_by.as_deref().unwrap_or("-")
        ),
        _ => "split: every variant goes to its share of the audience".into(),
    }
}

/// "120 held until …; sending resumes at …", or None when nothing is held.
fn held_line(p: &PushSummary) -> Option<String> {
    if p.held == 0 {
        return None;
    }
    let mut s = format!(
        "{} held (quiet hours / send window) until {}",
        p.held,
        p.held_until.as_deref().unwrap_or("-")
    );
    if let Some(r) = &p.resumes_at {
        s.push_str(&format!("; sending resumes at {r}"));
    }
    Some(s)
}

pub fn pushes(list: &[PushSummary]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.name.clone(),
                match &p.status_reason {
                    Some(r) if p.status == "paused" => format!("paused ({r})"),
                    _ => p.status.clone(),
                },
                p.recipients.to_string(),
                p.sent.to_string(),
                p.failed.to_string(),
                p.remaining.to_string(),
                format!("{:.0}/min", p.current_rate),
                p.eta.clone().unwrap_or_else(|| "-".into()),
                p.start_at.clone(),
            ]
        })
        .collect();
    table::render(
        &[
            ">ID",
            "PUSH",
            "STATUS",
            ">RECIPIENTS",
            ">SENT",
            ">FAILED",
            ">REMAINING",
            ">RATE",
            "ETA",
            "START AT",
        ],
        &rows,
    ) + &list
        .iter()
        .flat_map(|p| {
            let held = held_line(p).map(|h| format!("  {}: {h}\n", p.name));
            let ab =
                p.ab.as_ref()
                    .map(|ab| format!("  {}: a/b {}\n", p.name, ab_phase(ab)));
            held.into_iter().chain(ab)
        })
        .collect::<String>()
}

fn reload_line(r: &ReloadStatus) -> String {
    let mut s = format!(
        "{} {} at {}",
        r.what,
        if r.ok { "ok" } else { "FAILED" },
        r.at
    );
    if !r.restart_required.is_empty() {
        s.push_str(&format!(
            " (restart needed for: {})",
            r.restart_required.join(", ")
        ));
    }
    s
}

pub fn reload(d: &ReloadData) -> String {
    let mut out = String::new();
    for r in [&d.config, &d.scripts] {
        out.push_str(&reload_line(r));
        out.push('\n');
        for e in &r.errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out
}

pub fn backup(b: &crate::protocol::BackupData) -> String {
    format!(
        "wrote {} ({:.1} MB, {} pages, schema version {}) in {} ms\nrestore: stop pushd, delete the database's -wal and -shm files, copy this file over the database, start pushd\n",
        b.path,
        b.bytes as f64 / 1_000_000.0,
        b.pages,
        b.schema_version,
        b.elapsed_ms
    )
}

pub fn import(r: &ImportData) -> String {
    let mut out = table::kv(&[
        ("inserted", r.inserted.to_string()),
        ("updated", r.updated.to_string()),
        ("rejected", r.rejected.to_string()),
    ]);
    if r.aborted {
        out.push_str("nothing imported: fix the rows below or pass --skip-invalid\n");
    }
    for e in &r.errors {
        out.push_str(&format!("  line {}: {}\n", e.line, e.reason));
    }
    out
}

pub fn audit(d: &AuditData) -> String {
    let rows: Vec<Vec<String>> = d
        .entries
        .iter()
        .map(|e| {
            vec![
                fmt_ms(e.at),
                // The panel names its session and role; a socket peer its uid.
                match (&e.actor, e.uid) {
                    (Some(actor), _) => actor.clone(),
                    (None, Some(u)) => u.to_string(),
                    (None, None) => "daemon".into(),
                },
                e.action.clone(),
                e.target.clone().unwrap_or_default(),
                if e.ok { "ok".into() } else { "FAILED".into() },
                e.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table::render(
        &["AT", "WHO", "ACTION", "TARGET", "RESULT", "DETAIL"],
        &rows,
    )
}

pub fn push_detail(p: &PushSummary) -> String {
    let mut pairs = vec![
        ("push", format!("{} (#{})", p.name, p.id)),
        (
            "status",
            match &p.status_reason {
                Some(r) => format!("{} ({r})", p.status),
                None => p.status.clone(),
            },
        ),
        ("audience", p.audience.clone()),
        ("template", p.template.clone()),
        ("start at", p.start_at.clone()),
        (
            "started at",
            p.started_at.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "finish at",
            p.finished_at.clone().unwrap_or_else(|| "-".into()),
        ),
        ("recipients", p.recipients.to_string()),
        ("sent", p.sent.to_string()),
        ("failed", p.failed.to_string()),
        ("skipped", p.skipped.to_string()),
        ("cancelled", p.cancelled.to_string()),
        ("remaining", p.remaining.to_string()),
        ("current rate", format!("{:.0}/min", p.current_rate)),
        ("eta", p.eta.clone().unwrap_or_else(|| "-".into())),
    ];
    if let Some(h) = held_line(p) {
        pairs.push(("held", h));
    }
    if let Some(ab) = &p.ab {
        pairs.push(("a/b", ab.plan.clone()));
        pairs.push(("a/b phase", ab_phase(ab)));
    }
    if p.policy.is_some() {
        pairs.push(("policy", "bypass ([policy] does not apply)".into()));
    }
    if let Some(r) = p.rate_limit {
        pairs.push(("rate limit", format!("{r}/min")));
    }
    if let Some(g) = p.generation {
        pairs.push(("script generation", g.to_string()));
    }
    if let Some(src) = &p.retry_of {
        pairs.push(("retry of", src.clone()));
    }
    table::kv(&pairs)
}

pub fn push_created(d: &PushCreateData) -> String {
    let mut out = format!(
        "created push {} (#{}), starts {}\n",
        d.push.name, d.push.id, d.push.start_at
    );
    if let Some(eta) = &d.push.eta {
        out.push_str(&format!("estimated duration: {eta}\n"));
    }
    for w in &d.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// A count, marked `≈ … (estimated)` when it was extrapolated.
fn approx(n: u64, estimated: bool) -> String {
    match estimated {
        true => format!("≈{n} (estimated: the filter ran on the first members only)"),
        false => n.to_string(),
    }
}

pub fn preview(d: &PreviewData) -> String {
    let mut out = table::kv(&[
        ("audience", d.audience.clone()),
        ("size", approx(d.size, d.estimated)),
        ("subscribed", approx(d.subscribed, d.estimated)),
        ("template", d.template.clone().unwrap_or_else(|| "-".into())),
    ]);
    out.push_str("nothing is sent by a preview\n\n");
    for s in &d.samples {
        out.push_str(&format!(
            "#{} {} ({}:{}, {})\n",
            s.member_id, s.name, s.channel, s.channel_user_id, s.locale
        ));
        match (&s.routed, &s.error) {
            (Some(crate::model::Routed::Send { channel, outbound }), _) => {
                out.push_str(&format!("  → {channel}: "));
                match outbound {
                    crate::model::Outbound::Message { message, tag } => {
                        out.push_str(&message.text);
                        for b in message.buttons.iter().chain(&message.quick_replies) {
                            match &b.url {
                                Some(url) => out.push_str(&format!(" [{} → {url}]", b.title)),
                                None => out.push_str(&format!(" [{}]", b.title)),
                            }
                        }
                        if let Some(t) = tag {
                            out.push_str(&format!(" (tag {t})"));
                        }
                        if let Some(image) = &message.image_url {
                            out.push_str(&format!("\n    image: {image}"));
                        }
                    }
                    crate::model::Outbound::Template {
                        name,
                        language,
                        params,
                    } => out.push_str(&format!("template {name} ({language}) params {params:?}")),
                }
                out.push('\n');
            }
            (Some(crate::model::Routed::Skip { reason }), _) => {
                out.push_str(&format!("  skipped: {reason}\n"))
            }
            (None, Some(e)) => out.push_str(&format!("  error: {e}\n")),
            (None, None) => {}
        }
    }
    out
}

pub fn failures(d: &FailuresData) -> String {
    let mut out = format!("{}: {} failed\n\n", d.push, d.sent_fail);
    let rows: Vec<Vec<String>> = d
        .groups
        .iter()
        .map(|g| {
            vec![
                g.class.clone(),
                g.code.clone(),
                g.count.to_string(),
                g.message.clone(),
                g.samples
                    .iter()
                    .map(|s| format!("{}:{}", s.channel, s.channel_user_id))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["CLASS", "CODE", ">COUNT", "MESSAGE", "SAMPLE RECIPIENTS"],
        &rows,
    ));
    out
}

pub fn retry_audience(d: &RetryAudienceData) -> String {
    let which = match (&d.audience.outcome, &d.audience.filter) {
        (Some(o), _) if o == "sent_fail" => "the failed recipients".to_string(),
        (Some(o), None) => format!("the {o} recipients"),
        (Some(o), Some(f)) => format!("the {o} recipients ({f})"),
        (None, Some(f)) => format!("the recipients ({f})"),
        (None, None) => "the recipients".to_string(),
    };
    format!(
        "created audience {} with {} member(s): {which} of {}\npush it with: pushd push create --audience {} --template TEMPLATE\n",
        d.audience.name, d.audience.members, d.source_push, d.audience.name
    )
}

/// One page of recipients: who, what happened, when; then how to go on.
pub fn recipients(d: &RecipientsData) -> String {
    let when = |t: &Option<String>| t.clone().unwrap_or_default();
    // A/B pushes: which variant each got ("holdout" for the control group).
    let ab = d
        .recipients
        .iter()
        .any(|r| r.variant.is_some() || r.skip_reason.as_deref() == Some(HOLDOUT));
    let rows: Vec<Vec<String>> = d
        .recipients
        .iter()
        .map(|r| {
            let detail = match (&r.error, &r.timeline.interaction, &r.skip_reason) {
                (Some(e), _, _) => format!("{} {}: {}", e.class, e.code, e.message),
                (None, Some(i), _) => i.clone(),
                (None, None, Some(s)) => s.clone(),
                _ => String::new(),
            };
            let mut row = vec![
                r.delivery_id.to_string(),
                format!("{}:{}", r.channel, r.channel_user_id),
                r.name.clone(),
                r.outcome.clone().unwrap_or_else(|| r.state.clone()),
                when(&r.timeline.sent),
                when(&r.timeline.read),
                when(&r.timeline.interacted),
                detail.chars().take(80).collect(),
            ];
            if ab {
                let v = match (&r.variant, r.skip_reason.as_deref()) {
                    (Some(v), _) => v.clone(),
                    (None, Some(HOLDOUT)) => HOLDOUT.to_string(),
                    _ => "-".to_string(),
                };
                row.insert(4, v);
            }
            row
        })
        .collect();
    let mut headers = vec![
        ">DELIVERY",
        "RECIPIENT",
        "NAME",
        "OUTCOME",
        "SENT",
        "READ",
        "INTERACTED",
        "DETAIL",
    ];
    if ab {
        headers.insert(4, "VARIANT");
    }
    let mut out = match d.total {
        Some(n) => format!("{}: {n} recipient(s) match\n\n", d.push),
        None => format!("{}: recipients\n\n", d.push),
    };
    out.push_str(&table::render(&headers, &rows));
    if let Some(next) = &d.next {
        out.push_str(&format!("\nmore: --after {next}\n"));
    }
    out
}

pub fn events(d: &EventsData) -> String {
    let rows: Vec<Vec<String>> = d
        .events
        .iter()
        .map(|e| {
            vec![
                e.at.clone(),
                e.direction.clone(),
                e.channel.clone(),
                e.kind.clone(),
                e.member_id.map(|m| m.to_string()).unwrap_or_default(),
                e.push_id.map(|m| m.to_string()).unwrap_or_default(),
                e.detail.chars().take(100).collect(),
            ]
        })
        .collect();
    table::render(
        &["AT", "DIR", "CHANNEL", "KIND", "MEMBER", "PUSH", "DETAIL"],
        &rows,
    )
}

/// One step of a channel command: the call, then the answer or the error
/// with what to do, each under a label.
fn channel_step(out: &mut String, label: &str, s: &ChannelStep) {
    let pad = " ".repeat(label.len() + 2);
    out.push_str(&format!("{label}  {}\n", s.call));
    match (&s.answer, &s.error) {
        (Some(a), _) if s.ok => out.push_str(&format!("{pad}ok: {a}\n")),
        (_, Some(e)) => {
            out.push_str(&format!("{pad}FAILED: {} {}\n", e.class, e.code));
            out.push_str(&format!("{pad}{}\n", e.message));
            out.push_str(&format!("{pad}what to do: {}\n", e.advice));
        }
        _ => out.push_str(&format!("{pad}ok\n")),
    }
    for n in &s.notes {
        out.push_str(&format!("{pad}note: {n}\n"));
    }
}

/// `pushd channel test`: the credential check, then the test message.
pub fn channel_test(d: &ChannelTestData) -> String {
    let mut out = format!("channel  {} ({})\n", d.channel, d.kind);
    channel_step(&mut out, "check  ", &d.check);
    if let Some(s) = &d.send {
        channel_step(&mut out, "message", s);
    }
    out
}

/// `pushd channel webhook`: the URL, what to paste and subscribe to, the
/// steps in the platform's console, and the platform's answer (Telegram).
pub fn channel_webhook(d: &ChannelWebhookData) -> String {
    let mut out = format!("channel  {} ({})\n", d.channel, d.kind);
    if let Some(url) = &d.url {
        out.push_str(&format!("webhook  {url}  (base from {})\n", d.base_from));
    }
    for w in &d.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if let Some(setup) = &d.setup {
        if !setup.fields.is_empty() {
            out.push_str("\nEnter in the platform's console:\n");
            let rows: Vec<(&str, String)> = setup
                .fields
                .iter()
                .map(|f| (f.label.as_str(), f.value.clone()))
                .collect();
            for line in table::kv(&rows).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        if !setup.events.is_empty() {
            out.push_str(&format!("Subscribe to: {}\n", setup.events.join(", ")));
        }
        out.push_str("\nSteps:\n");
        for (i, step) in setup.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {step}\n", i + 1));
        }
    }
    if let Some(r) = &d.registration {
        out.push('\n');
        channel_step(&mut out, &d.kind, r);
    }
    out
}
/// What an audience is, in a few words: its `where` (and filter), or where
/// a saved one came from.
fn audience_origin(a: &AudienceSummary) -> String {
    match &a.lineage {
        Some(l) => {
            let mut from = format!(
                "{} of {}",
                l.outcome.as_deref().unwrap_or("recipients"),
                l.source_push.as_deref().unwrap_or("a deleted push")
            );
            if let Some(f) = &l.filter {
                from.push_str(&format!(" ({f})"));
            }
            if let Some(o) = &l.only {
                from.push_str(&format!(" (only {o})"));
            }
            from
        }
        None => {
            let mut w = format!("where {}", a.where_text.as_deref().unwrap_or("{}"));
            if a.has_filter {
                w.push_str(" + Lua filter");
            }
            w
        }
    }
}

pub fn audiences(d: &AudienceListData) -> String {
    let rows: Vec<Vec<String>> = d
        .audiences
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.kind.clone(),
                match (a.size, a.matches_where) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(n)) => format!("≤{n}"),
                    (None, None) => "-".into(),
                },
                a.defined_at
                    .clone()
                    .or_else(|| a.lineage.as_ref().map(|l| l.created_at.clone()))
                    .unwrap_or_default(),
                audience_origin(a),
            ]
        })
        .collect();
    let mut out = table::render(&["NAME", "KIND", ">SIZE", "DEFINED", "WHAT"], &rows);
    if let Some(next) = &d.next {
        out.push_str(&format!("more: pushd audience list --after {next:?}\n"));
    }
    out
}

pub fn audience(d: &AudienceShowData) -> String {
    let a = &d.audience;
    let mut pairs = vec![
        ("audience", format!("{} ({})", a.name, a.kind)),
        ("what", audience_origin(a)),
        ("size", approx(d.size, d.estimated)),
        ("subscribed", approx(d.subscribed, d.estimated)),
    ];
    if let Some(desc) = &a.description {
        pairs.push(("description", desc.clone()));
    }
    if let Some(at) = &a.defined_at {
        pairs.push(("defined at", at.clone()));
    }
    if let Some(l) = &a.lineage {
        pairs.push(("created at", l.created_at.clone()));
    }
    if !a.pushes.is_empty() {
        pairs.push(("pushes", a.pushes.join(", ")));
    }
    let mut out = table::kv(&pairs);
    let rows: Vec<Vec<String>> = d
        .sample
        .iter()
        .map(|m| {
            vec![
                m.member_id.to_string(),
                m.name.clone(),
                format!("{}:{}", m.channel, m.channel_user_id),
                m.locale.clone(),
                m.tags.join(";"),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table::render(
        &[">ID", "NAME", "CHANNEL:USER", "LOCALE", "TAGS"],
        &rows,
    ));
    out
}
