//! The whole handler, black-box, over the recording double: which outbound calls
//! happen (method, URL, headers, body) and what the sender is told.

mod support;

use serde_json::json;
use support::*;

const PROMOTION: &str =
    "http://unleash.test:4242/api/admin/projects/default/features/EnablePromotion";
const PROMOTION_OFF: &str =
    "http://unleash.test:4242/api/admin/projects/default/features/EnablePromotion/environments/production/off";

fn failure_rate() -> Vec<u8> {
    alertmanager(
        "firing",
        &[(
            "HighFailureRate",
            Some("Failure rate increase on carts"),
            &[("service", "carts")],
        )],
    )
}

#[test]
fn tutorial_failure_rate_turns_promotion_off_once() {
    let r = Recorder::new();
    let (status, report) = r.post("/alertmanager", &failure_rate());
    assert_eq!(status, 200, "{report}");
    // Read the flag first (to be able to restore it), then turn it off.
    let sent = r.sent();
    let calls: Vec<_> = sent
        .iter()
        .map(|s| (s.method.as_str(), s.url.as_str()))
        .collect();
    assert_eq!(calls, [("GET", PROMOTION), ("POST", PROMOTION_OFF)]);
    for s in &sent {
        assert_eq!(
            s.headers.get("authorization").map(String::as_str),
            Some(UNLEASH_TOKEN)
        );
        assert!(s.body.is_empty());
        assert_eq!(s.timeout, std::time::Duration::from_millis(2500));
    }
    assert!(!r.flag("EnablePromotion", "production"));
    assert!(
        r.flag("EnablePromotion", "development"),
        "other environments untouched"
    );
    let p = &report["problems"][0];
    assert_eq!(p["rule"], "Failure rate increase");
    assert_eq!(p["outcome"], "acted");
    assert_eq!(
        p["actions"][0],
        json!({"action": "featuretoggle", "flag": "EnablePromotion", "project": "default",
               "environment": "production", "enabled": false, "outcome": "done",
               "detail": "turned off flag \"EnablePromotion\" in project \"default\", environment \"production\""})
    );
    assert_eq!(report["format"], "alertmanager");
    assert_eq!(report["rules_format"], "keptn-0.6");
}

#[test]
fn response_time_turns_item_cache_on_in_the_rule_environment() {
    let r = Recorder::new();
    r.set_rules("rules:\n  - name: cache\n    match: {title: Response time degradation}\n    environment: development\n    actions: [{flag: EnableItemCache, state: on}]\n");
    let (status, _) = r.post(
        "/",
        &alertmanager("firing", &[("Response time degradation", None, &[])]),
    );
    assert_eq!(status, 200);
    let urls: Vec<_> = r.posts().into_iter().map(|s| s.url).collect();
    assert_eq!(
        urls,
        ["http://unleash.test:4242/api/admin/projects/default/features/EnableItemCache/environments/development/on"]
    );
    assert!(r.flag("EnableItemCache", "development"));
    assert!(!r.flag("EnableItemCache", "production"));
}

#[test]
fn cpu_usage_calls_the_scaling_webhook_with_service_and_namespace() {
    let r = Recorder::new();
    let body = cpu_usage_on("carts", "sockshop");
    let (status, report) = r.post("/alertmanager", &body);
    assert_eq!(status, 200, "{report}");
    let sent = r.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].method.as_str(), sent[0].url.as_str()),
        ("POST", "http://scaler.test:9100/scale")
    );
    assert_eq!(
        sent[0].headers["authorization"],
        format!("Bearer {SCALE_TOKEN}")
    );
    assert_eq!(sent[0].headers["content-type"], "application/json");
    let b = sent[0].json();
    assert_eq!(
        (b["rule"].as_str(), b["value"].as_str(), b["delta"].as_i64()),
        (Some("cpu_usage"), Some("+1"), Some(1))
    );
    assert_eq!(
        (b["service"].as_str(), b["namespace"].as_str()),
        (Some("carts"), Some("sockshop"))
    );
    assert_eq!(b["labels"]["alertname"], "cpu_usage");
    assert_eq!(b["status"], "firing");
    assert_eq!(
        report["problems"][0]["actions"][0],
        json!({"action": "scaling", "value": "+1", "service": "carts", "namespace": "sockshop",
               "outcome": "done", "detail": "scaling webhook accepted +1 for carts"})
    );
}

