//! The Lua script host: the API scripts use (`audience`, `template`, `route`,
//! `push`, `log`), the sandbox they run in, and versioned generations.
//!
//! A [`Generation`] is one load of the scripts directory: every `*.lua` file
//! (hidden files and `*.d.lua` type stubs skipped) in lexical order, run in `states` fresh sandboxed
//! Lua states, each owned by its own thread, then validated (state 0 renders
//! every template for sample members, routes them, and asks the channels
//! whether the result can be sent). A generation that fails never goes live;
//! the caller keeps serving the previous one. Dropping the last
//! `Arc<Generation>` closes its queue and its threads exit.
//!
//! Batches (`filter`, `prepare`) go to a queue shared by the generation's
//! states; large batches are split so every state (core) works on them.
//!
//! Template placeholders (compiled at load, rendered in Rust): `{{id}}`,
//! `{{channel}}`, `{{platform}}`, `{{channel_user_id}}`, `{{name}}`,
//! `{{locale}}`, `{{timezone}}`, `{{attributes.key}}` (nested with dots) and
//! `{{field|fallback}}`. A missing attribute renders as the empty string (or
//! the fallback); anything else is a load error with file:line.
//! `{{track "https://…"}}` renders a tracked link's marker (see `crate::links`).

mod api;
mod convert;
mod error;
mod generations;
mod host;
mod sandbox;
mod template;
pub mod watch;
mod where_sql;

pub use error::{Location, ScriptError};
pub use generations::{Loaded, Scripts};

use crate::config::Config;
use crate::model::{Member, Millis, Outbound, Platform, Routed, now_ms};
use host::{Job, Reply};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Free-form messages are allowed this long after the member's last message,
/// unless the channel sets `service_window`.
pub const DEFAULT_SERVICE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Below this many members a batch is not split across states.
const MIN_SPLIT: usize = 64;

/// What every call into a script may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLimits {
    pub instruction_limit: u64,
    pub call_timeout: Duration,
    pub memory_limit_bytes: usize,
    /// Lua states (threads) per generation.
    pub states: usize,
}

impl ScriptLimits {
    pub fn from_config(c: &Config) -> Self {
        ScriptLimits {
            instruction_limit: c.scripts.instruction_limit,
            call_timeout: c.scripts.call_timeout,
            memory_limit_bytes: c.scripts.memory_limit_mb.saturating_mul(1024 * 1024),
            states: c.script_states(),
        }
    }
}

/// A configured channel instance as scripts see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub platform: Platform,
    pub service_window: Duration,
}

impl ChannelInfo {
    /// A channel with the default 24 h service window.
    pub fn new(platform: Platform) -> ChannelInfo {
        ChannelInfo {
            platform,
            service_window: DEFAULT_SERVICE_WINDOW,
        }
    }
}

/// Asks a channel whether it can send `outbound` (button limits, lengths, …).
pub type OutboundValidator = Arc<dyn Fn(&str, &Outbound) -> Result<(), String> + Send + Sync>;

/// What templates need of `[links]`: whether tracked links can be sent at
/// all (`public_url`) and whether every URL button is tracked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkEnv {
    pub public_url: Option<String>,
    pub track_buttons: bool,
}

/// What scripts are loaded against: the configured channels, the fallback
/// locale, the channels' message validator and the tracked-link settings.
#[derive(Clone)]
pub struct ScriptEnv {
    pub channels: BTreeMap<String, ChannelInfo>,
    pub default_locale: String,
    pub validate: OutboundValidator,
    pub links: LinkEnv,
}

impl ScriptEnv {
    /// Channels and default locale from config; `validate` from the channel adapters.
    pub fn from_config(c: &Config, validate: OutboundValidator) -> ScriptEnv {
        ScriptEnv {
            channels: c
                .channels
                .iter()
                .map(|(name, ch)| {
                    (
                        name.clone(),
                        ChannelInfo {
                            platform: ch.kind,
                            service_window: ch.service_window.unwrap_or(DEFAULT_SERVICE_WINDOW),
                        },
                    )
                })
                .collect(),
            default_locale: c.scripts.default_locale.clone(),
            validate,
            links: LinkEnv {
                public_url: c.links.public_url.clone(),
                track_buttons: c.links.track_buttons,
            },
        }
    }

