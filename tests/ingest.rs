//! Every accepted webhook format, normalized into `Problem`s.

use remediator::ingest::{ingest, Format, IngestError, Ingested, MAX_REJECTED};
use remediator::problem::{Source, Status};

const FIRING: &[u8] = include_bytes!("fixtures/payloads/alertmanager-firing.json");
const RESOLVED: &[u8] = include_bytes!("fixtures/payloads/alertmanager-resolved.json");

#[test]
fn real_alertmanager_samples() {
    let fired = ingest(None, FIRING).unwrap();
    assert_eq!(fired.format, Format::Alertmanager);
    assert_eq!(fired.problems.len(), 1);
    let p = &fired.problems[0];
    assert_eq!((p.source, p.status), (Source::Alertmanager, Status::Firing));
    assert_eq!(p.title, "HighErrorRatio");
    assert_eq!(p.summary.as_deref(), Some("error ratio 500m > 0.1"));
    assert_eq!(p.label("service"), Some("checkout"));
    assert_eq!(
        p.occurrence(),
        "alertmanager/27e5459cf81eb0c9/2026-11-26T14:02:06.305Z"
    );

    let resolved = ingest(Some(Format::Alertmanager), RESOLVED).unwrap();
    let r = &resolved.problems[0];
    assert_eq!(r.status, Status::Resolved);
    // Same occurrence: a resolve pairs with the firing it ends.
    assert_eq!(r.occurrence(), p.occurrence());
}

#[test]
fn every_alert_in_a_group_mixed_status_truncated_and_unknown_fields() {
    let body = br#"{
      "version": "4", "status": "firing", "receiver": "r", "groupKey": "{}", "truncatedAlerts": 3,
      "notification_reason": "new", "routeLabels": {"team": "shop"},
      "alerts": [
        {"status": "firing", "labels": {"alertname": "A"}, "startsAt": "t1", "fingerprint": "1", "extra": 1},
        {"status": "resolved", "labels": {"alertname": "B"}, "startsAt": "t2", "fingerprint": "2"},
        {"status": "firing", "labels": {"alertname": "C", "x": "y"}, "startsAt": "t3"}
      ]
    }"#;
    let got = ingest(None, body).unwrap();
    let summary: Vec<_> = got
        .problems
        .iter()
        .map(|p| (p.title.as_str(), p.status))
        .collect();
    assert_eq!(
        summary,
        [
            ("A", Status::Firing),
            ("B", Status::Resolved),
            ("C", Status::Firing)
        ]
    );
    assert_eq!(got.not_processed, 3);
    // No fingerprint sent: one is derived from the labels, stable across deliveries.
    let again = ingest(None, body).unwrap();
    assert_eq!(got.problems[2].fingerprint, again.problems[2].fingerprint);
    assert_eq!(got.problems[2].fingerprint.len(), 16);
}

#[test]
fn grafana_unified_alerting_webhook() {
    let body = br#"{
      "receiver": "remediator", "status": "firing", "orgId": 1, "version": "1",
      "state": "alerting", "title": "[FIRING:1] cpu_usage", "message": "...",
      "groupKey": "{}", "truncatedAlerts": 0, "externalURL": "http://grafana/",
      "alerts": [{
        "status": "firing",
        "labels": {"alertname": "cpu_usage", "service": "carts", "grafana_folder": "shop"},
        "annotations": {"summary": "CPU high"},
        "startsAt": "2026-11-26T14:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "a1b2", "silenceURL": "x", "dashboardURL": "", "panelURL": "",
        "values": {"B": 97.5}, "valueString": "[ var='B' value=97.5 ]"
      }]
    }"#;
    let got = ingest(None, body).unwrap();
    assert_eq!(got.format, Format::Grafana);
    assert_eq!(got.problems[0].source, Source::Grafana);
    assert_eq!(got.problems[0].title, "cpu_usage");
    assert_eq!(
        ingest(Some(Format::Grafana), body).unwrap().problems.len(),
        1
    );
}

