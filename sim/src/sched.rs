//! The deterministic scheduler: delivery threads run one at a time, each handing
//! the baton back at every scheduling point; the seeded RNG picks who runs next,
//! where an instance crashes, and time jumps to the next wake-up when nobody is
//! runnable. The Alertmanager model (streams, retries, HA duplicates, hand
//! changes) is driven from here, and everything observed is kept for the checks.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::invariants::{self, Violation};
use crate::scenario::{self, Kind, Scenario, INITIAL_FLAGS};
use crate::world::{
    lock, CrashToken, FlagChange, Link, Resume, RolloutChange, RolloutRead, ScaleRecv, SimPlatform,
    Store, Strategy, TaskInfo, World, Yield, WEBHOOK_TOKEN,
};

/// Seeds with this bit set draw a schedule of the rollout family; the others draw
/// the classic family, as they did before rollouts were simulated (so that earlier
/// seeds replay unchanged).
pub const ROLLOUT_BIT: u64 = 1 << 53;
/// Seeds with this bit set have Alertmanager send groups: one notification stream per
/// alertname whose deliveries carry all its firing alerts and its resolved ones not yet
/// answered 2xx ([`scenario::group`]). Seeds without it replay as before.
pub const GROUP_BIT: u64 = 1 << 54;
/// Seeds with this bit set (and not [`ROLLOUT_BIT`]) draw a schedule of the budget
/// family ([`scenario::draw_budget`]): a blast-radius budget, checked by I7. Seeds
/// without it replay as before.
pub const BUDGET_BIT: u64 = 1 << 55;

/// Alertmanager's webhook timeout: past it, the attempt counts as failed and is
/// retried while the original delivery may still be running.
pub const AM_TIMEOUT_MS: i64 = 10_000;
/// Scheduling points per schedule before it is reported as runaway.
pub const STEP_BUDGET: u64 = 400_000;
/// Wall-clock time a delivery thread may run between two scheduling points.
const THREAD_WALL_LIMIT: Duration = Duration::from_secs(60);

/// What one delivery did, as Alertmanager saw it.
#[derive(Debug, Clone)]
pub struct DeliveryRec {
    pub task: usize,
    /// The first alert of the body (the only one unless grouped).
    pub occ: usize,
    pub kind: Kind,
    pub replica: usize,
    pub start: i64,
    pub end: Option<i64>,
    /// HTTP status, or None: crashed / never finished.
    pub status: Option<u16>,
    /// The first alert's outcome (or the error).
    pub outcome: String,
    /// Every alert of the body, in order, with what the report says of it.
    pub alerts: Vec<AlertRec>,
    pub crashed: bool,
    pub panicked: Option<String>,
}

/// One alert of a delivery and its problem in the report.
#[derive(Debug, Clone)]
pub struct AlertRec {
    pub occ: usize,
    pub kind: Kind,
    pub outcome: String,
    /// Flags the report says were turned (on/off action outcome "done").
    pub flags_done: Vec<String>,
    /// Flags whose rollout the report says was set (rollout action outcome "done").
    pub rollouts_done: Vec<String>,
    /// Outcome "failed", and every failed action was refused for good (not retryable).
    pub failed_for_good: bool,
}

/// Per notification stream, what Alertmanager experienced.
#[derive(Debug, Clone)]
pub struct StreamRec {
    pub occ: usize,
    pub kind: Kind,
    pub start: i64,
    pub end: i64,
    pub next: Option<i64>,
    pub inflight: Option<(usize, i64, i64)>,
    pub failing_since: Option<i64>,
    pub backoff: i64,
    pub ok_at: Vec<i64>,
    pub done: bool,
    /// (time, status or 0 for no response, outcome) of every attempt.
    pub answers: Vec<(i64, u16, String)>,
    pub liveness_violation: Option<String>,
    /// A group's stream: its occurrences; those whose resolve was answered 2xx; those
    /// whose resolve Alertmanager never sends (a later alert of the same labels
    /// replaced it in the group); what the attempt in flight carries.
    pub members: Vec<usize>,
    pub resolved_ok: Vec<usize>,
    pub dropped: Vec<usize>,
    pub sent: Vec<(usize, Kind)>,
}

