//! `notify`, black-box over the recording double: exactly which calls happen, in
//! order, with which bodies; what the report and the audit say; that a notification
//! never changes the remediation, its outcome or the status code; and that secrets
//! stay out of everything shown.

mod support;

use serde_json::json;
use support::*;

const SLACK: &str = include_str!("../deploy/notify/slack.yaml");
const GRAFANA: &str = include_str!("../deploy/notify/grafana-annotation.yaml");
const SILENCE: &str = include_str!("../deploy/notify/alertmanager-silence.yaml");

const SLACK_PATH: &str = "/services/T0001/B0001/SLACKSECRETpath42";
const GRAFANA_AUTH: &str = "Bearer glsa_GRAFANAsecret_0042";
const PROMOTION: &str =
    "http://unleash.test:4242/api/admin/projects/default/features/EnablePromotion";

fn channels(r: &Recorder) {
    r.set_var("notify_1_origin", "http://hooks.slack.test");
    r.set_var("notify_1_path", SLACK_PATH);
    r.set_var("notify_2_origin", "https://grafana.test:3000");
    r.set_var("notify_2_authorization", GRAFANA_AUTH);
    r.set_var("notify_3_origin", "http://alertmanager.test:9093");
}

/// The tutorial's recorder with the three notification channels and `rules`.
fn notifying(rules: &str) -> Recorder {
    let r = Recorder::new();
    channels(&r);
    r.set_rules(rules);
    r
}

fn calls(r: &Recorder) -> Vec<(String, String)> {
    r.sent().into_iter().map(|s| (s.method, s.url)).collect()
}

fn call(method: &str, url: &str) -> (String, String) {
    (method.to_string(), url.to_string())
}

/// Nothing shown anywhere holds a secret.
fn assert_no_secrets(r: &Recorder, report: &serde_json::Value) {
    let audit = serde_json::to_string(&r.audit("")).unwrap();
    let logs = r.logs.borrow().join("\n");
    for secret in [SLACK_PATH, "SLACKSECRET", GRAFANA_AUTH, "GRAFANAsecret"] {
        for (what, text) in [
            ("report", report.to_string()),
            ("audit", audit.clone()),
            ("logs", logs.clone()),
        ] {
            assert!(!text.contains(secret), "{secret} in the {what}: {text}");
        }
    }
}

#[test]
fn slack_recipe_tells_on_act_and_revert_and_not_on_a_resend() {
    let r = notifying(SLACK);
    let (status, report) = r.post("/alertmanager", &failure_rate("firing"));
    assert_eq!(status, 200, "{report}");
    let slack = format!("http://hooks.slack.test{SLACK_PATH}");
    let off = format!("{PROMOTION}/environments/production/off");
    assert_eq!(
        calls(&r),
        [
            call("GET", PROMOTION),
            call("POST", &off),
            call("POST", &slack)
        ]
    );
    let sent = r.sent()[2].clone();
    assert_eq!(sent.headers["content-type"], "application/json");
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(
        sent.json(),
        json!({"text": "remediator act (acted) for *HighFailureRate* alertname=HighFailureRate, service=carts, rule promotion off on failure rate: turned EnablePromotion off in production. first firing"})
    );
    let p = &report["problems"][0];
    assert_eq!(p["outcome"], "acted");
    assert_eq!(
        p["notifications"],
        json!([{"channel": "slack", "event": "act", "outcome": "sent",
                "request": "POST http://hooks.slack.test<secret path>", "status": 200}])
    );
    let audit = r.audit("");
    assert_eq!(audit[0]["event"], "notified");
    assert_eq!(
        audit[0]["detail"],
        "notify slack on act: sent POST http://hooks.slack.test<secret path> (200)"
    );
    assert_no_secrets(&r, &report);

    // Alertmanager's re-send of the same firing alert: already handled, nothing sent.
    let before = r.sent().len();
    let (status, report) = r.post("/alertmanager", &failure_rate("firing"));
    assert_eq!(status, 200);
    assert_eq!(report["problems"][0]["outcome"], "already_handled");
    assert!(report["problems"][0].get("notifications").is_none());
    assert_eq!(r.sent().len(), before);

    // The resolve: the flag back on, then the revert message.
    let (status, report) = r.post("/alertmanager", &failure_rate("resolved"));
    assert_eq!(status, 200, "{report}");
    let on = format!("{PROMOTION}/environments/production/on");
    assert_eq!(
        calls(&r)[before..],
        [
            call("GET", PROMOTION),
            call("POST", &on),
            call("POST", &slack)
        ]
    );
    assert_eq!(
        r.sent().last().unwrap().json(),
        json!({"text": "remediator revert (reverted) for *HighFailureRate* alertname=HighFailureRate, service=carts, rule promotion off on failure rate: turned EnablePromotion on in production. resolved: undid 1 of 1 actions"})
    );
    assert_eq!(report["problems"][0]["notifications"][0]["event"], "revert");
    // A re-sent resolve: nothing more.
    let before = r.sent().len();
    let (_, report) = r.post("/alertmanager", &failure_rate("resolved"));
    assert_eq!(report["problems"][0]["outcome"], "already_handled");
    assert_eq!(r.sent().len(), before);
    assert_no_secrets(&r, &report);
}