const KEPTN_BARE: &str = r#"{
  "ProblemTitle": "Failure rate increase", "State": "OPEN", "ProblemID": "762", "PID": "93a5-3fas-a09d-8ckf",
  "ImpactedEntity": "carts-primary", "Tags": "keptn_service:carts, keptn_stage:production",
  "ProblemDetails": {"x": 1}, "project": "sockshop", "stage": "production", "service": "carts"
}"#;

#[test]
fn keptn_problem_bare_and_in_cloudevents_envelopes() {
    let bare = ingest(None, KEPTN_BARE.as_bytes()).unwrap();
    assert_eq!(bare.format, Format::Keptn);
    let p = &bare.problems[0];
    assert_eq!(
        (p.title.as_str(), p.status),
        ("Failure rate increase", Status::Firing)
    );
    assert_eq!(p.occurrence(), "keptn/93a5-3fas-a09d-8ckf");
    assert_eq!(p.label("service"), Some("carts"));
    assert_eq!(p.label("keptn_stage"), Some("production"));
    assert_eq!(p.label("impacted_entity"), Some("carts-primary"));

    for ty in ["sh.keptn.event.problem.open", "sh.keptn.events.problem"] {
        let ce = format!(
            r#"{{"specversion":"1.0","type":"{ty}","source":"dynatrace","id":"e1","datacontenttype":"application/json","data":{KEPTN_BARE}}}"#
        );
        let got = ingest(None, ce.as_bytes()).unwrap();
        assert_eq!(got.problems[0], *p, "{ty}");
    }
    let closed = KEPTN_BARE.replace("\"OPEN\"", "\"CLOSED\"");
    assert_eq!(
        ingest(Some(Format::Keptn), closed.as_bytes())
            .unwrap()
            .problems[0]
            .status,
        Status::Resolved
    );
    let resolved = KEPTN_BARE.replace("\"OPEN\"", "\"RESOLVED\"");
    assert_eq!(
        ingest(Some(Format::Keptn), resolved.as_bytes())
            .unwrap()
            .problems[0]
            .status,
        Status::Resolved
    );
}

#[test]
fn bad_payloads_name_the_field() {
    let cases: &[(Option<Format>, &str, &str)] = &[
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"}}"#,
            "not valid JSON",
        ),
        (None, r#"{"version":"3","alerts":[]}"#, "version: \"3\""),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing"}]}"#,
            "alerts[0]: missing field `labels`",
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"burning","labels":{"alertname":"B"}}]}"#,
            "alerts[0].status",
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"severity":"x"}}]}"#,
            "alerts[0].labels.alertname",
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":5}}]}"#,
            "alerts[0].labels.alertname",
        ),
        (
            None,
            r#"{"version":"4","alerts":{"0":{"status":"firing","labels":{"alertname":"A"}}}}"#,
            "alerts: invalid type: map",
        ),
        (
            None,
            r#"{"version":"4","truncatedAlerts":"some","alerts":[{"status":"firing","labels":{"alertname":"A"}}]}"#,
            "truncatedAlerts: invalid type: string",
        ),
        (None, r#"{"hello":"world"}"#, "unrecognized payload"),
        (None, r#"[1,2]"#, "JSON object"),
        (
            None,
            r#"{"ProblemTitle":"x","State":"MAYBE","PID":"1"}"#,
            "State: \"MAYBE\"",
        ),
        (None, r#"{"ProblemTitle":"x","State":"OPEN"}"#, "ProblemID"),
        (
            None,
            r#"{"specversion":"1.0","type":"sh.keptn.event.deployment.finished","data":{}}"#,
            "type: \"sh.keptn.event.deployment.finished\"",
        ),
        (
            Some(Format::Keptn),
            r#"{"State":"OPEN","PID":"1"}"#,
            "ProblemTitle",
        ),
        (
            Some(Format::Alertmanager),
            r#"{"ProblemTitle":"x"}"#,
            "version",
        ),
    ];
    for (route, body, needle) in cases {
        let err = ingest(*route, body.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains(needle),
            "{body}\n  got: {err}\n  want: {needle}"
        );
        let malformed = matches!(err, IngestError::Malformed(_));
        assert_eq!(malformed, *needle == "not valid JSON", "{body}: {err:?}");
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        ingest(None, body.as_bytes()),
        Err(IngestError::Malformed(_))
    ));
}

