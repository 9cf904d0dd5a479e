//! Matching a problem to a rule: `Rule::matches`, the reference, and `RuleSet::find`
//! over a precompiled index (hash lookups and label fast paths).

use std::collections::HashMap;

use super::matcher::{Matcher, Op};
use super::model::{Rule, RuleSet, TitleMatch};
use crate::problem::Problem;

impl Rule {
    /// Whether this rule's conditions hold for `problem` (catch-all-ness aside).
    pub fn matches(&self, problem: &Problem) -> bool {
        let title_ok = self.titles.is_empty()
            || problem
                .titles()
                .any(|t| self.titles.iter().any(|m| m.matches(t)));
        title_ok
            && self
                .labels
                .iter()
                .all(|m| m.matches(problem.label(&m.name)))
    }
}

impl RuleSet {
    /// The first matching rule in file order; a catch-all only when nothing else matches.
    ///
    /// Only the rules the index says *can* match are evaluated (every key in the
    /// index is a necessary condition of its rule), in file order, so the answer
    /// is the one a scan of every rule would give.
    pub fn find(&self, problem: &Problem) -> Option<&Rule> {
        let ix = &self.index;
        if ix.rules != self.rules.len() {
            return self.find_linear(problem);
        }
        let mut candidates = Vec::new();
        ix.candidates(problem, &mut candidates);
        let found = in_file_order(&candidates, &ix.scan, &ix.catch_all, |i| {
            let i = i as usize;
            Ok::<_, std::convert::Infallible>(ix.compiled[i].matches(&self.rules[i], problem))
        });
        match found {
            Ok(i) => i.map(|i| &self.rules[i as usize]),
            Err(never) => match never {},
        }
    }

    /// Every rule evaluated in file order: the reference `find` must agree with.
    fn find_linear(&self, problem: &Problem) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| !r.catch_all && r.matches(problem))
            .or_else(|| {
                self.rules
                    .iter()
                    .find(|r| r.catch_all && r.matches(problem))
            })
    }
}

