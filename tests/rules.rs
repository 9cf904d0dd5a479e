//! The three accepted rules formats, parsed into one model, and matching.

use std::collections::BTreeMap;

mod support;

use remediator::problem::{Problem, Source, Status};
use remediator::rules::{self, Action, RulesFormat, ScaleChange};

fn alert(alertname: &str, summary: Option<&str>, labels: &[(&str, &str)]) -> Problem {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("alertname".into(), alertname.into());
    Problem {
        source: Source::Alertmanager,
        status: Status::Firing,
        title: alertname.into(),
        summary: summary.map(str::to_string),
        labels: l,
        annotations: BTreeMap::new(),
        starts_at: Some("2026-11-26T14:02:06.305Z".into()),
        fingerprint: "f".into(),
        links: Default::default(),
    }
}

fn flag(a: &Action) -> (&str, bool) {
    match a {
        Action::Flag { flag, enabled, .. } => (flag.as_str(), *enabled),
        other => panic!("expected a flag action, got {other:?}"),
    }
}

#[test]
fn tutorial_rules_parse_into_three_rules() {
    let set = rules::parse(include_str!("fixtures/rules/tutorial.yaml")).unwrap();
    assert_eq!(set.format, RulesFormat::Keptn06);
    let names: Vec<_> = set.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu_usage",
            "Response time degradation",
            "Failure rate increase"
        ]
    );
    assert_eq!(
        set.rules[0].actions,
        [Action::Scale {
            change: ScaleChange::Delta(1),
            revert: None,
            on_resolve: None,
        }]
    );
    assert_eq!(flag(&set.rules[1].actions[0]), ("EnableItemCache", true));
    assert_eq!(flag(&set.rules[2].actions[0]), ("EnablePromotion", false));
}

#[test]
fn tutorial_rules_fire_on_alertname_and_on_summary_prefix() {
    let set = rules::parse(include_str!("fixtures/rules/tutorial.yaml")).unwrap();
    let cpu = alert("cpu_usage", None, &[]);
    assert_eq!(set.find(&cpu).unwrap().name, "cpu_usage");
    let failure = alert(
        "HighFailureRate",
        Some("Failure rate increase on carts"),
        &[],
    );
    assert_eq!(set.find(&failure).unwrap().name, "Failure rate increase");
    let slow = alert("Response time degradation", None, &[]);
    assert_eq!(set.find(&slow).unwrap().name, "Response time degradation");
    assert!(set
        .find(&alert("DiskFull", Some("disk almost full"), &[]))
        .is_none());
}

#[test]
fn tutorial_as_printed_is_rejected_naming_the_line() {
    let err = rules::parse(include_str!("fixtures/rules/tutorial-as-printed.yaml")).unwrap_err();
    // Line 5 is `    value: +1`, indented under a sequence entry that already ended.
    assert_eq!(
        (err.line, err.column, err.message.as_str()),
        (
            Some(5),
            Some(10),
            "mapping values are not allowed in this context"
        )
    );
    assert_eq!(
        err.to_string(),
        "line 5, column 10: mapping values are not allowed in this context"
    );
}

#[test]
fn keptn_08_remediation_parses() {
    let text = r#"
apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: carts-remediation
spec:
  remediations:
    - problemType: Response time degradation
      actionsOnOpen:
        - action: scaling
          name: scaling
          description: Scale up
          value: "1"
    - problemType: Failure rate increase
      actionsOnOpen:
        - action: toggle-feature
          name: Toggle feature flag
          description: Toggle EnablePromotion off
          value:
            EnablePromotion: "off"
    - problemType: default
      actionsOnOpen:
        - action: featuretoggle
          name: kill switch
          value: "KillSwitch:on"
"#;
    let set = rules::parse(text).unwrap();
    assert_eq!(set.format, RulesFormat::Keptn08);
    assert_eq!(
        set.rules[0].actions,
        [Action::Scale {
            change: ScaleChange::Delta(1),
            revert: None,
            on_resolve: None,
        }]
    );
    assert_eq!(flag(&set.rules[1].actions[0]), ("EnablePromotion", false));
    assert!(set.rules[2].catch_all);
    // 0.8 matched problem types exactly; `default` catches the rest.
    let r = set
        .find(&alert("Failure rate increase", None, &[]))
        .unwrap();
    assert_eq!(r.name, "Failure rate increase");
    assert_eq!(
        set.find(&alert("Something else", None, &[])).unwrap().name,
        "default"
    );
}

