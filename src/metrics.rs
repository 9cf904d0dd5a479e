//! remediator's own metrics, in Prometheus's text exposition format (0.0.4).
//!
//! Counters live in key-value so that they survive instances and are shared by
//! replicas, changed only by atomic increments (Spin's SQLite `increment` fails on
//! a value it did not write itself). A delivery costs one increment:
//! - the common delivery, which touches each series once (one alert, or alerts of
//!   different outcomes), adds 1 to the count of its *signature*, the key
//!   `metrics/d/<series> <series> …` (its series exactly as exposed,
//!   `name{label="value",…}`, space-separated); a scrape adds each signature's
//!   count to each of its series. Signatures are as many as the combinations of
//!   route, status, outcome, action kind and result (and rule, for an open
//!   circuit) that occur, not as many as deliveries;
//! - a delivery that touches a series more than once (a storm of alerts) adds its
//!   delta to each series' own key, `metrics/<series>`: one increment per distinct
//!   series, never one per alert.
//!
//! What is counted is derived from the finished report by the serde names of its
//! enums, so an outcome or action kind added later is counted without a change here.
//!
//! A scrape finds the keys through an index (`metrics/index`), rebuilt from a full
//! key listing only when a delivery created a key since (it bumps
//! `metrics/generation`, once per key ever) or every [`RELIST_EVERY_MS`]: listing
//! every key of the store on every scrape would cost as much as the store is large,
//! and a fixed enumeration of the possible series would have to know every outcome,
//! action kind and rule name in advance.

use serde::Serialize;

use crate::claim::cell::decode_lock;
use crate::platform::{KvError, Platform};
use crate::report::{ActionTarget, ProblemOutcome, Report};

/// Prefix of every key this module writes.
const PREFIX: &str = "metrics/";
/// Bumped (by increment only) each time a delivery creates a counter key.
const GENERATION_KEY: &str = "metrics/generation";
/// The keys of the counters, as of a generation (plain text, never incremented).
const INDEX_KEY: &str = "metrics/index";
/// A scrape lists the keys again after this long even without a new generation
/// (a delivery that created a series but failed to bump the generation).
pub const RELIST_EVERY_MS: i64 = 10 * 60 * 1000;
/// Prefix of the per-series counters (every family's name starts so).
const SERIES_PREFIX: &str = "metrics/remediator_";
/// Prefix of the signature counters.
const SIGNATURE_PREFIX: &str = "metrics/d/";
/// Spin's key limit is 256 bytes; keys are kept below it.
const MAX_KEY_BYTES: usize = 240;
/// Most series in one signature (deliveries, problems, actions, circuit).
const MAX_SIGNATURE_SERIES: usize = 5;
/// Longest label value kept whole, in bytes (rule names are the only free-form
/// ones); even escaped, a series of one such label fits in a key.
const MAX_LABEL_BYTES: usize = 80;

pub const DELIVERIES: &str = "remediator_deliveries_total";
pub const PROBLEMS: &str = "remediator_problems_total";
pub const ACTIONS: &str = "remediator_actions_total";
pub const CIRCUIT_OPEN: &str = "remediator_circuit_open_total";
pub const NOTIFICATIONS: &str = "remediator_notifications_total";
pub const RULES_SOURCE: &str = "remediator_rules_source";
pub const RULES_LAST_FETCH: &str = "remediator_rules_last_fetch_success_timestamp_seconds";

/// The counter families, in the order they are exposed, with their help text.
const COUNTERS: [(&str, &str); 5] = [
    (
        DELIVERIES,
        "Requests to a webhook route, by route and the status code answered (one in which no rule matched any alert only with count_unmatched).",
    ),
    (
        PROBLEMS,
        "Problems (alerts) handled, by the outcome reported for them (those of a delivery no rule matched at all only with count_unmatched).",
    ),
    (ACTIONS, "Actions reported, by kind and outcome."),
    (
        CIRCUIT_OPEN,
        "Problems refused because the rule's circuit breaker was open, by rule.",
    ),
    (
        NOTIFICATIONS,
        "Notifications (notify), by channel, event and outcome.",
    ),
];

/// The states of `remediator_rules_source`, one of which is 1.
pub const RULES_STATES: [&str; 4] = ["bundled", "url", "last_known_good", "degraded"];

