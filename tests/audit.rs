//! The audit's storage (issue 13): one key-value write per audited delivery, none for a
//! delivery no rule matched (unless `audit_unmatched`), batches read newest first by
//! listing their keys (the previous version's `audit/<n>` after them), pruned now and then.

mod support;

use remediator::audit::{MAX_BATCHES, PRUNE_EVERY};
use serde_json::{json, Value};
use support::*;

fn no_match(status: &str) -> Vec<u8> {
    alertmanager(status, &[("NoRuleForThis", None, &[])])
}

fn audit_keys(r: &Recorder) -> Vec<String> {
    r.kv.borrow()
        .keys()
        .filter(|k| k.starts_with("audit/"))
        .cloned()
        .collect()
}

/// POST `body`; the key-value writes it made.
fn writes_of(r: &Recorder, body: &[u8]) -> u64 {
    let before = r.kv_writes.get();
    let (status, report) = r.post("/", body);
    assert_eq!(status, 200, "{report}");
    r.kv_writes.get() - before
}

fn metrics_text(r: &Recorder) -> String {
    let resp = remediator::app::handle(
        &r.platform,
        http::Request::get("/metrics").body(vec![]).unwrap(),
    );
    assert_eq!(resp.status().as_u16(), 200);
    String::from_utf8(resp.body().clone()).unwrap()
}

/// A batch as the previous version wrote it (at `audit/<n>`, from the `audit/head` counter).
fn old_batch(r: &Recorder, n: i64, title: &str) {
    let batch = json!([{
        "delivery": n, "at": "2025-11-26T14:02:06.000Z", "at_ms": 1_764_165_726_000i64,
        "event": "acted", "occurrence": format!("alertmanager/{title}/s"), "title": title,
    }]);
    r.kv.borrow_mut()
        .insert(format!("audit/{n}"), serde_json::to_vec(&batch).unwrap());
    r.kv.borrow_mut()
        .insert("audit/head".into(), n.to_string().into_bytes());
}

fn titles(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| e["event"] != "received" && e["event"] != "matched")
        .map(|e| e["title"].as_str().unwrap())
        .collect()
}

fn logged_no_match(r: &Recorder) -> usize {
    r.logs
        .borrow()
        .iter()
        .filter(|l| l.contains("\"NoRuleForThis\" rule=- outcome=NoMatchingRule"))
        .count()
}

#[test]
fn a_delivery_no_rule_matches_is_logged_not_audited_nor_counted_no_write() {
    let r = Recorder::new();
    // The first delivery stores the rules' compiled entry (once per rules version).
    writes_of(&r, &no_match("firing"));
    assert_eq!(
        writes_of(&r, &no_match("firing")),
        0,
        "{:?}",
        r.kv_log.borrow()
    );
    assert_eq!(writes_of(&r, &no_match("resolved")), 0);
    let keys: Vec<String> = r.kv.borrow().keys().cloned().collect();
    assert!(keys.iter().all(|k| k.starts_with("rules/")), "{keys:?}");
    assert!(r.audit("").is_empty());
    let text = metrics_text(&r);
    assert!(
        !text.contains("no_matching_rule") && !text.contains("code=\"200\""),
        "{text}"
    );
    assert_eq!(logged_no_match(&r), 3);
}

