//! The Spin shell: incoming request, outbound HTTP, variables, key-value, clock.
//! Kept thin on purpose; every decision lives in the core.

use std::cell::OnceCell;
use std::io::Write;
use std::time::Duration;

use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::http0_2_0::{outgoing_handler, types as wasi_http};
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};
use wasi::clocks::monotonic_clock;
use wasi::io::streams::{InputStream, StreamError};

use remediator::platform::{
    FileStamp, KvError, OutboundRequest, OutboundResponse, Platform, SendError,
};

// The native handler form: the response is written here, not by the SDK's
// `IntoResponse` path, whose `anyhow` errors link std's backtrace printer and
// symbol demangler (~35 KB of the component) for a message that cannot occur.
#[http_component]
async fn handle(req: IncomingRequest, response_out: ResponseOutparam) {
    let response = match incoming(&req) {
        Ok(request) => remediator::http::handle(&SpinPlatform::default(), request),
        Err(e) => {
            remediator::http::ApiError::BadRequest(format!("unreadable request: {e}")).response()
        }
    };
    let (parts, body) = response.into_parts();
    // One value per name, the last, as the SDK's header map kept them.
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .keys()
        .map(|name| {
            let value = parts.headers.get_all(name).iter().next_back();
            let value = value.and_then(|v| v.to_str().ok()).unwrap_or_default();
            (name.as_str().to_string(), value.as_bytes().to_vec())
        })
        .collect();
    let out = match Fields::from_list(&headers) {
        Ok(fields) => OutgoingResponse::new(fields),
        Err(e) => return eprintln!("Could not convert response: {e}"),
    };
    if out.set_status_code(parts.status.as_u16()).is_err() {
        return eprintln!(
            "Could not convert response: error setting status code to {}",
            parts.status.as_u16()
        );
    }
    if let Err(e) = response_out.set_with_body(out, body).await {
        eprintln!("Could not set `ResponseOutparam`: {e}");
    }
}

/// The incoming request as the core takes it. The body is read from its stream, and
/// reading stops at `MAX_BODY_BYTES + 1` bytes: enough for the core to answer 413,
/// without ever holding (or authenticating) a larger body.
fn incoming(req: &IncomingRequest) -> Result<http::Request<Vec<u8>>, String> {
    let mut builder = http::Request::builder()
        .method(req.method().to_string().as_str())
        .uri(req.path_with_query().unwrap_or_else(|| "/".into()));
    for (name, value) in req.headers().entries() {
        builder = builder.header(name, value);
    }
    let body = req
        .consume()
        .map_err(|()| "request body already taken".to_string())?;
    let bytes = {
        let stream = body
            .stream()
            .map_err(|()| "request body stream unavailable".to_string())?;
        read_at_most(&stream, remediator::http::MAX_BODY_BYTES + 1, None).map_err(|e| match e {
            ReadError::Stream(m) => format!("reading body: {m}"),
            ReadError::Deadline => "reading body: timed out".to_string(),
        })?
    };
    drop(body);
    builder.body(bytes).map_err(|e| e.to_string())
}

enum ReadError {
    Stream(String),
    Deadline,
}

/// Read `stream` to its end, but never more than `limit` bytes (the rest is left
/// unread), and, with a `deadline` (monotonic-clock instant), only until then.
fn read_at_most(
    stream: &InputStream,
    limit: usize,
    deadline: Option<monotonic_clock::Instant>,
) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    // Pollables only with a deadline: each is a resource made and dropped by the host.
    let timer = deadline.map(|d| (stream.subscribe(), monotonic_clock::subscribe_instant(d)));
    while bytes.len() < limit {
        let want = (limit - bytes.len()).min(64 * 1024) as u64;
        let read = match &timer {
            None => stream.blocking_read(want),
            Some((ready, timer)) => {
                if !wasi::io::poll::poll(&[ready, timer]).contains(&0) {
                    return Err(ReadError::Deadline);
                }
                stream.read(want)
            }
        };
        match read {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(ReadError::Stream(format!("{e:?}"))),
        }
    }
    Ok(bytes)
}

/// One per request (each request is a fresh instance).
#[derive(Default)]
struct SpinPlatform {
    /// The store, opened on first use and kept for the request: each `open` (and the
    /// handle's drop) is a host call, and a delivery makes many key-value calls.
    bucket: OnceCell<store::Bucket>,
}

impl SpinPlatform {
    fn bucket(&self) -> Result<&store::Bucket, KvError> {
        if let Some(b) = self.bucket.get() {
            return Ok(b);
        }
        let b = store::open("default").map_err(|e| KvError(format!("{e:?}")))?;
        Ok(self.bucket.get_or_init(|| b))
    }
}

