//! Acting once, remembering, escalating and undoing: repeats, duplicates, races,
//! cooldowns, the circuit breaker, ladders, revert on resolve, dry-run, audit.

mod support;

use serde_json::{json, Value};
use support::*;

const FLAG_URL: &str =
    "http://unleash.test:4242/api/admin/projects/default/features/EnablePromotion";

fn failure_rate(status: &str) -> Vec<u8> {
    failure_rate_summarized(status, "Failure rate increase")
}

fn outcome(report: &Value) -> &str {
    report["problems"][0]["outcome"].as_str().unwrap()
}

fn detail(report: &Value) -> &str {
    report["problems"][0]["detail"].as_str().unwrap()
}

/// The `value` of each call to the scaling webhook, in order.
fn scale_values(r: &Recorder) -> Vec<Value> {
    r.posts()
        .iter()
        .filter(|s| s.url.ends_with("/scale"))
        .map(|s| s.json()["value"].clone())
        .collect()
}

fn post_urls(r: &Recorder) -> Vec<String> {
    r.posts().into_iter().map(|s| s.url).collect()
}

#[test]
fn repeated_firing_acts_once() {
    let r = Recorder::new();
    let (_, first) = r.post("/alertmanager", &failure_rate("firing"));
    assert_eq!(outcome(&first), "acted");
    for _ in 0..5 {
        r.advance(60_000);
        let (status, again) = r.post("/alertmanager", &failure_rate("firing"));
        assert_eq!(status, 200);
        assert_eq!(outcome(&again), "already_handled");
        assert_eq!(again["problems"][0]["detail"], "already handled");
        // A pointer to the first handling.
        assert_eq!(again["problems"][0]["first_handled"]["delivery"], 1);
        assert!(again["problems"][0]["actions"]
            .as_array()
            .unwrap()
            .is_empty());
    }
    assert_eq!(
        post_urls(&r),
        [format!("{FLAG_URL}/environments/production/off")]
    );
}

#[test]
fn a_new_occurrence_of_the_same_alert_acts_again() {
    let r = Recorder::new();
    r.post("/", &failure_rate("firing"));
    r.set_flag("EnablePromotion", "production", true);
    let later = String::from_utf8(failure_rate("firing"))
        .unwrap()
        .replace("2026-11-26T14:02:06.305Z", "2026-11-26T18:00:00Z");
    let (_, report) = r.post("/", later.as_bytes());
    assert_eq!(outcome(&report), "acted");
    assert_eq!(r.posts().len(), 2);
}

const OCCURRENCE: &str = "alertmanager/fp0HighFailureRate/2026-11-26T14:02:06.305Z";

fn occ_key() -> String {
    remediator::claim::occurrence_key(OCCURRENCE)
}

/// Publish `record` in a cell as another delivery would, under `ticket`.
fn cell_entries(key: &str, ticket: i64, record: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    vec![
        (format!("{key}/{ticket}"), record),
        (key.to_string(), ticket.to_string().into_bytes()),
    ]
}

fn put_cell(r: &Recorder, key: &str, ticket: i64, record: Vec<u8>) {
    for (k, v) in cell_entries(key, ticket, record) {
        r.kv.borrow_mut().insert(k, v);
    }
}

/// Another delivery is acting on the occurrence (ticket 99) under a lease of
/// `lease_ms` from now.
fn acting_elsewhere(r: &Recorder, lease_ms: i64) {
    let now = r.now.get();
    put_cell(
        r,
        &occ_key(),
        99,
        record("acting", now, Some(now + lease_ms)),
    );
}

/// An occurrence record in `phase`; `lease_until` set for acting/reverting.
fn record(phase: &str, at_ms: i64, lease_until: Option<i64>) -> Vec<u8> {
    let done = phase == "done";
    let state = if done { "applied" } else { "pending" };
    json!({"occurrence": OCCURRENCE, "rule": "Failure rate increase", "phase": phase,
           "lease": lease_until.map(|u| json!({"ticket": 99, "until_ms": u})),
           "first_handled_ms": done.then_some(at_ms), "first_audit": done.then_some(7),
           "expires_ms": at_ms + 86_400_000,
           "actions": [{"step": 0, "state": state, "revert": true, "at_ms": at_ms,
               "taken": {"kind": "flag", "flag": "EnablePromotion", "project": "default",
                         "environment": "production", "enabled": false}}]})
    .to_string()
    .into_bytes()
}

