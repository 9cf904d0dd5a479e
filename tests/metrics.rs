//! GET /metrics, black-box: exact counter values after scenarios, the exposition
//! format's line grammar, its credential, the write cost per delivery, and that a
//! failing metrics write changes nothing a sender sees.

mod support;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use remediator::platform::{KvError, OutboundRequest, OutboundResponse, Platform, SendError};
use support::*;

/// The Recorder seen through a counter of key-value writes (and, when asked, with
/// every write to a `metrics/` key failing).
struct Counting<'a> {
    r: &'a Recorder,
    writes: RefCell<Vec<String>>,
    fail_metrics: Cell<bool>,
}

impl<'a> Counting<'a> {
    fn new(r: &'a Recorder) -> Self {
        Counting {
            r,
            writes: RefCell::new(Vec::new()),
            fail_metrics: Cell::new(false),
        }
    }
    fn write(&self, key: &str) -> Result<(), KvError> {
        self.writes.borrow_mut().push(key.to_string());
        if self.fail_metrics.get() && key.starts_with("metrics/") {
            return Err(KvError("injected: store busy".into()));
        }
        Ok(())
    }
}

impl Platform for Counting<'_> {
    fn send(&self, req: OutboundRequest, t: Duration) -> Result<OutboundResponse, SendError> {
        self.r.send(req, t)
    }
    fn variable(&self, name: &str) -> Option<String> {
        self.r.variable(name)
    }
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.r.read_file(path)
    }
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.r.kv_get(key)
    }
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.write(key)?;
        self.r.kv_set(key, value)
    }
    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.write(key)?;
        self.r.kv_delete(key)
    }
    /// One transaction, as Spin's `set-many`.
    fn kv_set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        self.write(&keys.join(" "))?;
        self.r.kv_set_many(entries)
    }
    /// One transaction, as Spin's `delete-many`.
    fn kv_delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        self.write(&keys.join(" "))?;
        self.r.kv_delete_many(keys)
    }
    fn kv_keys(&self) -> Result<Vec<String>, KvError> {
        self.r.kv_keys()
    }
    fn kv_compare_and_swap(&self, k: &str, e: Option<&[u8]>, n: &[u8]) -> Result<bool, KvError> {
        self.write(k)?;
        self.r.kv_compare_and_swap(k, e, n)
    }
    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        // An increment by 0 reads (the audit head, a cell's creation).
        if delta != 0 {
            self.write(key)?;
        }
        self.r.kv_increment(key, delta)
    }
    fn sleep(&self, d: Duration) {
        self.r.sleep(d)
    }
    fn now_ms(&self) -> i64 {
        self.r.now_ms()
    }
    fn random_u64(&self) -> u64 {
        self.r.random_u64()
    }
    fn log(&self, line: &str) {
        self.r.log(line)
    }
}

fn webhook(p: &dyn Platform, path: &str, token: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(body.to_vec())
        .unwrap();
    let resp = remediator::app::handle(p, req);
    (resp.status().as_u16(), resp.body().clone())
}

/// GET /metrics with an optional Authorization header: status, content type, body.
fn get_metrics(r: &Recorder, authorization: Option<&str>) -> (u16, String, String) {
    let mut req = http::Request::get("/metrics");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = remediator::app::handle(&r.platform, req.body(Vec::new()).unwrap());
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        resp.status().as_u16(),
        ct,
        String::from_utf8(resp.body().clone()).unwrap(),
    )
}

