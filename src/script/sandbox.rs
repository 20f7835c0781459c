//! The sandboxed Lua state and the limits every call from Rust runs under.
//!
//! * Libraries: `table, string, math, utf8, coroutine`, `os.time/date/clock`
//!   and the base functions minus `dofile, loadfile, collectgarbage` (only its
//!   `"count"` form is kept), `warn`; `load` only takes text chunks;
//!   `string.dump` is gone; library tables are read-only (also to
//!   `rawset`) and the globals naming them cannot be reassigned, since every
//!   script file shares one state; the string metatable cannot be fetched
//!   or changed; `__gc` finalizers are refused (they could run outside any
//!   call, where no memory limit applies).
//! * Instructions and wall clock: a count hook installed as mlua's *global*
//!   hook, so coroutines created by scripts inherit it (a per-thread hook would
//!   be dropped by mlua in a coroutine it does not know).
//! * Memory: mlua's allocator limit on the whole state, on while Lua runs.
//!   A state whose limit cannot be set is refused (the load fails): scripts
//!   never run without it.
//!
//! A tripped limit is sticky for the rest of the call: every later hook tick
//! fails again, and the `pcall`/`xpcall`/`coroutine.resume`/`coroutine.close`
//! wrappers re-raise it, so no script can swallow it and carry on.

use super::error::Location;
use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Which limit stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TripKind {
    Instructions,
    Timeout,
    Memory,
}

#[derive(Debug, Clone)]
pub(crate) struct Trip {
    pub kind: TripKind,
    /// The script line that was running when the limit tripped, when known.
    pub location: Option<Location>,
}

/// Per-state accounting for the call in progress.
pub(crate) struct Budget {
    limit: u64,
    timeout: Duration,
    memory_limit: usize,
    /// Instructions between hook ticks.
    step: u32,
    used: Cell<u64>,
    deadline: Cell<Instant>,
    trip: RefCell<Option<Trip>>,
    /// Whether the last error reported for a member was a limit trip.
    last_trip: Cell<bool>,
}

impl Budget {
    pub(crate) fn new(limit: u64, timeout: Duration, memory_limit: usize) -> Budget {
        Budget {
            limit,
            timeout,
            memory_limit,
            // Fine enough to stop within 1% of the budget, coarse enough that
            // the hook costs nothing measurable.
            step: (limit / 100).clamp(100, 10_000) as u32,
            used: Cell::new(0),
            deadline: Cell::new(Instant::now() + timeout),
            trip: RefCell::new(None),
            last_trip: Cell::new(false),
        }
    }

    /// Starts a fresh budget for one call from Rust.
    pub(crate) fn begin(&self) {
        self.used.set(0);
        self.deadline.set(Instant::now() + self.timeout);
        if self.trip.borrow().is_some() {
            *self.trip.borrow_mut() = None;
        }
    }

    pub(crate) fn note_trip(&self) {
        self.last_trip.set(true);
    }

    pub(crate) fn clear_last_trip(&self) {
        self.last_trip.set(false);
    }

    pub(crate) fn last_was_trip(&self) -> bool {
        self.last_trip.get()
    }

    pub(crate) fn tripped(&self) -> Option<Trip> {
        self.trip.borrow().clone()
    }

    pub(crate) fn trip_memory(&self) {
        let mut t = self.trip.borrow_mut();
        if t.is_none() {
            *t = Some(Trip {
                kind: TripKind::Memory,
                location: None,
            });
        }
    }

    /// What an operator reads when `kind` stopped a call.
    pub(crate) fn describe(&self, kind: TripKind) -> String {
        match kind {
            TripKind::Instructions => format!(
                "instruction limit of {} exceeded (an endless loop? raise scripts.instruction_limit if the work is legitimate)",
                self.limit
            ),
            TripKind::Timeout => format!(
                "call took longer than {} (scripts.call_timeout)",
                crate::util::duration::format(self.timeout)
            ),
            TripKind::Memory => format!(
                "memory limit of {} MB exceeded (scripts.memory_limit_mb)",
                self.memory_limit.div_ceil(1024 * 1024)
            ),
        }
    }

    fn error(&self, kind: TripKind) -> mlua::Error {
        mlua::Error::RuntimeError(self.describe(kind))
    }

