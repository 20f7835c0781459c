//! The control socket transport: the Unix socket server, peer-credential
//! authorization, the CLI client and its terminal rendering. The wire types
//! are `crate::protocol`; the commands behind them are `crate::commands`.

pub mod auth;
pub mod channel_cli;
pub mod client;
pub mod render;
pub mod server;
