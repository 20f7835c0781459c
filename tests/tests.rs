//! One integration-test crate (faster builds, shared helpers). Every test
//! drives the real `pushd` binary over its real socket / HTTP / SQLite file.

mod support;

mod analytics;
mod channels;
mod config_cli;
mod control;
mod control_auth;
mod dispatch;
mod e2e;
mod examples;
mod limits;
mod links;
mod members;
mod onboard;
mod panel;
mod policy;
mod rate;
mod receipts;
mod recipients;
mod reliability;
mod reload;
mod script;
mod storage;
mod upgrade;
mod variants;
mod webhooks;