#[test]
fn count_unmatched_counts_them_with_one_write_each() {
    let r = Recorder::new();
    r.set_var("count_unmatched", "true");
    // The first delivery also creates the metrics' generation key; count the next ones.
    writes_of(&r, &no_match("firing"));
    assert_eq!(
        writes_of(&r, &no_match("firing")),
        1,
        "the metrics increment only"
    );
    assert_eq!(writes_of(&r, &no_match("resolved")), 1);
    assert!(audit_keys(&r).is_empty(), "{:?}", audit_keys(&r));
    assert!(r.audit("").is_empty());
    assert!(
        metrics_text(&r).contains(r#"remediator_problems_total{outcome="no_matching_rule"} 3"#),
        "{}",
        metrics_text(&r)
    );
    assert_eq!(logged_no_match(&r), 3);
}

#[test]
fn a_delivery_with_anything_else_counts_its_unmatched_alerts_too() {
    let r = Recorder::new();
    // One alert no rule matches beside one that acts; then one rejected beside one
    // no rule matches (the rejected one is owed a count).
    let (status, _) = r.post(
        "/alertmanager",
        &alertmanager(
            "firing",
            &[("NoRuleForThis", None, &[]), ("cpu_usage", None, &[])],
        ),
    );
    assert_eq!(status, 200);
    let body = br#"{"version": "4", "alerts": [
        {"status": "firing", "labels": {"alertname": "NoRuleForThis"}},
        {"status": "firing", "labels": {}}]}"#;
    let (status, report) = r.post("/alertmanager", body);
    assert_eq!(
        (status, report["rejected"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{report}"
    );
    let text = metrics_text(&r);
    for series in [
        r#"remediator_problems_total{outcome="no_matching_rule"} 2"#,
        r#"remediator_problems_total{outcome="acted"} 1"#,
        r#"remediator_deliveries_total{route="/alertmanager",code="200"} 2"#,
    ] {
        assert!(text.contains(series), "{series}: {text}");
    }
}

#[test]
fn audit_unmatched_audits_them_again() {
    let r = Recorder::new();
    r.set_var("audit_unmatched", "true");
    writes_of(&r, &no_match("firing"));
    assert_eq!(
        writes_of(&r, &no_match("firing")),
        2,
        "metrics and one audit batch"
    );
    let events: Vec<_> = r
        .audit("")
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        events,
        [
            "no_matching_rule",
            "received",
            "no_matching_rule",
            "received"
        ]
    );
    assert_eq!(audit_keys(&r).len(), 2);
}

#[test]
fn a_delivery_with_a_decision_keeps_its_no_match_entries_in_one_batch() {
    let r = Recorder::new();
    let body = alertmanager(
        "firing",
        &[
            (
                "HighFailureRate",
                Some("Failure rate increase on carts"),
                &[],
            ),
            ("NoRuleForThis", None, &[]),
        ],
    );
    let (status, report) = r.post("/", &body);
    assert_eq!(status, 200, "{report}");
    let all = r.audit("");
    let by_event = |ev: &str| all.iter().find(|e| e["event"] == ev).cloned();
    let acted = by_event("acted").expect("the decision is audited");
    let unmatched = by_event("no_matching_rule").expect("the no-match entry is kept");
    assert_eq!(unmatched["title"], "NoRuleForThis");
    assert_eq!(acted["delivery"], unmatched["delivery"]);
    assert_eq!(audit_keys(&r).len(), 1, "one batch: {:?}", audit_keys(&r));
}

#[test]
fn an_audited_delivery_writes_one_audit_key_and_no_counter() {
    let r = Recorder::new();
    r.post("/", &failure_rate("firing"));
    let keys = audit_keys(&r);
    assert_eq!(keys.len(), 1, "{keys:?}");
    // audit/<13-digit ms>-<13-digit id>: sorts by time, unique without a counter.
    let (ms, id) = keys[0]["audit/".len()..].split_once('-').unwrap();
    assert_eq!((ms.len(), id.len()), (13, 13), "{keys:?}");
    let delivery = r.audit("")[0]["delivery"].as_i64().unwrap();
    assert_eq!(id.parse::<i64>().unwrap(), delivery);
    // A repeat of it is audited (already_handled) at the cost of one more key.
    r.post("/", &failure_rate("firing"));
    assert_eq!(audit_keys(&r).len(), 2);
    assert!(!r.kv.borrow().contains_key("audit/head"));
}