const OWN: &str = r#"
apiVersion: remediator/v1
defaults:
  project: default
  environment: production
rules:
  - name: promotion-kill-switch
    match:
      title_prefix: Failure rate increase
      labels: ['severity="critical"', 'service=~"carts.*"']
    actions:
      - flag: EnablePromotion
        state: off
  - name: carts-cache
    match:
      title_regex: "^Response time .*"
      labels: ['service!="frontend"', 'team!~"qa|test"']
    environment: staging
    actions:
      - flag: EnableItemCache
        state: on
      - scale: "+2"
  - name: exact
    match:
      title: cpu_usage
    actions:
      - scale: "=5"
  - name: everything-else
    default: true
    actions:
      - flag: GlobalSafeMode
        state: on
        project: platform
"#;

#[test]
fn own_format_matchers_titles_defaults_and_several_actions() {
    let set = rules::parse(OWN).unwrap();
    assert_eq!(set.format, RulesFormat::Own);
    let find = |p: &Problem| set.find(p).map(|r| r.name.clone());

    let crit = alert(
        "X",
        Some("Failure rate increase on carts"),
        &[("severity", "critical"), ("service", "carts-db")],
    );
    assert_eq!(find(&crit).as_deref(), Some("promotion-kill-switch"));
    // Label matcher fails: falls through to the catch-all.
    let warn = alert(
        "X",
        Some("Failure rate increase on carts"),
        &[("severity", "warning"), ("service", "carts")],
    );
    assert_eq!(find(&warn).as_deref(), Some("everything-else"));

    let slow = alert("Response time p99", None, &[("service", "carts")]);
    let r = set.find(&slow).unwrap();
    assert_eq!(r.name, "carts-cache");
    match &r.actions[0] {
        Action::Flag {
            environment,
            project,
            ..
        } => {
            assert_eq!(environment.as_ref().unwrap().as_str(), "staging");
            assert_eq!(project.as_ref().unwrap().as_str(), "default");
        }
        a => panic!("{a:?}"),
    }
    assert_eq!(
        r.actions[1],
        Action::Scale {
            change: ScaleChange::Delta(2),
            revert: None,
            on_resolve: None,
        }
    );
    let qa = alert(
        "Response time p99",
        None,
        &[("service", "carts"), ("team", "qa")],
    );
    assert_eq!(find(&qa).as_deref(), Some("everything-else"));

    assert_eq!(
        find(&alert("cpu_usage", None, &[])).as_deref(),
        Some("exact")
    );
    assert_eq!(
        find(&alert("cpu_usage_high", None, &[])).as_deref(),
        Some("everything-else")
    );
    match &set.rules[3].actions[0] {
        Action::Flag {
            project,
            environment,
            ..
        } => {
            assert_eq!(project.as_ref().unwrap().as_str(), "platform");
            assert_eq!(environment.as_ref().unwrap().as_str(), "production");
        }
        a => panic!("{a:?}"),
    }
}

#[test]
fn catch_all_is_used_only_when_nothing_else_matches_even_if_listed_first() {
    let text = r#"
rules:
  - name: fallback
    default: true
    actions: [{scale: "+1"}]
  - name: specific
    match: {title: cpu_usage}
    actions: [{scale: "+3"}]
"#;
    let set = rules::parse(text).unwrap();
    assert_eq!(
        set.find(&alert("cpu_usage", None, &[])).unwrap().name,
        "specific"
    );
    assert_eq!(
        set.find(&alert("other", None, &[])).unwrap().name,
        "fallback"
    );
}

