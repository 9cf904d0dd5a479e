//! Growth mode (I6 over time): one replica, no faults, simulated days passing with
//! occurrences firing, repeating and resolving; the key count is reported per day
//! so one can see whether it stays bounded by live occurrences plus a retention
//! window.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::scenario::{self, Kind, Occ, INITIAL_FLAGS, RULES_V1};
use crate::world::{lock, SimPlatform, Store, TaskInfo, World, EPOCH_MS, WEBHOOK_TOKEN};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone)]
pub struct DayRow {
    pub day: u64,
    pub keys: usize,
    /// Occurrences firing at the end of the day.
    pub live: usize,
    pub by_prefix: BTreeMap<String, usize>,
    pub non_2xx: u64,
}

#[derive(Debug, Clone)]
pub struct Growth {
    pub rows: Vec<DayRow>,
    /// None: bounded; Some: why not.
    pub verdict: Option<String>,
}

/// Run `days` simulated days of `per_day` occurrences each.
pub fn run(
    days: u64,
    per_day: u64,
    store: Store,
    seed: u64,
    mut each_day: impl FnMut(&DayRow),
) -> Growth {
    let mut world = World::new(store, seed);
    world.rules = RULES_V1.to_string();
    world.flags = INITIAL_FLAGS
        .iter()
        .map(|(f, on)| (f.to_string(), *on))
        .collect();
    let world = Arc::new(Mutex::new(world));
    let platform = SimPlatform {
        world: world.clone(),
        task: 0,
        skew: 0,
        link: None,
    };
    let alerts = [
        "HighFailureRate",
        "cpu_usage",
        "QueueBacklog",
        "SlowResponses",
    ];
    let mut rows = Vec::new();
    let mut seq = 0u64;
    for day in 0..days {
        let start = EPOCH_MS + day as i64 * DAY_MS;
        let spacing = DAY_MS / per_day.max(1) as i64;
        let mut events: Vec<(i64, usize, Kind)> = Vec::new();
        let mut occs: Vec<Occ> = Vec::new();
        for k in 0..per_day {
            let fire = start + k as i64 * spacing;
            let alert = alerts[(seq % alerts.len() as u64) as usize];
            seq += 1;
            let resolve = fire + 60_000;
            occs.push(Occ {
                alert,
                instance: format!("i{}", k % 25),
                fingerprint: format!("{:016x}", seq),
                starts_at: scenario::rfc3339(fire),
                fire_at: fire,
                resolve_at: resolve,
                flags: vec![],
                rollouts: vec![],
            });
            let i = occs.len() - 1;
            events.push((fire, i, Kind::Firing));
            events.push((fire + 30_000, i, Kind::Firing));
            events.push((resolve, i, Kind::Resolved));
        }
        events.sort_by_key(|e| e.0);
        let mut non_2xx = 0;
        for (at, i, kind) in events {
            {
                let mut w = lock(&world);
                w.now = w.now.max(at);
                w.tasks.clear();
                w.tasks.push(TaskInfo::default());
            }
            let req = http::Request::post("/alertmanager")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
                .body(scenario::body(&occs[i], kind))
                .expect("valid request");
            let resp = remediator::app::handle(&platform, req);
            if !resp.status().is_success() {
                non_2xx += 1;
            }
        }
        let w = lock(&world);
        let end = start + DAY_MS;
        let live = occs
            .iter()
            .filter(|o| o.fire_at < end && o.resolve_at >= end)
            .count();
        let mut by_prefix = BTreeMap::new();
        for k in w.kv.keys() {
            let p = k.split('/').next().unwrap_or("").to_string();
            *by_prefix.entry(p).or_insert(0) += 1;
        }
        let row = DayRow {
            day: day + 1,
            keys: w.kv.len(),
            live,
            by_prefix,
            non_2xx,
        };
        each_day(&row);
        rows.push(row);
    }
    let verdict = verdict(&rows, per_day);
    Growth { rows, verdict }
}

/// Bounded when, over the last two thirds of the run, the key count grows by less
/// than 2% of a day's occurrences per day (a retention window shorter than a third
/// of the run has filled by then).
fn verdict(rows: &[DayRow], per_day: u64) -> Option<String> {
    if rows.len() < 3 {
        return None;
    }
    let a = &rows[rows.len() / 3];
    let b = rows.last().expect("rows");
    let days = (b.day - a.day).max(1) as f64;
    let per = (b.keys as f64 - a.keys as f64) / days;
    (per > 0.02 * per_day as f64).then(|| {
        format!(
            "key count GROWS without bound: {} keys on day {} -> {} on day {} (+{per:.0} keys per day, with {} occurrences per day and at most {} live)",
            a.keys, a.day, b.keys, b.day, per_day, rows.iter().map(|r| r.live).max().unwrap_or(0)
        )
    })
}