/// Everything a schedule produced; the invariants read only this.
pub struct Observed {
    pub seed: u64,
    pub store: Store,
    pub scenario: Scenario,
    pub deliveries: Vec<DeliveryRec>,
    pub streams: Vec<StreamRec>,
    pub flag_log: Vec<FlagChange>,
    pub rollout_log: Vec<RolloutChange>,
    pub rollout_reads: Vec<RolloutRead>,
    pub scale_log: Vec<ScaleRecv>,
    pub tasks: Vec<TaskInfo>,
    pub final_flags: Vec<(String, bool)>,
    /// (flag, strategy id, percentage) at the end.
    pub final_rollouts: Vec<(String, String, Option<u8>)>,
    pub keys: usize,
    pub fatal: Option<String>,
    /// Harness-level problems (deadlock, runaway, stuck thread).
    pub harness: Vec<String>,
    pub aborted: bool,
    pub steps: u64,
    pub cas_races: u64,
    /// `kv_set_many` calls, and those a crash or store fault cut short.
    pub set_many: (u64, u64),
}

impl Observed {
    /// The occurrence and kind of alert `alert` of `task`'s body.
    pub fn alert_of(&self, task: usize, alert: usize) -> (usize, Kind) {
        let a = &self.tasks[task].alerts;
        a.get(alert)
            .or(a.last())
            .copied()
            .unwrap_or((0, Kind::Firing))
    }

    /// Every occurrence of the scenario that `touches` had its (last) resolve answered 2xx.
    pub fn all_resolved(&self, touches: impl Fn(&scenario::Occ) -> bool) -> bool {
        self.scenario
            .occs
            .iter()
            .enumerate()
            .filter(|(_, oc)| touches(oc))
            .all(|(i, _)| self.resolve_answered(i))
    }

    /// Occurrence `i` had its (last) resolve answered 2xx.
    pub fn resolve_answered(&self, i: usize) -> bool {
        self.streams
            .iter()
            .rfind(|s| s.members.is_empty() && s.occ == i && s.kind == Kind::Resolved)
            .is_some_and(|s| !s.ok_at.is_empty())
            || self.streams.iter().any(|s| s.resolved_ok.contains(&i))
    }
}

