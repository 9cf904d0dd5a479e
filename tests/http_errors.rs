//! Every error answer of the HTTP layer that no other test pins: status, the exact
//! body, and the headers that go with it (405's `Allow`, the page's 400).

mod support;

use std::time::Duration;

use remediator::platform::{KvError, OutboundRequest, OutboundResponse, Platform, SendError};
use serde_json::{json, Value};
use support::*;

/// The Recorder with its key-value store down.
struct StoreDown<'a>(&'a Recorder);

fn down<T>() -> Result<T, KvError> {
    Err(KvError("injected: store down".into()))
}

impl Platform for StoreDown<'_> {
    fn send(&self, req: OutboundRequest, t: Duration) -> Result<OutboundResponse, SendError> {
        self.0.send(req, t)
    }
    fn variable(&self, name: &str) -> Option<String> {
        self.0.variable(name)
    }
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.0.read_file(path)
    }
    fn kv_get(&self, _: &str) -> Result<Option<Vec<u8>>, KvError> {
        down()
    }
    fn kv_set(&self, _: &str, _: &[u8]) -> Result<(), KvError> {
        down()
    }
    fn kv_delete(&self, _: &str) -> Result<(), KvError> {
        down()
    }
    fn kv_keys(&self) -> Result<Vec<String>, KvError> {
        down()
    }
    fn kv_compare_and_swap(&self, _: &str, _: Option<&[u8]>, _: &[u8]) -> Result<bool, KvError> {
        down()
    }
    fn kv_increment(&self, _: &str, _: i64) -> Result<i64, KvError> {
        down()
    }
    fn sleep(&self, d: Duration) {
        self.0.sleep(d)
    }
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
    fn random_u64(&self) -> u64 {
        self.0.random_u64()
    }
    fn log(&self, line: &str) {
        self.0.log(line)
    }
}

/// Status, `Allow` header, content type and body of one request.
fn send(p: &dyn Platform, req: http::request::Builder) -> (u16, Option<String>, String, String) {
    let resp = remediator::app::handle(p, req.body(Vec::new()).unwrap());
    let header = |name| {
        resp.headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_string())
    };
    (
        resp.status().as_u16(),
        header(http::header::ALLOW),
        header(http::header::CONTENT_TYPE).unwrap_or_default(),
        String::from_utf8(resp.body().clone()).unwrap(),
    )
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn authed(req: http::request::Builder) -> http::request::Builder {
    req.header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
}

const BAD_TIMEOUT: &str =
    "configuration: variable outbound_timeout_ms: must be a whole number of milliseconds, 1..=60000";

#[test]
fn a_wrong_method_is_405_naming_the_method_with_an_allow_header() {
    let r = Recorder::new();
    for (method, path, allow) in [
        ("GET", "/", "POST"),
        ("PUT", "/alertmanager", "POST"),
        ("GET", "/simulate", "POST"),
        ("POST", "/healthz", "GET"),
        ("PUT", "/livez", "GET"),
        ("DELETE", "/audit", "GET"),
        ("POST", "/rules", "GET"),
        ("PUT", "/metrics", "GET"),
    ] {
        let (status, allowed, ct, body) =
            send(&*r, http::Request::builder().method(method).uri(path));
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}");
        assert_eq!(ct, "application/json");
        assert_eq!(
            json_of(&body),
            json!({"error": format!("method not allowed: use {allow}")})
        );
    }
}

#[test]
fn an_unknown_path_is_404_naming_the_webhook_routes() {
    let r = Recorder::new();
    let (status, allow, _, body) = send(&*r, http::Request::get("/alerts?x=1"));
    assert_eq!((status, allow), (404, None));
    assert_eq!(
        json_of(&body),
        json!({"error": "no route /alerts: webhooks go to POST /, /alertmanager, /grafana or /keptn"})
    );
}