    fn tick(&self, debug: &mlua::debug::Debug) -> mlua::Result<mlua::VmState> {
        if let Some(t) = self.trip.borrow().as_ref() {
            return Err(self.error(t.kind));
        }
        let used = self.used.get() + self.step as u64;
        self.used.set(used);
        let kind = if used > self.limit {
            TripKind::Instructions
        } else if Instant::now() > self.deadline.get() {
            TripKind::Timeout
        } else {
            return Ok(mlua::VmState::Continue);
        };
        let src = debug.source();
        let location = match (src.short_src, debug.current_line()) {
            (Some(file), Some(line)) => Some(Location {
                file: file.into_owned(),
                line: line as u32,
            }),
            _ => None,
        };
        *self.trip.borrow_mut() = Some(Trip { kind, location });
        Err(self.error(kind))
    }
}

/// Lua run once per state, before any script, with the re-raising check as `...`.
const SANDBOX_SETUP: &str = r#"
local check, pattern_guard = ...
local raw_pcall, raw_xpcall, raw_load = pcall, xpcall, load
local co_resume, co_close = coroutine.resume, coroutine.close
local G, type, error, setmetatable, pairs, rawget = _G, type, error, setmetatable, pairs, rawget

-- Finalizers run whenever the collector gets to them, also between calls
-- when the memory limit is off; scripts have no use for them.
_G.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("__gc metamethods are not allowed in pushd scripts", 2)
  end
  return setmetatable(t, mt)
end

pcall = function(...) return check(raw_pcall(...)) end
xpcall = function(...) return check(raw_xpcall(...)) end

load = function(chunk, name, _mode, env)
  if type(chunk) ~= "string" and type(chunk) ~= "function" then
    error("bad argument #1 to 'load' (string expected)", 2)
  end
  return raw_load(chunk, name, "t", env or G)
end

local raw_gc = collectgarbage
collectgarbage = function(opt)
  if opt == "count" then return raw_gc("count") end
  error("collectgarbage is limited to collectgarbage(\"count\") in pushd scripts", 2)
end

local os_lib = os
os = { time = os_lib.time, date = os_lib.date, clock = os_lib.clock }

string.dump = nil

-- Lua's matcher backtracks in C, where no hook can stop it; refuse patterns
-- whose worst case on this subject would run for seconds.
local s_find, s_match, s_gmatch, s_gsub = string.find, string.match, string.gmatch, string.gsub
string.find = function(s, p, init, plain)
  if not plain then pattern_guard(s, p) end
  return s_find(s, p, init, plain)
end
string.match = function(s, p, init) pattern_guard(s, p) return s_match(s, p, init) end
string.gmatch = function(s, p, init) pattern_guard(s, p) return s_gmatch(s, p, init) end
string.gsub = function(s, p, r, n) pattern_guard(s, p) return s_gsub(s, p, r, n) end
getmetatable("").__metatable = false

local co = {}
for k, v in pairs(coroutine) do co[k] = v end
co.resume = function(...) return check(co_resume(...)) end
co.close = function(...) return check(co_close(...)) end
coroutine = co

-- Library tables are read-only for real. Each is reached through an empty
-- proxy whose metatable is locked; `rawset` refuses the proxies; and the
-- globals naming them live behind _G's locked metatable, so no script can
-- change string.* (or which table `string` is) for the scripts after it.
local raw_rawset, rawequal, next = rawset, rawequal, next
local frozen, libs = {}, {}
local function read_only(lib, name)
  local proxy = setmetatable({}, {
    __index = lib,
    __newindex = function() error("the " .. name .. " library is read-only", 2) end,
    __pairs = function() return next, lib, nil end,
    __metatable = false,
  })
  frozen[proxy] = name
  return proxy
end
for _, name in pairs({ "string", "table", "math", "utf8", "coroutine", "os" }) do
  libs[name] = read_only(G[name], name)
  G[name] = nil
end
local function replaced_library(k)
  error("the global " .. tostring(k) .. " is a library and cannot be replaced", 3)
end
rawset = function(t, k, v)
  local lib = frozen[t]
  if lib then error("the " .. lib .. " library is read-only", 2) end
  if rawequal(t, G) and libs[k] ~= nil then replaced_library(k) end
  return raw_rawset(t, k, v)
end
setmetatable(G, {
  __index = libs,
  __newindex = function(t, k, v)
    if libs[k] ~= nil then replaced_library(k) end
    raw_rawset(t, k, v)
  end,
  __metatable = false,
})

