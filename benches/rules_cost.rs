//! `cargo bench --bench rules_cost -- PHASE RULES ITERS [ALERTNAME]`: run one phase of
//! the rules' per-request cost ITERS times, for instruction counts under callgrind
//! (Ir of ITERS=k+1 minus ITERS=1, divided by k; docs/rules-cache.md). RULES is 3
//! (the tutorial's file) or N (the mixed set of benches/common/workload.rs, with a
//! `cpu_usage` rule first so that the acting webhook acts).
//!
//! Phases of a parse: `scan` (YAML events only), `typed` (+ typed deserialization),
//! `validate` (+ matchers, regexes, actions), `parse` (+ the matching index),
//! `regex` (the file's regexes compiled alone), `index` (the index built alone),
//! `clone` (the parsed rules cloned: a floor for decoding them all), `hash` (FNV-128,
//! the content version before the rules cache), `fasthash` (a 64-bit-word hash),
//! `hash128` (the content version now), `utf8`, `source_json` (the URL cache record
//! as it held the text, deserialized), `open` and `find` (the cache entry opened, and
//! searched for ALERTNAME), `text` (prints the rules file). Per request, through the
//! whole handler over the test double: `bundled` (the file's stamp standing in for
//! it) and `url` (ALERTNAME: `cpu_usage` acts, `NoRuleForThis` matches nothing; one
//! warm-up request first).

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "common/workload.rs"]
mod workload;

use std::hint::black_box;

use remediator::rules::{self, own, RuleSet};
// The names benches/common/workload.rs expects of its includer.
use remediator::rules_source::{Cached, SourceState};
#[allow(unused_imports)]
use remediator::{
    claim::RuleHistory as RuleRecord,
    ingest::{self, Format},
    plan,
};
use workload::{rules_yaml, Kind};

fn rules_text(n: usize) -> String {
    if n == 3 {
        return support::TUTORIAL_RULES.to_string();
    }
    rules_yaml(Kind::Mixed, n).replacen(
        "rules:\n",
        "rules:\n  - name: cpu\n    match: {title_prefix: cpu_usage}\n    actions: [{scale: \"+1\"}]\n",
        1,
    )
}

fn webhook(alertname: &str, i: usize) -> http::Request<Vec<u8>> {
    let body = serde_json::json!({"version": "4", "status": "firing", "receiver": "r",
        "alerts": [{"status": "firing", "labels": {"alertname": alertname, "service": "carts"},
            "annotations": {"summary": "CPU usage high on carts"},
            "startsAt": "2026-11-26T14:02:06.305Z", "fingerprint": format!("f{i}")}]});
    http::Request::post("/alertmanager")
        .header(
            "authorization",
            format!("Bearer {}", support::WEBHOOK_TOKEN),
        )
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .expect("request")
}

