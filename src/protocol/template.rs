//! Wire types of `template.list`: templates rendered for sample members.

use super::PreviewSample;
use serde::{Deserialize, Serialize};

/// A page of templates, by name, each rendered for sample members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Templates per page (default 10, at most 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A template with each of its renderings for sample members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub name: String,
    pub defined_at: String,
    /// Locales of its generic tables.
    pub locales: Vec<String>,
    /// Platforms with their own version, and that version's locales.
    pub platform_versions: Vec<PlatformVersion>,
    /// A `render` function makes its messages.
    pub has_render: bool,
    /// One rendering per configured platform × locale.
    pub samples: Vec<TemplateSample>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlatformVersion {
    pub platform: String,
    pub locales: Vec<String>,
    /// A channel of this platform is configured (else the version is only
    /// checked against the platform's rules at load).
    pub configured: bool,
}

/// The template as one sample member gets it: rendered and routed, exactly
/// as `audience preview` (and a push) does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateSample {
    pub platform: String,
    pub locale: String,
    /// A real member of that channel and locale; false: a made-up "Sample
    /// Member" (no such member among the channel's first ones).
    pub real_member: bool,
    pub sample: PreviewSample,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateListData {
    /// The live generation the templates come from.
    pub generation: i64,
    pub templates: Vec<TemplateInfo>,
    /// `after` for the next page; None on the last page.
    pub next: Option<String>,
}