impl Platform for SpinPlatform {
    fn send(&self, req: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendError> {
        send_blocking(req, timeout, None)
    }

    /// Reads at most `max_body_bytes + 1` bytes of the response (a longer one is an
    /// error, and the rest is never read), and the whole exchange, head and body, must
    /// end within `timeout`: a server that drips bytes cannot hold the request longer.
    fn send_bounded(
        &self,
        req: OutboundRequest,
        timeout: Duration,
        max_body_bytes: usize,
    ) -> Result<OutboundResponse, SendError> {
        send_blocking(req, timeout, Some(max_body_bytes))
    }

    fn variable(&self, name: &str) -> Option<String> {
        spin_sdk::variables::get(name).ok()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    /// `stat-at` and `metadata-hash-at` on the preopen that holds `path` (the
    /// longest whose name is a prefix of it, as wasi-libc resolves it): two host
    /// calls, the file not read.
    fn file_stamp(&self, path: &str) -> Option<FileStamp> {
        use wasi::filesystem::types::{Datetime, PathFlags};
        let dirs = wasi::filesystem::preopens::get_directories();
        let (dir, rel) = dirs
            .iter()
            .filter_map(|(dir, name)| {
                let name = name.trim_end_matches('/');
                let rest = path.strip_prefix(name)?;
                (rest.starts_with('/') || name.is_empty())
                    .then(|| (dir, name.len(), rest.trim_start_matches('/')))
            })
            .max_by_key(|(_, len, _)| *len)
            .map(|(dir, _, rel)| (dir, rel))?;
        let stat = dir.stat_at(PathFlags::SYMLINK_FOLLOW, rel).ok()?;
        let id = dir.metadata_hash_at(PathFlags::SYMLINK_FOLLOW, rel).ok()?;
        let ns = |t: Option<Datetime>| {
            t.map(|t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanoseconds))
        };
        Some(FileStamp {
            identity: [id.lower, id.upper],
            size: stat.size,
            modified_ns: ns(stat.data_modification_timestamp),
            changed_ns: ns(stat.status_change_timestamp),
        })
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket()?
            .get(key)
            .map_err(|e| KvError(format!("{e:?}")))
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.bucket()?
            .set(key, value)
            .map_err(|e| KvError(format!("{e:?}")))
    }

    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.bucket()?
            .delete(key)
            .map_err(|e| KvError(format!("{e:?}")))
    }

    /// `wasi:keyvalue/batch` `set-many`: under Spin one SQLite transaction (one
    /// journal sync), on Redis one MSET. Nothing to write is no host call.
    fn kv_set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        if entries.is_empty() {
            return Ok(());
        }
        batch::set_many(self.bucket()?, entries).map_err(|e| KvError(format!("{e:?}")))
    }

    /// `delete-many`: one SQLite statement, or one Redis DEL.
    fn kv_delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        batch::delete_many(self.bucket()?, keys).map_err(|e| KvError(format!("{e:?}")))
    }

    fn kv_keys(&self) -> Result<Vec<String>, KvError> {
        let bucket = self.bucket()?;
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = bucket
                .list_keys(cursor.as_deref())
                .map_err(|e| KvError(format!("{e:?}")))?;
            keys.extend(page.keys);
            match page.cursor {
                Some(c) if !c.is_empty() => cursor = Some(c),
                _ => return Ok(keys),
            }
        }
    }

    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        let bucket = self.bucket()?;
        let cas = atomics::Cas::new(bucket, key).map_err(|e| KvError(format!("{e:?}")))?;
        let current = cas.current().map_err(|e| KvError(format!("{e:?}")))?;
        if current.as_deref() != expected {
            return Ok(false);
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(e)) => Err(KvError(format!("{e:?}"))),
        }
    }

    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        atomics::increment(self.bucket()?, key, delta).map_err(|e| KvError(format!("{e:?}")))
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    /// The host's `wasi:random` (Spin: the OS's random source).
    fn random_u64(&self) -> u64 {
        wasi::random::random::get_random_u64()
    }

    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    /// One write per line: `eprintln!` writes the text and the newline separately,
    /// each several host calls, and panics if stderr fails.
    fn log(&self, line: &str) {
        let mut out = String::with_capacity(line.len() + 1);
        out.push_str(line);
        out.push('\n');
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    }
}

