//! Engine benchmarks (criterion): rules parsing, webhook ingest, rule matching,
//! planning, and the whole handler over an in-memory platform in dry-run.
//!
//!     cargo bench --bench engine                 # everything (~5 min)
//!     cargo bench --bench engine -- pipeline/    # one group (criterion filter)
//!     cargo bench --bench engine -- --test       # run each once (smoke)
//!
//! Matrix: 1, 100 and 1,000 rules (the *mixed* set: title exact/prefix/regex ×
//! label `=`, `!=`, `=~`, `!~`, see `common/workload.rs`) × 1, 10 and 100-alert
//! groups. Per-kind groups time 1,000 rules of one kind against 100 alerts that
//! match none (every rule evaluated). Criterion's throughput is alerts/s.
//!
//! Instruction counts: `ENGINE_PROFILE=<group>/<id> ENGINE_ITERS=<k>` runs one
//! case `k` times without criterion, for `valgrind --tool=callgrind` (benches/run
//! takes the difference of two runs, so setup cancels out).

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "common/workload.rs"]
mod workload;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use remediator::claim::RuleHistory as RuleRecord;
use remediator::ingest::{self, Format};
use remediator::plan;
use remediator::problem::Problem;
use remediator::rules::{self, RuleSet};
use workload::{body, hits, misses, pipeline, rules_yaml, Alert, Kind, STARTS_AT};

const RULES: [usize; 3] = [1, 100, 1000];
const ALERTS: [usize; 3] = [1, 10, 100];

/// One benchmark: `run` is timed; `setup` (if any) runs before each `run`, untimed.
struct Case {
    group: &'static str,
    id: String,
    alerts: usize,
    run: Run,
}

impl Case {
    fn plain(group: &'static str, id: String, alerts: usize, run: impl FnMut() + 'static) -> Case {
        Case {
            group,
            id,
            alerts,
            run: Run::Plain(Box::new(run)),
        }
    }
}

enum Run {
    Plain(Box<dyn FnMut()>),
    /// Setup builds a fresh in-memory platform per iteration, as Spin gives each
    /// request a fresh instance (the key-value store would persist; here it starts empty).
    WithPlatform(
        Box<dyn FnMut() -> support::Recorder>,
        Box<dyn FnMut(support::Recorder)>,
    ),
}

fn ruleset(kind: Kind, n: usize) -> RuleSet {
    rules::parse(&rules_yaml(kind, n)).expect("generated rules parse")
}

fn problems(alerts: &[Alert]) -> Vec<Problem> {
    ingest::ingest(Some(Format::Alertmanager), &body(alerts, STARTS_AT))
        .expect("generated body ingests")
        .problems
}

/// Every case must do what it claims (hits match their target, misses nothing)
/// before anything is timed.
fn check(set: &RuleSet, alerts: &[Alert], expect_hits: bool) {
    for p in problems(alerts) {
        let found = set.find(&p).map(|r| r.name.clone());
        if expect_hits {
            let t = &p.labels["service"][3..7];
            assert_eq!(
                found.as_deref(),
                Some(format!("r{t}").as_str()),
                "{}",
                p.title
            );
        } else {
            assert_eq!(found, None, "{}", p.title);
        }
    }
}

/// For each size of the matrix whose `group/{r}x{a}` passes `want`: its id, the
/// number of alerts, the mixed set of `r` rules (parsed once per `r`, and only when
/// wanted) and the `a` alerts (targets of the set's rules if `hit`, else misses).
fn matrix(
    group: &str,
    hit: bool,
    want: &dyn Fn(&str, &str) -> bool,
    mut each: impl FnMut(String, usize, &RuleSet, Vec<Alert>),
) {
    for r in RULES {
        let sizes: Vec<usize> = ALERTS
            .into_iter()
            .filter(|a| want(group, &format!("{r}x{a}")))
            .collect();
        if sizes.is_empty() {
            continue;
        }
        let set = ruleset(Kind::Mixed, r);
        for a in sizes {
            let alerts = if hit { hits(r, a) } else { misses(a) };
            each(format!("{r}x{a}"), a, &set, alerts);
        }
    }
}

