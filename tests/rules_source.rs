//! Rules over HTTP: TTL cache, ETag revalidation, last-known-good, bundled fallback,
//! GET /rules and POST /simulate.

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;
use support::*;

const URL: &str = "http://rules.test:8080/team/remediation.yaml";

const V1: &str = "rules:\n  - name: v1-rule\n    match: {title: HighFailureRate}\n    actions: [{flag: EnablePromotion, state: off}]\n";
const V2: &str = "rules:\n  - name: v2-rule\n    match: {title: HighFailureRate}\n    actions: [{scale: '+1'}]\n";
const BROKEN: &str =
    "rules:\n  - name: broken\n    match: {title: x}\n    actions: [{flag: F, state: sideways}]\n";

/// A rules server: serves `body` with an ETag derived from it; 304 on a match;
/// `None` means down.
struct RulesServer {
    body: Rc<RefCell<Option<String>>>,
}

fn setup() -> (Recorder, RulesServer) {
    let r = Recorder::new();
    r.set_var("rules_origin", "http://rules.test:8080");
    r.set_var("rules_path", "/team/remediation.yaml");
    r.set_var("rules_token", "rules-SECRET-77");
    r.set_var("rules_ttl_s", "30");
    let body = Rc::new(RefCell::new(Some(V1.to_string())));
    let served = body.clone();
    r.answer(move |s| {
        if !s.url.starts_with("http://rules.test") {
            return if s.method == "GET" {
                respond(
                    200,
                    r#"{"environments":[{"name":"production","enabled":true}]}"#,
                )
            } else {
                respond(200, "")
            };
        }
        let Some(b) = served.borrow().clone() else {
            return Err(remediator::platform::SendError::Transport(
                "connection refused".into(),
            ));
        };
        let etag = format!("\"{}\"", b.len());
        if s.headers.get("if-none-match") == Some(&etag) {
            return Ok(http::Response::builder().status(304).body(vec![]).unwrap());
        }
        Ok(http::Response::builder()
            .status(200)
            .header("etag", etag)
            .body(b.into_bytes())
            .unwrap())
    });
    (r, RulesServer { body })
}

fn v1_etag() -> String {
    format!("\"{}\"", V1.len())
}

fn fire(r: &Recorder) -> Value {
    let (status, report) = r.post(
        "/",
        &alertmanager("firing", &[("HighFailureRate", None, &[])]),
    );
    assert!(status == 200 || status == 502, "{report}");
    report
}

fn rules_fetches(r: &Recorder) -> Vec<Sent> {
    r.sent().into_iter().filter(|s| s.url == URL).collect()
}

#[test]
fn fetched_rules_are_used_and_cached_for_the_ttl() {
    let (r, _server) = setup();
    let report = fire(&r);
    assert_eq!(report["problems"][0]["rule"], "v1-rule");
    assert_eq!(report["rules_source"], format!("url {URL}"));
    assert_eq!(report["rules_version"], v1_etag());
    let fetches = rules_fetches(&r);
    assert_eq!(fetches.len(), 1);
    assert_eq!(
        fetches[0].headers["authorization"],
        "Bearer rules-SECRET-77"
    );
    assert!(!fetches[0].headers.contains_key("if-none-match"));
    // Within the TTL: no request at all, however many webhooks.
    for _ in 0..5 {
        r.advance(1000);
        fire(&r);
    }
    assert_eq!(rules_fetches(&r).len(), 1);
}

#[test]
fn after_the_ttl_one_conditional_request_and_304_keeps_the_cache() {
    let (r, _server) = setup();
    fire(&r);
    r.advance(31_000);
    fire(&r);
    fire(&r);
    let fetches = rules_fetches(&r);
    assert_eq!(fetches.len(), 2);
    assert_eq!(fetches[1].headers["if-none-match"], v1_etag());
}

#[test]
fn changed_rules_take_effect_after_the_ttl() {
    let (r, server) = setup();
    assert_eq!(fire(&r)["problems"][0]["rule"], "v1-rule");
    *server.body.borrow_mut() = Some(V2.to_string());
    r.advance(10_000);
    assert_eq!(fire(&r)["problems"][0]["rule"], "v1-rule", "still cached");
    r.advance(25_000);
    let report = fire(&r);
    assert_eq!(report["problems"][0]["rule"], "v2-rule");
}