#[test]
fn invalid_rules_name_the_rule_and_field() {
    let cases: &[(&str, &str)] = &[
        ("rules:\n  - name: a\n    match: {title: x}\n    actoins: []\n", "unknown field"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: []\n", "rules[0] (\"a\"): actions must not be empty"),
        ("rules:\n  - name: a\n    match: {labels: ['sev=\"x']}\n    actions: [{scale: '+1'}]\n", "rules[0] (\"a\").match.labels[0]"),
        ("rules:\n  - name: a\n    match: {labels: ['service=~\"(\"']}\n    actions: [{scale: '+1'}]\n", "invalid regex"),
        ("rules:\n  - name: a\n    actions: [{scale: '+1'}]\n", "no match conditions"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{flag: 'bad/name', state: on}]\n", "rules[0] (\"a\").actions[0].flag"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{flag: F}]\n", "actions[0].state: required"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{scale: 'lots'}]\n", "actions[0].scale"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{scale: '+1', flag: F}]\n", "not both"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{scale: '+1'}]\n  - name: a\n    match: {title: y}\n    actions: [{scale: '+1'}]\n", "rules[1] (\"a\"): name is used"),
        ("remediations:\n- name: x\n  actions:\n  - action: reboot\n    value: now\n", "remediations[0] (\"x\").actions[0]: action: unknown action \"reboot\""),
        ("remediations:\n- name: x\n  actions:\n  - action: featuretoggle\n    value: NoColon\n", "FlagName:on"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{flag: F, rollout: 150}]\n", "rules[0] (\"a\").actions[0].rollout: 150 is not a rollout percentage (0 to 100)"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{flag: F, rollout: 'half'}]\n", "actions[0].rollout: \"half\" is not a rollout percentage"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{flag: F, rollout: 0, state: off}]\n", "actions[0].state/rollout: a flag action sets either"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{flag: F, state: off, strategy: s1}]\n", "actions[0].strategy: applies to rollout actions only"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{flag: F, rollout: 0, strategy: ' '}]\n", "actions[0].strategy: must not be empty"),
        ("rules:\n  - name: a\n    match: {title: x}\n    actions: [{scale: '+1', rollout: 5}]\n", "actions[0].scale: state/rollout/strategy"),
        ("hello: world\n", "unrecognized rules file"),
        ("rules: [\n", "line "),
    ];
    for (text, needle) in cases {
        let err = rules::parse(text).unwrap_err().to_string();
        assert!(
            err.contains(needle),
            "for {text:?}\n  got: {err}\n  want: {needle}"
        );
    }
}

