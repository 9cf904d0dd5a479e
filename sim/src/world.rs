//! The simulated world one schedule runs in: the shared key-value store (with
//! Spin's SQLite or Redis semantics), Unleash, the scaling receiver, the global
//! clock, injected faults, and what happened (who changed which flag, every scale
//! request received). [`SimPlatform`] is the `Platform` one delivery sees.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::resume_unwind;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use remediator::platform::{KvError, OutboundRequest, OutboundResponse, Platform, SendError};

/// Which of Spin's key-value backends the store behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `spin up`'s default. `compare_and_swap` from "absent" is an upsert that always
    /// succeeds; `increment` keeps 8-byte little-endian integers and panics the host
    /// on any other value.
    Sqlite,
    /// SpinKube's shared store. A swap whose key changed since `current()` writes
    /// nothing yet reports success; `increment` keeps decimal ASCII.
    Redis,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Redis => "redis",
        }
    }
}

/// Epoch milliseconds of simulated time zero.
pub const EPOCH_MS: i64 = 1_764_165_726_000;
pub const UNLEASH_URL: &str = "http://unleash.sim:4242";
pub const SCALE_URL: &str = "http://scaler.sim:9100";
pub const UNLEASH_TOKEN: &str = "sim-unleash-token";
pub const SCALE_TOKEN: &str = "sim-scale-token";
pub const WEBHOOK_TOKEN: &str = "sim-webhook-token";
pub const OUTBOUND_TIMEOUT_MS: i64 = 3000;
pub const OUTBOUND_BUDGET_MS: i64 = 8000;
pub const MAX_CLOCK_SKEW_MS: i64 = 60_000;

/// Every variable of spin.toml's `[variables]` (config load fails on a missing one),
/// with the simulation's values, plus `max_clock_skew_ms`.
pub fn variables() -> BTreeMap<String, String> {
    let budget = OUTBOUND_BUDGET_MS.to_string();
    let timeout = OUTBOUND_TIMEOUT_MS.to_string();
    let skew = MAX_CLOCK_SKEW_MS.to_string();
    remediator::testing::variables(&[
        ("unleash_url", UNLEASH_URL),
        ("unleash_token", UNLEASH_TOKEN),
        ("scale_url", SCALE_URL),
        ("scale_token", SCALE_TOKEN),
        ("webhook_token", WEBHOOK_TOKEN),
        ("outbound_timeout_ms", timeout.as_str()),
        ("outbound_budget_ms", budget.as_str()),
        ("max_clock_skew_ms", skew.as_str()),
    ])
}

/// Fault probabilities of one schedule; none is injected at or after `until_ms`.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Per scheduling point: the delivery's instance dies there.
    pub crash: f64,
    /// Per key-value call: an error, nothing applied.
    pub kv_busy: f64,
    /// Per key-value write: applied, then an error returned.
    pub kv_lost_reply: f64,
    pub unleash_5xx_before: f64,
    pub unleash_apply_then_timeout: f64,
    pub unleash_apply_then_502: f64,
    pub scale_5xx_before: f64,
    pub scale_apply_then_timeout: f64,
    /// Global epoch ms.
    pub until_ms: i64,
}

