//! The request-header timeout for every request on a connection, not only the first.
//!
//! actix-http arms its header timeout (`client_request_timeout`) only for a connection's first
//! request. On a keep-alive connection the first byte of the next request clears the keep-alive
//! timer and nothing else is armed, so a client that sends part of a second request's headers
//! and then stalls holds the connection for as long as it likes (seen: more than 2 minutes).
//!
//! This watchdog closes such connections. Each connection registers at accept time with a
//! duplicate of its socket descriptor. The middleware [`track`] marks when a request reaches the
//! application and when its response body has been produced. A connection with no request in
//! the application for longer than `keep_alive + request_header_timeout` is idle or stuck in
//! the next request's headers: its socket is shut down, which ends the connection in actix too.
//! A request in progress (a long upload or download) is never touched; bodies have their own
//! timeouts.
//!
//! The duplicate is closed as soon as actix drops the connection's extensions, which it does
//! before it closes its own descriptor (so the FIN is not delayed). A connection therefore costs
//! two descriptors while it lives; fdlimit.rs budgets for that.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::middleware::Holding;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

/// How often connections are looked at.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// The connections of one server and how long one may sit without a request in progress.
pub struct Watchdog {
    conns: Mutex<Vec<Weak<Conn>>>,
    idle_limit: Duration,
    metrics: Arc<Metrics>,
}

/// One connection: a duplicate of its descriptor, requests in the application, and since when
/// it has had none (see [`now_ms`]).
pub struct Conn {
    fd: OwnedFd,
    busy: AtomicUsize,
    idle_since_ms: AtomicU64,
    closed_by_watchdog: std::sync::atomic::AtomicBool,
}

impl Watchdog {
    pub fn new(keep_alive: Duration, header_timeout: Duration, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            conns: Mutex::new(Vec::new()),
            idle_limit: keep_alive + header_timeout.max(Duration::from_secs(1)),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an accepted connection; the returned handle goes into the connection's
    /// extensions. None when the descriptor cannot be duplicated (then the connection is served
    /// without the watchdog, as before).
    pub fn register(&self, stream: &dyn std::any::Any) -> Option<Arc<Conn>> {
        let tcp = stream.downcast_ref::<actix_web::rt::net::TcpStream>()?;
        let fd = match tcp.as_fd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch a connection");
                return None;
            }
        };
        let conn = Arc::new(Conn {
            fd,
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now_ms()),
            closed_by_watchdog: false.into(),
        });
        self.lock().push(Arc::downgrade(&conn));
        Some(conn)
    }

    /// One look at every connection: forget closed ones, shut down those idle for too long.
    /// Returns how many were shut down.
    pub fn scan(&self) -> usize {
        let now = now_ms();
        let limit = u64::try_from(self.idle_limit.as_millis()).unwrap_or(u64::MAX);
        let mut stuck = Vec::new();
        self.lock().retain(|w| match w.upgrade() {
            None => false,
            Some(c) => {
                let idle_for = now.saturating_sub(c.idle_since_ms.load(Ordering::Acquire));
                if c.busy.load(Ordering::Acquire) == 0
                    && idle_for > limit
                    && !c.closed_by_watchdog.swap(true, Ordering::AcqRel)
                {
                    stuck.push(c);
                }
                true
            }
        });
        for c in &stuck {
            // Ends the connection for actix as well: its next read sees end of stream.
            if let Err(e) = rustix::net::shutdown(&c.fd, rustix::net::Shutdown::Both) {
                tracing::debug!(error = %e, "shutting down an idle connection failed");
            }
            self.metrics.request_timed_out();
        }
        if !stuck.is_empty() {
            tracing::info!(
                connections = stuck.len(),
                idle_limit_secs = self.idle_limit.as_secs(),
                "closed connections that sent no complete request in time"
            );
        }
        stuck.len()
    }

    /// Scans until the returned task is aborted (or the process ends).
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SCAN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.scan();
            }
        })
    }
}

/// Marks a request as in the application until its response body has been produced (or
/// dropped), so the watchdog leaves its connection alone meanwhile.
pub async fn track<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<Holding<Option<Busy>>>, actix_web::Error> {
    let busy = req.conn_data::<Arc<Conn>>().map(|c| Busy::start(c.clone()));
    let res = next.call(req).await?;
    Ok(res.map_body(|_, body| Holding::new(body, busy)))
}

/// A request in progress on a watched connection; the connection is idle again when it drops.
pub struct Busy(Arc<Conn>);

impl Busy {
    fn start(c: Arc<Conn>) -> Self {
        c.busy.fetch_add(1, Ordering::AcqRel);
        Self(c)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(now_ms(), Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Milliseconds since one epoch for the process, shared by every watchdog and connection.
fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}
