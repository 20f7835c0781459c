//! `[links]`: tracked links (`{{track "…"}}`, `track = true` buttons) — the
//! public address their `/l/TOKEN` URLs start with, what a click records,
//! and how long after a send a request counts as the platform's preview.

use crate::util::duration;
use serde::Deserialize;
use std::time::Duration;

/// What a click on a tracked link records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Privacy {
    /// The click is an interaction of the recipient who clicked (it moves
    /// them into Read & Interacted / Interacted Only), and the per-link counts.
    #[default]
    Individual,
    /// Per-link counts only; nothing about who clicked.
    Anonymous,
    /// Redirect and record nothing.
    Off,
}

impl Privacy {
    pub fn as_str(self) -> &'static str {
        match self {
            Privacy::Individual => "individual",
            Privacy::Anonymous => "anonymous",
            Privacy::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// The public http(s) address that reaches the HTTP listener; tracked
    /// URLs are sent as `<public_url>/l/TOKEN`. Normalised without a
    /// trailing `/`. Templates that track links need it.
    pub public_url: Option<String>,
    pub privacy: Privacy,
    /// Track every URL button of template tables (a button's own `track`
    /// wins).
    pub track_buttons: bool,
    /// A request this soon after the message was sent is the platform
    /// fetching a preview, not a person.
    #[serde(with = "duration::serde_human")]
    pub preview_window: Duration,
}

impl Default for LinksConfig {
    fn default() -> Self {
        LinksConfig {
            public_url: None,
            privacy: Privacy::Individual,
            track_buttons: false,
            preview_window: Duration::from_secs(2),
        }
    }
}

impl LinksConfig {
    /// Checks `public_url` (an http(s) URL without query or fragment) and
    /// drops its trailing `/`. Errors are (field, message).
    pub(super) fn validate(&mut self, http_enabled: bool) -> Result<(), (String, String)> {
        let Some(url) = &self.public_url else {
            return Ok(());
        };
        let field = || "links.public_url".to_string();
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            (
                field(),
                format!("{url:?} is not a URL like \"https://go.example.com\" ({e})"),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err((
                field(),
                format!("{url:?} must be an http(s) address like \"https://go.example.com\""),
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err((
                field(),
                format!(
                    "{url:?} must not have a query or fragment: links are <public_url>/l/TOKEN"
                ),
            ));
        }
        if !http_enabled {
            return Err((
                field(),
                "tracked links are answered by the HTTP listener; set [http] enabled = true (or remove public_url)".into(),
            ));
        }
        self.public_url = Some(parsed.as_str().trim_end_matches('/').to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/pushd/config.toml"))
    }

    #[test]
    fn defaults_and_a_normalised_public_url() {
        let c = parse("").unwrap();
        assert_eq!(c.links.public_url, None);
        assert_eq!(c.links.privacy, super::Privacy::Individual);
        assert_eq!(c.links.preview_window, std::time::Duration::from_secs(2));
        let c =
            parse("[links]\npublic_url = \"https://go.example.com/p/\"\nprivacy = \"anonymous\"\n")
                .unwrap();
        assert_eq!(
            c.links.public_url.as_deref(),
            Some("https://go.example.com/p")
        );
        assert_eq!(c.links.privacy, super::Privacy::Anonymous);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, words) in [
            ("public_url = \"ftp://x.example\"", "http(s)"),
            ("public_url = \"go.example.com\"", "not a URL"),
            ("public_url = \"https://x.example/?a=1\"", "query"),
            ("privacy = \"sometimes\"", "privacy"),
            ("preview_window = \"soon\"", "preview_window"),
        ] {
            // The key is named by its field or by its line.
            let e = parse(&format!("[links]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                (e.contains("links.") || e.contains("line 2")) && e.contains(words),
                "{text}: {e}"
            );
        }
        let e = parse("[http]\nenabled = false\n[links]\npublic_url = \"https://x.example\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("links.public_url") && e.contains("[http] enabled"),
            "{e}"
        );
    }
}