fn group(alerts: &[&str]) -> Vec<u8> {
    format!(
        r#"{{"version":"4","status":"firing","truncatedAlerts":0,"alerts":[{}]}}"#,
        alerts.join(",")
    )
    .into_bytes()
}

fn rejected(got: &Ingested) -> Vec<(usize, &str)> {
    got.rejected
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect()
}

fn titles(got: &Ingested) -> Vec<&str> {
    got.problems.iter().map(|p| p.title.as_str()).collect()
}

#[test]
fn one_malformed_alert_does_not_drop_the_valid_ones_in_its_group() {
    let body = group(&[
        r#"{"status":"firing","labels":{"alertname":"A"},"fingerprint":"1"}"#,
        r#"{"status":"firing","labels":{"severity":"page"},"fingerprint":"2"}"#,
        r#"{"status":"resolved","labels":{"alertname":"C"},"fingerprint":"3"}"#,
    ]);
    let got = ingest(Some(Format::Alertmanager), &body).unwrap();
    assert_eq!(titles(&got), ["A", "C"]);
    assert_eq!(got.problems[1].status, Status::Resolved);
    assert_eq!(rejected(&got), [(1, "alerts[1].labels.alertname: missing")]);
    assert_eq!(
        got.not_processed, 0,
        "rejected alerts are reported, not counted"
    );
}

#[test]
fn each_malformed_alert_is_rejected_by_its_index_naming_its_field() {
    let ok = r#"{"status":"firing","labels":{"alertname":"Ok"}}"#;
    let body = group(&[
        ok,
        r#"{"status":"burning","labels":{"alertname":"B"}}"#,
        r#"{"labels":{"alertname":"B"}}"#,
        r#"{"status":"firing"}"#,
        r#"{"status":"firing","labels":{"alertname":""}}"#,
        r#"{"status":"firing","labels":{"alertname":5}}"#,
        r#"{"status":"firing","labels":{"alertname":"B","team":null}}"#,
        r#"{"status":"firing","labels":{"alertname":"B"},"startsAt":1764165726}"#,
        r#"{"status":"firing","labels":{"alertname":"B"},"annotations":[]}"#,
        r#""an alert""#,
        ok,
    ]);
    let got = ingest(None, &body).unwrap();
    assert_eq!(titles(&got), ["Ok", "Ok"]);
    let got = rejected(&got);
    let want = [
        (1, "alerts[1].status: unknown variant `burning`"),
        (2, "alerts[2]: missing field `status`"),
        (3, "alerts[3]: missing field `labels`"),
        (4, "alerts[4].labels.alertname: empty"),
        (5, "alerts[5].labels.alertname: invalid type: integer `5`"),
        (6, "alerts[6].labels.team: invalid type: null"),
        (7, "alerts[7].startsAt: invalid type: integer `1764165726`"),
        (8, "alerts[8].annotations: invalid type: sequence"),
        (9, "alerts[9]: invalid type: string \"an alert\""),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((index, reason), (want_index, needle)) in got.iter().zip(want) {
        assert_eq!(*index, want_index, "{reason}");
        assert!(reason.starts_with(needle), "{reason:?} lacks {needle:?}");
    }
}

#[test]
fn grafana_groups_reject_malformed_alerts_one_by_one() {
    let body = br#"{
      "receiver": "remediator", "status": "firing", "orgId": 1, "version": "1",
      "alerts": [
        {"status": "firing", "labels": {"grafana_folder": "shop"}, "values": {"B": 1}},
        {"status": "firing", "labels": {"alertname": "cpu_usage"}, "values": {"B": 97.5}}
      ]
    }"#;
    for route in [None, Some(Format::Grafana)] {
        let got = ingest(route, body).unwrap();
        assert_eq!(got.format, Format::Grafana);
        assert_eq!(titles(&got), ["cpu_usage"]);
        assert_eq!(got.problems[0].source, Source::Grafana);
        assert_eq!(rejected(&got), [(0, "alerts[0].labels.alertname: missing")]);
    }
}