/// The first rule `test` accepts, in the order `RuleSet::find` defines: the
/// candidates merged with the always-evaluated `scan` rules (both sorted: file
/// order), then the catch-alls. Shared by the parsed set and the cached view
/// (rules::compiled), so both pick the same rule.
pub(super) fn in_file_order<E>(
    candidates: &[u32],
    scan: &[u32],
    catch_all: &[u32],
    mut test: impl FnMut(u32) -> Result<bool, E>,
) -> Result<Option<u32>, E> {
    let (mut c, mut s) = (0, 0);
    loop {
        let i = match (candidates.get(c), scan.get(s)) {
            (Some(&a), Some(&b)) if a < b => {
                c += 1;
                a
            }
            (Some(&a), None) => {
                c += 1;
                a
            }
            (_, Some(&b)) => {
                s += 1;
                b
            }
            (None, None) => break,
        };
        if test(i)? {
            return Ok(Some(i));
        }
    }
    for &i in catch_all {
        if test(i)? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Precompiled matching for a [`RuleSet`]: hash lookups that find the few rules a
/// problem can match (by exact title, title prefix, a literal every match of a
/// title regex contains, an `=` label value or a literal prefix of an `=~`
/// label regex), and label matchers with literal fast paths. Rules with no
/// usable key (e.g. only `!=`/`!~` matchers) are evaluated for every problem.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    /// `rules.len()` when built.
    pub(super) rules: usize,
    /// Per rule, in file order.
    pub(super) compiled: Vec<Compiled>,
    /// Rules with a title equal to the key.
    pub(super) exact: HashMap<String, Vec<u32>>,
    /// Rules with a title (or anchored title regex) starting with the key.
    pub(super) prefix: Keyed,
    /// Rules whose title regex requires the key somewhere in the title.
    pub(super) contains: Substrings,
    /// Per label name: rules requiring that label to equal the key.
    pub(super) label_eq: Vec<(String, HashMap<String, Vec<u32>>)>,
    /// Per label name: rules whose `=~` regex requires the value to start with the key.
    pub(super) label_prefix: Vec<(String, Keyed)>,
    /// Non-catch-all rules without a key, evaluated for every problem.
    pub(super) scan: Vec<u32>,
    pub(super) catch_all: Vec<u32>,
}

/// Keys looked up by every prefix length in use.
#[derive(Debug, Clone, Default)]
pub(super) struct Keyed {
    pub(super) map: HashMap<String, Vec<u32>>,
    /// Distinct key lengths in bytes, ascending.
    pub(super) lens: Vec<usize>,
}

impl Keyed {
    fn insert(&mut self, key: &str, rule: u32) {
        self.map.entry(key.to_string()).or_default().push(rule);
        if let Err(at) = self.lens.binary_search(&key.len()) {
            self.lens.insert(at, key.len());
        }
    }

    /// Rules whose key is a prefix of `s`.
    fn prefixes_of(&self, s: &str, out: &mut Vec<u32>) {
        for &len in self.lens.iter().take_while(|&&len| len <= s.len()) {
            if let Some(rules) = s.get(..len).and_then(|p| self.map.get(p)) {
                out.extend_from_slice(rules);
            }
        }
    }
}

/// Keys (at least 2 bytes) looked up at every position of a text whose first two
/// bytes start some key.
#[derive(Debug, Clone, Default)]
pub(super) struct Substrings {
    pub(super) keyed: Keyed,
    /// 65,536-bit set of the keys' first two bytes (empty: no keys).
    pub(super) first2: Vec<u64>,
}

impl Substrings {
    fn insert(&mut self, key: &str, rule: u32) {
        let b = key.as_bytes();
        if self.first2.is_empty() {
            self.first2 = vec![0; 1024];
        }
        let bit = usize::from(b[0]) << 8 | usize::from(b[1]);
        self.first2[bit / 64] |= 1 << (bit % 64);
        self.keyed.insert(key, rule);
    }

    /// Rules whose key occurs in `s`.
    fn occurring_in(&self, s: &str, out: &mut Vec<u32>) {
        if self.first2.is_empty() {
            return;
        }
        for (p, w) in s.as_bytes().windows(2).enumerate() {
            let bit = usize::from(w[0]) << 8 | usize::from(w[1]);
            if self.first2[bit / 64] & (1 << (bit % 64)) != 0 && s.is_char_boundary(p) {
                self.keyed.prefixes_of(&s[p..], out);
            }
        }
    }
}

/// A rule's matchers, ready to run: the same answer as [`Rule::matches`], faster.
#[derive(Debug, Clone)]
pub(super) struct Compiled {
    /// Per title matcher: for regexes, a literal every match contains (checked first).
    needles: Vec<Option<Needle>>,
    /// Per label matcher.
    labels: Vec<LabelTest>,
}

#[derive(Debug, Clone, PartialEq)]
enum Needle {
    /// The regex is anchored (`^...`): every match starts with this.
    Prefix(String),
    Contains(String),
}

#[derive(Debug, Clone, PartialEq)]
enum LabelTest {
    /// `=` / `!=`, and `=~` / `!~` of a plain literal (`negate` for the negative ones).
    Equal { value: String, negate: bool },
    /// `=~` / `!~` of `lit1|lit2|...`.
    OneOf { values: Vec<String>, negate: bool },
    /// `=~` / `!~` of `literal.*` (`.` does not match a newline).
    PrefixAny { prefix: String, negate: bool },
    /// Any other regex; the value must start with `prefix` for it to match.
    Regex { prefix: String },
}

impl Compiled {
    pub(super) fn new(rule: &Rule) -> Compiled {
        Compiled {
            needles: rule
                .titles
                .iter()
                .map(|t| match t {
                    TitleMatch::Regex(re) => title_needle(re.as_str()),
                    _ => None,
                })
                .collect(),
            labels: rule.labels.iter().map(label_test).collect(),
        }
    }

    pub(super) fn matches(&self, rule: &Rule, problem: &Problem) -> bool {
        let title_ok = rule.titles.is_empty()
            || problem.titles().any(|t| {
                rule.titles.iter().zip(&self.needles).any(|(m, needle)| {
                    let possible = match needle {
                        None => true,
                        Some(Needle::Prefix(p)) => t.starts_with(p.as_str()),
                        Some(Needle::Contains(c)) => t.contains(c.as_str()),
                    };
                    possible && m.matches(t)
                })
            });
        title_ok
            && rule.labels.iter().zip(&self.labels).all(|(m, test)| {
                let v = problem.label(&m.name).unwrap_or("");
                match test {
                    LabelTest::Equal { value, negate } => (v == value) != *negate,
                    LabelTest::OneOf { values, negate } => values.iter().any(|x| x == v) != *negate,
                    LabelTest::PrefixAny { prefix, negate } => {
                        let hit = v
                            .strip_prefix(prefix.as_str())
                            .is_some_and(|rest| !rest.contains('\n'));
                        hit != *negate
                    }
                    LabelTest::Regex { prefix } => match m.op {
                        // The regex cannot match without the prefix.
                        Op::Regex => v.starts_with(prefix.as_str()) && m.matches(Some(v)),
                        _ => !v.starts_with(prefix.as_str()) || m.matches(Some(v)),
                    },
                }
            })
    }
}

/// Characters that are literals wherever they appear in a regex outside a class
/// (letters and digits, and punctuation with no meaning in regex-lite's syntax).
fn is_literal(c: char) -> bool {
    c.is_alphanumeric() || " _-:/@,=%!<>;'\"".contains(c)
}

/// Whether `pattern` may have an alternation outside any group (conservative:
/// true when unsure).
fn may_alternate_at_top(pattern: &str) -> bool {
    if pattern.contains('[') {
        return pattern.contains('|');
    }
    let mut depth = 0i32;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            '|' if depth <= 0 => return true,
            _ => {}
        }
    }
    false
}

