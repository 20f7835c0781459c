//! Wire types of `members.import` and `store.backup`: data into and out of
//! the database.

use crate::import::ImportReport;
pub use crate::store::BackupReport as BackupData;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersImportArgs {
    /// A file the daemon reads (absolute path; the CLI resolves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Or the rows themselves (CSV with header, or JSON lines), for small imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default)]
    pub skip_invalid: bool,
}

/// `store.backup`: a consistent copy of the live database, written by the
/// daemon to `path`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreBackupArgs {
    /// Where the daemon writes the copy (absolute; the CLI resolves it).
    pub path: String,
    /// Replace `path` if it exists.
    #[serde(default)]
    pub force: bool,
}

pub type ImportData = ImportReport;
