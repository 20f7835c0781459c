//! One Lua state and the thread that owns it: loads the scripts, (state 0)
//! validates them (`validate.rs`), then serves filter/prepare batches from
//! the generation's shared queue until the generation is dropped.
//!
//! A member's message is chosen here: the template's `render` (with
//! `ctx.platform` and `ctx.template` set), else its platform's own locale
//! tables (`whatsapp = { en = … }`) and the generic ones, by locale.

use super::api::{self, Defs, TemplateSlot};
use super::convert::{self, Keys};
use super::error::{Location, Made, ScriptError};
use super::sandbox::{self, Budget, TripKind};
use super::template::choose_message;
use super::{LoadSummary, Shared};
use crate::model::{Member, Message, Millis, Outbound, Platform, Routed, now_ms};
use mlua::chunk::ChunkMode;
use mlua::{FromLuaMulti, Function, IntoLuaMulti, Lua, Table, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

mod validate;

pub(crate) type Reply<T> = Box<dyn FnOnce(T) + Send>;

/// A batch for a state thread.
pub(crate) enum Job {
    Filter {
        audience: Arc<str>,
        members: Vec<Member>,
        now: Millis,
        reply: Reply<Result<Vec<bool>, ScriptError>>,
    },
    Prepare {
        push: Option<Arc<str>>,
        /// The A/B variant the members were assigned (`ctx.variant`).
        variant: Option<Arc<str>>,
        template: Arc<str>,
        members: Vec<Member>,
        now: Millis,
        reply: Reply<Vec<Result<Routed, ScriptError>>>,
    },
}

/// After this many limit trips in one batch the rest of the batch fails at
/// once with the same error, so a looping router costs seconds, not hours.
const TRIPS_PER_BATCH: usize = 2;

/// The thread body. Reports its load result on `init`, then serves `jobs`.
pub(crate) fn run(
    index: usize,
    shared: Arc<Shared>,
    init: Sender<(usize, Result<LoadSummary, Vec<ScriptError>>)>,
    jobs: Arc<Mutex<Receiver<Job>>>,
) {
    let mut host = match Host::new(shared) {
        Ok(h) => h,
        Err(e) => {
            let _ = init.send((index, Err(vec![e])));
            return;
        }
    };
    let mut errors = host.load();
    if index == 0 && errors.is_empty() {
        errors = host.validate();
    }
    let ok = errors.is_empty();
    let report = if ok { Ok(host.summary()) } else { Err(errors) };
    if init.send((index, report)).is_err() || !ok {
        return;
    }
    drop(init);
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { break };
        // A panic inside one batch drops its reply (the caller gets an error)
        // but must not take the state down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.handle(job)));
    }
}

