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

/// The writes besides the metrics counters (one increment a delivery, more when a
/// series is new) and the rules cache (written once per rules version); those are
/// checked to be nothing else.
fn state_writes(w: &[String]) -> Vec<&str> {
    let (other, state): (Vec<&String>, Vec<&String>) = w
        .iter()
        .partition(|l| l.starts_with("increment metrics/") || l.starts_with("set rules/"));
    assert!(other.len() <= 8, "{other:?}");
    state.into_iter().map(String::as_str).collect()
}

fn metrics_writes(w: &[String]) -> usize {
    w.iter()
        .filter(|l| l.starts_with("increment metrics/"))
        .count()
}

/// A delivery's write log, with its report, after a warm-up of every kind (as
/// benches/writes.py measures): the steady state.
struct Run {
    r: Recorder,
    names: BTreeMap<String, String>,
}

impl Run {
    fn new() -> Run {
        let mut run = Run {
            r: Recorder::new(),
            names: BTreeMap::new(),
        };
        for body in [
            failure_rate("firing"),
            failure_rate("firing"),
            failure_rate("resolved"),
            cpu_usage_at("2026-11-26T15:00:00.000Z"),
        ] {
            assert_eq!(run.post(&body).0, 200);
        }
        run
    }

    fn post(&mut self, body: &[u8]) -> (u16, serde_json::Value, Vec<String>) {
        post(&self.r, body, &mut self.names)
    }
}

#[test]
fn a_first_flag_change_and_its_undo() {
    let r = Recorder::new();
    let mut names = BTreeMap::new();
    let (status, report, w) = post(&r, &failure_rate("firing"), &mut names);
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["acted".to_string()])
    );
    // Claim the occurrence (its lock word created), hold the flag (its lock word
    // created), send; then the closing record and the audit batch in one transaction.
    assert_eq!(
        state_writes(&w),
        [
            "increment o/1",
            "set o/1/#",
            "swap o/1",
            "increment t/2",
            "set t/2/#",
            "swap t/2",
            "set_many o/1/# audit/batch",
        ]
    );
    let (status, report, w) = post(&r, &failure_rate("resolved"), &mut names);
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["reverted".to_string()])
    );
    // Claim to revert, leave the flag as its last holder (restoring), restore, free
    // the flag; then the closing record and the audit batch, and the replaced values
    // deleted, each in one transaction.
    assert_eq!(
        state_writes(&w),
        [
            "set o/1/#",
            "swap o/1",
            "set t/2/#",
            "swap t/2",
            "set t/2/#",
            "swap t/2",
            "set_many o/1/# audit/batch",
            "delete_many o/1/# t/2/# t/2/#",
        ]
    );
}

#[test]
fn writes_per_delivery_kind_in_the_steady_state() {
    let mut run = Run::new();
    let starts = "2026-11-26T16:00:00.000Z";

    let (status, report, w) = run.post(&at(failure_rate("firing"), starts));
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["acted".to_string()])
    );
    assert_eq!(
        state_writes(&w),
        [
            "increment o/4",
            "set o/4/#",
            "swap o/4",
            "set t/2/#",
            "swap t/2",
            "set_many o/4/# audit/batch",
            "delete_many t/2/#",
        ]
    );
    assert_eq!((w.len(), metrics_writes(&w)), (8, 1), "{w:#?}");

    let (status, report, w) = run.post(&at(failure_rate("firing"), starts));
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["already_handled".to_string()])
    );
    assert_eq!(state_writes(&w), ["set_many audit/batch"]);
    assert_eq!((w.len(), metrics_writes(&w)), (2, 1), "{w:#?}");

    let (status, report, w) = run.post(&at(failure_rate("resolved"), starts));
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["reverted".to_string()])
    );
    assert_eq!(
        state_writes(&w),
        [
            "set o/4/#",
            "swap o/4",
            "set t/2/#",
            "swap t/2",
            "set t/2/#",
            "swap t/2",
            "set_many o/4/# audit/batch",
            "delete_many o/4/# t/2/# t/2/#",
        ]
    );
    assert_eq!((w.len(), metrics_writes(&w)), (9, 1), "{w:#?}");

    let (status, report, w) = run.post(&cpu_usage_at("2026-11-26T17:00:00.000Z"));
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["acted".to_string()])
    );
    assert_eq!(
        state_writes(&w),
        [
            "increment o/5",
            "set o/5/#",
            "swap o/5",
            "set_many o/5/# audit/batch",
        ]
    );
    assert_eq!((w.len(), metrics_writes(&w)), (5, 1), "{w:#?}");

    // A delivery no rule matches, firing or resolved: nothing (count_unmatched off).
    for status in ["firing", "resolved"] {
        let (code, report, w) = run.post(&alertmanager(status, &[("DiskFull", None, &[])]));
        assert_eq!(
            (code, outcomes(&report)),
            (200, vec!["no_matching_rule".to_string()])
        );
        assert!(w.is_empty(), "{w:#?}");
    }
}

