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

/// The rules of the rollout family: `STRAT` becomes the strategy selector of every
/// rollout action (`, strategy: …` or nothing).
const RULES_ROLLOUT: &str = r#"apiVersion: remediator/v1
rules:
  - name: checkout-off
    match: {title: CheckoutErrors}
    actions:
      - {flag: NewCheckout, rollout: 0STRAT}
  - name: checkout-ladder
    match: {title: CheckoutSlow}
    escalate_after: 2m
    actions:
      - {flag: NewCheckout, rollout: 10STRAT}
      - {flag: NewCheckout, rollout: 0STRAT}
  - name: checkout-kill
    match: {title: CheckoutDown}
    actions:
      - {flag: NewCheckout, state: off}
  - name: scale-up
    match: {title: cpu_usage}
    actions:
      - {scale: "+1"}
"#;

pub fn rules_rollout(strategy: &str) -> String {
    RULES_ROLLOUT.replace("STRAT", strategy)
}

/// The one-step rollout rule moved mid-incident to another flag.
pub fn rules_rollout_renamed(strategy: &str) -> String {
    rules_rollout(strategy).replacen(
        "{flag: NewCheckout, rollout: 0",
        "{flag: NewSearch, rollout: 0",
        1,
    )
}

/// Rollout flags, the id and title of the strategy their rules change, and the
/// percentages any rule of the rollout family sets them to.
pub const ROLLOUT_FLAGS: [(&str, &str, &str, &[u8]); 2] = [
    ("NewCheckout", "nc-1", "gradual", &[0, 10]),
    ("NewSearch", "ns-1", "gradual", &[0]),
];

/// A second `flexibleRollout` strategy of `NewCheckout` that no rule may touch.
pub const OTHER_STRATEGY: (&str, &str, &str) = ("NewCheckout", "nc-2", "beta");

/// The percentages a rule sets `flag` to.
pub fn rollout_desired(flag: &str) -> &'static [u8] {
    ROLLOUT_FLAGS
        .iter()
        .find(|r| r.0 == flag)
        .map(|r| r.3)
        .unwrap_or(&[])
}

/// The strategy of `flag` that its rules change.
pub fn rollout_strategy(flag: &str) -> Option<&'static str> {
    ROLLOUT_FLAGS.iter().find(|r| r.0 == flag).map(|r| r.1)
}

/// Cooldown and breaker of the `guarded-scale` rule (I4 checks them).
pub const GUARDED_RULE: &str = "guarded-scale";
pub const GUARDED_COOLDOWN_MS: i64 = 5 * 60_000;
pub const GUARDED_MAX: usize = 2;
pub const GUARDED_WINDOW_MS: i64 = 30 * 60_000;

/// Unleash flags at the start: (flag, enabled in production).
pub const INITIAL_FLAGS: [(&str, bool); 6] = [
    ("EnablePromotion", true),
    ("EnableRecommendations", true),
    ("EnableItemCache", false),
    ("NewCheckout", true),
    ("NewSearch", true),
    ("EnablePayPal", true),
];

/// The Unleash project of each flag (Unleash's flag names are unique across projects).
pub fn project_of(flag: &str) -> &'static str {
    match flag {
        "EnablePayPal" => "payments",
        _ => "default",
    }
}

/// The rules of the budget family: flags in two projects (one rule a ladder over two
/// flags and a scale call), scaling. `BUDGET` becomes the `defaults:` block (or nothing,
/// when the budget comes from the `max_changes` variable).
const RULES_BUDGET: &str = r#"apiVersion: remediator/v1
BUDGETrules:
  - name: promo-off
    match: {title: HighFailureRate}
    actions:
      - {flag: EnablePromotion, state: off}
  - name: recs-off
    match: {title: SlowRecommendations}
    actions:
      - {flag: EnableRecommendations, state: off}
  - name: cache-ladder
    match: {title: SlowResponses}
    escalate_after: 2m
    actions:
      - {flag: EnableItemCache, state: on}
      - {flag: EnableRecommendations, state: off}
      - {scale: "+1"}
  - name: paypal-off
    match: {title: PaymentErrors}
    project: payments
    actions:
      - {flag: EnablePayPal, state: off}
  - name: scale-up
    match: {title: cpu_usage}
    actions:
      - {scale: "+1"}
