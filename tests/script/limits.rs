//! The sandbox and the limits: endless loops, memory bombs, pcall and
//! coroutines trying to dodge them, and the libraries scripts must not reach.

use super::*;
use pushd::model::Routed;

/// One state, so "the next call still works" is asked of the state that failed.
fn one_state() -> ScriptLimits {
    ScriptLimits {
        states: 1,
        ..limits()
    }
}

fn load_one(files: &[(&str, &str)]) -> Arc<Generation> {
    match load_with(files, &one_state(), &env()) {
        Ok(g) => g,
        Err(errs) => panic!("scripts should load, got:\n{}", show(&errs)),
    }
}

const AUDIENCES: &str = r#"
audience "ok" { filter = function(m) return m.id % 2 == 0 end }

audience "loop" {
  filter = function(m)
    while true do end
  end,
}

audience "pcall_loop" {
  filter = function(m)
    while true do
      pcall(function() while true do end end)
    end
  end,
}

audience "pcall_once" {
  filter = function(m)
    local ok = pcall(function() while true do end end)
    return true
  end,
}

audience "xpcall_loop" {
  filter = function(m)
    while true do
      xpcall(function() while true do end end, function(e) return e end)
    end
  end,
}

audience "coroutine_loop" {
  filter = function(m)
    local co = coroutine.create(function() while true do end end)
    coroutine.resume(co)
    return true
  end,
}

audience "coroutine_wrap_loop" {
  filter = function(m)
    while true do
      pcall(coroutine.wrap(function() while true do end end))
    end
  end,
}

audience "string_bomb" {
  filter = function(m)
    local s = string.rep("x", 1 << 40)
    return #s > 0
  end,
}
"#;

fn two() -> Vec<Member> {
    vec![member(1, "sim", "en"), member(2, "sim", "en")]
}

/// Runs a filter on another thread, so a limit that fails to stop the script
/// fails the test instead of hanging it.
fn filter_with_deadline(g: &Arc<Generation>, audience: &str) -> Result<Vec<bool>, ScriptError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (g, a) = (g.clone(), audience.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(g.filter_blocking(&a, two()));
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!("{audience}: the script escaped the limits (still running after 30s)")
        })
}

fn assert_limit_error(g: &Arc<Generation>, audience: &str, words: &[&str]) {
    let err = filter_with_deadline(g, audience).expect_err("the limit must stop the call");
    let text = err.to_string();
    for w in words {
        assert!(text.contains(w), "{audience}: expected {w:?} in: {text}");
    }
    assert!(
        text.contains(&format!("in filter of audience \"{audience}\"")),
        "{audience}: {text}"
    );
    assert!(
        err.location
            .as_ref()
            .is_some_and(|l| l.file == "scripts/10_a.lua" && l.line > 0),
        "{audience}: {text}"
    );
    // The same (only) state answers the next call correctly.
    assert_eq!(
        g.filter_blocking("ok", two()).unwrap(),
        [false, true],
        "after {audience}"
    );
}

#[test]
fn endless_loop_fails_the_call_and_the_state_recovers() {
    let g = load_one(&[("10_a.lua", AUDIENCES)]);
    let err = g.filter_blocking("loop", two()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "scripts/10_a.lua:6: in filter of audience \"loop\": instruction limit of 1000000 exceeded (an endless loop? raise scripts.instruction_limit if the work is legitimate)"
    );
    assert_limit_error(&g, "loop", &["instruction limit of 1000000 exceeded"]);
}

#[test]
fn pcall_and_xpcall_cannot_swallow_the_limit() {
    let g = load_one(&[("10_a.lua", AUDIENCES)]);
    for a in ["pcall_loop", "pcall_once", "xpcall_loop"] {
        assert_limit_error(&g, a, &["instruction limit"]);
    }
}

#[test]
fn coroutines_inherit_the_limit() {
    let g = load_one(&[("10_a.lua", AUDIENCES)]);
    for a in ["coroutine_loop", "coroutine_wrap_loop"] {
        assert_limit_error(&g, a, &["instruction limit"]);
    }
}