#[test]
fn a_storm_on_one_flag_closes_every_claim_in_one_transaction() {
    let mut run = Run::new();
    let starts = "2026-11-26T18:00:00.000Z";
    let (status, report, w) = run.post(&at(storm("firing", 3), starts));
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["acted".to_string(); 3])
    );
    // Each alert claims its occurrence and joins the flag's holders; the flag is sent
    // once; every closing record, the audit batch, then every replaced value, at once.
    assert_eq!(
        state_writes(&w),
        [
            "increment o/4",
            "set o/4/#",
            "swap o/4",
            "set t/2/#",
            "swap t/2",
            "increment o/5",
            "set o/5/#",
            "swap o/5",
            "set t/2/#",
            "swap t/2",
            "increment o/6",
            "set o/6/#",
            "swap o/6",
            "set t/2/#",
            "swap t/2",
            "set_many o/4/# o/5/# o/6/# audit/batch",
            "delete_many t/2/# t/2/# t/2/#",
        ]
    );
    let flag_posts = |r: &Recorder| {
        r.posts()
            .iter()
            .filter(|s| s.url.contains("EnablePromotion"))
            .count()
    };
    let before = flag_posts(&run.r);
    let (status, report, w) = run.post(&at(storm("resolved", 3), starts));
    assert_eq!(
        (status, outcomes(&report)),
        (
            200,
            vec!["ignored".into(), "ignored".into(), "reverted".into()]
        )
    );
    assert_eq!(
        flag_posts(&run.r),
        before + 1,
        "restored once, by the last holder"
    );
    assert_eq!(
        state_writes(&w),
        [
            "set o/4/#",
            "swap o/4",
            "set t/2/#",
            "swap t/2",
            "set o/5/#",
            "swap o/5",
            "set t/2/#",
            "swap t/2",
            "set o/6/#",
            "swap o/6",
            "set t/2/#",
            "swap t/2",
            "set t/2/#",
            "swap t/2",
            "set_many o/4/# o/5/# o/6/# audit/batch",
            "delete_many o/4/# t/2/# o/5/# t/2/# o/6/# t/2/# t/2/#",
        ]
    );
}

/// Two actions: the first one's result is written before the second is sent (a
/// crash after the second send cannot make the first be sent again); the second
/// one's only with the closing writes.
#[test]
fn a_result_is_written_alone_only_before_more_is_sent() {
    let r = Recorder::new();
    r.set_rules(
        "rules:\n  - name: both\n    match: {title: HighFailureRate}\n    actions:\n      - {flag: EnablePromotion, state: off}\n      - {scale: '+1'}\n",
    );
    let mut names = BTreeMap::new();
    let (status, report, w) = post(&r, &failure_rate("firing"), &mut names);
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["acted".to_string()])
    );
    assert_eq!(
        state_writes(&w),
        [
            "increment o/1",
            "set o/1/#",
            "swap o/1",
            "increment t/2",
            "set t/2/#",
            "swap t/2",
            "set o/1/#",
            "set_many o/1/# audit/batch",
        ]
    );
    assert_eq!(r.posts().len(), 2, "the flag change and the scale call");
}

/// Two copies of one alert in one delivery: the second reads the record the first
/// left (held, not yet written), and neither waits on the delivery's own lease.
#[test]
fn a_later_alert_of_the_same_delivery_reads_the_held_record() {
    let r = Recorder::new();
    let one = String::from_utf8(failure_rate("firing")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    let mut twice = v.clone();
    let alert = v["alerts"][0].clone();
    twice["alerts"] = serde_json::json!([alert.clone(), alert]);
    let now = r.now.get();
    let mut names = BTreeMap::new();
    let (status, report, w) = post(&r, twice.to_string().as_bytes(), &mut names);
    assert_eq!(
        (status, outcomes(&report)),
        (
            200,
            vec!["acted".to_string(), "already_handled".to_string()]
        ),
        "{report}"
    );
    assert_eq!(r.now.get(), now, "no wait");
    assert_eq!(
        state_writes(&w),
        [
            "increment o/1",
            "set o/1/#",
            "swap o/1",
            "increment t/2",
            "set t/2/#",
            "swap t/2",
            "set_many o/1/# audit/batch",
        ]
    );
}

/// The closing writes fail: each problem whose result they held says so, as when its
/// closing write failed before; the status stays; what was sent is pending, and the
/// next delivery after the lease resends it.
#[test]
fn a_failed_flush_is_told_and_a_retry_resends() {
    let r = Recorder::new();
    r.kv_set_fails.borrow_mut().push("audit/".into());
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["acted".to_string()])
    );
    let detail = report["problems"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("WARNING: result not recorded (key-value store: audit/")
            && detail.ends_with("a retry resends what is pending"),
        "{detail}"
    );
    assert!(
        r.logs
            .borrow()
            .iter()
            .any(|l| l.contains("WARNING audit batch") && l.contains("not written")),
        "{:?}",
        r.logs.borrow()
    );
    r.kv_set_fails.borrow_mut().clear();
    let sets = |r: &Recorder| {
        r.posts()
            .iter()
            .filter(|s| s.url.contains("EnablePromotion/environments"))
            .count()
    };
    assert_eq!(sets(&r), 1);
    // Within the lease (and the skew), a retry waits, then answers in progress.
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(
        (status, outcomes(&report)),
        (503, vec!["in_progress".to_string()])
    );
    r.advance(8_000 + 5_000 + 5_000);
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(
        (status, outcomes(&report)),
        (200, vec!["acted".to_string()]),
        "{report}"
    );
    assert_eq!(sets(&r), 2, "resent");
    assert!(!r.flag("EnablePromotion", "production"));
}

