//! The blast-radius budget (`max_changes`): counted per Unleash project (scaling in
//! a bucket of its own), across rules, over the exact calls sent downstream.

mod support;

use serde_json::Value;
use support::*;

const HOUR_MS: i64 = 3_600_000;

/// Three rules in project `default`, one in `payments`, one scaling rule; `BUDGET`
/// becomes the `defaults:` block.
const RULES: &str = r#"apiVersion: remediator/v1
BUDGETrules:
  - name: promo-off
    match: {title: HighFailureRate}
    actions:
      - {flag: EnablePromotion, state: off}
  - name: cache-on
    match: {title: SlowResponses}
    actions:
      - {flag: EnableItemCache, state: on}
  - name: recs-off
    match: {title: SlowRecommendations}
    actions:
      - {flag: EnableRecommendations, state: off}
  - name: paypal-off
    match: {title: PaymentErrors}
    project: payments
    actions:
      - {flag: EnablePayPal, state: off}
  - name: scale-up
    match: {title: cpu_usage}
    actions:
      - {scale: "+1"}
"#;

fn rules(budget: Option<&str>) -> String {
    let defaults = budget.map_or(String::new(), |b| {
        format!("defaults:\n  max_changes: {b}\n")
    });
    RULES.replace("BUDGET", &defaults)
}

/// A stand-in Unleash for every project (flag names are unique across projects, as in
/// Unleash), and 200 from the scaling webhook.
fn recorder(budget: Option<&str>) -> Recorder {
    let r = Recorder::new();
    r.set_rules(&rules(budget));
    for (flag, on) in [
        ("EnableRecommendations", true),
        ("EnablePayPal", true),
        ("EnablePromotion", true),
        ("EnableItemCache", false),
    ] {
        r.set_flag(flag, "production", on);
    }
    r.answer(any_project(r.flags.clone()));
    r
}

type Flags = std::rc::Rc<std::cell::RefCell<std::collections::BTreeMap<(String, String), bool>>>;

/// Unleash's GET of a flag and POST of its state, in any project (environment
/// `production`), and 200 from the scaling webhook.
fn any_project(
    flags: Flags,
) -> impl Fn(&Sent) -> Result<remediator::platform::OutboundResponse, remediator::platform::SendError>
{
    move |s| {
        let Some(path) = s
            .url
            .split("/api/admin/projects/")
            .nth(1)
            .and_then(|p| p.split_once("/features/"))
            .map(|(_, rest)| rest.to_string())
        else {
            return respond(200, "");
        };
        let parts: Vec<&str> = path.split('/').collect();
        let mut flags = flags.borrow_mut();
        let key = (parts[0].to_string(), "production".to_string());
        match (s.method.as_str(), parts.as_slice()) {
            ("GET", [flag]) => {
                let on = flags[&key];
                respond(
                    200,
                    &format!(
                        r#"{{"name":"{flag}","environments":[{{"name":"production","enabled":{on}}}]}}"#
                    ),
                )
            }
            ("POST", [_, "environments", "production", state]) => {
                flags.insert(key, *state == "on");
                respond(200, "")
            }
            _ => respond(400, "unexpected call"),
        }
    }
}

/// One alert `name` on `instance` (its own fingerprint per instance).
fn alert(status: &str, name: &str, instance: &str) -> Vec<u8> {
    alerts(status, &[(name, instance)])
}

/// One delivery carrying several alerts (a group), each with its own fingerprint.
fn alerts(status: &str, list: &[(&str, &str)]) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&alertmanager(
        status,
        &list
            .iter()
            .map(|(n, _)| (*n, None, &[][..]))
            .collect::<Vec<TestAlert>>(),
    ))
    .unwrap();
    for (a, (name, instance)) in body["alerts"].as_array_mut().unwrap().iter_mut().zip(list) {
        a["labels"]["instance"] = (*instance).into();
        a["fingerprint"] = format!("fp-{name}-{instance}").into();
    }
    serde_json::to_vec(&body).unwrap()
}

/// Alert `name` fires on instance "a": 200 and `outcome`.
fn fire(r: &Recorder, name: &str, outcome: &str) -> Value {
    post_expecting(r, &alert("firing", name, "a"), 200, outcome)
}

/// Alert `name` on instance "a" resolves: 200 and `outcome`.
fn resolve(r: &Recorder, name: &str, outcome: &str) -> Value {
    post_expecting(r, &alert("resolved", name, "a"), 200, outcome)
}

/// The window is full: SlowRecommendations is held back, and acts once the hour passes.
fn full_until_the_window_passes(r: &Recorder) {
    fire(r, "SlowRecommendations", "budget_exhausted");
    r.advance(HOUR_MS + 1);
    fire(r, "SlowRecommendations", "acted");
}