"#;

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
    /// Flags whose rollout its rule sets (under any rules version of the schedule).
    pub rollouts: Vec<&'static str>,
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
    /// Non-empty: the notification stream of a whole group (alertname) instead, whose
    /// every notification carries its firing members and its resolved members not yet
    /// answered 2xx (`kind`, `start` and `end` are then unused).
    pub members: Vec<usize>,
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
    /// Hand changes of a rollout: (time, flag, percentage), on the strategy the rules change.
    pub hand_rollout: Vec<(i64, &'static str, u8)>,
    /// Strategies at the start: (flag, id, title, percentage).
    pub strategies: Vec<(&'static str, &'static str, &'static str, u8)>,
    pub faults: Faults,
    /// Grouped deliveries ([`group`]): Alertmanager's group_wait and group_interval,
    /// and the probability that a notification carries one of its alerts twice.
    pub group: Option<Grouping>,
    /// Spin variables that differ from the world's defaults.
    pub vars: Vec<(&'static str, String)>,
    /// The blast-radius budget in force: (changes, window ms); I7 checks it.
    pub budget: Option<(usize, i64)>,
}

#[derive(Debug, Clone)]
pub struct Grouping {
    pub wait_ms: i64,
    pub interval_ms: i64,
    pub dup: f64,
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

fn alert_json(o: &Occ, kind: Kind) -> serde_json::Value {
    let status = match kind {
        Kind::Firing => "firing",
        Kind::Resolved => "resolved",
    };
    let ends = match kind {
        Kind::Firing => "0001-01-01T00:00:00Z".to_string(),
        Kind::Resolved => rfc3339(o.resolve_at),
    };
    serde_json::json!({
        "status": status,
        "labels": {"alertname": o.alert, "instance": o.instance, "service": "carts", "severity": "critical"},
        "annotations": {"summary": format!("{} on carts", o.alert)},
        "startsAt": o.starts_at, "endsAt": ends,
        "generatorURL": "http://prometheus.sim/graph", "fingerprint": o.fingerprint,
    })
}

/// The webhook body of one notification of a group: several alerts of one alertname,
/// firing and resolved, as Alertmanager sends them (the group is "firing" while any
/// of its alerts fires; common labels are the ones all alerts share).
pub fn group_body(occs: &[Occ], alerts: &[(usize, Kind)]) -> Vec<u8> {
    let first = &occs[alerts[0].0];
    let firing = alerts.iter().any(|a| a.1 == Kind::Firing);
    let status = if firing { "firing" } else { "resolved" };
    let one_instance = alerts.iter().all(|a| occs[a.0].instance == first.instance);
    let mut common =
        serde_json::json!({"alertname": first.alert, "service": "carts", "severity": "critical"});
    if one_instance {
        common["instance"] = first.instance.clone().into();
    }
    let list: Vec<serde_json::Value> = alerts
        .iter()
        .map(|&(i, k)| alert_json(&occs[i], k))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "status": status, "receiver": "remediator",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", first.alert),
        "truncatedAlerts": 0, "groupLabels": {"alertname": first.alert},
        "commonLabels": common, "commonAnnotations": {}, "externalURL": "http://alertmanager.sim",
        "alerts": list,
    }))
    .expect("plain data serializes")
}

/// Remediator's occurrence key of an alert of this simulation.
pub fn occurrence_key(o: &Occ) -> String {
    format!("alertmanager/{}/{}", o.fingerprint, o.starts_at)
}

