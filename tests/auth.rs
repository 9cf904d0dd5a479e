//! Webhook authentication: Bearer, Basic, and Grafana's HMAC signature with replay window.

mod support;

use remediator::auth::hmac_hex;
use support::*;

fn body() -> Vec<u8> {
    alertmanager("firing", &[("DiskFull", None, &[])])
}

#[test]
fn hmac_matches_rfc_4231() {
    assert_eq!(
        hmac_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn basic_auth_as_alertmanager_sends_it() {
    let r = Recorder::new();
    r.set_var("webhook_token", "");
    r.set_var("webhook_basic_user", "alertmanager");
    r.set_var("webhook_basic_password", "basic-SECRET-pw");
    // base64("alertmanager:basic-SECRET-pw")
    let good = "Basic YWxlcnRtYW5hZ2VyOmJhc2ljLVNFQ1JFVC1wdw==";
    let (status, _) = r.request(
        http::Request::post("/").header("authorization", good),
        &body(),
    );
    assert_eq!(status, 200);
    for bad in [
        "Basic YWxlcnRtYW5hZ2VyOndyb25n",
        "Basic !!!",
        "Bearer basic-SECRET-pw",
        "Basic",
    ] {
        let (status, json) = r.request(
            http::Request::post("/").header("authorization", bad),
            &body(),
        );
        assert_eq!(status, 401, "{bad}: {json}");
    }
}

#[test]
fn grafana_hmac_without_timestamp_signs_the_body() {
    let r = Recorder::new();
    r.set_var("webhook_token", "");
    r.set_var("webhook_hmac_secret", "hmac-SECRET-k");
    let b = body();
    let sig = hmac_hex(b"hmac-SECRET-k", &[&b]);
    let ok = r.request(
        http::Request::post("/grafana").header("X-Grafana-Alerting-Signature", &sig),
        &b,
    );
    // Grafana route, Alertmanager-shaped body with version "4": accepted.
    assert_eq!(ok.0, 200, "{}", ok.1);
    let tampered = String::from_utf8(b.clone())
        .unwrap()
        .replace("DiskFull", "DiskFine");
    let (status, json) = r.request(
        http::Request::post("/grafana").header("x-grafana-alerting-signature", &sig),
        tampered.as_bytes(),
    );
    assert_eq!(status, 401);
    assert_eq!(json["error"], "wrong credential or signature");
    let (_, health) = r.request(http::Request::get("/healthz"), b"");
    assert!(health["warnings"]
        .to_string()
        .contains("no replay protection"));
}

/// Only Grafana's HMAC, over "timestamp:body", with the timestamp in a header.
fn hmac_with_timestamp() -> Recorder {
    let r = Recorder::new();
    r.set_var("webhook_token", "");
    r.set_var("webhook_hmac_secret", "hmac-SECRET-k");
    r.set_var(
        "webhook_hmac_timestamp_header",
        "X-Grafana-Alerting-Timestamp",
    );
    r
}

/// A POST of `body` signed as Grafana signs it at timestamp `ts`.
fn signed_at(ts: &str, body: &[u8]) -> http::request::Builder {
    let sig = hmac_hex(b"hmac-SECRET-k", &[ts.as_bytes(), b":", body]);
    http::Request::post("/")
        .header("X-Grafana-Alerting-Signature", sig)
        .header("X-Grafana-Alerting-Timestamp", ts)
}

#[test]
fn grafana_hmac_with_timestamp_rejects_replays_outside_the_window() {
    let r = hmac_with_timestamp();
    let b = body();
    let now_s = r.now.get() / 1000;
    let signed = |ts: i64| signed_at(&ts.to_string(), &b);
    assert_eq!(r.request(signed(now_s - 10), &b).0, 200);
    let (status, json) = r.request(signed(now_s - 301), &b);
    assert_eq!(status, 401);
    assert!(
        json["error"].as_str().unwrap().contains("replay window"),
        "{json}"
    );
    let no_ts = http::Request::post("/").header(
        "X-Grafana-Alerting-Signature",
        hmac_hex(b"hmac-SECRET-k", &[&b]),
    );
    let (status, json) = r.request(no_ts, &b);
    assert_eq!(status, 401);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("x-grafana-alerting-timestamp is missing"),
        "{json}"
    );
    // A signature made for another timestamp does not verify.
    let sig_for_now = hmac_hex(b"hmac-SECRET-k", &[now_s.to_string().as_bytes(), b":", &b]);
    let forged = http::Request::post("/")
        .header("X-Grafana-Alerting-Signature", sig_for_now)
        .header("X-Grafana-Alerting-Timestamp", (now_s + 1).to_string());
    assert_eq!(r.request(forged, &b).0, 401);
}

#[test]
fn any_configured_method_suffices() {
    let r = Recorder::new();
    r.set_var("webhook_hmac_secret", "hmac-SECRET-k");
    let b = body();
    let bearer =
        http::Request::post("/").header("authorization", format!("Bearer {WEBHOOK_TOKEN}"));
    assert_eq!(r.request(bearer, &b).0, 200);
    let signed = http::Request::post("/").header(
        "X-Grafana-Alerting-Signature",
        hmac_hex(b"hmac-SECRET-k", &[&b]),
    );
    assert_eq!(r.request(signed, &b).0, 200);
    assert_eq!(r.request(http::Request::post("/"), &b).0, 401);
}

#[test]
fn an_oversized_body_is_refused_before_its_signature_is_checked() {
    // The size check runs first, so no HMAC is ever computed over a body past the
    // limit: a wrong signature on one gets 413, not 401. (The Spin shell reads at
    // most MAX_BODY_BYTES + 1 bytes, which is what the core sees here.)
    let r = Recorder::new();
    r.set_var("webhook_token", "");
    r.set_var("webhook_hmac_secret", "hmac-SECRET-k");
    let big = vec![b' '; remediator::app::MAX_BODY_BYTES + 1];
    let bad_sig = http::Request::post("/grafana")
        .header("content-type", "application/json")
        .header("X-Grafana-Alerting-Signature", "0".repeat(64));
    let (status, json) = r.request(bad_sig, &big);
    assert_eq!(status, 413, "{json}");
    assert!(json["error"].as_str().unwrap().contains("limit"), "{json}");
    // At the limit, the signature is what decides.
    let at_limit = vec![b' '; remediator::app::MAX_BODY_BYTES];
    let bad_sig =
        http::Request::post("/grafana").header("X-Grafana-Alerting-Signature", "0".repeat(64));
    assert_eq!(r.request(bad_sig, &at_limit).0, 401);
}

#[test]
fn webhook_token_from_a_secret_file_with_a_trailing_newline_matches() {
    let r = Recorder::new();
    r.set_var("webhook_token", &format!("  {WEBHOOK_TOKEN}\r\n"));
    let (status, json) = r.post("/", &body());
    assert_eq!(status, 200, "{json}");
}

#[test]
fn basic_user_without_password_is_a_configuration_error_not_an_empty_password() {
    for (set, missing) in [
        ("webhook_basic_user", "webhook_basic_password"),
        ("webhook_basic_password", "webhook_basic_user"),
    ] {
        let r = Recorder::new();
        r.set_var("webhook_token", "");
        r.set_var(set, "alertmanager");
        // base64("alertmanager:") and base64(":alertmanager")
        for header in ["Basic YWxlcnRtYW5hZ2VyOg==", "Basic OmFsZXJ0bWFuYWdlcg=="] {
            let (status, json) = r.request(
                http::Request::post("/").header("authorization", header),
                &body(),
            );
            assert_eq!(status, 500, "{set}: {json}");
            let error = json["error"].as_str().unwrap();
            assert!(error.contains(&format!("variable {missing}")), "{error}");
        }
    }
}

#[test]
fn hmac_timestamps_at_the_ends_of_i64_answer_401_not_a_panic() {
    let r = hmac_with_timestamp();
    let b = body();
    for ts in ["9223372036854775807", "-9223372036854775808"] {
        let (status, json) = r.request(signed_at(ts, &b), &b);
        assert_eq!(status, 401, "{ts}: {json}");
        assert!(
            json["error"].as_str().unwrap().contains("replay window"),
            "{json}"
        );
    }
}