#[test]
fn racing_duplicate_waits_for_the_winner_and_does_not_act() {
    let r = Recorder::new();
    // A concurrent delivery holds the lease and finishes while we wait.
    let now = r.now.get();
    acting_elsewhere(&r, 13_000);
    r.during_first_wait.borrow_mut().extend(cell_entries(
        &occ_key(),
        100,
        record("done", now, None),
    ));
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(outcome(&report), "already_handled");
    assert_eq!(report["problems"][0]["first_handled"]["delivery"], 7);
    assert!(r.sent().is_empty(), "the loser sends nothing");
}

#[test]
fn a_fresh_lease_held_elsewhere_answers_503_so_the_sender_retries() {
    let r = Recorder::new();
    r.post("/?dry_run=true", &failure_rate("firing")); // learn nothing, record nothing
    assert!(
        r.kv.borrow().keys().all(|k| !k.starts_with("o/")),
        "dry run records no state"
    );
    // An instance mid-action: its lease runs for the outbound budget (8 s) + 5 s.
    acting_elsewhere(&r, 13_000);
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 503, "{report}");
    assert_eq!(outcome(&report), "in_progress");
    assert!(r.sent().is_empty());
    // Still inside the lease plus the allowed clock skew (5 s), even after this
    // delivery's own 5 s wait: keep out.
    r.advance(7_000);
    let (status, _) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 503);
    // The owner died: once the lease and the skew have passed, the next delivery takes over.
    r.advance(2_000);
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(outcome(&report), "acted");
    assert!(detail(&report).contains("abandoned"));
    assert_eq!(r.posts().len(), 1);
}

#[test]
fn the_lease_follows_the_outbound_budget() {
    let r = Recorder::new();
    r.set_var("outbound_budget_ms", "120000");
    r.answer(|s| {
        if s.method == "POST" {
            respond(503, "down")
        } else {
            respond(
                200,
                r#"{"environments":[{"name":"production","enabled":true}]}"#,
            )
        }
    });
    r.post("/", &failure_rate("firing"));
    let lease =
        r.kv.borrow()
            .iter()
            .filter(|(k, _)| k.starts_with("o/") && k.matches('/').count() == 2)
            .map(|(_, v)| serde_json::from_slice::<serde_json::Value>(v).unwrap())
            .next()
            .unwrap();
    // Not leased any more (the attempt ended), and the lease it ran under covered 120 s + 5 s.
    assert!(lease["lease"].is_null(), "{lease}");
    let r = Recorder::new();
    r.set_var("outbound_budget_ms", "120000");
    acting_elsewhere(&r, 125_000);
    r.advance(60_000); // the old fixed 30 s lease would have let this one in
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!((status, outcome(&report)), (503, "in_progress"), "{report}");
    assert!(r.posts().is_empty());
}

#[test]
fn a_swap_that_claims_success_but_lost_is_caught_by_reading_back() {
    let r = Recorder::new();
    r.answer(|_| respond(503, "down"));
    r.post("/", &failure_rate("firing")); // failed: the next delivery retries
    r.answer_like_unleash();
    // Another delivery claims the retry first; our swap "succeeds" without writing.
    let now = r.now.get();
    r.kv.borrow_mut().insert(
        format!("{}/77", occ_key()),
        record("acting", now, Some(now + 13_000)),
    );
    *r.race_next_swap_silently.borrow_mut() = Some(b"77".to_vec());
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 503, "{report}");
    assert_eq!(outcome(&report), "in_progress");
    assert!(r.posts().is_empty(), "the loser did not act");
}

#[test]
fn a_creator_that_died_after_creating_the_lock_word_strands_nothing() {
    // Today a dead ticket-1 holder made 63 later tickets wait 5 s each and answer 503.
    let r = Recorder::new();
    r.kv.borrow_mut().insert(occ_key(), b"0".to_vec());
    let t0 = r.now.get();
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!((status, outcome(&report)), (200, "acted"), "{report}");
    assert_eq!(r.now.get() - t0, 0, "no waiting");
    // A lock word whose value is gone (swept) reads as empty, too.
    let r = Recorder::new();
    r.kv.borrow_mut().insert(occ_key(), b"5".to_vec());
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!((status, outcome(&report)), (200, "acted"), "{report}");
}

#[test]
fn failed_action_is_performed_by_the_retry() {
    let r = Recorder::new();
    r.answer(|_| respond(503, "restarting"));
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 502);
    assert_eq!(outcome(&report), "failed");
    assert!(r.flag("EnablePromotion", "production"));
    // Unleash is back; Alertmanager's retry does it.
    r.answer_like_unleash();
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 200);
    assert_eq!(outcome(&report), "acted");
    assert!(detail(&report).contains("retrying"));
    assert!(!r.flag("EnablePromotion", "production"));
    let (_, again) = r.post("/", &failure_rate("firing"));
    assert_eq!(outcome(&again), "already_handled");
}

