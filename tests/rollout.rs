//! The rollout action (`{flag, rollout: N}`), read-back (`verify`), tokens and
//! protected environments, black-box over `app::handle` with a stand-in Unleash
//! that keeps strategies per environment as Unleash 7 and 8 do.

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};
use support::*;

const FLAG: &str = "NewCheckout";

/// One `flexibleRollout` (or other) strategy of NewCheckout in `production`.
#[derive(Clone)]
struct Strategy {
    id: &'static str,
    name: &'static str,
    title: &'static str,
    /// As Unleash keeps it: a string.
    rollout: String,
}

fn rollout(id: &'static str, title: &'static str, percent: u8) -> Strategy {
    Strategy {
        id,
        name: "flexibleRollout",
        title,
        rollout: percent.to_string(),
    }
}

type Strategies = Rc<RefCell<Vec<Strategy>>>;

/// What the stand-in does with a PATCH.
#[derive(Clone, Copy, PartialEq)]
enum Patch {
    Apply,
    /// Answer 200 without applying it (for read-back tests).
    Ignore,
    /// Answer 503 (Unleash down for writes).
    Fail,
}

/// GET the flag (strategies under `environments[]`, none at the top level, as in
/// Unleash 8), PATCH a strategy with a JSON patch, as `on_patch` says.
fn stand_in(r: &Recorder, strategies: &Strategies, on_patch: Patch) {
    let strategies = strategies.clone();
    r.answer(move |s| {
        let base = format!("http://unleash.test:4242/api/admin/projects/default/features/{FLAG}");
        if s.method == "GET" && s.url == base {
            let list: Vec<Value> = strategies
                .borrow()
                .iter()
                .map(|st| {
                    json!({"id": st.id, "name": st.name, "title": st.title, "disabled": false,
                           "parameters": {"rollout": st.rollout, "stickiness": "default", "groupId": FLAG}})
                })
                .collect();
            let body = json!({"name": FLAG, "project": "default", "environments": [
                {"name": "development", "enabled": true, "strategies": []},
                {"name": "production", "enabled": true, "strategies": list},
            ]});
            return respond(200, &body.to_string());
        }
        let prefix = format!("{base}/environments/production/strategies/");
        if let (Some(id), "PATCH") = (s.url.strip_prefix(&prefix), s.method.as_str()) {
            if on_patch == Patch::Fail {
                return respond(503, r#"{"message":"maintenance"}"#);
            }
            let patch = s.json();
            assert_eq!(patch[0]["op"], "replace", "{patch}");
            assert_eq!(patch[0]["path"], "/parameters/rollout", "{patch}");
            assert_eq!(patch.as_array().unwrap().len(), 1, "only the percentage: {patch}");
            let mut list = strategies.borrow_mut();
            let Some(st) = list.iter_mut().find(|st| st.id == id) else {
                return respond(404, r#"{"name":"NotFoundError","message":"strategy not found"}"#);
            };
            if on_patch == Patch::Apply {
                st.rollout = patch[0]["value"].as_str().expect("a string value").into();
            }
            return respond(200, "");
        }
        respond(400, &format!("unexpected call {} {}", s.method, s.url))
    });
}

const RULES: &str = r#"apiVersion: remediator/v1
rules:
- name: checkout-failing
  match:
    title: CheckoutErrors
  actions:
  - flag: NewCheckout
    rollout: 0
"#;

fn alert(status: &str, instance: &str) -> Vec<u8> {
    let body = alertmanager(
        status,
        &[("CheckoutErrors", None, &[("instance", instance)])],
    );
    String::from_utf8(body)
        .unwrap()
        .replace("fp0CheckoutErrors", &format!("fp-{instance}"))
        .into_bytes()
}

/// The percentages remediator PATCHed, in order.
fn patched(r: &Recorder) -> Vec<String> {
    r.sent()
        .iter()
        .filter(|s| s.method == "PATCH")
        .map(|s| s.json()[0]["value"].as_str().unwrap().to_string())
        .collect()
}

fn percent_of(strategies: &Strategies, id: &str) -> String {
    strategies
        .borrow()
        .iter()
        .find(|s| s.id == id)
        .unwrap()
        .rollout
        .clone()
}

fn action(report: &Value) -> &Value {
    &report["problems"][0]["actions"][0]
}

/// The first action failed and a retry cannot help; its error.
fn failed_for_good(report: &Value) -> &str {
    let a = action(report);
    assert_eq!(
        (&a["outcome"], &a["retryable"]),
        (&json!("failed"), &json!(false)),
        "{report}"
    );
    a["error"].as_str().unwrap()
}

fn setup(rules: &str, strategies: Vec<Strategy>) -> (Recorder, Strategies) {
    let r = Recorder::new();
    r.set_rules(rules);
    let s = Rc::new(RefCell::new(strategies));
    stand_in(&r, &s, Patch::Apply);
    (r, s)
}

#[test]
fn a_rollout_is_turned_down_and_restored_to_its_exact_prior_percentage() {
    let (r, s) = setup(RULES, vec![rollout("s-1", "gradual", 37)]);
    let (status, report) = r.post("/", &alert("firing", "a"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["problems"][0]["outcome"], "acted", "{report}");
    let a = action(&report);
    assert_eq!(
        (&a["action"], &a["flag"], &a["rollout"], &a["outcome"]),
        (&json!("rollout"), &json!(FLAG), &json!(0), &json!("done")),
        "{report}"
    );
    assert_eq!(percent_of(&s, "s-1"), "0");
    let (status, report) = r.post("/", &alert("resolved", "a"));
    assert_eq!(
        (status, &report["problems"][0]["outcome"]),
        (200, &json!("reverted")),
        "{report}"
    );
    assert_eq!(
        action(&report)["rollout"],
        37,
        "the report names what it was restored to"
    );
    assert_eq!(percent_of(&s, "s-1"), "37");
    assert_eq!(patched(&r), ["0", "37"]);
}

#[test]
fn the_last_occurrence_to_resolve_restores_the_rollout_once() {
    let (r, s) = setup(RULES, vec![rollout("s-1", "", 50)]);
    r.post("/", &alert("firing", "a"));
    r.post("/", &alert("firing", "b"));
    let (_, report) = r.post("/", &alert("resolved", "a"));
    assert!(
        action(&report)["detail"]
            .as_str()
            .unwrap()
            .contains("1 other occurrence(s) still hold it"),
        "{report}"
    );
    assert_eq!(percent_of(&s, "s-1"), "0", "b still fires");
    r.post("/", &alert("resolved", "b"));
    assert_eq!(percent_of(&s, "s-1"), "50");
    r.post("/", &alert("resolved", "b"));
    assert_eq!(patched(&r), ["0", "0", "50"], "restored exactly once");
}

/// A two-step ladder on NewCheckout (50% at the start) whose first step (10%) has
/// run and whose wait for step 2 (rollout `step2`, as written in YAML) has passed.
fn ladder_past_step_one(step2: &str) -> (Recorder, Strategies) {
    let rules = format!(
        r#"apiVersion: remediator/v1
rules:
- name: checkout-failing
  match: {{title: CheckoutErrors}}
  escalate_after: 5m
  actions:
  - {{flag: NewCheckout, rollout: 10}}
  - {{flag: NewCheckout, rollout: {step2}}}
"#
    );
    let (r, s) = setup(&rules, vec![rollout("s-1", "", 50)]);
    r.post("/", &alert("firing", "a"));
    assert_eq!(percent_of(&s, "s-1"), "10");
    r.advance(6 * 60 * 1000);
    (r, s)
}

#[test]
fn a_ladder_steps_a_rollout_down_and_resolve_restores_the_start() {
    let (r, s) = ladder_past_step_one(r#""0%""#);
    let (_, report) = r.post("/", &alert("firing", "a"));
    assert_eq!(report["problems"][0]["outcome"], "acted", "{report}");
    assert_eq!(percent_of(&s, "s-1"), "0");
    let (_, report) = r.post("/", &alert("resolved", "a"));
    assert_eq!(report["problems"][0]["outcome"], "reverted", "{report}");
    assert_eq!(
        percent_of(&s, "s-1"),
        "50",
        "back to where it was before the first step"
    );
    assert_eq!(patched(&r), ["10", "0", "50"]);
}

#[test]
fn a_flag_without_a_flexible_rollout_fails_for_good_naming_flag_and_environment() {
    let (r, _) = setup(
        RULES,
        vec![Strategy {
            id: "s-9",
            name: "default",
            title: "",
            rollout: String::new(),
        }],
    );
    let (status, report) = r.post("/", &alert("firing", "a"));
    // A retry cannot help: 200, so that Alertmanager does not retry in vain.
    assert_eq!(status, 200, "{report}");
    let err = failed_for_good(&report);
    assert!(
        err.contains(r#"flag "NewCheckout""#)
            && err.contains(r#"environment "production""#)
            && err.contains("no flexibleRollout strategy"),
        "{err}"
    );
    assert!(patched(&r).is_empty());
}

#[test]
fn several_rollouts_need_the_rule_to_name_one_by_title_or_id() {
    let two = vec![rollout("s-1", "EU", 50), rollout("s-2", "US", 80)];
    let (r, _) = setup(RULES, two.clone());
    let (_, report) = r.post("/", &alert("firing", "a"));
    let err = action(&report)["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("2 flexibleRollout strategies") && err.contains("s-1 (\"EU\")"),
        "{err}"
    );
    assert!(err.contains("strategy field"), "{err}");

    let named = RULES.replace("    rollout: 0\n", "    rollout: 0\n    strategy: US\n");
    let (r, s) = setup(&named, two.clone());
    r.post("/", &alert("firing", "a"));
    assert_eq!(
        (percent_of(&s, "s-1"), percent_of(&s, "s-2")),
        ("50".into(), "0".into())
    );
    r.post("/", &alert("resolved", "a"));
    assert_eq!(percent_of(&s, "s-2"), "80");

    let by_id = RULES.replace("    rollout: 0\n", "    rollout: 0\n    strategy: s-1\n");
    let (r, s) = setup(&by_id, two);
    r.post("/", &alert("firing", "a"));
    assert_eq!(
        (percent_of(&s, "s-1"), percent_of(&s, "s-2")),
        ("0".into(), "80".into())
    );
    let missing = RULES.replace("    rollout: 0\n", "    rollout: 0\n    strategy: APAC\n");
    let (r, _) = setup(&missing, vec![rollout("s-1", "EU", 50)]);
    let (_, report) = r.post("/", &alert("firing", "a"));
    let err = action(&report)["error"].as_str().unwrap();
    assert!(
        err.contains("\"APAC\"") && err.contains("s-1 (\"EU\")"),
        "{err}"
    );
}

#[test]
fn a_rollout_changed_by_hand_is_left_alone_on_resolve() {
    let (r, s) = setup(RULES, vec![rollout("s-1", "", 50)]);
    r.post("/", &alert("firing", "a"));
    s.borrow_mut()[0].rollout = "20".into(); // someone moved it during the incident
    let (_, report) = r.post("/", &alert("resolved", "a"));
    let a = action(&report);
    assert_eq!(a["outcome"], "skipped", "{report}");
    assert!(
        a["detail"].as_str().unwrap().contains("changed by hand"),
        "{report}"
    );
    assert_eq!(percent_of(&s, "s-1"), "20");
    assert_eq!(patched(&r), ["0"]);
}

#[test]
fn a_removed_strategy_is_not_restored_and_nothing_is_stuck() {
    let (r, s) = setup(RULES, vec![rollout("s-1", "", 50)]);
    r.post("/", &alert("firing", "a"));
    s.borrow_mut().clear();
    let (status, report) = r.post("/", &alert("resolved", "a"));
    assert_eq!(status, 200);
    assert!(
        action(&report)["detail"]
            .as_str()
            .unwrap()
            .contains("removed"),
        "{report}"
    );
    // The target is free: a new occurrence acts afresh on a new strategy.
    s.borrow_mut().push(rollout("s-2", "", 30));
    r.post("/", &alert("firing", "b"));
    assert_eq!(percent_of(&s, "s-2"), "0");
    r.post("/", &alert("resolved", "b"));
    assert_eq!(percent_of(&s, "s-2"), "30");
}

#[test]
fn read_back_reports_verified_or_fails_the_action_when_unleash_does_not_show_it() {
    let verify = RULES.replace("  match:", "  verify: true\n  match:");
    let (r, _) = setup(&verify, vec![rollout("s-1", "", 50)]);
    let (status, report) = r.post("/", &alert("firing", "a"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(action(&report)["verified"], true, "{report}");
    let gets = r.sent().iter().filter(|s| s.method == "GET").count();
    assert_eq!(gets, 2, "one read for the prior state, one read-back");

    // Without verify: no read-back, no `verified` field.
    let (r, _) = setup(RULES, vec![rollout("s-1", "", 50)]);
    let (_, report) = r.post("/", &alert("firing", "a"));
    assert!(action(&report).get("verified").is_none(), "{report}");
    assert_eq!(r.sent().iter().filter(|s| s.method == "GET").count(), 1);

    // Unleash answers 200 but shows the old value: a failure of that action, retried.
    let (r, s) = setup(&verify, vec![rollout("s-1", "", 50)]);
    stand_in(&r, &s, Patch::Ignore);
    let (status, report) = r.post("/", &alert("firing", "a"));
    let a = action(&report);
    assert_eq!(
        (status, &a["outcome"], &a["verified"]),
        (502, &json!("failed"), &json!(false)),
        "{report}"
    );
    assert!(a["error"].as_str().unwrap().contains("at 50%"), "{report}");
    // It stays held, so its resolve still restores (nothing to restore here: it is at 50%).
    stand_in(&r, &s, Patch::Apply);
    let (status, report) = r.post("/", &alert("firing", "a"));
    assert_eq!(
        (status, &action(&report)["verified"]),
        (200, &json!(true)),
        "{report}"
    );
    r.post("/", &alert("resolved", "a"));
    assert_eq!(percent_of(&s, "s-1"), "50");
}

#[test]
fn the_verify_variable_turns_read_back_on_for_flags_too() {
    let r = Recorder::new();
    r.set_var("unleash_verify", "true");
    let body = alertmanager(
        "firing",
        &[("HighFailureRate", Some("Failure rate increase"), &[])],
    );
    let (status, report) = r.post("/", &body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(action(&report)["verified"], true, "{report}");
    assert!(!r.flag("EnablePromotion", "production"));
}

/// What Unleash Enterprise answers a direct change to an environment that
/// requires change requests (its PermissionError for SKIP_CHANGE_REQUEST).
const CHANGE_REQUEST_403: &str = r#"{"id":"8d7c3a5e-1f2b-4c7d-9e0a-6b5f4d3c2a10","name":"PermissionError","message":"You don't have the required permissions to perform this operation. To perform this action, you need the \"SKIP_CHANGE_REQUEST\" permission.","permissions":["SKIP_CHANGE_REQUEST"]}"#;

#[test]
fn a_protected_environment_is_a_permanent_failure_naming_change_requests() {
    let r = Recorder::new();
    let flags = r.flags.clone();
    r.answer(move |s| {
        if s.method == "POST" {
            return respond(403, CHANGE_REQUEST_403);
        }
        let on = flags.borrow()[&("EnablePromotion".to_string(), "production".to_string())];
        respond(
            200,
            &format!(r#"{{"environments":[{{"name":"production","enabled":{on}}}]}}"#),
        )
    });
    let body = alertmanager(
        "firing",
        &[("HighFailureRate", Some("Failure rate increase"), &[])],
    );
    let (status, report) = r.post("/", &body);
    assert_eq!(
        status, 200,
        "not retried: a retry gets the same 403. {report}"
    );
    let err = failed_for_good(&report);
    assert!(
        err.contains(r#"environment "production" requires change requests"#),
        "{err}"
    );
    assert!(
        !err.contains("token"),
        "not reported as a token problem: {err}"
    );
}

#[test]
fn a_refused_token_stays_retryable_401_and_403_alike() {
    for (status, body) in [
        (401, r#"{"message":"You must log in to use Unleash."}"#),
        (
            403,
            r#"{"name":"PermissionError","message":"You need the \"UPDATE_FEATURE_ENVIRONMENT\" permission.","permissions":["UPDATE_FEATURE_ENVIRONMENT"]}"#,
        ),
    ] {
        let r = Recorder::new();
        r.answer(move |_| respond(status, body));
        let alert = alertmanager(
            "firing",
            &[("HighFailureRate", Some("Failure rate increase"), &[])],
        );
        let (code, report) = r.post("/", &alert);
        let a = action(&report);
        assert_eq!(
            (code, &a["retryable"]),
            (502, &json!(true)),
            "{status}: {report}"
        );
        assert!(
            a["error"].as_str().unwrap().contains("unleash_token"),
            "{report}"
        );
    }
}

#[test]
fn every_token_shape_is_sent_raw_and_a_bearer_prefix_is_dropped() {
    for (configured, sent) in [
        ("*:*.0123456789abcdef", "*:*.0123456789abcdef"),
        ("user:v2_0123456789abcdef", "user:v2_0123456789abcdef"),
        (
            "Bearer user:v2_0123456789abcdef",
            "user:v2_0123456789abcdef",
        ),
        ("bearer  svc-token-123\n", "svc-token-123"),
    ] {
        let r = Recorder::new();
        r.set_var("unleash_token", configured);
        let alert = alertmanager(
            "firing",
            &[("HighFailureRate", Some("Failure rate increase"), &[])],
        );
        let (status, report) = r.post("/", &alert);
        assert_eq!(status, 200, "{report}");
        let unleash: Vec<Sent> = r
            .sent()
            .into_iter()
            .filter(|s| s.url.contains("/api/admin/"))
            .collect();
        assert!(!unleash.is_empty());
        for s in unleash {
            assert_eq!(
                s.headers.get("authorization").map(String::as_str),
                Some(sent),
                "{configured:?}"
            );
        }
    }
}

#[test]
fn a_dry_run_rollout_says_what_it_would_patch() {
    let dry = RULES.replace("  match:", "  dry_run: true\n  match:");
    let (r, s) = setup(&dry, vec![rollout("s-1", "", 50)]);
    let (status, report) = r.post("/", &alert("firing", "a"));
    assert_eq!(status, 200);
    let a = action(&report);
    assert_eq!(a["outcome"], "dry_run", "{report}");
    let detail = a["detail"].as_str().unwrap();
    assert!(
        detail.contains("PATCH") && detail.contains("/strategies/") && detail.contains("0%"),
        "{detail}"
    );
    assert!(r.sent().is_empty(), "a dry run sends nothing");
    assert_eq!(percent_of(&s, "s-1"), "50");
}

#[test]
fn a_ladder_step_that_failed_after_holding_is_still_undone_on_resolve() {
    // Found by the simulation (seed 13638476698028968): step 2 records its hold (0%),
    // its PATCH fails, the occurrence resolves before a retry: the strategy is at step
    // 1's 10%, which is remediator's own doing, not a hand change.
    let (r, s) = ladder_past_step_one("0");
    // Unleash fails every PATCH of step 2 (reads still work).
    stand_in(&r, &s, Patch::Fail);
    let (status, report) = r.post("/", &alert("firing", "a"));
    assert_eq!(
        (status, &report["problems"][0]["outcome"]),
        (502, &json!("failed")),
        "{report}"
    );
    assert_eq!(percent_of(&s, "s-1"), "10");
    stand_in(&r, &s, Patch::Apply);
    let (status, report) = r.post("/", &alert("resolved", "a"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        percent_of(&s, "s-1"),
        "50",
        "restored to its start: {report}"
    );

    // But a person who moves it back to step 1's value after step 2 took effect is respected.
    let (r, s) = ladder_past_step_one("0");
    r.post("/", &alert("firing", "a"));
    assert_eq!(percent_of(&s, "s-1"), "0");
    s.borrow_mut()[0].rollout = "10".into();
    let (_, report) = r.post("/", &alert("resolved", "a"));
    assert!(
        report["problems"][0]["actions"]
            .to_string()
            .contains("changed by hand"),
        "{report}"
    );
    assert_eq!(percent_of(&s, "s-1"), "10");
}
