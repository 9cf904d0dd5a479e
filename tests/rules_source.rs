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
    assert!(
        r.kv.borrow().is_empty(),
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