#[test]
fn group_of_three_gives_two_actions_and_one_no_match() {
    let r = Recorder::new();
    let body = alertmanager(
        "firing",
        &[
            ("cpu_usage", None, &[("service", "carts")]),
            ("DiskFull", Some("disk almost full"), &[]),
            ("HighFailureRate", Some("Failure rate increase"), &[]),
        ],
    );
    let (status, report) = r.post("/alertmanager", &body);
    assert_eq!(status, 200);
    let outcomes: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        [json!("acted"), json!("no_matching_rule"), json!("acted")]
    );
    assert_eq!(report["problems"][1]["rule"], json!(null));
    let urls: Vec<_> = r.sent().into_iter().map(|s| s.url).collect();
    assert_eq!(
        urls,
        ["http://scaler.test:9100/scale", PROMOTION, PROMOTION_OFF]
    );
}

#[test]
fn no_matching_rule_is_200_and_calls_nothing() {
    let r = Recorder::new();
    let (status, report) = r.post("/", &alertmanager("firing", &[("DiskFull", None, &[])]));
    assert_eq!(status, 200);
    assert_eq!(report["problems"][0]["outcome"], "no_matching_rule");
    assert_eq!(report["problems"][0]["detail"], "no matching rule");
    assert!(r.sent().is_empty());
}

