---@meta pushd
-- LuaLS type stubs for pushd scripts. pushd never loads `*.d.lua` files; this
-- one only helps editors complete and check the API.
--
-- Scripts run in a sandbox: table, string, math, utf8, coroutine, os.time,
-- os.date, os.clock, and the base functions without dofile/loadfile; `load`
-- takes text only; collectgarbage("count") only; library tables are
-- read-only. Every call from pushd (loading a file, filter, render, route)
-- runs under an instruction budget (scripts.instruction_limit), a wall-clock
-- limit (scripts.call_timeout) and each state under a memory limit
-- (scripts.memory_limit_mb). A tripped limit cannot be caught by pcall.

---@alias pushd.Platform "whatsapp"|"messenger"|"instagram"|"telegram"|"slack"|"wechat"|"webchat"|"custom"|"simulator"

---A member as scripts see it. Treat it as read-only.
---@class pushd.Member
---@field id integer
---@field channel string Channel instance name from config (`[channels.<name>]`).
---@field platform pushd.Platform|"" The instance's kind; "" if the channel is not configured.
---@field channel_user_id string The platform's id for the user.
---@field name string
---@field locale string e.g. "en", "zh-CN".
---@field timezone string IANA zone, e.g. "Asia/Hong_Kong".
---@field tags table<string, true> A set: `m.tags.vip == true`.
---@field attributes table<string, any> Imported attributes (JSON null becomes nil).
---@field subscribed boolean
---@field last_interaction_at integer? Unix seconds of the member's last message; nil if never.

---@class pushd.Button
---@field title string
---@field payload string? Postback payload (exactly one of payload or url).
---@field url string? Opens a link.
---@field track boolean? Template tables only: send `url` as a tracked link (`<[links] public_url>/l/TOKEN`), so a tap counts as the recipient's interaction. The URL must be fixed (no placeholders). Default: `[links] track_buttons`.

---A channel-neutral message.
---@class pushd.Message
---@field text string
---@field buttons pushd.Button[]?
---@field quick_replies pushd.Button[]?
---@field image string? An http(s) URL.

