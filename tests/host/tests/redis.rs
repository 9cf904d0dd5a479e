//! Key-value on Redis (`--runtime-config-file` with `type = "redis"`): a real
//! `redis-server` on a free loopback port, TWO host processes serving the
//! probe fixture against it, and requests split across both. Every test
//! skips, saying so, when `redis-server` is not installed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;

/// A throwaway `redis-server` (no persistence); killed on drop.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// None (after printing why) when redis-server is not installed.
    fn start() -> Option<Redis> {
        let Some(bin) = which("redis-server") else {
            // Straight to fd 2: libtest captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: redis-server is not installed (apt-get install redis-server); \
                 the Redis key-value tests did not run"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // A free port: bind :0, note it, release it (redis-server then takes it).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server");
        let r = Redis {
            child,
            port,
            _dir: dir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while r.cmd(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < end,
                "redis-server did not answer PING on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command in RESP; the raw reply (first line, or the bulk string).
    fn cmd(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        Some(match text.strip_prefix('$') {
            Some(rest) if rest.starts_with("-1") => "(nil)".to_string(),
            Some(rest) => rest.split("\r\n").nth(1).unwrap_or("").to_string(),
            None => text.trim_end().to_string(),
        })
    }
}

impl Redis {
    /// How many times the server has run `command` (INFO commandstats).
    fn calls(&self, command: &str) -> u64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
            .unwrap();
        // A bulk string: `$<len>\r\n<len bytes>\r\n`; read until all of it is in.
        let mut text = String::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "INFO reply cut short: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let (len, rest) = text[1..].split_once("\r\n").unwrap_or(("0", ""));
            if rest.len() >= len.parse::<usize>().unwrap_or(usize::MAX) {
                break;
            }
        }
        let prefix = format!("cmdstat_{}:calls=", command.to_lowercase());
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Two hosts serving the probe with the given runtime config; the config file
/// and manifest copy live in the returned directory.
fn two_hosts(runtime_config: &str, extra: &[&str]) -> (tempfile::TempDir, Host, Host) {
    let wasm = probe_wasm();
    let (dir, manifest) = probe_manifest(|m| m);
    let rc = dir.path().join("runtime-config.toml");
    std::fs::write(&rc, runtime_config).unwrap();
    let mut args = probe_args(&manifest, &wasm);
    args.extend(["--runtime-config-file".into(), rc.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = Host::start(&args, &[]);
    let b = Host::start(&args, &[]);
    (dir, a, b)
}

fn redis_config(r: &Redis) -> String {
    format!(
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
        r.url()
    )
}

/// `n` concurrent requests released together, request i to host i % 2.
fn race_both(
    hosts: [SocketAddr; 2],
    n: usize,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Vec<(u16, String)> {
    let barrier = Arc::new(Barrier::new(n));
    let path = Arc::new(path);
    let racers: Vec<_> = (0..n)
        .map(|i| {
            let (b, path) = (barrier.clone(), path.clone());
            std::thread::spawn(move || {
                b.wait();
                request(hosts[i % 2], "POST", &path(i), b"")
            })
        })
        .collect();
    racers.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn redis_store_is_shared_by_two_processes_with_spins_commands() {
    let Some(redis) = Redis::start() else { return };
    let (_d, a, b) = two_hosts(&redis_config(&redis), &[]);
    assert!(a.wait_log(&format!("in Redis at 127.0.0.1:{}", redis.port)));
    assert_eq!(a.post("/kv/set?key=k", b"v1"), (200, "ok".into()));
    assert_eq!(b.get("/kv/get?key=k"), (200, "v1".into()));
    assert_eq!(b.get("/kv/exists?key=k"), (200, "true".into()));
    assert_eq!(b.get("/kv/get?key=nope"), (404, "absent".into()));
    // Keys are stored as given, without the store label (as Spin does).
    assert_eq!(redis.cmd(&["GET", "k"]).as_deref(), Some("v1"));
    assert_eq!(a.post("/kv/incr?key=n&delta=5", b""), (200, "5".into()));
    assert_eq!(b.post("/kv/incr?key=n&delta=-2", b""), (200, "3".into()));
    // INCRBY keeps the number as decimal text (SQLite: 8 little-endian bytes).
    assert_eq!(a.get("/kv/get?key=n"), (200, "3".into()));
    assert_eq!(b.get("/kv/keys"), (200, "k,n".into()));
    assert_eq!(b.post("/kv/delete?key=k", b""), (200, "ok".into()));
    assert_eq!(a.get("/kv/exists?key=k"), (200, "false".into()));
    // A value INCRBY cannot parse is an error, not a panic.
    assert_eq!(a.post("/kv/set?key=t", b"text"), (200, "ok".into()));
    let (s, body) = a.post("/kv/incr?key=t&delta=1", b"");
    assert_eq!(s, 500, "{body}");
    assert!(body.contains("not an integer"), "{body}");
}

#[test]
fn redis_set_many_is_one_mset_and_delete_many_one_del() {
    let Some(redis) = Redis::start() else { return };
    let (_d, a, b) = two_hosts(&redis_config(&redis), &[]);
    assert_eq!(redis.calls("MSET"), 0);
    assert_eq!(a.post("/kv/set-many", b"x=1\ny=2\nz=3"), (200, "ok".into()));
    assert_eq!(redis.calls("MSET"), 1);
    assert_eq!(redis.calls("SET"), 0);
    for (k, v) in [("x", "1"), ("y", "2"), ("z", "3")] {
        assert_eq!(b.get(&format!("/kv/get?key={k}")), (200, v.into()));
    }
    assert_eq!(b.post("/kv/delete-many", b"x\nz"), (200, "ok".into()));
    assert_eq!(redis.calls("DEL"), 1);
    assert_eq!(a.get("/kv/keys"), (200, "y".into()));
    // Empty lists never reach the store, as in Spin (MSET with no keys is an error).
    assert_eq!(a.post("/kv/set-many", b""), (200, "ok".into()));
    assert_eq!(redis.calls("MSET"), 1);
    // get-many as Spin's Redis store sends it (KEYS with the keys, not MGET):
    // Redis refuses it for more than one key.
    let (s, body) = a.post("/kv/get-many", b"x\ny");
    assert_eq!(s, 500, "{body}");
    assert!(body.contains("wrong number of arguments"), "{body}");
}

#[test]
fn redis_cas_from_a_present_value_two_processes_fifty_racers_exactly_one_wins() {
    let Some(redis) = Redis::start() else { return };
    let (_d, a, b) = two_hosts(&redis_config(&redis), &[]);
    assert_eq!(a.post("/kv/set?key=race", b"open").0, 200);
    // Each racer holds 1 s between `current` (WATCH + GET) and `swap` (MULTI /
    // SET / EXEC), so most of them swap against the same value.
    let results = race_both([a.addr, b.addr], 50, |i| {
        format!("/kv/claim?key=race&value=r{i}&expect=open&hold_ms=1000")
    });
    let want = format!("r{}", the_one_winner(&results));
    assert_eq!(a.get("/kv/get?key=race"), (200, want.clone()));
    assert_eq!(b.get("/kv/get?key=race"), (200, want.clone()));
    assert_eq!(redis.cmd(&["GET", "race"]), Some(want));
}

#[test]
fn redis_cas_from_absent_two_processes_fifty_racers_exactly_one_wins() {
    // Unlike Spin's SQLite store (an upsert: every racer "wins"), EXEC aborts
    // when a WATCHed absent key has been created meanwhile.
    let Some(redis) = Redis::start() else { return };
    let (_d, a, b) = two_hosts(&redis_config(&redis), &[]);
    let results = race_both([a.addr, b.addr], 50, |i| {
        format!("/kv/claim?key=fresh&value=r{i}&hold_ms=1000")
    });
    let w = winners(&results);
    assert_eq!(w.len(), 1, "{results:?}");
    let lost = results.iter().filter(|r| r.1 == "lost").count();
    assert!(lost > 0, "the race window was never hit: {results:?}");
    assert!(
        results.iter().all(|(s, _)| *s == 200 || *s == 409),
        "{results:?}"
    );
    assert_eq!(b.get("/kv/get?key=fresh"), (200, format!("r{}", w[0])));
}

#[test]
fn redis_increment_tickets_are_unique_across_two_processes() {
    let Some(redis) = Redis::start() else { return };
    let (_d, a, b) = two_hosts(&redis_config(&redis), &[]);
    let results = race_both([a.addr, b.addr], 50, |_| {
        "/kv/incr?key=tickets&delta=1".into()
    });
    let mut tickets: Vec<i64> = results
        .iter()
        .map(|(s, body)| {
            assert_eq!(*s, 200, "{body}");
            body.parse().unwrap()
        })
        .collect();
    tickets.sort();
    assert_eq!(tickets, (1..=50).collect::<Vec<i64>>());
    assert_eq!(redis.cmd(&["GET", "tickets"]).as_deref(), Some("50"));
}

#[test]
fn redis_cas_spin_mode_reports_a_lost_swap_as_won_like_spin() {
    // Spin's key-value-redis maps EXEC's nil reply (transaction aborted) to
    // Ok: redis-rs 0.32 decodes nil into `()`. `--redis-cas spin` mirrors it:
    // every racer that saw the expected value is told it won, yet Redis holds
    // one value.
    let Some(redis) = Redis::start() else { return };
    let (_d, a, b) = two_hosts(&redis_config(&redis), &["--redis-cas", "spin"]);
    assert!(a.wait_log("--redis-cas spin"));
    assert_eq!(a.post("/kv/set?key=race", b"open").0, 200);
    let results = race_both([a.addr, b.addr], 10, |i| {
        format!("/kv/claim?key=race&value=r{i}&expect=open&hold_ms=1000")
    });
    let w = winners(&results);
    assert!(w.len() > 1, "{results:?}");
    let stored = redis.cmd(&["GET", "race"]).unwrap();
    assert!(w.iter().any(|i| stored == format!("r{i}")), "{stored}");
}

#[test]
fn runtime_config_errors_and_the_spin_type() {
    let wasm = probe_wasm();
    let (dir, manifest) = probe_manifest(|m| m);
    let rc = dir.path().join("rc.toml");
    let mut base = probe_args(&manifest, &wasm);
    base.extend(["--runtime-config-file".into(), rc.display().to_string()]);
    let start = |extra: &[&str]| {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend(extra);
        Host::try_start(&args, &[])
    };
    std::fs::write(&rc, "[key_value_store.default]\ntype = \"redis\"\n").unwrap();
    let log = start(&[]).err().expect("must fail");
    assert!(log.contains("needs `url`"), "{log}");
    std::fs::write(
        &rc,
        "[key_value_store.default]\ntype = \"spin\"\npath = \"state/kv.db\"\n",
    )
    .unwrap();
    let log = start(&["--kv-path", "/tmp/x.sqlite"])
        .err()
        .expect("must fail");
    assert!(log.contains("both configure"), "{log}");
    // type = "spin": SQLite at a path relative to the runtime config file.
    {
        let host = start(&[]).unwrap();
        assert_eq!(host.post("/kv/set?key=k", b"v").0, 200);
        assert!(host.log().contains("SQLite in"), "{}", host.log());
    }
    assert!(dir.path().join("state/kv.db").exists());
}
