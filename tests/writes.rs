//! Durable key-value writes per delivery (issue 13): under Spin each write (set,
//! delete, compare-and-swap, increment, and a `set_many` as one transaction) is a
//! durable transaction, so the exact writes each kind of delivery makes are pinned
//! here, in order, from the platform's write log.

mod support;

use std::collections::BTreeMap;

use support::*;

/// The write log from `from` on, with keys named by kind and order of appearance
/// (`o/1`: the first occurrence cell seen, `t/1`: the first target cell), tickets as
/// `#` and audit batches as `audit/batch`.
fn writes_since(r: &Recorder, from: usize, names: &mut BTreeMap<String, String>) -> Vec<String> {
    r.kv_log.borrow()[from..]
        .iter()
        .map(|line| {
            let (op, keys) = line.split_once(' ').unwrap();
            let keys: Vec<String> = keys.split(' ').map(|k| name(k, names)).collect();
            format!("{op} {}", keys.join(" "))
        })
        .collect()
}

fn name(key: &str, names: &mut BTreeMap<String, String>) -> String {
    if key.starts_with("audit/") {
        return "audit/batch".into();
    }
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [kind @ ("o" | "t" | "r" | "b"), hash, rest @ ..] => {
            let full = format!("{kind}/{hash}");
            let n = names.len();
            let named = names
                .entry(full)
                .or_insert_with(|| format!("{kind}/{}", n + 1))
                .clone();
            match rest {
                [] => named,
                [_ticket] => format!("{named}/#"),
                _ => key.into(),
            }
        }
        _ => key.into(),
    }
}

/// POST `body`: its status, report and writes.
fn post(
    r: &Recorder,
    body: &[u8],
    names: &mut BTreeMap<String, String>,
) -> (u16, serde_json::Value, Vec<String>) {
    let from = r.kv_log.borrow().len();
    let before = r.kv_writes.get();
    let (status, report) = r.post("/", body);
    let writes = writes_since(r, from, names);
    assert_eq!(r.kv_writes.get() - before, writes.len() as u64);
    (status, report, writes)
}

fn at(body: Vec<u8>, starts: &str) -> Vec<u8> {
    String::from_utf8(body)
        .unwrap()
        .replace("2026-11-26T14:02:06.305Z", starts)
        .into_bytes()
}

/// `n` alerts of the tutorial's failure-rate rule, each its own occurrence, that all
/// hold the one flag (`EnablePromotion` off).
fn storm(status: &str, n: usize) -> Vec<u8> {
    let services: Vec<String> = (0..n).map(|i| format!("svc{i}")).collect();
    let labels: Vec<[(&str, &str); 1]> =
        services.iter().map(|s| [("service", s.as_str())]).collect();
    let alerts: Vec<TestAlert> = labels
        .iter()
        .map(|l| ("HighFailureRate", Some("Failure rate increase"), &l[..]))
        .collect();
    alertmanager(status, &alerts)
}

#[test]
fn print_them() {
    let r = Recorder::new();
    let mut names = BTreeMap::new();
    for (what, body) in [
        ("warm act flag", failure_rate("firing")),
        ("warm resend", failure_rate("firing")),
        ("warm revert", failure_rate("resolved")),
        ("warm scale", cpu_usage_at("2026-11-26T15:00:00.000Z")),
        (
            "act flag",
            at(failure_rate("firing"), "2026-11-26T16:00:00.000Z"),
        ),
        (
            "resend",
            at(failure_rate("firing"), "2026-11-26T16:00:00.000Z"),
        ),
        (
            "revert",
            at(failure_rate("resolved"), "2026-11-26T16:00:00.000Z"),
        ),
        ("scale", cpu_usage_at("2026-11-26T17:00:00.000Z")),
        (
            "storm 3",
            at(storm("firing", 3), "2026-11-26T18:00:00.000Z"),
        ),
        (
            "storm 3 resolved",
            at(storm("resolved", 3), "2026-11-26T18:00:00.000Z"),
        ),
    ] {
        let (status, report, w) = post(&r, &body, &mut names);
        println!(
            "{what}: {status} {} {} writes {w:#?}",
            outcomes(&report).join(","),
            w.len()
        );
    }
}
