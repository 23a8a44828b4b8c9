//! Guards on an upload body as it streams: an idle timeout, a total time scaled to the bytes
//! received (a minimum average rate after a grace period), and the organization's bytes quota,
//! charged as the bytes arrive so an upload stops the moment it crosses it.

use std::time::Duration;

use crate::db::Db;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use strata_domain::DomainError;
use tokio::time::Instant;

use crate::config::LimitsConfig;
use crate::db;

/// How often (in bytes received) the remaining quota is read again, to see what concurrent
/// uploads of the same organization have stored meanwhile.
const QUOTA_REFRESH_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BodyError<E> {
    #[error("{0}")]
    Source(E),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Refused(DomainError),
}

#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub idle: Duration,
    pub base: Duration,
    pub min_bytes_per_sec: u64,
}

impl Pace {
    pub fn from_limits(l: &LimitsConfig) -> Self {
        Self {
            idle: Duration::from_secs(l.body_idle_timeout_secs.max(1)),
            base: Duration::from_secs(l.body_base_secs),
            min_bytes_per_sec: l.body_min_bytes_per_sec.max(1),
        }
    }
}

/// The bytes quota of one organization in one region, watched while an upload streams.
pub struct QuotaWatch {
    pub db: Db,
    pub org: String,
    pub region: String,
    pub limit: u64,
}

impl QuotaWatch {
    /// Bytes still free. A failed read is not a reason to fail the upload: the final charge
    /// is atomic anyway.
    async fn room(&self) -> u64 {
        match db::usage::get(&self.db, &self.org, &self.region).await {
            Ok(u) => self.limit.saturating_sub(u.bytes),
            Err(e) => {
                tracing::warn!(error = %e, "reading usage during an upload failed");
                u64::MAX
            }
        }
    }
}

struct State<S> {
    body: S,
    pace: Pace,
    quota: Option<(QuotaWatch, u64)>,
    started: Instant,
    received: u64,
    checked_at: u64,
    done: bool,
}

/// Wraps an upload body with the pace rules and, when given, the quota watch.
pub async fn guard<S, E>(
    body: S,
    pace: Pace,
    quota: Option<QuotaWatch>,
) -> impl Stream<Item = Result<Bytes, BodyError<E>>> + Unpin
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let quota = match quota {
        Some(q) => {
            let room = q.room().await;
            Some((q, room))
        }
        None => None,
    };
    let state = State {
        body,
        pace,
        quota,
        started: Instant::now(),
        received: 0,
        checked_at: 0,
        done: false,
    };
    // Fused: readers may ask again after the end.
    Box::pin(futures::stream::unfold(state, next).fuse())
}

async fn next<S, E>(mut st: State<S>) -> Option<(Result<Bytes, BodyError<E>>, State<S>)>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    if st.done {
        return None;
    }
    let rate_deadline =
        st.started + st.pace.base + Duration::from_secs_f64(st.received as f64 / st.pace.min_bytes_per_sec as f64);
    let idle_deadline = Instant::now() + st.pace.idle;
    let deadline = rate_deadline.min(idle_deadline);
    let item = match tokio::time::timeout_at(deadline, st.body.next()).await {
        Ok(item) => item,
        Err(_) => {
            st.done = true;
            let reason = if idle_deadline <= rate_deadline {
                format!("no upload data for {} s", st.pace.idle.as_secs())
            } else {
                format!(
                    "the upload is too slow: {} bytes in {} s (at least {} bytes/s after the first {} s)",
                    st.received,
                    st.started.elapsed().as_secs(),
                    st.pace.min_bytes_per_sec,
                    st.pace.base.as_secs()
                )
            };
            return Some((Err(BodyError::Timeout(reason)), st));
        }
    };
    match item {
        None => None,
        Some(Err(e)) => {
            st.done = true;
            Some((Err(BodyError::Source(e)), st))
        }
        Some(Ok(bytes)) => {
            st.received += bytes.len() as u64;
            if let Some((q, room)) = &mut st.quota
                && (st.received > *room || st.received - st.checked_at >= QUOTA_REFRESH_BYTES)
            {
                st.checked_at = st.received;
                *room = q.room().await;
                if st.received > *room {
                    st.done = true;
                    let detail = format!(
                        "bytes: {} of {} used in this region, and this upload already sent {} bytes",
                        q.limit.saturating_sub(*room),
                        q.limit,
                        st.received
                    );
                    return Some((Err(BodyError::Refused(DomainError::QuotaExceeded { detail })), st));
                }
            }
            Some((Ok(bytes), st))
        }
    }
}
