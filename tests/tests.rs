//! One integration-test crate (faster builds, shared helpers): each area of
//! pushd has a module folder here.

mod script;
mod support;
