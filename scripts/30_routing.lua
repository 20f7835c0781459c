-- Routing: how a rendered message reaches each member. Without a router every
-- member gets the free-form message on their own channel.

-- The pre-approved WhatsApp templates (WhatsApp Manager > Message templates)
-- that stand in for ours outside WhatsApp's 24h window, by our template name.
local whatsapp_approved = {
  welcome_vip = "vip_welcome",
  black_friday = "black_friday_offer",
}

route(function(m, msg, ctx)
  -- WhatsApp only allows free-form messages within 24h of the member's last
  -- message; outside it, only a pre-approved template.
  if m.platform == "whatsapp" and not ctx.in_service_window(m) then
    local approved = whatsapp_approved[ctx.template or ""]
    if not approved then
      return { skip = "outside the 24h window and no approved WhatsApp template for " .. tostring(ctx.template) }
    end
    return {
      channel = m.channel,
      kind = "template",
      template = approved,
      language = m.locale,
      params = { m.name },
    }
  end
  -- Messenger/Instagram marketing outside the window is not allowed: skip.
  if (m.platform == "messenger" or m.platform == "instagram") and not ctx.in_service_window(m) then
    return { skip = "outside the 24h messaging window" }
  end
  -- WeChat customer-service messages only reach members who wrote within
  -- 48h (set service_window = "48h" on the channel; the default is 24h).
  if m.platform == "wechat" and not ctx.in_service_window(m) then
    return { skip = "outside WeChat's customer-service window" }
  end
  return { channel = m.channel }
end)
