//! The rules cache (docs/rules-cache.md): a valid rules file is parsed once per
//! version and then read from its key-value entry; an edit or a new fetch takes effect
//! at once; a damaged or unreadable entry costs a parse and a warning, never a verdict
//! or an error status; writes: one per rules version, none per delivery.

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use remediator::platform::FileStamp;
use remediator::rules::compiled::{hash128, hex};
use remediator::rules_source::{
    entry_key, records_key, stamp_key, text_key, SETTLED_MS, STAMP_TRUST_MS,
};
use serde_json::Value;
use support::*;

const V1: &str = "rules:\n  - name: v1-rule\n    match: {title: HighFailureRate}\n    actions: [{flag: EnablePromotion, state: off}]\n";
const V2: &str = "rules:\n  - name: v2-rule\n    match: {title: HighFailureRate}\n    actions: [{scale: '+1'}]\n";

fn entry_of(text: &str) -> String {
    entry_key(&hash128(text.as_bytes()))
}

/// The rule each problem of the report matched ("-": none).
fn rules_matched(report: &Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rule"].as_str().unwrap_or("-").to_string())
        .collect()
}

/// Three alerts: the tutorial's flag rule, its scaling rule, and no rule.
fn three_alerts(i: usize) -> Vec<u8> {
    let fp = format!("{i}");
    let body = alertmanager(
        "firing",
        &[
            (
                "HighFailureRate",
                Some("Failure rate increase on carts"),
                &[],
            ),
            ("cpu_usage", None, &[]),
            ("NoRuleForThis", None, &[]),
        ],
    );
    // A new occurrence each time: vary the fingerprints.
    String::from_utf8(body)
        .unwrap()
        .replace("\"fingerprint\":\"", &format!("\"fingerprint\":\"{fp}-"))
        .into_bytes()
}

fn writes_since(r: &Recorder, from: usize) -> Vec<String> {
    r.kv_log.borrow()[from..].to_vec()
}

fn warnings(r: &Recorder) -> Vec<String> {
    r.logs
        .borrow()
        .iter()
        .filter(|l| l.contains("WARNING") && l.contains("rules"))
        .cloned()
        .collect()
}

/// What a fresh parse decides (no cache anywhere): the reference.
fn fresh(rules: &str, body: &[u8]) -> Vec<String> {
    let r = Recorder::new();
    r.set_rules(rules);
    r.kv_get_fails.borrow_mut().push("rules/compiled/".into());
    let (status, report) = r.post("/", body);
    assert_eq!(status, 200, "{report}");
    rules_matched(&report)
}

