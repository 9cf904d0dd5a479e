//! Bad input through the whole handler: each gets its exact status code and a
//! message naming the problem; nothing panics and nothing is sent.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use remediator::auth::hmac_hex;
use support::*;

struct Case {
    name: &'static str,
    request: http::request::Builder,
    body: Vec<u8>,
    rules: Option<String>,
    status: u16,
    needle: &'static str,
}

fn bearer(path: &str) -> http::request::Builder {
    http::Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
}

fn am(alerts: &str) -> Vec<u8> {
    format!(r#"{{"version":"4","status":"firing","alerts":[{alerts}]}}"#).into_bytes()
}

fn cases() -> Vec<Case> {
    let ok_alert = r#"{"status":"firing","labels":{"alertname":"DiskFull"}}"#;
    let signed_body = am(ok_alert);
    let stale_ts = (1_764_165_726_000i64 / 1000 - 3600).to_string();
    let stale_sig = hmac_hex(b"hmac-SECRET-k", &[stale_ts.as_bytes(), b":", &signed_body]);
    let c = |name, request, body: Vec<u8>, status, needle| Case {
        name,
        request,
        body,
        rules: None,
        status,
        needle,
    };
    vec![
        c(
            "truncated JSON",
            bearer("/"),
            br#"{"version":"4","alerts":[{"status":"fir"#.to_vec(),
            400,
            "not valid JSON",
        ),
        c("empty body", bearer("/"), vec![], 400, "not valid JSON"),
        c(
            "invalid UTF-8",
            bearer("/"),
            b"{\"version\":\"4\",\"alerts\":[\xff\xfe]}".to_vec(),
            400,
            "not valid JSON",
        ),
        c(
            "deeply nested JSON",
            bearer("/"),
            format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)).into_bytes(),
            400,
            "recursion limit",
        ),
        c(
            "wrong version",
            bearer("/alertmanager"),
            br#"{"version":"3","alerts":[]}"#.to_vec(),
            422,
            "version: \"3\"",
        ),
        c(
            "alerts without labels",
            bearer("/"),
            am(r#"{"status":"firing"}"#),
            422,
            "alerts[0]: missing field `labels`",
        ),
        c(
            "alert without alertname",
            bearer("/"),
            am(r#"{"status":"firing","labels":{}}"#),
            422,
            "alerts[0].labels.alertname: missing",
        ),
        c(
            "label value not a string",
            bearer("/"),
            am(r#"{"status":"firing","labels":{"alertname":["x"]}}"#),
            422,
            "alerts[0].labels.alertname",
        ),
        c(
            "unknown alert status",
            bearer("/"),
            am(r#"{"status":"exploding","labels":{"alertname":"A"}}"#),
            422,
            "alerts[0].status: unknown variant `exploding`",
        ),
        c(
            "alerts is null",
            bearer("/"),
            br#"{"version":"4","alerts":null}"#.to_vec(),
            422,
            "alerts: invalid type: null",
        ),
        c(
            "JSON array",
            bearer("/"),
            b"[]".to_vec(),
            422,
            "must be a JSON object",
        ),
        c(
            "unrecognized payload",
            bearer("/"),
            br#"{"hello":"world"}"#.to_vec(),
            422,
            "unrecognized payload",
        ),
        c(
            "Keptn with a bad State",
            bearer("/keptn"),
            br#"{"ProblemTitle":"x","State":"MELTING","PID":"1"}"#.to_vec(),
            422,
            "State: \"MELTING\"",
        ),
        c(
            "CloudEvent of another type",
            bearer("/"),
            br#"{"specversion":"1.0","type":"sh.keptn.event.evaluation.finished","data":{}}"#
                .to_vec(),
            422,
            "is not a Keptn problem event",
        ),
        c(
            "Grafana with a wrong version",
            bearer("/grafana"),
            br#"{"version":"9","orgId":1,"alerts":[]}"#.to_vec(),
            422,
            "Grafana sends",
        ),
        c(
            "body over the cap",
            bearer("/"),
            vec![b' '; 2 * 1024 * 1024],
            413,
            "exceeds the 1048576-byte limit",
        ),
        c(
            "wrong content type",
            http::Request::post("/")
                .header("content-type", "text/plain")
                .header("authorization", format!("Bearer {WEBHOOK_TOKEN}")),
            am(ok_alert),
            415,
            "send application/json",
        ),
        c(
            "wrong method",
            http::Request::put("/alertmanager"),
            am(ok_alert),
            405,
            "use POST",
        ),
        c(
            "unknown route",
            bearer("/webhook"),
            am(ok_alert),
            404,
            "no route /webhook",
        ),
        c(
            "missing credential",
            http::Request::post("/"),
            am(ok_alert),
            401,
            "missing credential",
        ),
        c(
            "wrong bearer",
            http::Request::post("/").header("authorization", "Bearer nope"),
            am(ok_alert),
            401,
            "wrong credential",
        ),
        c(
            "wrong HMAC",
            http::Request::post("/")
                .header("x-grafana-alerting-signature", "deadbeef")
                .header(
                    "x-grafana-alerting-timestamp",
                    (1_764_165_726_000i64 / 1000).to_string(),
                ),
            am(ok_alert),
            401,
            "wrong credential or signature",
        ),
        c(
            "replayed HMAC outside the window",
            http::Request::post("/")
                .header("x-grafana-alerting-signature", stale_sig)
                .header("x-grafana-alerting-timestamp", stale_ts),
            signed_body,
            401,
            "outside the 300s replay window",
        ),
        Case {
            name: "YAML bomb in rules",
            request: bearer("/"),
            body: am(ok_alert),
            rules: Some(yaml_alias_bomb()),
            status: 500,
            needle: "repetition limit",
        },
        Case {
            name: "unknown key in rules",
            request: bearer("/"),
            body: am(ok_alert),
            rules: Some("rules:\n  - name: r\n    match: {title: x}\n    acts: []\n".into()),
            status: 500,
            needle: "line 4, column 5: rules[0]: unknown field `acts`",
        },
    ]
}

#[test]
fn every_bad_input_gets_its_status_and_a_named_problem() {
    let all = cases();
    assert!(all.len() >= 20);
    for case in all {
        let r = Recorder::new();
        r.set_var("webhook_hmac_secret", "hmac-SECRET-k");
        r.set_var(
            "webhook_hmac_timestamp_header",
            "X-Grafana-Alerting-Timestamp",
        );
        if let Some(rules) = &case.rules {
            r.set_rules(rules);
        }
        let (status, body) = r.request(case.request, &case.body);
        let message = body["error"].as_str().unwrap_or_default();
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert!(
            message.contains(case.needle),
            "{}: {message:?} lacks {:?}",
            case.name,
            case.needle
        );
        assert!(r.sent().is_empty(), "{}: nothing may be sent", case.name);
    }
}

/// Runs `f` on its own thread and fails, naming `what`, if it has not finished within
/// `bound`: a test of "does not stall" then fails instead of hanging. The bound is generous
/// (tens of times what a debug build needs), so it decides only a stall, never a slow machine.
fn within<T: Send + 'static>(
    what: &str,
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(bound) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: not done within {bound:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked (see above)"),
    }
}

#[test]
fn ten_thousand_alerts_are_all_processed_and_the_report_stays_small() {
    let (status, report, audited) = within(
        "10,000 alerts in one delivery",
        Duration::from_secs(120),
        || {
            let r = Recorder::new();
            // No rule matches them: audited only with audit_unmatched.
            r.set_var("audit_unmatched", "true");
            let alerts: Vec<String> = (0..10_000)
            .map(|i| {
                format!(r#"{{"status":"firing","labels":{{"alertname":"A{i}"}},"fingerprint":"{i}"}}"#)
            })
            .collect();
            let (status, report) = r.post("/", &am(&alerts.join(",")));
            let audited: Vec<String> = r
                .audit("?limit=5000")
                .iter()
                .filter_map(|e| e["title"].as_str().map(str::to_string))
                .collect();
            (status, report, audited)
        },
    );
    assert_eq!(status, 200);
    assert_eq!(
        report["problems"].as_array().unwrap().len(),
        remediator::app::MAX_ALERTS
    );
    assert_eq!(
        report["problems_not_shown"],
        10_000 - remediator::app::MAX_ALERTS
    );
    assert_eq!(report["not_processed"], 0);
    // Past the report's first MAX_ALERTS, alerts were processed too: one is in the audit trail.
    assert!(
        audited.iter().any(|t| t == "A300"),
        "alert 301 was processed and audited: {} entries, newest {:?}",
        audited.len(),
        audited.first()
    );
}

#[test]
fn regex_denial_of_service_does_not_stall_matching() {
    let (status, report) = within(
        "matching 100,000-byte labels against backtracking-prone regexes",
        Duration::from_secs(60),
        || {
            let r = Recorder::new();
            r.set_rules("rules:\n  - name: evil\n    match: {labels: ['service=~\"(a+)+$\"', 'x=~\"(a|aa)*c\"']}\n    actions: [{scale: '+1'}]\n");
            let value = "a".repeat(100_000) + "!";
            let body = alertmanager(
                "firing",
                &[(
                    "X",
                    None,
                    &[("service", value.as_str()), ("x", value.as_str())],
                )],
            );
            r.post("/", &body)
        },
    );
    assert_eq!(status, 200);
    assert_eq!(report["problems"][0]["outcome"], "no_matching_rule");
}

#[test]
fn huge_label_values_stay_out_of_keys_and_bounded_in_the_audit() {
    let r = Recorder::new();
    let huge = "x".repeat(400_000);
    let body = alertmanager("firing", &[(huge.as_str(), None, &[("service", "carts")])]);
    let (status, report) = r.post("/", &body);
    assert_eq!(status, 200, "{}", report["error"]);
    let kv = r.kv.borrow();
    // Metrics keys name their series (fixed names, rule names bounded); the rest are hashes.
    assert!(
        kv.keys()
            .all(|k| k.len() <= 64 || (k.starts_with("metrics/") && k.len() <= 240)),
        "keys stay short"
    );
    assert!(
        kv.values().all(|v| v.len() < 64 * 1024),
        "values stay small"
    );
}

#[test]
fn labels_cannot_redirect_requests() {
    let r = Recorder::new();
    let body = cpu_usage_on("../../admin", "http://evil.test/x?y#z");
    let (status, _) = r.post("/", &body);
    assert_eq!(status, 200);
    let sent = r.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url, "http://scaler.test:9100/scale");
    assert_eq!(
        sent[0].json()["service"],
        "../../admin",
        "carried as data only"
    );
}