    /// A validator that accepts every message (tests, `check` without channels).
    pub fn accept_all() -> OutboundValidator {
        Arc::new(|_, _| Ok(()))
    }
}

impl std::fmt::Debug for ScriptEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptEnv")
            .field("channels", &self.channels)
            .field("default_locale", &self.default_locale)
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

/// A boolean SQL expression over `members m`, for
/// `SELECT … FROM members m WHERE <sql>`, with its `?` parameters in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter {
    pub sql: String,
    pub params: Vec<crate::model::SqlValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudienceDef {
    pub name: String,
    pub description: Option<String>,
    /// `where`, compiled; `"1"` when the audience has none.
    pub filter_sql: SqlFilter,
    /// `where` as written, in Lua syntax (keys in a fixed order); empty
    /// when the audience has none.
    pub where_text: String,
    /// Whether a Lua `filter` refines the SQL result.
    pub has_filter: bool,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDef {
    pub name: String,
    /// The generic locale tables, sorted.
    pub locales: Vec<String>,
    /// Platforms with their own version (`whatsapp = { en = … }`) and its locales, sorted.
    pub overrides: BTreeMap<Platform, Vec<String>>,
    pub has_render: bool,
    /// Its tracked URLs (`{{track}}`, tracked buttons), by link number.
    pub tracked: Vec<String>,
    /// Its A/B variants, sorted (empty: none).
    pub variants: Vec<String>,
    pub location: Location,
}

impl TemplateDef {
    /// The A/B plan of a push of this template with `test` and `holdout`
    /// (None: nothing to plan); a test by clicks needs tracked links.
    pub fn ab_plan(
        &self,
        test: Option<crate::variants::Test>,
        holdout: f64,
    ) -> Result<Option<crate::variants::Plan>, crate::variants::PlanError> {
        crate::variants::plan_for(&self.variants, !self.tracked.is_empty(), test, holdout)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStart {
    Now,
    At(Millis),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchDef {
    pub size: u32,
    pub every: Duration,
}

/// Hours of the day a push may send in (`from` < `to`, or wrapping midnight when `from` > `to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    pub from: chrono::NaiveTime,
    pub to: chrono::NaiveTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PushDef {
    pub name: String,
    pub audience: String,
    pub template: String,
    pub start_at: PushStart,
    pub rate_per_minute: Option<u32>,
    pub batch: Option<BatchDef>,
    pub send_window: Option<SendWindow>,
    /// `policy = "bypass"`: `[policy]` does not apply (transactional pushes).
    pub bypass_policy: bool,
    /// `test = { … }`: the A/B test phase (the template must have variants).
    pub test: Option<crate::variants::Test>,
    /// `holdout`: the share of the audience sent nothing (0 = none).
    pub holdout: f64,
    pub location: Location,
}

/// What a state reports after loading.
pub(crate) struct LoadSummary {
    audiences: BTreeMap<String, AudienceDef>,
    templates: BTreeMap<String, TemplateDef>,
    pushes: Vec<PushDef>,
    has_route: bool,
}

/// One script file as loaded.
pub(crate) struct ScriptFile {
    /// As shown in errors: `<dir name>/<file name>`.
    display: String,
    source: String,
}

/// Read-only inputs every state of a generation shares.
pub(crate) struct Shared {
    limits: ScriptLimits,
    env: ScriptEnv,
    /// Configured instances per platform, for `where.platform`.
    instances: BTreeMap<Platform, Vec<String>>,
    files: Vec<ScriptFile>,
}

/// One loaded, validated set of scripts and the Lua states serving it.
pub struct Generation {
    pub number: i64,
    /// sha256 over (file name, contents) in load order, hex.
    pub hash: String,
    /// File names in load order.
    pub files: Vec<String>,
    pub loaded_at: Millis,
    pub audiences: BTreeMap<String, AudienceDef>,
    pub templates: BTreeMap<String, TemplateDef>,
    pub pushes: Vec<PushDef>,
    pub has_route: bool,
    states: usize,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("number", &self.number)
            .field("hash", &self.hash)
            .field("files", &self.files)
            .field("audiences", &self.audiences.keys().collect::<Vec<_>>())
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .field(
                "pushes",
                &self.pushes.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .field("has_route", &self.has_route)
            .finish_non_exhaustive()
    }
}

/// `*.lua`, except hidden files (editor locks like `.#x.lua`) and `*.d.lua`
/// (LuaLS type stubs such as `pushd.d.lua`, which live next to the scripts).
pub fn is_script_name(name: &str) -> bool {
    name.ends_with(".lua") && !name.ends_with(".d.lua") && !name.starts_with('.')
}

/// Lists `*.lua` in `dir` (lexical order, hidden files skipped) and reads them.
fn read_scripts(dir: &Path) -> Result<(Vec<String>, Vec<ScriptFile>, String), Vec<ScriptError>> {
    let io = |what: String| vec![ScriptError::new(what)];
    let entries = std::fs::read_dir(dir).map_err(|e| {
        io(format!(
            "cannot read the scripts folder {}: {e}",
            dir.display()
        ))
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io(format!("cannot list {}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_script_name(&name) && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    let prefix = dir
        .file_name()
        .map(|d| format!("{}/", d.to_string_lossy()))
        .unwrap_or_default();
    let mut hasher = Sha256::new();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                hasher.update(name.as_bytes());
                hasher.update([0u8]);
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
                match String::from_utf8(bytes) {
                    Ok(source) => files.push(ScriptFile {
                        display: format!("{prefix}{name}"),
                        source,
                    }),
                    Err(e) => errors.push(ScriptError::new(format!(
                        "{prefix}{name}: not UTF-8 text (byte {})",
                        e.utf8_error().valid_up_to()
                    ))),
                }
            }
            Err(e) => errors.push(ScriptError::new(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok((names, files, hex::encode(hasher.finalize())))
}

/// The scripts' hash without loading them (sha256 over file name and contents).
pub fn hash_dir(dir: &Path) -> Result<String, Vec<ScriptError>> {
    read_scripts(dir).map(|(_, _, h)| h)
}

impl Generation {
    /// Loads every `*.lua` in `dir` in lexical order into `limits.states`
    /// fresh sandboxed states (each owned by its own thread), then validates.
    /// Blocking. Returns all problems found, each with file:line.
    pub fn load(
        number: i64,
        dir: &Path,
        limits: &ScriptLimits,
        env: &ScriptEnv,
    ) -> Result<Arc<Generation>, Vec<ScriptError>> {
        let (names, files, hash) = read_scripts(dir)?;
        let mut instances: BTreeMap<Platform, Vec<String>> = BTreeMap::new();
        for (name, ch) in &env.channels {
            instances.entry(ch.platform).or_default().push(name.clone());
        }
        let shared = Arc::new(Shared {
            limits: limits.clone(),
            env: env.clone(),
            instances,
            files,
        });
        let states = limits.states.max(1);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (init_tx, init_rx) = mpsc::channel();
        for i in 0..states {
            let (shared, init_tx, job_rx) = (shared.clone(), init_tx.clone(), job_rx.clone());
            std::thread::Builder::new()
                .name(format!("lua-g{number}-{i}"))
                .stack_size(8 << 20)
                .spawn(move || host::run(i, shared, init_tx, job_rx))
                .map_err(|e| {
                    vec![ScriptError::new(format!(
                        "cannot start a script thread: {e}"
                    ))]
                })?;
        }
        drop(init_tx);
        let mut reports: Vec<Option<Result<LoadSummary, Vec<ScriptError>>>> =
            (0..states).map(|_| None).collect();
        for _ in 0..states {
            match init_rx.recv() {
                Ok((i, r)) => reports[i] = Some(r),
                Err(_) => break,
            }
        }
        let mut summary = None;
        let mut errors: Vec<ScriptError> = Vec::new();
        for (i, r) in reports.into_iter().enumerate() {
            match r {
                Some(Ok(s)) => {
                    if i == 0 {
                        summary = Some(s);
                    }
                }
                Some(Err(es)) => {
                    for e in es {
                        if !errors.contains(&e) {
                            errors.push(e);
                        }
                    }
                }
                None => errors.push(ScriptError::new(format!(
                    "script state {i} stopped while loading (a bug in pushd; see the daemon log)"
                ))),
            }
        }
        match summary {
            Some(s) if errors.is_empty() => Ok(Arc::new(Generation {
                number,
                hash,
                files: names,
                loaded_at: now_ms(),
                audiences: s.audiences,
                templates: s.templates,
                pushes: s.pushes,
                has_route: s.has_route,
                states,
                jobs: job_tx,
            })),
            _ => Err(errors),
        }
    }

    /// Splits a batch so every state gets a share (above a minimum size).
    fn chunks(&self, members: Vec<Member>) -> Vec<Vec<Member>> {
        if self.states < 2 || members.len() < MIN_SPLIT * 2 {
            return vec![members];
        }
        let per = members.len().div_ceil(self.states).max(MIN_SPLIT);
        let mut rest = members;
        let mut out = Vec::new();
        while rest.len() > per {
            let tail = rest.split_off(per);
            out.push(rest);
            rest = tail;
        }
        out.push(rest);
        out
    }

    fn send(&self, job: Job) -> Result<(), ScriptError> {
        self.jobs
            .send(job)
            .map_err(|_| ScriptError::new("the script states of this generation have stopped"))
    }

    fn filter_jobs<F, R>(
        &self,
        audience: &str,
        members: Vec<Member>,
        mut reply: F,
    ) -> Result<Vec<R>, ScriptError>
    where
        F: FnMut() -> (Reply<Result<Vec<bool>, ScriptError>>, R),
    {
        if !self.audiences.contains_key(audience) {
            return Err(ScriptError::new(format!(
                "audience {audience:?} is not defined"
            )));
        }
        let audience: Arc<str> = audience.into();
        let now = now_ms();
        let mut waits = Vec::new();
        for chunk in self.chunks(members) {
            let (r, w) = reply();
            self.send(Job::Filter {
                audience: audience.clone(),
                members: chunk,
                now,
                reply: r,
            })?;
            waits.push(w);
        }
        Ok(waits)
    }

    fn prepare_jobs<F, R>(
        &self,
        push: Option<&str>,
        variant: Option<&str>,
        template: &str,
        members: Vec<Member>,
        now: Millis,
        mut reply: F,
    ) -> Result<Vec<(R, usize)>, ScriptError>
    where
        F: FnMut() -> (Reply<Vec<Result<Routed, ScriptError>>>, R),
    {
        if !self.templates.contains_key(template) {
            return Err(ScriptError::new(format!(
                "template {template:?} is not defined"
            )));
        }
        let template: Arc<str> = template.into();
        let push: Option<Arc<str>> = push.map(Into::into);
        let variant: Option<Arc<str>> = variant.map(Into::into);
        let mut waits = Vec::new();
        for chunk in self.chunks(members) {
            let n = chunk.len();
            let (r, w) = reply();
            self.send(Job::Prepare {
                push: push.clone(),
                variant: variant.clone(),
                template: template.clone(),
                members: chunk,
                now,
                reply: r,
            })?;
            waits.push((w, n));
        }
        Ok(waits)
    }

    /// Runs the audience's `filter` on a batch; `true` = keep. Members should
    /// already be narrowed by `filter_sql`. Without a `filter` all are kept.
    pub async fn filter(
        &self,
        audience: &str,
        members: Vec<Member>,
    ) -> Result<Vec<bool>, ScriptError> {
        if let Some(a) = self.audiences.get(audience)
            && !a.has_filter
        {
            return Ok(vec![true; members.len()]);
        }
        let waits = self.filter_jobs(audience, members, || {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Box::new(move |r| drop(tx.send(r))), rx)
        })?;
        let mut out = Vec::new();
        for w in waits {
            out.extend(w.await.map_err(|_| stopped())??);
        }
        Ok(out)
    }

    /// Blocking form of [`Generation::filter`], for threads outside the async runtime.
    pub fn filter_blocking(
        &self,
        audience: &str,
        members: Vec<Member>,
    ) -> Result<Vec<bool>, ScriptError> {
        if let Some(a) = self.audiences.get(audience)
            && !a.has_filter
        {
            return Ok(vec![true; members.len()]);
        }
        let waits = self.filter_jobs(audience, members, || {
            let (tx, rx) = mpsc::sync_channel(1);
            (Box::new(move |r| drop(tx.send(r))), rx)
        })?;
        let mut out = Vec::new();
        for w in waits {
            out.extend(w.recv().map_err(|_| stopped())??);
        }
        Ok(out)
    }

    /// Renders `template` and routes the result for each member, in order.
    pub async fn prepare(
        &self,
        template: &str,
        members: Vec<Member>,
        now: Millis,
    ) -> Vec<Result<Routed, ScriptError>> {
        self.prepare_for(None, None, template, members, now).await
    }

    /// [`Generation::prepare`] with `ctx.push` set to the push's name and
    /// the members' A/B variant (`ctx.variant`; the body they get).
    pub async fn prepare_for(
        &self,
        push: Option<&str>,
        variant: Option<&str>,
        template: &str,
        members: Vec<Member>,
        now: Millis,
    ) -> Vec<Result<Routed, ScriptError>> {
        let n = members.len();
        let waits = match self.prepare_jobs(push, variant, template, members, now, || {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Box::new(move |r| drop(tx.send(r))), rx)
        }) {
            Ok(w) => w,
            Err(e) => return vec![Err(e); n],
        };
        let mut out = Vec::with_capacity(n);
        for (w, len) in waits {
            match w.await {
                Ok(rs) => out.extend(rs),
                Err(_) => out.extend((0..len).map(|_| Err(stopped()))),
            }
        }
        out
    }

    /// Blocking form of [`Generation::prepare`].
    pub fn prepare_blocking(
        &self,
        template: &str,
        members: Vec<Member>,
        now: Millis,
    ) -> Vec<Result<Routed, ScriptError>> {
        self.prepare_for_blocking(None, None, template, members, now)
    }

    /// Blocking form of [`Generation::prepare_for`].
    pub fn prepare_for_blocking(
        &self,
        push: Option<&str>,
        variant: Option<&str>,
        template: &str,
        members: Vec<Member>,
        now: Millis,
    ) -> Vec<Result<Routed, ScriptError>> {
        let n = members.len();
        let waits = match self.prepare_jobs(push, variant, template, members, now, || {
            let (tx, rx) = mpsc::sync_channel(1);
            (Box::new(move |r| drop(tx.send(r))), rx)
        }) {
            Ok(w) => w,
            Err(e) => return vec![Err(e); n],
        };
        let mut out = Vec::with_capacity(n);
        for (w, len) in waits {
            match w.recv() {
                Ok(rs) => out.extend(rs),
                Err(_) => out.extend((0..len).map(|_| Err(stopped()))),
            }
        }
        out
    }
}

fn stopped() -> ScriptError {
    ScriptError::new("a script state stopped while working on this batch (see the daemon log)")
}
