//! The handler's earlier home, kept so that callers outside the crate (the CLI, the
//! simulation, the tests, the benchmarks) keep their paths; the HTTP layer is
//! [`crate::http`].

pub use crate::http::{handle, MAX_ALERTS, MAX_BODY_BYTES};