#[test]
fn grafana_recipe_annotates_with_label_tags_and_epoch_millis() {
    let r = notifying(GRAFANA);
    let now = r.now.get();
    let (status, report) = r.post("/alertmanager", &failure_rate("firing"));
    assert_eq!(status, 200, "{report}");
    let s = r.sent().last().unwrap().clone();
    assert_eq!(
        (s.method.as_str(), s.url.as_str()),
        ("POST", "https://grafana.test:3000/api/annotations")
    );
    assert_eq!(s.headers["authorization"], GRAFANA_AUTH);
    assert_eq!(
        s.json(),
        json!({"time": now, "tags": ["alertname:HighFailureRate", "service:carts"],
               "text": "remediator act (acted), rule promotion off on failure rate: turned EnablePromotion off in production"})
    );
    assert_no_secrets(&r, &report);
}

#[test]
fn silence_recipe_matches_the_alerts_labels_for_the_configured_time() {
    let r = notifying(SILENCE);
    let now = r.now.get();
    let body = cpu_usage_on("carts", "sockshop");
    let (status, report) = r.post("/alertmanager", &body);
    assert_eq!(status, 200, "{report}");
    let sent = r.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].url, "http://scaler.test:9100/scale");
    assert_eq!(
        (sent[1].method.as_str(), sent[1].url.as_str()),
        ("POST", "http://alertmanager.test:9093/api/v2/silences")
    );
    let m = |n: &str, v: &str| json!({"name": n, "value": v, "isRegex": false, "isEqual": true});
    assert_eq!(
        sent[1].json(),
        json!({
            "matchers": [m("alertname", "cpu_usage"), m("namespace", "sockshop"), m("service", "carts")],
            "startsAt": remediator::audit::rfc3339(now),
            "endsAt": remediator::audit::rfc3339(now + 30 * 60 * 1000),
            "createdBy": "remediator",
            "comment": "remediator acted (rule scale carts on cpu): scaled carts by +1",
        })
    );
}

#[test]
fn a_failing_notify_is_retried_reported_and_changes_nothing_else() {
    let r = notifying(SLACK);
    r.answer_others(|s| {
        respond(
            503,
            &format!("{{\"message\":\"overloaded, you sent {}\"}}", s.url),
        )
    });
    let (status, report) = r.post("/alertmanager", &failure_rate("firing"));
    // The flag was turned off; the failed message neither fails the problem nor asks
    // Alertmanager to retry.
    assert_eq!(status, 200, "{report}");
    let p = &report["problems"][0];
    assert_eq!(p["outcome"], "acted");
    assert_eq!(p["actions"][0]["outcome"], "done");
    assert!(!r.flag("EnablePromotion", "production"));
    let slack = format!("http://hooks.slack.test{SLACK_PATH}");
    // 503 says nothing was done: tried again twice within the budget.
    let tries = calls(&r).iter().filter(|(_, u)| *u == slack).count();
    assert_eq!(tries, 3);
    assert_eq!(
        p["notifications"],
        json!([{"channel": "slack", "event": "act", "outcome": "failed",
                "request": "POST http://hooks.slack.test<secret path>", "status": 503,
                "error": "answered 503: overloaded, you sent http://hooks.slack.test<redacted>"}])
    );
    let audit = r.audit("");
    assert_eq!(audit[0]["event"], "notify_failed");
    assert_no_secrets(&r, &report);

    // The re-send finds the occurrence handled: neither the action nor the notify repeats.
    r.answer_like_unleash();
    let before = r.sent().len();
    let (status, report) = r.post("/alertmanager", &failure_rate("firing"));
    assert_eq!(status, 200);
    assert_eq!(report["problems"][0]["outcome"], "already_handled");
    assert_eq!(r.sent().len(), before);
}

