//! remediator: alert webhooks in (Alertmanager, Grafana, Keptn), remediation rules
//! applied (Unleash feature flags, scaling webhooks), a JSON report out.
//!
//! This crate is the pure core over the [`platform::Platform`] trait, tested natively;
//! it has no Spin types. The Spin shell is the `remediator-component` crate (component/).

pub mod actions;
pub mod app;
pub mod audit;
pub mod audit_page;
pub mod auth;
pub mod claim;
pub mod config;
pub mod deferred;
pub mod delivery;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod platform;
pub mod problem;
pub mod remediate;
pub mod report;
pub mod rules;
pub mod rules_source;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