/// A problem that must wait for another delivery's lease first writes what the
/// delivery holds: a lease covers the sends, not the waits.
#[test]
fn what_is_held_is_written_before_a_wait() {
    let r = Recorder::new();
    let mut names = BTreeMap::new();
    // Leave the cpu_usage occurrence claimed under a lease (its closing write failed).
    r.kv_set_fails.borrow_mut().push("audit/".into());
    let (status, _, _) = post(&r, &cpu_usage_at("2026-11-26T15:00:00.000Z"), &mut names);
    assert_eq!(status, 200);
    r.kv_set_fails.borrow_mut().clear();
    let both = {
        let mut a: serde_json::Value = serde_json::from_slice(&failure_rate("firing")).unwrap();
        let b: serde_json::Value =
            serde_json::from_slice(&cpu_usage_at("2026-11-26T15:00:00.000Z")).unwrap();
        a["alerts"] = serde_json::json!([a["alerts"][0].clone(), b["alerts"][0].clone()]);
        a
    };
    let (status, report, w) = post(&r, both.to_string().as_bytes(), &mut names);
    assert_eq!(
        (status, outcomes(&report)),
        (503, vec!["acted".to_string(), "in_progress".to_string()]),
        "{report}"
    );
    assert_eq!(
        state_writes(&w),
        [
            "increment o/2",
            "set o/2/#",
            "swap o/2",
            "increment t/3",
            "set t/3/#",
            "swap t/3",
            "set_many o/2/#",
            "set_many audit/batch",
        ]
    );
}

/// The overlay itself: reads see what is held (a held delete reads as absent), a
/// direct write supersedes it, an atomic operation on a held key writes it first, and
/// a flush is one set-many then one delete-many.
#[test]
fn the_overlay_reads_what_it_holds() {
    use remediator::deferred::Deferred;
    use remediator::platform::Platform;
    let r = Recorder::new();
    r.kv.borrow_mut().insert("gone".into(), b"old".to_vec());
    r.kv.borrow_mut().insert("k".into(), b"stored".to_vec());
    let d = Deferred::new(&r.platform);
    d.hold("k".into(), b"held".to_vec(), Some((0, "")));
    d.hold("n".into(), b"7".to_vec(), None);
    d.kv_delete_unread("gone").unwrap();
    assert_eq!(d.kv_get("k").unwrap().as_deref(), Some(&b"held"[..]));
    assert_eq!(d.kv_get("gone").unwrap(), None);
    let mut keys = d.kv_keys().unwrap();
    keys.sort();
    assert_eq!(keys, ["k", "n"]);
    assert_eq!(r.kv_writes.get(), 0, "nothing written yet");
    // An increment of a held key works on the held value, written first.
    assert_eq!(d.kv_increment("n", 1).unwrap(), 8);
    assert_eq!(*r.kv_log.borrow(), ["set n", "increment n"]);
    // A direct write supersedes what is held.
    d.hold("k2".into(), b"held".to_vec(), None);
    d.kv_set("k2", b"direct").unwrap();
    assert_eq!(d.kv_get("k2").unwrap().as_deref(), Some(&b"direct"[..]));
    d.flush().unwrap();
    assert_eq!(
        r.kv_log.borrow()[2..],
        ["set k2", "set_many k", "delete_many gone"]
    );
    assert_eq!(r.kv.borrow()["k"], b"held");
    assert_eq!(r.kv.borrow()["k2"], b"direct");
    assert!(!r.kv.borrow().contains_key("gone"));
    assert!(d.failures().is_empty());
    // A failed flush tells the problems whose results it held.
    d.hold("audit/x".into(), b"[]".to_vec(), Some((3, "; again")));
    r.kv_set_fails.borrow_mut().push("audit/".into());
    assert!(d.flush().is_err());
    let failures = d.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 3);
    assert!(
        failures[0].1.starts_with("WARNING: result not recorded (")
            && failures[0].1.ends_with("; again"),
        "{failures:?}"
    );
}