#[test]
fn unknown_flag_is_reported_not_retried() {
    let r = Recorder::new();
    r.answer(|_| respond(404, r#"{"name":"NotFoundError","message":"Could not find feature flag with name EnablePromotion"}"#));
    let (status, report) = r.post("/", &failure_rate());
    assert_eq!(status, 200, "retrying cannot create the flag");
    let a = &report["problems"][0]["actions"][0];
    assert_eq!(a["outcome"], "failed");
    assert_eq!(a["retryable"], false);
    let err = a["error"].as_str().unwrap();
    assert!(
        err.contains("\"EnablePromotion\"") && err.contains("404"),
        "{err}"
    );
    assert_eq!(report["problems"][0]["outcome"], "failed");
}

#[test]
fn retryable_failures_answer_502_so_alertmanager_retries() {
    let cases: Vec<(&str, Responder, &str)> = vec![
        (
            "wrong token",
            Box::new(|_: &Sent| respond(401, "unauthorized")),
            "unleash_token",
        ),
        (
            "server error",
            Box::new(|_: &Sent| respond(503, "down for maintenance")),
            "503",
        ),
        (
            "unreachable",
            Box::new(|_: &Sent| {
                Err(remediator::platform::SendError::Transport(
                    "connection refused".into(),
                ))
            }),
            "connection refused",
        ),
        (
            "timeout",
            Box::new(|_: &Sent| {
                Err(remediator::platform::SendError::Timeout(
                    "no response".into(),
                ))
            }),
            "timed out",
        ),
    ];
    for (name, answer, needle) in cases {
        let r = Recorder::new();
        r.answer(answer);
        let (status, report) = r.post("/", &failure_rate());
        assert_eq!(status, 502, "{name}: {report}");
        let a = &report["problems"][0]["actions"][0];
        assert_eq!(
            (a["outcome"].as_str(), a["retryable"].as_bool()),
            (Some("failed"), Some(true)),
            "{name}"
        );
        assert!(a["error"].as_str().unwrap().contains(needle), "{name}: {a}");
    }
}

#[test]
fn scaling_webhook_failures_follow_the_same_contract() {
    let r = Recorder::new();
    r.answer(|_| respond(500, "boom"));
    let (status, _) = r.post("/", &alertmanager("firing", &[("cpu_usage", None, &[])]));
    assert_eq!(status, 502);
    r.answer(|_| respond(400, "no such deployment"));
    let (status, report) = r.post("/", &alertmanager("firing", &[("cpu_usage", None, &[])]));
    assert_eq!(status, 200);
    assert!(report["problems"][0]["actions"][0]["error"]
        .as_str()
        .unwrap()
        .contains("no such deployment"));
}

#[test]
fn webhook_credentials_are_checked_before_anything_happens() {
    let r = Recorder::new();
    let no_auth = http::Request::post("/alertmanager").header("content-type", "application/json");
    let (status, body) = r.request(no_auth, &failure_rate());
    assert_eq!(status, 401);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("missing credential"));
    for header in [
        "Bearer wrong",
        "Basic aG9vazpTRUNSRVQ=",
        "Bearer hook-SECRET-5ee",
        "bearer hook-SECRET-5eedX",
    ] {
        let req = http::Request::post("/").header("authorization", header);
        let (status, _) = r.request(req, &failure_rate());
        assert_eq!(status, 401, "{header}");
    }
    assert!(r.sent().is_empty());
    // The scheme is case-insensitive.
    let req = http::Request::post("/").header("authorization", format!("bearer {WEBHOOK_TOKEN}"));
    assert_eq!(r.request(req, &failure_rate()).0, 200);
}

#[test]
fn no_configured_credential_refuses_unless_explicitly_allowed() {
    let r = Recorder::new();
    r.set_var("webhook_token", "");
    let open = || http::Request::post("/");
    let (status, body) = r.request(open(), &failure_rate());
    assert_eq!(status, 500);
    assert!(body["error"].as_str().unwrap().contains("webhook_token"));
    assert!(r.sent().is_empty());
    r.set_var("allow_unauthenticated", "true");
    assert_eq!(r.request(open(), &failure_rate()).0, 200);
    assert_eq!(r.posts().len(), 1);
    let (_, health) = r.request(http::Request::get("/healthz"), b"");
    assert!(health["warnings"][0]
        .as_str()
        .unwrap()
        .contains("WITHOUT authentication"));
}

#[test]
fn dry_run_decides_everything_and_sends_nothing() {
    for (query, var) in [("?dry_run=true", "false"), ("", "true")] {
        let r = Recorder::new();
        r.set_var("dry_run", var);
        let (status, report) = r.post(&format!("/alertmanager{query}"), &failure_rate());
        assert_eq!(status, 200);
        assert!(r.sent().is_empty(), "{query} {var}");
        assert_eq!(report["dry_run"], true);
        let p = &report["problems"][0];
        assert_eq!(p["outcome"], "dry_run");
        assert_eq!(p["actions"][0]["outcome"], "dry_run");
        assert_eq!(
            p["actions"][0]["detail"],
            format!("would send POST {PROMOTION_OFF}")
        );
    }
}

#[test]
fn resolved_alert_changes_nothing() {
    let r = Recorder::new();
    let (status, report) = r.post(
        "/",
        &alertmanager(
            "resolved",
            &[("HighFailureRate", Some("Failure rate increase"), &[])],
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(report["problems"][0]["outcome"], "ignored");
    assert!(r.sent().is_empty());
}

#[test]
fn keptn_problem_event_follows_the_same_rules() {
    let r = Recorder::new();
    let body = br#"{"specversion":"1.0","type":"sh.keptn.events.problem","source":"dt","id":"1",
      "data":{"ProblemTitle":"Failure rate increase","State":"OPEN","PID":"p-1","project":"sockshop","stage":"production","service":"carts"}}"#;
    let (status, report) = r.post("/keptn", body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["format"], "keptn");
    assert_eq!(r.posts()[0].url, PROMOTION_OFF);
}

#[test]
fn bad_requests_get_clear_status_codes() {
    let r = Recorder::new();
    let auth = format!("Bearer {WEBHOOK_TOKEN}");
    let post = |path: &str| http::Request::post(path).header("authorization", auth.as_str());
    let big = vec![b' '; remediator::app::MAX_BODY_BYTES + 1];
    let cases: Vec<(http::request::Builder, Vec<u8>, u16, &str)> = vec![
        (post("/"), b"{not json".to_vec(), 400, "not valid JSON"),
        (
            post("/alertmanager"),
            br#"{"version":"3","alerts":[]}"#.to_vec(),
            422,
            "version",
        ),
        (post("/"), big, 413, "limit"),
        (
            post("/").header("content-type", "text/plain"),
            failure_rate(),
            415,
            "text/plain",
        ),
        (post("/nope"), failure_rate(), 404, "no route /nope"),
        (http::Request::get("/alertmanager"), vec![], 405, "use POST"),
        (http::Request::delete("/healthz"), vec![], 405, "use GET"),
    ];
    for (req, body, want, needle) in cases {
        let (status, json) = r.request(req, &body);
        assert_eq!(status, want, "{json}");
        assert!(json["error"].as_str().unwrap().contains(needle), "{json}");
    }
    assert!(r.sent().is_empty());
}

#[test]
fn broken_rules_are_a_server_error_naming_the_line() {
    let r = Recorder::new();
    r.set_rules(include_str!("fixtures/rules/tutorial-as-printed.yaml"));
    let (status, body) = r.post("/", &failure_rate());
    assert_eq!(status, 500);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("rules: /remediation.yaml: line 5,"),
        "{body}"
    );
    let (status, health) = r.request(http::Request::get("/healthz"), b"");
    assert_eq!(status, 503);
    assert!(health["error"].as_str().unwrap().contains("line 5"));
}

/// An error found after the YAML parsed names its line the same way, in the webhook's
/// answer, `GET /rules` and `/healthz`.
#[test]
fn rules_errors_found_after_parsing_name_the_line_too() {
    let r = Recorder::new();
    r.set_rules(
        "rules:\n  - name: ok\n    match: {title: x}\n    actions: [{scale: '+1'}]\n  \
         - name: bad\n    match:\n      labels:\n        - 'service=\"carts\"'\n        \
         - 'env=~\"prod'\n    actions: [{scale: '+1'}]\n",
    );
    let want = "rules: /remediation.yaml: line 9: rules[1] (\"bad\").match.labels[1]: matcher";
    let (status, body) = r.post("/", &failure_rate());
    assert_eq!(status, 500);
    assert!(body["error"].as_str().unwrap().starts_with(want), "{body}");
    let (status, body) = r.request(
        http::Request::get("/rules").header("authorization", format!("Bearer {WEBHOOK_TOKEN}")),
        b"",
    );
    assert_eq!(status, 500);
    assert!(body["error"].as_str().unwrap().starts_with(want), "{body}");
    let (status, health) = r.request(http::Request::get("/healthz"), b"");
    assert_eq!(status, 503);
    assert!(
        health["error"].as_str().unwrap().contains(&want[7..]),
        "{health}"
    );
}

#[test]
fn healthz_reports_rules() {
    let r = Recorder::new();
    let (status, body) = r.request(http::Request::get("/healthz"), b"");
    assert_eq!(status, 200);
    let version = format!(
        "h128:{}",
        remediator::rules::compiled::hex(&remediator::rules::compiled::hash128(
            TUTORIAL_RULES.as_bytes()
        ))
    );
    assert_eq!(
        body["rules"],
        json!({"source": "bundled /remediation.yaml", "format": "keptn-0.6", "count": 3,
               "version": version, "fetched_at": null, "warning": null})
    );
    assert_eq!(body["status"], "ok");
}

#[test]
fn secrets_never_appear_in_responses_or_logs() {
    let r = Recorder::new();
    r.set_var("webhook_basic_user", "am");
    r.set_var("webhook_basic_password", "basic-SECRET-9911");
    r.set_var("webhook_hmac_secret", "hmac-SECRET-4242");
    let mut seen = String::new();
    // Success, failure echoing the request back, auth failures, health, bad input.
    r.answer(|s| respond(500, &format!("{:?}", s.headers)));
    seen += &r.post("/", &failure_rate()).1.to_string();
    seen += &r
        .post("/", &alertmanager("firing", &[("cpu_usage", None, &[])]))
        .1
        .to_string();
    seen += &r
        .request(
            http::Request::post("/").header("authorization", "Bearer x"),
            b"{}",
        )
        .1
        .to_string();
    seen += &r.request(http::Request::get("/healthz"), b"").1.to_string();
    seen += &r.post("/", b"{").1.to_string();
    seen += &r
        .audit("")
        .iter()
        .map(|e| e.to_string())
        .collect::<String>();
    r.set_var("unleash_url", "not a url");
    seen += &r.post("/", &failure_rate()).1.to_string();
    seen += &r.logs.borrow().join("\n");
    seen += &r
        .request(
            http::Request::post("/").header("x-grafana-alerting-signature", "00"),
            b"{}",
        )
        .1
        .to_string();
    for secret in [
        UNLEASH_TOKEN,
        SCALE_TOKEN,
        WEBHOOK_TOKEN,
        "basic-SECRET-9911",
        "hmac-SECRET-4242",
    ] {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
}

#[test]
fn idempotent_unleash_calls_are_retried_with_backoff_scaling_is_not() {
    let r = Recorder::new();
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let seen = calls.clone();
    r.answer(move |s| {
        seen.set(seen.get() + 1);
        match (s.method.as_str(), seen.get()) {
            ("GET", 1) => respond(503, "starting"),
            ("GET", _) => respond(
                200,
                r#"{"environments":[{"name":"production","enabled":true}]}"#,
            ),
            _ => respond(200, ""),
        }
    });
    let t0 = r.now.get();
    let (status, report) = r.post("/", &failure_rate());
    assert_eq!(status, 200, "{report}");
    let sent = r.sent();
    let methods: Vec<_> = sent.iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, ["GET", "GET", "POST"]);
    // The retry came after a backoff (the clock moved between the two reads), and the
    // whole delivery stayed within its outbound budget. The backoff's length is not pinned.
    assert!(sent[1].at_ms > sent[0].at_ms, "no backoff before the retry");
    let budget: i64 = r.vars.borrow()["outbound_budget_ms"].parse().unwrap();
    assert!(
        r.now.get() - t0 < budget,
        "{} ms of a {budget} ms budget",
        r.now.get() - t0
    );

    let r = Recorder::new();
    r.answer(|_| respond(500, "boom"));
    let (status, _) = r.post("/", &alertmanager("firing", &[("cpu_usage", None, &[])]));
    assert_eq!(status, 502);
    assert_eq!(r.sent().len(), 1, "a +1 is never retried blindly");
}

#[test]
fn retries_stop_at_the_delivery_budget() {
    // Behaviour, not the backoff schedule: it retries, every attempt starts inside the
    // budget, and a longer budget allows more attempts.
    let attempts = |budget_ms: i64| {
        let r = Recorder::new();
        r.set_var("outbound_budget_ms", &budget_ms.to_string());
        r.answer(|_| respond(503, "down"));
        let start = r.now.get();
        let (status, report) = r.post("/", &failure_rate());
        assert_eq!(status, 502, "{report}");
        let sent = r.sent();
        for s in &sent {
            assert!(
                s.at_ms - start < budget_ms,
                "an attempt {} ms after the delivery began, past its {budget_ms} ms budget",
                s.at_ms - start
            );
        }
        sent.len()
    };
    let short = attempts(300);
    let long = attempts(3_000);
    assert!(short >= 2, "no retry within 300 ms: {short} attempt(s)");
    assert!(long > short, "3 s allowed {long} attempts, 300 ms {short}");
}

/// A group of `alerts`, the one at `bad` without its `alertname`.
fn group_with_malformed(alerts: &[TestAlert], bad: usize) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&alertmanager("firing", alerts)).unwrap();
    let labels = body["alerts"][bad]["labels"].as_object_mut().unwrap();
    labels.remove("alertname");
    labels.insert("severity".into(), json!("page"));
    serde_json::to_vec(&body).unwrap()
}