#[test]
fn a_timeout_or_a_refusal_is_not_sent_again() {
    for (answer, status) in [
        (
            Err(remediator::platform::SendError::Timeout("slow".into())),
            None,
        ),
        (respond(400, "no_text"), Some(400)),
    ] {
        let r = Recorder::new();
        channels(&r);
        r.set_rules(SLACK);
        r.answer_others(move |_| answer.clone());
        let (code, report) = r.post("/alertmanager", &failure_rate("firing"));
        assert_eq!(code, 200);
        let n = &report["problems"][0]["notifications"][0];
        assert_eq!(n["outcome"], "failed");
        assert_eq!(n["status"], json!(status));
        let notifies = calls(&r)
            .iter()
            .filter(|(_, u)| u.starts_with("http://hooks.slack.test"))
            .count();
        assert_eq!(notifies, 1, "{report}");
    }
}

#[test]
fn dry_run_reports_the_notify_without_sending_it() {
    let r = notifying(SLACK);
    r.set_var("dry_run", "true");
    let (status, report) = r.post("/alertmanager", &failure_rate("firing"));
    assert_eq!(status, 200, "{report}");
    assert!(r.posts().is_empty(), "{:?}", r.posts());
    let p = &report["problems"][0];
    assert_eq!(p["outcome"], "dry_run");
    assert_eq!(
        p["notifications"],
        json!([{"channel": "slack", "event": "act", "outcome": "dry_run",
                "request": "POST http://hooks.slack.test<secret path>"}])
    );
    let audit = r.audit("");
    assert_eq!(audit[0]["event"], "notified");
    assert_eq!(audit[0]["dry_run"], true);
    assert_no_secrets(&r, &report);
}

const CIRCUIT: &str = r#"
rules:
  - name: breaker
    match: {title: HighFailureRate}
    max_actions: 1 per 1h
    actions: [{scale: "+1"}]
    notify:
      - channel: slack
        on: [circuit_open]
        body: {text: "{{ event }} {{ rule }}: {{ detail }}"}
"#;

/// With `rules` (which allow one action), three alerts in one delivery: the first
/// acts, the next two are refused with `refusal`, which is told (for the second) once.
fn three_alerts_one_allowed(rules: &str, refusal: &str) -> Recorder {
    let r = notifying(rules);
    let three = alertmanager(
        "firing",
        &[
            ("HighFailureRate", None, &[("service", "a")]),
            ("HighFailureRate", None, &[("service", "b")]),
            ("HighFailureRate", None, &[("service", "c")]),
        ],
    );
    let (status, report) = r.post("/alertmanager", &three);
    assert_eq!(status, 200, "{report}");
    assert_eq!(outcomes(&report), ["acted", refusal, refusal]);
    assert_eq!(report["problems"][1]["notifications"][0]["event"], refusal);
    assert!(report["problems"][2].get("notifications").is_none());
    r
}

