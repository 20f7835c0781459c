//! Where a tracked URL sits in a rendered message until its delivery is
//! known: one reserved character per link, U+FDD0 + the template's link
//! number (U+FDD0–U+FDDF are Unicode noncharacters, "for internal use").
//! A template renders the marker (`script::template`); just before the
//! send the dispatcher replaces it with the delivery's `/l/TOKEN` URL
//! ([`super::Minter`]), so nothing per recipient is written for a link.
//!
//! A template refuses literal text holding these characters. One that
//! reaches a message through a member's own data (a name) can only ever
//! become one of the push's registered links for that same recipient, or
//! nothing: never another URL.

use crate::model::{Message, Outbound};

const FIRST: u32 = 0xFDD0;
/// How many distinct markers exist (one per link a template may track).
pub const COUNT: u8 = 16;

/// The marker of template link `link` (taken modulo [`COUNT`]).
pub fn marker(link: u8) -> char {
    char::from_u32(FIRST + u32::from(link % COUNT)).unwrap_or('\u{FDD0}')
}

/// The link a character marks, if it is a marker.
pub fn link_of(c: char) -> Option<u8> {
    let v = u32::from(c).checked_sub(FIRST)?;
    (v < u32::from(COUNT)).then_some(v as u8)
}

/// Whether `s` holds any marker.
pub fn contains_marker(s: &str) -> bool {
    // Every marker is EF B7 9x in UTF-8: look for the lead bytes first.
    s.as_bytes().windows(2).any(|w| w == [0xEF, 0xB7]) && s.chars().any(|c| link_of(c).is_some())
}

/// Replaces every marker in `s` with `url(link)` (or nothing when None).
fn replace(s: &mut String, url: &mut impl FnMut(u8) -> Option<String>) {
    if !contains_marker(s) {
        return;
    }
    let mut out = String::with_capacity(s.len() + 64);
    for c in s.chars() {
        match link_of(c) {
            Some(link) => {
                if let Some(u) = url(link) {
                    out.push_str(&u);
                }
            }
            None => out.push(c),
        }
    }
    *s = out;
}

/// Replaces the markers of a message: text, button and quick-reply titles,
/// payloads and URLs, the image.
pub fn substitute_message(m: &mut Message, url: &mut impl FnMut(u8) -> Option<String>) {
    replace(&mut m.text, url);
    for b in m.buttons.iter_mut().chain(m.quick_replies.iter_mut()) {
        replace(&mut b.title, url);
        for s in [&mut b.payload, &mut b.url].into_iter().flatten() {
            replace(s, url);
        }
    }
    if let Some(img) = &mut m.image_url {
        replace(img, url);
    }
}

/// Replaces the markers of what is about to be sent (a platform template's
/// parameters too: a router may have copied the message text into them).
pub fn substitute(o: &mut Outbound, mut url: impl FnMut(u8) -> Option<String>) {
    match o {
        Outbound::Message { message, .. } => substitute_message(message, &mut url),
        Outbound::Template { params, .. } => {
            for p in params {
                replace(p, &mut url);
            }
        }
    }
}

/// What a tracked URL looks like where no delivery exists (load-time
/// checks of a template against the channels): the real shape and length.
pub fn sample_url(public_url: Option<&str>) -> String {
    format!(
        "{}/l/{}",
        public_url.unwrap_or("https://links.invalid"),
        "A".repeat(super::token::MIN_LEN)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Button;

    #[test]
    fn markers_round_trip_and_are_replaced_everywhere() {
        for l in 0..COUNT {
            assert_eq!(link_of(marker(l)), Some(l));
        }
        assert_eq!(link_of('a'), None);
        assert_eq!(link_of('\u{FDE0}'), None);
        let mut o = Outbound::Message {
            message: Message {
                text: format!("Sale {} and {} ok", marker(0), marker(3)),
                buttons: vec![Button {
                    title: "Shop".into(),
                    payload: None,
                    url: Some(marker(1).to_string()),
                }],
                quick_replies: vec![],
                image_url: None,
            },
            tag: None,
        };
        substitute(&mut o, |l| (l < 2).then(|| format!("https://t/{l}")));
        let Outbound::Message { message, .. } = o else {
            unreachable!()
        };
        // Link 3 is unknown here: its marker is dropped, never kept.
        assert_eq!(message.text, "Sale https://t/0 and  ok");
        assert_eq!(message.buttons[0].url.as_deref(), Some("https://t/1"));
        assert!(!contains_marker("plain text, even \u{FDFA}"));
        assert!(contains_marker("x\u{FDD5}"));
    }
}