#[test]
fn a_group_with_no_valid_alert_is_refused_naming_every_bad_one() {
    let body = group(&[
        r#"{"status":"firing","labels":{}}"#,
        r#"{"status":"exploding","labels":{"alertname":"B"}}"#,
    ]);
    let err = ingest(None, &body).unwrap_err();
    assert!(matches!(err, IngestError::Invalid(_)), "{err:?}");
    let message = err.to_string();
    for needle in [
        "alerts[0].labels.alertname: missing",
        "alerts[1].status: unknown variant `exploding`",
    ] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

#[test]
fn thousands_of_malformed_alerts_are_reported_in_bounded_detail() {
    let bad = r#"{"status":"firing","labels":{}}"#;
    let mut alerts = vec![bad; 1000];
    alerts.push(r#"{"status":"firing","labels":{"alertname":"Ok"}}"#);
    let got = ingest(None, &group(&alerts)).unwrap();
    assert_eq!(titles(&got), ["Ok"]);
    assert_eq!(got.rejected.len(), MAX_REJECTED);
    assert_eq!(got.rejected[MAX_REJECTED - 1].index, MAX_REJECTED - 1);
    assert_eq!(got.not_processed, (1000 - MAX_REJECTED) as u64);

    let huge = format!(r#""{}""#, "x".repeat(100_000));
    let got = ingest(None, &group(&[&huge, alerts[1000]])).unwrap();
    assert!(got.rejected[0].reason.len() < 300, "a quoted value is cut");

    let err = ingest(None, &group(&[bad; 1000])).unwrap_err();
    assert!(err.to_string().len() < 2000, "{err}");
    assert!(err.to_string().contains("alerts[0].labels.alertname"));
}

#[test]
fn alertmanager_0_34_notification_reason_is_kept_and_route_labels_ignored() {
    let body = include_bytes!("fixtures/payloads/alertmanager-0.34-repeat.json");
    let got = ingest(None, body).unwrap();
    assert_eq!(got.format, Format::Alertmanager);
    assert_eq!(
        got.notification_reason.as_deref(),
        Some("repeat interval elapsed")
    );
    assert_eq!(got.problems.len(), 1);
    // Alertmanager links the alert's source (Prometheus's expression), nothing else.
    let l = &got.problems[0].links;
    assert_eq!(
        l.generator_url.as_deref(),
        Some("http://prometheus:9090/graph?g0.expr=job%3Aerror_ratio%3Arate5m+%3E+0.1&g0.tab=1")
    );
    assert!(l.rule_uid.is_none() && l.dashboard_url.is_none() && l.panel_url.is_none());
    // 0.25's payload carries none.
    assert_eq!(ingest(None, FIRING).unwrap().notification_reason, None);
}

#[test]
fn grafana_links_are_kept_per_alert_and_empty_ones_dropped() {
    let body = include_bytes!("fixtures/payloads/grafana-firing.json");
    let got = ingest(Some(Format::Grafana), body).unwrap();
    assert_eq!(got.format, Format::Grafana);
    assert_eq!(got.problems.len(), 2);
    let l = &got.problems[0].links;
    assert_eq!(l.rule_uid.as_deref(), Some("be7qz1yv3kzk0e"));
    assert_eq!(
        l.dashboard_url.as_deref(),
        Some("https://grafana.example/d/checkout-slo?orgId=1")
    );
    assert_eq!(
        l.panel_url.as_deref(),
        Some("https://grafana.example/d/checkout-slo?orgId=1&viewPanel=4")
    );
    let l1 = &got.problems[1].links;
    assert!(
        l1.dashboard_url.is_none() && l1.panel_url.is_none(),
        "empty ones dropped: {l1:?}"
    );
    assert!(l1.generator_url.is_some(), "{l1:?}");
    assert_eq!(
        got.problems[0].summary.as_deref(),
        Some("Failure rate increase")
    );
}

/// The failing field's path, exactly as serde_path_to_error gave it (the messages were
/// recorded with it; the path is now found only on the error path: src/ingest/mod.rs).
#[test]
fn error_paths_are_those_serde_path_to_error_gave() {
    let cases: &[(Option<Format>, &str, &str)] = &[
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing"}]}"#,
            r#"alerts[0]: missing field `labels`"#,
        ),
        (
            None,
            r#"{"version":4,"alerts":[]}"#,
            r#"version: invalid type: integer `4`, expected a string"#,
        ),
        (None, r#"{"alerts":[]}"#, r#"missing field `version`"#),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"}},{"status":"firing","labels":[]}]}"#,
            r#"alerts[1].labels: invalid type: sequence, expected a map"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A","a.b":{"c":1}}}]}"#,
            r#"alerts[0].labels.a.b: invalid type: map, expected a string"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{}}]}"#,
            r#"alerts[0].labels.alertname: missing"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":{"x":[1,2]},"labels":{"alertname":"A"}}]}"#,
            r#"alerts[0].status: unknown variant `x`, expected `firing` or `resolved`"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"},"annotations":{"s":[1,{"a":2}]}}]}"#,
            r#"alerts[0].annotations.s: invalid type: sequence, expected a string"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"},"fingerprint":1.5}]}"#,
            r#"alerts[0].fingerprint: invalid type: floating point `1.5`, expected a string"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"},"generatorURL":[]}]}"#,
            r#"alerts[0].generatorURL: invalid type: sequence, expected a string"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"}}],"notification_reason":{}}"#,
            r#"notification_reason: invalid type: map, expected a string"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"}}],"truncatedAlerts":-1}"#,
            r#"truncatedAlerts: invalid value: integer `-1`, expected u64"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"}}],"truncatedAlerts":1e30}"#,
            r#"truncatedAlerts: invalid type: floating point `1e+30`, expected u64"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":null}"#,
            r#"alerts: invalid type: null, expected a sequence"#,
        ),
        (
            None,
            r#"{"orgId":1,"version":"1","alerts":[{"status":"firing","labels":{"alertname":"A"},"ruleUID":{"a":{"b":{}}}}]}"#,
            r#"alerts[0].ruleUID: invalid type: map, expected a string"#,
        ),
        (None, r#"{"ProblemTitle":"x"}"#, r#"missing field `State`"#),
        (
            None,
            r#"{"ProblemTitle":5,"State":"OPEN"}"#,
            r#"ProblemTitle: invalid type: integer `5`, expected a string"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","ProblemID":{"a":1,"b":[2]}}"#,
            r#"ProblemID: data did not match any variant of untagged enum IdValue"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","PID":[1,2]}"#,
            r#"PID: data did not match any variant of untagged enum IdValue"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","PID":1.5}"#,
            r#"PID: data did not match any variant of untagged enum IdValue"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","labels":{"a":"b","c":[]}}"#,
            r#"labels.c: invalid type: sequence, expected a string"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","labels":[]}"#,
            r#"labels: invalid type: sequence, expected a map"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","Tags":{}}"#,
            r#"Tags: invalid type: map, expected a string"#,
        ),
        (
            None,
            r#"{"type":"sh.keptn.event.problem.open","specversion":"1.0","data":{"ProblemTitle":"t"}}"#,
            r#"missing field `State`"#,
        ),
        (
            None,
            r#"{"type":"sh.keptn.event.problem.open","specversion":"1.0","data":{"ProblemTitle":"t","State":{"x":"\n"}}}"#,
            r#"State: invalid type: map, expected a string"#,
        ),
        (
            Some(Format::Keptn),
            r#"{"alerts":[]}"#,
            r#"missing field `ProblemTitle`"#,
        ),
        (
            Some(Format::Alertmanager),
            r#"{"ProblemTitle":"t"}"#,
            r#"missing field `version`"#,
        ),
        (
            Some(Format::Grafana),
            r#"{"version":"1","alerts":[{"status":"firing","labels":{"alertname":"A\"\n"},"annotations":{"x\ny":null}}]}"#,
            "alerts[0].annotations.x\ny: invalid type: null, expected a string",
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":{"firing":1},"labels":{"alertname":"A"}}]}"#,
            r#"alerts[0].status.firing: invalid type: integer `1`, expected unit"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":{"x":1,"y":2},"labels":{"alertname":"A"}}]}"#,
            r#"alerts[0].status: invalid value: map, expected map with a single key"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":{"firing":null,"y":2},"labels":{"alertname":"A"}}]}"#,
            r#"alerts[0].status: invalid value: map, expected map with a single key"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"status":{"a\"b":{}},"labels":{"alertname":"A"}}]}"#,
            r#"alerts[0].status: unknown variant `a"b`, expected `firing` or `resolved`"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"labels":{"alertname":"A"},"status":{}}]}"#,
            r#"alerts[0].status: invalid value: map, expected map with a single key"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"labels":{"alertname":"A"},"status":[]}]}"#,
            r#"alerts[0].status: invalid type: sequence, expected string or map"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"labels":{"alertname":"A"},"status":["firing"]}]}"#,
            r#"alerts[0].status: invalid type: sequence, expected string or map"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"labels":{"alertname":"A","b":{}},"status":"firing"}]}"#,
            r#"alerts[0].labels.b: invalid type: map, expected a string"#,
        ),
        (
            None,
            r#"{"version":"4","alerts":[{"labels":{"alertname":"A"},"status":"firing","annotations":{"a":"b","c":{"d":[]}}}]}"#,
            r#"alerts[0].annotations.c: invalid type: map, expected a string"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","ProblemID":{}}"#,
            r#"ProblemID: data did not match any variant of untagged enum IdValue"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","ProblemID":[]}"#,
            r#"ProblemID: data did not match any variant of untagged enum IdValue"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","ProblemID":[[]]}"#,
            r#"ProblemID: data did not match any variant of untagged enum IdValue"#,
        ),
        (
            None,
            r#"{"ProblemTitle":"t","State":"OPEN","ProblemID":null,"PID":true}"#,
            r#"PID: data did not match any variant of untagged enum IdValue"#,
        ),
    ];
    for (format, body, want) in cases {
        let got = match ingest(*format, body.as_bytes()) {
            Ok(i) => match &i.rejected[..] {
                [r] => r.reason.clone(),
                _ => panic!("{body}: accepted, {} rejected", i.rejected.len()),
            },
            Err(IngestError::Invalid(m)) => m,
            Err(e) => panic!("{body}: {e:?}"),
        };
        assert_eq!(&got, want, "{body}");
    }
}

/// Every body a mutation of a real sample can become: each node deleted, or replaced
/// by a value of another type.
fn mutations(sample: &[u8]) -> Vec<Vec<u8>> {
    fn paths(v: &serde_json::Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(at.clone());
        let children: Vec<(String, &serde_json::Value)> = match v {
            serde_json::Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), v)).collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            _ => vec![],
        };
        for (k, child) in children {
            at.push(k);
            paths(child, at, out);
            at.pop();
        }
    }
    fn edit(v: &mut serde_json::Value, path: &[String], new: Option<&serde_json::Value>) {
        let (last, parent) = match path.split_last() {
            Some((last, rest)) => (
                last,
                rest.iter().fold(v, |v, k| match v {
                    serde_json::Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
                    v => &mut v[k.as_str()],
                }),
            ),
            None => return,
        };
        match (parent, new) {
            (serde_json::Value::Object(o), None) => {
                o.remove(last);
            }
            (serde_json::Value::Array(a), None) => {
                a.remove(last.parse::<usize>().unwrap());
            }
            (serde_json::Value::Array(a), Some(n)) => a[last.parse::<usize>().unwrap()] = n.clone(),
            (p, Some(n)) => p[last.as_str()] = n.clone(),
            _ => {}
        }
    }
    let root: serde_json::Value = serde_json::from_slice(sample).unwrap();
    let mut all = Vec::new();
    paths(&root, &mut Vec::new(), &mut all);
    let others = [
        serde_json::Value::Null,
        serde_json::json!(1),
        serde_json::json!("x"),
        serde_json::json!(""),
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!("4"),
    ];
    let mut out = vec![sample.to_vec()];
    for path in &all {
        for new in [None].into_iter().chain(others.iter().map(Some)) {
            let mut v = root.clone();
            edit(&mut v, path, new);
            out.push(serde_json::to_vec(&v).unwrap());
        }
    }
    out
}

