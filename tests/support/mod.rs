//! The native tests' platform: remediator's own in-memory [`MemoryPlatform`] (feature
//! `testing`), configured as a user of the tutorial would configure it, with a stand-in
//! Unleash answering by default and the tests' helpers.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::rc::Rc;

use remediator::platform::{OutboundResponse, SendError};
pub use remediator::testing::{MemoryPlatform, Responder, Sent};

pub struct Recorder {
    pub platform: MemoryPlatform,
    /// The flags of the stand-in Unleash the default responder plays:
    /// (flag, environment) -> enabled.
    pub flags: Rc<RefCell<BTreeMap<(String, String), bool>>>,
}

/// The recorder is its platform: `r.kv`, `r.logs`, `&*r` as a `&dyn Platform`.
impl Deref for Recorder {
    type Target = MemoryPlatform;
    fn deref(&self) -> &MemoryPlatform {
        &self.platform
    }
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
        let platform = MemoryPlatform::new(vars, 1_764_165_726_000, unleash_like(flags.clone()));
        platform
            .files
            .borrow_mut()
            .insert("/remediation.yaml".into(), TUTORIAL_RULES.into());
        Recorder { platform, flags }
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
        self.answer_with(Box::new(f));
    }

    /// Calls to the stand-in Unleash answered by it, all others by `f`.
    pub fn answer_others(
        &self,
        f: impl Fn(&Sent) -> Result<OutboundResponse, SendError> + 'static,
    ) {
        let unleash = unleash_like(self.flags.clone());
        self.answer_with(Box::new(move |s: &Sent| {
            if s.url.starts_with("http://unleash.test:4242/") {
                unleash(s)
            } else {
                f(s)
            }
        }));
    }

    /// Back to the stand-in Unleash (and 200 from the scaling webhook).
    pub fn answer_like_unleash(&self) {
        self.answer_with(unleash_like(self.flags.clone()));
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
        let resp = remediator::app::handle(&self.platform, builder.body(body.to_vec()).unwrap());
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

/// Each problem's outcome in a webhook's report, in order.
pub fn outcomes(report: &serde_json::Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["outcome"].as_str().unwrap().to_string())
        .collect()
}

/// (alertname, summary annotation, labels) of one test alert.
pub type TestAlert<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);

/// An Alertmanager webhook body with one alert per entry.
/// One `HighFailureRate` alert on carts (summary "Failure rate increase on carts"),
/// which the tutorial's "Failure rate increase" rule matches.
pub fn failure_rate(status: &str) -> Vec<u8> {
    failure_rate_summarized(status, "Failure rate increase on carts")
}

/// The same alert with another summary.
pub fn failure_rate_summarized(status: &str, summary: &str) -> Vec<u8> {
    alertmanager(
        status,
        &[("HighFailureRate", Some(summary), &[("service", "carts")])],
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

/// One firing `cpu_usage` alert (the tutorial's scaling rule) on `service` in `namespace`.
pub fn cpu_usage_on(service: &str, namespace: &str) -> Vec<u8> {
    alertmanager(
        "firing",
        &[(
            "cpu_usage",
            None,
            &[("service", service), ("namespace", namespace)],
        )],
    )
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
