//! A recording double of the Platform: variables, files and key-value in memory,
//! every outbound request recorded, answers scripted per test.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use remediator::platform::{KvError, OutboundRequest, OutboundResponse, Platform, SendError};

/// An outbound request as recorded (method, URL, headers, body).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    /// When it was sent, on the recorder's clock (`now`).
    pub at_ms: i64,
}

impl Sent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

pub type Responder = Box<dyn Fn(&Sent) -> Result<OutboundResponse, SendError>>;

pub struct Recorder {
    pub vars: RefCell<HashMap<String, String>>,
    pub files: RefCell<HashMap<String, String>>,
    pub kv: RefCell<BTreeMap<String, Vec<u8>>>,
    pub sent: RefCell<Vec<Sent>>,
    pub logs: RefCell<Vec<String>>,
    pub now: Cell<i64>,
    /// The flags of the stand-in Unleash the default responder plays:
    /// (flag, environment) -> enabled.
    pub flags: Rc<RefCell<BTreeMap<(String, String), bool>>>,
    /// Simulates a concurrent delivery winning the next compare-and-swap: it
    /// writes this value first, so ours fails.
    pub race_next_swap: RefCell<Option<Vec<u8>>>,
    /// Like `race_next_swap`, but the swap reports success anyway: what Spin's Redis
    /// store does when the transaction was aborted.
    pub race_next_swap_silently: RefCell<Option<Vec<u8>>>,
    /// Key-value writes a concurrent delivery makes while this one waits (applied
    /// at the first `sleep`).
    pub during_first_wait: RefCell<Vec<(String, Vec<u8>)>>,
    /// Key-value writes made (set, delete, compare-and-swap, increment).
    pub kv_writes: Cell<u64>,
    random: Cell<u64>,
    responder: RefCell<Responder>,
}