#[test]
fn one_malformed_alert_does_not_drop_the_valid_ones_in_its_group() {
    let r = Recorder::new();
    let body = group_with_malformed(
        &[
            ("cpu_usage", None, &[("service", "carts")]),
            ("DiskFull", None, &[]),
            ("HighFailureRate", Some("Failure rate increase"), &[]),
        ],
        1,
    );
    let (status, report) = r.post("/alertmanager", &body);
    assert_eq!(status, 200, "{report}");
    let handled: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["title"].clone(), p["outcome"].clone()))
        .collect();
    assert_eq!(
        handled,
        [
            (json!("cpu_usage"), json!("acted")),
            (json!("HighFailureRate"), json!("acted"))
        ]
    );
    let urls: Vec<_> = r.sent().into_iter().map(|s| s.url).collect();
    assert_eq!(
        urls,
        ["http://scaler.test:9100/scale", PROMOTION, PROMOTION_OFF]
    );
    assert_eq!(
        report["rejected"],
        json!([{"index": 1, "reason": "alerts[1].labels.alertname: missing"}])
    );
    assert_eq!(report["not_processed"], 0);

    let (status, simulated) = r.post("/simulate", &body);
    assert_eq!(status, 200, "{simulated}");
    assert_eq!(simulated["rejected"], report["rejected"]);
    let (_, clean) = r.post("/", &failure_rate());
    assert!(
        clean.get("rejected").is_none(),
        "omitted when empty: {clean}"
    );
}

