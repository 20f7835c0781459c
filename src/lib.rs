//! pushd: a push-messaging daemon for chatbot operators.
//!
//! Audiences, templates and routing live in Lua scripts (`script`); a fixed
//! core schedules and sends (`dispatch`) through channel adapters (`channel`),
//! records every outcome in SQLite (`store`), ingests receipts (`receipts`),
//! counts clicks on tracked links (`links`) and reports (`analytics`).
//! Operators steer it over a Unix socket (`control`)
//! and watch it in a browser (`panel`).

pub mod alerts;
pub mod analytics;
pub mod channel;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dispatch;
pub mod http;
pub mod import;
pub mod links;
pub mod metrics;
pub mod model;
pub mod panel;
pub mod protocol;
pub mod receipts;
pub mod script;
pub mod store;
pub mod util;
pub mod variants;
