//! remediator-sim: long campaigns, single-schedule replays with a trace, and the
//! key-count growth mode. See `--help`.

use std::process::ExitCode;
use std::time::Duration;

use remediator_sim::campaign::{campaign, replay_command, CampaignConfig};
use remediator_sim::{growth, run_schedule, Store};

const HELP: &str = "remediator-sim: deterministic concurrency and fault simulation of remediator

  --schedules N         schedules per store mode (default 10000)
  --seed N              campaign seed (default 1)
  --store M             sqlite | redis | both (default both)
  --jobs N              worker threads (default 2)
  --examples N          example violations printed per invariant family and store (default 3)
  --time-limit S        stop starting schedules after S seconds of wall time
  --budget-only         every schedule from the budget family (blast-radius budget, I7)
  --replay SEED         run exactly one schedule with a full trace (every platform call
                        per replica, in order) and print its violations (needs --store sqlite|redis)
  --growth-days D       growth mode: D simulated days, one replica, no faults
  --per-day N           occurrences per simulated day in growth mode (default 1000)

Exit status: 0 without violations, 1 with, 2 on bad arguments.";

fn parse<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
    v.ok_or(format!("{flag} needs a value"))?
        .parse()
        .map_err(|_| format!("{flag}: not a valid value"))
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut args = std::env::args().skip(1);
    let mut schedules = 10_000u64;
    let mut seed = 1u64;
    let mut stores = vec![Store::Sqlite, Store::Redis];
    let mut store_given = false;
    let mut jobs = 2usize;
    let mut examples = 3usize;
    let mut time_limit = None;
    let mut replay: Option<u64> = None;
    let mut growth_days: Option<u64> = None;
    let mut per_day = 1000u64;
    let mut budget_only = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--schedules" => schedules = parse(&a, args.next())?,
            "--seed" => seed = parse(&a, args.next())?,
            "--jobs" => jobs = parse(&a, args.next())?,
            "--examples" => examples = parse(&a, args.next())?,
            "--time-limit" => time_limit = Some(Duration::from_secs(parse(&a, args.next())?)),
            "--replay" => replay = Some(parse(&a, args.next())?),
            "--growth-days" => growth_days = Some(parse(&a, args.next())?),
            "--per-day" => per_day = parse(&a, args.next())?,
            "--budget-only" => budget_only = true,
            "--store" => {
                store_given = true;
                stores = match args.next().as_deref() {
                    Some("sqlite") => vec![Store::Sqlite],
                    Some("redis") => vec![Store::Redis],
                    Some("both") => vec![Store::Sqlite, Store::Redis],
                    _ => return Err("--store takes sqlite, redis or both".into()),
                }
            }
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(true);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Some(seed) = replay {
        if !store_given || stores.len() != 1 {
            return Err("--replay needs --store sqlite or --store redis".into());
        }
        return Ok(replay_one(seed, stores[0]));
    }
    if let Some(days) = growth_days {
        let store = if store_given {
            stores[0]
        } else {
            Store::Sqlite
        };
        println!(
            "growth: {days} days x {per_day} occurrences/day, one replica, no faults, store {}",
            store.name()
        );
        println!(
            "{:>5} {:>8} {:>6} {:>7}  keys by prefix",
            "day", "keys", "live", "non2xx"
        );
        let g = growth::run(days, per_day, store, seed, |r| {
            let p: Vec<String> = r
                .by_prefix
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!(
                "{:>5} {:>8} {:>6} {:>7}  {}",
                r.day,
                r.keys,
                r.live,
                r.non_2xx,
                p.join(" ")
            );
        });
        return Ok(match g.verdict {
            None => {
                println!("I6: key count bounded");
                true
            }
            Some(v) => {
                println!("I6 VIOLATION: {v}");
                false
            }
        });
    }
    let cfg = CampaignConfig {
        schedules,
        seed,
        stores,
        jobs,
        examples,
        time_limit,
        budget_only,
    };
    let every = (schedules * cfg.stores.len() as u64 / 20).max(1);
    let started = std::time::Instant::now();
    let progress = move |done: u64, total: u64| {
        if done % every == 0 {
            eprintln!(
                "  {done}/{total} schedules, {:.0}/s",
                done as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        }
    };
    let s = campaign(&cfg, Some(&progress));
    s.print();
    let bad = s.violating_schedules();
    println!(
        "\n{} schedules, {bad} violations (schedule x family)",
        s.schedules()
    );
    Ok(bad == 0)
}

fn replay_one(seed: u64, store: Store) -> bool {
    let out = run_schedule(seed, store, true);
    for line in out.trace.iter().flatten() {
        println!("{line}");
    }
    println!("\n-- deliveries");
    for d in &out.observed.deliveries {
        println!(
            "d{} r{} {:?} occ {} start {} ms end {:?} status {:?} outcome {:?}{}{}{}",
            d.task,
            d.replica,
            d.kind,
            d.occ,
            d.start - remediator_sim::world::EPOCH_MS,
            d.end.map(|e| e - remediator_sim::world::EPOCH_MS),
            d.status,
            d.outcome,
            if d.crashed { " CRASHED" } else { "" },
            if d.alerts.len() > 1 {
                let list: Vec<String> = d
                    .alerts
                    .iter()
                    .map(|a| format!("{:?} occ {} {:?}", a.kind, a.occ, a.outcome))
                    .collect();
                format!(" group [{}]", list.join(", "))
            } else {
                String::new()
            },
            d.panicked
                .as_deref()
                .map(|p| format!(" PANIC {p}"))
                .unwrap_or_default()
        );
    }
    println!(
        "\nscenario {}, {} deliveries, {} scheduling points, {} keys at the end, {} ambiguous",
        out.scenario, out.deliveries, out.steps, out.keys, out.ambiguous
    );
    if out.violations.is_empty() {
        println!("no violations");
        return true;
    }
    for v in &out.violations {
        println!("[{}] {}", v.family, v.detail);
    }
    println!("replay: {}", replay_command(seed, store));
    false
}