pub struct Outcome {
    pub violations: Vec<Violation>,
    pub ambiguous: usize,
    pub keys: usize,
    pub deliveries: usize,
    pub steps: u64,
    pub scenario: &'static str,
    pub trace: Option<Vec<String>>,
    pub observed: Observed,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics in delivery threads are reported by the harness (I5), not printed.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let sim = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("sim-d"));
            if sim {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

enum TState {
    Waiting(i64),
    Finished,
}

struct TaskCtl {
    tx: mpsc::Sender<Resume>,
    state: TState,
    join: Option<JoinHandle<()>>,
    stream: Option<usize>,
}

struct Pending {
    at: i64,
    alerts: Vec<(usize, Kind)>,
    /// The other Alertmanager of an HA pair flushing a group on its own, later: the
    /// body is what that group holds when it is sent.
    peer_of: Option<usize>,
    stream: Option<usize>,
    replica: usize,
}

struct Sim {
    world: Arc<Mutex<World>>,
    sc: Scenario,
    tasks: Vec<TaskCtl>,
    to_ctrl: mpsc::Sender<(usize, Yield)>,
    from_threads: mpsc::Receiver<(usize, Yield)>,
    deliveries: Vec<DeliveryRec>,
    streams: Vec<StreamRec>,
    pending: Vec<Pending>,
    hand: Vec<(i64, &'static str)>,
    hand_rollout: Vec<(i64, &'static str, u8)>,
    harness: Vec<String>,
    steps: u64,
}

fn request(body: Vec<u8>) -> http::Request<Vec<u8>> {
    http::Request::post("/alertmanager")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
        .body(body)
        .expect("valid request")
}

impl Sim {
    fn now(&self) -> i64 {
        lock(&self.world).now
    }

    fn rng_f64(&self) -> f64 {
        lock(&self.world).rng.f64()
    }

    fn spawn(
        &mut self,
        alerts: Vec<(usize, Kind)>,
        stream: Option<usize>,
        replica: usize,
    ) -> usize {
        let task = self.tasks.len();
        let (occ, kind) = alerts[0];
        let now = {
            let mut w = lock(&self.world);
            w.tasks.push(TaskInfo {
                replica,
                alerts: alerts.clone(),
                keys: alerts
                    .iter()
                    .map(|a| scenario::occurrence_key(&self.sc.occs[a.0]))
                    .collect(),
                cur: 0,
                crashed_at: None,
                kv_faults: vec![],
                uncertain: vec![],
                in_set_many: false,
            });
            let now = w.now;
            let dup = if stream.is_none() {
                " [HA duplicate]"
            } else {
                ""
            };
            w.note(Some(task), || {
                if self.sc.group.is_none() {
                    format!(
                        "delivery starts: {:?} of occurrence {occ} ({} {}){dup}",
                        kind, self.sc.occs[occ].alert, self.sc.occs[occ].instance,
                    )
                } else {
                    let list: Vec<String> = alerts
                        .iter()
                        .map(|(o, k)| format!("{k:?} {o} ({})", self.sc.occs[*o].instance))
                        .collect();
                    format!(
                        "delivery starts: group {} of {}{dup}",
                        self.sc.occs[occ].alert,
                        list.join(", ")
                    )
                }
            });
            now
        };
        let (tx, rx) = mpsc::channel();
        let world = self.world.clone();
        let to_ctrl = self.to_ctrl.clone();
        let skew = self.sc.skews[replica];
        let req = if self.sc.group.is_none() {
            request(scenario::body(&self.sc.occs[occ], kind))
        } else {
            request(scenario::group_body(&self.sc.occs, &alerts))
        };
        let join = std::thread::Builder::new()
            .name(format!("sim-d{task}"))
            .spawn(move || {
                let platform = SimPlatform {
                    world,
                    task,
                    skew,
                    link: Some(Link {
                        to_ctrl: to_ctrl.clone(),
                        from_ctrl: rx,
                    }),
                };
                let first = platform.link.as_ref().map(|l| l.from_ctrl.recv());
                let y = match first {
                    Some(Ok(Resume::Go)) => {
                        match catch_unwind(AssertUnwindSafe(|| {
                            remediator::app::handle(&platform, req)
                        })) {
                            Ok(resp) => Yield::Done(resp),
                            Err(p) if p.is::<CrashToken>() => Yield::Crashed,
                            Err(p) => Yield::Panicked(
                                LAST_PANIC
                                    .with(|l| l.borrow_mut().take())
                                    .or_else(|| p.downcast_ref::<String>().cloned())
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_else(|| "panic".into()),
                            ),
                        }
                    }
                    _ => Yield::Crashed,
                };
                let _ = to_ctrl.send((task, y));
            })
            .expect("spawn a delivery thread");
        self.tasks.push(TaskCtl {
            tx,
            state: TState::Waiting(now),
            join: Some(join),
            stream,
        });
        self.deliveries.push(DeliveryRec {
            task,
            occ,
            kind,
            replica,
            start: now,
            end: None,
            status: None,
            outcome: String::new(),
            alerts: alerts
                .iter()
                .map(|&(occ, kind)| AlertRec {
                    occ,
                    kind,
                    outcome: String::new(),
                    flags_done: vec![],
                    rollouts_done: vec![],
                    failed_for_good: false,
                })
                .collect(),
            crashed: false,
            panicked: None,
        });
        task
    }

    fn pick_replica(&self, not: Option<usize>) -> usize {
        let n = self.sc.skews.len();
        let mut w = lock(&self.world);
        loop {
            let r = w.rng.usize(0..n);
            if Some(r) != not {
                return r;
            }
        }
    }

    /// Start due attempts, apply hand changes, and time out attempts Alertmanager gave up on.
    fn model_events(&mut self) {
        let now = self.now();
        let due: Vec<(i64, &'static str)> =
            self.hand.iter().filter(|h| h.0 <= now).cloned().collect();
        self.hand.retain(|h| h.0 > now);
        for (_, flag) in due {
            lock(&self.world).human_flip(flag);
        }
        let due: Vec<(i64, &'static str, u8)> = self
            .hand_rollout
            .iter()
            .filter(|h| h.0 <= now)
            .cloned()
            .collect();
        self.hand_rollout.retain(|h| h.0 > now);
        for (_, flag, to) in due {
            if let Some(id) = scenario::rollout_strategy(flag) {
                lock(&self.world).human_rollout(flag, id, to);
            }
        }
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].at <= now {
                let p = self.pending.remove(i);
                let alerts = match p.peer_of {
                    Some(s) => self.peer_content(s),
                    None => p.alerts,
                };
                if !alerts.is_empty() {
                    self.spawn(alerts, p.stream, p.replica);
                }
            } else {
                i += 1;
            }
        }
        for s in 0..self.streams.len() {
            if let Some((task, started, deadline)) = self.streams[s].inflight {
                if deadline <= now {
                    self.streams[s].inflight = None;
                    self.streams[s]
                        .answers
                        .push((now, 0, "webhook timeout".into()));
                    self.tasks[task].stream = None;
                    self.failure(s, started);
                }
            }
            let st = &self.streams[s];
            if st.done || st.inflight.is_some() {
                continue;
            }
            let Some(next) = st.next else { continue };
            if next > now {
                continue;
            }
            let alerts = if st.members.is_empty() {
                if st.kind == Kind::Firing && now >= st.end {
                    self.streams[s].done = true;
                    continue;
                }
                vec![(st.occ, st.kind)]
            } else {
                match self.group_content(s) {
                    Some(a) => a,
                    None => continue,
                }
            };
            let replica = self.pick_replica(None);
            self.streams[s].sent = alerts.clone();
            let task = self.spawn(alerts.clone(), Some(s), replica);
            self.streams[s].inflight = Some((task, now, now + AM_TIMEOUT_MS));
            self.streams[s].next = None;
            if self.sc.ha_dup > 0.0 && self.rng_f64() < self.sc.ha_dup {
                let r2 = self.pick_replica(Some(replica));
                let (at, peer_of) = {
                    let mut w = lock(&self.world);
                    if self.sc.group.is_some() && w.rng.f64() < 0.3 {
                        // Gossip lagged: the peer flushes the group itself, seconds later.
                        (now + w.rng.i64(100..=15_000), Some(s))
                    } else {
                        // Half the duplicates arrive at the very same instant.
                        (now + if w.rng.bool() { 0 } else { w.rng.i64(0..=30) }, None)
                    }
                };
                self.pending.push(Pending {
                    at,
                    peer_of,
                    alerts,
                    stream: None,
                    replica: r2,
                });
            }
        }
    }

    /// What a group's notification carries now: its firing members, and its resolved
    /// ones not yet answered 2xx (a resolved one whose labels fire again under a new
    /// occurrence is replaced by it, as Alertmanager keeps one alert per label set),
    /// in a seeded order, sometimes one of them twice. `None`: nothing to send now
    /// (the next change is scheduled, or the stream is done).
    fn group_content(&mut self, s: usize) -> Option<Vec<(usize, Kind)>> {
        let now = self.now();
        let g = self.sc.group.clone().expect("a group stream");
        let occs = &self.sc.occs;
        let st = &mut self.streams[s];
        let firing: Vec<usize> = st
            .members
            .iter()
            .copied()
            .filter(|&i| occs[i].fire_at <= now && now < occs[i].resolve_at)
            .collect();
        for &i in &st.members {
            let replaced = occs[i].resolve_at <= now
                && firing
                    .iter()
                    .any(|&f| f != i && occs[f].fingerprint == occs[i].fingerprint);
            if replaced && !st.resolved_ok.contains(&i) && !st.dropped.contains(&i) {
                st.dropped.push(i);
            }
        }
        let resolved: Vec<usize> = st
            .members
            .iter()
            .copied()
            .filter(|&i| {
                occs[i].resolve_at <= now
                    && !st.resolved_ok.contains(&i)
                    && !st.dropped.contains(&i)
            })
            .collect();
        if firing.is_empty() && resolved.is_empty() {
            // Nothing fires now: wait for the next member to fire, or finish.
            let upcoming = st
                .members
                .iter()
                .map(|&i| occs[i].fire_at)
                .filter(|&t| t > now)
                .min();
            match upcoming {
                Some(t) => st.next = Some(t + g.wait_ms),
                None => st.done = true,
            }
            return None;
        }
        let mut alerts: Vec<(usize, Kind)> = firing
            .iter()
            .map(|&i| (i, Kind::Firing))
            .chain(resolved.iter().map(|&i| (i, Kind::Resolved)))
            .collect();
        let mut w = lock(&self.world);
        w.rng.shuffle(&mut alerts);
        if g.dup > 0.0 && w.rng.f64() < g.dup {
            let a = alerts[w.rng.usize(0..alerts.len())];
            let at = w.rng.usize(0..=alerts.len());
            alerts.insert(at, a);
        }
        Some(alerts)
    }

    /// What the HA peer's own flush of group stream `s` carries now (it shares the
    /// alerts, not the notification log): firing members and resolved ones not yet
    /// answered 2xx, in a seeded order.
    fn peer_content(&mut self, s: usize) -> Vec<(usize, Kind)> {
        let now = self.now();
        let occs = &self.sc.occs;
        let st = &self.streams[s];
        let mut alerts: Vec<(usize, Kind)> = st
            .members
            .iter()
            .filter_map(|&i| {
                if occs[i].fire_at <= now && now < occs[i].resolve_at {
                    Some((i, Kind::Firing))
                } else if occs[i].resolve_at <= now
                    && !st.resolved_ok.contains(&i)
                    && !st.dropped.contains(&i)
                {
                    Some((i, Kind::Resolved))
                } else {
                    None
                }
            })
            .collect();
        lock(&self.world).rng.shuffle(&mut alerts);
        alerts
    }

    /// After a group's notification was answered (2xx, or 4xx: dropped): the next one
    /// at the repeat interval, or a group interval after the next change (an alert
    /// firing or resolving), whichever comes first.
    fn group_next(&mut self, s: usize) {
        let now = self.now();
        let g = self.sc.group.clone().expect("a group stream");
        let occs = &self.sc.occs;
        let st = &mut self.streams[s];
        let pending_resolve = st.members.iter().any(|&i| {
            occs[i].resolve_at <= now && !st.resolved_ok.contains(&i) && !st.dropped.contains(&i)
        });
        let change = st
            .members
            .iter()
            .flat_map(|&i| [occs[i].fire_at, occs[i].resolve_at])
            .filter(|&t| t > now)
            .min();
        let firing = st
            .members
            .iter()
            .any(|&i| occs[i].fire_at <= now && now < occs[i].resolve_at);
        let mut next = change.map(|t| t + g.interval_ms);
        if firing {
            next = Some(next.map_or(now + self.sc.repeat_ms, |n| n.min(now + self.sc.repeat_ms)));
        }
        if pending_resolve {
            next = Some(now + g.interval_ms);
        }
        match next {
            Some(n) => st.next = Some(n),
            None => st.done = true,
        }
    }

    fn failure(&mut self, s: usize, attempt_started: i64) {
        let now = self.now();
        let fault_end = self.sc.faults.until_ms;
        let st = &mut self.streams[s];
        let since = *st.failing_since.get_or_insert(attempt_started);
        if now - since.max(fault_end) > invariants::LIVENESS_BOUND_MS {
            st.liveness_violation = Some(format!(
                "{:?} stream of occurrence {} got no 2xx from {} ms to {} ms ({} s after the last fault at {} ms); last answers: {}",
                st.kind,
                st.occ,
                since - crate::world::EPOCH_MS,
                now - crate::world::EPOCH_MS,
                (now - since.max(fault_end)) / 1000,
                fault_end.max(crate::world::EPOCH_MS) - crate::world::EPOCH_MS,
                st.answers
                    .iter()
                    .rev()
                    .take(4)
                    .map(|(t, c, o)| format!("{} ms {c} {o}", t - crate::world::EPOCH_MS))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            st.done = true;
            return;
        }
        st.next = Some(now + st.backoff);
        st.backoff = (st.backoff * 2).min(16_000);
    }

    fn finished(&mut self, task: usize, y: Yield) {
        let now = self.now();
        self.tasks[task].state = TState::Finished;
        if let Some(j) = self.tasks[task].join.take() {
            let _ = j.join();
        }
        let d = &mut self.deliveries[task];
        d.end = Some(now);
        match y {
            Yield::Done(resp) => {
                let status = resp.status().as_u16();
                let v: serde_json::Value =
                    serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
                d.status = Some(status);
                for (i, a) in d.alerts.iter_mut().enumerate() {
                    // One problem per alert, in the body's order (none is rejected).
                    let p = &v["problems"][i];
                    a.outcome = p["outcome"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| v["error"].as_str().map(|e| format!("error: {e}")))
                        .unwrap_or_default();
                    let done = |action: &str| -> Vec<String> {
                        p["actions"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter(|x| x["outcome"] == "done" && x["action"] == action)
                                    .filter_map(|x| x["flag"].as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    a.flags_done = done("featuretoggle");
                    a.rollouts_done = done("rollout");
                    a.failed_for_good = a.outcome == "failed"
                        && p["actions"].as_array().is_some_and(|a| {
                            a.iter()
                                .filter(|x| x["outcome"] == "failed")
                                .all(|x| x["retryable"] == false)
                        });
                }
                d.outcome = d.alerts[0].outcome.clone();
            }
            Yield::Crashed => d.crashed = true,
            Yield::Panicked(m) => d.panicked = Some(m),
            Yield::Wait(_) => unreachable!("handled by the caller"),
        }
        let (status, outcome, start) = (d.status, d.outcome.clone(), d.start);
        {
            let mut w = lock(&self.world);
            w.note(Some(task), || {
                format!("delivery ends: {status:?} {outcome}")
            });
        }
        let Some(s) = self.tasks[task].stream.take() else {
            return;
        };
        if self.streams[s].inflight.map(|f| f.0) != Some(task) {
            return;
        }
        self.streams[s].inflight = None;
        self.streams[s]
            .answers
            .push((now, status.unwrap_or(0), outcome.clone()));
        match status {
            Some(200..=299) => {
                let st = &mut self.streams[s];
                st.failing_since = None;
                st.backoff = 1000;
                st.ok_at.push(now);
                if !st.members.is_empty() {
                    for (i, k) in std::mem::take(&mut st.sent) {
                        if k == Kind::Resolved && !st.resolved_ok.contains(&i) {
                            st.resolved_ok.push(i);
                        }
                    }
                    self.group_next(s);
                    return;
                }
                match st.kind {
                    Kind::Firing => st.next = Some(now + self.sc.repeat_ms),
                    Kind::Resolved => st.done = true,
                }
            }
            Some(400..=499) => {
                // Dropped by Alertmanager (I2 reports it).
                if !self.streams[s].members.is_empty() {
                    for (i, k) in std::mem::take(&mut self.streams[s].sent) {
                        if k == Kind::Resolved && !self.streams[s].dropped.contains(&i) {
                            self.streams[s].dropped.push(i);
                        }
                    }
                    self.group_next(s);
                    return;
                }
                let st = &mut self.streams[s];
                match st.kind {
                    Kind::Firing => st.next = Some(now + self.sc.repeat_ms),
                    Kind::Resolved => st.done = true,
                }
            }
            _ => self.failure(s, start),
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&t| matches!(self.tasks[t].state, TState::Waiting(_)))
            .collect()
    }

    /// Unwind every live delivery (end of an aborted schedule).
    fn abort_all(&mut self) {
        for t in self.live() {
            let _ = self.tasks[t].tx.send(Resume::Crash);
            match self.from_threads.recv_timeout(THREAD_WALL_LIMIT) {
                Ok((task, Yield::Wait(_))) => {
                    self.harness
                        .push(format!("delivery d{task} kept running after a crash"));
                }
                Ok((task, y)) => self.finished(task, y),
                Err(_) => {
                    self.harness.push(format!("delivery d{t} did not unwind"));
                    self.tasks[t].state = TState::Finished;
                }
            }
        }
    }

    fn next_event(&self) -> Option<i64> {
        let tasks = self.tasks.iter().filter_map(|t| match t.state {
            TState::Waiting(at) => Some(at),
            TState::Finished => None,
        });
        let streams = self
            .streams
            .iter()
            .filter(|s| !s.done)
            .flat_map(|s| [s.next, s.inflight.map(|f| f.2)].into_iter().flatten());
        let pending = self.pending.iter().map(|p| p.at);
        let hand = self.hand.iter().map(|h| h.0);
        let hand_rollout = self.hand_rollout.iter().map(|h| h.0);
        tasks
            .chain(streams)
            .chain(pending)
            .chain(hand)
            .chain(hand_rollout)
            .min()
    }

    fn quiescent(&self) -> bool {
        self.live().is_empty() && self.pending.is_empty() && self.streams.iter().all(|s| s.done)
    }

    fn run(&mut self) -> bool {
        let horizon = self.sc.occs.iter().map(|o| o.resolve_at).max().unwrap_or(0) + 2 * 3_600_000;
        loop {
            self.model_events();
            if lock(&self.world).fatal.is_some() {
                return false;
            }
            if self.quiescent() {
                return true;
            }
            let now = self.now();
            let ready: Vec<usize> = (0..self.tasks.len())
                .filter(|&t| matches!(self.tasks[t].state, TState::Waiting(at) if at <= now))
                .collect();
            if ready.is_empty() {
                match self.next_event() {
                    Some(t) if t > now => {
                        if t > horizon {
                            self.harness.push(format!(
                                "no quiescence: activity continues past {} ms of simulated time",
                                horizon - crate::world::EPOCH_MS
                            ));
                            return false;
                        }
                        lock(&self.world).now = t;
                        continue;
                    }
                    Some(_) => continue,
                    None => {
                        self.harness.push(
                            "deadlock: no runnable delivery, no sleeper, yet not quiescent".into(),
                        );
                        return false;
                    }
                }
            }
            self.steps += 1;
            if self.steps > STEP_BUDGET {
                self.harness.push(format!(
                    "step budget of {STEP_BUDGET} scheduling points exceeded"
                ));
                return false;
            }
            let (pick, crash) = {
                let mut w = lock(&self.world);
                let pick = ready[w.rng.usize(0..ready.len())];
                let p = w.faults.crash;
                let crash = p > 0.0 && w.now < w.faults.until_ms && w.rng.f64() < p;
                if crash {
                    let now = w.now;
                    w.tasks[pick].crashed_at = Some(now);
                    if w.tasks[pick].in_set_many {
                        w.set_many_cut += 1;
                    }
                    w.note(Some(pick), || "CRASH (injected)".into());
                }
                (pick, crash)
            };
            let msg = if crash { Resume::Crash } else { Resume::Go };
            if self.tasks[pick].tx.send(msg).is_err() {
                self.harness.push(format!("delivery d{pick} vanished"));
                return false;
            }
            match self.from_threads.recv_timeout(THREAD_WALL_LIMIT) {
                Ok((task, Yield::Wait(at))) => self.tasks[task].state = TState::Waiting(at),
                Ok((task, y)) => self.finished(task, y),
                Err(_) => {
                    self.harness.push(format!(
                        "delivery d{pick} ran {THREAD_WALL_LIMIT:?} of wall time without reaching a scheduling point"
                    ));
                    self.tasks[pick].state = TState::Finished;
                    return false;
                }
            }
        }
    }
}

/// Run one schedule, fully determined by (seed, store).
pub fn run_schedule(seed: u64, store: Store, trace: bool) -> Outcome {
    install_panic_hook();
    let mut world = World::new(store, seed);
    let mut sc = if seed & BUDGET_BIT != 0 && seed & ROLLOUT_BIT == 0 {
        scenario::draw_budget(&mut world.rng)
    } else {
        scenario::draw(&mut world.rng, seed & ROLLOUT_BIT != 0)
    };
    for (k, v) in &sc.vars {
        world.vars.insert(k.to_string(), v.clone());
    }
    if seed & GROUP_BIT != 0 {
        scenario::group(&mut world.rng, &mut sc);
    }
    world.rules = sc.rules.clone();
    world.rules_later = sc.rules_later.clone();
    world.faults = sc.faults.clone();
    world.flags = INITIAL_FLAGS
        .iter()
        .map(|(f, on)| (f.to_string(), *on))
        .collect();
    for (flag, id, title, percent) in &sc.strategies {
        world
            .strategies
            .entry(flag.to_string())
            .or_default()
            .push(Strategy {
                id: id.to_string(),
                title: title.to_string(),
                rollout: percent.to_string(),
            });
    }
    if trace {
        world.trace = Some(vec![format!(
            "schedule seed {seed} store {}: scenario {}, skews {:?}, repeat {} ms, HA dup {:.2}, hand {:?}, rules change {:?}, faults {:?}",
            store.name(),
            sc.name,
            sc.skews,
            sc.repeat_ms,
            sc.ha_dup,
            sc.hand.iter().map(|h| (h.0 - crate::world::EPOCH_MS, h.1)).collect::<Vec<_>>(),
            sc.rules_later.as_ref().map(|r| r.0 - crate::world::EPOCH_MS),
            sc.faults
        )]);
        for (i, o) in sc.occs.iter().enumerate() {
            let line = format!(
                "occurrence {i}: {} instance={} fingerprint={} startsAt={} fires at {} ms, resolves at {} ms",
                o.alert,
                o.instance,
                o.fingerprint,
                o.starts_at,
                o.fire_at - crate::world::EPOCH_MS,
                o.resolve_at - crate::world::EPOCH_MS
            );
            world.trace.as_mut().expect("tracing").push(line);
        }
        if let Some(g) = &sc.group {
            let line = format!(
                "grouped: group_wait {} ms, group_interval {} ms, same alert twice {:.2}, streams {:?}",
                g.wait_ms,
                g.interval_ms,
                g.dup,
                sc.streams.iter().map(|p| p.members.clone()).collect::<Vec<_>>()
            );
            world.trace.as_mut().expect("tracing").push(line);
        }
        if !sc.strategies.is_empty() {
            let line = format!(
                "rollouts: strategies {:?}, hand changes {:?}",
                sc.strategies,
                sc.hand_rollout
                    .iter()
                    .map(|h| (h.0 - crate::world::EPOCH_MS, h.1, h.2))
                    .collect::<Vec<_>>()
            );
            world.trace.as_mut().expect("tracing").push(line);
        }
    }
    let streams = sc
        .streams
        .iter()
        .map(|p| StreamRec {
            occ: p.occ,
            kind: p.kind,
            start: p.start,
            end: p.end,
            next: Some(p.start),
            inflight: None,
            failing_since: None,
            backoff: 1000,
            ok_at: vec![],
            done: false,
            answers: vec![],
            liveness_violation: None,
            members: p.members.clone(),
            resolved_ok: vec![],
            dropped: vec![],
            sent: vec![],
        })
        .collect();
    let (to_ctrl, from_threads) = mpsc::channel();
    let mut sim = Sim {
        world: Arc::new(Mutex::new(world)),
        hand: sc.hand.clone(),
        hand_rollout: sc.hand_rollout.clone(),
        sc,
        tasks: vec![],
        to_ctrl,
        from_threads,
        deliveries: vec![],
        streams,
        pending: vec![],
        harness: vec![],
        steps: 0,
    };
    let completed = sim.run();
    if !completed {
        sim.abort_all();
    }
    let mut w = lock(&sim.world);
    let observed = Observed {
        seed,
        store,
        scenario: sim.sc.clone(),
        deliveries: std::mem::take(&mut sim.deliveries),
        streams: std::mem::take(&mut sim.streams),
        flag_log: std::mem::take(&mut w.flag_log),
        rollout_log: std::mem::take(&mut w.rollout_log),
        rollout_reads: std::mem::take(&mut w.rollout_reads),
        scale_log: std::mem::take(&mut w.scale_log),
        tasks: std::mem::take(&mut w.tasks),
        final_flags: w.flags.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        final_rollouts: w
            .strategies
            .iter()
            .flat_map(|(f, v)| {
                v.iter()
                    .map(|s| (f.clone(), s.id.clone(), s.rollout.parse().ok()))
            })
            .collect(),
        keys: w.kv.len(),
        fatal: w.fatal.clone(),
        harness: std::mem::take(&mut sim.harness),
        aborted: !completed,
        steps: sim.steps,
        cas_races: w.cas_races,
        set_many: (w.set_many_calls, w.set_many_cut),
    };
    let trace = w.trace.take();
    drop(w);
    let (violations, ambiguous) = invariants::check_all(&observed);
    Outcome {
        violations,
        ambiguous,
        keys: observed.keys,
        deliveries: observed.deliveries.len(),
        steps: observed.steps,
        scenario: observed.scenario.name,
        trace,
        observed,
    }
}