#[test]
fn circuit_open_is_told_once_per_breaker_window() {
    let r = three_alerts_one_allowed(CIRCUIT, "circuit_open");
    let slack = format!("http://hooks.slack.test{SLACK_PATH}");
    assert_eq!(
        calls(&r),
        [
            call("POST", "http://scaler.test:9100/scale"),
            call("POST", &slack)
        ]
    );
    let text = r.sent()[1].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with(
            "circuit_open breaker: CIRCUIT OPEN: rule \"breaker\" already acted 1 times"
        ),
        "{text}"
    );
    // The window has passed: the rule acts again, and a new opening is told again.
    r.advance(61 * 60 * 1000);
    let (_, report) = r.post(
        "/alertmanager",
        &alertmanager(
            "firing",
            &[
                ("HighFailureRate", None, &[("service", "c")]),
                ("HighFailureRate", None, &[("service", "d")]),
            ],
        ),
    );
    // fp0… and fp1… were acted on (a) and refused (b) before: a is handled, b acts now.
    assert_eq!(outcomes(&report), ["already_handled", "acted"], "{report}");
    let (_, report) = r.post(
        "/alertmanager",
        &alertmanager(
            "firing",
            &[
                ("HighFailureRate", None, &[("service", "x")]),
                ("HighFailureRate", None, &[("service", "y")]),
                ("HighFailureRate", None, &[("service", "z")]),
            ],
        ),
    );
    assert_eq!(report["problems"][2]["outcome"], "circuit_open", "{report}");
    assert_eq!(report["problems"][2]["notifications"][0]["outcome"], "sent");
}

#[test]
fn values_are_json_escaped_and_never_expanded_again() {
    let r = notifying(
        r#"
rules:
  - name: esc
    match: {title: Tricky}
    actions: [{scale: "+1"}]
    notify:
      - channel: grafana
        path: /api/annotations
        headers: {X-Team: "sre \"blue\""}
        body:
          whole: "{{ problem.labels }}"
          text: "[{{ problem.labels.note }}]"
          kept: "{{ problem.labels.note }}"
          missing: "{{ problem.labels.nope }}"
          dry: "{{ dry_run }}"
          n: 3
          list: ["{{ rule }}", true, null]
"#,
    );
    let note = "say \"hi\"\nline2 {{ rule }} </script> \\ \u{1}";
    let (status, report) = r.post(
        "/alertmanager",
        &alertmanager("firing", &[("Tricky", None, &[("note", note)])]),
    );
    assert_eq!(status, 200, "{report}");
    let s = r.sent().last().unwrap().clone();
    assert_eq!(s.url, "https://grafana.test:3000/api/annotations");
    assert_eq!(s.headers["x-team"], "sre \"blue\"");
    assert_eq!(
        s.json(),
        json!({
            "whole": {"alertname": "Tricky", "note": note},
            "text": format!("[{note}]"),
            "kept": note,
            "missing": "",
            "dry": false,
            "n": 3,
            "list": ["esc", true, null],
        })
    );
}

#[test]
fn a_channel_that_is_not_configured_fails_the_notify_only() {
    let r = Recorder::new();
    // No notify_* origin set: all three at their `.invalid` defaults.
    r.set_rules(SLACK);
    let (status, report) = r.post("/alertmanager", &failure_rate("firing"));
    assert_eq!(status, 200, "{report}");
    let p = &report["problems"][0];
    assert_eq!(p["outcome"], "acted");
    assert_eq!(
        p["notifications"][0]["error"],
        "channel \"slack\" has no origin: set variable notify_1_origin"
    );
    assert!(r
        .sent()
        .iter()
        .all(|s| s.url.starts_with("http://unleash.test")));
    // A name no channel has.
    r.set_var("notify_1_origin", "http://hooks.slack.test");
    r.set_var("notify_1_name", "incident-room");
    r.set_rules(&SLACK.replace("HighFailureRate", "Other"));
    let (status, report) = r.post(
        "/alertmanager",
        &alertmanager("firing", &[("Other", None, &[])]),
    );
    assert_eq!(status, 200);
    assert_eq!(
        report["problems"][0]["notifications"][0]["error"],
        "no channel is named \"slack\": set one of the variables notify_1_name..notify_3_name"
    );
}