/// A platform on which every call is recorded and fails: whatever reads it is seen.
#[derive(Default)]
struct Untouched(std::cell::RefCell<Vec<&'static str>>);

impl Untouched {
    fn touch<T>(&self, what: &'static str, v: T) -> T {
        self.0.borrow_mut().push(what);
        v
    }
}

impl Platform for Untouched {
    fn send(&self, _: OutboundRequest, _: Duration) -> Result<OutboundResponse, SendError> {
        self.touch("send", Err(SendError::Transport("untouched".into())))
    }
    fn variable(&self, _: &str) -> Option<String> {
        self.touch("variable", None)
    }
    fn read_file(&self, _: &str) -> std::io::Result<String> {
        self.touch("read_file", Err(std::io::ErrorKind::NotFound.into()))
    }
    fn file_stamp(&self, _: &str) -> Option<remediator::platform::FileStamp> {
        self.touch("file_stamp", None)
    }
    fn kv_get(&self, _: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.touch("kv_get", down())
    }
    fn kv_set(&self, _: &str, _: &[u8]) -> Result<(), KvError> {
        self.touch("kv_set", down())
    }
    fn kv_delete(&self, _: &str) -> Result<(), KvError> {
        self.touch("kv_delete", down())
    }
    fn kv_keys(&self) -> Result<Vec<String>, KvError> {
        self.touch("kv_keys", down())
    }
    fn kv_compare_and_swap(&self, _: &str, _: Option<&[u8]>, _: &[u8]) -> Result<bool, KvError> {
        self.touch("kv_compare_and_swap", down())
    }
    fn kv_increment(&self, _: &str, _: i64) -> Result<i64, KvError> {
        self.touch("kv_increment", down())
    }
    fn sleep(&self, _: Duration) {
        self.touch("sleep", ())
    }
    fn now_ms(&self) -> i64 {
        self.touch("now_ms", 0)
    }
    fn random_u64(&self) -> u64 {
        self.touch("random_u64", 0)
    }
    fn log(&self, _: &str) {
        self.touch("log", ())
    }
}

#[test]
fn liveness_reads_nothing_so_a_broken_configuration_or_store_never_fails_it() {
    // Not a variable is defined and the store is down: /healthz is 503 on this
    // platform, /livez 200, and /livez made no call at all.
    let p = Untouched::default();
    let (status, _, ct, body) = send(&p, http::Request::get("/livez"));
    assert_eq!((status, ct.as_str()), (200, "application/json"), "{body}");
    assert_eq!(json_of(&body), json!({"status": "alive"}));
    assert_eq!(*p.0.borrow(), Vec::<&str>::new());

    let (status, _, _, body) = send(&p, http::Request::get("/healthz"));
    assert_eq!(status, 503, "{body}");
    assert!(
        !p.0.borrow().is_empty(),
        "the double sees what /healthz reads"
    );

    // The same on the usual double with a configuration /healthz refuses.
    let r = Recorder::new();
    r.set_var("outbound_timeout_ms", "soon");
    assert_eq!(send(&*r, http::Request::get("/healthz")).0, 503);
    assert_eq!(send(&*r, http::Request::get("/livez")).0, 200);
}

#[test]
fn an_unhealthy_component_is_503_saying_why() {
    let r = Recorder::new();
    r.set_var("outbound_timeout_ms", "soon");
    let (status, _, _, body) = send(&*r, http::Request::get("/healthz"));
    let v = json_of(&body);
    assert_eq!(status, 503, "{v}");
    // Without a configuration there are no warnings to give.
    assert_eq!(v, json!({"status": "unhealthy", "error": BAD_TIMEOUT}));

    let r = Recorder::new();
    r.set_var("dry_run", "true");
    r.set_rules("rules: [unclosed");
    let (status, _, _, body) = send(&*r, http::Request::get("/healthz"));
    let v = json_of(&body);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "unhealthy");
    assert!(v["error"].as_str().unwrap().starts_with("rules: "), "{v}");
    assert_eq!(v["warnings"], json!(["dry_run=true: no action is sent"]));
}