/// Errors found after the YAML parsed carry the line of the node they name (promtool's
/// `FILE:LINE`), in every format: a mapping entry's key line, a list item's own line,
/// the enclosing node when the named field is absent.
#[test]
fn errors_found_after_parsing_carry_the_line_of_their_node() {
    // A valid first rule, so the errors are not all on the first lines.
    let own = |rule: &str| {
        format!(
            "apiVersion: remediator/v1\nrules:\n  - name: ok\n    match: {{title: x}}\n    \
             actions: [{{scale: '+1'}}]\n  - name: b\n{rule}"
        )
    };
    let cases = [
        // 1-6: the lines of `own("")`; the second rule starts on line 6.
        (
            own("    match:\n      labels:\n        - 'a=\"b\"'\n        - 'service=~\"carts'\n    actions: [{scale: '+1'}]\n"),
            10,
            "rules[1] (\"b\").match.labels[1]: matcher \"service=~\\\"carts\": missing closing quote",
        ),
        (
            own("    match: {labels: ['a=\"b\"', 'c=~\"(\"']}\n    actions: [{scale: '+1'}]\n"),
            7,
            "rules[1] (\"b\").match.labels[1]: matcher",
        ),
        (
            own("    match: {title: y}\n    cooldown: 10m\n    escalate_after: 5 min\n    actions: [{scale: '+1'}]\n"),
            9,
            "rules[1] (\"b\").escalate_after: \"5 min\" is not a duration",
        ),
        (
            own("    match: {title: y}\n    max_actions: 3 every 1h\n    actions: [{scale: '+1'}]\n"),
            8,
            "rules[1] (\"b\").max_actions: ",
        ),
        (
            own("    match:\n      title: y\n      title_regex: 'Disk(Full'\n    actions: [{scale: '+1'}]\n"),
            9,
            "rules[1] (\"b\").match.title_regex: invalid regex",
        ),
        (
            own("    match: {title: y}\n    actions: [{scale: '+1'}]\n    notify:\n      - channel: a b\n        body: {}\n"),
            10,
            "rules[1] (\"b\").notify[0].channel: \"a b\" is not a channel name",
        ),
        (
            own("    match: {title: y}\n    actions: [{scale: '+1'}]\n    notify:\n      - channel: s\n        on: [act, acted]\n        body: {}\n"),
            11,
            "rules[1] (\"b\").notify[0].on: \"acted\" is not act",
        ),
        (
            own("    match: {title: y}\n    actions: [{scale: '+1'}]\n    notify:\n      - channel: s\n        body:\n          text: ok\n          title: '{{ problem.titel }}'\n"),
            13,
            "rules[1] (\"b\").notify[0].body.title: unknown field \"problem.titel\"",
        ),
        (
            own("    match: {title: y}\n    actions:\n      - {flag: F, state: on}\n      - {flag: G, state: maybe}\n"),
            10,
            "rules[1] (\"b\").actions[1].state: ",
        ),
        // `revert` is absent: the action it is missing from.
        (
            own("    match: {title: y}\n    revert: true\n    actions:\n      - scale: '=3'\n        on_resolve: '=1'\n      - scale: '=3'\n"),
            12,
            "rules[1] (\"b\").actions[1].revert: a scale to =N has no inverse",
        ),
        (
            own("    match: {title: y}\n    default: true\n    actions: []\n"),
            6,
            "rules[1] (\"b\"): actions must not be empty",
        ),
        (
            own("    match: {title: y}\n    actions: [{scale: '+1'}]\n  - name: ok\n    match: {title: z}\n    actions: [{scale: '+1'}]\n"),
            9,
            "rules[2] (\"ok\"): name is used by an earlier rule",
        ),
        (
            "# a comment\ndefaults:\n  project: default\n  max_changes: 20 per fortnight\nrules:\n  - name: a\n    match: {title: x}\n    actions: [{scale: '+1'}]\n".into(),
            4,
            "defaults.max_changes: ",
        ),
        (
            "rules:\n  - name: a\n    match: {title: x}\n    actions: [{scale: '+1'}]\napiVersion: remediator/v2\n".into(),
            5,
            "apiVersion: \"remediator/v2\" is not supported",
        ),
        (
            "apiVersion: remediator/v1\n\nrules: []\n".into(),
            3,
            "the rules file defines no rules",
        ),
        // Keptn 0.6.
        (
            "remediations:\n- name: cpu_usage\n  actions:\n  - action: scaling\n    value: +1\n- name: x\n  actions:\n  - action: featuretoggle\n    value: NoColon\n".into(),
            9,
            "remediations[1] (\"x\").actions[0]: value: \"NoColon\" must be FlagName:on or FlagName:off",
        ),
        (
            "remediations:\n- name: cpu_usage\n  actions:\n  - action: scaling\n    value: +1\n  - action: reboot\n    value: now\n".into(),
            6,
            "remediations[0] (\"cpu_usage\").actions[1]: action: unknown action \"reboot\"",
        ),
        ("remediations: []\n".into(), 1, "the rules file defines no rules"),
        // Keptn 0.8.
        (
            "apiVersion: spec.keptn.sh/0.1.4\nkind: Remediations\nspec:\n  remediations: []\n".into(),
            2,
            "kind: \"Remediations\" must be Remediation",
        ),
        (
            "apiVersion: spec.keptn.sh/0.1.4\nkind: Remediation\nspec:\n  remediations:\n    - problemType: a\n      actionsOnOpen:\n        - {action: scaling, value: \"1\"}\n    - problemType: b\n      actionsOnOpen:\n        - action: scaling\n          value: {F: on}\n".into(),
            11,
            "spec.remediations[1] (\"b\").actionsOnOpen[0]: value: scaling takes a number",
        ),
        (
            "apiVersion: spec.keptn.sh/0.1.4\nkind: Remediation\nspec:\n  remediations: []\n".into(),
            4,
            "the rules file defines no rules",
        ),
    ];
    for (text, line, message) in &cases {
        for err in [
            rules::parse(text).unwrap_err(),
            rules::parse_probed(text).unwrap_err(),
        ] {
            assert!(
                err.message.starts_with(message),
                "{text}\n  got: {err}\n  want: {message}"
            );
            assert_eq!((err.line, err.column), (Some(*line), None), "{text}\n{err}");
            assert_eq!(
                err.to_string(),
                format!("line {line}: {}", err.message),
                "{text}"
            );
        }
    }
    // About the file as a whole: no line.
    let err = rules::parse("hello: world\n").unwrap_err();
    assert_eq!((err.line, err.column), (None, None), "{err}");
    assert!(
        err.to_string().starts_with("unrecognized rules file"),
        "{err}"
    );
    // The nesting check names the line, without a column.
    let err = rules::parse(&format!("rules:\n  - {}", "[".repeat(200))).unwrap_err();
    assert_eq!((err.line, err.column), (Some(2), None), "{err}");
}