#[test]
fn template_and_notify_errors_name_the_rule_the_notify_and_the_field() {
    let rule = |notify: &str| {
        format!(
            "rules:\n  - name: a\n    match: {{title: x}}\n    actions: [{{scale: '+1'}}]\n    notify:\n      - {notify}\n"
        )
    };
    for (notify, expected) in [
        (
            "{channel: slack, body: {text: '{{ problem.titel }}'}}",
            "rules[0] (\"a\").notify[0].body.text: unknown field \"problem.titel\"",
        ),
        (
            "{channel: slack, body: {a: [1, {b: 'x {{ rule'}]}}",
            "rules[0] (\"a\").notify[0].body.a[1].b: {{ without a closing }}",
        ),
        (
            "{channel: slack, body: {t: '{{ rule | upper }}'}}",
            "rules[0] (\"a\").notify[0].body.t: unknown filter \"upper\"",
        ),
        (
            "{channel: slack, body: {t: '{{ rule | tags }}'}}",
            "rules[0] (\"a\").notify[0].body.t: \"rule\": the filters matchers and tags apply to problem.labels and problem.annotations only",
        ),
        (
            "{channel: slack, body: {t: '{{ now + soon }}'}}",
            "rules[0] (\"a\").notify[0].body.t: in {{ now + soon }}:",
        ),
        (
            "{channel: slack, path: 'https://evil.test/x', body: {}}",
            "rules[0] (\"a\").notify[0].path: must start with /",
        ),
        (
            "{channel: slack, path: '/a b', body: {}}",
            "rules[0] (\"a\").notify[0].path: \"/a b\" contains ' '",
        ),
        (
            "{channel: slack, method: GET, body: {}}",
            "rules[0] (\"a\").notify[0].method: \"GET\" is not POST, PUT or PATCH",
        ),
        (
            "{channel: slack, headers: {Authorization: x}, body: {}}",
            "rules[0] (\"a\").notify[0].headers: \"Authorization\" cannot be set by a rule",
        ),
        (
            "{channel: 'sl ack', body: {}}",
            "rules[0] (\"a\").notify[0].channel: \"sl ack\" is not a channel name",
        ),
        (
            "{channel: slack, bodi: {}}",
            "rules[0] (\"a\").notify[0]: unknown field \"bodi\" (expected channel, on, method, path, headers, body)",
        ),
        (
            "{channel: slack}",
            "rules[0] (\"a\").notify[0].body: required",
        ),
        (
            "{body: {}}",
            "rules[0] (\"a\").notify[0].channel: required",
        ),
        (
            "{channel: slack, headers: {X-A: [1]}, body: {}}",
            "rules[0] (\"a\").notify[0].headers.X-A: must be a string",
        ),
        (
            "{channel: slack, on: act, body: {}}",
            "rules[0] (\"a\").notify[0].on: must be a non-empty list",
        ),
        (
            "{channel: slack, on: [], body: {}}",
            "rules[0] (\"a\").notify[0].on: must be a non-empty list",
        ),
    ] {
        let err = remediator::rules::parse(&rule(notify)).unwrap_err();
        assert!(err.message.starts_with(expected), "{notify}:\n{err}\nexpected: {expected}");
    }
    // An unknown event, and defaults, are named too.
    let err =
        remediator::rules::parse(&rule("{channel: slack, on: [acted], body: {}}")).unwrap_err();
    assert!(
        err.message.contains("acted") && err.message.contains("circuit_open"),
        "{err}"
    );
    let err = remediator::rules::parse(
        "defaults:\n  notify: [{channel: s, body: {t: '{{ x }}'}}]\nrules:\n  - name: a\n    match: {title: x}\n    actions: [{scale: '+1'}]\n",
    )
    .unwrap_err();
    assert!(
        err.message
            .starts_with("defaults.notify[0].body.t: unknown field \"x\""),
        "{err}"
    );
    // The webhook refuses such rules with the message, as for any rules error.
    let r = Recorder::new();
    r.set_rules(&rule(
        "{channel: slack, body: {text: '{{ problem.titel }}'}}",
    ));
    let (status, body) = r.post("/alertmanager", &failure_rate("firing"));
    assert!(status >= 500, "{status} {body}");
    assert!(body.to_string().contains("notify[0].body.text"), "{body}");
    assert!(r.sent().is_empty());
}

#[test]
fn defaults_apply_to_rules_without_their_own_notify() {
    let set = remediator::rules::parse(
        "defaults:\n  notify: [{channel: s, on: [act, revert], body: {t: '{{ rule }}'}}]\nrules:\n  - name: a\n    match: {title: x}\n    actions: [{scale: '+1'}]\n  - name: b\n    match: {title: y}\n    actions: [{scale: '+1'}]\n    notify: []\n",
    )
    .unwrap();
    assert_eq!(set.rules[0].notify.len(), 1);
    assert_eq!(set.rules[0].notify[0].channel, "s");
    assert!(set.rules[1].notify.is_empty());
}