/// A label value escaped as the exposition format wants it: `\`, `"` and line feed.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A label value short enough for a key: cut, with a hash of the whole value so
/// that two long values that share a beginning stay apart.
fn bounded(v: &str) -> String {
    if v.len() <= MAX_LABEL_BYTES {
        return v.to_string();
    }
    let mut cut = MAX_LABEL_BYTES - 12;
    while !v.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…{}", &v[..cut], &crate::state::hash(&[v])[..8])
}

/// `name{l1="v1",…}` with escaped values; this text is also the series' key.
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut out = name.to_string();
    for (i, (k, v)) in labels.iter().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(&escape_label(&bounded(v)));
        out.push('"');
    }
    if !labels.is_empty() {
        out.push('}');
    }
    out
}

/// The serde name of a unit enum value (`"already_handled"`), in pretty JSON as the
/// report is written, so that no serializer is added to the component for this.
fn serde_name(v: &impl Serialize) -> String {
    let json = serde_json::to_vec_pretty(v).unwrap_or_default();
    let name = String::from_utf8_lossy(&json);
    name.trim_matches('"').to_string()
}

/// An action's kind: the tag serde writes first (`{"action":"featuretoggle",…}`),
/// in compact JSON as the audit writes it.
fn action_kind(target: &ActionTarget) -> String {
    let json = serde_json::to_vec(target).unwrap_or_default();
    let json = String::from_utf8_lossy(&json);
    json.strip_prefix("{\"action\":\"")
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("unknown")
        .to_string()
}

/// What one request to a webhook route adds to the counters: series → delta.
/// `report` is the whole report (before it is shortened), when there is one.
pub fn tally(route: &str, status: u16, report: Option<&Report>) -> Deltas {
    let mut deltas: Deltas = Vec::new();
    let mut add = |s: String| add_to(&mut deltas, s, 1);
    add(series(
        DELIVERIES,
        &[("route", route), ("code", &status.to_string())],
    ));
    for p in report.map(|r| r.problems.as_slice()).unwrap_or_default() {
        add(series(PROBLEMS, &[("outcome", &serde_name(&p.outcome))]));
        if p.outcome == ProblemOutcome::CircuitOpen {
            add(series(
                CIRCUIT_OPEN,
                &[("rule", p.rule.as_deref().unwrap_or(""))],
            ));
        }
        for a in &p.actions {
            add(series(
                ACTIONS,
                &[
                    ("kind", &action_kind(&a.target)),
                    ("result", &serde_name(&a.outcome)),
                ],
            ));
        }
        for n in &p.notifications {
            add(series(
                NOTIFICATIONS,
                &[
                    ("channel", &n.channel),
                    ("event", n.event.as_str()),
                    ("outcome", &serde_name(&n.outcome)),
                ],
            ));
        }
    }
    deltas
}

/// Series and how much to add to each, sorted by series, each series once.
pub type Deltas = Vec<(String, i64)>;

/// Kept sorted as it grows (a sort would add a large generic instantiation to the
/// component for a handful of entries).
fn add_to(v: &mut Deltas, series: String, n: i64) {
    match v.binary_search_by(|(s, _)| s.as_str().cmp(&series)) {
        Ok(i) => v[i].1 += n,
        Err(i) => v.insert(i, (series, n)),
    }
}

