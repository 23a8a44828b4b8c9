//! A stored file's bytes for `GET`, whole or one byte range, for image and kernel files alike:
//! `If-Range` and `Range` are judged against the file's ETag and size, then the object is opened
//! with the range passed through to the provider.

use strata_domain::DomainError;
use strata_domain::image::if_range_holds;
use strata_domain::range::{RangeRequest, parse_range};
use strata_providers::{BlobKey, BlobRead, BlobStore};

use crate::error::ApiResult;

pub enum Download {
    Full { body: BlobRead },
    Partial { body: BlobRead, start: u64, end: u64 },
}

/// Opens `key` (of `size` bytes, current ETag `etag`) as the request's `Range` and `If-Range`
/// ask: a range whose `If-Range` no longer holds gets the whole file.
pub async fn open(
    store: &BlobStore,
    key: &BlobKey,
    etag: &str,
    size: u64,
    range: Option<&str>,
    if_range: Option<&str>,
) -> ApiResult<Download> {
    let range = match if_range {
        Some(h) if !if_range_holds(h, etag) => None,
        _ => range,
    };
    match parse_range(range, size) {
        RangeRequest::Full => Ok(Download::Full {
            body: store.open(key, None).await?,
        }),
        RangeRequest::Partial { start, end } => Ok(Download::Partial {
            body: store.open(key, Some((start, end))).await?,
            start,
            end,
        }),
        RangeRequest::Unsatisfiable => Err(DomainError::RangeNotSatisfiable { size }.into()),
    }
}
