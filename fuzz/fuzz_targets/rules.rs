//! The rules parser (all three formats) and matching against a fixed problem; the
//! one-pass parse must agree with the probing reference parse on every input, and the
//! rules cache's entry with the parse.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use remediator::problem::{Problem, Source, Status};
use remediator::rules::compiled;

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
        let found = set.find(&problem);
        for r in &set.rules {
            let _ = r.describe();
        }
        // The rules cache's entry: the same verdict and rules as the parse, and a
        // damaged copy (bytes chosen by the input flipped) never panics.
        let hash = compiled::hash128(data);
        let entry = compiled::encode(&set, &hash, 0);
        let view = compiled::View::open(entry.clone(), &hash).expect("open");
        let cached = view.find(&problem).expect("find");
        assert_eq!(
            found.map(|r| format!("{r:?}")),
            cached.map(|(_, r)| format!("{r:?}"))
        );
        let all = view.decode_all().expect("decode_all");
        assert_eq!(format!("{:?}", all.rules), format!("{:?}", set.rules));
        let mut damaged = entry;
        for (i, b) in data.iter().take(8).enumerate() {
            let at = (usize::from(*b) * 7919 + i * 104_729) % damaged.len();
            damaged[at] ^= 1 << (i % 8);
        }
        if let Ok(view) = compiled::View::open(damaged, &hash) {
            let _ = view.find(&problem);
            let _ = view.decode_all();
        }
    }
});
