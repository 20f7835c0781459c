//! Wire types of `push.recipients` and `audience.from_push`: a push's
//! recipients, filtered by what happened to them.

use serde::{Deserialize, Serialize};

/// Which recipients of a push: the filter fields `push.recipients` and
/// `audience.from_push` share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientFilter<'a> {
    pub outcome: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub locale: Option<&'a str>,
    pub error_class: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub variant: Option<&'a str>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRecipientsArgs {
    pub push: String,
    /// read_and_interacted, read_only, interacted_only, clicked,
    /// not_read_or_interacted, sent_fail, skipped, cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Only recipients of this A/B variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Page size (default 50, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceFromPushArgs {
    pub push: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl AudienceFromPushArgs {
    /// The recipients `listed` selects (all pages), saved as audience `name`.
    pub fn of(listed: PushRecipientsArgs, name: String) -> AudienceFromPushArgs {
        AudienceFromPushArgs {
            push: listed.push,
            name,
            outcome: listed.outcome,
            channel: listed.channel,
            locale: listed.locale,
            error_class: listed.error_class,
            error_code: listed.error_code,
            variant: listed.variant,
        }
    }
}

impl PushRecipientsArgs {
    pub fn filter(&self) -> RecipientFilter<'_> {
        RecipientFilter {
            outcome: self.outcome.as_deref(),
            channel: self.channel.as_deref(),
            locale: self.locale.as_deref(),
            error_class: self.error_class.as_deref(),
            error_code: self.error_code.as_deref(),
            variant: self.variant.as_deref(),
        }
    }
}

impl AudienceFromPushArgs {
    pub fn filter(&self) -> RecipientFilter<'_> {
        RecipientFilter {
            outcome: self.outcome.as_deref(),
            channel: self.channel.as_deref(),
            locale: self.locale.as_deref(),
            error_class: self.error_class.as_deref(),
            error_code: self.error_code.as_deref(),
            variant: self.variant.as_deref(),
        }
    }
}

/// One page of a push's recipients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipientsData {
    pub push: String,
    /// Recipients matching the filter, when countable without a scan
    /// (outcome and error filters); None with a channel or locale filter.
    pub total: Option<u64>,
    pub recipients: Vec<RecipientInfo>,
    /// Cursor for the next page (`after`); None on the last page.
    pub next: Option<String>,
}

/// A recipient and what happened to its message, with times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipientInfo {
    pub delivery_id: i64,
    pub member_id: i64,
    pub channel: String,
    pub channel_user_id: String,
    pub name: String,
    pub locale: String,
    /// The report slice (or skipped / cancelled); None while pending.
    pub outcome: Option<String>,
    pub state: String,
    pub attempts: u32,
    pub timeline: Timeline,
    pub error: Option<RecipientError>,
    pub skip_reason: Option<String>,
    /// The A/B variant it was (or will be) sent; absent without variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// The recipient's timeline (RFC 3339 times, absent when it did not happen).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// When the push froze its audience (the recipient was queued).
    pub queued: Option<String>,
    pub sent: Option<String>,
    pub delivered: Option<String>,
    pub read: Option<String>,
    pub interacted: Option<String>,
    /// What the interaction carried (reply text or button payload).
    pub interaction: Option<String>,
    pub failed: Option<String>,
}

/// Why a recipient failed, in the platform's words.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipientError {
    pub class: String,
    pub code: String,
    pub message: String,
}
