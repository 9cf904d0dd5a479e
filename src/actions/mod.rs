//! Building outbound requests for actions and reading their responses. No I/O here.

pub mod scale;
pub mod unleash;

use crate::platform::{OutboundResponse, SendError};

/// Why an action did not take effect, and whether the sender retrying could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    pub message: String,
    pub retryable: bool,
}

/// Percent-encode one path segment (RFC 3986 unreserved characters pass).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A short, single-line excerpt of a response body for error messages; prefers
/// a JSON `message`/`details` field (Unleash puts its explanation there).
pub fn body_excerpt(resp: &OutboundResponse) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(resp.body())
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.pointer("/details/0/message"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(resp.body()).into_owned());
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// The shared reading of a transport failure: always worth a retry.
pub fn transport_error(peer: &str, e: &SendError) -> ActionError {
    ActionError {
        message: format!("{peer} unreachable: {e}"),
        retryable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_segment_keeps_paths_inert() {
        assert_eq!(encode_segment("EnablePromotion"), "EnablePromotion");
        assert_eq!(encode_segment("../../admin"), "..%2F..%2Fadmin");
        assert_eq!(encode_segment("a b?c#d"), "a%20b%3Fc%23d");
    }

    #[test]
    fn excerpt_prefers_json_message_and_truncates() {
        let r = http::Response::builder()
            .status(404)
            .body(br#"{"name":"NotFoundError","message":"Could not find feature flag X"}"#.to_vec())
            .unwrap();
        assert_eq!(body_excerpt(&r), "Could not find feature flag X");
        let r = http::Response::builder()
            .status(500)
            .body(vec![b'x'; 500])
            .unwrap();
        assert_eq!(body_excerpt(&r).chars().count(), 201);
    }
}