/// The Lua side of a state: the VM, its limits, and reusable values.
struct Runtime {
    lua: Lua,
    budget: Rc<Budget>,
    ctx: Table,
    /// `ctx.in_service_window` and `ctx.local_time`, put back every batch in
    /// case a script replaced them.
    ctx_fns: [(&'static str, Function); 2],
    ctx_now: Rc<Cell<i64>>,
    /// What `ctx.platform` holds now (`None`: not set since the batch began),
    /// so it is written only when the member's platform changes.
    ctx_platform: Option<Option<Platform>>,
    /// The A/B variant of this batch's members (`ctx.variant`).
    variant: Option<Arc<str>>,
    shared: Arc<Shared>,
}

struct Host {
    rt: Runtime,
    defs: Defs,
    defs_cell: Rc<RefCell<Defs>>,
}

fn setup_error(e: mlua::Error) -> ScriptError {
    ScriptError::new(format!("cannot create a Lua state: {e}"))
}

impl Host {
    fn new(shared: Arc<Shared>) -> Result<Host, ScriptError> {
        let l = &shared.limits;
        let budget = Rc::new(Budget::new(
            l.instruction_limit,
            l.call_timeout,
            l.memory_limit_bytes,
        ));
        let lua = sandbox::new_state(&budget).map_err(setup_error)?;
        let keys = Keys::new(&lua).map_err(setup_error)?;
        let defs_cell = Rc::new(RefCell::new(Defs {
            loading: true,
            ..Defs::default()
        }));
        api::install(&lua, defs_cell.clone(), shared.clone()).map_err(setup_error)?;
        let ctx_now = Rc::new(Cell::new(now_ms() / 1000));
        let ctx_fns = ctx_functions(&lua, &keys, &shared, ctx_now.clone()).map_err(setup_error)?;
        let ctx = lua.create_table().map_err(setup_error)?;
        Ok(Host {
            rt: Runtime {
                lua,
                budget,
                ctx,
                ctx_fns,
                ctx_now,
                ctx_platform: None,
                variant: None,
                shared,
            },
            defs: Defs::default(),
            defs_cell,
        })
    }

    /// Runs every file; returns all problems (syntax, runtime, definitions, references).
    fn load(&mut self) -> Vec<ScriptError> {
        let shared = self.rt.shared.clone();
        for file in &shared.files {
            self.rt.budget.begin();
            let lua = &self.rt.lua;
            let r = sandbox::limited(lua, &self.rt.budget, || {
                lua.load(file.source.as_str())
                    .set_name(format!("@{}", file.display))
                    .set_mode(ChunkMode::Text)
                    .exec()
            });
            if let Err(e) = r {
                let whole_file = Location {
                    file: file.display.clone(),
                    line: 0,
                };
                let err = self.rt.error_of(&e, &whole_file);
                self.defs_cell.borrow_mut().errors.push(err);
            }
        }
        let mut defs = std::mem::take(&mut *self.defs_cell.borrow_mut());
        defs.loading = false;
        defs.check_pending();
        for p in &defs.pushes {
            if !defs.audiences.contains_key(&p.audience) {
                let msg = format!(
                    "push {:?}: audience {:?} is not defined (defined: {})",
                    p.name,
                    p.audience,
                    names(defs.audiences.keys())
                );
                defs.errors.push(ScriptError::at(p.location.clone(), msg));
            }
            if !defs.templates.contains_key(&p.template) {
                let msg = format!(
                    "push {:?}: template {:?} is not defined (defined: {})",
                    p.name,
                    p.template,
                    names(defs.templates.keys())
                );
                defs.errors.push(ScriptError::at(p.location.clone(), msg));
            } else if p.test.is_some()
                && defs
                    .templates
                    .get(&p.template)
                    .is_some_and(|t| t.variants.is_empty())
            {
                let msg = format!(
                    "push {:?}: test needs variants, but template {:?} has none; add variants = {{ a = {{ en = … }}, b = {{ en = … }} }} to the template, or leave test out",
                    p.name, p.template
                );
                defs.errors.push(ScriptError::at(p.location.clone(), msg));
            } else if let Some(t) = defs.templates.get(&p.template)
                && let Err(e) = t.def.ab_plan(p.test, p.holdout)
            {
                let msg = format!("push {:?}: template {:?}: {e}", p.name, p.template);
                defs.errors.push(ScriptError::at(p.location.clone(), msg));
            }
        }
        let errors = std::mem::take(&mut defs.errors);
        self.defs = defs;
        errors
    }

    fn summary(&self) -> LoadSummary {
        LoadSummary {
            audiences: self
                .defs
                .audiences
                .iter()
                .map(|(k, v)| (k.clone(), v.def.clone()))
                .collect(),
            templates: self
                .defs
                .templates
                .iter()
                .map(|(k, v)| (k.clone(), v.def.clone()))
                .collect(),
            pushes: self.defs.pushes.clone(),
            has_route: self.defs.route.is_some(),
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Filter {
                audience,
                members,
                now,
                reply,
            } => reply(self.filter(&audience, &members, now)),
            Job::Prepare {
                push,
                variant,
                template,
                members,
                now,
                reply,
            } => reply(self.prepare(push.as_deref(), variant, &template, &members, now)),
        }
    }

    fn filter(
        &mut self,
        audience: &str,
        members: &[Member],
        now: Millis,
    ) -> Result<Vec<bool>, ScriptError> {
        let Host { rt, defs, .. } = self;
        let slot = defs
            .audiences
            .get(audience)
            .ok_or_else(|| ScriptError::new(format!("audience {audience:?} is not defined")))?;
        let Some((f, at)) = &slot.filter else {
            return Ok(vec![true; members.len()]);
        };
        rt.begin_batch(now, None, None);
        let what = || format!("filter of audience {audience:?}");
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let t = rt
                .member_table(m, platform_of(&rt.shared, &m.channel))
                .map_err(|e| rt.error_of(&e, at).in_function(what()))?;
            let keep: Value = rt.call(f, (t, &rt.ctx), at, &what)?;
            out.push(!matches!(keep, Value::Nil | Value::Boolean(false)));
        }
        Ok(out)
    }

    fn prepare(
        &mut self,
        push: Option<&str>,
        variant: Option<Arc<str>>,
        template: &str,
        members: &[Member],
        now: Millis,
    ) -> Vec<Result<Routed, ScriptError>> {
        let Host { rt, defs, .. } = self;
        let Some(tpl) = defs.templates.get(template) else {
            let e = ScriptError::new(format!("template {template:?} is not defined"));
            return members.iter().map(|_| Err(e.clone())).collect();
        };
        rt.begin_batch(now, push, Some(template));
        rt.set_variant(variant);
        let mut trips = 0;
        let mut last_trip: Option<ScriptError> = None;
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            if trips >= TRIPS_PER_BATCH
                && let Some(e) = &last_trip
            {
                out.push(Err(e.clone()));
                continue;
            }
            let r = rt.prepare_one(defs, tpl, m);
            if let Err(e) = &r
                && rt.budget.last_was_trip()
            {
                trips += 1;
                last_trip = Some(e.clone());
            }
            out.push(r);
        }
        out
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The platform of a configured channel (`None` for a channel not
/// configured, which `m.platform` shows as "").
fn platform_of(shared: &Shared, channel: &str) -> Option<Platform> {
    shared.env.channels.get(channel).map(|c| c.platform)
}

/// A platform as scripts see it (`m.platform`, `ctx.platform`, `{{platform}}`).
fn platform_name(platform: Option<Platform>) -> &'static str {
    platform.map(Platform::as_str).unwrap_or("")
}

impl Runtime {
    /// Resets `ctx` for a batch: its time, push and template (`None` when
    /// filtering), and its functions in case a script replaced them.
    fn begin_batch(&mut self, now: Millis, push: Option<&str>, template: Option<&str>) {
        self.ctx_now.set(now.div_euclid(1000));
        let _ = self.ctx.raw_set("now", now.div_euclid(1000));
        let _ = self.ctx.raw_set("push", push);
        let _ = self.ctx.raw_set("template", template);
        let _ = self.ctx.raw_set("platform", Value::Nil);
        self.ctx_platform = None;
        let _ = self.ctx.raw_set("variant", Value::Nil);
        self.variant = None;
        for (k, f) in &self.ctx_fns {
            let _ = self.ctx.raw_set(*k, f);
        }
    }

    /// The A/B variant of the batch's members: the body their messages
    /// come from and `ctx.variant` for `render`.
    fn set_variant(&mut self, variant: Option<Arc<str>>) {
        let _ = self.ctx.raw_set("variant", variant.as_deref());
        self.variant = variant;
    }

    /// `ctx.platform` for the member about to be rendered and routed;
    /// written only when it changes, as members of a batch mostly share one.
    fn set_ctx_platform(&mut self, platform: Option<Platform>) {
        if self.ctx_platform != Some(platform) {
            let _ = self.ctx.raw_set("platform", platform_name(platform));
            self.ctx_platform = Some(platform);
        }
    }

    fn member_table(&self, m: &Member, platform: Option<Platform>) -> mlua::Result<Table> {
        convert::member_table(&self.lua, m, platform_name(platform))
    }

    /// Calls a script function under a fresh budget.
    fn call<R: FromLuaMulti>(
        &self,
        f: &Function,
        args: impl IntoLuaMulti,
        at: &Location,
        what: &dyn Fn() -> String,
    ) -> Result<R, ScriptError> {
        self.guarded(at, what, || f.call::<R>(args))
    }

    /// Runs `invoke` (one call into script code) under a fresh budget.
    fn guarded<R>(
        &self,
        at: &Location,
        what: &dyn Fn() -> String,
        invoke: impl FnOnce() -> mlua::Result<R>,
    ) -> Result<R, ScriptError> {
        self.budget.begin();
        let r = sandbox::limited(&self.lua, &self.budget, invoke);
        if let Some(trip) = self.budget.tripped() {
            return Err(self
                .trip_error(trip.kind, trip.location, at)
                .in_function(what()));
        }
        r.map_err(|e| self.error_of(&e, at).in_function(what()))
    }

    fn trip_error(&self, kind: TripKind, location: Option<Location>, at: &Location) -> ScriptError {
        self.budget.note_trip();
        if kind == TripKind::Memory {
            // Give the next call its headroom back now rather than at the next GC cycle.
            let _ = self.lua.gc_collect();
        }
        ScriptError {
            location: location.or_else(|| Some(at.clone())),
            function: None,
            message: self.budget.describe(kind),
        }
    }

    /// A Lua error → `ScriptError`, reporting limit trips as such.
    fn error_of(&self, e: &mlua::Error, at: &Location) -> ScriptError {
        if let Some(trip) = self.budget.tripped() {
            return self.trip_error(trip.kind, trip.location, at);
        }
        if is_memory(e) {
            self.budget.trip_memory();
            return self.trip_error(TripKind::Memory, None, at);
        }
        ScriptError::from_lua(e, Some(at))
    }

    /// The member's message for `platform` (`ctx.platform` must be set):
    /// what `render` returns, else the table [`choose_message`] picks.
    fn render<'t>(
        &mut self,
        tpl: &'t TemplateSlot,
        m: &Member,
        platform: Option<Platform>,
        mtable: &mut Option<Table>,
    ) -> Result<(Message, Made<'t>), ScriptError> {
        if let Some((f, at)) = &tpl.render {
            let what = || format!("render of template {:?}", tpl.def.name);
            let t = match mtable {
                Some(t) => t.clone(),
                None => {
                    let t = self
                        .member_table(m, platform)
                        .map_err(|e| self.error_of(&e, at).in_function(what()))?;
                    *mtable = Some(t.clone());
                    t
                }
            };
            let v: Value = self.call(f, (t, self.ctx.clone()), at, &what)?;
            if !v.is_nil() {
                return convert::message_of(&v)
                    .map(|message| (message, Made::Render(at)))
                    .map_err(|msg| ScriptError::at(at.clone(), msg).in_function(what()));
            }
        }
        let body = tpl.body(self.variant.as_deref());
        let chosen = choose_message(
            body.overrides_for(platform),
            &body.locales,
            &m.locale,
            &self.shared.env.default_locale,
        )
        .ok_or_else(|| no_table(tpl, platform))?;
        let made = Made::Table {
            locale: chosen.locale,
            platform: platform.filter(|_| chosen.from_override),
        };
        Ok((chosen.message.render(m, platform_name(platform)), made))
    }

    fn route_one(
        &mut self,
        route: &Function,
        at: &Location,
        m: &Member,
        platform: Option<Platform>,
        message: Message,
        mtable: Option<Table>,
    ) -> Result<Routed, ScriptError> {
        let what = || "route".to_string();
        let v: Value = match mtable {
            // The usual case (no Lua render made `m` already): `m` and `msg`
            // are built and passed in the call's own protected call.
            None => {
                let platform = platform_name(platform);
                self.guarded(at, &what, || {
                    convert::route_call(&self.lua, route, &self.ctx, m, platform, &message)
                })?
            }
            Some(t) => {
                let msg = convert::message_table(&self.lua, &message)
                    .map_err(|e| self.error_of(&e, at).in_function(what()))?;
                self.call(route, (t, msg, &self.ctx), at, &what)?
            }
        };
        convert::routed_of(&v, message, m)
            .map_err(|e| ScriptError::at(at.clone(), e).in_function(what()))
    }

    fn prepare_one(
        &mut self,
        defs: &Defs,
        tpl: &TemplateSlot,
        m: &Member,
    ) -> Result<Routed, ScriptError> {
        self.prepare_traced(defs, tpl, m).map(|(routed, _)| routed)
    }

    /// [`Runtime::prepare_one`], also telling where the message came from.
    fn prepare_traced<'t>(
        &mut self,
        defs: &Defs,
        tpl: &'t TemplateSlot,
        m: &Member,
    ) -> Result<(Routed, Made<'t>), ScriptError> {
        self.budget.clear_last_trip();
        let platform = platform_of(&self.shared, &m.channel);
        self.set_ctx_platform(platform);
        let mut mtable = None;
        let (message, made) = self.render(tpl, m, platform, &mut mtable)?;
        let routed = match &defs.route {
            None => Routed::Send {
                channel: m.channel.clone(),
                outbound: Outbound::Message { message, tag: None },
            },
            Some((route, at)) => self.route_one(route, at, m, platform, message, mtable)?,
        };
        Ok((routed, made))
    }
}