dofile, loadfile, warn, require, package, io, debug = nil, nil, nil, nil, nil, nil, nil
"#;

/// A fresh state with the sandboxed libraries, the limits hook and the memory limit.
pub(crate) fn new_state(budget: &Rc<Budget>) -> mlua::Result<Lua> {
    let lua = Lua::new_with(
        StdLib::TABLE
            | StdLib::STRING
            | StdLib::MATH
            | StdLib::UTF8
            | StdLib::COROUTINE
            | StdLib::OS,
        LuaOptions::default(),
    )?;
    // Routing and rendering make a few short-lived tables per recipient:
    // the generational collector reclaims those without re-marking the
    // long-lived script state each cycle.
    lua.gc_set_mode(mlua::state::GcMode::Generational(Default::default()));
    let b = budget.clone();
    let check = lua.create_function(move |_, results: MultiValue| {
        if let Some(t) = b.tripped() {
            return Err(b.error(t.kind));
        }
        // An out-of-memory error that `pcall` caught still ends the call: the
        // script would otherwise retry the allocation until the instruction
        // budget ran out, holding the state's memory at its limit.
        if let (Some(Value::Boolean(false)), Some(err)) = (results.front(), results.get(1))
            && is_memory_error(err)
        {
            b.trip_memory();
            return Err(b.error(TripKind::Memory));
        }
        Ok(results)
    })?;
    let pattern_guard = lua.create_function(|_, (subject, pattern): (Value, Value)| {
        let len = |v: &Value| match v {
            Value::String(s) => Some(s.as_bytes().len()),
            Value::Integer(_) | Value::Number(_) => Some(24),
            _ => None,
        };
        // Wrong types are left to the library function's own error.
        if let (Some(n), Value::String(p)) = (len(&subject), &pattern) {
            let cost = pattern_cost(n, &p.as_bytes());
            if cost > MAX_PATTERN_COST {
                return Err(mlua::Error::RuntimeError(format!(
                    "pattern {:?} is too costly on a {n}-byte string (each of its * + - repeats multiplies the work); anchor it with ^, use fewer repeats, or use string.find(s, text, 1, true)",
                    String::from_utf8_lossy(&p.as_bytes())
                )));
            }
        }
        Ok(())
    })?;
    require_memory_control(&lua, budget)?;
    lua.load(SANDBOX_SETUP)
        .set_name("=sandbox")
        .call::<()>((check, pattern_guard))?;
    let b = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(budget.step),
        move |_, debug| b.tick(debug),
    )?;
    Ok(lua)
}

/// Runs `f` (Lua code) with the state's memory limit on.
///
/// The limit is off the rest of the time: with a limit set, mlua wraps every
/// value Rust pushes in a protected call, which tripled the cost of building
/// a member table. What Rust builds between calls is bounded by the batch.
/// If the limit cannot be set, `f` does not run.
pub(crate) fn limited<R>(
    lua: &Lua,
    budget: &Budget,
    f: impl FnOnce() -> mlua::Result<R>,
) -> mlua::Result<R> {
    lua.set_memory_limit(budget.memory_limit)
        .map_err(|e| memory_limit_error(budget, e))?;
    let result = f();
    let reset = lua.set_memory_limit(0);
    let value = result?;
    reset.map_err(|e| memory_limit_error(budget, e))?;
    Ok(value)
}

/// Fails unless this state's memory limit can be set (mlua controls the
/// allocator of the states it creates; a state from elsewhere it does not).
fn require_memory_control(lua: &Lua, budget: &Budget) -> mlua::Result<()> {
    lua.set_memory_limit(0)
        .map(drop)
        .map_err(|e| memory_limit_error(budget, e))
}

fn memory_limit_error(budget: &Budget, e: mlua::Error) -> mlua::Error {
    mlua::Error::RuntimeError(format!(
        "cannot set the Lua memory limit of {} MB (scripts.memory_limit_mb) on this state: {e}; scripts are not run without it",
        budget.memory_limit.div_ceil(1024 * 1024)
    ))
}

/// Matcher steps a pattern may need in the worst case before it is refused
/// (about a second of C time).
const MAX_PATTERN_COST: f64 = 5e8;

