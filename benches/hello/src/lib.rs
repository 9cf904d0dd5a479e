//! The floor remediator is compared against: the smallest useful Spin HTTP
//! component (`#[http_component]`, body read by the SDK, a fixed 200 answer).

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(format!("hello ({} bytes received)\n", req.body().len()))
        .build()
}
