//! The audit page through the handler: hostile alert content is escaped, a
//! `javascript:` generatorURL is not made a link, filters come back in the form.

mod support;

use support::*;

fn page(r: &Recorder, query: &str) -> (u16, http::HeaderMap, String) {
    let req = http::Request::get(format!("/audit{query}"))
        .header("accept", "text/html,application/xhtml+xml")
        .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
        .body(vec![])
        .unwrap();
    let resp = remediator::app::handle(&r.platform, req);
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (
        status,
        headers,
        String::from_utf8(resp.body().clone()).unwrap(),
    )
}

fn failure_rate(status: &str) -> Vec<u8> {
    failure_rate_summarized(status, "Failure rate increase")
}

fn hostile_alert(status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "status": status, "receiver": "remediator", "groupKey": "{}",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "HighFailureRate", "service": "<script>alert(1)</script>"},
            "annotations": {"summary": "Failure rate increase <img src=x onerror=alert(2)> \"q\" 'a'"},
            "startsAt": "2026-11-26T14:02:06.305Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "javascript:alert(3)",
            "fingerprint": "fp\"><script>alert(4)</script>",
        }],
    }))
    .unwrap()
}

#[test]
fn hostile_alert_content_is_escaped_and_only_http_links_are_made() {
    let r = Recorder::new();
    assert_eq!(r.post("/alertmanager", &hostile_alert("firing")).0, 200);
    r.advance(60_000);
    assert_eq!(r.post("/alertmanager", &hostile_alert("resolved")).0, 200);
    let (status, headers, html) = page(&r, "");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("href=\"javascript"), "{html}");
    assert!(html.contains("alert source: javascript:alert(3)"), "{html}");
    assert!(html.contains(
        "turned EnablePromotion off in production: Failure rate increase &lt;img src=x onerror=alert(2)&gt; &quot;q&quot; &#39;a&#39;"
    ), "{html}");
    assert!(html.contains("reverted: EnablePromotion back on"), "{html}");
    assert!(html.contains("fp&quot;&gt;&lt;script&gt;alert(4)&lt;/script&gt;"));
    assert!(html
        .contains("href=\"http://unleash.test:4242/projects/default/features/EnablePromotion\""));
}

#[test]
fn filters_round_trip_through_the_url() {
    let r = Recorder::new();
    r.post("/", &failure_rate("firing"));
    r.advance(1000);
    r.post("/", &failure_rate("resolved"));
    let (status, _, html) = page(
        &r,
        "?rule=Failure+rate+increase&flag=&outcome=reverted&since=2025-11-26T14%3A00%3A00Z&until=",
    );
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("name=\"rule\" value=\"Failure rate increase\""));
    assert!(html.contains("<option value=\"reverted\" selected>"));
    assert!(html.contains("name=\"since\" value=\"2025-11-26T14:00:00Z\""));
    assert!(html.contains("data-event=\"reverted\""), "{html}");
    assert!(!html.contains("data-event=\"acted\""), "{html}");
    // A bad time: the page again (400), naming the field, the form as typed.
    let (status, _, body) = page(&r, "?since=yesterday&flag=EnablePromotion");
    assert_eq!(status, 400);
    assert!(
        body.contains("<p class=\"error\">since: &quot;yesterday&quot; is not RFC 3339"),
        "{body}"
    );
    assert!(
        body.contains("name=\"since\" value=\"yesterday\""),
        "{body}"
    );
    assert!(
        body.contains("name=\"flag\" value=\"EnablePromotion\""),
        "{body}"
    );
    // The JSON API answers JSON.
    let (status, json) = r.request(
        http::Request::get("/audit?since=yesterday")
            .header("authorization", format!("Bearer {WEBHOOK_TOKEN}")),
        b"",
    );
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().starts_with("since:"),
        "{json}"
    );
    // Times as people type them (UTC, no seconds) are taken.
    assert_eq!(page(&r, "?since=2025-11-26T14%3A00").0, 200);
    // The JSON API is unchanged for clients that do not ask for HTML.
    assert_eq!(r.audit("?outcome=reverted").len(), 1);
}

#[test]
fn an_event_from_a_newer_version_still_reads_and_renders_generically() {
    let r = Recorder::new();
    // A batch as a newer replica might write it (an event this build has no name for,
    // and a field it does not know).
    let batch = serde_json::json!([{
        "delivery": 1, "at": "2025-11-26T14:02:06.000Z", "at_ms": 1_764_165_726_000i64,
        "event": "quarantined", "occurrence": "alertmanager/fp/s", "title": "HighFailureRate",
        "rule": "Failure rate increase", "detail": "held in quarantine by a newer replica",
        "quarantine": {"count": 5},
    }]);
    r.kv.borrow_mut()
        .insert("audit/1".into(), serde_json::to_vec(&batch).unwrap());
    r.kv.borrow_mut().insert("audit/head".into(), b"1".to_vec());
    let entries = r.audit("");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["event"], "unknown");
    let (status, _, html) = page(&r, "");
    assert_eq!(status, 200);
    assert!(
        html.contains("unknown: held in quarantine by a newer replica"),
        "{html}"
    );
    assert!(html.contains("data-event=\"unknown\""), "{html}");
}