#[test]
fn string_rep_bomb_is_bounded_by_the_memory_limit() {
    let g = load_one(&[("10_a.lua", AUDIENCES)]);
    let err = g.filter_blocking("string_bomb", two()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("memory limit of 16 MB exceeded") || text.contains("too large"),
        "{text}"
    );
    assert_eq!(g.filter_blocking("ok", two()).unwrap(), [false, true]);
}

#[test]
fn wall_clock_limit_stops_a_call_with_a_huge_instruction_budget() {
    let limits = ScriptLimits {
        instruction_limit: u64::MAX / 2,
        call_timeout: Duration::from_millis(200),
        ..one_state()
    };
    let g = load_with(&[("10_a.lua", AUDIENCES)], &limits, &env()).unwrap();
    let started = std::time::Instant::now();
    let err = g.filter_blocking("loop", two()).unwrap_err();
    assert!(err.to_string().contains("took longer than 200ms"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(g.filter_blocking("ok", two()).unwrap(), [false, true]);
}

const MEMORY_BOMB: &str = r#"
template "bomb" {
  en = { text = "fallback" },
  render = function(m, ctx)
    if m.id == 0 then return nil end -- the sample member at load
    local t = {}
    local i = 0
    while true do
      i = i + 1
      t[i] = string.rep("x", 1000) .. i
    end
  end,
}

template "fine" { en = { text = "Hi {{name}}" } }
"#;

#[test]
fn memory_bomb_in_render_fails_clearly_and_the_state_recovers() {
    let g = load_one(&[("20_t.lua", MEMORY_BOMB)]);
    let out = g.prepare_blocking("bomb", vec![member(1, "sim", "en")], pushd::model::now_ms());
    let err = out[0].as_ref().expect_err("memory bomb must fail");
    let text = err.to_string();
    assert!(text.contains("memory limit of 16 MB exceeded"), "{text}");
    assert!(text.contains("render of template \"bomb\""), "{text}");
    assert!(text.contains("scripts/20_t.lua:"), "{text}");
    let out = g.prepare_blocking("fine", vec![member(2, "sim", "en")], pushd::model::now_ms());
    match &out[0] {
        Ok(Routed::Send { channel, .. }) => assert_eq!(channel, "sim"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn endless_loop_at_load_is_a_load_error() {
    let errs = load_with(
        &[("10_a.lua", "audience \"a\" {}\n\nwhile true do end\n")],
        &one_state(),
        &env(),
    )
    .unwrap_err();
    assert_error_at(&errs, "scripts/10_a.lua:3", &["instruction limit"]);
}

/// Counts the calls of the looping render in an upvalue the state keeps;
/// the `count` template reads it back.
const COUNTED_LOOP: &str = r#"
local calls = 0
template "t" { render = function(m)
  if m.id == 0 then return { text = "x" } end
  calls = calls + 1
  while true do end
end }
template "count" { render = function(m) return { text = tostring(calls) } end }
"#;

#[test]
fn a_looping_batch_gives_up_after_repeated_trips() {
    let g = load_one(&[("20_t.lua", COUNTED_LOOP)]);
    let members: Vec<Member> = (1..=50).map(|i| member(i, "sim", "en")).collect();
    let out = g.prepare_blocking("t", members, pushd::model::now_ms());
    assert_eq!(out.len(), 50);
    assert!(out.iter().all(|r| {
        r.as_ref()
            .is_err_and(|e| e.to_string().contains("instruction limit"))
    }));
    // The render ran (and tripped) twice; the other 48 members got the
    // second trip's error without running the script.
    let count = g.prepare_blocking(
        "count",
        vec![member(1, "sim", "en")],
        pushd::model::now_ms(),
    );
    match &count[0] {
        Ok(Routed::Send {
            outbound: pushd::model::Outbound::Message { message, .. },
            ..
        }) => assert_eq!(message.text, "2", "limit trips before the batch gave up"),
        other => panic!("the count template: {other:?}"),
    }
    // A new batch starts counting afresh: it trips twice more.
    let out = g.prepare_blocking(
        "t",
        vec![member(51, "sim", "en"); 3],
        pushd::model::now_ms(),
    );
    assert!(out.iter().all(Result::is_err));
    let count = g.prepare_blocking(
        "count",
        vec![member(1, "sim", "en")],
        pushd::model::now_ms(),
    );
    assert!(
        matches!(&count[0], Ok(Routed::Send { outbound: pushd::model::Outbound::Message { message, .. }, .. }) if message.text == "4"),
        "{count:?}"
    );
}

/// Each line must hold at load; a failing assert names what leaked.
const SANDBOX_CHECKS: &str = r#"
assert(io == nil, "io is available")
assert(package == nil, "package is available")
assert(require == nil, "require is available")
assert(debug == nil, "debug is available")
assert(dofile == nil, "dofile is available")
assert(loadfile == nil, "loadfile is available")
assert(os.execute == nil, "os.execute is available")
assert(os.exit == nil, "os.exit is available")
assert(os.getenv == nil, "os.getenv is available")
assert(os.remove == nil, "os.remove is available")
assert(string.dump == nil, "string.dump is available")
assert(("x").dump == nil, "string.dump reachable through the string metatable")
assert(getmetatable("") == false, "the string metatable is reachable")
assert(not pcall(function() string.upper = nil end), "the string library is writable")
assert(not pcall(function() os.execute = print end), "the os library is writable")
assert(type(os.time()) == "number" and type(os.date("%Y")) == "string" and type(os.clock()) == "number", "os.time/date/clock missing")
assert(type(collectgarbage("count")) == "number", "collectgarbage('count') missing")
assert(not pcall(collectgarbage, "stop"), "collectgarbage('stop') allowed")
assert(not pcall(setmetatable, {}, { __gc = function() end }), "__gc finalizers allowed")
assert(getmetatable(setmetatable({}, { __index = { x = 1 } })).__index.x == 1, "setmetatable broken")
local f, err = load(string.char(27) .. "Lua", "bin", "b")
assert(f == nil and err:find("binary"), "binary chunk loaded: " .. tostring(err))
local g = load("return 1 + 1")
assert(g() == 2, "text chunks must load")
assert(math.max(1, 2) == 2 and utf8.char(72) == "H" and table.concat({ "a", "b" }) == "ab", "safe libraries missing")
audience "checked" { filter = function(m) return io == nil and require == nil and debug == nil end }
"#;

#[test]
fn sandbox_keeps_dangerous_functions_out() {
    let g = load_one(&[("10_sandbox.lua", SANDBOX_CHECKS)]);
    assert_eq!(g.filter_blocking("checked", two()).unwrap(), [true, true]);
}

#[test]
fn sandbox_checks_can_fail() {
    // The checks above are real: a leak makes the load fail with its message.
    let errs = load_with(
        &[(
            "10_sandbox.lua",
            "assert(type(string) == 'nil', 'string is available')",
        )],
        &one_state(),
        &env(),
    )
    .unwrap_err();
    assert_error_at(&errs, "scripts/10_sandbox.lua:1", &["string is available"]);
}

/// Loaded first: every way to change a library for the files after it.
const TAMPERING: &str = r#"
local attempts = {
  function() rawset(string, "upper", function() return "pwned" end) end,
  function() rawset(table, "concat", nil) end,
  function() rawset(os, "time", function() return 0 end) end,
  function() string.upper = function() return "pwned" end end,
  function() string = setmetatable({ upper = function() return "pwned" end }, { __index = string }) end,
  function() rawset(_G, "string", { upper = function() return "pwned" end }) end,
  function() _G.math = {} end,
  function() setmetatable(_G, nil) end,
}
for i, f in ipairs(attempts) do
  local ok, err = pcall(f)
  assert(not ok, "tampering #" .. i .. " succeeded")
end
"#;

/// Loaded second: the libraries are as the sandbox made them.
const UNTOUCHED: &str = r#"
assert(string.upper("a") == "A", "string.upper was replaced")
assert(("b"):upper() == "B", "the string methods were replaced")
assert(table.concat({ "a", "b" }) == "ab", "table.concat was replaced")
assert(os.time() > 0, "os.time was replaced")
assert(type(math.max) == "function", "math was replaced")
local n = 0
for _ in pairs(string) do n = n + 1 end
assert(n > 10, "pairs(string) lists the library")
audience "intact" { filter = function(m) return string.upper("x") == "X" and rawget ~= nil end }
"#;

#[test]
fn library_tables_are_frozen_for_the_scripts_after() {
    let g = load_one(&[("10_tamper.lua", TAMPERING), ("20_victim.lua", UNTOUCHED)]);
    assert_eq!(g.filter_blocking("intact", two()).unwrap(), [true, true]);
    // Unprotected, the first rawset is enough: the error names it and its line.
    for (src, words) in [
        (
            "rawset(string, 'upper', print)",
            &["string library is read-only"][..],
        ),
        (
            "rawset(_G, 'table', {})",
            &["global table is a library and cannot be replaced"],
        ),
        (
            "coroutine = nil",
            &["global coroutine is a library and cannot be replaced"],
        ),
    ] {
        let errs = load_with(&[("10_tamper.lua", src)], &one_state(), &env()).unwrap_err();
        assert_error_at(&errs, "scripts/10_tamper.lua:1", words);
    }
    // Other globals, and rawset on a script's own tables, still work.
    let g = load_one(&[(
        "10_ok.lua",
        r#"
helper = 1
local t = {}
rawset(t, "k", 2)
rawset(_G, "helper2", t.k)
audience "globals" { filter = function(m) return helper + helper2 == 3 end }
"#,
    )]);
    assert_eq!(g.filter_blocking("globals", two()).unwrap(), [true, true]);
}

#[test]
fn catastrophic_patterns_are_refused_and_ordinary_ones_work() {
    let g = load_one(&[(
        "10_p.lua",
        r#"
audience "ok_patterns" {
  filter = function(m)
    local s = string.rep("word ", 20000)
    assert(select(2, s:gsub("%s+", " ")) == 20000)
    assert(("2026-01-31"):match("^(%d+)-(%d+)-(%d+)$") == "2026")
    assert(string.find(s, "word word", 1, true) == 1)
    return true
  end,
}
audience "catastrophic" {
  filter = function(m)
    return ("a"):rep(20000):find(".-.-.-b") ~= nil
  end,
}
"#,
    )]);
    assert_eq!(
        g.filter_blocking("ok_patterns", two()).unwrap(),
        [true, true]
    );
    let err = filter_with_deadline(&g, "catastrophic").unwrap_err();
    assert!(
        err.to_string()
            .contains("too costly on a 20000-byte string"),
        "{err}"
    );
    assert!(err.to_string().contains("scripts/10_p.lua:13"), "{err}");
}

const ROUTER_BOMBS: &str = r#"
template "hi" { en = { text = "Hi {{name}}" } }

route(function(m, msg, ctx)
  if m.id == 1 then
    while true do end
  elseif m.id == 3 then
    local t = {}
    local i = 0
    while true do
      i = i + 1
      t[i] = string.rep("x", 1000) .. i
    end
  elseif m.id == 5 then
    error("no route for " .. m.name)
  end
  return { channel = m.channel }
end)
"#;

/// The router gets `m` and `msg` built inside its own call: a loop, a
/// memory bomb or an error there fails that recipient with its line, and
/// the next recipient of the batch is routed normally. (One batch each:
/// after two limit trips a batch gives up on the rest by design.)
#[test]
fn router_limits_and_errors_fail_only_their_recipient() {
    let g = load_one(&[("30_r.lua", ROUTER_BOMBS)]);
    for (bad, words) in [
        (1, "instruction limit of 1000000 exceeded"),
        (3, "memory limit of 16 MB exceeded"),
        (5, "no route for Member 5"),
    ] {
        let batch = vec![member(bad, "sim", "en"), member(bad + 1, "sim", "en")];
        let out = g.prepare_blocking("hi", batch, pushd::model::now_ms());
        let text = out[0].as_ref().expect_err("must fail").to_string();
        assert!(
            text.contains(words),
            "member {bad}: expected {words:?} in: {text}"
        );
        assert!(text.contains("in route"), "{text}");
        assert!(text.contains("scripts/30_r.lua:"), "{text}");
        match &out[1] {
            Ok(Routed::Send {
                channel,
                outbound: pushd::model::Outbound::Message { message, .. },
            }) => {
                assert_eq!(channel, "sim");
                assert_eq!(message.text, format!("Hi Member {}", bad + 1));
            }
            other => panic!("member {}: {other:?}", bad + 1),
        }
    }
}
