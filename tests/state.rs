//! Acting once, remembering, escalating and undoing: repeats, duplicates, races,
//! cooldowns, the circuit breaker, ladders, revert on resolve, dry-run, audit.

mod support;

use serde_json::{json, Value};
use support::*;

const FLAG_URL: &str =
    "http://unleash.test:4242/api/admin/projects/default/features/EnablePromotion";

fn failure_rate(status: &str) -> Vec<u8> {
    alertmanager(
        status,
        &[(
            "HighFailureRate",
            Some("Failure rate increase"),
            &[("service", "carts")],
        )],
    )
}

fn outcome(report: &Value) -> &str {
    report["problems"][0]["outcome"].as_str().unwrap()
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
    remediator::state::occurrence_key(OCCURRENCE, "Failure rate increase")
}

/// Another delivery already took creation ticket number `n`.
fn tickets_taken(r: &Recorder, n: i64) {
    let claim = remediator::state::claim_key(&occ_key());
    r.kv.borrow_mut().insert(claim, n.to_string().into_bytes());
}

fn record(phase: &str, since_ms: i64) -> Vec<u8> {
    let done = phase == "done";
    json!({"occurrence": OCCURRENCE, "rule": "Failure rate increase", "phase": phase, "since_ms": since_ms,
           "first_handled_ms": done.then_some(since_ms), "first_audit": done.then_some(7),
           "applied": if done { json!([{"index": 0, "at_ms": since_ms, "previous_enabled": true}]) } else { json!([]) }})
    .to_string()
    .into_bytes()
}

#[test]
fn racing_duplicate_waits_for_the_winner_and_does_not_act() {
    let r = Recorder::new();
    // A concurrent delivery won the creation election and finishes while we wait.
    tickets_taken(&r, 1);
    r.during_first_wait
        .borrow_mut()
        .push((occ_key(), record("done", r.now.get())));
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(outcome(&report), "already_handled");
    assert_eq!(report["problems"][0]["first_handled"]["delivery"], 7);
    assert!(r.sent().is_empty(), "the loser sends nothing");
}

#[test]
fn a_fresh_claim_held_elsewhere_answers_503_so_the_sender_retries() {
    let r = Recorder::new();
    r.post("/?dry_run=true", &failure_rate("firing")); // learn nothing, record nothing
    assert!(
        r.kv.borrow()
            .keys()
            .all(|k| !k.starts_with("occ/") && !k.starts_with("claim/")),
        "dry run records no state"
    );
    // An instance mid-action: its claim was made just now.
    tickets_taken(&r, 1);
    r.kv.borrow_mut()
        .insert(occ_key(), record("claimed", r.now.get()));
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 503, "{report}");
    assert_eq!(outcome(&report), "in_progress");
    assert!(r.sent().is_empty());
    // The claimer died: after the lease, the next delivery takes over and acts.
    r.advance(31_000);
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 200);
    assert_eq!(outcome(&report), "acted");
    assert!(report["problems"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("abandoned"));
    assert_eq!(r.posts().len(), 1);
}

#[test]
fn a_swap_that_claims_success_but_lost_is_caught_by_reading_back() {
    let r = Recorder::new();
    r.answer(|_| respond(503, "down"));
    r.post("/", &failure_rate("firing")); // failed: the next delivery retries
    r.answer_like_unleash();
    // Another delivery claims the retry first; our swap "succeeds" without writing.
    *r.race_next_swap_silently.borrow_mut() = Some(record("claimed", r.now.get()));
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 503, "{report}");
    assert_eq!(outcome(&report), "in_progress");
    assert!(r.posts().is_empty(), "the loser did not act");
}

