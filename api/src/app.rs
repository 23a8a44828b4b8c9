//! `Application::build` wires config into a bound, ready-to-run server; tests bind port 0.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ResourceDef;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpServer, web};
use strata_domain::{DomainError, ResourceKind};
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Verifier;
use crate::config::Config;
use crate::error::{ApiError, bad_request};
use crate::metrics::Metrics;
use crate::openapi::ApiDoc;
use crate::service::imports::UrlImport;
use crate::service::jobs::JobRunner;
use crate::service::sweeper::Sweeper;
use crate::state::{AppState, build_regions};
use crate::{db, middleware, routes};

pub struct Application {
    server: Server,
    addr: SocketAddr,
    jobs: Arc<JobRunner>,
    sweeper: Sweeper,
    stop_workers: watch::Sender<bool>,
    /// The separate `/metrics` listener, when `[server] metrics_listen` is set.
    metrics_server: Option<(Server, SocketAddr)>,
    watchdog: Arc<crate::keepalive::Watchdog>,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        // Process-wide; a second application in the same process (tests) keeps the first one.
        actix_http::h1::set_error_body_hook(crate::error::dispatcher_error);
        let db = db::connect(&cfg.database_url(), cfg.database.max_connections).await?;
        db::migrate(&db).await?;
        let regions = build_regions(&cfg)?;
        let kernels = Arc::new(crate::service::kernels::KernelSettings::from_config(&cfg)?);
        let verifier = Verifier::from_config(&cfg)?;
        let (stop_workers, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new(cfg.server.metrics_listen.is_some()));
        let mut jobs = JobRunner::new(
            db.clone(),
            regions.clone(),
            cfg.imports.clone(),
            cfg.quotas.clone(),
            cfg.limits.max_image_bytes,
            stop_rx,
            metrics.clone(),
        );
        jobs.register(UrlImport::new(&cfg.imports)?);
        jobs.register(crate::service::oci::OciImport::new(&cfg)?);
        jobs.register(crate::service::kernel_pull::KernelBundlePull::new(
            &cfg.imports,
            kernels.staging_dir.clone(),
        )?);
        let jobs = Arc::new(jobs);
        let sweeper = Sweeper::new(db.clone(), regions.clone(), cfg.sweeper.clone(), metrics.clone())
            .with_local_staging(kernels.staging_dir.clone());
        let state = web::Data::new(AppState {
            db,
            regions,
            verifier,
            limits: cfg.limits.clone(),
            quotas: cfg.quotas.clone(),
            jobs: jobs.clone(),
            metrics: metrics.clone(),
            defaults: Arc::new(crate::service::defaults::Defaults::from_config(&cfg, &kernels.catalog)?),
            kernels,
        });
        // One document, post-processed (links, closed variants), both served and used for routing.
        let doc = crate::openapi::document();
        let known = web::Data::new(KnownRoutes::from_spec(&doc));
        let listener = TcpListener::bind(cfg.server.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
        let addr = listener.local_addr()?;
        let metrics_server = match cfg.server.metrics_listen {
            Some(at) => Some(crate::metrics::serve_separately(at, state.clone())?),
            None => None,
        };
        let workers = cfg
            .server
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1);
        let nofile = crate::fdlimit::raise();
        let max_connections = cfg.server.max_connections.unwrap_or_else(|| {
            crate::fdlimit::max_connections(nofile, workers, cfg.database.max_connections.unwrap_or(16))
        });
        match nofile {
            Some(n) if n < crate::fdlimit::RECOMMENDED => tracing::warn!(
                open_file_limit = n,
                max_connections_per_worker = max_connections,
                workers,
                "the open-file limit (RLIMIT_NOFILE) is {n}, below the recommended {}: at most {max_connections} \
                 connections per worker are served at once, the rest wait; raise it (ulimit -n, LimitNOFILE=)",
                crate::fdlimit::RECOMMENDED
            ),
            _ => {
                tracing::info!(open_file_limit = ?nofile, max_connections_per_worker = max_connections, workers, "connection budget")
            }
        }
        // Re-arms the header timeout for every request of a keep-alive connection (actix arms
        // it for the first only); see keepalive.rs.
        let watchdog = crate::keepalive::Watchdog::new(
            Duration::from_secs(cfg.server.keep_alive_secs),
            Duration::from_secs(cfg.server.request_header_timeout_secs.max(1)),
            metrics.clone(),
        );
        let on_connect = {
            let count = crate::metrics::on_connect(metrics);
            let watchdog = watchdog.clone();
            move |conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions| {
                count(conn, ext);
                if let Some(c) = watchdog.register(conn) {
                    ext.insert(c);
                }
            }
        };
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(middleware::header_limits))
                .wrap(from_fn(middleware::close_after_refused_body))
                .wrap(from_fn(middleware::request_id))
                .wrap(from_fn(crate::metrics::track))
                .wrap(from_fn(crate::keepalive::track))
                .app_data(state.clone())
                .app_data(known.clone())
                .app_data(web::QueryConfig::default().error_handler(|e, _| bad_request("query", e)))
                .app_data(web::PathConfig::default().error_handler(|e, _| bad_request("path", e)))
                .into_utoipa_app()
                .openapi(ApiDoc::openapi())
                .configure(routes::configure)
                .openapi_service({
                    let doc = doc.clone();
                    move |_| SwaggerUi::new("/docs/{_:.*}").url("/api/openapi.json", doc)
                })
                .into_app()
                .configure(routes::console::configure)
                .configure(routes::docker::configure)
                .default_service(web::to(unknown_route))
        })
        .on_connect(on_connect)
        .shutdown_timeout(cfg.server.shutdown_timeout_secs)
        .client_request_timeout(Duration::from_secs(cfg.server.request_header_timeout_secs.max(1)))
        .client_disconnect_timeout(Duration::from_secs(cfg.server.disconnect_timeout_secs.max(1)))
        .keep_alive(Duration::from_secs(cfg.server.keep_alive_secs))
        .max_connections(max_connections)
        .workers(workers);
        let server = server.listen(listener)?.run();
        Ok(Self {
            server,
            addr,
            jobs,
            sweeper,
            stop_workers,
            metrics_server,
            watchdog,
            state: app_state,
        })
    }

    /// The address of the separate metrics listener, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|(_, a)| *a)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until a shutdown signal (SIGTERM/SIGINT) or [`Self::handle`]`.stop()`: the HTTP
    /// server stops accepting and lets running requests finish, then import workers hand their
    /// jobs back (leases released) so another process can continue at once.
    pub async fn run(self) -> std::io::Result<()> {
        let workers = tokio::spawn(self.jobs.clone().run());
        // The operator's defaults, reconciled in the background: an unreachable mirror must not
        // delay serving.
        let state = self.state.clone();
        let defaults = tokio::spawn(async move { crate::service::defaults::reconcile_all(&state).await });
        let sweeper = tokio::spawn(self.sweeper.run(self.stop_workers.subscribe()));
        let metrics_server = self.metrics_server.map(|(s, _)| (s.handle(), tokio::spawn(s)));
        let watchdog = self.watchdog.spawn();
        let served = self.server.await;
        watchdog.abort();
        if let Some((handle, task)) = metrics_server {
            handle.stop(true).await;
            let _ = task.await;
        }
        defaults.abort();
        let _ = self.stop_workers.send(true);
        let _ = workers.await;
        let _ = sweeper.await;
        served
    }
}