/// POSTs `body`, asserts the status and the one problem's outcome, returns the report.
fn post_expecting(r: &Recorder, body: &[u8], status: u16, outcome: &str) -> Value {
    let (got, report) = r.post("/", body);
    assert_eq!(
        (got, outcomes(&report)),
        (status, vec![outcome.to_string()]),
        "{report}"
    );
    report
}

/// The state-changing calls, as "METHOD path" from `/api/admin/projects/` (or the
/// scaling webhook's URL), in order.
fn changes(r: &Recorder) -> Vec<String> {
    r.posts()
        .iter()
        .map(|s| match s.url.split("/api/admin/projects/").nth(1) {
            Some(p) => format!("POST {p}"),
            None => format!("POST {}", s.url),
        })
        .collect()
}

fn off(project: &str, flag: &str) -> String {
    format!("POST {project}/features/{flag}/environments/production/off")
}

fn on(project: &str, flag: &str) -> String {
    format!("POST {project}/features/{flag}/environments/production/on")
}

#[test]
fn the_budget_holds_across_rules_of_one_project_and_leaves_other_projects_alone() {
    let r = recorder(Some("2 per 1h"));
    let (s1, a) = r.post("/", &alert("firing", "HighFailureRate", "a"));
    let (s2, b) = r.post("/", &alert("firing", "SlowResponses", "a"));
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        (outcomes(&a), outcomes(&b)),
        (vec!["acted".into()], vec!["acted".into()])
    );
    let (status, c) = r.post("/", &alert("firing", "SlowRecommendations", "a"));
    assert_eq!(
        status, 200,
        "a deliberate refusal: retrying cannot help: {c}"
    );
    assert_eq!(outcomes(&c), vec!["budget_exhausted"], "{c}");
    assert_eq!(
        c["problems"][0]["detail"].as_str().unwrap(),
        "blast-radius budget exhausted: 2 changes in project default in the last 1h (max_changes: 2 per 1h); nothing more is changed there until the window frees up; first firing"
    );
    assert_eq!(c["problems"][0]["actions"][0]["outcome"], "skipped", "{c}");
    // Another project has its own budget.
    fire(&r, "PaymentErrors", "acted");
    assert_eq!(
        changes(&r),
        vec![
            off("default", "EnablePromotion"),
            on("default", "EnableItemCache"),
            off("payments", "EnablePayPal"),
        ],
        "nothing sent for the held-back change"
    );
    assert!(r.flag("EnableRecommendations", "production"), "untouched");
    // Not even read: an occurrence the budget holds back does not hold the flag.
    assert!(
        !r.sent()
            .iter()
            .any(|s| s.url.contains("EnableRecommendations")),
        "{:?}",
        r.sent()
    );
    // The audit and the log record it.
    let entries = r.audit("");
    let e = entries
        .iter()
        .find(|e| e["event"] == "budget_exhausted")
        .expect("a budget_exhausted audit entry");
    assert_eq!(e["rule"], "recs-off");
    assert_eq!(e["action"]["flag"], "EnableRecommendations");
    assert!(r
        .logs
        .borrow()
        .iter()
        .any(|l| l.contains("WARNING blast-radius budget exhausted")));
}

#[test]
fn a_held_back_occurrence_acts_on_its_next_delivery_once_the_window_frees_up() {
    let r = recorder(Some("1 per 1h"));
    r.post("/", &alert("firing", "HighFailureRate", "a"));
    fire(&r, "SlowResponses", "budget_exhausted");
    // Alertmanager repeats the still-firing alert: still inside the window.
    r.advance(HOUR_MS / 2);
    fire(&r, "SlowResponses", "budget_exhausted");
    assert_eq!(changes(&r), vec![off("default", "EnablePromotion")]);
    // The window passes: the next repeat sends the change.
    r.advance(HOUR_MS / 2 + 1);
    fire(&r, "SlowResponses", "acted");
    assert_eq!(
        changes(&r),
        vec![
            off("default", "EnablePromotion"),
            on("default", "EnableItemCache")
        ]
    );
    // And that change is counted: the window is full again.
    fire(&r, "SlowRecommendations", "budget_exhausted");
    // Resolving the held-back-then-acted occurrence restores it as usual.
    resolve(&r, "SlowResponses", "reverted");
    assert!(!r.flag("EnableItemCache", "production"));
}

#[test]
fn restores_are_never_blocked_and_do_not_count() {
    let r = recorder(Some("1 per 1h"));
    r.post("/", &alert("firing", "HighFailureRate", "a"));
    fire(&r, "SlowResponses", "budget_exhausted");
    // The budget is spent, yet the resolve restores the flag.
    resolve(&r, "HighFailureRate", "reverted");
    assert!(r.flag("EnablePromotion", "production"));
    // The held-back occurrence resolves: nothing was changed, nothing to undo.
    resolve(&r, "SlowResponses", "ignored");
    assert_eq!(
        changes(&r),
        vec![
            off("default", "EnablePromotion"),
            on("default", "EnablePromotion")
        ]
    );
    // The restore neither freed nor used the budget: still one change in the window.
    full_until_the_window_passes(&r);
}

