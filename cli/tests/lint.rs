//! `remediator lint` against a REAL Unleash (7.x). Needs:
//!
//!   REMEDIATOR_LINT_UNLEASH_URL   e.g. http://127.0.0.1:4242
//!   REMEDIATOR_LINT_TOKEN         an admin token
//!
//! and the flags `EnableItemsCache` and `EnablePromotion` in project `default`.
//! `cli/tests/lint-against-unleash` sets all of that up over the e2e peers
//! (`tests/e2e/peers up`). Without the variables every test here is skipped, with
//! a notice.

use std::io::Write;

mod common;

use common::{lint, Run};

fn unleash() -> Option<String> {
    match (
        std::env::var("REMEDIATOR_LINT_UNLEASH_URL"),
        std::env::var("REMEDIATOR_LINT_TOKEN"),
    ) {
        (Ok(url), Ok(token)) if !url.is_empty() && !token.is_empty() => Some(url),
        _ => {
            // Written to the real stderr (libtest captures only the print macros),
            // once per run, so that a skip is visible in `cargo test` output.
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: lint against a real Unleash needs REMEDIATOR_LINT_UNLEASH_URL and \
                     REMEDIATOR_LINT_TOKEN (run cli/tests/lint-against-unleash with the e2e peers up)"
                );
            });
            None
        }
    }
}

/// `remediator lint --rules RULES --unleash-url URL --token-env REMEDIATOR_LINT_TOKEN`.
fn lint_real(rules: &str, url: &str) -> Run {
    never_prints_the_token(lint(rules, url, "REMEDIATOR_LINT_TOKEN", &[]))
}

fn never_prints_the_token(r: Run) -> Run {
    let token = std::env::var("REMEDIATOR_LINT_TOKEN").unwrap_or_default();
    assert!(
        token.is_empty() || !(r.stdout.contains(&token) || r.stderr.contains(&token)),
        "the token must never be printed"
    );
    r
}

#[test]
fn tutorial_rules_name_the_unknown_flag_and_suggest_the_real_one() {
    let Some(url) = unleash() else { return };
    let r = lint_real("tests/fixtures/rules/tutorial.yaml", &url);
    assert_eq!(r.code, 1, "an unknown flag is an error");
    assert!(r.stdout.contains(
        "error: rule \"Response time degradation\": flag \"EnableItemCache\" is unknown in project \"default\"; did you mean \"EnableItemsCache\"?"
    ));
    assert!(r.stdout.contains(
        "warning: rule \"cpu_usage\": scaling action has no service label to act on unless alerts carry one"
    ));
    // EnablePromotion exists: no error about it.
    assert!(!r.stdout.contains("\"EnablePromotion\" is unknown"));
    assert!(r.stdout.contains("1 error, 1 warning"), "{}", r.stdout);
}

#[test]
fn warnings_only_exit_0() {
    let Some(url) = unleash() else { return };
    let r = lint_real("tests/fixtures/rules/shadowed.yaml", &url);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains(
        "warning: rule \"Failure rate increase\": can never match: rule \"Failure rate\" above"
    ));
    assert!(r.stdout.contains("0 errors, 1 warning"), "{}", r.stdout);
}

#[test]
fn unknown_environments_are_errors() {
    let Some(url) = unleash() else { return };
    let r = lint_real("tests/fixtures/rules/unleash-environments.yaml", &url);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains(
        "error: rule \"cache-on-staging\": flag \"EnableItemsCache\" in project \"default\" has no environment \"staging\" (it has: development, production)"
    ), "{}", r.stdout);
    assert!(r.stdout.contains("has no environment \"developmnet\""));
    assert!(r.stdout.contains("did you mean \"development\"?"));
}

#[test]
fn unknown_project_is_an_error() {
    let Some(url) = unleash() else { return };
    let r = lint_real("tests/fixtures/rules/own.yaml", &url);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains(
        "rule \"everything-else\": project \"platform\" (for flag \"GlobalSafeMode\") does not exist in Unleash"
    ));
}

#[test]
fn a_refused_token_exits_3() {
    let Some(url) = unleash() else { return };
    let wrong = "*:*.not-a-real-token-0000";
    let r = never_prints_the_token(lint(
        "tests/fixtures/rules/tutorial.yaml",
        &url,
        "REMEDIATOR_LINT_WRONG_TOKEN",
        &[("REMEDIATOR_LINT_WRONG_TOKEN", wrong)],
    ));
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("refused the token in $REMEDIATOR_LINT_WRONG_TOKEN (401"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(wrong) && !r.stdout.contains(wrong));
}

#[test]
fn rollout_actions_need_their_flexible_rollout_strategy() {
    let Some(url) = unleash() else { return };
    let r = lint_real("tests/fixtures/rules/rollouts.yaml", &url);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let errors: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 3, "{}", r.stdout);
    assert!(r.stdout.contains(
        "error: rule \"which-one\": flag \"TwoRollouts\" in project \"default\", environment \"production\" has 2 flexibleRollout strategies"
    ), "{}", r.stdout);
    assert!(r.stdout.contains("name one in the action's strategy field"));
    assert!(r.stdout.contains(
        "error: rule \"no-such-strategy\": flag \"NewCheckout\" in project \"default\", environment \"production\" has no flexibleRollout strategy with id or title \"APAC\""
    ), "{}", r.stdout);
    assert!(
        r.stdout.contains("(\"gradual\")"),
        "the real one is named: {}",
        r.stdout
    );
    assert!(r.stdout.contains(
        "error: rule \"no-rollout-at-all\": flag \"EnableItemsCache\" in project \"default\", environment \"production\" has no flexibleRollout strategy to set a rollout on"
    ), "{}", r.stdout);
    for fine in ["checkout-down", "checkout-by-title", "eu-down"] {
        assert!(
            !errors.iter().any(|e| e.contains(fine)),
            "{fine}: {}",
            r.stdout
        );
    }
}
