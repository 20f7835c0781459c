//! One integration-test crate (faster builds, shared helpers). Every test
//! drives the real `pushd` binary over its real socket / HTTP / SQLite file.

mod support;

mod analytics;
mod channels;
mod config_cli;
mod control;
mod dispatch;
mod e2e;
mod links;
mod members;
mod receipts;
mod reliability;
mod reload;
mod script;
mod webhooks;
