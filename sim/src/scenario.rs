//! What happens in one schedule, drawn from its seed: the rules, the replicas and
//! their clock skews, the alert occurrences and how Alertmanager delivers them,
//! hand changes, a rules change, and the fault knobs.

use crate::world::{Faults, EPOCH_MS, MAX_CLOCK_SKEW_MS};

pub const RULES_V1: &str = r#"apiVersion: remediator/v1
rules:
  - name: promo-off
    match: {title: HighFailureRate}
    actions:
      - {flag: EnablePromotion, state: off}
  - name: scale-up
    match: {title: cpu_usage}
    actions:
      - {scale: "+1"}
  - name: guarded-scale
    match: {title: QueueBacklog}
    cooldown: 5m
    max_actions: 2 per 30m
    actions:
      - {scale: "+1"}
  - name: slow-ladder
    match: {title: SlowResponses}
    escalate_after: 2m
    actions:
      - {flag: EnableItemCache, state: on}
      - {scale: "+1"}
      - {scale: "+2", revert: true}
"#;

/// The flag rule renamed mid-incident to another flag.
pub fn rules_v1_renamed() -> String {
    RULES_V1.replace(
        "{flag: EnablePromotion, state: off}",
        "{flag: EnableRecommendations, state: off}",
    )
}

/// The same flag and scale rules in Keptn 0.6's format.
pub const RULES_KEPTN: &str = r#"remediations:
- name: HighFailureRate
  actions:
  - action: featuretoggle
    value: EnablePromotion:off
- name: cpu_usage
  actions:
  - action: scaling
    value: +1
"#;

/// Cooldown and breaker of the `guarded-scale` rule (I4 checks them).
pub const GUARDED_RULE: &str = "guarded-scale";
pub const GUARDED_COOLDOWN_MS: i64 = 5 * 60_000;
pub const GUARDED_MAX: usize = 2;
pub const GUARDED_WINDOW_MS: i64 = 30 * 60_000;

/// Unleash flags at the start: (flag, enabled in production).
pub const INITIAL_FLAGS: [(&str, bool); 3] = [
    ("EnablePromotion", true),
    ("EnableRecommendations", true),
    ("EnableItemCache", false),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Firing,
    Resolved,
}

/// One alert occurrence: (alertname, labels, fingerprint, startsAt).
#[derive(Debug, Clone)]
pub struct Occ {
    pub alert: &'static str,
    pub instance: String,
    pub fingerprint: String,
    pub starts_at: String,
    /// Global epoch ms.
    pub fire_at: i64,
    /// When Alertmanager starts sending the (final) resolve.
    pub resolve_at: i64,
    /// Flags its rule turns (under any rules version of the schedule).
    pub flags: Vec<&'static str>,
}

/// One notification stream of Alertmanager: a firing occurrence re-sent every
/// `repeat_ms` while it fires, or a resolve sent until it gets a 2xx.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub occ: usize,
    pub kind: Kind,
    pub start: i64,
    /// Firing: no new attempt at or after this time.
    pub end: i64,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub skews: Vec<i64>,
    pub rules: String,
    pub rules_later: Option<(i64, String)>,
    pub occs: Vec<Occ>,
    pub streams: Vec<StreamPlan>,
    pub repeat_ms: i64,
    /// Probability that an attempt is also delivered to another replica (Alertmanager HA).
    pub ha_dup: f64,
    pub hand: Vec<(i64, &'static str)>,
    pub faults: Faults,
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of epoch milliseconds: the component's own.
pub use remediator::audit::rfc3339;

/// The Alertmanager webhook body of one alert (byte-identical for repeats).
pub fn body(o: &Occ, kind: Kind) -> Vec<u8> {
    let status = match kind {
        Kind::Firing => "firing",
        Kind::Resolved => "resolved",
    };
    let ends = match kind {
        Kind::Firing => "0001-01-01T00:00:00Z".to_string(),
        Kind::Resolved => rfc3339(o.resolve_at),
    };
    let labels = serde_json::json!({
        "alertname": o.alert, "instance": o.instance, "service": "carts", "severity": "critical",
    });
    let alert = serde_json::json!({
        "status": status, "labels": labels,
        "annotations": {"summary": format!("{} on carts", o.alert)},
        "startsAt": o.starts_at, "endsAt": ends,
        "generatorURL": "http://prometheus.sim/graph", "fingerprint": o.fingerprint,
    });
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "status": status, "receiver": "remediator",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", o.alert),
        "truncatedAlerts": 0, "groupLabels": {"alertname": o.alert},
        "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://alertmanager.sim",
        "alerts": [alert],
    }))
    .expect("plain data serializes")
}

