//! End-to-end tests: the real remediator-host binary serving the probe
//! fixture component (tests/host/fixtures/probe) on a free loopback port.

mod common;

use common::*;

fn start_probe(
    edit: impl Fn(String) -> String,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (tempfile::TempDir, Host) {
    let wasm = probe_wasm();
    let (dir, manifest) = probe_manifest(edit);
    let mut args = probe_args(&manifest, &wasm);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let host = Host::start(&args, env);
    (dir, host)
}

#[test]
fn variables_come_from_env_then_defaults_and_templates_mix_literals() {
    let (_d, host) = start_probe(
        |m| m,
        &[
            ("SPIN_VARIABLE_NAME", "tester"),
            ("SPIN_VARIABLE_TOKEN", "s3cr3t-value"),
        ],
        &[],
    );
    assert_eq!(host.get("/var?name=greeting"), (200, "hello".into()));
    assert_eq!(
        host.get("/var?name=message"),
        (200, "hello, tester!".into())
    );
    assert_eq!(host.get("/var?name=token"), (200, "s3cr3t-value".into()));
    assert_eq!(
        host.get("/var?name=literal"),
        (200, "no templates here".into())
    );
    // Only component variables are visible; `name` is an app variable only.
    let (s, b) = host.get("/var?name=name");
    assert_eq!(s, 500);
    assert!(b.starts_with("err:Error::Undefined"), "{b}");
    let (s, b) = host.get("/var?name=Not-Valid");
    assert_eq!(s, 500);
    assert!(b.starts_with("err:Error::InvalidName"), "{b}");
    // `--variable` wins over env, as with `spin up --variable`.
    drop(host);
    let (_d, host) = start_probe(
        |m| m,
        &[("SPIN_VARIABLE_NAME", "env"), ("SPIN_VARIABLE_TOKEN", "t")],
        &["--variable", "name=cli"],
    );
    assert_eq!(host.get("/var?name=message"), (200, "hello, cli!".into()));
    assert!(!host.log().contains("s3cr3t-value"));
}

#[test]
fn a_required_variable_without_value_fails_get_but_not_startup() {
    let (_d, host) = start_probe(|m| m, &[], &[]);
    let (s, b) = host.get("/var?name=token");
    assert_eq!(s, 500);
    assert!(b.starts_with("err:Error::Provider"), "{b}");
    assert_eq!(host.get("/var?name=greeting"), (200, "hello".into()));
}

#[test]
fn secrets_are_never_logged() {
    let (_d, host) = start_probe(|m| m, &[("SPIN_VARIABLE_TOKEN", "very-secret-token")], &[]);
    assert_eq!(host.get("/var?name=token").0, 200);
    assert!(host.wait_log("/var?name=token -> 200"));
    let log = host.log();
    assert!(log.contains("token = <secret>"), "{log}");
    assert!(!log.contains("very-secret-token"), "{log}");
}

#[test]
fn kv_persists_across_requests_and_restarts() {
    let kv = tempfile::tempdir().unwrap();
    let kv_path = kv.path().join("kv.sqlite");
    let kv_arg = kv_path.display().to_string();
    {
        let (_d, host) = start_probe(|m| m, &[], &["--kv-path", &kv_arg]);
        assert_eq!(host.get("/kv/get?key=k"), (404, "absent".into()));
        assert_eq!(host.post("/kv/set?key=k", b"v1"), (200, "ok".into()));
        assert_eq!(host.get("/kv/get?key=k"), (200, "v1".into()));
        assert_eq!(host.post("/kv/incr?key=n&delta=5", b""), (200, "5".into()));
        assert_eq!(host.post("/kv/incr?key=n&delta=-2", b""), (200, "3".into()));
    }
    let (_d, host) = start_probe(|m| m, &[], &["--kv-path", &kv_arg]);
    assert_eq!(host.get("/kv/get?key=k"), (200, "v1".into()));
    assert_eq!(host.post("/kv/incr?key=n&delta=1", b""), (200, "4".into()));
    // Each request's log line counts its write transactions (benches/writes.py reads it).
    assert!(host.wait_log("POST /kv/incr?key=n&delta=1 -> 200 in "));
    let log = host.log();
    let line = |req: &str| {
        log.lines()
            .find(|l| l.contains(req))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        line("POST /kv/incr?key=n&delta=1 -> 200").contains(" ms, kv_writes=1 store_us="),
        "{log}"
    );
    assert!(
        line("GET /kv/get?key=k -> 200").contains(" ms, kv_writes=0 store_us="),
        "{log}"
    );
}

/// SQLite's file change counter: one more per committed write transaction.
fn change_counter(db: &std::path::Path) -> u32 {
    let b = std::fs::read(db).unwrap();
    u32::from_be_bytes(b[24..28].try_into().unwrap())
}

#[test]
fn kv_batch_set_many_and_delete_many_are_one_write_each() {
    let kv = tempfile::tempdir().unwrap();
    let kv_path = kv.path().join("kv.sqlite");
    let kv_arg = kv_path.display().to_string();
    let (_d, host) = start_probe(|m| m, &[], &["--kv-path", &kv_arg]);
    assert_eq!(host.post("/kv/set?key=b", b"old"), (200, "ok".into()));

    let before = change_counter(&kv_path);
    assert_eq!(
        host.post("/kv/set-many?n=3", b"a=1\nb=2\nc=3"),
        (200, "ok".into())
    );
    assert_eq!(change_counter(&kv_path) - before, 1);
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert_eq!(host.get(&format!("/kv/get?key={k}")), (200, v.into()));
    }
    // As Spin's SQLite store: only the keys that exist come back.
    assert_eq!(
        host.post("/kv/get-many", b"a\nzz\nc"),
        (200, "a=1\nc=3".into())
    );

    let before = change_counter(&kv_path);
    assert_eq!(
        host.post("/kv/delete-many?n=2", b"a\nc\nzz"),
        (200, "ok".into())
    );
    assert_eq!(change_counter(&kv_path) - before, 1);
    assert_eq!(host.get("/kv/keys"), (200, "b".into()));

    // Empty lists never reach the store (as in Spin): no write.
    assert_eq!(host.post("/kv/set-many?n=0", b""), (200, "ok".into()));

    assert!(host.wait_log("POST /kv/set-many?n=0 -> 200 in "));
    let log = host.log();
    let line = |req: &str| {
        log.lines()
            .find(|l| l.contains(req))
            .unwrap_or("")
            .to_string()
    };
    for (req, writes) in [
        ("POST /kv/set-many?n=3 -> 200", 1),
        ("POST /kv/delete-many?n=2 -> 200", 1),
        ("POST /kv/set-many?n=0 -> 200", 0),
        ("POST /kv/get-many -> 200", 0),
    ] {
        assert!(
            line(req).contains(&format!(" ms, kv_writes={writes} store_us=")),
            "{req}: {log}"
        );
    }
}

