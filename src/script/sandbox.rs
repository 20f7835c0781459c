//! The sandboxed Lua state and the limits every call from Rust runs under.
//!
//! * Libraries: `table, string, math, utf8, coroutine`, `os.time/date/clock`
//!   and the base functions minus `dofile, loadfile, collectgarbage` (only its
//!   `"count"` form is kept), `warn`; `load` only takes text chunks;
//!   `string.dump` is gone; library tables are read-only; the string
//!   metatable cannot be fetched or changed.
//! * Instructions and wall clock: a count hook installed as mlua's *global*
//!   hook, so coroutines created by scripts inherit it (a per-thread hook would
//!   be dropped by mlua in a coroutine it does not know).
//! * Memory: mlua's allocator limit on the whole state.
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
local check = ...
local raw_pcall, raw_xpcall, raw_load = pcall, xpcall, load
local co_resume, co_close = coroutine.resume, coroutine.close
local G, type, error, setmetatable, pairs = _G, type, error, setmetatable, pairs

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
getmetatable("").__metatable = false

local co = {}
for k, v in pairs(coroutine) do co[k] = v end
co.resume = function(...) return check(co_resume(...)) end
co.close = function(...) return check(co_close(...)) end
coroutine = co

local function read_only(lib, name)
  return setmetatable({}, {
    __index = lib,
    __newindex = function() error("the " .. name .. " library is read-only", 2) end,
    __metatable = false,
  })
end
for _, name in pairs({ "string", "table", "math", "utf8", "coroutine", "os" }) do
  G[name] = read_only(G[name], name)
end

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
    lua.load(SANDBOX_SETUP)
        .set_name("=sandbox")
        .call::<()>(check)?;
    let b = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(budget.step),
        move |_, debug| b.tick(debug),
    )?;
    lua.set_memory_limit(budget.memory_limit)?;
    Ok(lua)
}

fn is_memory_error(v: &Value) -> bool {
    match v {
        Value::Error(e) => matches!(**e, mlua::Error::MemoryError(_)),
        Value::String(s) => s.as_bytes().starts_with(b"not enough memory"),
        _ => false,
    }
}
