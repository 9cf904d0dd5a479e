//! remediator-sim: a deterministic simulation harness for remediator's handler.
//!
//! Black-box over `remediator::app::handle` and the `Platform` trait only: several
//! replicas (with skewed clocks) run webhook deliveries on their own OS threads, but
//! one at a time; every key-value, HTTP and sleep call is a scheduling point where a
//! seeded scheduler picks who runs next, may crash the caller, and advances simulated
//! time. The key-value store behaves like Spin's SQLite or Redis store; Unleash (on/off
//! and `flexibleRollout` percentages) and the scaling receiver are simulated with faults; Alertmanager repeats, retries,
//! duplicates (HA) and resolves. After every schedule the invariants in
//! [`invariants`] are checked on what was observed from the outside.
//!
//! One seed and one store mode determine a schedule completely, so every violation
//! comes with a one-line replay command.

pub mod campaign;
pub mod growth;
pub mod invariants;
pub mod scenario;
pub mod sched;
pub mod world;

pub use campaign::{campaign, replay_command, CampaignConfig, Summary};
pub use sched::run_schedule;
pub use world::Store;