#[test]
fn the_fast_path_reads_exactly_what_the_general_path_reads() {
    let samples: [&[u8]; 4] = [
        FIRING,
        RESOLVED,
        include_bytes!("fixtures/payloads/alertmanager-0.34-repeat.json"),
        include_bytes!("fixtures/payloads/grafana-firing.json"),
    ];
    let (mut fast, mut compared) = (0, 0);
    for sample in samples {
        let mut bodies = mutations(sample);
        // Duplicate keys: the typed read refuses them, the general one keeps the last.
        let text = String::from_utf8(sample.to_vec()).unwrap();
        bodies.push(
            text.replacen("\"alerts\"", "\"alerts\": [], \"alerts\"", 1)
                .into_bytes(),
        );
        bodies.push(
            text.replacen("\"labels\": {", "\"labels\": {\"alertname\": \"Dup\", ", 1)
                .into_bytes(),
        );
        for body in &bodies {
            for format in [Format::Alertmanager, Format::Grafana] {
                let general = remediator::ingest::general(Some(format), body);
                if let Some(got) = remediator::ingest::alertmanager::fast(format, body) {
                    fast += 1;
                    assert_eq!(
                        format!("{got:?}"),
                        format!("{general:?}"),
                        "{}",
                        String::from_utf8_lossy(body)
                    );
                }
                compared += 1;
                // Whichever path reads it, `ingest` answers as the general path.
                assert_eq!(
                    format!("{:?}", ingest(Some(format), body)),
                    format!("{general:?}")
                );
            }
        }
    }
    // The fast path is taken for the samples as they are, and refused for many mutations.
    assert!(
        fast >= samples.len() && fast < compared,
        "{fast} of {compared}"
    );
}

