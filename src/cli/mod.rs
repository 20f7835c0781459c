//! The `pushd` command line, binary only: its grammar (`args`), the request
//! each client subcommand sends (`request`) and what it prints (`reply`).
//! The protocol types themselves are the library's (`pushd::protocol`).

pub mod args;
pub mod reply;
pub mod request;