#[test]
fn a_rejected_alert_does_not_stop_a_retryable_failure_answering_502() {
    let r = Recorder::new();
    r.answer(|_| respond(503, "down for maintenance"));
    let body = group_with_malformed(
        &[
            ("DiskFull", None, &[]),
            ("HighFailureRate", Some("Failure rate increase"), &[]),
        ],
        0,
    );
    let (status, report) = r.post("/", &body);
    assert_eq!(status, 502, "{report}");
    assert_eq!(report["problems"][0]["outcome"], "failed");
    assert_eq!(report["rejected"][0]["index"], 0);
}

#[test]
fn a_group_with_no_valid_alert_answers_422_naming_every_bad_one() {
    let r = Recorder::new();
    let mut body: serde_json::Value = serde_json::from_slice(&group_with_malformed(
        &[("DiskFull", None, &[]), ("HighFailureRate", None, &[])],
        0,
    ))
    .unwrap();
    body["alerts"][1]["status"] = json!("exploding");
    let (status, report) = r.post("/", &serde_json::to_vec(&body).unwrap());
    assert_eq!(status, 422, "{report}");
    let message = report["error"].as_str().unwrap();
    for needle in [
        "alerts[0].labels.alertname: missing",
        "alerts[1].status: unknown variant `exploding`",
    ] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    assert!(r.sent().is_empty());
}