/// Turn a drawn scenario into one with grouped deliveries: sometimes a storm (more
/// occurrences of the first alert's rule on other instances, firing within a second
/// or two of it), and one notification stream per alertname instead of one per
/// occurrence. Scenarios with hand-made streams (a resolve sent first) keep them.
pub fn group(rng: &mut fastrand::Rng, sc: &mut Scenario) {
    let classic = sc.streams.len() == 2 * sc.occs.len()
        && sc.streams.iter().enumerate().all(|(i, p)| p.occ == i / 2);
    if !classic {
        return;
    }
    if rng.f64() < 0.6 {
        let base = sc.occs[0].clone();
        let n = rng.usize(1..=4);
        for k in 0..n {
            let fire_at = base.fire_at + rng.i64(0..=2500);
            // Some alerts of a storm flap: they resolve within seconds.
            let resolve_at = fire_at
                + if rng.f64() < 0.3 {
                    rng.i64(1000..=12_000)
                } else {
                    rng.i64(15_000..=300_000)
                };
            let mut o = occ(
                base.alert,
                &format!("s{k}"),
                fire_at,
                resolve_at,
                base.flags.clone(),
            );
            o.rollouts = base.rollouts.clone();
            sc.occs.push(o);
        }
    }
    let g = Grouping {
        wait_ms: rng.i64(0..=5000),
        interval_ms: rng.i64(0..=20_000),
        dup: if rng.bool() { 0.1 } else { 0.0 },
    };
    let mut names: Vec<&'static str> = sc.occs.iter().map(|o| o.alert).collect();
    names.dedup();
    names.sort();
    names.dedup();
    sc.streams = names
        .iter()
        .map(|n| {
            let members: Vec<usize> = (0..sc.occs.len())
                .filter(|&i| sc.occs[i].alert == *n)
                .collect();
            let start = members
                .iter()
                .map(|&i| sc.occs[i].fire_at)
                .min()
                .unwrap_or(0);
            StreamPlan {
                occ: members[0],
                kind: Kind::Firing,
                start: start + g.wait_ms,
                end: i64::MAX,
                members,
            }
        })
        .collect();
    sc.group = Some(g);
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
        rollouts: vec![],
    }
}

fn rollout_occ(
    alert: &'static str,
    instance: &str,
    fire_at: i64,
    resolve_at: i64,
    rollouts: Vec<&'static str>,
) -> Occ {
    Occ {
        rollouts,
        ..occ(alert, instance, fire_at, resolve_at, vec![])
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
                    members: vec![],
                },
                StreamPlan {
                    occ: i,
                    kind: Kind::Resolved,
                    start: o.resolve_at,
                    end: i64::MAX,
                    members: vec![],
                },
            ]
        })
        .collect()
}

/// The first shape of both families: one occurrence (`make(instance, fire_at,
/// resolve_at)`) on i1, or two of one rule overlapping (i1, i2), or one whose resolve
/// arrives first (the firing was delayed), then the firing, then the resolve again
/// (Alertmanager HA peer). Returns the name of the one drawn, from `names` in that order.
/// Both families draw exactly this sequence, so their seeds replay as before.
fn one_occurrence(
    rng: &mut fastrand::Rng,
    t0: i64,
    make: impl Fn(&str, i64, i64) -> Occ,
    occs: &mut Vec<Occ>,
    extra_streams: &mut Vec<StreamPlan>,
    names: [&'static str; 3],
) -> &'static str {
    let d1 = rng.i64(15_000..=360_000);
    occs.push(make("i1", t0, t0 + d1));
    if rng.bool() {
        let start = t0 + rng.i64(1000..=d1.max(2000));
        let d2 = rng.i64(15_000..=360_000);
        occs.push(make("i2", start, start + d2));
        names[1]
    } else if rng.f64() < 0.3 {
        let mut o = make("i1", t0, t0 + 2000);
        o.fire_at = t0 + rng.i64(3000..=15_000);
        o.resolve_at = o.fire_at + rng.i64(20_000..=60_000);
        *extra_streams = vec![
            StreamPlan {
                occ: 0,
                kind: Kind::Resolved,
                start: t0,
                end: i64::MAX,
                members: vec![],
            },
            StreamPlan {
                occ: 0,
                kind: Kind::Firing,
                start: o.fire_at,
                end: o.resolve_at,
                members: vec![],
            },
            StreamPlan {
                occ: 0,
                kind: Kind::Resolved,
                start: o.resolve_at,
                end: i64::MAX,
                members: vec![],
            },
        ];
        occs[0] = o;
        names[2]
    } else {
        names[0]
    }
}

