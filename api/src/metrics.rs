//! Operator metrics in the Prometheus text format, served at `GET /metrics` (or only on
//! `[server] metrics_listen` when that is set).
//!
//! Labels carry route templates (`/api/v1/organizations/{organizationID}/...`), methods and
//! statuses, never a raw path: no organization id, name or image id ever reaches this output.
//! Counters are per process; the database gauges (pool, import jobs) are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, get, web};
use bytes::Bytes;
use futures::TryStreamExt;
use strata_domain::{DomainError, ResourceKind};

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Upper bounds (seconds) of the request latency histogram.
const BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The label of requests no route matched (unknown paths, 405s).
const UNMATCHED: &str = "unmatched";

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: [u64; BUCKETS.len() + 1],
    sum_secs: f64,
    count: u64,
}

/// What an import job did, counted per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ImportEvent {
    /// An attempt began (first run, retry or takeover).
    Started,
    Succeeded,
    /// Ended as `failed`.
    Failed,
    /// An attempt failed and the job was handed back to be retried later.
    Retried,
    /// A job whose owner stopped renewing its lease was claimed by this process.
    TakenOver,
    /// The image was deleted or another process took the job.
    Cancelled,
    /// Handed back unfinished at shutdown.
    HandedBack,
}

impl ImportEvent {
    fn label(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Retried => "retried",
            Self::TakenOver => "taken_over",
            Self::Cancelled => "cancelled",
            Self::HandedBack => "handed_back",
        }
    }
}

/// What the sweeper removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SweepRemoval {
    Object,
    StagingFile,
    MultipartUpload,
}

