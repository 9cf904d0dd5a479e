//! The HTTP layer: [`handle`] sends each request to the module of its route (one file
//! per route); every failure is an [`ApiError`], whose `status()` is the one place a
//! status code is chosen for it.

mod audit;
mod error;
mod health;
mod live;
mod metrics;
mod request;
mod response;
mod rules;
mod simulate;
mod webhook;

pub use error::ApiError;
pub use webhook::{MAX_ALERTS, MAX_BODY_BYTES};

use http::{Method, Request, Response};

use crate::ingest::Format;
use crate::platform::Platform;

pub fn handle(p: &dyn Platform, req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    let path = req.uri().path();
    let answer = match (req.method(), path) {
        // A webhook route answers (and counts) every method, 405 included.
        (_, "/") => return webhook::handle(p, &req, None),
        (_, "/alertmanager") => return webhook::handle(p, &req, Some(Format::Alertmanager)),
        (_, "/grafana") => return webhook::handle(p, &req, Some(Format::Grafana)),
        (_, "/keptn") => return webhook::handle(p, &req, Some(Format::Keptn)),
        (&Method::GET, "/healthz") => health::get(p),
        (&Method::GET, "/livez") => live::get(),
        (&Method::GET, "/audit") => audit::get(p, &req),
        (&Method::GET, "/rules") => rules::get(p, &req),
        (&Method::GET, "/metrics") => metrics::get(p, &req),
        (&Method::POST, "/simulate") => simulate::post(p, &req),
        (_, "/healthz" | "/livez" | "/audit" | "/rules" | "/metrics") => {
            Err(ApiError::MethodNotAllowed("GET"))
        }
        (_, "/simulate") => Err(ApiError::MethodNotAllowed("POST")),
        _ => Err(ApiError::NotFound(path.to_string())),
    };
    answer.unwrap_or_else(|e| e.response())
}
