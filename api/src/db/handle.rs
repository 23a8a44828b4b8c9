//! The database handle every repository takes.
//!
//! It is sea-orm's connection behind a gate with exactly as many permits as the pool has
//! connections. A statement outside a transaction holds a permit while it runs; a transaction
//! holds one for its whole life. The pool itself therefore never has to queue anyone: waiting
//! happens at the gate, where it is counted for `strata_db_pool_waiting`, because sqlx's pool
//! does not say how many tasks wait for a connection. The gate decides nothing about
//! correctness (that stays in the database); it only makes the queue visible, and it keeps the
//! pool's acquire timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    gate: Arc<Gate>,
}

struct Gate {
    permits: Arc<Semaphore>,
    size: u32,
    waiting: AtomicI64,
    timeout: Duration,
}

/// Counts one waiter for as long as it lives, so a cancelled wait (a client that went away)
/// is uncounted too.
struct Waiting<'a>(&'a AtomicI64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    async fn enter(&self) -> Result<OwnedSemaphorePermit, DbErr> {
        if let Ok(p) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(p);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _counted = Waiting(&self.waiting);
        match tokio::time::timeout(self.timeout, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_closed)) => Err(DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)),
            Err(_elapsed) => Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
        }
    }
}

/// What the gate and the pool say right now, for `/metrics`.
pub struct PoolState {
    pub in_use: u64,
    pub idle: u64,
    pub max: u64,
    pub waiting: u64,
}

impl Db {
    /// `size` must be the pool's `max_connections`, `acquire_timeout` its acquire timeout.
    pub fn new(conn: DatabaseConnection, size: u32, acquire_timeout: Duration) -> Self {
        let size = size.max(1);
        Db {
            conn,
            gate: Arc::new(Gate {
                permits: Arc::new(Semaphore::new(size as usize)),
                size,
                waiting: AtomicI64::new(0),
                timeout: acquire_timeout,
            }),
        }
    }

    /// Starts a transaction; it holds a connection (and a permit) until committed, rolled back
    /// or dropped (which rolls back).
    pub async fn begin(&self) -> Result<Txn, DbErr> {
        let permit = self.gate.enter().await?;
        let inner = self.conn.begin().await?;
        Ok(Txn { inner, _permit: permit })
    }

    pub fn pool_state(&self) -> Option<PoolState> {
        let (size, idle) = match self.conn.get_database_backend() {
            DbBackend::Postgres => {
                let p = self.conn.get_postgres_connection_pool();
                (p.size(), p.num_idle())
            }
            DbBackend::Sqlite => {
                let p = self.conn.get_sqlite_connection_pool();
                (p.size(), p.num_idle())
            }
            _ => return None,
        };
        Some(PoolState {
            in_use: u64::from(size).saturating_sub(idle as u64),
            idle: idle as u64,
            max: u64::from(self.gate.size),
            waiting: u64::try_from(self.gate.waiting.load(Ordering::Relaxed)).unwrap_or(0),
        })
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let _permit = self.gate.enter().await?;
        self.conn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let _permit = self.gate.enter().await?;
        self.conn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let _permit = self.gate.enter().await?;
        self.conn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let _permit = self.gate.enter().await?;
        self.conn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.conn.support_returning()
    }
}

/// An open transaction. Fields drop in order: the transaction (rolling back if still open)
/// before the permit.
pub struct Txn {
    inner: DatabaseTransaction,
    _permit: OwnedSemaphorePermit,
}

impl Txn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.inner.commit().await
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.inner.rollback().await
    }

    pub(crate) fn raw(&self) -> &DatabaseTransaction {
        &self.inner
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Txn {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.inner.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.inner.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.inner.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.inner.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }
}