/// Plays Unleash's admin API for the calls remediator makes (GET a flag, POST
/// on/off), 404 for unknown flags, and 200 for anything else (the scaling webhook).
fn unleash_like(flags: Rc<RefCell<BTreeMap<(String, String), bool>>>) -> Responder {
    Box::new(move |s: &Sent| {
        let Some(path) = s.url.split("/api/admin/projects/default/features/").nth(1) else {
            return respond(200, "");
        };
        let parts: Vec<&str> = path.split('/').collect();
        let mut flags = flags.borrow_mut();
        let known = flags.keys().any(|(f, _)| f == parts[0]);
        if !known {
            return respond(
                404,
                &format!(
                    r#"{{"name":"NotFoundError","message":"Could not find feature flag with name {}"}}"#,
                    parts[0]
                ),
            );
        }
        match (s.method.as_str(), parts.as_slice()) {
            ("GET", [flag]) => {
                let envs: Vec<_> = flags
                    .iter()
                    .filter(|((f, _), _)| f == flag)
                    .map(|((_, e), on)| serde_json::json!({"name": e, "enabled": on}))
                    .collect();
                respond(
                    200,
                    &serde_json::json!({"name": flag, "environments": envs}).to_string(),
                )
            }
            ("POST", [flag, "environments", env, state]) => {
                match flags.get_mut(&(flag.to_string(), env.to_string())) {
                    Some(v) => {
                        *v = *state == "on";
                        respond(200, "")
                    }
                    None => respond(404, r#"{"message":"environment not found"}"#),
                }
            }
            _ => respond(400, "unexpected call"),
        }
    })
}

pub const UNLEASH_TOKEN: &str = "unleash-SECRET-7f3a91";
pub const SCALE_TOKEN: &str = "scale-SECRET-c0ffee";
pub const WEBHOOK_TOKEN: &str = "hook-SECRET-5eed";
pub const TUTORIAL_RULES: &str = include_str!("../fixtures/rules/tutorial.yaml");

pub fn respond(status: u16, body: &str) -> Result<OutboundResponse, SendError> {
    Ok(http::Response::builder()
        .status(status)
        .body(body.as_bytes().to_vec())
        .unwrap())
}

impl Recorder {
    /// Configured as a user of the tutorial would be; every call answers 200.
    pub fn new() -> Recorder {
        // spin.toml's defaults, as a user of the tutorial would set them.
        let vars = remediator::testing::variables(&[
            ("unleash_url", "http://unleash.test:4242"),
            ("unleash_token", UNLEASH_TOKEN),
            ("scale_url", "http://scaler.test:9100"),
            ("scale_token", SCALE_TOKEN),
            ("webhook_token", WEBHOOK_TOKEN),
            ("outbound_timeout_ms", "2500"),
        ]);
        let files = [("/remediation.yaml".to_string(), TUTORIAL_RULES.to_string())]
            .into_iter()
            .collect();
        let flags: BTreeMap<(String, String), bool> = [
            ("EnablePromotion", "production", true),
            ("EnablePromotion", "development", true),
            ("EnableItemCache", "production", false),
            ("EnableItemCache", "development", false),
        ]
        .iter()
        .map(|(f, e, on)| ((f.to_string(), e.to_string()), *on))
        .collect();
        let flags = Rc::new(RefCell::new(flags));
        Recorder {
            vars: RefCell::new(vars.into_iter().collect()),
            files: RefCell::new(files),
            kv: RefCell::new(BTreeMap::new()),
            sent: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            now: Cell::new(1_764_165_726_000),
            race_next_swap: RefCell::new(None),
            race_next_swap_silently: RefCell::new(None),
            during_first_wait: RefCell::new(Vec::new()),
            kv_writes: Cell::new(0),
            random: Cell::new(0),
            responder: RefCell::new(unleash_like(flags.clone())),
            flags,
        }
    }

    pub fn set_var(&self, k: &str, v: &str) -> &Self {
        self.vars.borrow_mut().insert(k.into(), v.into());
        self
    }

    pub fn set_rules(&self, text: &str) -> &Self {
        self.files
            .borrow_mut()
            .insert("/remediation.yaml".into(), text.into());
        self
    }

    pub fn answer(&self, f: impl Fn(&Sent) -> Result<OutboundResponse, SendError> + 'static) {
        *self.responder.borrow_mut() = Box::new(f);
    }

    /// Calls to the stand-in Unleash answered by it, all others by `f`.
    pub fn answer_others(
        &self,
        f: impl Fn(&Sent) -> Result<OutboundResponse, SendError> + 'static,
    ) {
        let unleash = unleash_like(self.flags.clone());
        *self.responder.borrow_mut() = Box::new(move |s: &Sent| {
            if s.url.starts_with("http://unleash.test:4242/") {
                unleash(s)
            } else {
                f(s)
            }
        });
    }

    /// Back to the stand-in Unleash (and 200 from the scaling webhook).
    pub fn answer_like_unleash(&self) {
        *self.responder.borrow_mut() = unleash_like(self.flags.clone());
    }

    /// The JSON audit, newest first.
    pub fn audit(&self, query: &str) -> Vec<serde_json::Value> {
        let req = http::Request::get(format!("/audit{query}"))
            .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"));
        let (status, body) = self.request(req, b"");
        assert_eq!(status, 200, "{body}");
        body["entries"].as_array().unwrap().clone()
    }

    pub fn flag(&self, flag: &str, env: &str) -> bool {
        self.flags.borrow()[&(flag.to_string(), env.to_string())]
    }

    pub fn set_flag(&self, flag: &str, env: &str, on: bool) {
        self.flags
            .borrow_mut()
            .insert((flag.into(), env.into()), on);
    }

    /// Only the state-changing calls (POSTs): what an audit of effects cares about.
    pub fn posts(&self) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.method == "POST")
            .collect()
    }

    pub fn advance(&self, ms: i64) {
        self.now.set(self.now.get() + ms);
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.borrow().clone()
    }

    /// POST a webhook with the right credential.
    pub fn post(&self, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        self.request(
            http::Request::post(path)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {WEBHOOK_TOKEN}")),
            body,
        )
    }

    pub fn request(
        &self,
        builder: http::request::Builder,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let resp = remediator::app::handle(self, builder.body(body.to_vec()).unwrap());
        let status = resp.status().as_u16();
        let json = serde_json::from_slice(resp.body()).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(resp.body())
            )
        });
        (status, json)
    }
}

