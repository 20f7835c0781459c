//! The control plane: the Unix socket server, its protocol types (shared with
//! the CLI), peer-credential authorization, and the CLI client.

pub mod auth;
pub mod client;
pub mod handlers;
pub mod protocol;
pub mod render;
pub mod server;
