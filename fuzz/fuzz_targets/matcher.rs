//! Label matcher parsing, and matching whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remediator::rules::matcher::Matcher;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (spec, value) = text.split_once('\n').unwrap_or((text, "carts"));
    if let Ok(m) = Matcher::parse(spec) {
        let _ = m.matches(Some(value));
        let _ = m.matches(None);
        let _ = m.to_string();
    }
});
