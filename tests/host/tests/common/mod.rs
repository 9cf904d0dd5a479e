//! Helpers for remediator-host's end-to-end tests: build the probe fixture,
//! start the host on a free loopback port, talk HTTP/1.1, run a mock upstream.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn host_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project root (two levels up).
pub fn project_root() -> PathBuf {
    host_dir().join("../..").canonicalize().unwrap()
}

pub fn fixture_dir() -> PathBuf {
    host_dir().join("fixtures/probe")
}

/// Build the probe fixture once per test binary (a no-op when up to date).
pub fn probe_wasm() -> PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        // Next to the host's own build: a private CARGO_TARGET_DIR keeps a shared
        // tests/host/target untouched.
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| host_dir().join("target"))
            .join("fixture");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            .arg("--manifest-path")
            .arg(fixture_dir().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("running cargo to build the probe fixture");
        assert!(
            status.success(),
            "building tests/host/fixtures/probe failed"
        );
        let wasm = target.join("wasm32-wasip2/release/probe.wasm");
        assert!(wasm.exists(), "{} missing after build", wasm.display());
        wasm
    })
    .clone()
}

/// A running remediator-host; killed on drop.
pub struct Host {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Host {
    /// Start `serve` with `args` and exactly the `env` given (the test
    /// process's own SPIN_VARIABLE_* never leak in).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Host {
        match Host::try_start(args, env) {
            Ok(h) => h,
            Err(log) => panic!("host did not start:\n{log}"),
        }
    }

    /// Start, or return everything it printed if it exits first.
    pub fn try_start(args: &[&str], env: &[(&str, &str)]) -> Result<Host, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_remediator-host"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning remediator-host");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(a.to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => Ok(Host {
                child,
                addr: a.parse().unwrap(),
                log,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let l = log.lock().unwrap().clone();
                Err(l)
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the host's stderr contains `needle` (logs are asynchronous).
    pub fn wait_log(&self, needle: &str) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Wait until `needle` occurs at least `n` times in the host's stderr.
    pub fn wait_log_count(&self, needle: &str, n: usize) -> usize {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let c = self.log().matches(needle).count();
            if c >= n || Instant::now() > end {
                return c;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        request(self.addr, "GET", path, b"")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> (u16, String) {
        request(self.addr, "POST", path, body)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connecting to the host");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading the response");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A loopback HTTP server answering 204 to everything and counting requests.
pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (h, p) = (hits.clone(), paths.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { break };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                // Drain headers.
                let mut hdr = String::new();
                while r.read_line(&mut hdr).map(|n| n > 2).unwrap_or(false) {
                    hdr.clear();
                }
                h.fetch_add(1, Ordering::SeqCst);
                p.lock()
                    .unwrap()
                    .push(line.split_whitespace().nth(1).unwrap_or("").to_string());
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }
        });
        Upstream { addr, hits, paths }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// A copy of the probe fixture (manifest with `edit` applied, plus its data
/// files) in a temporary directory, so tests can vary the manifest.
pub fn probe_manifest(edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture_dir();
    copy_dir(&src.join("data"), &dir.path().join("data"));
    let text = std::fs::read_to_string(src.join("spin.toml")).unwrap();
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, edit(text)).unwrap();
    (dir, path)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Indices of the racers that won a compare-and-swap race (`/kv/claim` answers).
pub fn winners(results: &[(u16, String)]) -> Vec<usize> {
    results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.1 == "won")
        .map(|(i, _)| i)
        .collect()
}

/// A race from a present value: exactly one racer won (its index is returned), every
/// other was refused (taken or lost), and at least one lost inside the race window, so
/// the race really happened.
pub fn the_one_winner(results: &[(u16, String)]) -> usize {
    let w = winners(results);
    assert_eq!(w.len(), 1, "{results:?}");
    for (s, body) in results {
        assert!(
            (*s == 200 && body == "won") || (*s == 409 && (body == "taken" || body == "lost")),
            "{s} {body}"
        );
    }
    let lost = results.iter().filter(|r| r.1 == "lost").count();
    assert!(lost > 0, "the race window was never hit: {results:?}");
    w[0]
}

/// The host's arguments to serve `wasm` under `manifest`.
pub fn probe_args(manifest: &Path, wasm: &Path) -> Vec<String> {
    vec![
        "--manifest".into(),
        manifest.display().to_string(),
        "--wasm".into(),
        wasm.display().to_string(),
    ]
}