/// Draw the scenario of one schedule: the classic family (on/off flags, scaling,
/// policies), or with `rollout` the rollout family.
pub fn draw(rng: &mut fastrand::Rng, rollout: bool) -> Scenario {
    if rollout {
        return draw_rollout(rng);
    }
    let t0 = EPOCH_MS + 1000;
    let skews = draw_skews(rng);
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
            let make =
                |i: &str, fire, resolve| occ("HighFailureRate", i, fire, resolve, flag.clone());
            let names = ["flag", "flag-overlap", "flag-resolve-first"];
            one_occurrence(rng, t0, make, &mut occs, &mut extra_streams, names)
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
    let (streams, last, ha_dup) = timeline(rng, &occs, extra_streams, t0);
    let hand = draw_hand_change(rng, &occs, t0, last, 0.2);
    let faults = draw_faults(rng, t0, last);
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
        hand_rollout: vec![],
        strategies: vec![],
        faults,
        group: None,
        vars: vec![],
        budget: None,
    }
}

/// The notification streams (`extra`, else each occurrence's firing then resolve),
/// the last resolve (or `t0`), and the share of deliveries an Alertmanager HA peer
/// duplicates.
fn timeline(
    rng: &mut fastrand::Rng,
    occs: &[Occ],
    extra: Vec<StreamPlan>,
    t0: i64,
) -> (Vec<StreamPlan>, i64, f64) {
    let streams = if extra.is_empty() {
        normal_streams(occs)
    } else {
        extra
    };
    let last = occs.iter().map(|o| o.resolve_at).max().unwrap_or(t0);
    let ha_dup = if rng.bool() { rng.f64() * 0.5 } else { 0.0 };
    (streams, last, ha_dup)
}

/// Each replica's clock skew: none for any, three times in ten.
fn draw_skews(rng: &mut fastrand::Rng) -> Vec<i64> {
    let replicas = rng.usize(2..=4);
    if rng.f64() < 0.3 {
        vec![0; replicas]
    } else {
        (0..replicas)
            .map(|_| rng.i64(-MAX_CLOCK_SKEW_MS..=MAX_CLOCK_SKEW_MS))
            .collect()
    }
}

/// With probability `p`, a hand change of one flag an occurrence touches, at a time
/// in the schedule.
fn draw_hand_change(
    rng: &mut fastrand::Rng,
    occs: &[Occ],
    t0: i64,
    last: i64,
    p: f64,
) -> Vec<(i64, &'static str)> {
    let mut hand = Vec::new();
    if rng.f64() < p {
        let touched: Vec<&'static str> = occs.iter().flat_map(|o| o.flags.clone()).collect();
        if let Some(f) = rng.choice(touched) {
            hand.push((rng.i64(t0..=last + 1000), f));
        }
    }
    hand
}

fn draw_faults(rng: &mut fastrand::Rng, t0: i64, last: i64) -> Faults {
    if rng.f64() < 0.25 {
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
    }
}

