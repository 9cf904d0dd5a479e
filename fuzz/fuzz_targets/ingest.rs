//! Every webhook parser: auto-detect and each route, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remediator::ingest::{alertmanager, general, ingest, Format, IngestError};

fuzz_target!(|data: &[u8]| {
    // The typed fast path reads what the general path reads; it may only accept more
    // where the general one refuses the JSON itself (a value in a field it ignores).
    for format in [Format::Alertmanager, Format::Grafana] {
        if let Some(fast) = alertmanager::fast(format, data) {
            let slow = general(Some(format), data);
            if !matches!(slow, Err(IngestError::Malformed(_))) {
                assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
            }
        }
    }
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
