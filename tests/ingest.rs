//! Every accepted webhook format, normalized into `Problem`s.

use remediator::ingest::{ingest, Format, IngestError};
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
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"}},{"status":"burning","labels":{"alertname":"B"}}]}"#,
            "alerts[1].status",
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