impl Faults {
    pub fn any(&self) -> bool {
        self.until_ms > EPOCH_MS
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Remediator { task: usize },
    Human,
}

/// One call to Unleash's on/off endpoint that it processed (by remediator), or a hand change.
#[derive(Debug, Clone)]
pub struct FlagChange {
    pub at: i64,
    pub flag: String,
    /// The Unleash project of the flag.
    pub project: String,
    pub from: bool,
    pub to: bool,
    pub who: Who,
    /// Which alert of the remediator delivery's body was being processed.
    pub alert: usize,
}

/// One `flexibleRollout` strategy of a flag's `production` environment.
#[derive(Debug, Clone)]
pub struct Strategy {
    pub id: String,
    pub title: String,
    /// What Unleash keeps: a string.
    pub rollout: String,
}

/// One rollout PATCH that Unleash processed (by remediator), or a hand change of a
/// strategy's percentage.
#[derive(Debug, Clone)]
pub struct RolloutChange {
    pub at: i64,
    pub flag: String,
    pub strategy: String,
    pub from: u8,
    pub to: u8,
    pub who: Who,
    /// Which alert of the remediator delivery's body was being processed.
    pub alert: usize,
}

/// One GET of a flag by remediator, as far as rollouts are concerned: what the
/// watched strategy showed (`None`: it is not there).
#[derive(Debug, Clone)]
pub struct RolloutRead {
    pub at: i64,
    pub task: usize,
    /// Which alert of the delivery's body was being processed.
    pub alert: usize,
    pub flag: String,
    pub strategy: String,
    pub rollout: Option<u8>,
}

/// One scale request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ScaleRecv {
    pub at: i64,
    pub task: usize,
    /// Which alert of the delivery's body was being processed.
    pub alert: usize,
    pub body: serde_json::Value,
    pub idempotency_key: Option<String>,
    /// It took effect (not refused before applying, not a duplicate key).
    pub applied: bool,
    /// The sender saw an error although it took effect (timeout after receiving).
    pub error_after_apply: bool,
}

impl ScaleRecv {
    pub fn field(&self, name: &str) -> String {
        self.body
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    }
}

/// What the world knows about one delivery (one call of `app::handle`).
#[derive(Debug, Clone, Default)]
pub struct TaskInfo {
    pub replica: usize,
    /// The alerts of the body, in order: (occurrence, firing or resolved).
    pub alerts: Vec<(usize, crate::scenario::Kind)>,
    /// Their occurrence keys as remediator names them (`alertmanager/{fp}/{startsAt}`).
    pub keys: Vec<String>,
    /// The alert being processed: remediator logs one line per alert when it is done
    /// with it (`remediator: {occurrence} …`), which moves this on.
    pub cur: usize,
    /// Set when the instance died (injected crash) at this global time.
    pub crashed_at: Option<i64>,
    /// Global times of injected key-value faults in this delivery.
    pub kv_faults: Vec<i64>,
    /// Global times at which this delivery got an answer to a flag change that
    /// does not say whether it applied (5xx, or a timeout).
    pub uncertain: Vec<i64>,
    /// At a scheduling point inside `kv_set_many` (a crash there cuts it short).
    pub in_set_many: bool,
}

pub struct World {
    pub store: Store,
    /// Global clock, epoch ms.
    pub now: i64,
    pub rng: fastrand::Rng,
    /// `Platform::random_u64` (delivery ids): its own stream, so that drawing ids does
    /// not shift the schedule's other draws.
    pub ids: fastrand::Rng,
    pub kv: BTreeMap<String, Vec<u8>>,
    /// Bumped on every write of a key: Redis's WATCH.
    pub kv_version: BTreeMap<String, u64>,
    /// Unleash, environment `production`: flag -> enabled.
    pub flags: BTreeMap<String, bool>,
    pub flag_log: Vec<FlagChange>,
    /// Unleash, environment `production`: flag -> its `flexibleRollout` strategies.
    pub strategies: BTreeMap<String, Vec<Strategy>>,
    pub rollout_log: Vec<RolloutChange>,
    pub rollout_reads: Vec<RolloutRead>,
    pub scale_log: Vec<ScaleRecv>,
    applied_keys: BTreeSet<String>,
    pub faults: Faults,
    pub vars: BTreeMap<String, String>,
    /// Rules text, then optionally another text from a global time on.
    pub rules: String,
    pub rules_later: Option<(i64, String)>,
    pub tasks: Vec<TaskInfo>,
    /// A fatal store failure (the schedule stops).
    pub fatal: Option<String>,
    pub trace: Option<Vec<String>>,
    pub kv_calls: u64,
    /// Compare-and-swaps whose key changed between `current()` and `swap()`.
    pub cas_races: u64,
    /// `kv_set_many` calls, and those cut short (a crash or store error before the
    /// last entry, or a lost reply).
    pub set_many_calls: u64,
    pub set_many_cut: u64,
}

