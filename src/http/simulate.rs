//! `POST /simulate`: what the component would decide for a webhook body, from its
//! effective rules and state. Nothing is sent, recorded, audited or counted, and a
//! finished simulation answers 200 whatever the report says.

use http::{Request, Response};

use super::webhook::{deliver, Mode};
use super::{response, ApiError};
use crate::platform::Platform;

pub(super) fn post(
    p: &dyn Platform,
    req: &Request<Vec<u8>>,
) -> Result<Response<Vec<u8>>, ApiError> {
    let report = deliver(p, req, None, Mode::Simulate)?;
    Ok(response::ok(&report))
}
