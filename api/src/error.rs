//! The one place errors become HTTP: status, stable `error` code, headers, body.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use strata_domain::DomainError;
use strata_providers::StorageError;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served; set by the request-id middleware.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "unknown".into())
}

/// Every error response has this body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Stable kebab-case code to branch on, e.g. `not-found`, `name-taken`, `unsupported-disk-format`.
    #[schema(example = "not-found")]
    pub error: String,
    /// What went wrong and what to do about it, for people.
    pub message: String,
    /// Quote this when reporting a problem; it is in the server's log too.
    pub request_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Anything the caller cannot fix. The cause is logged, never sent.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(e.into())
    }
}

/// The one edge from repositories: rules the database decided are the caller's; everything else
/// is internal (logged, never sent).
impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Rule(d) => ApiError::Domain(d),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::Internal(e.into())
    }
}

fn status_of(e: &DomainError) -> StatusCode {
    use DomainError as D;
    match e {
        D::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        D::Forbidden { .. } => StatusCode::FORBIDDEN,
        D::NotFound { .. } => StatusCode::NOT_FOUND,
        D::InvalidInput { .. } | D::ReservedTag { .. } => StatusCode::BAD_REQUEST,
        D::NameTaken { .. }
        | D::InvalidState { .. }
        | D::ImageProtected
        | D::InUse { .. }
        | D::KernelInUse { .. }
        | D::QuotaExceeded { .. }
        | D::UploadInProgress => StatusCode::CONFLICT,
        D::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        D::TooManyUploads { .. } => StatusCode::TOO_MANY_REQUESTS,
        D::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
        D::UnsupportedDiskFormat { .. }
        | D::InvalidKernel { .. }
        | D::UnsupportedKernelFormat { .. }
        | D::ArchitectureMismatch { .. }
        | D::InvalidArchive { .. }
        | D::ChecksumMismatch { .. }
        | D::UrlNotAllowed { .. }
        | D::FetchFailed { .. }
        | D::PlatformNotFound { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        D::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        D::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        D::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        D::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        D::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Domain(d) => status_of(d),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let request_id = current_request_id();
        let (code, message) = match self {
            ApiError::Domain(d) => (d.code(), d.to_string()),
            ApiError::Internal(cause) => {
                tracing::error!(request_id, error = format!("{cause:#}"), "internal error");
                (
                    "internal",
                    "internal server error; quote the request id when reporting it".to_owned(),
                )
            }
        };
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::Domain(DomainError::Unauthenticated { .. }) => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"strata\""),
                ));
            }
            ApiError::Domain(DomainError::MethodNotAllowed { allowed }) => {
                res.insert_header((header::ALLOW, allowed.join(", ")));
            }
            ApiError::Domain(DomainError::TooManyUploads { retry_after_secs, .. }) => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::Domain(DomainError::RangeNotSatisfiable { size }) => {
                res.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            _ => {}
        }
        let mut res = res.json(ErrorBody {
            error: code.to_owned(),
            message: message.clone(),
            request_id,
        });
        // For a second renderer of the same error (the Docker Engine API's envelope).
        res.extensions_mut().insert(Rendered { code, message });
        res
    }
}

/// What [`ApiError::error_response`] rendered, kept on the response so an API with another error
/// envelope (`routes::docker`) renders the same error its own way, at the same single edge.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub code: &'static str,
    pub message: String,
}

/// Turns the framework's own extractor errors (bad JSON, bad path) into our error shape.
pub fn bad_request(field: &str, err: impl std::fmt::Display) -> actix_web::Error {
    ApiError::Domain(DomainError::invalid(field, err.to_string())).into()
}

/// Bodies for the two responses the HTTP/1 dispatcher sends before any middleware runs: `431`
/// for a request head over actix-http's hard limits (96 header fields, 128 KiB; our own,
/// lower limits are enforced by `middleware::header_limits` with the same code) and `400` for a
/// request it cannot parse. Registered with the patched actix-http (vendor/README.md) so these
/// carry the same JSON error document, and a request id that is also logged, like every 4xx.
pub fn dispatcher_error(status: StatusCode) -> Option<(Vec<(header::HeaderName, HeaderValue)>, bytes::Bytes)> {
    let err = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => DomainError::HeadersTooLarge {
            detail: "the request head is over the server's hard limit (96 header fields or 128 KiB)".into(),
        },
        StatusCode::BAD_REQUEST => DomainError::invalid("request", "the request is not valid HTTP/1.1"),
        _ => return None,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    tracing::info!(
        request_id,
        status = status.as_u16(),
        error = err.code(),
        "refused by the HTTP parser"
    );
    let body = serde_json::to_vec(&ErrorBody {
        error: err.code().to_owned(),
        message: err.to_string(),
        request_id: request_id.clone(),
    })
    .ok()?;
    let mut headers = vec![(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.push((header::HeaderName::from_static(crate::middleware::REQUEST_ID_HEADER), v));
    }
    Some((headers, bytes::Bytes::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel and archive refusals are the caller's to fix: 422 with their own codes.
    #[test]
    fn kernel_and_archive_errors_are_422() {
        let cases = [
            (
                DomainError::UnsupportedKernelFormat {
                    found: "gzip data".into(),
                },
                "unsupported-kernel-format",
            ),
            (
                DomainError::ArchitectureMismatch {
                    found: "ELF for machine 183 (AArch64)".into(),
                    declared: "x86_64".into(),
                },
                "architecture-mismatch",
            ),
            (
                DomainError::InvalidArchive {
                    reason: "entry \"../x\" contains \"..\"".into(),
                },
                "invalid-archive",
            ),
        ];
        for (err, code) in cases {
            let api = ApiError::Domain(err);
            assert_eq!(api.status_code(), StatusCode::UNPROCESSABLE_ENTITY, "{code}");
            let res = api.error_response();
            assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
            match &api {
                ApiError::Domain(d) => assert_eq!(d.code(), code),
                ApiError::Internal(_) => unreachable!(),
            }
        }
    }
}