impl World {
    pub fn new(store: Store, seed: u64) -> World {
        World {
            store,
            now: EPOCH_MS,
            rng: fastrand::Rng::with_seed(seed),
            ids: fastrand::Rng::with_seed(seed ^ 0x1d5_1d5_1d5),
            kv: BTreeMap::new(),
            kv_version: BTreeMap::new(),
            flags: BTreeMap::new(),
            flag_log: Vec::new(),
            strategies: BTreeMap::new(),
            rollout_log: Vec::new(),
            rollout_reads: Vec::new(),
            scale_log: Vec::new(),
            applied_keys: BTreeSet::new(),
            faults: Faults::default(),
            vars: variables(),
            rules: String::new(),
            rules_later: None,
            tasks: Vec::new(),
            fatal: None,
            trace: None,
            kv_calls: 0,
            cas_races: 0,
            set_many_calls: 0,
            set_many_cut: 0,
        }
    }

    pub fn rel(&self) -> i64 {
        self.now - EPOCH_MS
    }

    pub fn note(&mut self, task: Option<usize>, line: impl FnOnce() -> String) {
        if self.trace.is_some() {
            let who = match task {
                Some(t) => format!("r{} d{t}", self.tasks[t].replica),
                None => "world".into(),
            };
            let l = format!("{:>9} ms {who}: {}", self.rel(), line());
            if let Some(tr) = self.trace.as_mut() {
                tr.push(l);
            }
        }
    }

    /// The alert of `task`'s body being processed now.
    pub fn cur(&self, task: usize) -> usize {
        let t = &self.tasks[task];
        t.cur.min(t.alerts.len().saturating_sub(1))
    }

    fn faulty(&mut self, p: f64) -> bool {
        p > 0.0 && self.now < self.faults.until_ms && self.rng.f64() < p
    }

    /// A human flips `flag` in Unleash.
    pub fn human_flip(&mut self, flag: &str) {
        let from = *self.flags.get(flag).unwrap_or(&false);
        self.flags.insert(flag.to_string(), !from);
        self.flag_log.push(FlagChange {
            at: self.now,
            flag: flag.to_string(),
            project: crate::scenario::project_of(flag).to_string(),
            from,
            to: !from,
            who: Who::Human,
            alert: 0,
        });
        self.note(None, || format!("HUMAN flips {flag} {from} -> {}", !from));
    }

    /// A human sets the percentage of `flag`'s strategy `id` (if it still exists).
    pub fn human_rollout(&mut self, flag: &str, id: &str, to: u8) {
        let Some(st) = self
            .strategies
            .get_mut(flag)
            .and_then(|v| v.iter_mut().find(|s| s.id == id))
        else {
            return;
        };
        let from: u8 = st.rollout.parse().unwrap_or(0);
        if from == to {
            return;
        }
        st.rollout = to.to_string();
        self.rollout_log.push(RolloutChange {
            at: self.now,
            flag: flag.to_string(),
            strategy: id.to_string(),
            from,
            to,
            who: Who::Human,
            alert: 0,
        });
        self.note(None, || {
            format!("HUMAN sets the rollout of {flag} ({id}) {from} -> {to}")
        });
    }