#[test]
fn a_storm_that_coalesces_consumes_one_change() {
    let r = recorder(Some("2 per 1h"));
    let storm: Vec<(&str, &str)> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|i| ("HighFailureRate", *i))
        .collect();
    let (status, report) = r.post("/", &alerts("firing", &storm));
    assert_eq!(status, 200);
    assert_eq!(outcomes(&report), vec!["acted"; 5], "{report}");
    assert_eq!(changes(&r), vec![off("default", "EnablePromotion")]);
    // One change used, one left.
    fire(&r, "SlowResponses", "acted");
    fire(&r, "SlowRecommendations", "budget_exhausted");
}

#[test]
fn dry_runs_decide_without_consuming_the_budget() {
    let r = recorder(Some("1 per 1h"));
    for name in ["HighFailureRate", "SlowResponses", "SlowRecommendations"] {
        let (_, report) = r.post("/?dry_run=true", &alert("firing", name, "a"));
        assert_eq!(outcomes(&report), vec!["dry_run"]);
    }
    assert!(changes(&r).is_empty());
    assert!(!r.kv.borrow().keys().any(|k| k.starts_with("b/")));
    fire(&r, "SlowResponses", "acted");
}

#[test]
fn a_retried_change_counts_once() {
    let r = recorder(Some("2 per 1h"));
    fire(&r, "HighFailureRate", "acted");
    // Unleash refuses the next change with 503s: Alertmanager retries.
    let failing = std::rc::Rc::new(std::cell::Cell::new(true));
    let (f, unleash) = (failing.clone(), any_project(r.flags.clone()));
    r.answer(move |s| {
        if s.method == "POST" && f.get() {
            return respond(503, "unavailable");
        }
        unleash(s)
    });
    post_expecting(&r, &alert("firing", "SlowResponses", "a"), 502, "failed");
    let (status, b) = r.post("/", &alert("firing", "SlowResponses", "a"));
    assert_eq!(status, 502, "{b}");
    failing.set(false);
    fire(&r, "SlowResponses", "acted");
    let sends = r
        .posts()
        .iter()
        .filter(|s| {
            s.url
                .ends_with("/EnableItemCache/environments/production/on")
        })
        .count();
    assert!(sends >= 3, "sent on every delivery: {sends}");
    // Counted once: two changes (EnablePromotion, EnableItemCache) fill the window.
    full_until_the_window_passes(&r);
}