fn fast_hash(b: &[u8]) -> (u64, u64) {
    let (mut h1, mut h2): (u64, u64) = (
        0x243f_6a88_85a3_08d3 ^ b.len() as u64,
        0x1319_8a2e_0370_7344,
    );
    let mut words = b.chunks_exact(8);
    for c in &mut words {
        let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
        h1 = (h1 ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        h2 = (h2.rotate_left(23) ^ w).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    let w = u64::from_le_bytes(tail);
    (
        (h1 ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        (h2 ^ w).wrapping_mul(0xc2b2_ae3d_27d4_eb4f),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; the phase arguments come after it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [phase, n, iters, rest @ ..] = args.as_slice() else {
        eprintln!("usage: rules_cost PHASE RULES ITERS [ALERTNAME]");
        return;
    };
    let (n, iters): (usize, usize) = (n.parse().expect("RULES"), iters.parse().expect("ITERS"));
    let text = rules_text(n);
    let each = |f: &dyn Fn()| (0..iters).for_each(|_| f());
    match phase.as_str() {
        "scan" => each(&|| {
            let de = serde_norway::Deserializer::from_str(black_box(&text));
            black_box(
                <serde::de::IgnoredAny as serde::Deserialize>::deserialize(de).expect("yaml"),
            );
        }),
        "typed" => each(&|| {
            black_box(serde_norway::from_str::<own::OwnFile>(black_box(&text)).expect("typed"));
        }),
        "validate" => each(&|| {
            let file = serde_norway::from_str::<own::OwnFile>(black_box(&text)).expect("typed");
            black_box(own::from_own(file).expect("valid"));
        }),
        "parse" => each(&|| {
            black_box(rules::parse(black_box(&text)).expect("parse"));
        }),
        "regex" => {
            let set = rules::parse(&text).expect("parse");
            let mut patterns: Vec<String> = Vec::new();
            for r in &set.rules {
                for t in &r.titles {
                    if let rules::TitleMatch::Regex(re) = t {
                        patterns.push(re.as_str().to_string());
                    }
                }
                for m in &r.labels {
                    if matches!(
                        m.op,
                        rules::matcher::Op::Regex | rules::matcher::Op::NotRegex
                    ) {
                        patterns.push(format!("^(?:{})$", m.value));
                    }
                }
            }
            eprintln!("{} regexes", patterns.len());
            each(&|| {
                for p in &patterns {
                    black_box(rules::matcher::compile_bounded(p, p).expect("regex"));
                }
            })
        }
        "index" | "clone" => {
            let set = rules::parse(&text).expect("parse");
            each(&|| {
                let rules = black_box(&set.rules).clone();
                if phase == "index" {
                    black_box(RuleSet::new(set.format, rules));
                } else {
                    black_box(rules);
                }
            })
        }
        "hash" => each(&|| {
            black_box(remediator::state::hash(&[black_box(&text)]));
        }),
        // The rules file itself, for the wasm measurement (docs/rules-cache.md).
        "text" => print!("{text}"),
        "hash128" => each(&|| {
            black_box(rules::compiled::hash128(black_box(text.as_bytes())));
        }),
        "open" | "find" => {
            let set = rules::parse(&text).expect("parse");
            let hash = rules::compiled::hash128(text.as_bytes());
            let entry = rules::compiled::encode(&set, &hash, 0);
            eprintln!("entry: {} bytes", entry.len());
            let alertname = rest.first().map_or("cpu_usage", String::as_str);
            let problem = remediator::problem::Problem {
                source: remediator::problem::Source::Alertmanager,
                status: remediator::problem::Status::Firing,
                title: alertname.into(),
                summary: Some("CPU usage high on carts".into()),
                labels: [("alertname", alertname), ("service", "carts")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                annotations: Default::default(),
                starts_at: None,
                fingerprint: "f".into(),
                links: Default::default(),
            };
            each(&|| {
                let view =
                    rules::compiled::View::open(black_box(entry.clone()), &hash).expect("open");
                if phase == "find" {
                    black_box(view.find(&problem).expect("find"));
                }
            })
        }
        "fasthash" => each(&|| {
            black_box(fast_hash(black_box(text.as_bytes())));
        }),
        "utf8" => {
            let bytes = text.as_bytes().to_vec();
            each(&|| {
                black_box(std::str::from_utf8(black_box(&bytes)).is_ok());
            })
        }
        "source_json" => {
            let st = SourceState {
                last_good: Some(Cached {
                    url: "http://rules.example/remediation.yaml".into(),
                    text: text.clone(),
                    text_hash: None,
                    etag: None,
                    last_modified: None,
                    fetched_at_ms: 1,
                }),
                checked_at_ms: Some(1),
                last_error: None,
                ok_at_ms: Some(1),
            };
            let bytes = serde_json::to_vec(&st).expect("json");
            each(&|| {
                black_box(serde_json::from_slice::<SourceState>(black_box(&bytes)).is_ok());
            })
        }
        "bundled" | "url" => {
            let alertname = rest.first().map_or("cpu_usage", String::as_str);
            let r = support::Recorder::new();
            if phase == "bundled" {
                // A host that stats files, the file settled: its stamp stands in for it.
                r.stat_files.set(true);
                r.replace_file("/remediation.yaml", &text);
                r.advance(remediator::rules_source::SETTLED_MS);
            } else {
                r.set_var("rules_origin", "http://rules.example");
                let served = text.clone();
                r.answer(move |s| {
                    support::respond(
                        200,
                        if s.url.starts_with("http://rules.example") {
                            &served
                        } else {
                            ""
                        },
                    )
                });
            }
            let first = remediator::app::handle(&r.platform, webhook(alertname, 0));
            assert_eq!(
                first.status(),
                200,
                "{}",
                String::from_utf8_lossy(first.body())
            );
            let writes = r.kv_writes.get();
            for i in 1..=iters {
                black_box(remediator::app::handle(&r.platform, webhook(alertname, i)));
            }
            eprintln!(
                "key-value writes per request: {}",
                (r.kv_writes.get() - writes) as f64 / iters.max(1) as f64
            );
        }
        other => eprintln!("unknown phase {other}"),
    }
}