    /// The current percentage of `flag`'s strategy `id`.
    pub fn rollout(&self, flag: &str, id: &str) -> Option<u8> {
        self.strategies
            .get(flag)?
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.rollout.parse().ok())
    }

    fn write(&mut self, key: &str, value: Vec<u8>) {
        self.kv.insert(key.to_string(), value);
        *self.kv_version.entry(key.to_string()).or_default() += 1;
    }

    fn remove(&mut self, key: &str) {
        self.kv.remove(key);
        *self.kv_version.entry(key.to_string()).or_default() += 1;
    }

    fn version(&self, key: &str) -> u64 {
        self.kv_version.get(key).copied().unwrap_or(0)
    }

    fn kv_fault(&mut self, task: usize, kind: &str, key: &str) -> KvError {
        let now = self.now;
        self.tasks[task].kv_faults.push(now);
        self.note(Some(task), || format!("  injected {kind} on {key}"));
        KvError(format!("{kind} (injected)"))
    }

    /// Unleash applied a change (`what`); the injected faults may lose its answer: a
    /// timeout, else a 502 (drawn in that order). The sender is then uncertain.
    fn lost_after_apply(
        &mut self,
        task: usize,
        what: impl Fn() -> String,
        timeout_ms: i64,
        lat: i64,
    ) -> Option<(Result<OutboundResponse, SendError>, i64)> {
        let (answer, then) = if self.faulty(self.faults.unleash_apply_then_timeout) {
            let e = Err(SendError::Timeout("unleash (injected)".into()));
            ((e, timeout_ms), "times out")
        } else if self.faulty(self.faults.unleash_apply_then_502) {
            ((respond(502, "bad gateway"), lat), "502")
        } else {
            return None;
        };
        let now = self.now;
        self.tasks[task].uncertain.push(now);
        self.note(Some(task), || {
            format!("  unleash APPLIED {}, then {then}", what())
        });
        Some(answer)
    }

    /// Unleash and the scaling receiver. Returns the answer and how long until the
    /// sender sees it.
    fn peer(
        &mut self,
        task: usize,
        req: &OutboundRequest,
        timeout: Duration,
    ) -> (Result<OutboundResponse, SendError>, i64) {
        let timeout_ms = timeout.as_millis() as i64;
        let lat = self.rng.i64(1..=25);
        let uri = req.uri().to_string();
        let method = req.method().as_str().to_string();
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let Some(path) = uri.strip_prefix(UNLEASH_URL) {
            if auth.as_deref() != Some(UNLEASH_TOKEN) {
                return (respond(401, "bad token"), lat);
            }
            let Some((project, rest)) = path
                .strip_prefix("/api/admin/projects/")
                .and_then(|r| r.split_once("/features/"))
            else {
                return (respond(404, "no such route"), lat);
            };
            let project = project.to_string();
            let parts: Vec<&str> = rest.split('/').collect();
            let flag = parts[0].to_string();
            let Some(&current) = self.flags.get(&flag) else {
                return (respond(404, "no such flag"), lat);
            };
            if crate::scenario::project_of(&flag) != project {
                return (respond(404, "no such flag in this project"), lat);
            }
            if self.faulty(self.faults.unleash_5xx_before) {
                if method == "POST" || method == "PATCH" {
                    let now = self.now;
                    self.tasks[task].uncertain.push(now);
                }
                self.note(Some(task), || {
                    format!("  unleash 503 before applying {method} {flag}")
                });
                return (respond(503, "unavailable"), lat);
            }
            match (method.as_str(), parts.as_slice()) {
                ("GET", [_]) => {
                    let strategy = |id: &str, name: &str, title: &str, rollout: &str| {
                        serde_json::json!({"id": id, "name": name, "title": title,
                            "parameters": {"rollout": rollout, "stickiness": "default", "groupId": flag},
                            "constraints": [], "segments": []})
                    };
                    let mut production = vec![strategy("s-default", "default", "", "")];
                    let mut development = vec![];
                    for s in self.strategies.get(&flag).into_iter().flatten() {
                        production.push(strategy(&s.id, "flexibleRollout", &s.title, &s.rollout));
                        development.push(strategy(
                            &format!("dev-{}", s.id),
                            "flexibleRollout",
                            &s.title,
                            "100",
                        ));
                    }
                    for s in self.strategies.get(&flag).into_iter().flatten() {
                        let read = RolloutRead {
                            at: self.now,
                            task,
                            alert: self.cur(task),
                            flag: flag.clone(),
                            strategy: s.id.clone(),
                            rollout: s.rollout.parse().ok(),
                        };
                        self.rollout_reads.push(read);
                    }
                    let body = serde_json::json!({"name": flag, "project": project, "environments": [
                        {"name": "development", "enabled": true, "strategies": development},
                        {"name": "production", "enabled": current, "strategies": production},
                    ]});
                    (respond(200, &body.to_string()), lat)
                }
                ("PATCH", [_, "environments", "production", "strategies", id]) => {
                    let patch: serde_json::Value =
                        serde_json::from_slice(req.body()).unwrap_or(serde_json::Value::Null);
                    let value = match patch.as_array().map(Vec::as_slice) {
                        Some([op])
                            if op["op"] == "replace" && op["path"] == "/parameters/rollout" =>
                        {
                            op["value"].as_str().and_then(|v| v.parse::<u8>().ok())
                        }
                        _ => None,
                    };
                    let Some(to) = value.filter(|v| *v <= 100) else {
                        return (respond(400, "unexpected patch"), lat);
                    };
                    let id = id.to_string();
                    let Some(st) = self
                        .strategies
                        .get_mut(&flag)
                        .and_then(|v| v.iter_mut().find(|s| s.id == id))
                    else {
                        return (respond(404, "no such strategy"), lat);
                    };
                    let from: u8 = st.rollout.parse().unwrap_or(0);
                    st.rollout = to.to_string();
                    self.rollout_log.push(RolloutChange {
                        at: self.now,
                        flag: flag.clone(),
                        strategy: id.clone(),
                        from,
                        to,
                        who: Who::Remediator { task },
                        alert: self.cur(task),
                    });
                    let what = || format!("rollout {flag} ({id}) {from}->{to}");
                    if let Some(answer) = self.lost_after_apply(task, what, timeout_ms, lat) {
                        return answer;
                    }
                    self.note(Some(task), || format!("  unleash {}", what()));
                    let body = serde_json::json!({"id": id, "name": "flexibleRollout",
                        "parameters": {"rollout": to.to_string()}});
                    (respond(200, &body.to_string()), lat)
                }
                ("POST", [_, "environments", "production", state @ ("on" | "off")]) => {
                    let to = *state == "on";
                    self.flags.insert(flag.clone(), to);
                    self.flag_log.push(FlagChange {
                        at: self.now,
                        flag: flag.clone(),
                        project: project.clone(),
                        from: current,
                        to,
                        who: Who::Remediator { task },
                        alert: self.cur(task),
                    });
                    let what = || format!("{flag} {current}->{to}");
                    if let Some(answer) = self.lost_after_apply(task, what, timeout_ms, lat) {
                        return answer;
                    }
                    self.note(Some(task), || format!("  unleash {}", what()));
                    (respond(200, ""), lat)
                }
                _ => (respond(400, "unexpected call"), lat),
            }
        } else if let Some(path) = uri.strip_prefix(SCALE_URL) {
            if path != "/scale" || method != "POST" {
                return (respond(404, "no such route"), lat);
            }
            let body: serde_json::Value =
                serde_json::from_slice(req.body()).unwrap_or(serde_json::Value::Null);
            let idempotency_key = req
                .headers()
                .get("idempotency-key")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .or_else(|| {
                    body.get("idempotency_key")
                        .and_then(|k| k.as_str())
                        .map(str::to_string)
                });
            let before = self.faulty(self.faults.scale_5xx_before);
            let duplicate = idempotency_key
                .as_ref()
                .is_some_and(|k| self.applied_keys.contains(k));
            let applied = !before && !duplicate;
            if applied {
                if let Some(k) = &idempotency_key {
                    self.applied_keys.insert(k.clone());
                }
            }
            let after = applied && self.faulty(self.faults.scale_apply_then_timeout);
            self.note(Some(task), || {
                format!(
                    "  scaler {} {} {} key={:?}{}",
                    body.get("status").and_then(|v| v.as_str()).unwrap_or(""),
                    body.get("value").and_then(|v| v.as_str()).unwrap_or(""),
                    body.get("occurrence")
                        .and_then(|v| v.as_str())
                        .unwrap_or(""),
                    idempotency_key,
                    if before {
                        " 503 before applying"
                    } else if duplicate {
                        " duplicate key: not applied"
                    } else if after {
                        " APPLIED, then times out"
                    } else {
                        " applied"
                    }
                )
            });
            self.scale_log.push(ScaleRecv {
                at: self.now,
                task,
                alert: self.cur(task),
                body,
                idempotency_key,
                applied,
                error_after_apply: after,
            });
            if before {
                (respond(503, "busy"), lat)
            } else if after {
                (
                    Err(SendError::Timeout("scaler (injected)".into())),
                    timeout_ms,
                )
            } else {
                (respond(200, "{}"), lat)
            }
        } else {
            (Err(SendError::Transport(format!("no route to {uri}"))), lat)
        }
    }
}

