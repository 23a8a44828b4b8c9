//! Request ids and access logs. Headers are never logged: they carry tokens.

use std::time::Instant;

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::HttpMessage;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use bytes::Bytes;
use futures::Stream;
use tracing::Instrument;

use actix_web::body::EitherBody;
use actix_web::{ResponseError, web};
use strata_domain::DomainError;

use crate::error::{ApiError, REQUEST_ID};
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

fn incoming_id(req: &ServiceRequest) -> Option<String> {
    let v = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| v.to_owned())
}

pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = incoming_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let started = Instant::now();
    let mut res = REQUEST_ID
        .scope(id.clone(), next.call(req))
        .instrument(span.clone())
        .await?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    span.in_scope(|| {
        tracing::info!(
            route = res.request().match_pattern().as_deref().unwrap_or("unmatched"),
            status = res.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "served"
        );
    });
    Ok(res)
}

/// Refuses a request whose header section is over `[limits] max_header_bytes` or
/// `max_header_fields` with `431` and the JSON error body. Below actix-web's own hard limits
/// (128 KiB, 96 fields), where its parser answers before any middleware runs (with the same
/// JSON body, through the hook in `error::dispatcher_error`).
pub async fn header_limits(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let over = req.app_data::<web::Data<AppState>>().and_then(|st| {
        let fields = req.headers().len();
        // request line ("METHOD URI HTTP/1.1\r\n") plus "name: value\r\n" per field
        let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
        let line = req.method().as_str().len() + target + 11;
        let bytes = line
            + req
                .headers()
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if fields > st.limits.max_header_fields {
            Some(format!(
                "{fields} header fields; at most {}",
                st.limits.max_header_fields
            ))
        } else if bytes > st.limits.max_header_bytes {
            Some(format!(
                "about {bytes} bytes of headers; at most {}",
                st.limits.max_header_bytes
            ))
        } else {
            None
        }
    });
    match over {
        Some(detail) => {
            let res = ApiError::from(DomainError::HeadersTooLarge { detail }).error_response();
            Ok(req.into_response(res).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

/// A request refused before its body was read (413 by Content-Length, 422 after the first 64 KiB,
/// 415, 401, 404, ...) leaves unread bytes on the connection; reusing it would hang or misparse the
/// next request. Error responses to requests with a body therefore close the connection.
///
/// `Connection: close` alone is not enough for chunked bodies: when the handler has dropped the
/// payload, actix-http *drains* a chunked body to its end before closing, and a client that stays
/// silent holds the connection forever. So the payload is kept alive (held by the response body)
/// until the response is written: the server then lingers for the disconnect timeout at most and
/// closes, whatever the framing.
pub async fn close_after_refused_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let held = has_body.then(|| {
        let shared = Rc::new(RefCell::new(req.take_payload()));
        let reader = shared.clone();
        let stream = futures::stream::poll_fn(move |cx| Pin::new(&mut *reader.borrow_mut()).poll_next(cx));
        req.set_payload(Payload::Stream {
            payload: Box::pin(stream),
        });
        shared
    });
    let mut res = next.call(req).await?;
    let refused = res.status().is_client_error() || res.status().is_server_error();
    if has_body && refused {
        res.response_mut().head_mut().set_connection_type(ConnectionType::Close);
    }
    // Successful responses let the framework drain what is left as before.
    let held = held.filter(|_| refused);
    Ok(res.map_body(|_, body| Holding::new(body, held)))
}

/// A response body that keeps `T` alive until the body is done: actix drops a response body
/// as soon as its last chunk has been written. Used to hold a refused request's payload (above)
/// and the keep-alive watchdog's "request in progress" mark.
pub struct Holding<T> {
    body: BoxBody,
    _held: T,
}

impl<T> Holding<T> {
    pub fn new(body: impl MessageBody + 'static, held: T) -> Self {
        Self {
            body: body.boxed(),
            _held: held,
        }
    }
}

impl<T: Unpin> MessageBody for Holding<T> {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}
