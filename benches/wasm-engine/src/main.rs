//! `wasm-engine [CASE...]`: time the engine's workloads (the same generator as
//! benches/engine.rs) and print one line per case: `CASE ns_per_iter=N iters=K`.
//! Built natively and for wasm32-wasip2 by benches/run; the ratio of the two is
//! the cost of running the engine as wasm (wasmtime 48, Cranelift).
//!
//! Each case runs for about `WASM_ENGINE_MS` milliseconds (default 1000) after a
//! warm-up, in rounds; the reported figure is the fastest round's mean, which is
//! the least disturbed by other load on the machine. `WASM_ENGINE_ITERS=k` runs
//! exactly k untimed iterations instead (for instruction counts).

#[path = "../../common/workload.rs"]
mod workload;

// remediator's core crate, the same code the component runs, without the Spin shell.
use remediator::{claim, ingest, plan, rules};

use std::hint::black_box;
use std::time::{Duration, Instant};

use ingest::Format;
use rules::RuleSet;
use claim::RuleHistory as RuleRecord;
use workload::{body, hits, misses, pipeline, rules_yaml, Kind, STARTS_AT};

const CASES: [&str; 7] = [
    "parse/100",
    "parse/1000",
    "ingest/100",
    "match/1000x100",
    "match_miss/1000x100",
    "pipeline/1000x100",
    "pipeline/1x1",
];

fn workload(case: &str) -> Box<dyn FnMut()> {
    let parse = |n| rules::parse(&rules_yaml(Kind::Mixed, n)).expect("rules parse");
    let problems = |alerts: &[workload::Alert]| {
        ingest::ingest(Some(Format::Alertmanager), &body(alerts, STARTS_AT))
            .expect("ingests")
            .problems
    };
    match case {
        "parse/100" | "parse/1000" => {
            let text = rules_yaml(Kind::Mixed, if case == "parse/100" { 100 } else { 1000 });
            Box::new(move || {
                black_box(rules::parse(black_box(&text)).unwrap());
            })
        }
        "ingest/100" => {
            let b = body(&hits(1000, 100), STARTS_AT);
            Box::new(move || {
                black_box(ingest::ingest(Some(Format::Alertmanager), black_box(&b)).unwrap());
            })
        }
        "match/1000x100" | "match_miss/1000x100" => {
            let set = parse(1000);
            let ps = if case.starts_with("match_miss") {
                problems(&misses(100))
            } else {
                problems(&hits(1000, 100))
            };
            Box::new(move || {
                for p in &ps {
                    black_box(set.find(black_box(p)));
                }
            })
        }
        "pipeline/1000x100" | "pipeline/1x1" => {
            let (r, a) = if case == "pipeline/1x1" {
                (1, 1)
            } else {
                (1000, 100)
            };
            let set = parse(r);
            let b = body(&hits(r, a), STARTS_AT);
            assert_eq!(pipeline(&set, &b), a);
            Box::new(move || {
                black_box(pipeline(&set, black_box(&b)));
            })
        }
        other => panic!("unknown case {other}; cases: {CASES:?}"),
    }
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("WASM_ENGINE_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000),
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<&str> = if args.is_empty() {
        CASES.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    // WASM_ENGINE_ITERS=k: exactly k iterations per case, untimed (for callgrind, which
    // benches/run runs with k = 1 and k = 11 and subtracts, so that setup cancels out).
    if let Some(k) = std::env::var("WASM_ENGINE_ITERS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        for case in cases {
            let mut f = workload(case);
            for _ in 0..k {
                f();
            }
        }
        return;
    }
    for case in cases {
        let mut f = workload(case);
        // Warm up, and size a round to about 1/20 of the budget.
        let t = Instant::now();
        let mut per_round = 0u64;
        while t.elapsed() < budget / 20 || per_round < 2 {
            f();
            per_round += 1;
        }
        let (mut best, mut iters, started) = (f64::MAX, 0u64, Instant::now());
        while started.elapsed() < budget {
            let t = Instant::now();
            for _ in 0..per_round {
                f();
            }
            best = best.min(t.elapsed().as_nanos() as f64 / per_round as f64);
            iters += per_round;
        }
        println!("{case} ns_per_iter={best:.0} iters={iters}");
    }
}
