//! Static checks over a parsed rule set: rules that can never match, rules partly
//! shadowed by an earlier one, scaling actions with nothing to scale, and near-miss
//! names. Conservative: a warning is given only when it is certain.

use remediator::rules::matcher::{Matcher, Op};
use remediator::rules::{Action, Rule, RuleSet, TitleMatch};

/// Does every string `narrow` matches also match `wide`?
fn title_covered(narrow: &TitleMatch, wide: &TitleMatch) -> bool {
    use TitleMatch::{Exact, Prefix, Regex};
    match (narrow, wide) {
        (Exact(a), Exact(b)) => a == b,
        (Exact(a), Prefix(b)) => a.starts_with(b.as_str()),
        (Exact(a), Regex(r)) => r.is_match(a),
        (Prefix(a), Prefix(b)) => a.starts_with(b.as_str()),
        (Regex(a), Regex(b)) => a.as_str() == b.as_str(),
        _ => false,
    }
}

/// Does every label value `narrow` accepts (a missing label being "") satisfy `wide`?
fn implies(narrow: &Matcher, wide: &Matcher) -> bool {
    if narrow.name != wide.name {
        return false;
    }
    if narrow == wide {
        return true;
    }
    match (narrow.op, wide.op) {
        // One value: ask `wide` about it.
        (Op::Equal, _) => wide.matches(Some(&narrow.value)),
        // `wide` excludes one value; fine if `narrow` excludes it too.
        (_, Op::NotEqual) => !narrow.matches(Some(&wide.value)),
        _ => false,
    }
}

fn accepts_everything(m: &Matcher) -> bool {
    m.op == Op::Regex && matches!(m.value.as_str(), ".*" | "(.*)" | "(?s).*")
}

/// Every label condition of `wide` holds for every problem `narrow`'s labels admit.
fn labels_covered(narrow: &Rule, wide: &Rule) -> bool {
    wide.labels
        .iter()
        .all(|w| accepts_everything(w) || narrow.labels.iter().any(|n| implies(n, w)))
}

/// Does every problem `narrow` matches also match `wide` (catch-all-ness aside)?
pub fn covers(wide: &Rule, narrow: &Rule) -> bool {
    let titles = wide.titles.is_empty()
        || (!narrow.titles.is_empty()
            && narrow
                .titles
                .iter()
                .all(|n| wide.titles.iter().any(|w| title_covered(n, w))));
    titles && labels_covered(narrow, wide)
}

fn title_text(t: &TitleMatch) -> String {
    match t {
        TitleMatch::Exact(s) => format!("titled {s:?}"),
        TitleMatch::Prefix(s) => format!("with titles starting with {s:?}"),
        TitleMatch::Regex(r) => format!("with titles matching /{}/", r.as_str()),
    }
}

/// Label matchers of one rule that no label value can satisfy together.
fn contradiction(rule: &Rule) -> Option<String> {
    for m in &rule.labels {
        if m.op != Op::Equal {
            continue;
        }
        if let Some(other) = rule
            .labels
            .iter()
            .find(|o| o.name == m.name && !o.matches(Some(&m.value)))
        {
            return Some(format!("{m} and {other} contradict each other"));
        }
    }
    None
}

pub fn rule_warnings(set: &RuleSet) -> Vec<(String, String)> {
    let rules = &set.rules;
    let mut out = Vec::new();
    for (j, rule) in rules.iter().enumerate() {
        let mut warned = false;
        if let Some(why) = contradiction(rule) {
            out.push((
                rule.name.clone(),
                format!("can never match: its label matchers {why}"),
            ));
            warned = true;
        }
        // Who gets this rule's problems first: for an ordinary rule, any earlier
        // ordinary rule; for a catch-all, every ordinary rule and earlier catch-alls.
        let earlier = rules[..j].iter().filter(|i| i.catch_all == rule.catch_all);
        let ordinary_anywhere = rules
            .iter()
            .enumerate()
            .filter(|(k, i)| rule.catch_all && *k != j && !i.catch_all)
            .map(|(_, i)| i);
        if !warned {
            if let Some(i) = earlier
                .clone()
                .chain(ordinary_anywhere)
                .find(|i| covers(i, rule))
            {
                let what = if covers(rule, i) {
                    format!("rule {:?} has the same conditions and wins", i.name)
                } else if rule.catch_all && !i.catch_all {
                    format!(
                        "rule {:?} matches every problem it matches, and ordinary rules come before catch-alls",
                        i.name
                    )
                } else {
                    format!(
                        "rule {:?} above matches every problem it matches (the first matching rule wins)",
                        i.name
                    )
                };
                out.push((rule.name.clone(), format!("can never match: {what}")));
                warned = true;
            }
        }
        if !warned && rule.titles.len() > 1 {
            // Partly shadowed: some of its title conditions belong to an earlier rule.
            for i in earlier {
                if !labels_covered(rule, i) || i.titles.is_empty() {
                    continue;
                }
                let taken: Vec<String> = rule
                    .titles
                    .iter()
                    .filter(|n| i.titles.iter().any(|w| title_covered(n, w)))
                    .map(title_text)
                    .collect();
                if !taken.is_empty() {
                    out.push((
                        rule.name.clone(),
                        format!(
                            "partly shadowed: problems {} always go to rule {:?} above (the first matching rule wins)",
                            taken.join(" or "),
                            i.name
                        ),
                    ));
                    break;
                }
            }
        }
        if rule
            .actions
            .iter()
            .any(|a| matches!(a, Action::Scale { .. }))
            && !requires_service(rule)
        {
            out.push((
                rule.name.clone(),
                "scaling action has no service label to act on unless alerts carry one (require one with a matcher such as service=~\".+\")".into(),
            ));
        }
    }
    out
}

