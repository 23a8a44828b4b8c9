//! STRATA PATCH (not in upstream actix-http 3.20.0): a hook that gives the responses the HTTP/1
//! dispatcher sends on its own (a request head over its hard limits -> 431, a malformed request
//! -> 400) a body and headers. Upstream sends them empty, before any middleware can run, so a
//! service cannot make them match its documented error format. See vendor/README.md.

use std::sync::OnceLock;

use bytes::Bytes;
use crate::{
    header::{HeaderName, HeaderValue},
    StatusCode,
};

use crate::{body::BoxBody, Response};

/// Given the status the dispatcher is about to send, returns extra headers and a body, or
/// `None` to keep the upstream empty response.
pub type ErrorBodyHook = fn(StatusCode) -> Option<(Vec<(HeaderName, HeaderValue)>, Bytes)>;

static HOOK: OnceLock<ErrorBodyHook> = OnceLock::new();

/// Registers the hook for the whole process. Returns false if one was already set (the first
/// one stays).
pub fn set_error_body_hook(hook: ErrorBodyHook) -> bool {
    HOOK.set(hook).is_ok()
}

pub(crate) fn error_body(res: &mut Response<()>) -> BoxBody {
    let Some(hook) = HOOK.get() else {
        return BoxBody::new(());
    };
    match hook(res.status()) {
        Some((headers, body)) => {
            for (name, value) in headers {
                res.headers_mut().insert(name, value);
            }
            BoxBody::new(body)
        }
        None => BoxBody::new(()),
    }
}
