-- Pushes: created once, keyed by name; reloading never sends one twice.
-- This one reaches the ~100 subscribed VIP members of the default simulator
-- channel and finishes in about a minute at the default 100 messages/minute.

push "welcome-vip" {
  audience = "vip",
  template = "welcome_vip",
  start_at = "now",
}

-- An A/B test, for reference: 20% of the big spenders get variant a or b
-- of "spring_sale"; an hour after, the variant read most goes to the rest.
-- 5% are held out and get nothing (the control group). `pushd push
-- pick-winner spring-test b` decides early; winner = "manual" waits for it.
--
-- push "spring-test" {
--   audience = "big_spenders", template = "spring_sale", start_at = "now",
--   test = { share = 0.2, wait = "1h", metric = "read", winner = "auto" },
--   holdout = 0.05,
-- }

-- A scheduled one, for reference (batches of 5000 every hour, 09:00-21:00
-- member-local time):
--
-- push "bf-2026" {
--   audience = "vip_whatsapp", template = "black_friday",
--   start_at = "2026-11-27T09:00:00+08:00",
--   rate_per_minute = 100,
--   batch = { size = 5000, every = "1h" },
--   send_window = { from = "09:00", to = "21:00" },
-- }