fn respond(status: u16, body: &str) -> Result<OutboundResponse, SendError> {
    Ok(http::Response::builder()
        .status(status)
        .body(body.as_bytes().to_vec())
        .expect("valid status"))
}

/// What a delivery thread tells the scheduler.
pub enum Yield {
    /// At a scheduling point: runnable again from this global time.
    Wait(i64),
    Done(http::Response<Vec<u8>>),
    /// Unwound by an injected crash (or a fatal store failure).
    Crashed,
    /// Any other panic.
    Panicked(String),
}

/// What the scheduler tells a waiting delivery thread.
pub enum Resume {
    Go,
    Crash,
}

/// The private panic payload of an injected crash.
pub struct CrashToken;

/// The baton: how a delivery thread hands control back and waits for its turn.
pub struct Link {
    pub to_ctrl: mpsc::Sender<(usize, Yield)>,
    pub from_ctrl: mpsc::Receiver<Resume>,
}

/// The `Platform` of one delivery on one replica. With a [`Link`], every call that
/// touches shared state (key-value, HTTP, sleep) is a scheduling point; without one
/// (growth mode) calls run directly and only advance the clock.
pub struct SimPlatform {
    pub world: Arc<Mutex<World>>,
    pub task: usize,
    pub skew: i64,
    pub link: Option<Link>,
}