/// The leading run of literal characters every match of `pattern` starts with
/// (empty when none), and whether it is the whole pattern.
fn leading_literal(pattern: &str) -> (&str, bool) {
    if may_alternate_at_top(pattern) {
        return ("", false);
    }
    let end = pattern
        .char_indices()
        .find(|&(_, c)| !is_literal(c))
        .map_or(pattern.len(), |(i, _)| i);
    let run = &pattern[..end];
    match pattern[end..].chars().next() {
        None => (run, true),
        // A quantifier applies to the run's last character only.
        Some('*' | '?' | '{' | '+') => {
            let keep = run.char_indices().last().map_or(0, |(i, _)| i);
            (&run[..keep], false)
        }
        Some(_) => (run, false),
    }
}

/// What every match of an (unanchored, searching) title regex contains.
fn title_needle(pattern: &str) -> Option<Needle> {
    match pattern.strip_prefix('^') {
        Some(rest) => {
            let (lit, _) = leading_literal(rest);
            // `^a|b` alternates at the top: only `^` then a literal run counts.
            (!lit.is_empty() && !may_alternate_at_top(pattern))
                .then(|| Needle::Prefix(lit.to_string()))
        }
        None => {
            let (lit, _) = leading_literal(pattern);
            (!lit.is_empty()).then(|| Needle::Contains(lit.to_string()))
        }
    }
}

/// A label matcher's fast path. Regexes are anchored (`^(?:...)$`) by [`Matcher`].
fn label_test(m: &Matcher) -> LabelTest {
    let negate = matches!(m.op, Op::NotEqual | Op::NotRegex);
    if matches!(m.op, Op::Equal | Op::NotEqual) {
        return LabelTest::Equal {
            value: m.value.clone(),
            negate,
        };
    }
    let pattern = m.value.as_str();
    let alternatives: Vec<&str> = pattern.split('|').collect();
    if alternatives.len() > 1 && alternatives.iter().all(|a| a.chars().all(is_literal)) {
        return LabelTest::OneOf {
            values: alternatives.iter().map(|a| a.to_string()).collect(),
            negate,
        };
    }
    match leading_literal(pattern) {
        (lit, true) => LabelTest::Equal {
            value: lit.to_string(),
            negate,
        },
        (lit, false) if pattern.len() == lit.len() + 2 && pattern.ends_with(".*") => {
            LabelTest::PrefixAny {
                prefix: lit.to_string(),
                negate,
            }
        }
        (lit, false) => LabelTest::Regex {
            prefix: lit.to_string(),
        },
    }
}