/// Every documented path and its methods, taken from the OpenAPI document, so a request to a known
/// path with another method gets 405 and an `Allow` header instead of 404.
struct KnownRoutes(Vec<(ResourceDef, Vec<String>)>);

impl KnownRoutes {
    fn from_spec(api: &utoipa::openapi::OpenApi) -> Self {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let mut methods: Vec<String> = Vec::new();
                let ops = [
                    ("GET", &item.get),
                    ("PUT", &item.put),
                    ("POST", &item.post),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                    ("HEAD", &item.head),
                ];
                for (name, op) in ops {
                    if op.is_some() {
                        methods.push(name.to_owned());
                    }
                }
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        Self(routes)
    }
}

async fn unknown_route(req: HttpRequest, known: web::Data<KnownRoutes>) -> Result<actix_web::HttpResponse, ApiError> {
    match known.0.iter().find(|(def, _)| def.is_match(req.path())) {
        Some((_, methods)) => Err(DomainError::MethodNotAllowed {
            allowed: methods.clone(),
        }
        .into()),
        None => Err(DomainError::not_found(ResourceKind::Route, req.path()).into()),
    }
}

/// Everything `strata serve` would refuse at start, checked without side effects.
pub fn check_config(cfg: &Config) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let url = cfg.database_url();
    let scheme = url.expose_secret().split(':').next().unwrap_or_default().to_owned();
    if !matches!(scheme.as_str(), "sqlite" | "postgres" | "postgresql") {
        anyhow::bail!("database.url: unsupported scheme {scheme:?}; use sqlite:// or postgres://");
    }
    crate::state::check_regions(cfg)?;
    crate::service::imports::fetch_policy(&cfg.imports)?;
    let kernels = crate::service::kernels::KernelSettings::from_config(cfg)?;
    crate::service::defaults::Defaults::from_config(cfg, &kernels.catalog)?;
    // Keys other than the development key (which is created at first start) must load now.
    let mut without_dev = cfg.clone();
    without_dev.auth.dev_key = false;
    if !without_dev.auth.keys.is_empty() || without_dev.auth.jwks_file.is_some() {
        crate::auth::Verifier::from_config(&without_dev)?;
    } else if !cfg.auth.dev_key {
        anyhow::bail!("auth: no keys configured and dev_key is off; no token could ever be verified");
    }
    Ok(())
}