#[test]
fn unleash_token_with_a_trailing_newline_is_sent_trimmed_not_a_crash() {
    // A Kubernetes Secret file ends in a newline.
    let r = Recorder::new();
    r.set_var("unleash_token", &format!("{UNLEASH_TOKEN}\n"));
    let (status, report) = r.post("/alertmanager", &failure_rate());
    assert_eq!(status, 200, "{report}");
    assert_eq!(r.sent().len(), 2);
    for s in r.sent() {
        assert_eq!(s.headers["authorization"], UNLEASH_TOKEN);
    }
}

#[test]
fn tokens_and_paths_that_cannot_go_in_a_request_are_configuration_errors_not_a_crash() {
    let cpu = alertmanager("firing", &[("cpu_usage", None, &[])]);
    for (var, value) in [
        ("scale_path", "/scale hook"),
        ("scale_path", "/scale\n/x"),
        ("unleash_token", "unleash\nSECRET"),
        ("scale_token", "scale\u{7f}SECRET"),
        ("rules_path", "/rules file.yaml"),
    ] {
        let r = Recorder::new();
        r.set_var(var, value);
        for body in [failure_rate(), cpu.clone()] {
            let (status, report) = r.post("/", &body);
            assert_eq!(status, 500, "{var}={value:?}: {report}");
            let error = report["error"].as_str().unwrap();
            assert!(error.contains(&format!("variable {var}")), "{error}");
            assert!(!error.contains("SECRET"), "{error}");
        }
        assert!(r.sent().is_empty(), "{var}: nothing is sent");
    }
}

/// What a webhook with the right bearer token reads before it knows whether any rule
/// matches (issue 13: each variable is a host call on every request).
const WEBHOOK_VARIABLES: [&str; 7] = [
    "rules_origin",
    "rules_path",
    "webhook_token",
    "rules_file",
    "dry_run",
    "audit_unmatched",
    "count_unmatched",
];

/// And the other credential settings, when the bearer token does not decide it.
const AUTH_VARIABLES: [&str; 7] = [
    "webhook_basic_user",
    "webhook_basic_password",
    "webhook_hmac_secret",
    "webhook_hmac_header",
    "webhook_hmac_timestamp_header",
    "webhook_hmac_window_s",
    "allow_unauthenticated",
];