#[test]
fn a_creator_that_died_before_writing_is_replaced_only_by_an_elected_ticket() {
    let r = Recorder::new();
    tickets_taken(&r, 1); // won, then died before writing the record
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 503, "ticket 2 waits and gives up: {report}");
    assert!(r.sent().is_empty());
    tickets_taken(&r, remediator::state::TAKEOVER_EVERY);
    let t0 = r.now.get();
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 200, "ticket 65 takes over after waiting: {report}");
    assert_eq!(outcome(&report), "acted");
    assert!(r.now.get() - t0 >= 5_000, "only after the full wait");
    assert_eq!(r.posts().len(), 1);
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
    assert!(report["problems"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("retrying"));
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

fn cpu(starts: &str) -> Vec<u8> {
    String::from_utf8(alertmanager(
        "firing",
        &[("cpu_usage", None, &[("service", "carts")])],
    ))
    .unwrap()
    .replace("2026-11-26T14:02:06.305Z", starts)
    .into_bytes()
}

#[test]
fn cooldown_skips_new_occurrences_then_the_breaker_opens() {
    let r = Recorder::new();
    r.set_rules(POLICY_RULES);
    assert_eq!(outcome(&r.post("/", &cpu("t1")).1), "acted");
    r.advance(5 * 60_000);
    let (status, report) = r.post("/", &cpu("t2"));
    assert_eq!(status, 200);
    assert_eq!(outcome(&report), "skipped");
    let why = report["problems"][0]["detail"].as_str().unwrap();
    assert!(
        why.contains("cooldown") && why.contains("5m0s ago") && why.contains("10m0s"),
        "{why}"
    );
    r.advance(6 * 60_000);
    assert_eq!(outcome(&r.post("/", &cpu("t3")).1), "acted");
    r.advance(11 * 60_000);
    // Two actions in the last hour: the breaker is open.
    let (status, report) = r.post("/", &cpu("t4"));
    assert_eq!(status, 200);
    assert_eq!(outcome(&report), "circuit_open");
    assert!(report["problems"][0]["detail"]
        .as_str()
        .unwrap()
        .starts_with("CIRCUIT OPEN"));
    assert!(r
        .logs
        .borrow()
        .iter()
        .any(|l| l.contains("WARNING CIRCUIT OPEN")));
    assert_eq!(r.audit("?rule=scale-carts")[0]["event"], "circuit_open");
    // The window passes; it acts again.
    r.advance(60 * 60_000);
    assert_eq!(outcome(&r.post("/", &cpu("t5")).1), "acted");
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
    assert!(rep["problems"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("step 2 runs if still firing after 5m0s"));
    r.advance(4 * 60_000);
    let rep = step(&r);
    assert_eq!(outcome(&rep), "acted");
    assert_eq!(rep["problems"][0]["actions"][0]["value"], "+1");
    r.advance(5 * 60_000);
    assert_eq!(step(&r)["problems"][0]["actions"][0]["value"], "+2");
    r.advance(60 * 60_000);
    let rep = step(&r);
    assert_eq!(outcome(&rep), "already_handled");
    assert!(rep["problems"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("ladder exhausted"));
    let bodies: Vec<_> = r
        .posts()
        .iter()
        .filter(|s| s.url.ends_with("/scale"))
        .map(|s| s.json()["value"].clone())
        .collect();
    assert_eq!(bodies, [json!("+1"), json!("+2")]);
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
    assert!(r.kv.borrow().keys().all(|k| k.starts_with("audit/")));
    assert!(r
        .audit("")
        .iter()
        .any(|e| e["event"] == "dry_run" && e["dry_run"] == true));
}

#[test]
fn audit_holds_every_decision_newest_first_and_filters() {
    let r = Recorder::new();
    r.post("/", &failure_rate("firing"));
    r.advance(1000);
    r.post("/", &alertmanager("firing", &[("DiskFull", None, &[])]));
    r.advance(1000);
    r.post("/", &failure_rate("firing"));
    r.advance(1000);
    r.post("/", &failure_rate("resolved"));
    let all = r.audit("");
    let events: Vec<_> = all.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "matched",
            "reverted",
            "matched",
            "received", // resolve
            "already_handled",
            "matched",
            "received", // repeat
            "no_matching_rule",
            "received", // no match
            "acted",
            "matched",
            "received", // first firing
        ]
    );
    let acted = &all[9];
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
    let t0 = all[9]["at_ms"].as_i64().unwrap();
    // The repeat (3 entries) and the resolve (4) came after t0 + 1.5 s.
    assert_eq!(r.audit(&format!("?since={}", t0 + 1500)).len(), 7);
    assert_eq!(r.audit(&format!("?until={t0}&limit=2")).len(), 2);
    // HTML timeline for browsers.
    let req = http::Request::get("/audit")
        .header("accept", "text/html")
        .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"));
    let resp = remediator::app::handle(&r, req.body(vec![]).unwrap());
    let html = String::from_utf8(resp.body().clone()).unwrap();
    assert!(
        html.contains("<table>")
            && html.contains("EnablePromotion")
            && html.contains("class=\"acted\"")
    );
    // Guarded like the webhooks.
    assert_eq!(r.request(http::Request::get("/audit"), b"").0, 401);
}

#[test]
fn audit_is_bounded() {
    let r = Recorder::new();
    for i in 0..(remediator::audit::MAX_BATCHES + 5) {
        r.kv.borrow_mut()
            .insert(format!("audit/{}", i + 1), b"[]".to_vec());
    }
    r.kv.borrow_mut().insert(
        "audit/head".into(),
        (remediator::audit::MAX_BATCHES + 5)
            .to_string()
            .into_bytes(),
    );
    r.post("/", &failure_rate("firing"));
    let kv = r.kv.borrow();
    assert!(
        !kv.contains_key("audit/6"),
        "the batch that fell out of the window is pruned"
    );
    assert!(kv.contains_key("audit/7"));
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