/// How a non-catch-all rule is found: the keys it is filed under.
enum Key<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Contains(&'a str),
}

impl Index {
    pub(crate) fn build(rules: &[Rule]) -> Index {
        let mut ix = Index {
            rules: rules.len(),
            compiled: rules.iter().map(Compiled::new).collect(),
            ..Index::default()
        };
        for (i, rule) in rules.iter().enumerate() {
            let n = i as u32;
            if rule.catch_all {
                ix.catch_all.push(n);
                continue;
            }
            // 1. The titles, when every title condition has a key (any one may match).
            let keys: Option<Vec<Key>> = rule
                .titles
                .iter()
                .zip(&ix.compiled[i].needles)
                .map(|(t, needle)| match (t, needle) {
                    (TitleMatch::Exact(s), _) => Some(Key::Exact(s)),
                    (TitleMatch::Prefix(s), _) => Some(Key::Prefix(s)),
                    (TitleMatch::Regex(_), Some(Needle::Prefix(p))) => Some(Key::Prefix(p)),
                    (TitleMatch::Regex(_), Some(Needle::Contains(c))) if c.len() >= 2 => {
                        Some(Key::Contains(c))
                    }
                    (TitleMatch::Regex(_), _) => None,
                })
                .collect();
            if let Some(keys) = keys.filter(|k| !k.is_empty()) {
                for key in keys {
                    match key {
                        Key::Exact(s) => ix.exact.entry(s.to_string()).or_default().push(n),
                        Key::Prefix(s) => ix.prefix.insert(s, n),
                        Key::Contains(s) => ix.contains.insert(s, n),
                    }
                }
                continue;
            }
            // 2. Else one label condition (all must hold): `=`, alertname first; else
            //    an `=~` with a literal prefix.
            let eq = |m: &&Matcher| m.op == Op::Equal;
            let by_eq = rule
                .labels
                .iter()
                .filter(eq)
                .find(|m| m.name == "alertname")
                .or_else(|| rule.labels.iter().find(eq));
            if let Some(m) = by_eq {
                let at = match ix.label_eq.iter().position(|(name, _)| *name == m.name) {
                    Some(at) => at,
                    None => {
                        ix.label_eq.push((m.name.clone(), HashMap::new()));
                        ix.label_eq.len() - 1
                    }
                };
                ix.label_eq[at]
                    .1
                    .entry(m.value.clone())
                    .or_default()
                    .push(n);
                continue;
            }
            let by_prefix = rule
                .labels
                .iter()
                .zip(&ix.compiled[i].labels)
                .find_map(|(m, test)| match (m.op, test) {
                    (
                        Op::Regex,
                        LabelTest::Regex { prefix } | LabelTest::PrefixAny { prefix, .. },
                    ) if !prefix.is_empty() => Some((m, prefix.clone())),
                    _ => None,
                });
            if let Some((m, prefix)) = by_prefix {
                let at = match ix.label_prefix.iter().position(|(name, _)| *name == m.name) {
                    Some(at) => at,
                    None => {
                        ix.label_prefix.push((m.name.clone(), Keyed::default()));
                        ix.label_prefix.len() - 1
                    }
                };
                ix.label_prefix[at].1.insert(&prefix, n);
                continue;
            }
            // 3. Nothing to look up: evaluated for every problem.
            ix.scan.push(n);
        }
        ix
    }