#[test]
fn the_e2e_fixture_carries_the_recipes_exactly() {
    let fixture = remediator::rules::parse(include_str!("e2e/fixtures/notify.yaml")).unwrap();
    let recipes: Vec<_> = [SLACK, GRAFANA, SILENCE]
        .iter()
        .map(|r| remediator::rules::parse(r).unwrap().rules[0].notify[0].clone())
        .collect();
    assert_eq!(*fixture.rules[0].notify, recipes);
}

#[test]
fn a_resolve_with_nothing_to_undo_sends_nothing() {
    let r = notifying(&SLACK.replace(
        "      - {flag: EnablePromotion, state: off}\n",
        "      - {flag: EnablePromotion, state: off}\n    revert: false\n",
    ));
    let (_, report) = r.post("/alertmanager", &failure_rate("firing"));
    assert_eq!(report["problems"][0]["notifications"][0]["outcome"], "sent");
    let before = r.sent().len();
    let (status, report) = r.post("/alertmanager", &failure_rate("resolved"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["problems"][0]["outcome"], "ignored", "{report}");
    assert!(report["problems"][0].get("notifications").is_none());
    assert_eq!(r.sent().len(), before, "{:?}", &r.sent()[before..]);
}

const BUDGET: &str = r#"
apiVersion: remediator/v1
defaults:
  max_changes: 1 per 1h
rules:
  - name: scale-up
    match: {title: HighFailureRate}
    actions: [{scale: "+1"}]
    notify:
      - channel: slack
        on: [act, budget_exhausted]
        body: {text: "{{ event }} {{ rule }} {{ problem.labels.service }}: {{ detail }}"}
"#;

#[test]
fn budget_exhausted_is_told_once_per_budget_window() {
    let r = three_alerts_one_allowed(BUDGET, "budget_exhausted");
    let slack = format!("http://hooks.slack.test{SLACK_PATH}");
    // One scale call, told once; the first refusal told once; the second not again.
    assert_eq!(
        calls(&r),
        [
            call("POST", "http://scaler.test:9100/scale"),
            call("POST", &slack),
            call("POST", &slack)
        ]
    );
    let text = r.sent()[2].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("budget_exhausted scale-up b: blast-radius budget exhausted: 1 changes in scaling in the last 1h"),
        "{text}"
    );
    // A repeat of a held-back alert within the window tells nobody again (the test
    // double's fingerprints are positional: a is fp0, b is fp1).
    let ab = alertmanager(
        "firing",
        &[
            ("HighFailureRate", None, &[("service", "a")]),
            ("HighFailureRate", None, &[("service", "b")]),
        ],
    );
    let (_, report) = r.post("/alertmanager", &ab);
    assert_eq!(
        report["problems"][0]["outcome"], "already_handled",
        "{report}"
    );
    assert_eq!(
        report["problems"][1]["outcome"], "budget_exhausted",
        "{report}"
    );
    assert_eq!(calls(&r).len(), 3, "{report}");
    // The window has passed: the held-back alert acts, and is told as acted.
    r.advance(61 * 60 * 1000);
    let (_, report) = r.post("/alertmanager", &ab);
    assert_eq!(report["problems"][1]["outcome"], "acted", "{report}");
    assert_eq!(
        calls(&r)[3..],
        [
            call("POST", "http://scaler.test:9100/scale"),
            call("POST", &slack)
        ]
    );
    let text = r.sent()[4].json()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("act scale-up b: "), "{text}");
    assert_no_secrets(&r, &report);
}

#[test]
fn get_rules_lists_each_rules_notify_without_a_secret_path() {
    let r = notifying(BUDGET);
    let (status, rules) = r.request(
        http::Request::get("/rules").header("authorization", format!("Bearer {WEBHOOK_TOKEN}")),
        b"",
    );
    assert_eq!(status, 200, "{rules}");
    assert_eq!(
        rules["rules"][0]["notify"],
        json!([{"channel": "slack", "on": ["act", "budget_exhausted"], "request": "POST <secret path>"}])
    );
    assert!(!rules.to_string().contains("SLACKSECRET"), "{rules}");
}
