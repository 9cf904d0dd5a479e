//! The canonical rules model every accepted format is parsed into.

use std::time::Duration;

use regex_lite::Regex;
use serde::Serialize;

use super::matcher::Matcher;

/// Which file format the rules came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RulesFormat {
    /// Keptn 0.6 `remediation.yaml` (`remediations: [{name, actions}]`).
    #[serde(rename = "keptn-0.6")]
    Keptn06,
    /// Keptn 0.8+ `apiVersion: spec.keptn.sh/0.1.x`, `kind: Remediation`.
    #[serde(rename = "keptn-0.8")]
    Keptn08,
    /// remediator's own format (`apiVersion: remediator/v1`, `rules:`).
    #[serde(rename = "remediator/v1")]
    Own,
}

#[derive(Debug, Clone)]
pub struct RuleSet {
    pub format: RulesFormat,
    /// In file order. Read-only after [`RuleSet::new`]: the matching index is built
    /// from it (`find` falls back to a linear scan if its length has changed).
    pub rules: Vec<Rule>,
    /// The blast-radius budget of the file's `defaults.max_changes` (remediator/v1
    /// only): at most N changes per window, per Unleash project (and scaling).
    pub max_changes: Option<(u32, Duration)>,
    pub(crate) index: super::matching::Index,
}

impl RuleSet {
    /// The rules and their precompiled matching index.
    pub fn new(format: RulesFormat, rules: Vec<Rule>) -> RuleSet {
        let index = super::matching::Index::build(&rules);
        RuleSet {
            format,
            rules,
            max_changes: None,
            index,
        }
    }
}

/// How a rule's title condition compares against a problem's titles.
#[derive(Debug, Clone)]
pub enum TitleMatch {
    Exact(String),
    /// Keptn 0.6 matched a remediation when the problem title started with its name.
    Prefix(String),
    Regex(Regex),
}