#[test]
fn kv_store_not_listed_is_access_denied() {
    let (_d, host) = start_probe(|m| m, &[], &[]);
    assert_eq!(host.get("/kv/open?label=default"), (200, "ok".into()));
    let (s, b) = host.get("/kv/open?label=other");
    assert_eq!((s, b.as_str()), (500, "err:Error::AccessDenied"));
    drop(host);
    let (_d, host) = start_probe(
        |m| m.replace("key_value_stores = [\"default\"]", ""),
        &[],
        &[],
    );
    let (s, b) = host.get("/kv/open?label=default");
    assert_eq!((s, b.as_str()), (500, "err:Error::AccessDenied"));
}

fn race(addr: std::net::SocketAddr, n: usize, query: &'static str) -> Vec<(u16, String)> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let racers: Vec<_> = (0..n)
        .map(|i| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                request(addr, "POST", &format!("/kv/claim?value=r{i}&{query}"), b"")
            })
        })
        .collect();
    racers.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn cas_from_a_present_value_fifty_concurrent_racers_exactly_one_wins() {
    let (_d, host) = start_probe(|m| m, &[], &[]);
    assert_eq!(host.post("/kv/set?key=race", b"open").0, 200);
    // Every racer holds 1 s between `current` and `swap`, so most of them swap
    // against the same snapshot.
    let results = race(host.addr, 50, "key=race&expect=open&hold_ms=1000");
    let winner = the_one_winner(&results);
    assert_eq!(host.get("/kv/get?key=race"), (200, format!("r{winner}")));
}