#[test]
fn type_errors_carry_a_line_number() {
    let err = rules::parse("rules:\n  - name: a\n    match: {title: x}\n    actions: {flag: F}\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("line 4"), "{err}");
}

#[test]
fn yaml_alias_bomb_is_refused() {
    let bomb = support::yaml_alias_bomb();
    let err = rules::parse(&bomb).unwrap_err().to_string();
    assert!(err.contains("repetition limit"), "{err}");
}

/// `parse` takes a one-pass shortcut on a guessed format; it must give exactly what the
/// probing reference parse gives, for every file in the repository and for documents
/// built to mislead the guess.
#[test]
fn one_pass_parse_agrees_with_the_probing_parse() {
    let mut texts: Vec<String> = Vec::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.')
                    && !["target", "node_modules", "corpus"].contains(&name.as_str())
                {
                    dirs.push(path);
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                texts.push(std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    assert!(texts.len() >= 5, "found only {} YAML files", texts.len());
    let flag = "actions: [{flag: F, set: off}]";
    texts.extend([
        "remediations: \"x\nrules: y\"\n".into(),
        "note: \"a\nrules: b\"\n".into(),
        format!("rules: [{{name: r, match: {{title: t}}, {flag}}}]\nremediations: []\n"),
        format!(
            "apiVersion: spec.keptn.sh/0.1.4\nrules: [{{name: r, match: {{title: t}}, {flag}}}]\n"
        ),
        format!("apiVersion: remediator/v1\nrules: [{{name: r, match: {{title: t}}, {flag}}}]\n"),
        format!("{{rules: [{{name: r, match: {{title: t}}, {flag}}}]}}\n"),
        "remediations:\n- name: cpu\n  actions: [{action: scaling, value: +1}]\n".into(),
        "# apiVersion: spec.keptn.sh/0.1.4\nremediations: []\n".into(),
        "rules: []\n".into(),
        "rules:\n".into(),
        String::new(),
    ]);
    for text in &texts {
        let fast = rules::parse(text).map(|s| format!("{:?} {:?}", s.format, s.rules));
        let reference = rules::parse_probed(text).map(|s| format!("{:?} {:?}", s.format, s.rules));
        assert_eq!(fast, reference, "for {text:?}");
    }
}

/// A short source with counted repetitions compiles to a big program, and regex-lite
/// matches in time proportional to it: refused at parse time, naming the matcher (found
/// by the matcher fuzz target as a slow unit).
#[test]
fn regexes_that_compile_too_big_are_refused() {
    let err = rules::matcher::Matcher::parse(r#"service=~"(x{300}){300}""#).unwrap_err();
    assert!(
        err.contains("service=~") && err.contains("size limit"),
        "{err}"
    );
    let err = rules::parse(
        "rules:\n  - name: big\n    match: {title_regex: '(x{300}){300}'}\n    actions: [{scale: '+1'}]\n",
    )
    .unwrap_err().to_string();
    assert!(
        err.contains("title_regex") && err.contains("size limit"),
        "{err}"
    );
    // Ordinary counted repetitions still compile.
    assert!(rules::matcher::Matcher::parse(r#"id=~"[0-9a-f]{32}""#).is_ok());
}

/// libyaml's scanner slows with every open flow level (`rules: [[[[...` of 64 KB took
/// 18 s; found by the rules fuzz target), so deep flow nesting is refused by a linear
/// pre-scan that brackets in quotes, comments and plain scalars cannot fool.
#[test]
fn deeply_nested_flow_collections_are_refused_before_parsing() {
    let deep = "[".repeat(64_000);
    let cases = [
        format!("rules: {deep}"),
        format!(
            "rules:\n  - name: r\n    match: {{title: x}}\n    actions: {}",
            "[{".repeat(5_000)
        ),
        // A `#` inside a plain scalar is not a comment; a quote inside one is not a quote.
        format!("rules: [a#{deep}"),
        format!("x: it's\nrules: {deep} '"),
    ];
    for text in &cases {
        let err = rules::parse(text).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 128"), "{err}");
        let err = rules::parse_probed(text).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 128"), "{err}");
    }
    // Brackets that are not flow collections do not count.
    let many = "[".repeat(300);
    let ok = format!(
        "# {many}\nrules:\n  - name: a[b {many}\n    match: {{title_regex: '{many}x]'}}\n    \
         actions: [{{scale: '+1'}}]\n  - name: \"{many}\"\n    match: {{title: t}}\n    \
         actions: [{{scale: '+1'}}]\n"
    );
    let err = rules::parse(&ok)
        .map(|s| s.rules.len())
        .unwrap_err()
        .to_string();
    assert!(!err.contains("nested deeper"), "{err}");
    assert!(err.contains("title_regex"), "{err}");
}
