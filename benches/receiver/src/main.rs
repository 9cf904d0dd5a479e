//! `bench-receiver 127.0.0.1:PORT`: a tiny, fast HTTP/1.1 server standing in for
//! Unleash and the scaling webhook in the benchmarks. Every request gets 200 at
//! once: GET with the body of an Unleash feature in `production`, anything else
//! with `{}`. The feature starts enabled; a POST to `.../environments/*/off` or
//! `/on` turns it off or on (one flag for all names: enough for a revert to see
//! what it changed). Keep-alive, a thread per connection.
//! Prints `listening on http://ADDR` when ready; on SIGTERM it just dies.
//!
//! The number of requests answered is printed to stderr every second it changes,
//! so a benchmark can check the component really called out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

static FLAG_ON: AtomicBool = AtomicBool::new(true);

fn serve(stream: TcpStream, count: &AtomicU64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let is_get = line.starts_with("GET ");
        let target = line.split(' ').nth(1).unwrap_or("");
        if line.starts_with("POST ") && target.contains("/environments/") {
            if target.ends_with("/off") {
                FLAG_ON.store(false, Ordering::Relaxed);
            } else if target.ends_with("/on") {
                FLAG_ON.store(true, Ordering::Relaxed);
            }
        }
        let mut length = 0usize;
        let mut close = line.ends_with("HTTP/1.0\r\n");
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let feature = format!(
            r#"{{"name":"bench","environments":[{{"name":"production","enabled":{}}}]}}"#,
            FLAG_ON.load(Ordering::Relaxed)
        );
        let answer = if is_get { feature.as_str() } else { "{}" };
        write!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{answer}",
            answer.len(),
            if close { "connection: close\r\n" } else { "" }
        )?;
        out.flush()?;
        count.fetch_add(1, Ordering::Relaxed);
        if close {
            return Ok(());
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr)?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut last = 0;
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = seen.load(Ordering::Relaxed);
            if now != last {
                eprintln!("bench-receiver: {now} requests answered");
                last = now;
            }
        }
    });
    for stream in listener.incoming() {
        let stream = stream?;
        let count = count.clone();
        std::thread::spawn(move || {
            let _ = serve(stream, &count);
        });
    }
    Ok(())
}
