//! Small helpers used across modules: human durations and aligned text tables.

pub mod duration;
pub mod table;