impl SweepRemoval {
    fn label(self) -> &'static str {
        match self {
            Self::Object => "object",
            Self::StagingFile => "staging_file",
            Self::MultipartUpload => "multipart_upload",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    /// Keyed by route template, then method (nested so a request on a known route allocates
    /// nothing).
    requests: Mutex<BTreeMap<String, BTreeMap<&'static str, RouteStats>>>,
    open_connections: AtomicI64,
    requests_in_flight: AtomicI64,
    uploads_in_flight: AtomicI64,
    shed: AtomicU64,
    timed_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    imports: Mutex<BTreeMap<(&'static str, ImportEvent), u64>>,
    imports_running: AtomicI64,
    sweeps: AtomicU64,
    sweep_failures: AtomicU64,
    sweeper_removed: Mutex<BTreeMap<SweepRemoval, u64>>,
    /// When set, `/metrics` on the main listener answers 404.
    separate_listener: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a poisoned map only means a panic elsewhere while counting; the counts are still usable
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decrements a gauge when dropped.
pub struct GaugeGuard {
    metrics: Arc<Metrics>,
    which: fn(&Metrics) -> &AtomicI64,
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        (self.which)(&self.metrics).fetch_sub(1, Ordering::Relaxed);
    }
}

fn gauge_up(metrics: &Arc<Metrics>, which: fn(&Metrics) -> &AtomicI64) -> GaugeGuard {
    which(metrics).fetch_add(1, Ordering::Relaxed);
    GaugeGuard {
        metrics: metrics.clone(),
        which,
    }
}

impl Metrics {
    pub fn new(separate_listener: bool) -> Self {
        Self {
            separate_listener,
            ..Self::default()
        }
    }

    /// Counts an open connection until the guard drops (put it in the connection's extensions).
    pub fn connection_opened(self: &Arc<Self>) -> GaugeGuard {
        gauge_up(self, |m| &m.open_connections)
    }

    /// Counts an upload in flight until the guard drops.
    pub fn upload_started(self: &Arc<Self>) -> GaugeGuard {
        gauge_up(self, |m| &m.uploads_in_flight)
    }

    /// Counts an import attempt running in this process until the guard drops.
    pub fn import_running(self: &Arc<Self>) -> GaugeGuard {
        gauge_up(self, |m| &m.imports_running)
    }

    /// A request or connection refused to protect the service (overload, descriptor shortage).
    pub fn request_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// A request or connection ended by a header or body timeout.
    pub fn request_timed_out(&self) {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    pub fn import_event(&self, kind: &'static str, event: ImportEvent) {
        *lock(&self.imports).entry((kind, event)).or_default() += 1;
    }

    pub fn sweep_finished(&self, ok: bool) {
        self.sweeps.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.sweep_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn swept(&self, what: SweepRemoval, n: u64) {
        if n > 0 {
            *lock(&self.sweeper_removed).entry(what).or_default() += n;
        }
    }

    fn observe(&self, route: &str, method: &Method, status: u16, secs: f64) {
        let method = method_label(method);
        let mut map = lock(&self.requests);
        let by_method = match map.get_mut(route) {
            Some(m) => m,
            None => map.entry(route.to_owned()).or_default(),
        };
        let stats = by_method.entry(method).or_default();
        *stats.by_status.entry(status).or_default() += 1;
        let slot = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        stats.buckets[slot] += 1;
        stats.sum_secs += secs;
        stats.count += 1;
        drop(map);
        match status {
            408 => self.request_timed_out(),
            429 | 503 => self.request_shed(),
            _ => {}
        }
    }

    /// The exposition, with the scrape-time gauges read from the database.
    pub fn render(&self, db: &DbGauges) -> String {
        let mut out = String::with_capacity(4096);
        let w = &mut out;
        header(
            w,
            "strata_http_requests_total",
            "counter",
            "Requests served, by route template, method and status.",
        );
        let requests = lock(&self.requests);
        let series = || {
            requests
                .iter()
                .flat_map(|(route, m)| m.iter().map(move |(method, s)| (route, method, s)))
        };
        for (route, method, s) in series() {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    w,
                    "strata_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        header(
            w,
            "strata_http_request_duration_seconds",
            "histogram",
            "Time to the response head, by route template and method.",
        );
        for (route, method, s) in series() {
            let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i];
                let _ = writeln!(
                    w,
                    "strata_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += s.buckets[BUCKETS.len()];
            let _ = writeln!(
                w,
                "strata_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(w, "strata_http_request_duration_seconds_sum{{{labels}}} {}", s.sum_secs);
            let _ = writeln!(w, "strata_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        drop(requests);
        let gauges: [(&str, &str, i64); 4] = [
            (
                "strata_http_open_connections",
                "Open client connections.",
                load(&self.open_connections),
            ),
            (
                "strata_http_requests_in_flight",
                "Requests being handled.",
                load(&self.requests_in_flight),
            ),
            (
                "strata_uploads_in_flight",
                "Image uploads being received.",
                load(&self.uploads_in_flight),
            ),
            (
                "strata_import_jobs_running",
                "Import attempts running in this process.",
                load(&self.imports_running),
            ),
        ];
        for (name, help, v) in gauges {
            header(w, name, "gauge", help);
            let _ = writeln!(w, "{name} {v}");
        }
        let counters: [(&str, &str, u64); 6] = [
            (
                "strata_http_requests_shed_total",
                "Requests or connections refused to protect the service (503 included).",
                self.shed.load(Ordering::Relaxed),
            ),
            (
                "strata_http_requests_timed_out_total",
                "Requests or connections ended by a timeout (408 included).",
                self.timed_out.load(Ordering::Relaxed),
            ),
            (
                "strata_http_request_bytes_total",
                "Request body bytes read.",
                self.bytes_in.load(Ordering::Relaxed),
            ),
            (
                "strata_http_response_bytes_total",
                "Response body bytes sent.",
                self.bytes_out.load(Ordering::Relaxed),
            ),
            (
                "strata_sweeps_total",
                "Orphan sweeper passes.",
                self.sweeps.load(Ordering::Relaxed),
            ),
            (
                "strata_sweep_failures_total",
                "Orphan sweeper passes that stopped on an error.",
                self.sweep_failures.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            header(w, name, "counter", help);
            let _ = writeln!(w, "{name} {v}");
        }
        header(
            w,
            "strata_sweeper_removed_total",
            "counter",
            "What the orphan sweeper removed, by kind.",
        );
        let removed = lock(&self.sweeper_removed);
        for what in [
            SweepRemoval::Object,
            SweepRemoval::StagingFile,
            SweepRemoval::MultipartUpload,
        ] {
            let n = removed.get(&what).copied().unwrap_or(0);
            let _ = writeln!(w, "strata_sweeper_removed_total{{kind=\"{}\"}} {n}", what.label());
        }
        drop(removed);
        header(
            w,
            "strata_import_job_events_total",
            "counter",
            "Import job events in this process, by kind: started, succeeded, failed, retried, taken_over, cancelled, handed_back.",
        );
        for ((kind, event), n) in lock(&self.imports).iter() {
            let _ = writeln!(
                w,
                "strata_import_job_events_total{{kind=\"{kind}\",event=\"{}\"}} {n}",
                event.label()
            );
        }
        header(
            w,
            "strata_import_jobs",
            "gauge",
            "Unfinished import jobs in the database (all replicas), by kind and state (leased: running somewhere; waiting: queued or backing off).",
        );
        for (kind, state, n) in &db.jobs {
            let _ = writeln!(w, "strata_import_jobs{{kind=\"{kind}\",state=\"{state}\"}} {n}");
        }
        if let Some(p) = &db.pool {
            let pool: [(&str, &str, u64); 4] = [
                (
                    "strata_db_pool_connections_in_use",
                    "Database connections checked out.",
                    p.in_use,
                ),
                (
                    "strata_db_pool_connections_idle",
                    "Open database connections not in use.",
                    p.idle,
                ),
                ("strata_db_pool_connections_max", "The pool's size limit.", p.max),
                (
                    "strata_db_pool_waiting",
                    "Tasks waiting for a database connection right now.",
                    p.waiting,
                ),
            ];
            for (name, help, v) in pool {
                header(w, name, "gauge", help);
                let _ = writeln!(w, "{name} {v}");
            }
        }
        out
    }
}

fn load(a: &AtomicI64) -> i64 {
    a.load(Ordering::Relaxed).max(0)
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

/// Label values are route templates from the code; escape anyway, per the exposition format.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Database gauges read at scrape time.
#[derive(Default)]
pub struct DbGauges {
    pub pool: Option<crate::db::PoolState>,
    /// (kind, state, count)
    pub jobs: Vec<(&'static str, &'static str, u64)>,
}

async fn db_gauges(st: &AppState) -> DbGauges {
    let mut jobs = Vec::new();
    for kind in st.jobs.kinds() {
        match crate::db::jobs::count_by_state(&st.db, kind).await {
            Ok((leased, waiting)) => jobs.extend([(kind, "leased", leased), (kind, "waiting", waiting)]),
            Err(e) => tracing::warn!(error = %e, "metrics: counting import jobs failed"),
        }
    }
    DbGauges {
        pool: st.db.pool_state(),
        jobs,
    }
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn exposition(st: &AppState) -> HttpResponse {
    let body = st.metrics.render(&db_gauges(st).await);
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(body)
}

/// Operator metrics (Prometheus text format)
///
/// Request counts and latency by route template, connections, uploads, imports, database pool
/// and sweeper. Carries no tenant data and needs no token. When `[server] metrics_listen` is
/// set, it is served only on that address and this route answers 404.
#[utoipa::path(
    tag = "health",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
        (status = 404, description = "`not-found`: metrics are served on a separate address (`[server] metrics_listen`)", body = ErrorBody),
    ),
    security(())
)]
#[get("/metrics")]
pub(crate) async fn get_metrics(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if st.metrics.separate_listener {
        return Err(DomainError::not_found(ResourceKind::Route, req.path()).into());
    }
    Ok(exposition(&st).await)
}

/// The handler of the separate metrics listener.
pub(crate) async fn metrics_only(st: web::Data<AppState>) -> HttpResponse {
    exposition(&st).await
}

/// Middleware: counts each request by route template, method and status, times it to the
/// response head, and counts body bytes as they are read and written.
pub async fn track<B: MessageBody + 'static>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(metrics) = req.app_data::<web::Data<AppState>>().map(|st| st.metrics.clone()) else {
        return next.call(req).await.map(|r| {
            r.map_body(|_, b| Counted {
                inner: b.boxed(),
                metrics: None,
            })
        });
    };
    let started = Instant::now();
    let method = req.method().clone();
    match req.take_payload() {
        Payload::None => {}
        payload => {
            let m = metrics.clone();
            let counted = payload.inspect_ok(move |b: &Bytes| {
                m.bytes_in.fetch_add(b.len() as u64, Ordering::Relaxed);
            });
            req.set_payload(Payload::Stream {
                payload: Box::pin(counted),
            });
        }
    }
    let _in_flight = gauge_up(&metrics, |m| &m.requests_in_flight);
    let res = next.call(req).await;
    let secs = started.elapsed().as_secs_f64();
    match res {
        Ok(res) => {
            let route = res.request().match_pattern();
            metrics.observe(
                route.as_deref().unwrap_or(UNMATCHED),
                &method,
                res.status().as_u16(),
                secs,
            );
            Ok(res.map_body(|_, b| Counted {
                inner: b.boxed(),
                metrics: Some(metrics),
            }))
        }
        Err(e) => {
            let status = e.as_response_error().status_code().as_u16();
            metrics.observe(UNMATCHED, &method, status, secs);
            Err(e)
        }
    }
}

/// A response body that counts the bytes it yields.
pub struct Counted {
    inner: BoxBody,
    metrics: Option<Arc<Metrics>>,
}

impl MessageBody for Counted {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let (Poll::Ready(Some(Ok(b))), Some(m)) = (&polled, &self.metrics) {
            m.bytes_out.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        polled
    }
}

/// Counts open connections: called by the server for every accepted connection; the guard lives
/// in the connection's extensions and drops with it.
pub fn on_connect(metrics: Arc<Metrics>) -> impl Fn(&dyn std::any::Any, &mut actix_web::dev::Extensions) + Send + Sync {
    move |_, ext| {
        ext.insert(metrics.connection_opened());
    }
}

/// A one-worker server on `[server] metrics_listen` that answers `GET /metrics`, `/healthz` and
/// `/readyz` only.
pub(crate) fn serve_separately(
    at: std::net::SocketAddr,
    state: web::Data<AppState>,
) -> anyhow::Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    let listener =
        std::net::TcpListener::bind(at).map_err(|e| anyhow::anyhow!("cannot listen on {at} for metrics: {e}"))?;
    let addr = listener.local_addr()?;
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(metrics_only))
            // Probes too: an orchestrator pointed here is not queued behind tenant traffic (or a
            // flood of hostile connections) on the main listener.
            .service(crate::routes::health::healthz)
            .service(crate::routes::health::readyz)
            .default_service(web::to(HttpResponse::NotFound))
    })
    .workers(1)
    .client_request_timeout(std::time::Duration::from_secs(10))
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok((server, addr))
}