    /// The non-catch-all rules with a key the problem has (sorted, deduplicated);
    /// `scan` rules are not included.
    fn candidates(&self, problem: &Problem, out: &mut Vec<u32>) {
        for t in problem.titles() {
            if let Some(rules) = self.exact.get(t) {
                out.extend_from_slice(rules);
            }
            self.prefix.prefixes_of(t, out);
            self.contains.occurring_in(t, out);
        }
        for (name, values) in &self.label_eq {
            if let Some(rules) = values.get(problem.label(name).unwrap_or("")) {
                out.extend_from_slice(rules);
            }
        }
        for (name, keyed) in &self.label_prefix {
            keyed.prefixes_of(problem.label(name).unwrap_or(""), out);
        }
        out.sort_unstable();
        out.dedup();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::problem::{Source, Status};
    use crate::rules::parse;

    #[test]
    fn leading_literals_are_conservative() {
        for (pattern, lit, whole) in [
            ("Disk", "Disk", true),
            ("DiskFull.*", "DiskFull", false),
            ("Disk(Full|Low)", "Disk", false),
            ("Disks?", "Disk", false),
            ("Disks*", "Disk", false),
            ("Disks+", "Disk", false),
            ("Disks{2}", "Disk", false),
            ("Disk|Mem", "", false),
            ("(?i)disk", "", false),
            ("[Dd]isk", "", false),
            ("Disk[a-z]|Mem", "", false),
            ("Di\\.sk", "Di", false),
            ("D.sk", "D", false),
            ("Höhe", "Höhe", true),
            ("a b", "a b", true),
            ("", "", true),
        ] {
            assert_eq!(leading_literal(pattern), (lit, whole), "{pattern}");
        }
        assert_eq!(title_needle("^Disk|Mem"), None);
        assert_eq!(title_needle("^Disk.*"), Some(Needle::Prefix("Disk".into())));
        assert_eq!(
            title_needle("Disk.*"),
            Some(Needle::Contains("Disk".into()))
        );
        assert_eq!(title_needle(".*Disk"), None);
    }

    #[test]
    fn label_fast_paths() {
        let t = |m: &str| label_test(&Matcher::parse(m).unwrap());
        let eq = |v: &str, negate| LabelTest::Equal {
            value: v.into(),
            negate,
        };
        assert_eq!(t(r#"a="x""#), eq("x", false));
        assert_eq!(t(r#"a!~"x""#), eq("x", true));
        assert_eq!(
            t(r#"a=~"x|y""#),
            LabelTest::OneOf {
                values: vec!["x".into(), "y".into()],
                negate: false
            }
        );
        assert_eq!(
            t(r#"a!~"kube-.*""#),
            LabelTest::PrefixAny {
                prefix: "kube-".into(),
                negate: true
            }
        );
        assert_eq!(
            t(r#"a=~"svc-(api|web)""#),
            LabelTest::Regex {
                prefix: "svc-".into()
            }
        );
    }

    /// A small deterministic generator (xorshift64*).
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const TEXTS: [&str; 18] = [
        "Disk",
        "DiskFull",
        "disk",
        "MemLow",
        "Memory",
        "Dsk",
        "Dk",
        "DiiskFull",
        "1234",
        "",
        "Höhe",
        "aa",
        "xDiskx",
        "Dis",
        "Di",
        "ab",
        "abbb",
        "Disk\nFull",
    ];
    const TITLE_REGEXES: [&str; 22] = [
        "Disk",
        "^Disk",
        "Disk.*Full",
        "^Disk|Mem",
        "Dis?k",
        "Di+sk",
        "(?i)disk",
        "[Dd]isk",
        "Disk|Memory",
        "D.sk",
        "\\d+",
        "Disk(Full|Low)",
        "^(Disk|Mem)",
        "ab*",
        "Mem[a-z]+Low|Disk",
        "Höhe",
        "Dis\\w",
        "Disk$",
        "^$",
        "a{2}",
        "^Di",
        "x?Disk",
    ];
    const LABEL_VALUES: [&str; 7] = ["", "carts", "carts-db", "orders", "a\nb", "carts\n", "x"];
    const LABEL_PATTERNS: [&str; 18] = [
        "carts",
        "carts.*",
        "carts|orders",
        "car.*",
        "c.*",
        ".*",
        "",
        "carts-.*|orders",
        "(carts|orders)",
        "cart?s",
        "[a-z]+",
        "orders|",
        "ca(rts)?",
        "carts.+",
        "x",
        "a.b",
        "carts-db",
        "(?s)carts.*",
    ];

    pub(crate) fn random_rules(rng: &mut Rng, n: usize) -> String {
        let mut y = String::from("rules:\n");
        for i in 0..n {
            y.push_str(&format!("  - name: r{i}\n    match:\n"));
            let mut conditions = 0;
            if rng.below(3) == 0 {
                y.push_str(&format!("      title: '{}'\n", rng.pick(&TEXTS)));
                conditions += 1;
            }
            if rng.below(3) == 0 {
                y.push_str(&format!("      title_prefix: '{}'\n", rng.pick(&TEXTS)));
                conditions += 1;
            }
            if rng.below(3) == 0 {
                y.push_str(&format!(
                    "      title_regex: '{}'\n",
                    rng.pick(&TITLE_REGEXES)
                ));
                conditions += 1;
            }
            let labels = rng.below(3);
            if labels > 0 || conditions == 0 {
                y.push_str("      labels:\n");
                for _ in 0..labels.max(1) {
                    let name = rng.pick(&["service", "env", "alertname"]);
                    let (op, value) = match rng.below(4) {
                        0 => ("=", rng.pick(&LABEL_VALUES[..4])),
                        1 => ("!=", rng.pick(&LABEL_VALUES[..4])),
                        2 => ("=~", rng.pick(&LABEL_PATTERNS)),
                        _ => ("!~", rng.pick(&LABEL_PATTERNS)),
                    };
                    y.push_str(&format!("        - '{name}{op}\"{value}\"'\n"));
                }
            }
            if rng.below(10) == 0 {
                y.push_str("    default: true\n");
            }
            y.push_str("    actions: [{flag: F, state: on}]\n");
        }
        y
    }

    pub(crate) fn random_problem(rng: &mut Rng) -> Problem {
        let mut labels = BTreeMap::new();
        for name in ["service", "env", "alertname"] {
            if rng.below(3) > 0 {
                let v = if name == "alertname" {
                    rng.pick(&TEXTS)
                } else {
                    rng.pick(&LABEL_VALUES)
                };
                labels.insert(name.to_string(), v.to_string());
            }
        }
        Problem {
            source: Source::Alertmanager,
            status: Status::Firing,
            title: rng.pick(&TEXTS).into(),
            summary: (rng.below(2) == 0).then(|| rng.pick(&TEXTS).to_string()),
            labels,
            annotations: BTreeMap::new(),
            starts_at: None,
            fingerprint: "f".into(),
            links: Default::default(),
        }
    }

    /// The index and the fast paths never change an answer: every compiled rule
    /// agrees with `Rule::matches`, every matching rule is a candidate, and `find`
    /// agrees with a scan of every rule.
    #[test]
    fn indexed_find_agrees_with_a_linear_scan() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut matched = 0;
        for _ in 0..300 {
            let n = 1 + rng.below(12);
            let set = parse(&random_rules(&mut rng, n)).unwrap();
            for _ in 0..100 {
                let p = random_problem(&mut rng);
                let mut candidates = Vec::new();
                set.index.candidates(&p, &mut candidates);
                for (i, rule) in set.rules.iter().enumerate() {
                    let m = rule.matches(&p);
                    assert_eq!(set.index.compiled[i].matches(rule, &p), m, "{rule:?} {p:?}");
                    if m && !rule.catch_all {
                        let n = i as u32;
                        assert!(
                            candidates.contains(&n) || set.index.scan.contains(&n),
                            "{rule:?} matches {p:?} but is not a candidate"
                        );
                    }
                }
                let found = set.find(&p).map(|r| &r.name);
                assert_eq!(found, set.find_linear(&p).map(|r| &r.name), "{p:?}");
                matched += usize::from(found.is_some());
            }
        }
        assert!(
            matched > 5_000,
            "the generator should produce matches: {matched}"
        );
    }
}
