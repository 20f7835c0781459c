//! The one integration-test crate (ripgrep style): shared helpers in
//! `support/`, one module per area.

mod channels;
mod support;