/// Outbound HTTP over `wasi:http/outgoing-handler`, synchronously, with
/// connect / first-byte / between-bytes timeouts set on the request options.
/// With `max_body`: a response body over it is an error (reading stops one byte
/// past it), and everything must arrive within `timeout` of the start.
fn send_blocking(
    req: OutboundRequest,
    timeout: Duration,
    max_body: Option<usize>,
) -> Result<OutboundResponse, SendError> {
    let nanos = timeout.as_nanos().min(u64::MAX as u128) as u64;
    let deadline = max_body.map(|_| monotonic_clock::now().saturating_add(nanos));
    let late = || {
        SendError::Timeout(format!(
            "response not complete within {} ms",
            timeout.as_millis()
        ))
    };
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .chain(std::iter::once((
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        )))
        .collect();
    let fields = wasi_http::Fields::from_list(&headers)
        .map_err(|e| SendError::Transport(format!("bad header: {e:?}")))?;
    let request = wasi_http::OutgoingRequest::new(fields);
    let method = match parts.method.as_str() {
        "GET" => wasi_http::Method::Get,
        "POST" => wasi_http::Method::Post,
        "PUT" => wasi_http::Method::Put,
        "DELETE" => wasi_http::Method::Delete,
        other => wasi_http::Method::Other(other.to_string()),
    };
    let bad = |what: &str| SendError::Transport(format!("invalid {what}"));
    request.set_method(&method).map_err(|_| bad("method"))?;
    let scheme = match parts.uri.scheme_str() {
        Some("https") => wasi_http::Scheme::Https,
        _ => wasi_http::Scheme::Http,
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|_| bad("scheme"))?;
    let authority = parts.uri.authority().map(|a| a.as_str().to_string());
    request
        .set_authority(authority.as_deref())
        .map_err(|_| bad("authority"))?;
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string());
    request
        .set_path_with_query(path.as_deref())
        .map_err(|_| bad("path"))?;

    let options = wasi_http::RequestOptions::new();
    // Hosts may not support every timeout; an unsupported one is not fatal.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));

    let outgoing_body = request.body().map_err(|_| bad("body"))?;
    let future = outgoing_handler::handle(request, Some(options)).map_err(map_error)?;
    {
        let stream = outgoing_body.write().map_err(|_| bad("body stream"))?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| SendError::Transport(format!("writing body: {e:?}")))?;
        }
    }
    wasi_http::OutgoingBody::finish(outgoing_body, None).map_err(map_error)?;

    {
        let head = future.subscribe();
        match deadline {
            None => head.block(),
            Some(at) => {
                let timer = monotonic_clock::subscribe_instant(at);
                if !wasi::io::poll::poll(&[&head, &timer]).contains(&0) {
                    return Err(late());
                }
            }
        }
    }
    let incoming = match future.get() {
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(code))) => return Err(map_error(code)),
        _ => return Err(SendError::Transport("response future failed".into())),
    };
    let mut response = http::Response::builder().status(incoming.status());
    let mut declared: Option<u64> = None;
    for (name, value) in incoming.headers().entries() {
        if name.eq_ignore_ascii_case("content-length") {
            declared = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        }
        response = response.header(name, value);
    }
    if let Some(max) = max_body {
        if declared.is_some_and(|n| n > max as u64) {
            return Err(SendError::TooLarge(max));
        }
    }
    let incoming_body = incoming
        .consume()
        .map_err(|_| SendError::Transport("response body taken".into()))?;
    let bytes = {
        let stream = incoming_body
            .stream()
            .map_err(|_| SendError::Transport("response body stream".into()))?;
        let limit = max_body.map_or(usize::MAX, |m| m.saturating_add(1));
        read_at_most(&stream, limit, deadline).map_err(|e| match e {
            ReadError::Stream(m) => SendError::Transport(format!("reading body: {m}")),
            ReadError::Deadline => late(),
        })?
    };
    if let Some(max) = max_body {
        if bytes.len() > max {
            return Err(SendError::TooLarge(max));
        }
    }
    response
        .body(bytes)
        .map_err(|e| SendError::Transport(format!("response: {e}")))
}

fn map_error(code: wasi_http::ErrorCode) -> SendError {
    use wasi_http::ErrorCode as E;
    match code {
        E::HttpRequestDenied => {
            SendError::Denied("destination not in allowed_outbound_hosts".into())
        }
        E::ConnectionTimeout | E::ConnectionReadTimeout | E::ConnectionWriteTimeout => {
            SendError::Timeout(format!("{code:?}"))
        }
        E::HttpResponseTimeout => SendError::Timeout("no response in time".into()),
        other => SendError::Transport(format!("{other:?}")),
    }
}
