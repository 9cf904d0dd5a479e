//! Placeholder during bootstrap.
use crate::platform::Platform;

pub fn handle(p: &dyn Platform, req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    let v = p.variable("unleash_url").unwrap_or_default();
    let k = p.kv_get("x").map(|v| v.is_some()).unwrap_or(false);
    let _ = p.kv_compare_and_swap("x", None, b"1");
    let f = p.read_file("/remediation.yaml").map(|s| s.len()).unwrap_or(0);
    let sent = p
        .send(
            http::Request::get(format!("{v}/health")).body(vec![]).unwrap(),
            std::time::Duration::from_secs(1),
        )
        .map(|r| r.status().as_u16().to_string())
        .unwrap_or_else(|e| e.to_string());
    http::Response::builder()
        .status(200)
        .body(format!("{} {k} {f} {sent}\n", req.uri()).into_bytes())
        .unwrap()
}

pub fn bad_request(msg: &str) -> http::Response<Vec<u8>> {
    http::Response::builder().status(400).body(msg.as_bytes().to_vec()).unwrap()
}