#[test]
fn cas_from_absent_is_an_upsert_as_in_spin() {
    // Spin's SQLite store: a CAS handle made on an absent key swaps with
    // INSERT .. ON CONFLICT DO UPDATE, so every racer "wins". The host mirrors
    // that so that the component is tested against Spin's real semantics.
    let (_d, host) = start_probe(|m| m, &[], &[]);
    let results = race(host.addr, 5, "key=fresh&hold_ms=500");
    assert!(results.iter().all(|r| r.1 == "won"), "{results:?}");
}

#[test]
fn outbound_requests_follow_allowed_outbound_hosts() {
    let allowed = Upstream::start();
    let other = Upstream::start();
    let url = allowed.url();
    let (_d, host) = start_probe(
        |m| m,
        &[
            ("SPIN_VARIABLE_UPSTREAM", &url),
            ("SPIN_VARIABLE_TOKEN", "t"),
        ],
        &[],
    );
    assert_eq!(
        host.get(&format!("/fetch?url={}/health", allowed.url())),
        (200, "status:204".into())
    );
    assert_eq!(allowed.paths(), vec!["/health".to_string()]);
    assert_eq!(
        host.get(&format!("/fetch?url={}/health", other.url())),
        (502, "err:ErrorCode::HttpRequestDenied".into())
    );
    // Same host, other scheme: denied too (no connection attempted).
    let https = format!("/fetch?url=https://{}/health", allowed.addr);
    assert_eq!(
        host.get(&https),
        (502, "err:ErrorCode::HttpRequestDenied".into())
    );
    assert_eq!(other.hits(), 0);
    assert_eq!(allowed.hits(), 1);
    assert!(host.wait_log("denied: not in allowed_outbound_hosts"));
}

/// The probe with `allowed` (a whole `allowed_outbound_hosts = …` line) in place of
/// the manifest's own list.
fn start_allowing(allowed: &str) -> (tempfile::TempDir, Host) {
    start_probe(
        |m| m.replace("allowed_outbound_hosts = [\"{{ upstream }}\"]", allowed),
        &[("SPIN_VARIABLE_TOKEN", "t")],
        &[],
    )
}

#[test]
fn outbound_literal_and_wildcard_entries() {
    let a = Upstream::start();
    let b = Upstream::start();
    let only_b = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]",
        b.addr.port()
    );
    let (_d, host) = start_allowing(&only_b);
    assert_eq!(
        host.get(&format!("/fetch?url={}/x", a.url())).1,
        "err:ErrorCode::HttpRequestDenied"
    );
    assert_eq!(
        host.get(&format!("/fetch?url={}/x", b.url())).1,
        "status:204"
    );
    drop(host);
    let (_d, host) = start_allowing("allowed_outbound_hosts = [\"http://*:*\"]");
    assert_eq!(
        host.get(&format!("/fetch?url={}/x", a.url())).1,
        "status:204"
    );
    drop(host);
    let (_d, host) = start_allowing("allowed_outbound_hosts = []");
    assert_eq!(
        host.get(&format!("/fetch?url={}/x", a.url())).1,
        "err:ErrorCode::HttpRequestDenied"
    );
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[test]
fn request_option_timeouts_are_honoured() {
    // An upstream that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (_d, host) = start_probe(
        |m| m,
        &[
            ("SPIN_VARIABLE_UPSTREAM", &url),
            ("SPIN_VARIABLE_TOKEN", "t"),
        ],
        &[],
    );
    let start = std::time::Instant::now();
    let (s, b) = host.get(&format!("/fetch?url={url}/slow&timeout_ms=300"));
    let took = start.elapsed();
    assert_eq!(
        (s, b.as_str()),
        (502, "err:ErrorCode::ConnectionReadTimeout")
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    drop(silent);
}

#[test]
fn a_template_resolving_to_a_url_with_a_path_denies_everything_like_spin() {
    let up = Upstream::start();
    let with_path = format!("{}/api", up.url());
    let (_d, host) = start_probe(
        |m| m,
        &[
            ("SPIN_VARIABLE_UPSTREAM", &with_path),
            ("SPIN_VARIABLE_TOKEN", "t"),
        ],
        &[],
    );
    assert_eq!(
        host.get(&format!("/fetch?url={}/health", up.url())).1,
        "err:ErrorCode::HttpRequestDenied"
    );
    assert_eq!(up.hits(), 0);
    assert!(
        host.log().contains("allowed_outbound_hosts: NONE"),
        "{}",
        host.log()
    );
}