#[test]
fn guarded_read_routes_answer_401_or_500_for_credentials_and_configuration() {
    let r = Recorder::new();
    for path in ["/rules", "/audit"] {
        let (status, _, _, body) = send(&*r, http::Request::get(path));
        assert_eq!(status, 401, "{path}");
        assert_eq!(
            json_of(&body),
            json!({"error": "missing credential: send Authorization: Bearer/Basic, or a signature header"})
        );
    }
    r.set_var("webhook_token", "");
    let (status, _, _, body) = send(&*r, http::Request::get("/rules"));
    assert_eq!(status, 500);
    assert!(json_of(&body)["error"]
        .as_str()
        .unwrap()
        .starts_with("no webhook authentication is configured: set webhook_token"));

    let r = Recorder::new();
    r.set_var("outbound_timeout_ms", "soon");
    for path in ["/rules", "/audit", "/metrics"] {
        let (status, _, _, body) = send(&*r, authed(http::Request::get(path)));
        assert_eq!(status, 500, "{path}");
        assert_eq!(json_of(&body), json!({ "error": BAD_TIMEOUT }));
    }
}

#[test]
fn metrics_without_its_token_is_401_naming_the_variable() {
    let r = Recorder::new();
    r.set_var("metrics_token", "m-SECRET");
    let (status, _, _, body) = send(&*r, authed(http::Request::get("/metrics")));
    assert_eq!(status, 401);
    assert_eq!(
        json_of(&body),
        json!({"error": "missing or wrong credential: send Authorization: Bearer <metrics_token>"})
    );
}

#[test]
fn bad_audit_queries_are_400_naming_the_parameter_as_json_or_as_the_page() {
    let r = Recorder::new();
    let (status, _, _, body) = send(&*r, authed(http::Request::get("/audit?limit=lots")));
    assert_eq!(status, 400);
    assert_eq!(
        json_of(&body),
        json!({"error": "limit: not a whole number (1 to 5000)"})
    );
    let (status, _, _, body) = send(&*r, authed(http::Request::get("/audit?since=yesterday")));
    assert_eq!(status, 400);
    assert_eq!(
        json_of(&body),
        json!({"error": "since: \"yesterday\" is not RFC 3339 or Unix milliseconds"})
    );
    let (status, _, ct, page) = send(
        &*r,
        authed(http::Request::get("/audit?until=soon")).header("accept", "text/html"),
    );
    assert_eq!(status, 400);
    assert_eq!(ct, "text/html; charset=utf-8");
    assert!(
        page.contains("until: &quot;soon&quot; is not RFC 3339 or Unix milliseconds"),
        "{page}"
    );
}

#[test]
fn a_store_that_is_down_is_503_and_a_webhook_says_nothing_was_done() {
    let r = Recorder::new();
    let p = StoreDown(&r);
    let (status, _, _, body) = send(&p, authed(http::Request::get("/audit")));
    assert_eq!(status, 503);
    assert_eq!(
        json_of(&body),
        json!({"error": "state store unavailable: key-value store: injected: store down"})
    );
    let (status, _, _, body) = send(&p, http::Request::get("/metrics"));
    assert_eq!(status, 503);
    assert_eq!(
        json_of(&body),
        json!({"error": "state store unavailable: key-value store: injected: store down"})
    );
    let req = authed(http::Request::post("/alertmanager"))
        .header("content-type", "application/json")
        .body(failure_rate("firing"))
        .unwrap();
    let resp = remediator::app::handle(&p, req);
    let body = json_of(&String::from_utf8(resp.body().clone()).unwrap());
    assert_eq!(resp.status().as_u16(), 503, "{body}");
    assert_eq!(body["problems"][0]["outcome"], "error", "{body}");
    assert!(r.sent().is_empty(), "nothing was sent");
    // A delivery no rule matches needs no store (it is not audited): handled, 200.
    let req = authed(http::Request::post("/alertmanager"))
        .header("content-type", "application/json")
        .body(alertmanager("firing", &[("NoRuleForThis", None, &[])]))
        .unwrap();
    let resp = remediator::app::handle(&p, req);
    assert_eq!(resp.status().as_u16(), 200);
}