#[test]
fn batches_read_newest_first_and_the_previous_versions_after_them() {
    let r = Recorder::new();
    r.set_var("audit_unmatched", "true");
    old_batch(&r, 1, "Old1");
    old_batch(&r, 2, "Old2");
    // Two new deliveries in the same millisecond, then one later (the still clock of
    // the recorder: ids tie-break, and its ids count up).
    r.post("/", &alertmanager("firing", &[("New1", None, &[])]));
    r.post("/", &alertmanager("firing", &[("New2", None, &[])]));
    r.advance(5);
    r.post("/", &alertmanager("firing", &[("New3", None, &[])]));
    assert_eq!(
        titles(&r.audit("")),
        ["New3", "New2", "New1", "Old2", "Old1"]
    );
    // Filters still apply to both kinds.
    assert_eq!(titles(&r.audit("?outcome=acted")), ["Old2", "Old1"]);
    assert_eq!(titles(&r.audit("?limit=2")).len(), 1, "received + decision");
}

#[test]
fn pruning_keeps_the_newest_max_batches_and_drops_the_previous_versions_first() {
    let r = Recorder::new();
    r.set_var("audit_unmatched", "true");
    for n in 1..=MAX_BATCHES {
        old_batch(&r, n, &format!("Old{n}"));
    }
    // The recorder's ids count 1, 2, ...: delivery PRUNE_EVERY is the first to prune.
    for i in 1..PRUNE_EVERY {
        r.post(
            "/",
            &alertmanager("firing", &[(&format!("New{i}"), None, &[])]),
        );
    }
    assert_eq!(
        audit_keys(&r).len() as i64,
        MAX_BATCHES + PRUNE_EVERY - 1 + 1,
        "no pruning yet (+1: audit/head)"
    );
    let before = r.kv_writes.get();
    r.post("/", &alertmanager("firing", &[("NewLast", None, &[])]));
    // Its batch, its metrics, and ONE delete-many of the PRUNE_EVERY oldest batches
    // (one transaction, not one per batch).
    assert_eq!(r.kv_writes.get() - before, 2 + 1);
    let pruning = r
        .kv_log
        .borrow()
        .iter()
        .rev()
        .find(|w| w.starts_with("delete_many "))
        .cloned()
        .expect("no delete_many");
    let mut pruned: Vec<&str> = pruning["delete_many ".len()..].split(' ').collect();
    pruned.sort_by_key(|k| k["audit/".len()..].parse::<i64>().unwrap());
    let oldest: Vec<String> = (1..=PRUNE_EVERY).map(|n| format!("audit/{n}")).collect();
    assert_eq!(pruned, oldest);
    let keys = audit_keys(&r);
    assert_eq!(keys.len() as i64, MAX_BATCHES + 1, "{} keys", keys.len());
    let kv = r.kv.borrow();
    for n in 1..=PRUNE_EVERY {
        assert!(!kv.contains_key(&format!("audit/{n}")), "audit/{n} kept");
    }
    assert!(kv.contains_key(&format!("audit/{}", PRUNE_EVERY + 1)));
    // The previous version's counter is kept: an old replica during a rolling update
    // still takes ids from it.
    assert!(kv.contains_key("audit/head"));
    drop(kv);
    let shown = r.audit("?limit=100000");
    assert_eq!(titles(&shown).len() as i64, MAX_BATCHES);
    assert_eq!(titles(&shown)[0], "NewLast");
}

#[test]
fn delivery_ids_are_random_and_keep_tickets_in_range() {
    // Spin's shell draws them from wasi:random; a recorder whose "random" is huge
    // still gets an id below 2^43 (tickets are id * 4096 + seq < 2^56).
    let r = Recorder::new();
    r.post("/", &failure_rate("firing"));
    let id = r.audit("")[0]["delivery"].as_i64().unwrap();
    assert!((1..1 << 43).contains(&id), "{id}");
    // The next draw is all ones.
    r.random.set(u64::MAX - 1);
    assert_eq!(remediator::audit::next_delivery(&*r), (1 << 43) - 1);
}
