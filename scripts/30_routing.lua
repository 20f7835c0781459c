-- Routing: how a rendered message reaches each member. Without a router every
-- member gets the free-form message on their own channel.

route(function(m, msg, ctx)
  -- WhatsApp only allows free-form messages within 24h of the member's last
  -- message; outside it, send the pre-approved platform template instead.
  if m.platform == "whatsapp" and not ctx.in_service_window(m) then
    return {
      channel = m.channel,
      kind = "template",
      template = "vip_welcome",
      language = m.locale,
      params = { m.name },
    }
  end
  -- Messenger/Instagram marketing outside the window is not allowed: skip.
  if (m.platform == "messenger" or m.platform == "instagram") and not ctx.in_service_window(m) then
    return { skip = "outside the 24h messaging window" }
  end
  return { channel = m.channel }
end)