impl TitleMatch {
    pub fn matches(&self, title: &str) -> bool {
        match self {
            TitleMatch::Exact(s) => title == s,
            TitleMatch::Prefix(s) => title.starts_with(s.as_str()),
            TitleMatch::Regex(re) => re.is_match(title),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Any one of these must match the problem's title or summary (empty: no title condition).
    pub titles: Vec<TitleMatch>,
    /// All of these must match the problem's labels.
    pub labels: Vec<Matcher>,
    /// Used only when no other rule matches.
    pub catch_all: bool,
    pub actions: Vec<Action>,
    pub policy: Policy,
    /// Told after acting, reverting or a refusal (remediator/v1 only).
    pub notify: crate::notify::Notifies,
}

/// How often and how far a rule may act. The defaults are Keptn's behaviour: act on
/// every new occurrence, all actions at once, no limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// A new occurrence within this long of the rule's last action is skipped.
    pub cooldown: Option<Duration>,
    /// Circuit breaker: at most this many actions in any window this long.
    pub max_actions: Option<(u32, Duration)>,
    /// Makes `actions` a ladder: one step per firing, the next one only when the
    /// same occurrence is still firing this long after the previous step.
    pub escalate_after: Option<Duration>,
    /// Rule-wide revert-on-resolve; actions may override it.
    pub revert: Option<bool>,
    /// Decide and report, never send.
    pub dry_run: bool,
    /// Read a flag back after changing it (`None`: the `unleash_verify` variable).
    pub verify: Option<bool>,
}

impl Rule {
    /// Whether `action` is undone when the occurrence resolves: the action's own
    /// setting (or its `on_resolve`), else the rule's, else on for flags and off
    /// for scaling.
    pub fn reverts(&self, action: &Action) -> bool {
        let (own, default) = match action {
            Action::Flag { revert, .. } | Action::Rollout { revert, .. } => (*revert, true),
            // A configured on_resolve asks for something on resolve.
            Action::Scale {
                revert, on_resolve, ..
            } => (revert.or(on_resolve.map(|_| true)), false),
        };
        own.or(self.policy.revert).unwrap_or(default)
    }
}

/// A feature-flag name, project or environment: URL-safe by construction, so it
/// can never change the path (or host) a request goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UnleashName(String);

impl UnleashName {
    pub fn parse(s: &str) -> Result<UnleashName, String> {
        let ok = !s.is_empty()
            && s.len() <= 100
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        if ok {
            Ok(UnleashName(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a valid Unleash name (1-100 characters of letters, digits, '-', '_', '.', '~')"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UnleashName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `+N`, `-N` (relative) or `=N` (absolute replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleChange {
    Delta(i32),
    Target(u32),
}

impl ScaleChange {
    pub fn parse(s: &str) -> Result<ScaleChange, String> {
        let s = s.trim();
        let err = || format!("{s:?} is not a scaling value: use +N, -N or =N (e.g. +1)");
        if let Some(n) = s.strip_prefix('=') {
            return n
                .trim()
                .parse::<u32>()
                .map(ScaleChange::Target)
                .map_err(|_| err());
        }
        let delta = s.parse::<i32>().map_err(|_| err())?;
        if delta == 0 {
            return Err(format!("{s:?}: a scaling delta of 0 does nothing"));
        }
        if delta.checked_neg().is_none() {
            // Its inverse (the revert) would not be a number.
            return Err(format!(
                "{s:?}: a scaling delta must be within -{0}..=+{0}",
                i32::MAX
            ));
        }
        Ok(ScaleChange::Delta(delta))
    }
}

impl std::fmt::Display for ScaleChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaleChange::Delta(d) => write!(f, "{d:+}"),
            ScaleChange::Target(t) => write!(f, "={t}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Turn a flag on or off in one environment. `None` project/environment
    /// means the configured default.
    Flag {
        flag: UnleashName,
        enabled: bool,
        project: Option<UnleashName>,
        environment: Option<UnleashName>,
        revert: Option<bool>,
    },
    /// Set the rollout percentage of a flag's `flexibleRollout` strategy in one
    /// environment (a gradual rollout turned down during an incident).
    Rollout {
        flag: UnleashName,
        percent: Percent,
        /// Which `flexibleRollout` strategy (its id or title) when the environment has
        /// several; `None`: the only one.
        strategy: Option<String>,
        project: Option<UnleashName>,
        environment: Option<UnleashName>,
        revert: Option<bool>,
    },
    Scale {
        change: ScaleChange,
        revert: Option<bool>,
        /// What to apply on resolve instead of the inverse delta.
        on_resolve: Option<ScaleChange>,
    },
}

/// A rollout percentage, 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Percent(u8);

impl Percent {
    pub fn new(n: i64) -> Result<Percent, String> {
        u8::try_from(n)
            .ok()
            .filter(|&p| p <= 100)
            .map(Percent)
            .ok_or_else(|| format!("{n} is not a rollout percentage (0 to 100)"))
    }

    /// `50`, `"50"` or `"50%"`.
    pub fn parse(s: &str) -> Result<Percent, String> {
        let t = s.trim();
        let digits = t.strip_suffix('%').unwrap_or(t).trim();
        digits
            .parse::<i64>()
            .map_err(|_| format!("{s:?} is not a rollout percentage (0 to 100)"))
            .and_then(Percent::new)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl ScaleChange {
    /// The change that undoes this one, where there is one.
    pub fn inverse(self) -> Option<ScaleChange> {
        match self {
            ScaleChange::Delta(d) => d.checked_neg().map(ScaleChange::Delta),
            ScaleChange::Target(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_deltas_whose_inverse_overflows_are_refused_naming_the_value() {
        let err = ScaleChange::parse("-2147483648").unwrap_err();
        assert!(err.contains("\"-2147483648\""), "{err}");
        assert_eq!(
            ScaleChange::parse("-2147483647").map(ScaleChange::inverse),
            Ok(Some(ScaleChange::Delta(i32::MAX)))
        );
        // A delta made without parse has no inverse rather than a panic.
        assert_eq!(ScaleChange::Delta(i32::MIN).inverse(), None);
    }

    #[test]
    fn percentages_are_0_to_100_and_name_the_value() {
        assert_eq!(Percent::parse("50").map(Percent::get), Ok(50));
        assert_eq!(Percent::parse(" 0 % ").map(Percent::get), Ok(0));
        assert_eq!(Percent::new(100).map(Percent::get), Ok(100));
        for bad in ["101", "-1", "fifty", "", "50.5"] {
            let err = Percent::parse(bad).unwrap_err();
            assert!(err.contains("0 to 100"), "{bad}: {err}");
        }
        assert!(Percent::new(300).unwrap_err().contains("300"));
    }
}