/// Deliveries that read every variable before any rule runs, each with its
/// `audit_unmatched`: a match, a resolve (which may undo), an audited unmatched one.
fn needing_every_variable() -> [(Vec<u8>, &'static str); 3] {
    [
        (failure_rate(), "false"),
        (
            alertmanager("resolved", &[("DiskFull", None, &[])]),
            "false",
        ),
        (alertmanager("firing", &[("DiskFull", None, &[])]), "true"),
    ]
}

#[test]
fn a_delivery_no_rule_matches_reads_only_the_webhook_variables_others_read_each_once() {
    let r = Recorder::new();
    let (status, report) = r.post("/", &alertmanager("firing", &[("DiskFull", None, &[])]));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["problems"][0]["outcome"], "no_matching_rule");
    assert_eq!(report["problems"][0]["detail"], "no matching rule");
    assert_eq!(r.vars_read.take(), WEBHOOK_VARIABLES);

    // Without the bearer token: the other credential settings too (then a 401).
    let (status, _) = r.request(
        http::Request::post("/").header("content-type", "application/json"),
        &alertmanager("firing", &[("DiskFull", None, &[])]),
    );
    assert_eq!(status, 401);
    let read = r.vars_read.take();
    assert_eq!(read[..WEBHOOK_VARIABLES.len()], WEBHOOK_VARIABLES);
    let mut rest = read[WEBHOOK_VARIABLES.len()..].to_vec();
    rest.sort();
    let mut auth = AUTH_VARIABLES.to_vec();
    auth.sort();
    assert_eq!(rest, auth);

    // Acting, undoing, or auditing the unmatched: every variable, each read once.
    let every: std::collections::BTreeSet<String> =
        remediator::testing::variables(&[]).into_keys().collect();
    for (body, audit_unmatched) in needing_every_variable() {
        r.set_var("audit_unmatched", audit_unmatched);
        let (status, report) = r.post("/", &body);
        assert_eq!(status, 200, "{report}");
        let read = r.vars_read.take();
        assert_eq!(read[..WEBHOOK_VARIABLES.len()], WEBHOOK_VARIABLES);
        let once: std::collections::BTreeSet<String> = read.iter().cloned().collect();
        assert_eq!(once.len(), read.len(), "a variable read twice: {read:?}");
        assert_eq!(once, every);
    }
}

#[test]
fn a_bad_variable_fails_every_delivery_that_needs_it_before_any_rule_runs_and_healthz() {
    for (var, value) in [
        ("unleash_url", "http://unleash.test:4242/api"),
        ("notify_2_origin", "ftp://grafana"),
        ("max_changes", "20/h"),
        ("outbound_timeout_ms", "soon"),
        ("webhook_hmac_window_s", "0"),
        ("webhook_hmac_header", "X Sig"),
    ] {
        let r = Recorder::new();
        r.set_var(var, value);
        // Nothing matched, nothing audited: none of these is needed.
        let (status, report) = r.post("/", &alertmanager("firing", &[("DiskFull", None, &[])]));
        assert_eq!(status, 200, "{var}: {report}");
        assert_eq!(report["problems"][0]["outcome"], "no_matching_rule");
        // A match, a resolve (which may undo) or an audited delivery: a 500 naming the
        // variable, and nothing done.
        for (body, audit_unmatched) in needing_every_variable() {
            r.set_var("audit_unmatched", audit_unmatched);
            let (status, report) = r.post("/", &body);
            assert_eq!(status, 500, "{var}: {report}");
            let error = report["error"].as_str().unwrap();
            assert!(
                error.starts_with(&format!("configuration: variable {var}: ")),
                "{error}"
            );
        }
        assert!(r.sent().is_empty(), "{var}: nothing is sent");
        assert!(
            !r.kv.borrow().keys().any(|k| k.starts_with("audit/")),
            "{var}: nothing is audited"
        );
        let (status, health) = r.request(http::Request::get("/healthz"), b"");
        assert_eq!(status, 503, "{var}: {health}");
        assert!(
            health["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("configuration: variable {var}: ")),
            "{health}"
        );
    }
    // What every delivery reads fails every delivery, as before; a credential
    // setting, every delivery the bearer token does not let in (500, not 401).
    for (var, value, bearer) in [
        ("dry_run", "maybe", true),
        ("rules_path", "/rules file.yaml", true),
        ("webhook_hmac_window_s", "0", false),
        ("allow_unauthenticated", "maybe", false),
    ] {
        let r = Recorder::new();
        r.set_var(var, value);
        let body = alertmanager("firing", &[("DiskFull", None, &[])]);
        let (status, report) = if bearer {
            r.post("/", &body)
        } else {
            r.request(
                http::Request::post("/")
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer not-the-token"),
                &body,
            )
        };
        assert_eq!(status, 500, "{var}: {report}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("configuration: variable {var}: ")),
            "{report}"
        );
    }
}

#[test]
fn scale_calls_carry_an_idempotency_key_per_step_and_another_for_the_revert() {
    let r = Recorder::new();
    r.set_rules(
        "rules:\n  - name: up\n    match: {title: cpu_usage}\n    actions: [{scale: '+2', revert: true}]\n",
    );
    let (status, report) = r.post("/", &alertmanager("firing", &[("cpu_usage", None, &[])]));
    assert_eq!(status, 200, "{report}");
    let occurrence = report["problems"][0]["occurrence"].as_str().unwrap();
    let (status, report) = r.post("/", &alertmanager("resolved", &[("cpu_usage", None, &[])]));
    assert_eq!(status, 200, "{report}");
    let posts = r.posts();
    assert_eq!(posts.len(), 2);
    let act = remediator::state::hash(&[occurrence, "up", "0"]);
    let revert = remediator::state::hash(&[occurrence, "up", "0", "revert"]);
    for (sent, key) in posts.iter().zip([&act, &revert]) {
        assert_eq!(&sent.headers["idempotency-key"], key);
        assert_eq!(sent.json()["idempotency_key"], key.as_str());
    }
    assert_ne!(act, revert);
}

#[test]
fn a_token_echoed_across_the_excerpt_cut_leaves_no_prefix_in_reports_or_audit() {
    for before in 170..=200 {
        let r = Recorder::new();
        r.answer(move |_| {
            respond(
                400,
                &format!("{}{UNLEASH_TOKEN} is wrong", "x".repeat(before)),
            )
        });
        let (_, report) = r.post("/", &failure_rate());
        let mut seen = report.to_string();
        seen += &r
            .audit("")
            .iter()
            .map(|e| e.to_string())
            .collect::<String>();
        assert!(seen.contains("Unleash rejected"), "{seen}");
        for n in 4..=UNLEASH_TOKEN.len() {
            assert!(
                !seen.contains(&UNLEASH_TOKEN[..n]),
                "{before}: {:?} leaked:\n{seen}",
                &UNLEASH_TOKEN[..n]
            );
        }
    }
}

#[test]
fn a_newline_in_an_alert_cannot_forge_a_log_line() {
    let r = Recorder::new();
    let mut body: serde_json::Value = serde_json::from_slice(&failure_rate()).unwrap();
    body["alerts"][0]["fingerprint"] = json!("fp\nremediator: forged\u{1b}[2K");
    let (status, report) = r.post("/", &serde_json::to_vec(&body).unwrap());
    assert_eq!(status, 200, "{report}");
    let logs = r.logs.borrow();
    let line = logs
        .iter()
        .find(|l| l.contains("outcome=Acted"))
        .expect("the problem is logged");
    assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line:?}");
    assert!(
        line.contains(r"fp\nremediator: forged\u{1b}[2K"),
        "{line:?}"
    );
}

