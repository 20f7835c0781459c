//! Wire types of `panel.login` and `panel.logout_all`: web panel sessions.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelLoginArgs {
    /// A read-only session instead of an admin one.
    #[serde(default)]
    pub viewer: bool,
    /// How long the link stays usable, e.g. "15m" (default 15m, at most 7d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelLogoutAllArgs {}

/// A one-time panel login link.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PanelLoginData {
    /// `http://HOST/login/TOKEN`: works once, until `expires_at`.
    pub url: String,
    pub role: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PanelLogoutAllData {
    pub sessions_ended: u64,
}