#[test]
fn broken_rules_are_never_used_last_known_good_is_and_healthz_says_so() {
    let (r, server) = setup();
    fire(&r);
    *server.body.borrow_mut() = Some(BROKEN.to_string());
    r.advance(31_000);
    let report = fire(&r);
    assert_eq!(report["problems"][0]["rule"], "v1-rule");
    assert_eq!(
        report["rules_source"],
        format!("last-known-good from {URL}")
    );
    let warning = report["rules_warning"].as_str().unwrap();
    assert!(
        warning.contains("invalid and were not used") && warning.contains("sideways"),
        "{warning}"
    );
    let (status, health) = r.request(http::Request::get("/healthz"), b"");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded");
    assert!(health["rules"]["warning"]
        .as_str()
        .unwrap()
        .contains("invalid"));
    // Fixed upstream: back to normal after the TTL.
    *server.body.borrow_mut() = Some(V2.to_string());
    r.advance(31_000);
    let report = fire(&r);
    assert_eq!(report["problems"][0]["rule"], "v2-rule");
    assert!(report.get("rules_warning").is_none());
}

#[test]
fn url_down_uses_last_known_good_then_bundled() {
    let (r, server) = setup();
    *server.body.borrow_mut() = None;
    // Never fetched: the bundled tutorial rules, with the reason.
    let report = fire(&r);
    assert_eq!(report["rules_source"], "bundled /remediation.yaml");
    assert_eq!(
        report["problems"][0]["rule"],
        serde_json::Value::Null,
        "tutorial rules do not match HighFailureRate"
    );
    assert!(report["rules_warning"]
        .as_str()
        .unwrap()
        .contains("unreachable"));
    *server.body.borrow_mut() = Some(V1.to_string());
    r.advance(31_000);
    assert_eq!(fire(&r)["rules_source"], format!("url {URL}"));
    *server.body.borrow_mut() = None;
    r.advance(31_000);
    let report = fire(&r);
    assert_eq!(
        report["rules_source"],
        format!("last-known-good from {URL}")
    );
    assert_eq!(report["problems"][0]["rule"], "v1-rule");
}

