//! Every webhook parser: auto-detect and each route, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remediator::ingest::{ingest, Format};

fuzz_target!(|data: &[u8]| {
    for route in [
        None,
        Some(Format::Alertmanager),
        Some(Format::Grafana),
        Some(Format::Keptn),
    ] {
        if let Ok(got) = ingest(route, data) {
            for p in &got.problems {
                // Derived values must be computable for anything accepted.
                let _ = p.occurrence();
                let _ = p.titles().count();
            }
        }
    }
});