/// The rollout family: the flag scenarios again with `{flag, rollout: 0}` (one
/// occurrence, two overlapping, resolve first), a two-step ladder 10 % then 0 %, a
/// rules change moving the rule to another flag, on/off and rollout of one flag held
/// at once; hand changes of the percentage.
fn draw_rollout(rng: &mut fastrand::Rng) -> Scenario {
    let t0 = EPOCH_MS + 1000;
    let skews = draw_skews(rng);
    let dur = |rng: &mut fastrand::Rng, lo: i64, hi: i64| rng.i64(lo..=hi);
    // Strategies: NewCheckout's "gradual" at a seeded percentage, sometimes a second
    // one ("beta") so that the rules must name theirs; NewSearch's "gradual".
    let percents = [50u8, 37, 37, 50, 100, 10, 0, 1];
    let two = rng.f64() < 0.3;
    let mut strategies = vec![
        (
            "NewCheckout",
            "nc-1",
            "gradual",
            percents[rng.usize(0..percents.len())],
        ),
        (
            "NewSearch",
            "ns-1",
            "gradual",
            percents[rng.usize(0..percents.len())],
        ),
    ];
    if two {
        strategies.push((OTHER_STRATEGY.0, OTHER_STRATEGY.1, OTHER_STRATEGY.2, 100));
    }
    let strat = match rng.u32(0..3) {
        0 if !two => "",
        1 => ", strategy: nc-1",
        _ => ", strategy: gradual",
    };
    let mut rules = rules_rollout(strat);
    let mut rules_later = None;
    let mut repeat_ms = rng.i64(20_000..=180_000);
    let mut occs = Vec::new();
    let mut extra_streams = Vec::new();
    let nc = vec!["NewCheckout"];
    let name = match rng.u32(0..5) {
        0 => {
            let make = |i: &str, fire, resolve| {
                rollout_occ("CheckoutErrors", i, fire, resolve, nc.clone())
            };
            let names = ["rollout", "rollout-overlap", "rollout-resolve-first"];
            one_occurrence(rng, t0, make, &mut occs, &mut extra_streams, names)
        }
        1 => {
            let d = dur(rng, 60_000, 540_000);
            occs.push(rollout_occ("CheckoutSlow", "i1", t0, t0 + d, nc.clone()));
            repeat_ms = rng.i64(30_000..=90_000);
            "rollout-ladder"
        }
        2 => {
            if strat.contains("nc-1") {
                rules = rules_rollout(", strategy: gradual");
            }
            let both = vec!["NewCheckout", "NewSearch"];
            let d1 = dur(rng, 30_000, 360_000);
            occs.push(rollout_occ(
                "CheckoutErrors",
                "i1",
                t0,
                t0 + d1,
                both.clone(),
            ));
            if rng.bool() {
                let start = t0 + rng.i64(1000..=d1 + 60_000);
                let d2 = dur(rng, 15_000, 300_000);
                occs.push(rollout_occ("CheckoutErrors", "i2", start, start + d2, both));
            }
            let change = t0 + rng.i64(0..=d1 + 30_000);
            let sel = if rules.contains("strategy: gradual") {
                ", strategy: gradual"
            } else {
                ""
            };
            rules_later = Some((change, rules_rollout_renamed(sel)));
            "rollout-rules-change"
        }
        3 => {
            // On/off and rollout of the same flag, held separately.
            let d1 = dur(rng, 15_000, 300_000);
            let d2 = dur(rng, 15_000, 300_000);
            let s2 = t0 + rng.i64(0..=d1);
            occs.push(rollout_occ("CheckoutErrors", "i1", t0, t0 + d1, nc.clone()));
            occs.push(occ("CheckoutDown", "i1", s2, s2 + d2, nc.clone()));
            "rollout-and-flag"
        }
        _ => {
            // A ladder and, overlapping, another occurrence of it or of the one-step
            // rule: a different percentage while one holds it is refused.
            let d1 = dur(rng, 60_000, 400_000);
            occs.push(rollout_occ("CheckoutSlow", "i1", t0, t0 + d1, nc.clone()));
            let start = t0 + rng.i64(1000..=d1.max(2000));
            let d2 = dur(rng, 15_000, 300_000);
            let alert = if rng.bool() {
                "CheckoutSlow"
            } else {
                "CheckoutErrors"
            };
            occs.push(rollout_occ(alert, "i2", start, start + d2, nc.clone()));
            repeat_ms = rng.i64(30_000..=90_000);
            "rollout-ladder-overlap"
        }
    };
    let (streams, last, ha_dup) = timeline(rng, &occs, extra_streams, t0);
    let mut hand_rollout = Vec::new();
    if rng.f64() < 0.35 {
        let touched: Vec<&'static str> = occs.iter().flat_map(|o| o.rollouts.clone()).collect();
        if let Some(f) = rng.choice(touched) {
            let init = strategies.iter().find(|s| s.0 == f).map_or(50, |s| s.3);
            let values = [0u8, 10, 20, 80, init];
            let n = if rng.f64() < 0.3 { 2 } else { 1 };
            for _ in 0..n {
                let at = rng.i64(t0..=last + 1000);
                hand_rollout.push((at, f, values[rng.usize(0..values.len())]));
            }
            hand_rollout.sort();
        }
    }
    let hand = draw_hand_change(rng, &occs, t0, last, 0.1);
    let faults = draw_faults(rng, t0, last);
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
        hand_rollout,
        strategies,
        faults,
        group: None,
        vars: vec![],
        budget: None,
    }
}