fn occ(
    alert: &'static str,
    instance: &str,
    fire_at: i64,
    resolve_at: i64,
    flags: Vec<&'static str>,
) -> Occ {
    Occ {
        alert,
        instance: instance.to_string(),
        fingerprint: format!("{:016x}", remediator_fp(alert, instance)),
        starts_at: rfc3339(fire_at - 1500),
        fire_at,
        resolve_at,
        flags,
    }
}

/// A stable stand-in for Alertmanager's label fingerprint.
fn remediator_fp(alert: &str, instance: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in alert.bytes().chain([0]).chain(instance.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn normal_streams(occs: &[Occ]) -> Vec<StreamPlan> {
    occs.iter()
        .enumerate()
        .flat_map(|(i, o)| {
            [
                StreamPlan {
                    occ: i,
                    kind: Kind::Firing,
                    start: o.fire_at,
                    end: o.resolve_at,
                },
                StreamPlan {
                    occ: i,
                    kind: Kind::Resolved,
                    start: o.resolve_at,
                    end: i64::MAX,
                },
            ]
        })
        .collect()
}

/// Draw the scenario of one schedule.
pub fn draw(rng: &mut fastrand::Rng) -> Scenario {
    let t0 = EPOCH_MS + 1000;
    let replicas = rng.usize(2..=4);
    let skews: Vec<i64> = if rng.f64() < 0.3 {
        vec![0; replicas]
    } else {
        (0..replicas)
            .map(|_| rng.i64(-MAX_CLOCK_SKEW_MS..=MAX_CLOCK_SKEW_MS))
            .collect()
    };
    let dur = |rng: &mut fastrand::Rng, lo: i64, hi: i64| rng.i64(lo..=hi);
    let keptn = rng.f64() < 0.3;
    let mut rules = if keptn {
        RULES_KEPTN.to_string()
    } else {
        RULES_V1.to_string()
    };
    let mut rules_later = None;
    let mut repeat_ms = rng.i64(20_000..=180_000);
    let mut occs = Vec::new();
    let mut extra_streams = Vec::new();
    let flag = vec!["EnablePromotion"];
    let name = match rng.u32(0..6) {
        0 => {
            // One flag-off occurrence, or two of one rule overlapping (different instances).
            let d1 = dur(rng, 15_000, 360_000);
            occs.push(occ("HighFailureRate", "i1", t0, t0 + d1, flag.clone()));
            if rng.bool() {
                let start = t0 + rng.i64(1000..=d1.max(2000));
                let d2 = dur(rng, 15_000, 360_000);
                occs.push(occ(
                    "HighFailureRate",
                    "i2",
                    start,
                    start + d2,
                    flag.clone(),
                ));
                "flag-overlap"
            } else if rng.f64() < 0.3 {
                // The resolve arrives first (the firing was delayed), then the
                // firing, then the resolve again (Alertmanager HA peer).
                let mut o = occ("HighFailureRate", "i1", t0, t0 + 2000, flag.clone());
                o.fire_at = t0 + rng.i64(3000..=15_000);
                o.resolve_at = o.fire_at + rng.i64(20_000..=60_000);
                extra_streams = vec![
                    StreamPlan {
                        occ: 0,
                        kind: Kind::Resolved,
                        start: t0,
                        end: i64::MAX,
                    },
                    StreamPlan {
                        occ: 0,
                        kind: Kind::Firing,
                        start: o.fire_at,
                        end: o.resolve_at,
                    },
                    StreamPlan {
                        occ: 0,
                        kind: Kind::Resolved,
                        start: o.resolve_at,
                        end: i64::MAX,
                    },
                ];
                occs[0] = o;
                "flag-resolve-first"
            } else {
                "flag"
            }
        }
        1 => {
            let n = rng.usize(1..=2);
            let mut start = t0;
            for i in 0..n {
                let d = dur(rng, 15_000, 300_000);
                occs.push(occ("cpu_usage", &format!("i{i}"), start, start + d, vec![]));
                start += rng.i64(0..=d);
            }
            "scale"
        }
        2 => {
            rules = RULES_V1.to_string();
            let n = rng.usize(2..=4);
            let mut start = t0;
            for i in 0..n {
                let d = dur(rng, 15_000, 120_000);
                let simultaneous = rng.f64() < 0.3;
                let instance = if simultaneous {
                    format!("i{i}")
                } else {
                    "i0".to_string()
                };
                occs.push(occ("QueueBacklog", &instance, start, start + d, vec![]));
                start = if simultaneous {
                    start + rng.i64(0..=2000)
                } else {
                    start + d + rng.i64(1000..=12 * 60_000)
                };
            }
            repeat_ms = rng.i64(60_000..=180_000);
            "policy"
        }
        3 => {
            rules = RULES_V1.to_string();
            let d = dur(rng, 60_000, 540_000);
            occs.push(occ(
                "SlowResponses",
                "i1",
                t0,
                t0 + d,
                vec!["EnableItemCache"],
            ));
            repeat_ms = rng.i64(30_000..=90_000);
            "ladder"
        }
        4 => {
            rules = RULES_V1.to_string();
            let both = vec!["EnablePromotion", "EnableRecommendations"];
            let d1 = dur(rng, 30_000, 360_000);
            occs.push(occ("HighFailureRate", "i1", t0, t0 + d1, both.clone()));
            if rng.bool() {
                let start = t0 + rng.i64(1000..=d1 + 60_000);
                let d2 = dur(rng, 15_000, 300_000);
                occs.push(occ("HighFailureRate", "i2", start, start + d2, both));
            }
            let change = t0 + rng.i64(0..=d1 + 30_000);
            rules_later = Some((change, rules_v1_renamed()));
            "rules-change"
        }
        _ => {
            let d1 = dur(rng, 15_000, 300_000);
            let d2 = dur(rng, 15_000, 300_000);
            let s2 = t0 + rng.i64(0..=d1);
            occs.push(occ("HighFailureRate", "i1", t0, t0 + d1, flag.clone()));
            occs.push(occ("cpu_usage", "i1", s2, s2 + d2, vec![]));
            "mixed"
        }
    };
    let streams = if extra_streams.is_empty() {
        normal_streams(&occs)
    } else {
        extra_streams
    };
    let last = occs.iter().map(|o| o.resolve_at).max().unwrap_or(t0);
    let ha_dup = if rng.bool() { rng.f64() * 0.5 } else { 0.0 };
    let mut hand = Vec::new();
    if rng.f64() < 0.2 {
        let touched: Vec<&'static str> = occs.iter().flat_map(|o| o.flags.clone()).collect();
        if let Some(f) = rng.choice(touched) {
            hand.push((rng.i64(t0..=last + 1000), f));
        }
    }
    let faults = if rng.f64() < 0.25 {
        Faults::default()
    } else {
        let mut p = |max: f64| if rng.bool() { rng.f64() * max } else { 0.0 };
        Faults {
            crash: p(0.02),
            kv_busy: p(0.03),
            kv_lost_reply: p(0.03),
            unleash_5xx_before: p(0.2),
            unleash_apply_then_timeout: p(0.15),
            unleash_apply_then_502: p(0.15),
            scale_5xx_before: p(0.2),
            scale_apply_then_timeout: p(0.15),
            until_ms: t0 + rng.i64(0..=(last - t0).clamp(1, 180_000)),
        }
    };
    Scenario {
        name,
        skews,
        rules,
        rules_later,
        occs,
        streams,
        repeat_ms,
        ha_dup,
        hand,
        faults,
    }
}
