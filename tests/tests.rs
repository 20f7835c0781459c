//! The one integration-test crate (see STYLE.md): shared helpers in
//! `support`, one module per area.

mod receipts;
mod support;
