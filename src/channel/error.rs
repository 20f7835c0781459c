//! What goes wrong in a channel adapter before anything is sent: an instance
//! that cannot be built from its `[channels.<name>]` table ([`ChannelError`]),
//! and a message a platform's rules refuse ([`RuleError`]).

/// Why a channel instance (or the HTTP client they share) cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A setting the kind needs is missing or empty.
    #[error("channels.{channel}.{key}: required for this channel kind")]
    MissingSetting { channel: String, key: &'static str },
    #[error("channels.{channel}.token: the token has characters an HTTP header cannot carry")]
    TokenNotHeaderSafe { channel: String },
    #[error("channels.{channel}.webhook_secret: the part after `whsec_` is not valid base64")]
    WebhookSecretNotBase64 { channel: String },
    /// A configured URL that does not parse (config validation checks URLs
    /// already; the registry names the channel).
    #[error("{url:?} is not a valid URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
}

/// A message a platform's rules refuse: the platform and the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{platform}: {rule}")]
pub struct RuleError {
    /// The platform as people write it ("WhatsApp", "Instagram", "custom").
    pub platform: &'static str,
    pub rule: Rule,
}

/// One rule of a platform's message limits; the message says what the limit is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("{what} has {count} characters; the limit is {max}: {preview:?}")]
    TooManyChars {
        what: String,
        count: usize,
        max: usize,
        preview: String,
    },
    #[error("{what} is {len} bytes long in UTF-8; the limit is {max} bytes: {preview:?}")]
    TooManyBytes {
        what: String,
        len: usize,
        max: usize,
        preview: String,
    },
    #[error("{count} {what}; the limit is {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{what} {url:?} is not an http(s) URL")]
    NotHttpUrl { what: &'static str, url: String },
    #[error("quick reply {0:?} has a url; quick replies post back, use a button for links")]
    QuickReplyWithUrl(String),
    #[error("the message is empty (no text, image or buttons)")]
    EmptyMessage,
    #[error(
        "{0} has no pre-approved message templates; send a free-form message (`kind = \"message\"`) on this channel"
    )]
    NoTemplates(&'static str),
    /// A rule of one platform alone, in its own words.
    #[error("{0}")]
    Other(String),
}

impl Rule {
    /// The rule broken on `platform`.
    pub fn on(self, platform: &'static str) -> RuleError {
        RuleError {
            platform,
            rule: self,
        }
    }
}
