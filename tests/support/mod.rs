//! Shared test machinery: mock platforms.

#[allow(dead_code)]
pub mod mocks;