/// The cases whose `group/id` passes `want` (all of them for criterion, which
/// filters itself; one for ENGINE_PROFILE, so that no other case's setup runs).
fn cases(want: &dyn Fn(&str, &str) -> bool) -> Vec<Case> {
    let mut cases = Vec::new();
    for r in RULES.into_iter().filter(|r| want("parse", &r.to_string())) {
        let text = rules_yaml(Kind::Mixed, r);
        cases.push(Case::plain("parse", format!("{r}"), 0, move || {
            black_box(rules::parse(black_box(&text)).unwrap());
        }));
    }
    for a in ALERTS
        .into_iter()
        .filter(|a| want("ingest", &a.to_string()))
    {
        let b = body(&hits(1000, a), STARTS_AT);
        cases.push(Case::plain("ingest", format!("{a}"), a, move || {
            black_box(ingest::ingest(Some(Format::Alertmanager), black_box(&b)).unwrap());
        }));
    }
    for (group, hit) in [("match", true), ("match_miss", false)] {
        matrix(group, hit, want, |id, a, set, alerts| {
            check(set, &alerts, hit);
            let ps = problems(&alerts);
            let set = set.clone();
            cases.push(Case::plain(group, id, a, move || {
                for p in &ps {
                    black_box(set.find(black_box(p)));
                }
            }));
        });
    }
    for (group, hit) in [("pipeline", true), ("pipeline_miss", false)] {
        matrix(group, hit, want, |id, a, set, alerts| {
            let b = body(&alerts, STARTS_AT);
            assert_eq!(pipeline(set, &b), if hit { a } else { 0 });
            let set = set.clone();
            cases.push(Case::plain(group, id, a, move || {
                black_box(pipeline(&set, black_box(&b)));
            }));
        });
    }
    for kind in Kind::SINGLE.into_iter().filter(|k| want("kind", k.name())) {
        let set = ruleset(kind, 1000);
        let alerts = misses(100);
        check(&set, &alerts, false);
        let ps = problems(&alerts);
        cases.push(Case::plain(
            "kind",
            kind.name().to_string(),
            100,
            move || {
                for p in &ps {
                    black_box(set.find(black_box(p)));
                }
            },
        ));
    }
    for r in RULES {
        let text = rules_yaml(Kind::Mixed, r);
        for a in ALERTS
            .into_iter()
            .filter(|a| want("handler", &format!("{r}x{a}")))
        {
            let b = body(&hits(r, a), STARTS_AT);
            let text = text.clone();
            let setup = move || {
                let rec = support::Recorder::new();
                rec.set_rules(&text).set_var("dry_run", "true");
                rec
            };
            let check_rec = setup();
            let (status, report) = check_rec.post("/alertmanager", &b);
            assert_eq!(status, 200, "{report}");
            assert!(report["problems"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["outcome"] == "dry_run"));
            cases.push(Case {
                group: "handler",
                id: format!("{r}x{a}"),
                alerts: a,
                run: Run::WithPlatform(
                    Box::new(setup),
                    Box::new(move |rec| {
                        black_box(rec.post("/alertmanager", black_box(&b)));
                    }),
                ),
            });
        }
    }
    cases
}

fn main() {
    if let Ok(which) = std::env::var("ENGINE_PROFILE") {
        let iters: usize = std::env::var("ENGINE_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let mut case = cases(&|g, id| format!("{g}/{id}") == which)
            .pop()
            .unwrap_or_else(|| panic!("no case {which}"));
        for _ in 0..iters {
            match &mut case.run {
                Run::Plain(f) => f(),
                Run::WithPlatform(setup, f) => f(setup()),
            }
        }
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let all = cases(&|_, _| true);
    let mut groups: Vec<&'static str> = all.iter().map(|c| c.group).collect();
    groups.dedup();
    let mut all = all.into_iter().peekable();
    for name in groups {
        let mut g = c.benchmark_group(name);
        if matches!(name, "parse" | "handler" | "kind") {
            // Up to a quarter of a second per iteration: fewer, equal-sized samples.
            g.sample_size(10).sampling_mode(SamplingMode::Flat);
        }
        while let Some(case) = all.next_if(|c| c.group == name) {
            if case.alerts > 0 {
                g.throughput(Throughput::Elements(case.alerts as u64));
            }
            match case.run {
                Run::Plain(mut f) => g.bench_function(&case.id, |b| b.iter(&mut f)),
                Run::WithPlatform(mut setup, mut f) => g.bench_function(&case.id, |b| {
                    b.iter_batched(&mut setup, &mut f, BatchSize::SmallInput)
                }),
            };
        }
        g.finish();
    }
    c.final_summary();
}
