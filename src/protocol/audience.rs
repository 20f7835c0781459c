//! Wire types of the `audience.*` commands: previews, saved audiences and
//! their lineage.

use crate::model::Routed;
use crate::model::{MemberId, Millis, PushId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudiencePreviewArgs {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Render with this template instead of the one a push names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceRetryArgs {
    pub push: String,
    pub name: String,
    /// "transient": only failures worth retrying as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<String>,
}

/// A page of audiences, by name: `after` is the `next` of the previous page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Audiences per page (default 50, at most 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceShowArgs {
    pub name: String,
    /// Sample members shown (default 10, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewSample {
    pub member_id: i64,
    pub channel: String,
    pub channel_user_id: String,
    pub name: String,
    pub locale: String,
    /// The routed channel and rendered message, or why it would be skipped.
    pub routed: Option<Routed>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreviewData {
    pub audience: String,
    pub template: Option<String>,
    /// Members the audience resolves to now (after `filter`), unsubscribed included.
    pub size: u64,
    pub subscribed: u64,
    /// `size` and `subscribed` are estimates: the audience's Lua filter ran
    /// on its first candidates only (a preview's budget), and the rest is
    /// extrapolated from the share it kept.
    #[serde(default)]
    pub estimated: bool,
    pub samples: Vec<PreviewSample>,
}

/// A saved audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceInfo {
    pub id: i64,
    pub name: String,
    /// The push it was made from (retry audiences).
    pub source_push_id: Option<PushId>,
    /// `transient` when only transient failures were taken.
    pub only_class: Option<String>,
    /// The outcome its members had in the source push (`sent_fail` for
    /// retry audiences).
    #[serde(default)]
    pub outcome: Option<String>,
    /// The other filters it was made with, e.g. `channel=wa locale=en`.
    #[serde(default)]
    pub filter: Option<String>,
    pub created_at: Millis,
    pub members: u64,
}

/// An audience as the Audiences page and `audience.list` show it: its
/// definition as written and where (script audiences), or its lineage
/// (saved audiences).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceSummary {
    pub name: String,
    /// "script" (defined in the scripts) or "saved" (made from a push).
    pub kind: String,
    pub description: Option<String>,
    /// The `where` as written (Lua); None for saved audiences, `{}` for
    /// an audience without one.
    #[serde(rename = "where")]
    pub where_text: Option<String>,
    /// A Lua `filter` refines what `where` selects.
    pub has_filter: bool,
    /// `file:line` of its definition.
    pub defined_at: Option<String>,
    /// Members it holds now (unsubscribed included); None when a Lua
    /// filter refines it (`audience.show` counts it exactly).
    pub size: Option<u64>,
    /// Members the `where` selects, before the Lua filter.
    pub matches_where: Option<u64>,
    /// Pushes defined in the scripts that send to it.
    pub pushes: Vec<String>,
    pub lineage: Option<Lineage>,
}

/// Where a saved audience came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The source push's name (None once that push is gone).
    pub source_push: Option<String>,
    pub source_push_id: Option<PushId>,
    /// The outcome its members had there (`sent_fail` for retry audiences).
    pub outcome: Option<String>,
    /// The other filters, e.g. `channel=wa locale=en`.
    pub filter: Option<String>,
    /// `transient` when only transient failures were taken.
    pub only: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceListData {
    pub audiences: Vec<AudienceSummary>,
    /// `after` for the next page; None on the last page.
    pub next: Option<String>,
}

/// A member as an audience's sample lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberSample {
    pub member_id: MemberId,
    pub channel: String,
    pub channel_user_id: String,
    pub name: String,
    pub locale: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceShowData {
    pub audience: AudienceSummary,
    /// Members it resolves to now (after `filter`), unsubscribed included.
    pub size: u64,
    pub subscribed: u64,
    /// `size` and `subscribed` are estimates (see `PreviewData::estimated`).
    #[serde(default)]
    pub estimated: bool,
    /// The first subscribed members, in id order.
    pub sample: Vec<MemberSample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryAudienceData {
    pub audience: AudienceInfo,
    pub source_push: String,
}