#[test]
fn bundled_rules_are_parsed_once_per_version_and_written_once() {
    let r = Recorder::new();
    let expected = fresh(TUTORIAL_RULES, &three_alerts(0));
    assert_eq!(expected, ["Failure rate increase", "cpu_usage", "-"]);
    let (status, report) = r.post("/", &three_alerts(0));
    assert_eq!(status, 200, "{report}");
    assert_eq!(rules_matched(&report), expected);
    let key = entry_of(TUTORIAL_RULES);
    let rules_writes = |log: &[String]| {
        log.iter()
            .filter(|w| w.contains(" rules/"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(rules_writes(&writes_since(&r, 0)), [format!("set {key}")]);
    // Steady state: the same deliveries, no rules write, the same other writes.
    let mut per_delivery = Vec::new();
    for i in 1..=5 {
        let from = r.kv_log.borrow().len();
        let (status, report) = r.post("/", &three_alerts(i));
        assert_eq!(status, 200, "{report}");
        assert_eq!(rules_matched(&report), expected);
        assert_eq!(
            report["rules_version"],
            format!("h128:{}", hex(&hash128(TUTORIAL_RULES.as_bytes())))
        );
        let log = writes_since(&r, from);
        assert!(rules_writes(&log).is_empty(), "{log:?}");
        per_delivery.push(log.len());
    }
    assert!(
        per_delivery.windows(2).all(|w| w[0] == w[1]),
        "{per_delivery:?}"
    );
    assert!(warnings(&r).is_empty(), "{:?}", warnings(&r));
}

#[test]
fn an_edited_bundled_file_takes_effect_at_the_next_request() {
    let r = Recorder::new();
    r.set_rules(V1);
    assert_eq!(
        rules_matched(&r.post("/", &failure_rate("firing")).1),
        ["v1-rule"]
    );
    r.set_rules(V2);
    let (_, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(rules_matched(&report), ["v2-rule"]);
    assert_eq!(
        report["rules_version"],
        format!("h128:{}", hex(&hash128(V2.as_bytes())))
    );
    assert!(r.kv.borrow().contains_key(&entry_of(V1)));
    assert!(r.kv.borrow().contains_key(&entry_of(V2)));
    // And back: the V1 entry is still good, and used.
    r.set_rules(V1);
    let from = r.kv_log.borrow().len();
    assert_eq!(
        rules_matched(&r.post("/", &failure_rate("firing")).1),
        ["v1-rule"]
    );
    assert!(!writes_since(&r, from).iter().any(|w| w.contains("rules/")));
}

/// Serves `body` at the rules URL (200, no ETag), and 200 to anything else.
fn rules_server(r: &Recorder) -> Rc<RefCell<String>> {
    r.set_var("rules_origin", "http://rules.test:8080");
    r.set_var("rules_path", "/remediation.yaml");
    r.set_var("rules_ttl_s", "30");
    let body = Rc::new(RefCell::new(V1.to_string()));
    let served = body.clone();
    r.answer(move |s| {
        if s.url.starts_with("http://rules.test") {
            return respond(200, &served.borrow());
        }
        if s.method == "GET" {
            return respond(
                200,
                r#"{"environments":[{"name":"production","enabled":true}]}"#,
            );
        }
        respond(200, "")
    });
    body
}

#[test]
fn rules_over_http_move_out_of_the_hot_record_and_a_new_version_takes_effect_after_the_ttl() {
    let r = Recorder::new();
    let served = rules_server(&r);
    assert_eq!(
        rules_matched(&r.post("/", &failure_rate("firing")).1),
        ["v1-rule"]
    );
    // The fetch wrote the text and the entry once; the source record holds neither.
    let log = writes_since(&r, 0);
    for key in [text_key(&hash128(V1.as_bytes())), entry_of(V1)] {
        assert_eq!(
            log.iter().filter(|w| **w == format!("set {key}")).count(),
            1,
            "{log:?}"
        );
    }
    let source: Value = serde_json::from_slice(&r.kv.borrow()["rules/source"]).unwrap();
    let record = source.get("value").unwrap_or(&source).to_string();
    assert!(!record.contains("v1-rule"), "{record}");
    // Within the TTL: no rules writes at all.
    let from = r.kv_log.borrow().len();
    assert_eq!(
        rules_matched(&r.post("/", &failure_rate("firing")).1),
        ["v1-rule"]
    );
    assert!(!writes_since(&r, from).iter().any(|w| w.contains("rules/")));
    // A new version after the TTL: used at once. The old entry, damaged here, is
    // never read (reading it would log a warning).
    *served.borrow_mut() = V2.to_string();
    r.kv.borrow_mut().insert(entry_of(V1), b"garbage".to_vec());
    r.advance(31_000);
    let (_, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(rules_matched(&report), ["v2-rule"]);
    assert_eq!(
        report["rules_version"],
        format!("h128:{}", hex(&hash128(V2.as_bytes())))
    );
    assert!(warnings(&r).is_empty(), "{:?}", warnings(&r));
    // GET /rules shows the text, from its record.
    let (status, rules) = r.request(
        http::Request::get("/rules").header("authorization", format!("Bearer {WEBHOOK_TOKEN}")),
        b"",
    );
    assert_eq!(status, 200, "{rules}");
    assert_eq!(rules["text"], V2);
    assert_eq!(rules["rules"][0]["name"], "v2-rule");
}

#[test]
fn a_record_from_before_the_text_moved_out_is_read_and_migrated_at_the_next_fetch() {
    let r = Recorder::new();
    rules_server(&r);
    let old = serde_json::json!({"last_good": {"url": "http://rules.test:8080/remediation.yaml",
        "text": V1, "etag": null, "last_modified": null, "fetched_at_ms": r.now.get()},
        "checked_at_ms": r.now.get(), "last_error": null});
    remediator::state::write(&r.platform, "rules/source", &old).unwrap();
    assert_eq!(
        rules_matched(&r.post("/", &failure_rate("firing")).1),
        ["v1-rule"]
    );
    r.advance(31_000);
    assert_eq!(
        rules_matched(&r.post("/", &failure_rate("firing")).1),
        ["v1-rule"]
    );
    let source = String::from_utf8(r.kv.borrow()["rules/source"].clone()).unwrap();
    assert!(!source.contains("v1-rule"), "{source}");
    assert!(source.contains(&hex(&hash128(V1.as_bytes()))), "{source}");
    assert!(r
        .kv
        .borrow()
        .contains_key(&text_key(&hash128(V1.as_bytes()))));
}

/// Damage the tutorial's entry with `damage`, then deliver: the verdicts of a fresh
/// parse, a warning, status 200, and the entry rewritten (the next delivery reads it
/// without a warning).
fn damaged_entry_is_replaced(damage: impl Fn(&mut Vec<u8>)) {
    let r = Recorder::new();
    let expected = fresh(TUTORIAL_RULES, &three_alerts(0));
    r.post("/", &three_alerts(0));
    let key = entry_of(TUTORIAL_RULES);
    let good = r.kv.borrow()[&key].clone();
    damage(r.kv.borrow_mut().get_mut(&key).unwrap());
    assert_ne!(r.kv.borrow()[&key], good);
    let (status, report) = r.post("/", &three_alerts(1));
    assert_eq!(status, 200, "{report}");
    assert_eq!(rules_matched(&report), expected);
    let w = warnings(&r);
    assert!(
        w.len() == 1 && w[0].contains("rules cache entry corrupt"),
        "{w:?}"
    );
    assert_eq!(r.kv.borrow()[&key], good, "rewritten");
    let (_, report) = r.post("/", &three_alerts(2));
    assert_eq!(rules_matched(&report), expected);
    assert_eq!(warnings(&r).len(), 1);
}

/// Where rule `i`'s record starts in a whole entry: the rule offsets are the first
/// part of the structure, whose offset is the first of the header's section offsets
/// (at 68), and count from the records part, which starts where the index ends (the
/// header says at 108).
fn record_of(e: &[u8], i: usize) -> usize {
    let u32_at = |at: usize| u32::from_le_bytes(e[at..at + 4].try_into().unwrap()) as usize;
    u32_at(108) + u32_at(u32_at(68) + 4 * i)
}

#[test]
fn a_truncated_entry_is_replaced() {
    damaged_entry_is_replaced(|e| e.truncate(e.len() / 2));
}

#[test]
fn flipped_bytes_in_a_record_are_found_mid_delivery_and_the_entry_replaced() {
    // A byte of every record's name (after its 4-byte checksum and the length):
    // whichever rule is decoded is damaged.
    damaged_entry_is_replaced(|e| {
        for i in 0..3 {
            let at = record_of(e, i);
            e[at + 6] ^= 0x20;
        }
    });
}

#[test]
fn an_entry_of_another_encoding_version_is_replaced() {
    damaged_entry_is_replaced(|e| e[4] ^= 0x7f);
}

#[test]
fn an_unreadable_entry_costs_a_parse_not_a_write_nor_an_error() {
    let r = Recorder::new();
    r.kv_get_fails.borrow_mut().push("rules/compiled/".into());
    let expected = fresh(TUTORIAL_RULES, &three_alerts(0));
    for i in 0..2 {
        let (status, report) = r.post("/", &three_alerts(i));
        assert_eq!(status, 200, "{report}");
        assert_eq!(rules_matched(&report), expected);
    }
    assert!(!r.kv_log.borrow().iter().any(|w| w.contains("rules/")));
    let w = warnings(&r);
    assert!(
        w.len() == 2 && w[0].contains("rules cache unreadable"),
        "{w:?}"
    );
}

#[test]
fn rules_whose_entry_would_exceed_1_mb_are_parsed_each_time_and_never_written() {
    // Four 260 KB titles: over 1 MB of entry.
    let long = "T".repeat(260_000);
    let mut rules = String::from("rules:\n");
    for (name, flag) in [("a", "F"), ("b", "G"), ("d", "H"), ("e", "I")] {
        rules += &format!(
            "  - name: {name}\n    match: {{title: {long}{name}}}\n    actions: [{{flag: {flag}, state: on}}]\n"
        );
    }
    rules += "  - name: c\n    match: {title: HighFailureRate}\n    actions: [{flag: EnablePromotion, state: off}]\n";
    let r = Recorder::new();
    r.set_rules(&rules);
    for i in 0..2 {
        let body = alertmanager(
            "firing",
            &[
                (&format!("{long}b"), None, &[]),
                ("HighFailureRate", Some(&format!("{i}")), &[]),
            ],
        );
        let (status, report) = r.post("/", &body);
        assert_eq!(status, 200, "{report}");
        assert_eq!(rules_matched(&report), ["b", "c"]);
    }
    assert!(!r.kv_log.borrow().iter().any(|w| w.contains("rules/")));
}

#[test]
fn get_rules_and_healthz_answer_the_same_from_the_entry() {
    let r = Recorder::new();
    let get = |path: &str| {
        r.request(
            http::Request::get(path).header("authorization", format!("Bearer {WEBHOOK_TOKEN}")),
            b"",
        )
    };
    let parsed = (get("/rules"), get("/healthz"));
    assert!(r.kv.borrow().contains_key(&entry_of(TUTORIAL_RULES)));
    let cached = (get("/rules"), get("/healthz"));
    assert_eq!(parsed, cached);
    assert_eq!((cached.0).0, 200);
    assert_eq!((cached.0).1["text"], TUTORIAL_RULES);
}

#[test]
fn the_sweep_removes_old_entries_and_keeps_the_current_ones() {
    let r = Recorder::new();
    r.post("/", &three_alerts(0));
    let current = entry_of(TUTORIAL_RULES);
    let mut old = r.kv.borrow()[&current].clone();
    // Written 8 days ago, for another text.
    old[24..32].copy_from_slice(&(r.now.get() - 8 * 86_400_000).to_le_bytes());
    let stale = entry_of("another text");
    r.kv.borrow_mut().insert(stale.clone(), old);
    let other_version = "rules/compiled/0/00000000000000000000000000000000".to_string();
    r.kv.borrow_mut()
        .insert(other_version.clone(), b"x".to_vec());
    let swept = remediator::claim::sweep::sweep(&r.platform, r.now.get(), 0).unwrap();
    assert!(swept.removed >= 2, "{swept:?}");
    let kv = r.kv.borrow();
    assert!(!kv.contains_key(&stale) && !kv.contains_key(&other_version));
    assert!(kv.contains_key(&current));
}

// ------------------------------------------------ bundled rules: the file's stamp

/// V1 edited to the same size (another rule name, another action).
const V1_SAME_SIZE: &str = "rules:\n  - name: v3-rule\n    match: {title: HighFailureRate}\n    actions: [{flag: EnablePromotion, state: on }]\n";
const RULES_FILE: &str = "/remediation.yaml";

fn stamp_writes(r: &Recorder, from: usize) -> usize {
    writes_since(r, from)
        .iter()
        .filter(|w| w.contains("rules/stamp/"))
        .count()
}

/// A recorder whose host stats files, holding `text` in a file written now.
fn stating(text: &str) -> Recorder {
    let r = Recorder::new();
    r.stat_files.set(true);
    r.replace_file(RULES_FILE, text);
    r
}

fn rule_of(r: &Recorder) -> Vec<String> {
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 200, "{report}");
    rules_matched(&report)
}

#[test]
fn a_settled_stamp_stands_in_for_the_bundled_file_which_is_then_not_read() {
    let r = stating(TUTORIAL_RULES);
    let expected = fresh(TUTORIAL_RULES, &three_alerts(0));
    // Just written: read and hashed, and no stamp recorded (it could still change
    // within the clock tick its times show).
    assert_eq!(rules_matched(&r.post("/", &three_alerts(0)).1), expected);
    assert!(r.file_reads.get() >= 1);
    assert_eq!(stamp_writes(&r, 0), 0);
    // Settled: read once more, and the stamp recorded, once.
    r.advance(SETTLED_MS);
    let from = r.kv_log.borrow().len();
    assert_eq!(rules_matched(&r.post("/", &three_alerts(1)).1), expected);
    assert_eq!(stamp_writes(&r, from), 1, "{:?}", writes_since(&r, from));
    // From then on the file is not read, and nothing of the rules is written.
    let reads = r.file_reads.get();
    for i in 2..6 {
        let from = r.kv_log.borrow().len();
        let (status, report) = r.post("/", &three_alerts(i));
        assert_eq!(status, 200, "{report}");
        assert_eq!(rules_matched(&report), expected);
        assert_eq!(
            report["rules_version"],
            format!("h128:{}", hex(&hash128(TUTORIAL_RULES.as_bytes())))
        );
        assert!(!writes_since(&r, from).iter().any(|w| w.contains("rules/")));
        r.advance(1_000);
    }
    assert_eq!(r.file_reads.get(), reads);
    // GET /rules reads the text when it is asked for.
    let (status, rules) = r.request(
        http::Request::get("/rules").header("authorization", format!("Bearer {WEBHOOK_TOKEN}")),
        b"",
    );
    assert_eq!(status, 200, "{rules}");
    assert_eq!(rules["text"], TUTORIAL_RULES);
    assert!(warnings(&r).is_empty(), "{:?}", warnings(&r));
}

#[test]
fn an_edit_in_place_that_keeps_the_size_takes_effect_at_the_next_request() {
    assert_eq!(V1.len(), V1_SAME_SIZE.len());
    let r = stating(V1);
    r.advance(SETTLED_MS);
    assert_eq!(rule_of(&r), ["v1-rule"]);
    assert_eq!(rule_of(&r), ["v1-rule"]);
    let reads = r.file_reads.get();
    assert_eq!(rule_of(&r), ["v1-rule"]);
    assert_eq!(r.file_reads.get(), reads, "found by its stamp");
    // Written in place, same size, in the same millisecond as the last request.
    r.set_rules(V1_SAME_SIZE);
    assert_eq!(rule_of(&r), ["v3-rule"]);
    r.advance(SETTLED_MS);
    assert_eq!(rule_of(&r), ["v3-rule"]);
    assert_eq!(rule_of(&r), ["v3-rule"]);
}

#[test]
fn two_same_size_edits_within_one_clock_tick_are_both_seen() {
    // The stamp of the second edit equals the first's (same identity, size and
    // times): only a stamp older than the tick may stand in for the content.
    let r = stating(V1);
    r.advance(SETTLED_MS);
    assert_eq!(rule_of(&r), ["v1-rule"]);
    r.set_rules(V1_SAME_SIZE);
    assert_eq!(rule_of(&r), ["v3-rule"]);
    r.set_rules(V1);
    assert_eq!(rule_of(&r), ["v1-rule"]);
    r.advance(SETTLED_MS);
    assert_eq!(rule_of(&r), ["v1-rule"]);
    assert_eq!(rule_of(&r), ["v1-rule"]);
}

#[test]
fn a_new_file_of_the_same_size_with_a_normalized_mtime_takes_effect() {
    // A new deployment: the files laid out anew, their modification time normalized
    // (an OCI layer's, say, 0), the same size, even the same inode number (reused).
    let r = stating(V1);
    r.set_file_modified(RULES_FILE, 0);
    r.advance(SETTLED_MS);
    assert_eq!(rule_of(&r), ["v1-rule"]);
    let reads = r.file_reads.get();
    assert_eq!(rule_of(&r), ["v1-rule"]);
    assert_eq!(r.file_reads.get(), reads, "found by its stamp");
    let before = r.file_meta.borrow()[RULES_FILE].stamp;
    r.advance(60_000);
    r.replace_file(RULES_FILE, V1_SAME_SIZE);
    r.set_file_modified(RULES_FILE, 0);
    let after = r.file_meta.borrow()[RULES_FILE].stamp;
    assert_eq!(
        (before.identity, before.size, before.modified_ns),
        (after.identity, after.size, after.modified_ns)
    );
    assert_eq!(rule_of(&r), ["v3-rule"]);
    r.advance(SETTLED_MS);
    assert_eq!(rule_of(&r), ["v3-rule"]);
    assert_eq!(rule_of(&r), ["v3-rule"]);
}

#[test]
fn a_stamp_stands_in_only_with_both_times_settled_and_sees_every_field() {
    let now_ms = 1_800_000_000_000_i64;
    let settled = i128::from(now_ms - SETTLED_MS) * 1_000_000;
    let s = FileStamp {
        identity: [7, 9],
        size: 100,
        modified_ns: Some(settled - 5),
        changed_ns: Some(settled),
    };
    let key = stamp_key(RULES_FILE, &s, now_ms).expect("settled");
    assert!(key.starts_with("rules/stamp/"));
    // No times from the host, or a time within SETTLED_MS of now or in the future.
    for t in [
        None,
        Some(settled + 1),
        Some(i128::from(now_ms + 1) * 1_000_000),
    ] {
        assert_eq!(
            stamp_key(
                RULES_FILE,
                &FileStamp {
                    modified_ns: t,
                    ..s
                },
                now_ms
            ),
            None
        );
        assert_eq!(
            stamp_key(RULES_FILE, &FileStamp { changed_ns: t, ..s }, now_ms),
            None
        );
    }
    let others = [
        stamp_key("/other.yaml", &s, now_ms),
        stamp_key(
            RULES_FILE,
            &FileStamp {
                identity: [8, 9],
                ..s
            },
            now_ms,
        ),
        stamp_key(
            RULES_FILE,
            &FileStamp {
                identity: [7, 8],
                ..s
            },
            now_ms,
        ),
        stamp_key(RULES_FILE, &FileStamp { size: 101, ..s }, now_ms),
        stamp_key(
            RULES_FILE,
            &FileStamp {
                modified_ns: Some(settled - 4),
                ..s
            },
            now_ms,
        ),
        stamp_key(
            RULES_FILE,
            &FileStamp {
                changed_ns: Some(settled - 1),
                ..s
            },
            now_ms,
        ),
    ];
    for (i, other) in others.iter().enumerate() {
        assert_ne!(other.as_deref(), Some(key.as_str()), "field {i}");
        assert!(other.is_some(), "field {i}");
    }
    // The same stamp later: the same key.
    assert_eq!(stamp_key(RULES_FILE, &s, now_ms + 86_400_000), Some(key));
}

#[test]
fn a_stamp_naming_a_missing_entry_or_a_damaged_stamp_record_costs_a_read() {
    let r = stating(V1);
    r.advance(SETTLED_MS);
    assert_eq!(rule_of(&r), ["v1-rule"]);
    let stamp =
        r.kv.borrow()
            .keys()
            .find(|k| k.starts_with("rules/stamp/"))
            .cloned()
            .expect("stamp recorded");
    // The entry swept: the file is read, the entry written again, the stamp record
    // (still right) not.
    r.kv.borrow_mut().remove(&entry_of(V1));
    let (reads, from) = (r.file_reads.get(), r.kv_log.borrow().len());
    assert_eq!(rule_of(&r), ["v1-rule"]);
    assert!(r.file_reads.get() > reads);
    let log = writes_since(&r, from);
    assert!(log.contains(&format!("set {}", entry_of(V1))), "{log:?}");
    assert_eq!(stamp_writes(&r, from), 0, "{log:?}");
    // A damaged stamp record: read, and rewritten.
    let good = r.kv.borrow()[&stamp].clone();
    r.kv.borrow_mut().get_mut(&stamp).unwrap()[10] ^= 1;
    let (reads, from) = (r.file_reads.get(), r.kv_log.borrow().len());
    assert_eq!(rule_of(&r), ["v1-rule"]);
    assert!(r.file_reads.get() > reads);
    assert_eq!(stamp_writes(&r, from), 1);
    assert_eq!(r.kv.borrow()[&stamp][8..24], good[8..24]);
    // An unreadable stamp record: read, and nothing written.
    r.kv_get_fails.borrow_mut().push("rules/stamp/".into());
    let from = r.kv_log.borrow().len();
    assert_eq!(rule_of(&r), ["v1-rule"]);
    assert!(!writes_since(&r, from).iter().any(|w| w.contains("rules/")));
    assert!(warnings(&r).is_empty(), "{:?}", warnings(&r));
}

#[test]
fn the_sweep_removes_stamp_records_after_7_days() {
    let r = stating(V1);
    r.advance(SETTLED_MS);
    rule_of(&r);
    let stamp = |r: &Recorder| {
        r.kv.borrow()
            .keys()
            .find(|k| k.starts_with("rules/stamp/"))
            .cloned()
    };
    let key = stamp(&r).expect("stamp recorded");
    remediator::claim::sweep::sweep(&r.platform, r.now.get(), 0).unwrap();
    assert_eq!(stamp(&r).as_deref(), Some(key.as_str()), "kept while young");
    r.advance(7 * 86_400_000 + 1);
    remediator::claim::sweep::sweep(&r.platform, r.now.get(), 0).unwrap();
    assert_eq!(stamp(&r), None);
    // The next request records it again (the file's stamp is unchanged).
    assert_eq!(rule_of(&r), ["v1-rule"]);
    assert_eq!(stamp(&r), Some(key));
}

// ------------------------------------------------ a large entry: index and records apart

/// 400 rules (a records part over 8 KB), the last matching `HighFailureRate`.
fn many_rules() -> String {
    let mut t = String::from("rules:\n");
    for i in 0..400 {
        t += &format!(
            "  - name: r{i}\n    match: {{title: Svc{i}Down}}\n    actions: [{{flag: F{i}, state: on}}]\n"
        );
    }
    t + "  - name: last\n    match: {title: HighFailureRate}\n    actions: [{flag: EnablePromotion, state: off}]\n"
}

fn no_match(i: usize) -> Vec<u8> {
    alertmanager("firing", &[(&format!("NoRuleForThis{i}"), None, &[])])
}

#[test]
fn a_large_entry_is_two_values_and_a_request_without_a_candidate_reads_only_the_index() {
    let rules = many_rules();
    let hash = hash128(rules.as_bytes());
    let r = Recorder::new();
    r.set_rules(&rules);
    let (status, report) = r.post("/", &no_match(0));
    assert_eq!(status, 200, "{report}");
    let writes: Vec<String> = writes_since(&r, 0)
        .into_iter()
        .filter(|w| w.contains(" rules/"))
        .collect();
    // One transaction, the records before the index that names them.
    assert_eq!(
        writes,
        [format!(
            "set_many {} {}",
            records_key(&hash),
            entry_key(&hash)
        )]
    );
    let (index, records) = (
        r.kv.borrow()[&entry_key(&hash)].len(),
        r.kv.borrow()[&records_key(&hash)].len(),
    );
    assert!(records > 8 * 1024 && index < records, "{index} {records}");
    // The records cannot be read: a request with no candidate does not notice.
    r.kv_get_fails.borrow_mut().push("rules/records/".into());
    let (status, report) = r.post("/", &no_match(1));
    assert_eq!(status, 200, "{report}");
    assert_eq!(rules_matched(&report), ["-"]);
    assert!(warnings(&r).is_empty(), "{:?}", warnings(&r));
    // One that must decode a rule does: the parse's verdict, a warning.
    let (status, report) = r.post("/", &failure_rate("firing"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(rules_matched(&report), ["last"]);
    let w = warnings(&r);
    assert!(
        w.len() == 1 && w[0].contains("records part unreadable"),
        "{w:?}"
    );
    // Readable again: read with the index, no warning, nothing written.
    r.kv_get_fails.borrow_mut().clear();
    let from = r.kv_log.borrow().len();
    let (_, report) = r.post(
        "/",
        &alertmanager(
            "firing",
            &[("Svc7Down", None, &[]), ("HighFailureRate", None, &[])],
        ),
    );
    assert_eq!(rules_matched(&report), ["r7", "last"]);
    assert_eq!(warnings(&r).len(), 1);
    assert!(!writes_since(&r, from).iter().any(|w| w.contains(" rules/")));
}

#[test]
fn a_missing_or_damaged_records_part_costs_a_parse_and_is_rewritten() {
    let rules = many_rules();
    let hash = hash128(rules.as_bytes());
    let expected = fresh(&rules, &failure_rate("firing"));
    assert_eq!(expected, ["last"]);
    for damage in [
        &(|r: &Recorder| {
            r.kv.borrow_mut().remove(&records_key(&hash));
        }) as &dyn Fn(&Recorder),
        // In the last record, the one decoded (the others are checked when decoded).
        &|r: &Recorder| {
            let mut kv = r.kv.borrow_mut();
            let v = kv.get_mut(&records_key(&hash)).unwrap();
            let at = v.len() - 10;
            v[at] ^= 0x20;
        },
        &|r: &Recorder| {
            r.kv.borrow_mut()
                .get_mut(&records_key(&hash))
                .unwrap()
                .truncate(50);
        },
    ] {
        let r = Recorder::new();
        r.set_rules(&rules);
        r.post("/", &no_match(0));
        let good = r.kv.borrow()[&records_key(&hash)].clone();
        damage(&r);
        let (status, report) = r.post("/", &failure_rate("firing"));
        assert_eq!(status, 200, "{report}");
        assert_eq!(rules_matched(&report), expected);
        let w = warnings(&r);
        assert!(
            w.len() == 1 && w[0].contains("rules cache entry corrupt"),
            "{w:?}"
        );
        assert_eq!(r.kv.borrow()[&records_key(&hash)], good, "rewritten");
        let (_, report) = r.post("/", &failure_rate("firing"));
        assert_eq!(rules_matched(&report), expected);
        assert_eq!(warnings(&r).len(), 1);
    }
}

#[test]
fn the_sweep_removes_records_without_their_index_or_of_another_version() {
    let rules = many_rules();
    let hash = hash128(rules.as_bytes());
    let r = Recorder::new();
    r.set_rules(&rules);
    r.post("/", &no_match(0));
    let records = r.kv.borrow()[&records_key(&hash)].clone();
    let orphan = records_key(&hash128(b"a text whose index is gone"));
    let other_version = format!("rules/records/1/{}", hex(&hash));
    for k in [&orphan, &other_version] {
        r.kv.borrow_mut().insert(k.clone(), records.clone());
    }
    remediator::claim::sweep::sweep(&r.platform, r.now.get(), 0).unwrap();
    {
        let kv = r.kv.borrow();
        assert!(!kv.contains_key(&orphan) && !kv.contains_key(&other_version));
        assert!(kv.contains_key(&records_key(&hash)) && kv.contains_key(&entry_key(&hash)));
    }
    // Written 8 days ago: both go (the bundled file's are written again when needed).
    let eight_days_ago = (r.now.get() - 8 * 86_400_000).to_le_bytes();
    r.kv.borrow_mut().get_mut(&entry_key(&hash)).unwrap()[24..32].copy_from_slice(&eight_days_ago);
    remediator::claim::sweep::sweep(&r.platform, r.now.get(), 0).unwrap();
    let kv = r.kv.borrow();
    assert!(!kv.contains_key(&records_key(&hash)) && !kv.contains_key(&entry_key(&hash)));
}

#[test]
fn the_edit_a_stamp_cannot_see_takes_effect_within_stamp_trust_ms() {
    // Written in place, same size, its modification time set back to the old one:
    // identity, size and both times as before (docs/rules-cache.md, "Not seen").
    let r = stating(V1);
    r.advance(SETTLED_MS);
    assert_eq!(rule_of(&r), ["v1-rule"]);
    let old = r.file_meta.borrow()[RULES_FILE].stamp;
    r.advance(1_000);
    r.set_rules(V1_SAME_SIZE);
    r.set_file_modified(RULES_FILE, old.modified_ns.unwrap());
    assert_eq!(r.file_meta.borrow()[RULES_FILE].stamp, old);
    assert_eq!(rule_of(&r), ["v1-rule"], "not seen: the stamp is unchanged");
    // Once the record is STAMP_TRUST_MS old, the file is read again: seen, and the
    // record rewritten (one write), then trusted again.
    r.advance(STAMP_TRUST_MS);
    let from = r.kv_log.borrow().len();
    assert_eq!(rule_of(&r), ["v3-rule"]);
    assert_eq!(stamp_writes(&r, from), 1);
    let reads = r.file_reads.get();
    let from = r.kv_log.borrow().len();
    assert_eq!(rule_of(&r), ["v3-rule"]);
    assert_eq!(r.file_reads.get(), reads);
    assert_eq!(stamp_writes(&r, from), 0);
}