impl Platform for Recorder {
    fn send(&self, req: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendError> {
        let sent = Sent {
            method: req.method().to_string(),
            url: req.uri().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect(),
            body: req.body().clone(),
            timeout,
            at_ms: self.now.get(),
        };
        self.sent.borrow_mut().push(sent.clone());
        (self.responder.borrow())(&sent)
    }

    fn variable(&self, name: &str) -> Option<String> {
        self.vars.borrow().get(name).cloned()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.kv.borrow().get(key).cloned())
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv_writes.set(self.kv_writes.get() + 1);
        self.kv.borrow_mut().insert(key.into(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.kv_writes.set(self.kv_writes.get() + 1);
        self.kv.borrow_mut().remove(key);
        Ok(())
    }

    fn kv_keys(&self) -> Result<Vec<String>, KvError> {
        Ok(self.kv.borrow().keys().cloned().collect())
    }

    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        self.kv_writes.set(self.kv_writes.get() + 1);
        let mut kv = self.kv.borrow_mut();
        if let Some(winner) = self.race_next_swap.borrow_mut().take() {
            kv.insert(key.into(), winner);
            return Ok(false);
        }
        if let Some(winner) = self.race_next_swap_silently.borrow_mut().take() {
            kv.insert(key.into(), winner);
            return Ok(true);
        }
        if kv.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        kv.insert(key.into(), new.to_vec());
        Ok(true)
    }

    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.kv_writes.set(self.kv_writes.get() + 1);
        let mut kv = self.kv.borrow_mut();
        let current: i64 = kv
            .get(key)
            .map(|v| String::from_utf8_lossy(v).parse().unwrap())
            .unwrap_or(0);
        kv.insert(key.into(), (current + delta).to_string().into_bytes());
        Ok(current + delta)
    }

    /// Time passes only when the code under test waits.
    fn sleep(&self, duration: Duration) {
        self.now.set(self.now.get() + duration.as_millis() as i64);
        for (k, v) in self.during_first_wait.borrow_mut().drain(..) {
            self.kv.borrow_mut().insert(k, v);
        }
    }

    fn now_ms(&self) -> i64 {
        self.now.get()
    }

    /// 1, 2, 3, ...: delivery ids as the earlier shared counter gave them, so that
    /// batches written in the same (still) millisecond keep their order.
    fn random_u64(&self) -> u64 {
        self.random.set(self.random.get() + 1);
        self.random.get()
    }

    fn log(&self, line: &str) {
        self.logs.borrow_mut().push(line.to_string());
    }
}

/// (alertname, summary annotation, labels) of one test alert.
pub type TestAlert<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);

/// An Alertmanager webhook body with one alert per entry.
/// One `HighFailureRate` alert on carts (summary "Failure rate increase on carts"),
/// which the tutorial's "Failure rate increase" rule matches.
pub fn failure_rate(status: &str) -> Vec<u8> {
    alertmanager(
        status,
        &[(
            "HighFailureRate",
            Some("Failure rate increase on carts"),
            &[("service", "carts")],
        )],
    )
}

/// One firing `cpu_usage` alert on carts that started at `starts`: a new occurrence
/// for each new start.
pub fn cpu_usage_at(starts: &str) -> Vec<u8> {
    String::from_utf8(alertmanager(
        "firing",
        &[("cpu_usage", None, &[("service", "carts")])],
    ))
    .unwrap()
    .replace("2026-11-26T14:02:06.305Z", starts)
    .into_bytes()
}

pub fn alertmanager(status: &str, alerts: &[TestAlert]) -> Vec<u8> {
    let alerts: Vec<_> = alerts
        .iter()
        .enumerate()
        .map(|(i, (name, summary, labels))| {
            let mut l = serde_json::Map::new();
            l.insert("alertname".into(), (*name).into());
            for (k, v) in labels.iter() {
                l.insert((*k).into(), (*v).into());
            }
            let mut annotations = serde_json::Map::new();
            if let Some(s) = summary {
                annotations.insert("summary".into(), (*s).into());
            }
            serde_json::json!({
                "status": status,
                "labels": l,
                "annotations": annotations,
                "startsAt": "2026-11-26T14:02:06.305Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": format!("fp{i}{name}"),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "status": status, "receiver": "remediator", "groupKey": "{}",
        "truncatedAlerts": 0, "alerts": alerts,
    }))
    .unwrap()
}

/// A "billion laughs" rules file: ten levels of ten aliases (10^10 strings once
/// expanded) under Keptn 0.8's `value`, the one place whose type (an untagged enum)
/// buffers whatever nested data it is given.
pub fn yaml_alias_bomb() -> String {
    let mut bomb = String::from(
        "apiVersion: spec.keptn.sh/0.1.4\nkind: Remediation\nspec:\n  remediations:\n  \
         - problemType: x\n    actionsOnOpen:\n    - action: featuretoggle\n      \
         value: [&a [x, x, x, x, x, x, x, x, x, x]",
    );
    for i in 1..10u8 {
        let (p, c) = ((b'a' + i - 1) as char, (b'a' + i) as char);
        bomb += &format!(", &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]");
    }
    bomb + "]\n"
}