/// A member whose platform has no table of `tpl` to use.
fn no_table(tpl: &TemplateSlot, platform: Option<Platform>) -> ScriptError {
    let name = &tpl.def.name;
    let message = match (platform, tpl.render.is_some()) {
        (Some(p), true) => format!(
            "template {name:?}: render returned nil for a {p} member and the template has no table to fall back to; return a message, or add `{p} = {{ en = {{ text = … }} }}` or a generic `en = {{ text = … }}`"
        ),
        (Some(p), false) => format!(
            "template {name:?} has no generic locale table and no {p} version; add `{p} = {{ en = {{ text = … }} }}` or a generic `en = {{ text = … }}`"
        ),
        (None, true) => format!(
            "template {name:?}: render returned nil and the template has no generic locale table to fall back to"
        ),
        (None, false) => format!(
            "template {name:?} has no generic locale table for members of a channel not configured"
        ),
    };
    ScriptError::at(tpl.def.location.clone(), message)
}

fn is_memory(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            is_memory(cause)
        }
        _ => false,
    }
}

/// The functions of `ctx` (besides `now` and `push`): `in_service_window(m)`, `local_time(m)`.
fn ctx_functions(
    lua: &Lua,
    keys: &Keys,
    shared: &Arc<Shared>,
    now: Rc<Cell<i64>>,
) -> mlua::Result<[(&'static str, Function); 2]> {
    let windows: HashMap<String, i64> = shared
        .env
        .channels
        .iter()
        .map(|(n, c)| (n.clone(), c.service_window.as_secs() as i64))
        .collect();
    let default_window = super::DEFAULT_SERVICE_WINDOW.as_secs() as i64;
    let (k_last, k_channel, k_tz) = (
        keys.last_interaction_at.clone(),
        keys.channel.clone(),
        keys.timezone.clone(),
    );
    let n = now.clone();
    let in_service_window = lua.create_function(move |_, m: Table| {
        let Some(last) = m.raw_get::<Option<i64>>(&k_last)? else {
            return Ok(false);
        };
        let ch: Option<mlua::LuaString> = m.raw_get(&k_channel)?;
        let window = ch
            .and_then(|c| c.to_str().ok().and_then(|c| windows.get(&*c).copied()))
            .unwrap_or(default_window);
        Ok(n.get() - last <= window)
    })?;
    let zones: RefCell<HashMap<String, chrono_tz::Tz>> = RefCell::new(HashMap::new());
    let n = now;
    let local_time = lua.create_function(move |lua, who: Value| {
        let tz_name = match &who {
            Value::Table(m) => m.raw_get::<Option<String>>(&k_tz)?,
            Value::String(s) => Some(s.to_str()?.to_string()),
            _ => None,
        }
        .unwrap_or_else(|| "UTC".into());
        let tz = {
            let mut z = zones.borrow_mut();
            match z.get(&tz_name) {
                Some(tz) => *tz,
                None => {
                    let tz = tz_name.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC);
                    if z.len() < 1024 {
                        z.insert(tz_name, tz);
                    }
                    tz
                }
            }
        };
        local_time_table(lua, n.get(), tz)
    })?;
    Ok([
        ("in_service_window", in_service_window),
        ("local_time", local_time),
    ])
}

fn local_time_table(lua: &Lua, unix: i64, tz: chrono_tz::Tz) -> mlua::Result<Table> {
    use chrono::{Datelike, TimeZone, Timelike};
    use chrono_tz::OffsetComponents;
    let t = tz
        .timestamp_opt(unix, 0)
        .single()
        .ok_or_else(|| mlua::Error::RuntimeError(format!("time {unix} is out of range")))?;
    let out = lua.create_table_with_capacity(0, 10)?;
    out.raw_set("year", t.year())?;
    out.raw_set("month", t.month())?;
    out.raw_set("day", t.day())?;
    out.raw_set("hour", t.hour())?;
    out.raw_set("min", t.minute())?;
    out.raw_set("sec", t.second())?;
    // os.date("*t") numbers weekdays from Sunday = 1.
    out.raw_set("wday", t.weekday().num_days_from_sunday() + 1)?;
    out.raw_set("yday", t.ordinal())?;
    out.raw_set("isdst", !t.offset().dst_offset().is_zero())?;
    out.raw_set("hhmm", format!("{:02}:{:02}", t.hour(), t.minute()))?;
    Ok(out)
}