/// The keys and increments that record a delivery's deltas: its signature when
/// it touches each series once and the key fits, else one key per series.
pub fn increments(deltas: &Deltas) -> Vec<(String, i64)> {
    if deltas.is_empty() {
        return Vec::new();
    }
    let signature = format!(
        "{SIGNATURE_PREFIX}{}",
        deltas
            .iter()
            .map(|(s, _)| short(s))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if deltas.iter().all(|(_, d)| *d == 1)
        && deltas.len() <= MAX_SIGNATURE_SERIES
        && signature.len() <= MAX_KEY_BYTES
    {
        return vec![(signature, 1)];
    }
    deltas
        .iter()
        .map(|(s, d)| (format!("{PREFIX}{s}"), *d))
        .collect()
}

/// Add a delivery's deltas (see [`increments`]). Returns the errors (the caller
/// logs them; a metrics write never changes a delivery's answer).
pub fn record(p: &dyn Platform, deltas: &Deltas) -> Vec<String> {
    let mut errors = Vec::new();
    let mut created = false;
    for (key, delta) in increments(deltas) {
        if key.len() > MAX_KEY_BYTES {
            errors.push(format!("{key}: key too long"));
            continue;
        }
        match p.kv_increment(&key, delta) {
            // Counters only grow, so the increment that returns its own delta made the key.
            Ok(v) => created |= v == delta,
            Err(e) => errors.push(format!("{key}: {e}")),
        }
    }
    if created {
        if let Err(e) = p.kv_increment(GENERATION_KEY, 1) {
            errors.push(format!("generation: {e}"));
        }
    }
    errors
}

/// A counter series as a signature spells it, so that a delivery's series fit in one
/// key: `remediator_problems_total{…}` is `problems{…}`.
fn short(series: &str) -> String {
    let s = series.strip_prefix("remediator_").unwrap_or(series);
    match s.split_once('{') {
        Some((family, labels)) => {
            let family = family.strip_suffix("_total").unwrap_or(family);
            format!("{family}{{{labels}")
        }
        None => s.strip_suffix("_total").unwrap_or(s).to_string(),
    }
}

/// The series a signature's short spelling stands for (see [`short`]).
fn long(short: &str) -> String {
    match short.split_once('{') {
        Some((family, labels)) => format!("remediator_{family}_total{{{labels}"),
        None => format!("remediator_{short}_total"),
    }
}

/// The series of a signature: split at spaces outside quoted label values.
fn signature_series(sig: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in sig.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                out.push(&sig[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&sig[start..]);
    out
}

/// The index as stored: `<generation> <listed_at_ms>` and then one key per line
/// (keys hold no line feed: label values have theirs escaped).
struct Index {
    generation: i64,
    listed_at_ms: i64,
    keys: Vec<String>,
}

impl Index {
    fn encode(&self) -> String {
        let mut out = format!("{} {}", self.generation, self.listed_at_ms);
        for k in &self.keys {
            out.push('\n');
            out.push_str(k);
        }
        out
    }

    fn decode(raw: &[u8]) -> Option<Index> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut lines = text.split('\n');
        let (generation, listed_at_ms) = lines.next()?.split_once(' ')?;
        Some(Index {
            generation: generation.parse().ok()?,
            listed_at_ms: listed_at_ms.parse().ok()?,
            keys: lines.map(str::to_string).collect(),
        })
    }
}

/// Every counter as stored: (series, value), sorted by series. Lists the keys only
/// when the index is missing, behind the generation, or older than [`RELIST_EVERY_MS`].
pub fn read(p: &dyn Platform) -> Result<Vec<(String, i64)>, KvError> {
    let number = |raw: Option<Vec<u8>>| raw.as_deref().and_then(decode_lock);
    let generation = number(p.kv_get(GENERATION_KEY)?).unwrap_or(0);
    let now = p.now_ms();
    let index = p.kv_get(INDEX_KEY)?.as_deref().and_then(Index::decode);
    let keys = match index {
        Some(i) if i.generation == generation && (now - i.listed_at_ms).abs() < RELIST_EVERY_MS => {
            i.keys
        }
        _ => {
            let keys: Vec<String> = p
                .kv_keys()?
                .into_iter()
                .filter(|k| k.starts_with(SIGNATURE_PREFIX) || k.starts_with(SERIES_PREFIX))
                .collect();
            let index = Index {
                generation,
                listed_at_ms: now,
                keys,
            };
            // Losing this write only means listing again at the next scrape.
            if let Err(e) = p.kv_set(INDEX_KEY, index.encode().as_bytes()) {
                p.log(&format!(
                    "remediator: WARNING metrics index not written: {e}"
                ));
            }
            index.keys
        }
    };
    let mut sums: Deltas = Vec::new();
    for key in keys {
        let Some(v) = number(p.kv_get(&key)?) else {
            continue;
        };
        match key.strip_prefix(SIGNATURE_PREFIX) {
            Some(sig) => {
                for s in signature_series(sig) {
                    add_to(&mut sums, long(s), v);
                }
            }
            None => add_to(&mut sums, key[PREFIX.len()..].to_string(), v),
        }
    }
    Ok(sums)
}

fn family_of(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

/// The gauges computed at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauges {
    /// One of [`RULES_STATES`], or `None` when no rules could be loaded at all
    /// (then `degraded` is 1).
    pub rules_state: Option<&'static str>,
    /// When the rules URL last answered with valid rules, Unix ms.
    pub rules_last_success_ms: Option<i64>,
}

/// The exposition text: every family with `# HELP` and `# TYPE`, series grouped
/// by family and sorted.
pub fn render(counters: &[(String, i64)], gauges: &Gauges) -> String {
    let mut out = String::new();
    for (name, help) in COUNTERS {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        for (s, v) in counters.iter().filter(|(s, _)| family_of(s) == name) {
            out.push_str(&format!("{s} {v}\n"));
        }
    }
    out.push_str(&format!(
        "# HELP {RULES_SOURCE} Where the effective rules come from: 1 for the current state.\n# TYPE {RULES_SOURCE} gauge\n"
    ));
    let current = gauges.rules_state.unwrap_or("degraded");
    for state in RULES_STATES {
        let one = if state == current { "1" } else { "0" };
        out.push_str(&format!("{RULES_SOURCE}{{state=\"{state}\"}} {one}\n"));
    }
    if let Some(ms) = gauges.rules_last_success_ms {
        out.push_str(&format!(
            "# HELP {RULES_LAST_FETCH} When the rules URL last answered with valid rules (200 or 304).\n# TYPE {RULES_LAST_FETCH} gauge\n{RULES_LAST_FETCH} {}.{:03}\n",
            ms.div_euclid(1000),
            ms.rem_euclid(1000)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_long_ones_bounded() {
        assert_eq!(escape_label("a\\b\"c\nd\te"), "a\\\\b\\\"c\\nd\te");
        assert_eq!(
            series(CIRCUIT_OPEN, &[("rule", "say \"hi\"\n")]),
            "remediator_circuit_open_total{rule=\"say \\\"hi\\\"\\n\"}"
        );
        let a = format!("{}a", "\"é".repeat(300));
        let b = format!("{}b", "\"é".repeat(300));
        let (sa, sb) = (
            series(CIRCUIT_OPEN, &[("rule", &a)]),
            series(CIRCUIT_OPEN, &[("rule", &b)]),
        );
        assert_ne!(sa, sb);
        assert!(sa.len() <= MAX_KEY_BYTES - PREFIX.len(), "{}", sa.len());
    }

    #[test]
    fn a_delivery_is_one_signature_unless_it_touches_a_series_twice() {
        let d = series(DELIVERIES, &[("route", "/"), ("code", "200")]);
        let odd = series(CIRCUIT_OPEN, &[("rule", "a \"b c\" \\\" d")]);
        let once = vec![(odd.clone(), 1), (d.clone(), 1)];
        let keys = increments(&once);
        assert_eq!(
            keys,
            [(
                format!(
                    "{SIGNATURE_PREFIX}circuit_open{{rule=\"a \\\"b c\\\" \\\\\\\" d\"}} deliveries{{route=\"/\",code=\"200\"}}"
                ),
                1
            )]
        );
        let sig = keys[0].0.strip_prefix(SIGNATURE_PREFIX).unwrap();
        let back: Vec<String> = signature_series(sig).into_iter().map(long).collect();
        assert_eq!(back, [odd.clone(), d.clone()]);
        let storm = vec![(odd.clone(), 3), (d.clone(), 1)];
        assert_eq!(
            increments(&storm),
            [(format!("{PREFIX}{odd}"), 3), (format!("{PREFIX}{d}"), 1)]
        );
    }

    #[test]
    fn render_groups_families_and_shows_one_rules_state() {
        let text = render(
            &[
                (series(DELIVERIES, &[("route", "/"), ("code", "200")]), 2),
                (series(PROBLEMS, &[("outcome", "acted")]), 1),
            ],
            &Gauges {
                rules_state: Some("last_known_good"),
                rules_last_success_ms: Some(1_764_165_726_005),
            },
        );
        assert!(text.contains("# TYPE remediator_deliveries_total counter\nremediator_deliveries_total{route=\"/\",code=\"200\"} 2\n# HELP remediator_problems_total"), "{text}");
        assert!(text.contains("remediator_rules_source{state=\"last_known_good\"} 1\n"));
        assert!(text.contains("remediator_rules_source{state=\"url\"} 0\n"));
        assert!(text
            .ends_with("remediator_rules_last_fetch_success_timestamp_seconds 1764165726.005\n"));
    }
}