/// Whether every problem this rule matches carries a label the scaling webhook
/// takes its service from (`service`, else `deployment`, else `job`).
fn requires_service(rule: &Rule) -> bool {
    rule.labels
        .iter()
        .any(|m| matches!(m.name.as_str(), "service" | "deployment" | "job") && !m.matches(None))
}

/// Levenshtein distance over characters.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (k, cb) in b.iter().enumerate() {
            let cur = row[k + 1];
            row[k + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[k])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The closest known name, if it is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let limit = (name.chars().count() / 4).clamp(2, 4);
    known
        .into_iter()
        .map(|k| (distance(&lower, &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, k)| (*d, *k))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use remediator::rules;

    fn warnings(yaml: &str) -> Vec<String> {
        rule_warnings(&rules::parse(yaml).unwrap())
            .into_iter()
            .map(|(r, w)| format!("{r}: {w}"))
            .collect()
    }

    #[test]
    fn keptn_prefix_shadows_longer_name() {
        let w = warnings(
            "remediations:\n- name: Failure\n  actions: [{action: featuretoggle, value: 'A:on'}]\n- name: Failure rate\n  actions: [{action: featuretoggle, value: 'B:on'}]\n",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("Failure rate: can never match: rule \"Failure\" above"),
            "{w:?}"
        );
    }

    #[test]
    fn tutorial_only_warns_about_scaling() {
        let w = warnings(include_str!("../tests/fixtures/rules/tutorial.yaml"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("cpu_usage: scaling action has no service label"),
            "{w:?}"
        );
    }

    #[test]
    fn own_format_cases() {
        let w = warnings(
            r#"
rules:
  - name: wide
    match: {title: A, labels: ['severity=~"critical|warning"']}
    actions: [{flag: F, state: on}]
  - name: narrow
    match: {title: A, labels: ['severity="critical"', 'service="carts"']}
    actions: [{flag: F, state: on}]
  - name: same
    match: {title: A, labels: ['severity=~"critical|warning"']}
    actions: [{flag: F, state: on}]
  - name: contradictory
    match: {labels: ['severity="a"', 'severity="b"']}
    actions: [{flag: F, state: on}]
  - name: catch
    default: true
    actions: [{flag: F, state: on}]
  - name: catch2
    default: true
    match: {title: Z}
    actions: [{flag: F, state: on}]
  - name: partly
    match: {title: A, title_prefix: B, labels: ['severity="warning"']}
    actions: [{scale: "+1"}]
  - name: scaled
    match: {title: Q, labels: ['service=~".+"']}
    actions: [{scale: "+1"}]
  - name: different-labels
    match: {title: A, labels: ['severity="info"']}
    actions: [{flag: F, state: on}]
"#,
        );
        let has = |needle: &str| w.iter().any(|x| x.starts_with(needle));
        assert!(has("narrow: can never match: rule \"wide\" above"), "{w:?}");
        assert!(
            has("same: can never match: rule \"wide\" has the same conditions"),
            "{w:?}"
        );
        assert!(
            has("contradictory: can never match: its label matchers"),
            "{w:?}"
        );
        assert!(has("catch2: can never match: rule \"catch\""), "{w:?}");
        assert!(
            has("partly: partly shadowed: problems titled \"A\" always go to rule \"wide\""),
            "{w:?}"
        );
        assert!(has("partly: scaling action has no service label"), "{w:?}");
        assert!(!has("scaled:"), "{w:?}");
        assert!(!has("different-labels:"), "{w:?}");
        assert!(!has("catch:"), "{w:?}");
        assert!(!has("wide:"), "{w:?}");
        assert_eq!(w.len(), 6, "{w:?}");
    }

    #[test]
    fn suggestions() {
        let known = ["EnableItemsCache", "EnablePromotion"];
        assert_eq!(suggest("EnableItemCache", known), Some("EnableItemsCache"));
        assert_eq!(suggest("enablepromotion", known), Some("EnablePromotion"));
        assert_eq!(suggest("SafeMode", known), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