/// The budget family: several occurrences of rules in two Unleash projects and
/// scaling, firing within a few windows of a small blast-radius budget, given in the
/// rules file, in the `max_changes` variable, or in both (the file's wins).
pub fn draw_budget(rng: &mut fastrand::Rng) -> Scenario {
    let t0 = EPOCH_MS + 1000;
    let skews = draw_skews(rng);
    let max = rng.usize(1..=3);
    let window_min = [5i64, 10][rng.usize(0..2)];
    let rate = format!("{max} per {window_min}m");
    let (name, defaults, vars) = match rng.u32(0..3) {
        0 => (
            "budget-file",
            format!("defaults:\n  max_changes: {rate}\n"),
            vec![],
        ),
        1 => (
            "budget-variable",
            String::new(),
            vec![("max_changes", rate)],
        ),
        _ => (
            "budget-both",
            format!("defaults:\n  max_changes: {rate}\n"),
            vec![("max_changes", "50 per 1m".to_string())],
        ),
    };
    let rules = RULES_BUDGET.replace("BUDGET", &defaults);
    let alerts: [(&str, &[&'static str]); 5] = [
        ("HighFailureRate", &["EnablePromotion"]),
        ("SlowRecommendations", &["EnableRecommendations"]),
        (
            "SlowResponses",
            &["EnableItemCache", "EnableRecommendations"],
        ),
        ("PaymentErrors", &["EnablePayPal"]),
        ("cpu_usage", &[]),
    ];
    let n = rng.usize(3..=7);
    let span = window_min * 60_000 * 2;
    let mut occs = Vec::new();
    for k in 0..n {
        let (alert, flags) = alerts[rng.usize(0..alerts.len())];
        let fire_at = t0 + rng.i64(0..=span);
        let resolve_at = fire_at + rng.i64(15_000..=300_000);
        occs.push(occ(
            alert,
            &format!("b{k}"),
            fire_at,
            resolve_at,
            flags.to_vec(),
        ));
    }
    occs.sort_by_key(|o| o.fire_at);
    let (streams, last, ha_dup) = timeline(rng, &occs, vec![], t0);
    let hand = draw_hand_change(rng, &occs, t0, last, 0.2);
    let faults = draw_faults(rng, t0, last);
    Scenario {
        name,
        skews,
        rules,
        rules_later: None,
        occs,
        streams,
        repeat_ms: rng.i64(20_000..=180_000),
        ha_dup,
        hand,
        hand_rollout: vec![],
        strategies: vec![],
        faults,
        group: None,
        vars,
        budget: Some((max, window_min * 60_000)),
    }
}
