//! Telling a person's click from a machine's preview. Chat platforms fetch
//! every link in a message to draw its preview card, often the moment the
//! message arrives: counted as clicks, those fetches would make everyone
//! "interacted". A request is a preview when it is a HEAD, when it comes
//! from a known link-preview fetcher (by User-Agent), or when it arrives
//! within `[links] preview_window` of the send (decided in the store, which
//! knows the send time).

/// User-Agent fragments (lower case) of link-preview fetchers. WhatsApp's
/// is `WhatsApp/2.x`; in-app browsers (Messenger's `FBAN`, WeChat's
/// `MicroMessenger`, Telegram's and WhatsApp's handoff to the system
/// browser) are people and are not listed.
const FETCHERS: &[&str] = &[
    "slackbot",
    "slack-imgproxy",
    "whatsapp/",
    "telegrambot",
    "facebookexternalhit",
    "facebot",
    "twitterbot",
    "linkedinbot",
    "discordbot",
    "skypeuripreview",
    "line-poker",
    "kakaotalk-scrap",
    "viber",
    "redditbot",
    "embedly",
    "iframely",
    "vkshare",
    "pinterestbot",
    "google-pagerenderer",
    "bingpreview",
];

/// Whether a request is a preview fetch by what it says about itself:
/// HEAD, a listed fetcher, or no User-Agent at all (every browser sends one).
pub fn is_fetch(head: bool, user_agent: Option<&str>) -> bool {
    if head {
        return true;
    }
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else {
        return true;
    };
    // One lower-case copy, then the standard library's substring search
    // (vectorised): a byte-by-byte case-insensitive scan for each fetcher
    // cost more than recording the click.
    let ua = ua.to_ascii_lowercase();
    FETCHERS.iter().any(|f| ua.contains(f))
}

#[cfg(test)]
mod tests {
    use super::is_fetch;

    #[test]
    fn fetchers_head_and_people() {
        for ua in [
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "WhatsApp/2.23.20.0 A",
            "TelegramBot (like TwitterBot)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Twitterbot/1.0",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        ] {
            assert!(is_fetch(false, Some(ua)), "{ua}");
        }
        assert!(is_fetch(false, None));
        assert!(is_fetch(false, Some("  ")));
        let browser = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert!(!is_fetch(false, Some(browser)));
        assert!(is_fetch(true, Some(browser)));
        let wechat = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 Chrome/116.0 Mobile Safari/537.36 MicroMessenger/8.0.40";
        assert!(!is_fetch(false, Some(wechat)));
    }
}
