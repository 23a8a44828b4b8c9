//! Persistence: connection, migrations, and repositories that speak domain types. Uniqueness,
//! state transitions and "in use" are decided by the database (constraints and conditional
//! updates), never by an in-process lock, so any number of replicas can share it.

pub mod consumers;
pub mod docker;
pub mod entities;
mod handle;
pub mod images;
pub mod jobs;
pub mod kernels;
pub mod leases;
pub mod tenant;
pub mod uploads;
pub mod usage;

pub use handle::{Db, PoolState, Txn};

/// What a repository call can fail with. Repositories speak this, not HTTP: the one conversion
/// to `ApiError` is in `crate::error`.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A rule the database decided (a name taken, a quota exceeded): the caller's error.
    #[error(transparent)]
    Rule(#[from] strata_domain::DomainError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// A row that does not convert to a domain value.
    #[error("stored data: {0:#}")]
    Corrupt(anyhow::Error),
    /// Storage reached through a repository (aborting recorded uploads).
    #[error(transparent)]
    Storage(#[from] strata_providers::StorageError),
}

impl DbError {
    pub(crate) fn corrupt(e: impl Into<anyhow::Error>) -> Self {
        DbError::Corrupt(e.into())
    }
}

pub type DbResult<T> = Result<T, DbError>;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectOptions, Database, DbErr, SqlErr};
use secrecy::{ExposeSecret, SecretString};
use strata_migrations::MigratorTrait;

pub async fn connect(url: &SecretString, max_connections: Option<u32>) -> anyhow::Result<Db> {
    let raw = url.expose_secret();
    let is_sqlite = raw.starts_with("sqlite:");
    // SQLite creates the file but not its directory.
    let sqlite_dir = raw
        .strip_prefix("sqlite://")
        .and_then(|p| p.split('?').next())
        .and_then(|p| std::path::Path::new(p).parent())
        .filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = sqlite_dir {
        std::fs::create_dir_all(dir)?;
    }
    let size = max_connections.unwrap_or(if is_sqlite { 4 } else { 16 }).max(1);
    let acquire_timeout = Duration::from_secs(30);
    let mut opts = ConnectOptions::new(raw.to_owned());
    opts.max_connections(size)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(acquire_timeout)
        .sqlx_logging(false)
        // Per connection, not once: WAL lets readers run beside the writer, busy_timeout makes
        // writers queue instead of failing, foreign keys enforce RESTRICT/CASCADE.
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    // The URL may carry a password: errors name the backend only.
    let backend = raw.split(':').next().unwrap_or("database").to_owned();
    let db = Database::connect(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the {backend} database: {}", redact_db_error(&e)))?;
    Ok(Db::new(db, size, acquire_timeout))
}

fn redact_db_error(e: &DbErr) -> String {
    // sqlx errors do not include the URL, but be defensive about anything that looks like one.
    let s = e.to_string();
    if s.contains("://") {
        "connection failed".into()
    } else {
        s
    }
}

/// Applies pending migrations, in one transaction (DDL is transactional on both backends). On
/// PostgreSQL, replicas starting together take turns: the transaction holds an advisory lock, so
/// the second replica waits and then finds nothing left to do.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, DbBackend};
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        // an arbitrary key, the same in every Strata process
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(5326957321001)")
            .await?;
        strata_migrations::Migrator::up(txn.raw(), None).await?;
        txn.commit().await?;
    } else {
        // One connection for all of it: through the pool, a statement could run on a connection
        // whose read snapshot predates a table the migration just dropped and recreated.
        let txn = db.begin().await?;
        strata_migrations::Migrator::up(txn.raw(), None).await?;
        txn.commit().await?;
    }
    Ok(())
}

pub(crate) fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

pub(crate) fn is_fk_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) || sqlite_code(e).as_deref() == Some("1811")
}

/// SQLite reports a violated `ON DELETE RESTRICT` as SQLITE_CONSTRAINT_TRIGGER (1811), which
/// sea-orm does not classify. The schema has no triggers, so the code means exactly that.
fn sqlite_code(e: &DbErr) -> Option<String> {
    use sea_orm::RuntimeErr;
    let (DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner))) = e else {
        return None;
    };
    match &**inner {
        sea_orm::sqlx::Error::Database(d) if d.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some() => {
            d.code().map(|c| c.into_owned())
        }
        _ => None,
    }
}

/// Counters and sizes are stored as signed integers; negative never happens but must not wrap.
pub(crate) fn nonneg(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> anyhow::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| anyhow::anyhow!("timestamp {us} out of range"))
}

/// Now, truncated to what the database stores, so values read back compare equal.
pub(crate) fn now() -> DateTime<Utc> {
    let n = Utc::now();
    DateTime::from_timestamp_micros(n.timestamp_micros()).unwrap_or(n)
}