/// Parse the exposition text, checking the 0.0.4 line grammar as it goes: `# HELP`
/// and `# TYPE` before a family's samples, a family's samples together, metric and
/// label names, quoted label values with only `\\`, `\"` and `\n` escapes, a number
/// as value, a final line feed. Returns series (as written) → value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with('\n'), "the text ends with a line feed");
    let name_ok = |n: &str, colon: bool| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic()
                    || c == '_'
                    || (colon && c == ':')
                    || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
            assert!(name_ok(name, true), "{line}");
            match kind {
                "HELP" => {
                    assert!(tail.is_some_and(|t| !t.is_empty()), "{line}");
                    helped.push(name.into());
                }
                "TYPE" => {
                    let t = tail.unwrap();
                    assert!(["counter", "gauge"].contains(&t), "{line}");
                    assert!(
                        typed.insert(name.into(), t.into()).is_none(),
                        "one TYPE: {line}"
                    );
                }
                _ => panic!("unknown comment {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, Some(l.strip_suffix('}').expect(line))),
            None => (series, None),
        };
        assert!(name_ok(name, true), "{line}");
        assert!(
            typed.contains_key(name) && helped.contains(&name.to_string()),
            "TYPE and HELP first: {line}"
        );
        if current.as_deref() != Some(name) {
            assert!(
                !done.contains(&name.to_string()),
                "samples of {name} together"
            );
            if let Some(c) = current.take() {
                done.push(c);
            }
            current = Some(name.into());
        }
        if let Some(mut l) = labels {
            while !l.is_empty() {
                let (lname, rest) = l.split_once("=\"").expect(line);
                assert!(name_ok(lname, false), "{line}");
                let mut chars = rest.char_indices();
                let end = loop {
                    match chars.next().expect(line) {
                        (_, '\\') => assert!(
                            matches!(chars.next(), Some((_, '\\' | '"' | 'n'))),
                            "{line}"
                        ),
                        (i, '"') => break i,
                        (_, '\n') => panic!("raw line feed: {line}"),
                        _ => {}
                    }
                };
                l = &rest[end + 1..];
                if !l.is_empty() {
                    l = l.strip_prefix(',').expect(line);
                }
            }
        }
        assert!(
            out.insert(series.to_string(), v).is_none(),
            "one sample per series: {line}"
        );
    }
    out
}