#[test]
fn partial_failure_retries_only_what_failed() {
    let r = Recorder::new();
    r.set_rules(
        "rules:\n  - name: both\n    match: {title: HighFailureRate}\n    actions:\n      - {scale: '+1'}\n      - {flag: EnablePromotion, state: off}\n",
    );
    r.answer(|s| {
        if s.url.contains("unleash") {
            respond(500, "db down")
        } else {
            respond(200, "")
        }
    });
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 502, "{report}");
    let outcomes: Vec<_> = report["problems"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("done"), json!("failed")]);
    r.answer_like_unleash();
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 200);
    let actions = report["problems"][0]["actions"].as_array().unwrap();
    assert_eq!(
        actions.len(),
        1,
        "the scale that succeeded is not repeated: {report}"
    );
    assert_eq!(actions[0]["action"], "featuretoggle");
    let scales = r
        .posts()
        .iter()
        .filter(|s| s.url.ends_with("/scale"))
        .count();
    assert_eq!(scales, 1);
}

const POLICY_RULES: &str = r#"
rules:
  - name: scale-carts
    match: {title: cpu_usage}
    cooldown: 10m
    max_actions: 2 per 1h
    actions: [{scale: "+1"}]
"#;

#[test]
fn cooldown_skips_new_occurrences_then_the_breaker_opens() {
    let r = Recorder::new();
    r.set_rules(POLICY_RULES);
    assert_eq!(outcome(&r.post("/", &cpu_usage_at("t1")).1), "acted");
    r.advance(5 * 60_000);
    let (status, report) = r.post("/", &cpu_usage_at("t2"));
    assert_eq!(status, 200);
    assert_eq!(outcome(&report), "skipped");
    let why = detail(&report);
    assert!(
        why.contains("cooldown") && why.contains("5m0s ago") && why.contains("10m0s"),
        "{why}"
    );
    r.advance(6 * 60_000);
    assert_eq!(outcome(&r.post("/", &cpu_usage_at("t3")).1), "acted");
    r.advance(11 * 60_000);
    // Two actions in the last hour: the breaker is open.
    let (status, report) = r.post("/", &cpu_usage_at("t4"));
    assert_eq!(status, 200);
    assert_eq!(outcome(&report), "circuit_open");
    assert!(detail(&report).starts_with("CIRCUIT OPEN"));
    assert!(r
        .logs
        .borrow()
        .iter()
        .any(|l| l.contains("WARNING CIRCUIT OPEN")));
    assert_eq!(r.audit("?rule=scale-carts")[0]["event"], "circuit_open");
    // The window passes; it acts again.
    r.advance(60 * 60_000);
    assert_eq!(outcome(&r.post("/", &cpu_usage_at("t5")).1), "acted");
    assert_eq!(r.posts().len(), 3);
}

const LADDER: &str = r#"
rules:
  - name: promo-ladder
    match: {title: HighFailureRate}
    escalate_after: 5m
    actions:
      - {flag: EnablePromotion, state: off}
      - {scale: "+1"}
      - {scale: "+2"}
"#;

#[test]
fn escalation_ladder_advances_one_step_per_repeat_after_the_wait() {
    let r = Recorder::new();
    r.set_rules(LADDER);
    let step = |r: &Recorder| {
        let (status, rep) = r.post("/", &failure_rate("firing"));
        assert_eq!(status, 200, "{rep}");
        rep
    };
    let rep = step(&r);
    assert_eq!(outcome(&rep), "acted");
    assert_eq!(rep["problems"][0]["actions"][0]["action"], "featuretoggle");
    r.advance(60_000);
    let rep = step(&r);
    assert_eq!(outcome(&rep), "already_handled");
    assert!(detail(&rep).contains("step 2 runs if still firing after 5m0s"));
    r.advance(4 * 60_000);
    let rep = step(&r);
    assert_eq!(outcome(&rep), "acted");
    assert_eq!(rep["problems"][0]["actions"][0]["value"], "+1");
    r.advance(5 * 60_000);
    assert_eq!(step(&r)["problems"][0]["actions"][0]["value"], "+2");
    r.advance(60 * 60_000);
    let rep = step(&r);
    assert_eq!(outcome(&rep), "already_handled");
    assert!(detail(&rep).contains("ladder exhausted"));
    assert_eq!(scale_values(&r), [json!("+1"), json!("+2")]);
}

