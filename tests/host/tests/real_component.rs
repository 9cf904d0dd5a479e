//! Checks against the real remediator component at
//! <project root>/target/wasm32-wasip2/release/remediator_component.wasm. These tests build
//! nothing: the test runner (scripts/test) builds the component first. If it is
//! absent they fail, saying how to build it: a missing artifact must not pass.

mod common;

use std::process::Command;

use common::*;

fn remediator_wasm() -> std::path::PathBuf {
    let p = project_root().join("target/wasm32-wasip2/release/remediator_component.wasm");
    assert!(
        p.exists(),
        "{} is absent; build it with `cargo build --target wasm32-wasip2 --release` at the project root",
        p.display()
    );
    p
}

#[test]
fn component_matches_the_world_in_wit() {
    let wasm = remediator_wasm();
    let out = Command::new(env!("CARGO_BIN_EXE_remediator-host"))
        .arg("wit-check")
        .arg("--wasm")
        .arg(&wasm)
        .arg("--wit")
        .arg(project_root().join("wit"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "wit-check failed:\n{text}");
    assert!(text.contains("OK: the component matches the world"));
}

#[test]
fn wit_check_fails_when_the_world_differs() {
    let wasm = remediator_wasm();
    // Same deps, a world missing one import and with one extra.
    let dir = tempfile::tempdir().unwrap();
    let wit = project_root().join("wit");
    let world = std::fs::read_to_string(wit.join("world.wit"))
        .unwrap()
        .replace(
            "import fermyon:spin/variables@2.0.0;",
            "import wasi:sockets/instance-network@0.2.6;",
        );
    std::fs::write(dir.path().join("world.wit"), world).unwrap();
    std::os::unix::fs::symlink(wit.join("deps"), dir.path().join("deps")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_remediator-host"))
        .args(["wit-check", "--wasm"])
        .arg(&wasm)
        .arg("--wit")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("MISMATCH imports: component has fermyon:spin/variables@2.0.0"),
        "{text}"
    );
    assert!(
        text.contains("MISMATCH imports: the world declares wasi:sockets/instance-network@0.2.6"),
        "{text}"
    );
}

#[test]
fn imports_lists_the_component_surface() {
    let wasm = remediator_wasm();
    let out = Command::new(env!("CARGO_BIN_EXE_remediator-host"))
        .args(["imports", "--wasm"])
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("wasi:http/incoming-handler@0.2.0"), "{text}");
    assert!(
        text.contains("wasi:keyvalue/atomics@0.2.0-draft2"),
        "{text}"
    );
    assert!(text.contains("wasi:keyvalue/batch@0.2.0-draft2"), "{text}");
}

#[test]
fn serves_the_real_component_from_the_real_manifest() {
    remediator_wasm();
    let manifest = project_root().join("spin.toml");
    let m = manifest.display().to_string();
    // Outbound is pointed at a closed loopback port: whatever the component
    // does, it must link, instantiate and answer without crashing the host.
    let host = Host::start(
        &["--manifest", &m],
        &[("SPIN_VARIABLE_UNLEASH_URL", "http://127.0.0.1:9")],
    );
    // The webhook route takes POST only: a GET is refused by the component itself,
    // twice (two instances), which shows it linked, instantiated and answered.
    for _ in 0..2 {
        let (status, body) = host.get("/");
        assert_eq!(status, 405, "{body}");
        assert!(body.contains("method not allowed"), "{body}");
    }
    assert!(host.wait_log("GET / -> "), "{}", host.log());
    assert!(
        !host
            .log()
            .contains("guest failed before sending a response"),
        "{}",
        host.log()
    );
}

#[test]
fn liveness_answers_where_readiness_refuses_a_broken_configuration() {
    remediator_wasm();
    let m = project_root().join("spin.toml").display().to_string();
    let host = Host::start(
        &["--manifest", &m],
        &[("SPIN_VARIABLE_OUTBOUND_TIMEOUT_MS", "soon")],
    );
    let (status, body) = host.get("/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("outbound_timeout_ms"), "{body}");
    let (status, body) = host.get("/livez");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alive\""), "{body}");
}

/// The delivery ids in `GET /audit`'s answer, newest first, each once.
fn delivery_ids(audit: &str) -> Vec<String> {
    let mut ids: Vec<String> = audit
        .split("\"delivery\":")
        .skip(1)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect()
        })
        .collect();
    ids.dedup();
    ids
}

#[test]
fn random_seed_makes_each_request_draw_the_same_randomness_in_every_run() {
    remediator_wasm();
    let m = project_root().join("spin.toml").display().to_string();
    let body = br#"{"version":"4","status":"firing","receiver":"r","truncatedAlerts":0,
        "alerts":[{"status":"firing","labels":{"alertname":"NoRuleForSeed"},
        "startsAt":"2026-11-26T14:02:06.305Z","fingerprint":"seed"}]}"#;
    let ids = |seed: Option<&str>| {
        let mut args = vec!["--manifest", m.as_str()];
        if let Some(s) = seed {
            args.extend(["--random-seed", s]);
        }
        let host = Host::start(
            &args,
            &[
                ("SPIN_VARIABLE_ALLOW_UNAUTHENTICATED", "true"),
                ("SPIN_VARIABLE_AUDIT_UNMATCHED", "true"),
            ],
        );
        for _ in 0..3 {
            let (status, answer) = host.post("/alertmanager", body);
            assert_eq!(status, 200, "{answer}");
        }
        let (status, audit) = host.get("/audit");
        assert_eq!(status, 200, "{audit}");
        let ids = delivery_ids(&audit);
        assert_eq!(ids.len(), 3, "{audit}");
        ids
    };
    let a = ids(Some("5"));
    assert_eq!(ids(Some("5")), a, "the same seed, the same delivery ids");
    assert_ne!(ids(Some("6")), a, "another seed, other ids");
    assert_ne!(ids(None), a, "no seed: the OS's randomness");
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert_eq!(distinct.len(), 3, "each request draws anew: {a:?}");
}