#[test]
fn scaling_calls_count_in_a_bucket_of_their_own() {
    let r = recorder(Some("1 per 1h"));
    let (_, a) = r.post("/", &alert("firing", "HighFailureRate", "a"));
    let (_, s) = r.post("/", &alert("firing", "cpu_usage", "a"));
    assert_eq!(
        (outcomes(&a), outcomes(&s)),
        (vec!["acted".into()], vec!["acted".into()])
    );
    let (status, s2) = r.post("/", &alert("firing", "cpu_usage", "b"));
    assert_eq!(
        (status, outcomes(&s2)),
        (200, vec!["budget_exhausted".to_string()])
    );
    assert!(
        s2["problems"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("blast-radius budget exhausted: 1 changes in scaling in the last 1h"),
        "{s2}"
    );
    let scale_calls = r
        .posts()
        .iter()
        .filter(|s| s.url == "http://scaler.test:9100/scale")
        .count();
    assert_eq!(scale_calls, 1);
}

#[test]
fn the_variable_applies_when_the_file_sets_no_budget_and_the_file_wins_over_it() {
    // The variable alone: Keptn's tutorial rules, one change per hour.
    let r = Recorder::new();
    r.set_var("max_changes", "1 per 1h");
    let (_, a) = r.post("/", &alertmanager("firing", &[("cpu_usage", None, &[])]));
    assert_eq!(outcomes(&a), vec!["acted"]);
    let (_, b) = r.post(
        "/",
        &alertmanager(
            "firing",
            &[("HighFailureRate", Some("Failure rate increase"), &[])],
        ),
    );
    let (_, c) = r.post(
        "/",
        &alertmanager(
            "firing",
            &[("RespTime", Some("Response time degradation"), &[])],
        ),
    );
    assert_eq!(
        (outcomes(&b), outcomes(&c)),
        (vec!["acted".into()], vec!["budget_exhausted".into()])
    );
    // The file's budget wins over the variable's.
    let r = recorder(Some("3 per 1h"));
    r.set_var("max_changes", "1 per 1h");
    for name in ["HighFailureRate", "SlowResponses", "SlowRecommendations"] {
        let (_, report) = r.post("/", &alert("firing", name, "a"));
        assert_eq!(outcomes(&report), vec!["acted"], "{name}: {report}");
    }
    let r = recorder(Some("1 per 1h"));
    r.set_var("max_changes", "5 per 1h");
    let (_, shown) = r.request(
        http::Request::get("/rules").header("authorization", format!("Bearer {WEBHOOK_TOKEN}")),
        b"",
    );
    assert_eq!(shown["max_changes"], "1 per 1h (rules file)");
    r.post("/", &alert("firing", "HighFailureRate", "a"));
    fire(&r, "SlowResponses", "budget_exhausted");
}

#[test]
fn a_bad_variable_is_named() {
    for bad in ["twenty per hour", "20/1h", "0 per 1h", "5000 per 1h"] {
        let r = recorder(None);
        r.set_var("max_changes", bad);
        let (status, report) = r.post("/", &alert("firing", "HighFailureRate", "a"));
        assert_eq!(status, 500, "{bad}: {report}");
        assert!(
            report.to_string().contains("variable max_changes"),
            "{bad}: {report}"
        );
        assert!(changes(&r).is_empty());
    }
}

#[test]
fn a_bad_max_changes_in_the_rules_file_names_the_field_and_the_file() {
    for bad in ["20/h", "0 per 1h", "20 per", "20 per 0s"] {
        let r = recorder(Some(bad));
        let (status, report) = r.post("/", &alert("firing", "HighFailureRate", "a"));
        assert_eq!(status, 500, "{bad}: {report}");
        let text = report.to_string();
        assert!(
            text.contains("/remediation.yaml") && text.contains("defaults.max_changes"),
            "{bad}: {report}"
        );
        assert!(changes(&r).is_empty());
    }
}

#[test]
fn without_a_budget_nothing_extra_is_written_and_with_one_a_change_costs_three_writes() {
    let run = |budget: Option<&str>| {
        let r = recorder(budget);
        r.post("/", &alert("firing", "HighFailureRate", "a"));
        let first = r.kv_writes.get();
        r.post("/", &alert("firing", "SlowResponses", "a"));
        let second = r.kv_writes.get() - first;
        let budget_keys = r.kv.borrow().keys().filter(|k| k.starts_with("b/")).count();
        (first, second, budget_keys, changes(&r))
    };
    let (none1, none2, none_keys, none_changes) = run(None);
    let (with1, with2, with_keys, with_changes) = run(Some("5 per 1h"));
    assert_eq!(none_keys, 0, "no budget: no budget cell");
    assert_eq!(with_keys, 2, "one budget cell: its lock word and its value");
    assert_eq!(none_changes, with_changes);
    // The first change in a project creates the cell's lock word (increment), writes
    // its value and swaps it in; later ones write a value, swap, delete the old one.
    assert_eq!(with1 - none1, 3, "first change of the bucket");
    assert_eq!(with2 - none2, 3, "a later change");
}

const LADDER: &str = r#"apiVersion: remediator/v1
defaults:
  max_changes: 1 per 1h
rules:
  - name: ladder
    match: {title: SlowResponses}
    escalate_after: 2m
    actions:
      - {flag: EnableItemCache, state: on}
      - {flag: EnablePromotion, state: off}
      - {flag: EnableRecommendations, state: off}
"#;

#[test]
fn each_ladder_step_counts_and_a_held_back_step_runs_once_the_window_frees_up() {
    let r = recorder(None);
    r.set_rules(LADDER);
    fire(&r, "SlowResponses", "acted");
    r.advance(3 * 60_000);
    fire(&r, "SlowResponses", "budget_exhausted");
    assert_eq!(changes(&r), vec![on("default", "EnableItemCache")]);
    r.advance(HOUR_MS);
    fire(&r, "SlowResponses", "acted");
    assert_eq!(
        changes(&r),
        vec![
            on("default", "EnableItemCache"),
            off("default", "EnablePromotion")
        ]
    );
    // The next repeat runs step 3 (held back: step 2 filled the window), not step 2 again.
    r.advance(3 * 60_000);
    let a = fire(&r, "SlowResponses", "budget_exhausted");
    assert_eq!(
        a["problems"][0]["actions"][0]["flag"], "EnableRecommendations",
        "{a}"
    );
    r.advance(HOUR_MS);
    fire(&r, "SlowResponses", "acted");
    assert_eq!(
        changes(&r),
        vec![
            on("default", "EnableItemCache"),
            off("default", "EnablePromotion"),
            off("default", "EnableRecommendations")
        ]
    );
    r.advance(3 * 60_000);
    let (_, a) = r.post("/", &alert("firing", "SlowResponses", "a"));
    assert_eq!(
        outcomes(&a),
        vec!["already_handled"],
        "ladder exhausted: {a}"
    );
    assert_eq!(changes(&r).len(), 3);
}