#[test]
fn a_missing_required_variable_denies_all_outbound_like_spin() {
    // Spin resolves every application variable before allowed_outbound_hosts.
    let up = Upstream::start();
    let url = up.url();
    let (_d, host) = start_probe(|m| m, &[("SPIN_VARIABLE_UPSTREAM", &url)], &[]);
    assert_eq!(
        host.get(&format!("/fetch?url={url}/h")).1,
        "err:ErrorCode::HttpRequestDenied"
    );
    assert_eq!(up.hits(), 0);
}

#[test]
fn a_default_that_makes_allowed_hosts_malformed_fails_startup() {
    let wasm = probe_wasm();
    let (_d, manifest) = probe_manifest(|m| {
        m.replace(
            "upstream = { default = \"http://127.0.0.1:9\" }",
            "upstream = { default = \"http://127.0.0.1:9/path\" }",
        )
    });
    let args = probe_args(&manifest, &wasm);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = Host::try_start(&args, &[])
        .err()
        .expect("startup must fail");
    assert!(
        err.contains("allowed_outbound_hosts") && err.contains("malformed"),
        "{err}"
    );
}

#[test]
fn files_are_mounted_read_only_at_their_destinations() {
    let (_d, host) = start_probe(|m| m, &[], &[]);
    assert_eq!(
        host.get("/file?path=/hello.txt"),
        (200, "hello from a mounted file\n".into())
    );
    assert_eq!(
        host.get("/file?path=/data/nested/deep.txt"),
        (200, "nested\n".into())
    );
    assert_eq!(host.get("/file?path=/spin.toml").0, 404);
    let (s, b) = host.get("/write?path=/hello.txt");
    assert_eq!(s, 500, "{b}");
    let (s, b) = host.get("/write?path=/new.txt");
    assert_eq!(s, 500, "{b}");
}

#[test]
fn guest_output_and_one_log_line_per_request_go_to_stderr() {
    let (_d, host) = start_probe(|m| m, &[], &[]);
    assert_eq!(host.get("/log"), (200, "logged".into()));
    assert_eq!(host.get("/nope").0, 404);
    assert!(host.wait_log("probe-stdout-marker"), "{}", host.log());
    assert!(host.wait_log("probe-stderr-marker"), "{}", host.log());
    assert!(host.wait_log("GET /log -> 200 in "), "{}", host.log());
    assert!(host.wait_log("GET /nope -> 404 in "), "{}", host.log());
}

#[test]
fn spin_request_headers_are_set() {
    let (_d, host) = start_probe(|m| m, &[], &[]);
    let (s, b) = host.get("/echo-headers?x=1");
    assert_eq!(s, 200);
    assert!(b.contains("spin-full-url: http://"), "{b}");
    assert!(b.contains("/echo-headers?x=1"), "{b}");
    assert!(b.contains("spin-path-info: /echo-headers"), "{b}");
    assert!(b.contains("spin-matched-route: /..."), "{b}");
}

#[test]
fn unsupported_manifests_are_rejected_clearly() {
    let wasm = probe_wasm();
    for (from, to, expect) in [
        (
            "route = \"/...\"",
            "route = \"/api/...\"",
            "catch-all route",
        ),
        (
            "key_value_stores = [\"default\"]",
            "key_value_stores = [\"cache\"]",
            "unknown key_value_stores label",
        ),
        (
            "token = { required = true, secret = true }",
            "token = { secret = true }",
            "must be `required` OR have a `default`",
        ),
    ] {
        let (_d, manifest) = probe_manifest(|m| m.replace(from, to));
        let args = probe_args(&manifest, &wasm);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = Host::try_start(&args, &[])
            .err()
            .expect("startup must fail");
        assert!(err.contains(expect), "{to}: {err}");
    }
}

#[test]
fn each_request_gets_a_fresh_instance() {
    // The probe counts requests in instance memory: always 1 if fresh.
    let (_d, host) = start_probe(|m| m, &[], &[]);
    for _ in 0..10 {
        assert_eq!(host.get("/counter"), (200, "1".into()));
    }
    assert_eq!(host.wait_log_count("GET /counter -> 200", 10), 10);
}
