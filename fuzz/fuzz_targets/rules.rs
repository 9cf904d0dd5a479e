//! The rules parser (all three formats) and matching against a fixed problem; the
//! one-pass parse must agree with the probing reference parse on every input.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use remediator::problem::{Problem, Source, Status};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = remediator::rules::parse(text);
    let reference = remediator::rules::parse_probed(text);
    assert_eq!(
        parsed
            .as_ref()
            .map(|s| format!("{:?} {:?}", s.format, s.rules)),
        reference
            .as_ref()
            .map(|s| format!("{:?} {:?}", s.format, s.rules)),
    );
    if let Ok(set) = parsed {
        let problem = Problem {
            source: Source::Alertmanager,
            status: Status::Firing,
            title: "cpu_usage".into(),
            summary: Some("Failure rate increase on carts".into()),
            labels: BTreeMap::from([("service".into(), "carts".into())]),
            annotations: BTreeMap::new(),
            starts_at: None,
            fingerprint: "f".into(),
            links: Default::default(),
        };
        let _ = set.find(&problem);
        for r in &set.rules {
            let _ = r.describe();
        }
    }
});
