//! Webhook handling through the library's public entry point
//! (`receipts::webhook::handle`), with requests built exactly as the
//! end-to-end tests build them: the support fixtures, signed by the support
//! helpers (an implementation independent of the daemon's own).

mod webhook;
