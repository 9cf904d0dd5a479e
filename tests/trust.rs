//! Trust under faults: one test per finding of the fault review, each named for
//! the behaviour that failed before the claim protocol of src/claim.

mod support;

use serde_json::Value;
use support::*;

const PROMO: &str = "EnablePromotion";

/// One HighFailureRate alert ("Failure rate increase": EnablePromotion off) on `instance`.
fn failure(status: &str, instance: &str) -> Vec<u8> {
    let body = alertmanager(
        status,
        &[(
            "HighFailureRate",
            Some("Failure rate increase"),
            &[("instance", instance)],
        )],
    );
    // A fingerprint of its own per instance, as Alertmanager gives.
    String::from_utf8(body)
        .unwrap()
        .replace("fp0HighFailureRate", &format!("fp-{instance}"))
        .into_bytes()
}

fn outcome(report: &Value) -> &str {
    report["problems"][0]["outcome"].as_str().unwrap()
}

fn turned(r: &Recorder, state: &str) -> usize {
    r.posts()
        .iter()
        .filter(|s| {
            s.url
                .ends_with(&format!("/{PROMO}/environments/production/{state}"))
        })
        .count()
}

#[test]
fn an_undo_survives_unleash_applying_the_change_and_the_reply_timing_out() {
    let r = Recorder::new();
    // Unleash applies the first "off" but the reply is lost.
    let flags = r.flags.clone();
    let lost = std::cell::Cell::new(true);
    r.answer(move |s| {
        if s.method == "POST" && s.url.ends_with("/off") && lost.replace(false) {
            flags
                .borrow_mut()
                .insert((PROMO.into(), "production".into()), false);
            return Err(remediator::platform::SendError::Timeout(
                "lost reply".into(),
            ));
        }
        let mut f = flags.borrow_mut();
        let on = f[&(PROMO.to_string(), "production".to_string())];
        if s.method == "POST" {
            f.insert((PROMO.into(), "production".into()), s.url.ends_with("/on"));
            return respond(200, "");
        }
        respond(
            200,
            &format!(r#"{{"environments":[{{"name":"production","enabled":{on}}}]}}"#),
        )
    });
    let (_, report) = r.post("/", &failure("firing", "a"));
    assert!(matches!(outcome(&report), "acted" | "failed"), "{report}");
    // Alertmanager's retry sees the flag already off; the prior state was stored first.
    r.post("/", &failure("firing", "a"));
    assert!(!r.flag(PROMO, "production"));
    let (status, report) = r.post("/", &failure("resolved", "a"));
    assert_eq!((status, outcome(&report)), (200, "reverted"), "{report}");
    assert!(r.flag(PROMO, "production"), "restored to on");
}

#[test]
fn overlapping_occurrences_restore_the_flag_only_when_the_last_resolves() {
    let r = Recorder::new();
    r.post("/", &failure("firing", "a"));
    r.post("/", &failure("firing", "b"));
    assert!(!r.flag(PROMO, "production"));
    assert_eq!(
        turned(&r, "off"),
        2,
        "both hold the flag (the second send is idempotent)"
    );
    let (_, report) = r.post("/", &failure("resolved", "a"));
    assert!(
        report["problems"][0]["actions"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("1 other occurrence(s) still hold it"),
        "{report}"
    );
    assert!(
        !r.flag(PROMO, "production"),
        "b still fires: the flag stays off"
    );
    assert_eq!(turned(&r, "on"), 0);
    let (_, report) = r.post("/", &failure("resolved", "b"));
    assert_eq!(outcome(&report), "reverted", "{report}");
    assert!(r.flag(PROMO, "production"));
    assert_eq!(turned(&r, "on"), 1, "restored exactly once");
    // A repeat of either resolve changes nothing.
    r.post("/", &failure("resolved", "a"));
    assert_eq!(turned(&r, "on"), 1);
}

#[test]
fn a_resolve_that_arrives_first_stops_a_late_firing_from_acting() {
    let r = Recorder::new();
    let (status, report) = r.post("/", &failure("resolved", "a"));
    assert_eq!((status, outcome(&report)), (200, "ignored"));
    // The other Alertmanager of an HA pair, late, with the same fingerprint and startsAt.
    let (status, report) = r.post("/", &failure("firing", "a"));
    assert_eq!(
        (status, outcome(&report)),
        (200, "already_handled"),
        "{report}"
    );
    assert!(
        r.posts().is_empty(),
        "nothing was changed that nothing would undo"
    );
}

#[test]
fn the_undo_follows_the_action_taken_not_the_rules_of_today() {
    let r = Recorder::new();
    r.post("/", &failure("firing", "a"));
    assert!(!r.flag(PROMO, "production"));
    // The rules change mid-incident: the same title now turns another flag off.
    r.set_rules(
        "remediations:\n- name: \"Failure rate increase\"\n  actions:\n  - action: featuretoggle\n    value: EnableItemCache:off\n",
    );
    let (_, report) = r.post("/", &failure("firing", "a"));
    assert_eq!(outcome(&report), "already_handled");
    r.post("/", &failure("resolved", "a"));
    assert!(
        r.flag(PROMO, "production"),
        "the flag that was changed is restored"
    );
    assert!(
        r.posts().iter().all(|s| !s.url.contains("EnableItemCache")),
        "the flag of today's rule was never touched"
    );
}

#[test]
fn a_renamed_rule_does_not_act_again_on_a_still_firing_alert() {
    let r = Recorder::new();
    r.set_rules("apiVersion: remediator/v1\nrules:\n  - name: promo-off\n    match: {title: HighFailureRate}\n    actions: [{flag: EnablePromotion, state: off}]\n");
    r.post("/", &failure("firing", "a"));
    r.set_rules("apiVersion: remediator/v1\nrules:\n  - name: promotion-off\n    match: {title: HighFailureRate}\n    actions: [{flag: EnablePromotion, state: off}]\n");
    let (_, report) = r.post("/", &failure("firing", "a"));
    assert_eq!(outcome(&report), "already_handled", "{report}");
    assert_eq!(turned(&r, "off"), 1);
    // And a resolve no rule matches any more still undoes what was stored.
    r.set_rules("apiVersion: remediator/v1\nrules:\n  - name: other\n    match: {title: SomethingElse}\n    actions: [{flag: EnableItemCache, state: on}]\n");
    let (_, report) = r.post("/", &failure("resolved", "a"));
    assert_eq!(outcome(&report), "reverted", "{report}");
    assert!(r.flag(PROMO, "production"));
}

#[test]
fn an_unreadable_record_is_a_permanent_error_not_503_forever() {
    let r = Recorder::new();
    let key = remediator::claim::occurrence_key("alertmanager/fp-a/2026-11-26T14:02:06.305Z");
    r.kv.borrow_mut().insert(key.clone(), b"3".to_vec());
    r.kv.borrow_mut()
        .insert(format!("{key}/3"), b"{not json".to_vec());
    let (status, report) = r.post("/", &failure("firing", "a"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(outcome(&report), "failed");
    assert!(report["problems"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("unreadable"));
}

#[test]
fn a_breaker_wider_than_a_thousand_actions_still_trips() {
    let r = Recorder::new();
    r.set_rules("apiVersion: remediator/v1\nrules:\n  - name: scale\n    match: {title: cpu_usage}\n    actions: [{scale: '+1'}]\n    max_actions: 1500 per 1d\n");
    let mut acted = 0;
    for i in 0..1502 {
        let body = String::from_utf8(alertmanager("firing", &[("cpu_usage", None, &[])]))
            .unwrap()
            .replace(
                "2026-11-26T14:02:06.305Z",
                &format!("2026-11-26T14:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
            )
            .replace("fp0cpu_usage", &format!("fp{i}"));
        let (_, report) = r.post("/", body.as_bytes());
        if outcome(&report) == "acted" {
            acted += 1;
        }
        r.advance(10);
    }
    assert_eq!(acted, 1500, "the 1,501st occurrence finds the circuit open");
}

#[test]
fn two_hundred_alerts_held_elsewhere_wait_five_seconds_in_all_not_each() {
    let r = Recorder::new();
    let now = r.now.get();
    let alerts: Vec<String> = (0..200)
        .map(|i| {
            format!(r#"{{"status":"firing","labels":{{"alertname":"HighFailureRate","i":"{i}"}},"annotations":{{"summary":"Failure rate increase"}},"startsAt":"2026-11-26T14:02:06.305Z","fingerprint":"f{i}"}}"#)
        })
        .collect();
    for i in 0..200 {
        let key = remediator::claim::occurrence_key(&format!(
            "alertmanager/f{i}/2026-11-26T14:02:06.305Z"
        ));
        let rec = serde_json::json!({"occurrence": "x", "rule": "Failure rate increase", "phase": "acting",
            "lease": {"ticket": 9, "until_ms": now + 60_000}, "expires_ms": now + 86_400_000});
        r.kv.borrow_mut().insert(key.clone(), b"9".to_vec());
        r.kv.borrow_mut()
            .insert(format!("{key}/9"), rec.to_string().into_bytes());
    }
    let body = format!(
        r#"{{"version":"4","status":"firing","alerts":[{}]}}"#,
        alerts.join(",")
    );
    let (status, report) = r.post("/", body.as_bytes());
    assert_eq!(status, 503, "{report}");
    let waited = r.now.get() - now;
    assert!(waited <= 5_100, "waited {waited} ms for 200 alerts");
}

/// One Alertmanager group of HighFailureRate alerts, one per instance, each with a
/// fingerprint of its own.
fn storm(status: &str, instances: &[String]) -> Vec<u8> {
    let labels: Vec<[(&str, &str); 1]> = instances
        .iter()
        .map(|i| [("instance", i.as_str())])
        .collect();
    let alerts: Vec<TestAlert> = labels
        .iter()
        .map(|l| ("HighFailureRate", Some("Failure rate increase"), &l[..]))
        .collect();
    let mut body: Value = serde_json::from_slice(&alertmanager(status, &alerts)).unwrap();
    for (a, i) in body["alerts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(instances)
    {
        a["fingerprint"] = format!("fp-{i}").into();
    }
    serde_json::to_vec(&body).unwrap()
}

#[test]
fn a_storm_of_200_alerts_in_one_group_makes_one_change_and_one_restore() {
    let r = Recorder::new();
    let instances: Vec<String> = (0..200).map(|i| format!("i{i}")).collect();
    let (status, report) = r.post("/", &storm("firing", &instances));
    assert_eq!(status, 200, "{report}");
    let acted = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "acted")
        .count();
    assert_eq!(acted, 200, "every occurrence holds the flag");
    assert_eq!(turned(&r, "off"), 1, "one change for the whole group");
    assert_eq!(
        r.sent().iter().filter(|s| s.method == "GET").count(),
        1,
        "one read of the prior state"
    );
    assert!(!r.flag(PROMO, "production"));

    // Half resolve: the flag stays off.
    let (_, report) = r.post("/", &storm("resolved", &instances[..100]));
    assert!(
        report["problems"][99]["actions"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("100 other occurrence(s) still hold it"),
        "{}",
        report["problems"][99]
    );
    assert_eq!(turned(&r, "on"), 0);
    assert!(!r.flag(PROMO, "production"));
    // The rest resolve in one delivery: restored once, by the last.
    let (status, report) = r.post("/", &storm("resolved", &instances[100..]));
    assert_eq!(status, 200);
    assert_eq!(
        report["problems"][99]["outcome"], "reverted",
        "{}",
        report["problems"][99]
    );
    assert_eq!(turned(&r, "on"), 1);
    assert!(r.flag(PROMO, "production"));
}

#[test]
fn a_later_alert_of_a_delivery_sends_again_when_the_flag_was_restored_in_between() {
    let r = Recorder::new();
    // One delivery: occurrence a fires and resolves (restoring the flag), then b fires.
    let a = [("instance", "a")];
    let b = [("instance", "b")];
    let mut body: Value = serde_json::from_slice(&alertmanager(
        "firing",
        &[
            ("HighFailureRate", Some("Failure rate increase"), &a[..]),
            ("HighFailureRate", Some("Failure rate increase"), &a[..]),
            ("HighFailureRate", Some("Failure rate increase"), &b[..]),
        ],
    ))
    .unwrap();
    let alerts = body["alerts"].as_array_mut().unwrap();
    alerts[1]["fingerprint"] = alerts[0]["fingerprint"].clone();
    alerts[1]["status"] = "resolved".into();
    alerts[1]["endsAt"] = "2026-11-26T14:10:00Z".into();
    let (status, report) = r.post("/", &serde_json::to_vec(&body).unwrap());
    assert_eq!(status, 200, "{report}");
    assert!(
        !r.flag(PROMO, "production"),
        "b fires: the flag must be off again, not skipped as already set: {report}"
    );
    assert_eq!(turned(&r, "off"), 2, "{report}");
}

/// The Recorder, with one concurrent delivery run at a chosen moment of another: once
/// the first delivery has written what it held back (`kv_set_many`: its closing
/// records), `then` is handled as a delivery of its own.
struct Interleaved<'a> {
    inner: &'a Recorder,
    then: std::cell::RefCell<Option<Vec<u8>>>,
}

impl remediator::platform::Platform for Interleaved<'_> {
    fn send(
        &self,
        req: remediator::platform::OutboundRequest,
        timeout: std::time::Duration,
    ) -> Result<remediator::platform::OutboundResponse, remediator::platform::SendError> {
        self.inner.send(req, timeout)
    }
    fn variable(&self, name: &str) -> Option<String> {
        self.inner.variable(name)
    }
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.inner.read_file(path)
    }
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, remediator::platform::KvError> {
        self.inner.kv_get(key)
    }
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), remediator::platform::KvError> {
        self.inner.kv_set(key, value)
    }
    fn kv_delete(&self, key: &str) -> Result<(), remediator::platform::KvError> {
        self.inner.kv_delete(key)
    }
    fn kv_set_many(
        &self,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), remediator::platform::KvError> {
        self.inner.kv_set_many(entries)?;
        if let Some(body) = self.then.borrow_mut().take() {
            let (status, report) = self.inner.post("/", &body);
            assert_eq!(status, 200, "the concurrent delivery: {report}");
        }
        Ok(())
    }
    fn kv_keys(&self) -> Result<Vec<String>, remediator::platform::KvError> {
        self.inner.kv_keys()
    }
    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, remediator::platform::KvError> {
        self.inner.kv_compare_and_swap(key, expected, new)
    }
    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, remediator::platform::KvError> {
        self.inner.kv_increment(key, delta)
    }
    fn sleep(&self, duration: std::time::Duration) {
        self.inner.sleep(duration)
    }
    fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }
    fn random_u64(&self) -> u64 {
        self.inner.random_u64()
    }
    fn log(&self, line: &str) {
        self.inner.log(line);
    }
}

#[test]
fn a_storm_delivery_sends_again_when_another_delivery_restored_the_flag_between_its_alerts() {
    // One delivery carries a and b (one rule, one flag). Between them, another delivery
    // resolves a: a was the last holder, so the flag is restored and freed. b then holds
    // it afresh and must send the change itself, though this delivery already set it
    // for a: "already set" only counts while a still holds it.
    //
    // a's lease keeps others out until this delivery writes a's record, at its end or
    // before it waits: so a cpu_usage alert between a and b whose occurrence another
    // delivery holds (left under its lease: its closing write failed) makes this one
    // wait, and write a's record first; the resolve of a runs then.
    let r = Recorder::new();
    r.kv_set_fails.borrow_mut().push("audit/".into());
    let (status, _) = r.post("/", &cpu_usage_at("2026-11-26T14:02:06.305Z"));
    assert_eq!(status, 200);
    r.kv_set_fails.borrow_mut().clear();
    let instances = ["a".to_string(), "b".to_string()];
    let p = Interleaved {
        inner: &r,
        then: std::cell::RefCell::new(Some(storm("resolved", &instances[..1]))),
    };
    let mut body: Value = serde_json::from_slice(&storm("firing", &instances)).unwrap();
    let cpu: Value = serde_json::from_slice(&cpu_usage_at("2026-11-26T14:02:06.305Z")).unwrap();
    let alerts = body["alerts"].as_array_mut().unwrap();
    alerts.insert(1, cpu["alerts"][0].clone());
    let req = http::Request::post("/")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let resp = remediator::app::handle(&p, req);
    let report: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(
        (resp.status().as_u16(), outcomes(&report)),
        (
            503,
            vec![
                "acted".to_string(),
                "in_progress".to_string(),
                "acted".to_string()
            ]
        ),
        "{report}"
    );
    assert!(p.then.borrow().is_none(), "the concurrent resolve ran");
    assert_eq!((turned(&r, "off"), turned(&r, "on")), (2, 1), "{report}");
    assert!(
        !r.flag(PROMO, "production"),
        "b fires: the flag must be off. {report}"
    );
}
