-- Templates: what members get. One table per locale; the member's locale is
-- used, else its language (zh-CN -> zh), else scripts.default_locale.
-- {{name}}, {{attributes.city}} ... are filled in per member;
-- {{name|there}} falls back to "there" when the name is empty.
--
-- Platforms differ in what one message can carry. A template can give a
-- platform its own version, `whatsapp = { en = { ... } }`: members on a
-- channel of that kind get it (in their locale, as above), everyone else
-- the generic tables. A `render` function can read ctx.platform instead.
-- `pushd check` renders every template for every configured channel and
-- names the rule a message breaks.

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
  -- WhatsApp carries up to 3 reply buttons or one URL button, never both:
  -- keep the reply button (a tap counts as an interaction) and put the shop
  -- link in the text, where WhatsApp shows a preview of it.
  whatsapp = {
    en = {
      text = "Hi {{name|there}}, welcome to the VIP club! Your perks in {{attributes.city|your city}} are ready.\n\nThe VIP shop: https://shop.example.com/vip",
      buttons = { { title = "See my perks", payload = "VIP_PERKS" } },
    },
    zh = {
      text = "{{name|您好}}，欢迎加入 VIP 俱乐部！您在{{attributes.city|本地}}的专属礼遇已准备好。\n\nVIP 商店：https://shop.example.com/vip?lang=zh",
      buttons = { { title = "查看礼遇", payload = "VIP_PERKS" } },
    },
  },
  -- WeChat sends the generic version as a menu message: "查看礼遇" as a menu
  -- item, the shop as a link in the text. Menu messages need a certified
  -- Official Account; on a test account give WeChat a version without the
  -- payload button.
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
  -- WeChat sends an image as a news article (title, picture, link), which
  -- takes no buttons or quick replies: the article opens the sale.
  wechat = {
    en = {
      text = "Black Friday: 30% off everything, today only",
      image = "https://shop.example.com/img/black-friday.png",
      buttons = { { title = "Shop now", url = "https://shop.example.com/black-friday" } },
    },
    zh = {
      text = "黑色星期五：今日全场七折",
      image = "https://shop.example.com/img/black-friday.png",
      buttons = { { title = "立即选购", url = "https://shop.example.com/black-friday?lang=zh" } },
    },
  },
}

-- A template computed in Lua: greet by the member's local time of day.
template "spend_thanks" {
  render = function(m, ctx)
    local hour = ctx.local_time(m).hour
    local greeting = (hour < 12 and "Good morning") or (hour < 18 and "Good afternoon") or "Good evening"
    local spend = math.floor(tonumber(m.attributes.spend) or 0)
    local text = string.format("%s %s, thank you for spending %d with us this year!", greeting, m.name, spend)
    if ctx.platform == "slack" then
      -- Slack formats *bold* (mrkdwn); elsewhere the stars would show.
      text = string.format("*%s %s*, thank you for spending %d with us this year!", greeting, m.name, spend)
    end
    return {
      text = text,
      buttons = { { title = "My rewards", payload = "REWARDS" } },
    }
  end,
}

-- An A/B test: two variants of one message (each a normal template body,
-- with its own locales and platform versions). A push of this template
-- sends every variant to an even share of the audience; with a `test`
-- (scripts/40_pushes.lua, or `pushd push create --test-share 20%
-- --test-wait 2h`) the test share goes first and the variant read most
-- goes to the rest. `render` may read ctx.variant.
template "spring_sale" {
  variants = {
    a = {
      en = { text = "Hi {{name|there}}, 20% off the new spring collection this week!" },
      zh = { text = "{{name|您好}}，春季新品本周八折！" },
    },
    b = {
      en = { text = "Hi {{name|there}}, you get early access to the spring collection before anyone else." },
      zh = { text = "{{name|您好}}，您可抢先选购春季新品（early access）。" },
    },
  },
}
