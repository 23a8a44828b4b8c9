//! The one JSON body extractor every JSON route uses. Stricter than `web::Json`: the body must be
//! a JSON object (serde would read a struct from an array), and a declared charset must be UTF-8.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, mime};
use bytes::BytesMut;
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use strata_domain::DomainError;

use crate::error::ApiError;

/// Largest JSON request body; image bytes go through the streaming file route instead.
pub const JSON_LIMIT: usize = 64 * 1024;

const EXPECTED: &str = "application/json";

/// A request body that is a JSON object, deserialized into `T`.
pub struct JsonObject<T>(pub T);

impl<T> JsonObject<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// `application/json` or any `application/*+json` (merge patch), with no charset or UTF-8.
fn check_content_type(req: &HttpRequest) -> Result<(), DomainError> {
    let shown = || {
        req.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type")
            .chars()
            .take(100)
            .collect::<String>()
    };
    let refuse = || DomainError::UnsupportedMediaType {
        got: shown(),
        expected: EXPECTED,
    };
    let mime = req.mime_type().map_err(|_| refuse())?.ok_or_else(refuse)?;
    let json = mime.type_() == mime::APPLICATION && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON));
    if !json {
        return Err(refuse());
    }
    match mime.get_param(mime::CHARSET) {
        Some(cs) if !cs.as_str().eq_ignore_ascii_case("utf-8") => Err(DomainError::UnsupportedMediaType {
            got: shown(),
            expected: "application/json with charset utf-8 (or no charset)",
        }),
        _ => Ok(()),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, DomainError> {
    let first = body.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(DomainError::invalid("body", "must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| DomainError::invalid("body", e.to_string()))
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonObject<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let checked = check_content_type(req).and_then(|()| {
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            match declared {
                Some(n) if n > JSON_LIMIT as u64 => Err(DomainError::TooLarge {
                    limit: JSON_LIMIT as u64,
                }),
                _ => Ok(()),
            }
        });
        let mut payload = payload.take();
        Box::pin(async move {
            checked?;
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| DomainError::invalid("body", e.to_string()))?;
                if body.len() + chunk.len() > JSON_LIMIT {
                    return Err(DomainError::TooLarge {
                        limit: JSON_LIMIT as u64,
                    }
                    .into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(JsonObject(parse(&body)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Two {
        #[allow(dead_code)]
        a: Option<u32>,
    }

    #[test]
    fn only_objects() {
        assert!(parse::<Two>(b" {\"a\": 1}").is_ok());
        assert!(parse::<Two>(b"{}").is_ok());
        for bad in [&b"[1]"[..], b"[]", b" [ ]", b"null", b"1", b"\"x\"", b""] {
            assert!(parse::<Two>(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