fn scrape(r: &Recorder) -> BTreeMap<String, f64> {
    let (status, ct, text) = get_metrics(r, None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    parse(&text)
}

/// The counters of our four families with a non-zero value, as (series, value).
fn counters(r: &Recorder) -> Vec<(String, f64)> {
    scrape(r)
        .into_iter()
        .filter(|(s, _)| s.contains("_total"))
        .collect()
}

fn expect(r: &Recorder, want: &[(&str, f64)]) {
    let want: Vec<(String, f64)> = want.iter().map(|(s, v)| (s.to_string(), *v)).collect();
    let mut want = want;
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(counters(r), want);
}

#[test]
fn an_action_then_its_repeats_count_deliveries_problems_and_actions_exactly() {
    let r = Recorder::new();
    expect(&r, &[]);
    assert_eq!(r.post("/alertmanager", &failure_rate("firing")).0, 200);
    expect(
        &r,
        &[
            (
                r#"remediator_deliveries_total{route="/alertmanager",code="200"}"#,
                1.0,
            ),
            (r#"remediator_problems_total{outcome="acted"}"#, 1.0),
            (
                r#"remediator_actions_total{kind="featuretoggle",result="done"}"#,
                1.0,
            ),
        ],
    );
    r.post("/alertmanager", &failure_rate("firing"));
    r.post("/", &failure_rate("firing"));
    expect(
        &r,
        &[
            (
                r#"remediator_deliveries_total{route="/alertmanager",code="200"}"#,
                2.0,
            ),
            (r#"remediator_deliveries_total{route="/",code="200"}"#, 1.0),
            (r#"remediator_problems_total{outcome="acted"}"#, 1.0),
            (
                r#"remediator_problems_total{outcome="already_handled"}"#,
                2.0,
            ),
            (
                r#"remediator_actions_total{kind="featuretoggle",result="done"}"#,
                1.0,
            ),
        ],
    );
}

#[test]
fn resolve_and_revert_are_counted() {
    let r = Recorder::new();
    r.post("/alertmanager", &failure_rate("firing"));
    let (status, report) = r.post("/alertmanager", &failure_rate("resolved"));
    assert_eq!(
        (status, report["problems"][0]["outcome"].as_str()),
        (200, Some("reverted"))
    );
    expect(
        &r,
        &[
            (
                r#"remediator_deliveries_total{route="/alertmanager",code="200"}"#,
                2.0,
            ),
            (r#"remediator_problems_total{outcome="acted"}"#, 1.0),
            (r#"remediator_problems_total{outcome="reverted"}"#, 1.0),
            (
                r#"remediator_actions_total{kind="featuretoggle",result="done"}"#,
                2.0,
            ),
        ],
    );
}

#[test]
fn no_match_bad_requests_and_wrong_credentials_are_counted_by_code() {
    let r = Recorder::new();
    // Deliveries no rule matched are counted only with count_unmatched (tests/audit.rs).
    r.set_var("count_unmatched", "true");
    let storm = alertmanager(
        "firing",
        &[
            ("DiskFull", None, &[]),
            ("DiskFull2", None, &[]),
            ("Other", None, &[]),
        ],
    );
    assert_eq!(r.post("/grafana", &storm).0, 200);
    assert_eq!(r.post("/keptn", b"not json").0, 400);
    let wrong = http::Request::post("/alertmanager")
        .header("content-type", "application/json")
        .header("authorization", "Bearer nope");
    assert_eq!(r.request(wrong, &failure_rate("firing")).0, 401);
    assert_eq!(r.request(http::Request::get("/alertmanager"), b"").0, 405);
    // Not webhook routes: not counted.
    assert_eq!(r.request(http::Request::get("/nowhere"), b"").0, 404);
    r.audit("");
    expect(
        &r,
        &[
            (
                r#"remediator_deliveries_total{route="/grafana",code="200"}"#,
                1.0,
            ),
            (
                r#"remediator_deliveries_total{route="/keptn",code="400"}"#,
                1.0,
            ),
            (
                r#"remediator_deliveries_total{route="/alertmanager",code="401"}"#,
                1.0,
            ),
            (
                r#"remediator_deliveries_total{route="/alertmanager",code="405"}"#,
                1.0,
            ),
            (
                r#"remediator_problems_total{outcome="no_matching_rule"}"#,
                3.0,
            ),
        ],
    );
    assert!(r.flag("EnablePromotion", "production"), "nothing acted");
}

const POLICY_RULES: &str = r#"
rules:
  - name: scale "carts"
    match: {title: cpu_usage}
    cooldown: 10m
    max_actions: 2 per 1h
    actions: [{scale: "+1"}]
"#;

#[test]
fn cooldown_and_an_open_circuit_are_counted_with_the_rule_escaped() {
    let r = Recorder::new();
    r.set_rules(POLICY_RULES);
    r.post("/", &cpu_usage_at("t1"));
    r.advance(5 * 60_000);
    r.post("/", &cpu_usage_at("t2"));
    r.advance(6 * 60_000);
    r.post("/", &cpu_usage_at("t3"));
    r.advance(11 * 60_000);
    let (_, report) = r.post("/", &cpu_usage_at("t4"));
    assert_eq!(report["problems"][0]["outcome"], "circuit_open");
    r.post("/", &cpu_usage_at("t5"));
    expect(
        &r,
        &[
            (r#"remediator_deliveries_total{route="/",code="200"}"#, 5.0),
            (r#"remediator_problems_total{outcome="acted"}"#, 2.0),
            (r#"remediator_problems_total{outcome="skipped"}"#, 1.0),
            (r#"remediator_problems_total{outcome="circuit_open"}"#, 2.0),
            (
                r#"remediator_actions_total{kind="scaling",result="done"}"#,
                2.0,
            ),
            (
                r#"remediator_circuit_open_total{rule="scale \"carts\""}"#,
                2.0,
            ),
        ],
    );
}

#[test]
fn failed_actions_and_dry_runs_are_counted_by_result() {
    let r = Recorder::new();
    r.answer(|_| respond(503, "unavailable"));
    assert_eq!(r.post("/", &failure_rate("firing")).0, 502);
    r.answer_like_unleash();
    let dry = alertmanager("firing", &[("cpu_usage", None, &[("service", "carts")])]);
    assert_eq!(r.post("/?dry_run=true", &dry).0, 200);
    let m: BTreeMap<_, _> = counters(&r).into_iter().collect();
    assert_eq!(
        m[r#"remediator_deliveries_total{route="/",code="502"}"#],
        1.0
    );
    assert_eq!(m[r#"remediator_problems_total{outcome="failed"}"#], 1.0);
    assert_eq!(
        m[r#"remediator_actions_total{kind="featuretoggle",result="failed"}"#],
        1.0
    );
    assert_eq!(m[r#"remediator_problems_total{outcome="dry_run"}"#], 1.0);
    assert_eq!(
        m[r#"remediator_actions_total{kind="scaling",result="dry_run"}"#],
        1.0
    );
}

#[test]
fn metrics_cost_one_increment_per_delivery_or_per_distinct_series_in_a_storm() {
    let r = Recorder::new();
    r.set_var("count_unmatched", "true");
    let p = Counting::new(&r);
    let metric_writes = |run: &dyn Fn()| {
        p.writes.borrow_mut().clear();
        run();
        let w = p.writes.borrow();
        (
            w.iter()
                .filter(|k| k.starts_with("metrics/"))
                .cloned()
                .collect::<Vec<_>>(),
            w.len(),
        )
    };
    let acted = r#"metrics/d/actions{kind="scaling",result="done"} deliveries{route="/",code="200"} problems{outcome="acted"}"#;
    // An acting delivery: one increment of its signature (and, the first time,
    // of the generation that tells scrapes to list the keys again).
    let (m, _) = metric_writes(&|| {
        webhook(&p, "/", WEBHOOK_TOKEN, &cpu_usage_at("t1"));
    });
    assert_eq!(m, [acted, "metrics/generation"]);
    let (m, acting_total) = metric_writes(&|| {
        webhook(&p, "/", WEBHOOK_TOKEN, &cpu_usage_at("t2"));
    });
    assert_eq!(m, [acted]);
    // No match: one increment.
    let one = alertmanager("firing", &[("DiskFull", None, &[])]);
    webhook(&p, "/", WEBHOOK_TOKEN, &one);
    let (m, no_match_total) = metric_writes(&|| {
        webhook(&p, "/", WEBHOOK_TOKEN, &one);
    });
    assert_eq!(
        m,
        [r#"metrics/d/deliveries{route="/",code="200"} problems{outcome="no_matching_rule"}"#]
    );
    // A storm of three that match nothing: one increment per distinct series.
    let storm = alertmanager(
        "firing",
        &[
            ("DiskFull", None, &[]),
            ("DiskFull2", None, &[]),
            ("Other", None, &[]),
        ],
    );
    webhook(&p, "/", WEBHOOK_TOKEN, &storm);
    let (m, _) = metric_writes(&|| {
        webhook(&p, "/", WEBHOOK_TOKEN, &storm);
    });
    assert_eq!(
        m,
        [
            r#"metrics/remediator_deliveries_total{route="/",code="200"}"#,
            r#"metrics/remediator_problems_total{outcome="no_matching_rule"}"#
        ]
    );
    // Refused: one increment.
    webhook(&p, "/", "wrong", &storm);
    let (m, refused_total) = metric_writes(&|| {
        webhook(&p, "/", "wrong", &storm);
    });
    assert_eq!(m, [r#"metrics/d/deliveries{route="/",code="401"}"#]);
    // Turning a flag: one more write than without metrics.
    let flag_at = |status: &str, starts: &str| {
        String::from_utf8(failure_rate(status))
            .unwrap()
            .replace("2026-11-26T14:02:06.305Z", starts)
    };
    webhook(&p, "/", WEBHOOK_TOKEN, flag_at("firing", "f1").as_bytes());
    webhook(&p, "/", WEBHOOK_TOKEN, flag_at("resolved", "f1").as_bytes());
    assert!(r.flag("EnablePromotion", "production"));
    let (m, flag_total) = metric_writes(&|| {
        webhook(&p, "/", WEBHOOK_TOKEN, flag_at("firing", "f2").as_bytes());
    });
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].starts_with("metrics/d/"), "{m:?}");
    assert!(!r.flag("EnablePromotion", "production"));
    println!("durable writes per delivery with metrics: no match {no_match_total}, acting (scale) {acting_total}, acting (flag) {flag_total}, refused {refused_total}");
    // And the sums are exact.
    let m: BTreeMap<_, _> = counters(&r).into_iter().collect();
    assert_eq!(
        m[r#"remediator_deliveries_total{route="/",code="200"}"#],
        9.0
    );
    assert_eq!(
        m[r#"remediator_problems_total{outcome="no_matching_rule"}"#],
        8.0
    );
    assert_eq!(m[r#"remediator_problems_total{outcome="acted"}"#], 4.0);
    assert_eq!(m[r#"remediator_problems_total{outcome="reverted"}"#], 1.0);
    assert_eq!(
        m[r#"remediator_deliveries_total{route="/",code="401"}"#],
        2.0
    );
}

#[test]
fn a_failing_metrics_write_changes_no_answer_and_is_logged() {
    let plain = Recorder::new();
    let failing = Recorder::new();
    let p = Counting::new(&failing);
    p.fail_metrics.set(true);
    for body in [
        failure_rate("firing"),
        failure_rate("firing"),
        failure_rate("resolved"),
    ] {
        let want = webhook(&*plain, "/", WEBHOOK_TOKEN, &body);
        let got = webhook(&p, "/", WEBHOOK_TOKEN, &body);
        assert_eq!(
            (got.0, String::from_utf8_lossy(&got.1)),
            (want.0, String::from_utf8_lossy(&want.1))
        );
    }
    assert_eq!(webhook(&p, "/", "wrong", b"{}").0, 401);
    let warnings = failing
        .logs
        .borrow()
        .iter()
        .filter(|l| l.contains("WARNING metrics not recorded") && l.contains("injected"))
        .count();
    assert_eq!(warnings, 4);
    expect(&failing, &[]);
    assert!(failing
        .kv
        .borrow()
        .keys()
        .all(|k| !k.starts_with("metrics/remediator_")));
}

#[test]
fn series_created_between_scrapes_appear_at_the_next_scrape() {
    let r = Recorder::new();
    expect(&r, &[]);
    r.post("/", &failure_rate("firing"));
    assert_eq!(counters(&r).len(), 3);
    // A series whose creator could not record it in the generation: found by the
    // periodic listing.
    r.kv_increment(
        r#"metrics/remediator_problems_total{outcome="budget_exhausted"}"#,
        1,
    )
    .unwrap();
    assert_eq!(counters(&r).len(), 3);
    r.advance(remediator::metrics::RELIST_EVERY_MS);
    assert_eq!(
        scrape(&r)[r#"remediator_problems_total{outcome="budget_exhausted"}"#],
        1.0
    );
}

#[test]
fn counters_are_read_in_either_store_encoding() {
    let r = Recorder::new();
    // Spin's SQLite store keeps counters as 8 little-endian bytes, Redis as digits.
    r.kv_set(
        r#"metrics/remediator_problems_total{outcome="acted"}"#,
        &7i64.to_le_bytes(),
    )
    .unwrap();
    r.kv_set(
        r#"metrics/remediator_problems_total{outcome="failed"}"#,
        b"12",
    )
    .unwrap();
    let m = scrape(&r);
    assert_eq!(m[r#"remediator_problems_total{outcome="acted"}"#], 7.0);
    assert_eq!(m[r#"remediator_problems_total{outcome="failed"}"#], 12.0);
}

#[test]
fn metrics_token_guards_the_route_in_constant_time_and_alone() {
    let r = Recorder::new();
    // Open by default, as Prometheus targets usually are.
    assert_eq!(get_metrics(&r, None).0, 200);
    r.set_var("metrics_token", "metrics-SECRET-9d2e\n");
    for bad in [
        None,
        Some("Bearer wrong"),
        Some("Bearer metrics-SECRET-9d2"),
        Some("Basic bWV0cmljcy1TRUNSRVQtOWQyZQ=="),
        Some("metrics-SECRET-9d2e"),
    ] {
        let (status, _, body) = get_metrics(&r, bad);
        assert_eq!(status, 401, "{bad:?}");
        assert!(!body.contains("metrics-SECRET"), "{body}");
    }
    // The webhook credential is not the metrics credential.
    assert_eq!(
        get_metrics(&r, Some(&format!("Bearer {WEBHOOK_TOKEN}"))).0,
        401
    );
    let (status, _, text) = get_metrics(&r, Some("Bearer metrics-SECRET-9d2e"));
    assert_eq!(status, 200, "{text}");
    assert_eq!(get_metrics(&r, Some("bearer  metrics-SECRET-9d2e ")).0, 200);
    let post = r.request(http::Request::post("/metrics"), b"");
    assert_eq!(post.0, 405);
}

#[test]
fn no_secret_appears_in_metrics() {
    let r = Recorder::new();
    r.set_var("metrics_token", "metrics-SECRET-41");
    r.set_var("rules_token", "rules-SECRET-42");
    r.set_var("webhook_basic_user", "am");
    r.set_var("webhook_basic_password", "basic-SECRET-43");
    r.set_var("webhook_hmac_secret", "hmac-SECRET-44");
    r.set_rules(POLICY_RULES);
    r.post("/", &cpu_usage_at("t1"));
    r.post("/", &failure_rate("firing"));
    r.answer(|s| respond(500, &format!("echo {:?}", s.headers)));
    r.post("/", &cpu_usage_at("t9"));
    webhook(&*r, "/", "wrong", b"{}");
    let (status, _, text) = get_metrics(&r, Some("Bearer metrics-SECRET-41"));
    assert_eq!(status, 200);
    parse(&text);
    assert!(text.contains("remediator_deliveries_total"), "{text}");
    for secret in [
        "metrics-SECRET-41",
        "rules-SECRET-42",
        "basic-SECRET-43",
        "hmac-SECRET-44",
        UNLEASH_TOKEN,
        SCALE_TOKEN,
        WEBHOOK_TOKEN,
        "SECRET",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn rules_source_gauges_follow_the_rules_url() {
    let r = Recorder::new();
    let state = |r: &Recorder| -> Vec<(String, f64)> {
        scrape(r)
            .into_iter()
            .filter(|(s, _)| s.starts_with("remediator_rules_"))
            .collect()
    };
    let one = |s: &str| {
        ["bundled", "degraded", "last_known_good", "url"]
            .iter()
            .map(|x| {
                (
                    format!("remediator_rules_source{{state=\"{x}\"}}"),
                    f64::from(u8::from(*x == s)),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(state(&r), one("bundled"));
    r.set_var("rules_origin", "http://rules.test:8080");
    let served = Rc::new(RefCell::new(None::<String>));
    let s2 = served.clone();
    r.answer(move |s| match s2.borrow().clone() {
        Some(body) if s.url.starts_with("http://rules.test") => respond(200, &body),
        _ => Err(SendError::Transport("connection refused".into())),
    });
    // A URL, never fetched: the bundled file, degraded.
    assert_eq!(state(&r), one("degraded"));
    *served.borrow_mut() = Some(TUTORIAL_RULES.to_string());
    r.advance(31_000);
    let fetched_at = r.now_ms();
    let mut want = one("url");
    want.insert(
        0,
        (
            "remediator_rules_last_fetch_success_timestamp_seconds".into(),
            fetched_at as f64 / 1000.0,
        ),
    );
    assert_eq!(state(&r), want);
    *served.borrow_mut() = None;
    r.advance(31_000);
    let mut want = one("last_known_good");
    want.insert(
        0,
        (
            "remediator_rules_last_fetch_success_timestamp_seconds".into(),
            fetched_at as f64 / 1000.0,
        ),
    );
    assert_eq!(state(&r), want);
}

#[test]
fn notifications_are_counted_by_channel_event_and_outcome_in_the_same_one_increment() {
    let r = Recorder::new();
    r.set_var("notify_1_origin", "http://hooks.slack.test");
    r.set_rules(
        r#"
rules:
  - name: scale-up
    match: {title: cpu_usage}
    actions: [{scale: "+1"}]
    notify:
      - {channel: slack, on: [act, revert], path: /hook, body: {text: "{{ event }} {{ rule }}"}}
"#,
    );
    let p = Counting::new(&r);
    let body = alertmanager("firing", &[("cpu_usage", None, &[("service", "carts")])]);
    let (status, _) = webhook(&p, "/", WEBHOOK_TOKEN, &body);
    assert_eq!(status, 200);
    let metric_writes: Vec<String> = p
        .writes
        .borrow()
        .iter()
        .filter(|k| k.starts_with("metrics/d/"))
        .cloned()
        .collect();
    assert_eq!(
        metric_writes,
        [
            r#"metrics/d/actions{kind="scaling",result="done"} deliveries{route="/",code="200"} notifications{channel="slack",event="act",outcome="sent"} problems{outcome="acted"}"#
        ]
    );
    expect(
        &r,
        &[
            (r#"remediator_deliveries_total{route="/",code="200"}"#, 1.0),
            (r#"remediator_problems_total{outcome="acted"}"#, 1.0),
            (
                r#"remediator_actions_total{kind="scaling",result="done"}"#,
                1.0,
            ),
            (
                r#"remediator_notifications_total{channel="slack",event="act",outcome="sent"}"#,
                1.0,
            ),
        ],
    );
}