#[test]
fn the_fast_path_is_lenient_only_inside_fields_it_ignores() {
    // Numbers out of range and bad escapes in a field remediator never reads: the
    // typed read skips them, the general path (which must build every value) refuses.
    let body = br#"{"version": "4", "receiver": 1e999, "extra": "\ud800", "alerts": [
        {"status": "firing", "labels": {"alertname": "A"}, "values": {"v": 1e999}}]}"#;
    let got = ingest(Some(Format::Alertmanager), body).unwrap();
    assert_eq!(titles(&got), ["A"]);
    assert!(matches!(
        remediator::ingest::general(Some(Format::Alertmanager), body),
        Err(IngestError::Malformed(_))
    ));
    // In a field it reads, the same body is refused, naming the problem.
    let body =
        br#"{"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": 1e999}}]}"#;
    assert!(matches!(
        ingest(Some(Format::Alertmanager), body),
        Err(IngestError::Malformed(_))
    ));
}

#[test]
fn an_unsupported_version_names_what_the_sender_sends_on_either_path() {
    for (format, body, want) in [
        (
            Format::Alertmanager,
            &br#"{"version": "3", "alerts": []}"#[..],
            r#"version: "3" is not supported (Alertmanager sends "4")"#,
        ),
        (
            Format::Grafana,
            br#"{"version": "9", "alerts": []}"#,
            r#"version: "9" is not supported (Grafana sends "1")"#,
        ),
    ] {
        for got in [
            ingest(Some(format), body),
            remediator::ingest::general(Some(format), body),
        ] {
            assert_eq!(got.unwrap_err(), IngestError::Invalid(want.into()));
        }
    }
    // Grafana accepts the Alertmanager shape's version too.
    assert!(ingest(Some(Format::Grafana), br#"{"version": "4", "alerts": []}"#).is_ok());
}
