-- Templates: what members get. One table per locale; the member's locale is
-- used, else its language (zh-CN -> zh), else scripts.default_locale.
-- {{name}}, {{attributes.city}} ... are filled in per member;
-- {{name|there}} falls back to "there" when the name is empty.

template "welcome_vip" {
  en = {
    text = "Hi {{name|there}}, welcome to the VIP club! Your perks in {{attributes.city|your city}} are ready.",
    buttons = {
      { title = "See my perks", payload = "VIP_PERKS" },
      { title = "Visit the shop", url = "https://shop.example.com/vip" },
    },
  },
  zh = {
    text = "{{name|您好}}，欢迎加入 VIP 俱乐部！您在{{attributes.city|本地}}的专属礼遇已准备好。",
    buttons = {
      { title = "查看礼遇", payload = "VIP_PERKS" },
      { title = "进入商店", url = "https://shop.example.com/vip?lang=zh" },
    },
  },
  es = {
    text = "¡Hola {{name|}}! Bienvenido al club VIP. Tus ventajas en {{attributes.city|tu ciudad}} ya están listas.",
    buttons = {
      { title = "Ver ventajas", payload = "VIP_PERKS" },
    },
  },
}

template "black_friday" {
  en = {
    text = "Hi {{name|there}}, 30% off everything today only!",
    quick_replies = {
      { title = "Shop now", payload = "BF_SHOP" },
      { title = "Not interested", payload = "BF_NO" },
    },
    image = "https://shop.example.com/img/black-friday.png",
  },
  zh = { text = "{{name|您好}}，今日全场七折！" },
}

-- A template computed in Lua: greet by the member's local time of day.
template "spend_thanks" {
  render = function(m, ctx)
    local hour = ctx.local_time(m).hour
    local greeting = (hour < 12 and "Good morning") or (hour < 18 and "Good afternoon") or "Good evening"
    local spend = m.attributes.spend or 0
    return {
      text = string.format("%s %s, thank you for spending %d with us this year!", greeting, m.name, spend),
      buttons = { { title = "My rewards", payload = "REWARDS" } },
    }
  end,
}