#[test]
fn a_ladder_step_completed_by_a_retry_is_not_run_again_on_the_next_repeat() {
    let r = Recorder::new();
    r.set_rules(LADDER);
    r.post("/", &failure_rate("firing"));
    r.advance(5 * 60_000);
    // Step 2's scale call fails (503): Alertmanager retries, and the retry succeeds.
    r.answer(|s| {
        if s.url.ends_with("/scale") {
            return respond(503, "busy");
        }
        respond(
            200,
            r#"{"environments":[{"name":"production","enabled":true}]}"#,
        )
    });
    let (status, rep) = r.post("/", &failure_rate("firing"));
    assert_eq!((status, outcome(&rep)), (502, "failed"), "{rep}");
    r.answer_like_unleash();
    r.advance(10_000);
    let (status, rep) = r.post("/", &failure_rate("firing"));
    assert_eq!((status, outcome(&rep)), (200, "acted"), "{rep}");
    // The next repeat, 5m later, runs step 3, not step 2 again.
    r.advance(5 * 60_000);
    let (_, rep) = r.post("/", &failure_rate("firing"));
    assert_eq!(rep["problems"][0]["actions"][0]["value"], "+2", "{rep}");
    assert_eq!(scale_values(&r), [json!("+1"), json!("+1"), json!("+2")]);
}

#[test]
fn resolve_restores_the_flag_exactly_once() {
    let r = Recorder::new();
    r.post("/", &failure_rate("firing"));
    assert!(!r.flag("EnablePromotion", "production"));
    let (status, report) = r.post("/", &failure_rate("resolved"));
    assert_eq!(status, 200);
    assert_eq!(outcome(&report), "reverted");
    assert_eq!(report["problems"][0]["actions"][0]["enabled"], true);
    assert!(r.flag("EnablePromotion", "production"));
    let (_, again) = r.post("/", &failure_rate("resolved"));
    assert_eq!(outcome(&again), "already_handled");
    assert_eq!(
        post_urls(&r),
        [
            format!("{FLAG_URL}/environments/production/off"),
            format!("{FLAG_URL}/environments/production/on")
        ]
    );
}

#[test]
fn resolve_restores_what_was_there_not_an_assumption() {
    let r = Recorder::new();
    // The flag was already off: turning it off changed nothing, so there is nothing to undo.
    r.set_flag("EnablePromotion", "production", false);
    r.post("/", &failure_rate("firing"));
    let (_, report) = r.post("/", &failure_rate("resolved"));
    assert_eq!(outcome(&report), "ignored");
    let a = &report["problems"][0]["actions"][0];
    assert_eq!(a["outcome"], "skipped");
    assert!(a["detail"].as_str().unwrap().contains("already off before"));
    assert!(!r.flag("EnablePromotion", "production"));
}

#[test]
fn resolve_does_not_fight_a_human_who_changed_the_flag() {
    let r = Recorder::new();
    r.post("/", &failure_rate("firing"));
    r.set_flag("EnablePromotion", "production", true); // someone turned it back on by hand
    r.set_flag("EnablePromotion", "production", true);
    let (_, report) = r.post("/", &failure_rate("resolved"));
    let a = &report["problems"][0]["actions"][0];
    assert_eq!(a["outcome"], "skipped");
    assert!(
        a["detail"].as_str().unwrap().contains("changed by hand"),
        "{a}"
    );
    assert_eq!(r.posts().len(), 1, "no revert call was made");
}

#[test]
fn revert_is_off_when_the_rule_says_so_and_for_scaling_by_default() {
    let r = Recorder::new();
    r.set_rules(
        "rules:\n  - name: keep-off\n    match: {title: HighFailureRate}\n    revert: false\n    actions: [{flag: EnablePromotion, state: off}, {scale: '+1'}]\n",
    );
    r.post("/", &failure_rate("firing"));
    let (_, report) = r.post("/", &failure_rate("resolved"));
    assert_eq!(outcome(&report), "ignored");
    assert!(!r.flag("EnablePromotion", "production"));
    assert_eq!(r.posts().len(), 2);

    let r = Recorder::new();
    r.set_rules("rules:\n  - name: s\n    match: {title: HighFailureRate}\n    actions: [{scale: '+2', revert: true}, {scale: '=3', on_resolve: '=1'}]\n");
    r.post("/", &failure_rate("firing"));
    let (_, report) = r.post("/", &failure_rate("resolved"));
    assert_eq!(outcome(&report), "reverted");
    let values: Vec<_> = r
        .posts()
        .iter()
        .map(|s| s.json()["value"].clone())
        .collect();
    // Undone in reverse order.
    assert_eq!(values, [json!("+2"), json!("=3"), json!("=1"), json!("-2")]);
    assert_eq!(r.posts()[3].json()["status"], "resolved");
}

