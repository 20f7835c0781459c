-- Audiences: who gets a push. `where` runs as SQL over the member store (fast,
-- indexed); `filter` refines the result in Lua, member by member.

audience "vip" {
  description = "Subscribed VIP members on any channel",
  where = { tags_all = { "vip" }, subscribed = true },
}

audience "vip_whatsapp" {
  description = "VIP customers reachable on WhatsApp, active in the last 30 days",
  where = {
    platform = "whatsapp",
    tags_all = { "vip" },
    subscribed = true,
    last_interaction_within = "30d",
  },
}

audience "big_spenders" {
  description = "Subscribed members who spent more than 300, churn risks excluded",
  where = { subscribed = true, tags_none = { "churn-risk" } },
  filter = function(m)
    return (m.attributes.spend or 0) > 300
  end,
}

audience "newsletter_zh" {
  description = "Chinese-speaking newsletter readers (zh, zh-CN, zh-TW, ...)",
  where = { tags_any = { "newsletter" }, locale = "zh", subscribed = true },
}

audience "pro_plan" {
  description = "Members on the pro plan",
  where = { attributes = { plan = "pro" }, subscribed = true },
}
