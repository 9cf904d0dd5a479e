//! Many schedules, on one or more threads: counts per invariant family, examples
//! with their replay commands, speed, and key counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sched::{run_schedule, BUDGET_BIT, GROUP_BIT, ROLLOUT_BIT};
use crate::world::Store;

pub const FAMILIES: [&str; 8] = ["I1", "I2", "I3", "I4", "I5", "I6", "I7", "harness"];

#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// Schedules per store mode.
    pub schedules: u64,
    pub seed: u64,
    pub stores: Vec<Store>,
    pub jobs: usize,
    /// Examples kept per (family, store).
    pub examples: usize,
    /// Stop early after this much wall time (None: run all).
    pub time_limit: Option<Duration>,
    /// Every schedule from the budget family ([`BUDGET_BIT`]).
    pub budget_only: bool,
}

/// One example violation.
#[derive(Debug, Clone)]
pub struct Example {
    pub seed: u64,
    pub store: Store,
    pub scenario: &'static str,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct PerStore {
    pub schedules: u64,
    /// family -> schedules with at least one violation of it.
    pub failing: BTreeMap<&'static str, u64>,
    pub examples: BTreeMap<&'static str, Vec<(u64, Example)>>,
    /// scenario -> (schedules, schedules with any violation)
    pub scenarios: BTreeMap<&'static str, (u64, u64)>,
    pub ambiguous: u64,
    pub deliveries: u64,
    pub steps: u64,
    pub keys_total: u64,
    pub keys_max: usize,
    pub cas_races: u64,
    /// `kv_set_many` calls, and those a crash or store fault cut short.
    pub set_many: (u64, u64),
}

#[derive(Debug, Default)]
pub struct Summary {
    pub per_store: BTreeMap<&'static str, PerStore>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn schedules(&self) -> u64 {
        self.per_store.values().map(|p| p.schedules).sum()
    }

    pub fn violating_schedules(&self) -> u64 {
        self.per_store
            .values()
            .flat_map(|p| p.failing.values())
            .sum()
    }

    pub fn print(&self) {
        let n = self.schedules();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        println!(
            "ran {n} schedules in {:.1} s: {:.0} schedules/s",
            secs,
            n as f64 / secs
        );
        for (store, p) in &self.per_store {
            println!(
                "\n== store {store}: {} schedules, {} deliveries, {} scheduling points, {} ambiguous duplicate scale effects (I1, not violations)",
                p.schedules, p.deliveries, p.steps, p.ambiguous
            );
            println!(
                "   compare-and-swaps raced (key changed between current and swap): {}",
                p.cas_races
            );
            println!(
                "   set-many writes: {}, cut short by a crash or store fault: {}",
                p.set_many.0, p.set_many.1
            );
            println!(
                "   keys at the end of a schedule: mean {:.1}, max {} ({:.2} keys per delivery)",
                p.keys_total as f64 / p.schedules.max(1) as f64,
                p.keys_max,
                p.keys_total as f64 / p.deliveries.max(1) as f64
            );
            for f in FAMILIES {
                let c = p.failing.get(f).copied().unwrap_or(0);
                println!("   {f:8} {c:7} schedules violating");
            }
            let sc: Vec<String> = p
                .scenarios
                .iter()
                .map(|(k, (n, bad))| format!("{k} {bad}/{n}"))
                .collect();
            println!("   by scenario (violating/run): {}", sc.join(", "));
            for (f, ex) in &p.examples {
                for (_, e) in ex {
                    println!("\n   [{f}] seed {} ({}): {}", e.seed, e.scenario, e.detail);
                    println!("   replay: {}", replay_command(e.seed, e.store));
                }
            }
        }
    }
}

pub fn replay_command(seed: u64, store: Store) -> String {
    format!(
        "cargo run -p remediator-sim --profile sim -- --replay {seed} --store {}",
        store.name()
    )
}

/// The seed of schedule `i` of a campaign; every third one draws from the rollout
/// family ([`ROLLOUT_BIT`]), every fifth of the others from the budget family
/// ([`BUDGET_BIT`]), every second one has Alertmanager send groups ([`GROUP_BIT`]).
pub fn schedule_seed(campaign: u64, i: u64) -> u64 {
    let family = if i % 3 == 2 {
        ROLLOUT_BIT
    } else if i % 5 == 4 {
        BUDGET_BIT
    } else {
        0
    };
    let group = if i % 2 == 1 { GROUP_BIT } else { 0 };
    classic_seed(campaign, i) | family | group
}

fn classic_seed(campaign: u64, i: u64) -> u64 {
    let mut z = campaign
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i.wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & ((1 << 53) - 1)
}

pub fn campaign(cfg: &CampaignConfig, progress: Option<&(dyn Fn(u64, u64) + Sync)>) -> Summary {
    let started = Instant::now();
    let work: Vec<(Store, u64)> = (0..cfg.schedules)
        .flat_map(|i| cfg.stores.iter().map(move |s| (*s, i)))
        .collect();
    let next = AtomicU64::new(0);
    let summary = Mutex::new(Summary::default());
    let total = work.len() as u64;
    std::thread::scope(|scope| {
        for _ in 0..cfg.jobs.max(1) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                if cfg.time_limit.is_some_and(|l| started.elapsed() > l) {
                    break;
                }
                let (store, i) = work[k as usize];
                let seed = if cfg.budget_only {
                    classic_seed(cfg.seed, i) | BUDGET_BIT | if i % 2 == 1 { GROUP_BIT } else { 0 }
                } else {
                    schedule_seed(cfg.seed, i)
                };
                let out = run_schedule(seed, store, false);
                let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
                let p = s.per_store.entry(store.name()).or_default();
                p.schedules += 1;
                p.deliveries += out.deliveries as u64;
                p.steps += out.steps;
                p.cas_races += out.observed.cas_races;
                p.set_many.0 += out.observed.set_many.0;
                p.set_many.1 += out.observed.set_many.1;
                p.ambiguous += out.ambiguous as u64;
                p.keys_total += out.keys as u64;
                p.keys_max = p.keys_max.max(out.keys);
                let sc = p.scenarios.entry(out.scenario).or_default();
                sc.0 += 1;
                if !out.violations.is_empty() {
                    sc.1 += 1;
                }
                let mut seen: Vec<&'static str> = vec![];
                for v in &out.violations {
                    if seen.contains(&v.family) {
                        continue;
                    }
                    seen.push(v.family);
                    *p.failing.entry(v.family).or_default() += 1;
                    let ex = p.examples.entry(v.family).or_default();
                    ex.push((
                        i,
                        Example {
                            seed,
                            store,
                            scenario: out.scenario,
                            detail: v.detail.clone(),
                        },
                    ));
                    // Keep the examples of the lowest schedule indices: deterministic
                    // whatever the thread interleaving.
                    ex.sort_by_key(|e| e.0);
                    ex.truncate(cfg.examples);
                }
                drop(s);
                if let Some(f) = progress {
                    f(k + 1, total);
                }
            });
        }
    });
    let mut s = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    s.elapsed = started.elapsed();
    s
}