#[test]
fn per_rule_dry_run_records_no_state() {
    let r = Recorder::new();
    r.set_rules("rules:\n  - name: careful\n    match: {title: HighFailureRate}\n    dry_run: true\n    actions: [{flag: EnablePromotion, state: off}]\n");
    for _ in 0..2 {
        let (status, report) = r.post("/", &failure_rate("firing"));
        assert_eq!(status, 200);
        assert_eq!(outcome(&report), "dry_run");
    }
    assert!(r.sent().is_empty());
    // Only what is observed: the audit, and the metrics' counts of it (and the
    // rules cache's entry).
    assert!(r.kv.borrow().keys().all(|k| k.starts_with("audit/")
        || k.starts_with("metrics/")
        || k.starts_with("rules/compiled/")));
    assert!(r
        .audit("")
        .iter()
        .any(|e| e["event"] == "dry_run" && e["dry_run"] == true));
}

#[test]
fn audit_holds_every_decision_newest_first_and_filters() {
    let r = Recorder::new();
    // The no-match delivery too (by default it is only counted: see tests/audit.rs).
    r.set_var("audit_unmatched", "true");
    r.post("/", &failure_rate("firing"));
    r.advance(1000);
    r.post("/", &alertmanager("firing", &[("DiskFull", None, &[])]));
    r.advance(1000);
    r.post("/", &failure_rate("firing"));
    r.advance(1000);
    r.post("/", &failure_rate("resolved"));
    let all = r.audit("");
    // Each delivery's decision, newest first, after its "received". The "matched" notes a
    // decision may carry are not pinned: how many there are is the recorder's business.
    let decisions: Vec<_> = all
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .filter(|e| *e != "matched")
        .collect();
    assert_eq!(
        decisions,
        [
            "reverted",
            "received", // resolve
            "already_handled",
            "received", // repeat
            "no_matching_rule",
            "received", // no match
            "acted",
            "received", // first firing
        ],
        "{all:#?}"
    );
    let acted = all.iter().find(|e| e["event"] == "acted").unwrap();
    assert_eq!(acted["rule"], "Failure rate increase");
    assert_eq!(acted["action"]["flag"], "EnablePromotion");
    assert_eq!(acted["delivery"], 1);
    assert!(acted["at"].as_str().unwrap().ends_with('Z'));
    // Filters: by flag, by rule, by time.
    let by_flag: Vec<_> = r
        .audit("?flag=EnablePromotion")
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(by_flag, [json!("reverted"), json!("acted")]);
    assert!(r
        .audit("?rule=Failure%20rate%20increase")
        .iter()
        .all(|e| e["rule"] == "Failure rate increase"));
    let t0 = all.last().unwrap()["at_ms"].as_i64().unwrap();
    // `since`: exactly the entries of the repeat and the resolve, which came after t0 + 1.5 s.
    let late: Vec<_> = all
        .iter()
        .filter(|e| e["at_ms"].as_i64().unwrap() >= t0 + 1500)
        .cloned()
        .collect();
    assert!(
        late.iter().any(|e| e["event"] == "reverted")
            && late.iter().any(|e| e["event"] == "already_handled")
    );
    assert!(late
        .iter()
        .all(|e| e["event"] != "acted" && e["event"] != "no_matching_rule"));
    assert_eq!(r.audit(&format!("?since={}", t0 + 1500)), late);
    assert_eq!(r.audit(&format!("?until={t0}&limit=2")).len(), 2);
    // HTML timeline for browsers.
    let req = http::Request::get("/audit")
        .header("accept", "text/html")
        .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"));
    let resp = remediator::app::handle(&*r, req.body(vec![]).unwrap());
    assert_eq!(
        resp.headers()["content-security-policy"],
        remediator::audit_page::CSP
    );
    let html = String::from_utf8(resp.body().clone()).unwrap();
    // One group for the Failure rate occurrence, one for DiskFull.
    assert_eq!(html.matches("<section class=\"group").count(), 2, "{html}");
    assert!(
        html.contains("turned EnablePromotion off in production: Failure rate increase")
            && html.contains("reverted: EnablePromotion back on")
            && html.contains("data-event=\"already_handled\""),
        "{html}"
    );
    // The JSON API takes the outcome filter too.
    let acted = r.audit("?outcome=acted");
    assert_eq!(acted.len(), 1, "{acted:?}");
    assert_eq!(acted[0]["event"], "acted");
    assert_eq!(acted[0]["status"], "firing");
    // An empty parameter (a submitted form's blank field) means any.
    assert_eq!(
        r.audit("?rule=&flag=&outcome=&since=&until=").len(),
        all.len()
    );
    // Guarded like the webhooks.
    assert_eq!(r.request(http::Request::get("/audit"), b"").0, 401);
}

