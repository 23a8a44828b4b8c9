//! The `strata` binary: `serve` (default), `token`, `migrate`, `openapi`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use strata_api::config::LogFormat;
use strata_api::{Application, Config, Overrides, auth, db, openapi};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "strata", version, about = "Multi-tenant image service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Default, Clone)]
struct Common {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory for the embedded defaults (SQLite, blobs, development key).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Validate the configuration (keys, regions, providers, auth keys) and exit, without
        /// creating anything or contacting the database or storage.
        #[arg(long)]
        check_config: bool,
    },
    /// Print a JWT signed by the local development key.
    Token {
        #[command(flatten)]
        common: Common,
        /// Organization the token acts for (repeatable).
        #[arg(long = "org")]
        orgs: Vec<String>,
        /// Space-separated scopes. Default: all of them.
        #[arg(long, default_value = "images:read images:write kernels:read kernels:write")]
        scope: String,
        /// Make the token a platform admin's.
        #[arg(long)]
        admin: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// The token's subject.
        #[arg(long, default_value = "dev")]
        sub: String,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Print the OpenAPI document.
    Openapi,
}

fn load(common: &Common, listen: Option<SocketAddr>) -> anyhow::Result<Config> {
    Config::load(
        common.config.as_deref(),
        &Overrides {
            listen,
            data_dir: common.data_dir.clone(),
        },
    )
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Serve {
        common: Common::default(),
        listen: None,
        check_config: false,
    });
    // `serve` loads its configuration once, before logging starts, so `[log] format` applies from
    // the first line; a configuration that does not load is reported by `run`.
    let serve_cfg = match &command {
        Command::Serve {
            common,
            listen,
            check_config: false,
        } => Some(load(common, *listen)),
        _ => None,
    };
    let format = match &serve_cfg {
        Some(Ok(cfg)) => cfg.log.format,
        _ => LogFormat::Text,
    };
    init_logging(format);
    match run(command, serve_cfg).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.init(),
        // One object per line; the request span's fields (request id, method, path) sit beside
        // the event's (route, status, elapsed_ms).
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Runs one command; `serve_cfg` is the configuration `main` already loaded for `serve`.
async fn run(command: Command, serve_cfg: Option<anyhow::Result<Config>>) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            common,
            listen,
            check_config: true,
        } => {
            strata_api::app::check_config(&load(&common, listen)?)?;
            println!("configuration ok");
            Ok(())
        }
        Command::Serve { common, listen, .. } => {
            let cfg = serve_cfg.unwrap_or_else(|| load(&common, listen))?;
            let app = Application::build(cfg).await?;
            // Scripts and tests read this line to learn the bound port.
            println!("strata listening on http://{}", app.addr());
            if let Some(m) = app.metrics_addr() {
                println!("strata metrics on http://{m}/metrics");
            }
            tracing::info!(addr = %app.addr(), "listening");
            app.run().await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Token {
            common,
            orgs,
            scope,
            admin,
            ttl,
            sub,
        } => {
            let cfg = load(&common, None)?;
            let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
            println!("{}", auth::mint_dev_token(&cfg, &sub, &orgs, &scopes, admin, ttl)?);
            Ok(())
        }
        Command::Migrate { common } => {
            let cfg = load(&common, None)?;
            let conn = db::connect(&cfg.database_url(), cfg.database.max_connections).await?;
            db::migrate(&conn).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Openapi => {
            print!("{}", openapi::to_json(&openapi::document()));
            Ok(())
        }
    }
}
