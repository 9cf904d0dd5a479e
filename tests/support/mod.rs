//! A recording double of the Platform: variables, files and key-value in memory,
//! every outbound request recorded, answers scripted per test.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
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
    responder: RefCell<Responder>,
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
        let vars = [
            ("unleash_url", "http://unleash.test:4242"),
            ("unleash_token", UNLEASH_TOKEN),
            ("unleash_project", "default"),
            ("unleash_environment", "production"),
            ("scale_url", "http://scaler.test:9100"),
            ("scale_path", "/scale"),
            ("scale_token", SCALE_TOKEN),
            ("webhook_token", WEBHOOK_TOKEN),
            ("allow_unauthenticated", "false"),
            ("rules_file", "/remediation.yaml"),
            ("dry_run", "false"),
            ("outbound_timeout_ms", "2500"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let files = [("/remediation.yaml".to_string(), TUTORIAL_RULES.to_string())]
            .into_iter()
            .collect();
        Recorder {
            vars: RefCell::new(vars),
            files: RefCell::new(files),
            kv: RefCell::new(BTreeMap::new()),
            sent: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            now: Cell::new(1_764_165_726_000),
            responder: RefCell::new(Box::new(|_| respond(200, ""))),
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
        self.kv.borrow_mut().insert(key.into(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.kv.borrow_mut().remove(key);
        Ok(())
    }

    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        let mut kv = self.kv.borrow_mut();
        if kv.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        kv.insert(key.into(), new.to_vec());
        Ok(true)
    }

    fn now_ms(&self) -> i64 {
        self.now.get()
    }

    fn log(&self, line: &str) {
        self.logs.borrow_mut().push(line.to_string());
    }
}

/// (alertname, summary annotation, labels) of one test alert.
pub type TestAlert<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);

/// An Alertmanager webhook body with one alert per entry.
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