#[test]
fn audit_is_bounded() {
    // Through the public API only: MAX_BATCHES + 40 deliveries, one audit batch each, each
    // with its own title. GET /audit shows the newest MAX_BATCHES and none of the 40
    // oldest, and the store holds no more than the window plus the batches written since
    // the last pruning (one delivery in PRUNE_EVERY prunes).
    let r = Recorder::new();
    r.set_var("audit_unmatched", "true");
    let window = remediator::audit::MAX_BATCHES as usize;
    let title = |i: usize| format!("Bounded{i}");
    for i in 0..window + 40 {
        let (status, report) = r.post(
            "/",
            &alertmanager("firing", &[(title(i).as_str(), None, &[])]),
        );
        assert_eq!(status, 200, "{report}");
    }
    let seen: std::collections::BTreeSet<String> = r
        .audit("?limit=5000")
        .iter()
        .filter_map(|e| e["title"].as_str().map(String::from))
        .collect();
    let kept: std::collections::BTreeSet<String> = (40..window + 40).map(title).collect();
    let dropped: Vec<_> = seen.difference(&kept).collect();
    let missing: Vec<_> = kept.difference(&seen).take(5).collect();
    assert!(
        dropped.is_empty() && missing.is_empty(),
        "still shown: {dropped:?}; missing (first 5): {missing:?}"
    );
    let stored =
        r.kv.borrow()
            .keys()
            .filter(|k| k.starts_with("audit/"))
            .count();
    let every = remediator::audit::PRUNE_EVERY as usize;
    assert!(
        stored < window + every,
        "{stored} audit keys for a window of {window}, pruned every {every}"
    );
}

#[test]
fn dry_run_resolve_says_what_it_would_send() {
    let r = Recorder::new();
    r.post("/", &failure_rate("firing"));
    let (status, report) = r.post("/?dry_run=true", &failure_rate("resolved"));
    assert_eq!(status, 200);
    assert_eq!(outcome(&report), "dry_run");
    let a = &report["problems"][0]["actions"][0];
    assert_eq!(a["enabled"], true);
    assert!(
        a["detail"].as_str().unwrap().starts_with(&format!(
            "would send POST {FLAG_URL}/environments/production/on"
        )),
        "{a}"
    );
    assert!(!r.flag("EnablePromotion", "production"), "nothing sent");
}

#[test]
fn expired_records_are_swept_and_live_ones_kept() {
    let r = Recorder::new();
    r.post("/", &failure_rate("firing"));
    r.post("/", &failure_rate("resolved"));
    let cells = |r: &Recorder| {
        r.kv.borrow()
            .keys()
            .filter(|k| k.starts_with("o/") || k.starts_with("t/"))
            .count()
    };
    assert!(cells(&r) > 0);
    // A week later nothing is removed yet (the retention window) ...
    r.advance(6 * 86_400_000);
    for _ in 0..40 {
        r.post("/", &alertmanager("firing", &[("DiskFull", None, &[])]));
    }
    let before = cells(&r);
    assert!(before > 0);
    // ... past it, deliveries that match nothing still do not sweep (they make no
    // records, and listing the store would be most of their cost) ...
    r.advance(2 * 86_400_000);
    for _ in 0..40 {
        r.post("/", &alertmanager("firing", &[("DiskFull", None, &[])]));
    }
    assert_eq!(cells(&r), before, "no-match deliveries swept");
    // ... and deliveries that resolve something remove the resolved occurrence and
    // the freed flag (a resolve no rule matches makes no record either).
    for _ in 0..40 {
        r.post("/", &alertmanager("resolved", &[("DiskFull", None, &[])]));
    }
    assert_eq!(
        cells(&r),
        0,
        "{:?}",
        r.kv.borrow().keys().collect::<Vec<_>>()
    );
}
