//! remediator: alert webhooks in, remediation rules applied.

pub mod app;
pub mod platform;

#[cfg(target_arch = "wasm32")]
mod spin;