#[test]
fn the_report_and_the_audit_carry_the_notification_reason_and_grafana_links() {
    // No rule matches these payloads: audited only with audit_unmatched.
    let r = Recorder::new();
    r.set_var("audit_unmatched", "true");
    let body = include_bytes!("fixtures/payloads/alertmanager-0.34-repeat.json");
    let (status, report) = r.post("/alertmanager", body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["notification_reason"], "repeat interval elapsed",
        "{report}"
    );
    let audit = r.audit("");
    assert!(!audit.is_empty());
    assert!(
        audit
            .iter()
            .all(|e| e["notification_reason"] == "repeat interval elapsed"),
        "{audit:?}"
    );

    let r = Recorder::new();
    r.set_var("audit_unmatched", "true");
    let body = include_bytes!("fixtures/payloads/grafana-firing.json");
    let (status, report) = r.post("/grafana", body);
    assert_eq!(status, 200, "{report}");
    assert!(report.get("notification_reason").is_none());
    let links = &report["problems"][0]["links"];
    assert_eq!(links["ruleUID"], "be7qz1yv3kzk0e", "{report}");
    assert_eq!(
        links["panelURL"],
        "https://grafana.example/d/checkout-slo?orgId=1&viewPanel=4"
    );
    // The second alert's empty Grafana links are dropped; its generatorURL is kept.
    assert_eq!(
        report["problems"][1]["links"],
        serde_json::json!({
            "generatorURL": "https://grafana.example/alerting/grafana/be7qz1yv3kzk0e/view?orgId=1"
        }),
        "{report}"
    );
    // The audit keeps them on decisions (for the audit page), not on bookkeeping.
    let audit = r.audit("");
    assert!(
        audit
            .iter()
            .filter(|e| e["event"] != "received" && e["event"] != "matched")
            .all(|e| e["links"]["generatorURL"].as_str().is_some()),
        "{audit:?}"
    );
    assert!(audit
        .iter()
        .filter(|e| e["event"] == "received")
        .all(|e| e.get("links").is_none()));
    assert!(audit
        .iter()
        .any(|e| e["links"]["panelURL"]
            == "https://grafana.example/d/checkout-slo?orgId=1&viewPanel=4"));
}
