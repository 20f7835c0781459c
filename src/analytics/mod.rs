//! Push analytics: the key indicators (counts and percentages), failure
//! inspection, the per-recipient export, the retry audience, and the report
//! renderings (table + terminal bars, JSON, CSV, self-contained HTML with an
//! SVG pie chart).

pub mod ab;
pub mod ab_render;
pub mod export;
pub mod render;
pub mod report;

pub use report::{Percentages, Report, build};