/// An upper bound on Lua's backtracking work: every `*`, `+` or `-` repeat
/// that is followed by more pattern can be retried at up to n+1 lengths, `?`
/// at two, and an unanchored pattern is tried at every start position.
pub(crate) fn pattern_cost(n: usize, p: &[u8]) -> f64 {
    let n1 = n as f64 + 1.0;
    let (anchored, p) = match p.first() {
        Some(b'^') => (true, &p[1..]),
        _ => (false, p),
    };
    let mut cost = if anchored { 1.0 } else { n1 };
    let mut i = 0;
    while i < p.len() {
        // One single-character item: %x, [set], . or a literal.
        let end = match p[i] {
            b'(' | b')' => {
                i += 1;
                continue;
            }
            b'%' => match p.get(i + 1) {
                Some(b'b') => {
                    i += 4;
                    continue;
                }
                Some(b'f') => {
                    i = set_end(p, i + 2);
                    continue;
                }
                _ => i + 2,
            },
            b'[' => set_end(p, i),
            _ => i + 1,
        };
        match p.get(end) {
            Some(b'*' | b'+' | b'-') => {
                let rest = &p[(end + 1).min(p.len())..];
                if rest.iter().any(|&c| c != b')' && c != b'$') {
                    cost *= n1;
                }
                i = end + 1;
            }
            Some(b'?') => {
                cost *= 2.0;
                i = end + 1;
            }
            _ => i = end,
        }
    }
    cost
}

/// Index just past a `[set]` starting at `i` (`p[i] == b'['`).
fn set_end(p: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    if p.get(j) == Some(&b'^') {
        j += 1;
    }
    // A `]` right after `[` or `[^` is a member, not the end.
    if p.get(j) == Some(&b']') {
        j += 1;
    }
    while j < p.len() && p[j] != b']' {
        j += if p[j] == b'%' { 2 } else { 1 };
    }
    j + 1
}

fn is_memory_error(v: &Value) -> bool {
    match v {
        Value::Error(e) => matches!(**e, mlua::Error::MemoryError(_)),
        Value::String(s) => s.as_bytes().starts_with(b"not enough memory"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state mlua did not create: its allocator is Lua's own, so no
    /// memory limit can be set on it.
    fn state_without_memory_control() -> &'static Lua {
        // SAFETY: a fresh state from the Lua C API, handed to mlua once and
        // never closed (leaked for the test's lifetime).
        unsafe { Lua::get_or_init_from_ptr(mlua::ffi::luaL_newstate()) }
    }

    #[test]
    fn a_state_without_a_memory_limit_runs_nothing() {
        let budget = Budget::new(1_000_000, Duration::from_secs(1), 16 << 20);
        let lua = state_without_memory_control();
        let ran = Cell::new(false);
        let err = limited(lua, &budget, || {
            ran.set(true);
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(!ran.get(), "the call ran without its memory limit");
        assert!(
            err.contains("cannot set the Lua memory limit of 16 MB")
                && err.contains("scripts.memory_limit_mb"),
            "{err}"
        );
        let err = require_memory_control(lua, &budget)
            .unwrap_err()
            .to_string();
        assert!(err.contains("scripts.memory_limit_mb"), "{err}");
        // A state of ours can, and the limit is off again afterwards.
        let ours = new_state(&Rc::new(budget)).expect("sandboxed state");
        let b = Budget::new(1_000_000, Duration::from_secs(1), 16 << 20);
        assert_eq!(limited(&ours, &b, || Ok(7)).unwrap(), 7);
        assert_eq!(ours.set_memory_limit(0).unwrap(), 0);
    }

    #[test]
    fn pattern_cost_bounds_backtracking() {
        // Linear patterns stay cheap on long subjects.
        assert!(pattern_cost(100_000, b"^%s+") < 10.0);
        assert!(pattern_cost(100_000, b"%s+") < 2e5);
        assert!(pattern_cost(1000, b"^(%w+)://([^/]+)(.*)$") < 1e7);
        // Repeats followed by more pattern multiply.
        assert!(pattern_cost(20_000, b".-.-.-b") > 1e15);
        assert!(pattern_cost(100, b".-.-.-b") < 5e8);
        assert!(pattern_cost(10, b"[]%]]*x") > pattern_cost(10, b"x"));
        assert!(pattern_cost(10, b"%b()x") < 20.0);
    }
}
