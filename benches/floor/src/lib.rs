//! The floor of issue 13's ratios: what any component that records something and
//! calls out must pay per request under Spin: one key-value `set` (one durable
//! transaction) and one outbound POST (to the benchmark's receiver), then a 200.
//! remediator acting (b) and matching nothing (c) are measured against it.

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
// wasi:keyvalue, as remediator reaches its store.
use spin_sdk::wit::wasi::keyvalue::store;

#[http_component]
async fn handle(req: Request) -> Response {
    match floor(&req).await {
        Ok(status) => Response::new(200, format!("floor: receiver answered {status}\n")),
        Err(e) => Response::new(500, format!("floor: {e}\n")),
    }
}

async fn floor(req: &Request) -> Result<u16, String> {
    let bucket = store::open("default").map_err(|e| format!("key-value: {e:?}"))?;
    bucket
        .set("floor", req.body())
        .map_err(|e| format!("key-value set: {e:?}"))?;
    let url = spin_sdk::variables::get("receiver_url").map_err(|e| format!("receiver_url: {e}"))?;
    let out = Request::builder()
        .method(Method::Post)
        .uri(format!("{url}/scale"))
        .header("content-type", "application/json")
        // As remediator sends: a known length, not chunked (the receiver reads by length).
        .header("content-length", req.body().len().to_string())
        .body(req.body().to_vec())
        .build();
    let resp: Response = spin_sdk::http::send(out)
        .await
        .map_err(|e| format!("POST {url}/scale: {e}"))?;
    match *resp.status() {
        s if s < 400 => Ok(s),
        s => Err(format!("receiver answered {s}")),
    }
}