---A table per locale in `template`. Strings may hold placeholders:
---`{{id}} {{channel}} {{platform}} {{channel_user_id}} {{name}} {{locale}} {{timezone}}`,
---`{{attributes.key}}` (nested: `{{attributes.a.b}}`), and `{{field|fallback}}`
---which renders `fallback` when the value is missing or empty. A missing
---attribute renders as "" (empty string); numbers as in JSON (42, 1.5);
---booleans as true/false. Unknown placeholders fail the load with file:line.
---
---`{{track "https://shop.example.com/sale"}}` is a tracked link: each
---recipient gets its own `<[links] public_url>/l/TOKEN` URL, which
---redirects to the fixed http(s) URL given and counts the click (as the
---recipient's interaction under `[links] privacy = "individual"`). URL
---buttons are tracked with `track = true`. Up to 16 different tracked URLs
---per template; the load fails if `[links] public_url` is not set. Until
---the send, `route`'s `msg` shows each tracked URL as one placeholder
---character (U+FDD0 + its number). A `render` function's links are sent
---as they are (not tracked).
---@class pushd.LocaleMessage
---@field text string
---@field buttons pushd.Button[]?
---@field quick_replies pushd.Button[]?
---@field image string?

---`os.date("*t")`-like table in the member's time zone, plus `hhmm`.
---@class pushd.LocalTime
---@field year integer
---@field month integer
---@field day integer
---@field hour integer
---@field min integer
---@field sec integer
---@field wday integer 1 = Sunday.
---@field yday integer
---@field isdst boolean
---@field hhmm string "09:05"

---@class pushd.Context
---@field now integer Unix seconds when the batch started.
---@field push string? The push being prepared, when known.
---@field template string? In render and route: the template being prepared.
---@field platform pushd.Platform|""? In render and route: the member's platform (as `m.platform`), which also picks the template's platform version.
---@field variant string? In render and route: the member's A/B variant (a template with `variants`), which also picks the variant's body.
local Context = {}

---True when the member wrote to us within the channel's service window
---(`service_window` in config, default 24h).
---@param m pushd.Member
---@return boolean
function Context.in_service_window(m) end

---The current time in the member's time zone (or in a zone name given directly).
---@param m pushd.Member|string
---@return pushd.LocalTime
function Context.local_time(m) end

---@class pushd.Where
---@field platform pushd.Platform|pushd.Platform[]? Members on any instance of these kinds.
---@field channel string|string[]? Channel instance names.
---@field tags_all string[]? Has every one of these tags.
---@field tags_any string[]? Has at least one.
---@field tags_none string[]? Has none of them.
---@field subscribed boolean?
---@field locale string|string[]? "zh" also matches "zh-CN", "zh_TW"; case-insensitive.
---@field last_interaction_within string? e.g. "30d", "12h" (evaluated when the push resolves its audience).
---@field attributes table<string, string|number|boolean|(string|number|boolean)[]>? Equality (a list: any of).

---@class pushd.AudienceSpec
---@field description string?
---@field where pushd.Where? Compiled to SQL; absent = every member.
---@field filter (fun(m: pushd.Member, ctx: pushd.Context): any)? Optional refinement; a truthy result keeps the member.

---Defines an audience: `audience "name" { where = { … }, filter = … }`.
---@param name string
---@return fun(spec: pushd.AudienceSpec)
function audience(name) end

---A platform's own version of a template, used for members on channels of
---that kind: locale tables, like the template's own. For such a member the
---locale is chosen as usual (its locale, its language, the default locale,
---its language), the platform's table before the generic one at each step.
---@alias pushd.PlatformVersion table<string, pushd.LocaleMessage>

---One variant of an A/B test: a template body (locale tables and platform
---versions), like a template without variants.
---@alias pushd.VariantBody table<string, pushd.LocaleMessage|pushd.PlatformVersion>

---@class pushd.TemplateSpec
---@field description string?
---@field variants table<string, pushd.VariantBody>? 2 to 8 named bodies (names: letters, digits, _ or -), e.g. `variants = { a = { en = { … } }, b = { en = { … } } }`; a template with variants has no locale tables of its own. Every variant is rendered at load.
---@field render (fun(m: pushd.Member, ctx: pushd.Context): pushd.Message?)? Builds the message in Lua (`ctx.platform` says for which platform); returning nil falls back to the tables.
---@field whatsapp pushd.PlatformVersion? e.g. reply buttons with the link in the text (one message carries reply buttons or one URL button, not both).
---@field messenger pushd.PlatformVersion?
---@field instagram pushd.PlatformVersion?
---@field telegram pushd.PlatformVersion?
---@field slack pushd.PlatformVersion?
---@field wechat pushd.PlatformVersion? e.g. an image with one URL button (a news article), or text with links.
---@field webchat pushd.PlatformVersion?
---@field custom pushd.PlatformVersion?
---@field simulator pushd.PlatformVersion?
---@field [string] pushd.LocaleMessage Locale tables: en = { … }, zh = { … }, ["zh-CN"] = { … }.

---Defines a message template: `template "name" { en = { text = "Hi {{name}}" }, whatsapp = { en = { … } }, … }`.
---Every template is rendered at load for a sample member of every configured
---channel (and each platform version for its platform); a message a channel
---cannot carry fails the load with the platform's rule and how to fix it.
---@param name string
---@return fun(spec: pushd.TemplateSpec)
function template(name) end

---What a router returns: a free-form send, a platform template send, or a skip.
---@class pushd.Route
---@field channel string? Channel instance to send on (required unless skip).
---@field kind "message"|"template"? Default "message": the rendered free-form message.
---@field template string? kind = "template": the platform's pre-approved template name.
---@field language string? kind = "template": template language (default: the member's locale).
---@field params string[]? kind = "template": body parameters.
---@field tag string? kind = "message": Messenger/Instagram message tag, e.g. "ACCOUNT_UPDATE".
---@field skip string? Skip this member, with the reason shown in reports.

---Sets the one router. Without one, every member gets the rendered message on its own channel.
---@param fn fun(m: pushd.Member, msg: pushd.Message, ctx: pushd.Context): pushd.Route
function route(fn) end

---@class pushd.Batch
---@field size integer Members per batch.
---@field every string Time between batches, e.g. "1h".

---@class pushd.SendWindow
---@field from string "09:00"
---@field to string "21:00"

---@class pushd.PushSpec
---@field audience string
---@field template string
---@field start_at "now"|string "now" or an RFC 3339 time like "2026-11-27T09:00:00+08:00".
---@field rate_per_minute integer? Capped by the global rate.
---@field batch pushd.Batch?
---@field send_window pushd.SendWindow? Hours to send in (member-local time).
---@field policy "bypass"? Frequency caps and quiet hours of config.toml [policy] do not apply (transactional messages; audited). Its sends still count toward other pushes' caps.
---@field test pushd.Test? An A/B test of the template's variants: the test share first, then the winner to the rest.
---@field holdout number|string? A control group sent nothing, e.g. 0.05 or "5%"; reported as `control_group`.

---Which member gets which variant is a hash of (push, member): the same
---after any restart, and an even split.
---@class pushd.Test
---@field share number|string The test share of the audience, e.g. 0.2 or "20%".
---@field wait string How long after the test share is sent the winner is chosen, e.g. "2h".
---@field metric "read"|"interacted"|"clicked"? The rate the winner is chosen by (default "read"; "clicked" needs tracked links in the template).
---@field winner "auto"|"manual"? "manual" waits for `pushd push pick-winner PUSH VARIANT` (default "auto").

---Defines a push, created once by name (reloading never sends it twice).
---@param name string
---@return fun(spec: pushd.PushSpec)
function push(name) end

---Writes to the daemon log, with the script's file:line.
---@class pushd.Log
log = {}
---@param ... any
function log.debug(...) end
---@param ... any
function log.info(...) end
---@param ... any
function log.warn(...) end
---@param ... any
function log.error(...) end