#[test]
fn get_rules_shows_the_effective_rules_source_version_and_fetch_time() {
    let (r, _server) = setup();
    let req =
        || http::Request::get("/rules").header("authorization", format!("Bearer {WEBHOOK_TOKEN}"));
    let (status, body) = r.request(req(), b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], format!("url {URL}"));
    assert_eq!(body["version"], v1_etag());
    assert!(body["fetched_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["rules"][0]["name"], "v1-rule");
    assert_eq!(body["rules"][0]["actions"][0]["state"], "off");
    assert_eq!(body["rules"][0]["actions"][0]["revert"], true);
    assert_eq!(body["text"], V1);
    assert!(!body.to_string().contains("rules-SECRET-77"));
    assert_eq!(r.request(http::Request::get("/rules"), b"").0, 401);
}

#[test]
fn simulate_decides_like_a_webhook_and_changes_nothing() {
    let r = Recorder::new();
    let body = alertmanager(
        "firing",
        &[("HighFailureRate", Some("Failure rate increase"), &[])],
    );
    let sim = || {
        http::Request::post("/simulate").header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
    };
    let (status, report) = r.request(sim(), &body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["problems"][0]["rule"], "Failure rate increase");
    assert_eq!(report["problems"][0]["actions"][0]["outcome"], "dry_run");
    assert!(r.sent().is_empty());
    // The rules cache's entry aside (a cache, not state).
    assert!(
        r.kv.borrow()
            .keys()
            .all(|k| k.starts_with("rules/compiled/")),
        "no state, no audit: {:?}",
        r.kv.borrow().keys().collect::<Vec<_>>()
    );
    // After a real delivery, simulate reports what a repeat would get.
    r.post("/", &body);
    let (_, report) = r.request(sim(), &body);
    assert_eq!(report["problems"][0]["outcome"], "already_handled");
    assert_eq!(r.request(http::Request::post("/simulate"), &body).0, 401);
}

#[test]
fn a_changed_rules_url_never_uses_rules_fetched_from_the_old_one() {
    let (r, server) = setup();
    assert_eq!(fire(&r)["problems"][0]["rule"], "v1-rule");
    // Reconfigured to another server that is down: not the old server's rules.
    r.set_var("rules_origin", "http://other.test:8080");
    *server.body.borrow_mut() = None;
    let report = fire(&r);
    assert_eq!(
        report["rules_source"], "bundled /remediation.yaml",
        "{report}"
    );
    let asked: Vec<_> = r
        .sent()
        .into_iter()
        .filter(|s| s.url.starts_with("http://other.test"))
        .collect();
    assert_eq!(
        asked.len(),
        1,
        "the new URL is asked at once, not after the old TTL"
    );
}

/// Serves the rules at any rules.test URL (the ETag is the length), answers the
/// Unleash and scaling calls, and reports "down" with an error that quotes the URL
/// it was asked, as a shell's transport error might.
fn serve_anywhere(r: &Recorder, body: Rc<RefCell<Option<String>>>) {
    r.answer(move |s| {
        if !s.url.contains("rules.test") {
            return respond(
                200,
                r#"{"environments":[{"name":"production","enabled":true}]}"#,
            );
        }
        match body.borrow().clone() {
            Some(b) => Ok(http::Response::builder()
                .status(200)
                .header("etag", format!("\"{}\"", b.len()))
                .body(b.into_bytes())
                .unwrap()),
            None => Err(remediator::platform::SendError::Transport(format!(
                "connection to {} refused",
                s.url
            ))),
        }
    });
}

fn everything_shown(r: &Recorder, report: &Value) -> String {
    let auth =
        || http::Request::get("/rules").header("authorization", format!("Bearer {WEBHOOK_TOKEN}"));
    let (_, rules) = r.request(auth(), b"");
    let (_, health) = r.request(http::Request::get("/healthz"), b"");
    format!("{report}\n{rules}\n{health}\n{:?}", r.logs.borrow())
}

#[test]
fn a_token_in_the_rules_path_query_is_never_shown() {
    let r = Recorder::new();
    r.set_var("rules_origin", "http://rules.test:8080");
    r.set_var("rules_path", "/r.yaml?token=SECRET123");
    let body = Rc::new(RefCell::new(Some(V1.to_string())));
    serve_anywhere(&r, body.clone());
    let report = fire(&r);
    assert_eq!(report["problems"][0]["rule"], "v1-rule");
    assert_eq!(report["rules_source"], "url http://rules.test:8080/r.yaml");
    assert_eq!(
        r.sent()[0].url,
        "http://rules.test:8080/r.yaml?token=SECRET123",
        "the request itself carries the token"
    );
    let shown = everything_shown(&r, &report);
    assert!(!shown.contains("SECRET123"), "{shown}");
    // Down, with an error that quotes the URL: neither source nor warning has it.
    *body.borrow_mut() = None;
    r.advance(31_000);
    let report = fire(&r);
    assert_eq!(
        report["rules_source"],
        "last-known-good from http://rules.test:8080/r.yaml"
    );
    let warning = report["rules_warning"].as_str().unwrap();
    assert!(
        warning.contains("connection to http://rules.test:8080/r.yaml refused"),
        "{warning}"
    );
    let shown = everything_shown(&r, &report);
    assert!(!shown.contains("SECRET123"), "{shown}");
    assert!(shown.contains("\"degraded\""), "{shown}");
}

#[test]
fn userinfo_in_the_rules_origin_is_never_shown() {
    let r = Recorder::new();
    r.set_var("rules_origin", "http://reader:PASSW0RD-9@rules.test:8080");
    r.set_var("rules_path", "/team/remediation.yaml");
    let body = Rc::new(RefCell::new(None));
    serve_anywhere(&r, body.clone());
    // Never fetched: the bundled rules, and a warning without the password.
    let report = fire(&r);
    assert_eq!(report["rules_source"], "bundled /remediation.yaml");
    let warning = report["rules_warning"].as_str().unwrap();
    assert!(
        warning.contains(&format!("connection to {URL} refused")),
        "{warning}"
    );
    let shown = everything_shown(&r, &report);
    assert!(!shown.contains("PASSW0RD"), "{shown}");
    *body.borrow_mut() = Some(V1.to_string());
    r.advance(31_000);
    let report = fire(&r);
    assert_eq!(report["rules_source"], format!("url {URL}"));
    let shown = everything_shown(&r, &report);
    assert!(!shown.contains("PASSW0RD"), "{shown}");
}

#[test]
fn an_oversized_rules_file_is_a_fetch_error_and_the_last_good_rules_stay() {
    let (r, server) = setup();
    assert_eq!(fire(&r)["problems"][0]["rule"], "v1-rule");
    // Valid rules, padded past the cap with a comment: refused all the same.
    let cap = remediator::rules_source::MAX_RULES_BYTES;
    let mut huge = V2.to_string();
    huge.push('#');
    huge.push_str(&"x".repeat(cap + 1 - huge.len()));
    *server.body.borrow_mut() = Some(huge);
    r.advance(31_000);
    let report = fire(&r);
    assert_eq!(report["problems"][0]["rule"], "v1-rule", "{report}");
    assert_eq!(
        report["rules_source"],
        format!("last-known-good from {URL}")
    );
    let warning = report["rules_warning"].as_str().unwrap();
    assert!(warning.contains(&format!("{cap}-byte limit")), "{warning}");
    // At the cap exactly, the rules are used.
    let mut at_cap = V2.to_string();
    at_cap.push('#');
    at_cap.push_str(&"x".repeat(cap - at_cap.len()));
    *server.body.borrow_mut() = Some(at_cap);
    r.advance(31_000);
    assert_eq!(fire(&r)["problems"][0]["rule"], "v2-rule");
}

#[test]
fn a_rules_fetch_waits_at_most_5_s_whatever_the_outbound_timeout() {
    let (r, _server) = setup();
    r.set_var("outbound_timeout_ms", "60000");
    fire(&r);
    assert_eq!(
        rules_fetches(&r)[0].timeout,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(
        remediator::rules_source::MAX_FETCH_TIME,
        std::time::Duration::from_secs(5)
    );
    // A shorter configured timeout is kept.
    r.set_var("outbound_timeout_ms", "1200");
    r.advance(31_000);
    fire(&r);
    assert_eq!(
        rules_fetches(&r)[1].timeout,
        std::time::Duration::from_millis(1200)
    );
}

/// A rules server that stalls (and finally times out) on every request after the
/// first `good` ones; while the first stalled request is in flight, another
/// delivery arrives. Returns the recorder and that delivery's report.
fn stalled_fetch_with_a_concurrent_delivery(good: usize) -> (Rc<Recorder>, Value, Value) {
    let (r, _server) = setup();
    let r = Rc::new(r);
    let weak = Rc::downgrade(&r);
    let served = Rc::new(std::cell::Cell::new(0));
    let concurrent: Rc<RefCell<Option<Value>>> = Rc::default();
    let seen = concurrent.clone();
    r.answer(move |s| {
        if s.url != URL {
            return respond(
                200,
                r#"{"environments":[{"name":"production","enabled":true}]}"#,
            );
        }
        served.set(served.get() + 1);
        if served.get() <= good {
            return Ok(http::Response::builder()
                .status(200)
                .body(V1.as_bytes().to_vec())
                .unwrap());
        }
        if seen.borrow().is_none() && served.get() == good + 1 {
            let r = weak.upgrade().unwrap();
            *seen.borrow_mut() = Some(fire(&r));
        }
        Err(remediator::platform::SendError::Timeout(
            "no response in time".into(),
        ))
    });
    if good > 0 {
        assert_eq!(fire(&r)["rules_source"], format!("url {URL}"));
        r.advance(31_000);
    }
    let stalled = fire(&r);
    let concurrent = concurrent
        .borrow_mut()
        .take()
        .expect("a concurrent delivery ran");
    (r, stalled, concurrent)
}

#[test]
fn while_one_delivery_fetches_the_rules_others_use_the_last_good_ones_without_fetching() {
    let (r, stalled, concurrent) = stalled_fetch_with_a_concurrent_delivery(1);
    assert_eq!(
        rules_fetches(&r).len(),
        2,
        "the concurrent delivery did not fetch"
    );
    assert_eq!(
        concurrent["rules_source"],
        format!("url {URL}"),
        "{concurrent}"
    );
    assert_eq!(concurrent["problems"][0]["rule"], "v1-rule");
    assert_eq!(
        stalled["rules_source"],
        format!("last-known-good from {URL}")
    );
    assert!(
        stalled["rules_warning"]
            .as_str()
            .unwrap()
            .contains("did not answer within 2500 ms"),
        "{stalled}"
    );
    // One stalled request per TTL, not one per webhook.
    for _ in 0..5 {
        r.advance(1000);
        fire(&r);
    }
    assert_eq!(rules_fetches(&r).len(), 2);
    assert!(!r.kv.borrow().contains_key("rules/fetching"));
}

#[test]
fn while_the_first_fetch_is_in_flight_others_use_the_bundled_rules_without_fetching() {
    let (r, stalled, concurrent) = stalled_fetch_with_a_concurrent_delivery(0);
    assert_eq!(
        rules_fetches(&r).len(),
        1,
        "the concurrent delivery did not fetch"
    );
    assert_eq!(concurrent["rules_source"], "bundled /remediation.yaml");
    let warning = concurrent["rules_warning"].as_str().unwrap();
    assert!(
        warning.contains("is being fetched by another request"),
        "{warning}"
    );
    assert_eq!(stalled["rules_source"], "bundled /remediation.yaml");
}

#[test]
fn a_fetch_marker_left_by_a_delivery_that_died_expires() {
    let (r, _server) = setup();
    // A delivery started fetching (the marker holds its start time) and never ended.
    r.kv.borrow_mut().insert(
        "rules/fetching".into(),
        r.now.get().to_string().into_bytes(),
    );
    let report = fire(&r);
    assert_eq!(rules_fetches(&r).len(), 0);
    assert_eq!(report["rules_source"], "bundled /remediation.yaml");
    // The lease is at most twice the 5 s fetch deadline.
    r.advance(10_001);
    let report = fire(&r);
    assert_eq!(rules_fetches(&r).len(), 1);
    assert_eq!(report["problems"][0]["rule"], "v1-rule");
    assert!(!r.kv.borrow().contains_key("rules/fetching"));
}