pub fn lock(w: &Mutex<World>) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimPlatform {
    fn w(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// Hand the baton back; runnable again `wait_ms` from now. Unwinds on a crash.
    fn point(&self, wait_ms: i64) {
        match &self.link {
            None => self.w().now += wait_ms,
            Some(l) => {
                let wake = self.w().now + wait_ms;
                if l.to_ctrl.send((self.task, Yield::Wait(wake))).is_err() {
                    resume_unwind(Box::new(CrashToken));
                }
                match l.from_ctrl.recv() {
                    Ok(Resume::Go) => {}
                    _ => resume_unwind(Box::new(CrashToken)),
                }
            }
        }
    }

    fn kv_point(&self) {
        let lat = {
            let mut w = self.w();
            w.kv_calls += 1;
            w.rng.i64(0..=2)
        };
        self.point(lat);
    }
}

fn show(v: Option<&[u8]>) -> String {
    match v {
        None => "None".into(),
        Some(b) if b.len() > 60 => format!(
            "{:?}…({} bytes)",
            String::from_utf8_lossy(&b[..60]),
            b.len()
        ),
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
    }
}

impl Platform for SimPlatform {
    fn send(&self, req: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendError> {
        let lat = self.w().rng.i64(1..=25);
        self.point(lat);
        let (result, wait) = {
            let mut w = self.w();
            let task = self.task;
            w.note(Some(task), || {
                format!("send {} {} (timeout {timeout:?})", req.method(), req.uri())
            });
            w.peer(task, &req, timeout)
        };
        self.point(wait);
        let mut w = self.w();
        w.note(Some(self.task), || match &result {
            Ok(r) => format!("  <- {}", r.status()),
            Err(e) => format!("  <- {e}"),
        });
        result
    }

    fn variable(&self, name: &str) -> Option<String> {
        self.w().vars.get(name).cloned()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        let w = self.w();
        if path != "/remediation.yaml" {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ));
        }
        Ok(match &w.rules_later {
            Some((from, text)) if w.now >= *from => text.clone(),
            _ => w.rules.clone(),
        })
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.kv_point();
        let mut w = self.w();
        let p = w.faults.kv_busy;
        if w.faulty(p) {
            return Err(w.kv_fault(self.task, "busy", key));
        }
        let v = w.kv.get(key).cloned();
        w.note(Some(self.task), || {
            format!("kv_get {key} -> {}", show(v.as_deref()))
        });
        Ok(v)
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv_point();
        let mut w = self.w();
        let p = w.faults.kv_busy;
        if w.faulty(p) {
            return Err(w.kv_fault(self.task, "busy", key));
        }
        w.write(key, value.to_vec());
        w.note(Some(self.task), || {
            format!("kv_set {key} = {}", show(Some(value)))
        });
        let p = w.faults.kv_lost_reply;
        if w.faulty(p) {
            return Err(w.kv_fault(self.task, "lost reply (applied)", key));
        }
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.kv_point();
        let mut w = self.w();
        let p = w.faults.kv_busy;
        if w.faulty(p) {
            return Err(w.kv_fault(self.task, "busy", key));
        }
        w.remove(key);
        w.note(Some(self.task), || format!("kv_delete {key}"));
        let p = w.faults.kv_lost_reply;
        if w.faulty(p) {
            return Err(w.kv_fault(self.task, "lost reply (applied)", key));
        }
        Ok(())
    }

    /// Spin's `set-many` is one transaction where the store has it, but the core may
    /// not rely on that: modelled conservatively, with a scheduling point (so a
    /// crash, another delivery's step, a store error) before every entry, and a lost
    /// reply after any, so that any prefix may be all that was written.
    fn kv_set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let n = entries.len();
        self.w().set_many_calls += 1;
        for (i, (key, value)) in entries.iter().enumerate() {
            self.w().tasks[self.task].in_set_many = true;
            self.kv_point();
            let mut w = self.w();
            w.tasks[self.task].in_set_many = false;
            let p = w.faults.kv_busy;
            if w.faulty(p) {
                w.set_many_cut += 1;
                return Err(w.kv_fault(self.task, "busy (set_many)", key));
            }
            w.write(key, value.clone());
            w.note(Some(self.task), || {
                format!("kv_set_many [{}/{n}] {key} = {}", i + 1, show(Some(value)))
            });
            let p = w.faults.kv_lost_reply;
            if w.faulty(p) {
                w.set_many_cut += 1;
                return Err(w.kv_fault(self.task, "lost reply (set_many, applied)", key));
            }
        }
        Ok(())
    }

    fn kv_keys(&self) -> Result<Vec<String>, KvError> {
        self.kv_point();
        let mut w = self.w();
        let p = w.faults.kv_busy;
        if w.faulty(p) {
            return Err(w.kv_fault(self.task, "busy", "(list keys)"));
        }
        let keys: Vec<String> = w.kv.keys().cloned().collect();
        w.note(Some(self.task), || {
            format!("kv_keys -> {} keys", keys.len())
        });
        Ok(keys)
    }

    /// Two scheduling points, like Spin's `Cas::current` then `swap`.
    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        self.kv_point();
        let (snapshot, version) = {
            let mut w = self.w();
            let p = w.faults.kv_busy;
            if w.faulty(p) {
                return Err(w.kv_fault(self.task, "busy", key));
            }
            let cur = w.kv.get(key).cloned();
            let ver = w.version(key);
            w.note(Some(self.task), || {
                format!("cas.current {key} -> {}", show(cur.as_deref()))
            });
            if cur.as_deref() != expected {
                return Ok(false);
            }
            (cur, ver)
        };
        self.kv_point();
        let mut w = self.w();
        let p = w.faults.kv_busy;
        if w.faulty(p) {
            return Err(w.kv_fault(self.task, "busy", key));
        }
        if w.version(key) != version {
            w.cas_races += 1;
        }
        let won = match w.store {
            Store::Sqlite => {
                if snapshot.is_none() {
                    // INSERT ... ON CONFLICT DO UPDATE: always "succeeds".
                    w.write(key, new.to_vec());
                    w.note(Some(self.task), || {
                        format!("cas.swap {key} (upsert) = {}", show(Some(new)))
                    });
                    true
                } else if w.kv.get(key) == snapshot.as_ref() {
                    w.write(key, new.to_vec());
                    w.note(Some(self.task), || {
                        format!("cas.swap {key} = {}", show(Some(new)))
                    });
                    true
                } else {
                    w.note(Some(self.task), || {
                        format!("cas.swap {key}: changed, CasFailed")
                    });
                    false
                }
            }
            Store::Redis => {
                if w.version(key) == version {
                    w.write(key, new.to_vec());
                    w.note(Some(self.task), || {
                        format!("cas.swap {key} = {}", show(Some(new)))
                    });
                } else {
                    w.note(Some(self.task), || {
                        format!("cas.swap {key}: WATCH aborted, reported as success")
                    });
                }
                true
            }
        };
        let p = w.faults.kv_lost_reply;
        if won && w.faulty(p) {
            return Err(w.kv_fault(self.task, "lost reply (applied)", key));
        }
        Ok(won)
    }

    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.kv_point();
        let mut w = self.w();
        let p = w.faults.kv_busy;
        if w.faulty(p) {
            return Err(w.kv_fault(self.task, "busy", key));
        }
        let current = w.kv.get(key).cloned();
        let new = match w.store {
            Store::Sqlite => {
                let old = match current.as_deref() {
                    None => 0,
                    Some(b) if b.len() == 8 => i64::from_le_bytes(b.try_into().expect("8 bytes")),
                    Some(b) => {
                        let msg = format!(
                            "increment of {key} whose value is not 8 bytes ({}): Spin's SQLite increment panics the host and poisons the store",
                            show(Some(b))
                        );
                        w.note(Some(self.task), || format!("FATAL {msg}"));
                        w.fatal.get_or_insert(msg);
                        drop(w);
                        resume_unwind(Box::new(CrashToken));
                    }
                };
                let new = old + delta;
                w.write(key, new.to_le_bytes().to_vec());
                new
            }
            Store::Redis => {
                let old = match current.as_deref() {
                    None => 0,
                    Some(b) => match std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        Some(n) => n,
                        None => {
                            w.note(Some(self.task), || {
                                format!("kv_increment {key}: not an integer")
                            });
                            return Err(KvError(
                                "ERR value is not an integer or out of range".into(),
                            ));
                        }
                    },
                };
                let new = old + delta;
                w.write(key, new.to_string().into_bytes());
                new
            }
        };
        w.note(Some(self.task), || {
            format!("kv_increment {key} {delta:+} -> {new}")
        });
        let p = w.faults.kv_lost_reply;
        if w.faulty(p) {
            return Err(w.kv_fault(self.task, "lost reply (applied)", key));
        }
        Ok(new)
    }

    fn sleep(&self, duration: Duration) {
        {
            let mut w = self.w();
            w.note(Some(self.task), || format!("sleep {duration:?}"));
        }
        self.point(duration.as_millis() as i64);
    }

    fn now_ms(&self) -> i64 {
        self.w().now + self.skew
    }

    fn random_u64(&self) -> u64 {
        self.w().ids.u64(..)
    }

    fn log(&self, line: &str) {
        let mut w = self.w();
        let t = &mut w.tasks[self.task];
        if let Some(key) = t.keys.get(t.cur) {
            if line.strip_prefix("remediator: ").is_some_and(|r| {
                r.strip_prefix(key.as_str())
                    .is_some_and(|r| r.starts_with(' '))
            }) {
                t.cur += 1;
            }
        }
        w.note(Some(self.task), || format!("log {line}"));
    }
}
