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
    pub occ: usize,
    pub kind: Kind,
    pub replica: usize,
    pub start: i64,
    pub end: Option<i64>,
    /// HTTP status, or None: crashed / never finished.
    pub status: Option<u16>,
    pub outcome: String,
    /// Flags the report says were turned (on/off action outcome "done").
    pub flags_done: Vec<String>,
    /// Flags whose rollout the report says was set (rollout action outcome "done").
    pub rollouts_done: Vec<String>,
    /// Outcome "failed", and every failed action was refused for good (not retryable).
    pub failed_for_good: bool,
    pub crashed: bool,
    pub panicked: Option<String>,
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
    occ: usize,
    kind: Kind,
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

    fn spawn(&mut self, occ: usize, kind: Kind, stream: Option<usize>, replica: usize) -> usize {
        let task = self.tasks.len();
        let now = {
            let mut w = lock(&self.world);
            w.tasks.push(TaskInfo {
                replica,
                occ,
                crashed_at: None,
                kv_faults: vec![],
                uncertain: vec![],
            });
            let now = w.now;
            w.note(Some(task), || {
                format!(
                    "delivery starts: {:?} of occurrence {occ} ({} {}){}",
                    kind,
                    self.sc.occs[occ].alert,
                    self.sc.occs[occ].instance,
                    if stream.is_none() {
                        " [HA duplicate]"
                    } else {
                        ""
                    }
                )
            });
            now
        };
        let (tx, rx) = mpsc::channel();
        let world = self.world.clone();
        let to_ctrl = self.to_ctrl.clone();
        let skew = self.sc.skews[replica];
        let req = request(scenario::body(&self.sc.occs[occ], kind));
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
            flags_done: vec![],
            rollouts_done: vec![],
            failed_for_good: false,
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
                self.spawn(p.occ, p.kind, p.stream, p.replica);
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
            if st.kind == Kind::Firing && now >= st.end {
                self.streams[s].done = true;
                continue;
            }
            let occ = st.occ;
            let kind = st.kind;
            let replica = self.pick_replica(None);
            let task = self.spawn(occ, kind, Some(s), replica);
            self.streams[s].inflight = Some((task, now, now + AM_TIMEOUT_MS));
            self.streams[s].next = None;
            if self.sc.ha_dup > 0.0 && self.rng_f64() < self.sc.ha_dup {
                let r2 = self.pick_replica(Some(replica));
                let at = {
                    let mut w = lock(&self.world);
                    // Half the duplicates arrive at the very same instant.
                    now + if w.rng.bool() { 0 } else { w.rng.i64(0..=30) }
                };
                self.pending.push(Pending {
                    at,
                    occ,
                    kind,
                    stream: None,
                    replica: r2,
                });
            }
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
                let p0 = &v["problems"][0];
                d.status = Some(status);
                d.outcome = p0["outcome"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| v["error"].as_str().map(|e| format!("error: {e}")))
                    .unwrap_or_default();
                let done = |action: &str| -> Vec<String> {
                    p0["actions"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter(|x| x["outcome"] == "done" && x["action"] == action)
                                .filter_map(|x| x["flag"].as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                d.flags_done = done("featuretoggle");
                d.rollouts_done = done("rollout");
                d.failed_for_good = d.outcome == "failed"
                    && p0["actions"].as_array().is_some_and(|a| {
                        a.iter()
                            .filter(|x| x["outcome"] == "failed")
                            .all(|x| x["retryable"] == false)
                    });
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
                match st.kind {
                    Kind::Firing => st.next = Some(now + self.sc.repeat_ms),
                    Kind::Resolved => st.done = true,
                }
            }
            Some(400..=499) => {
                // Dropped by Alertmanager (I2 reports it).
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
    let sc = scenario::draw(&mut world.rng, seed & ROLLOUT_BIT != 0);
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
