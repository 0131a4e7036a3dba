//! Which database a [`CallStore`] writes: SQLite (one local file, two connections behind mutexes) or PostgreSQL
//! ([`PgDb`], two store threads). Every public method asks [`CallStore::postgres`] first and runs the PostgreSQL
//! SQL of `pg/` when it answers; otherwise it runs its SQLite body on [`CallStore::lock`], [`CallStore::read`] and
//! [`CallStore::write`], which report [`StoreError::Unsupported`] on PostgreSQL (for the parts of the store not
//! ported yet).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::pg::PgDb;
use super::{CallStore, StoreError, ctx};

/// The database behind a [`CallStore`].
#[derive(Debug, Clone)]
pub(super) enum Backend {
    /// One SQLite file (or a database in memory).
    Sqlite {
        /// The connection that writes; every method holds the lock for one transaction and never across an
        /// `.await`.
        conn: Arc<Mutex<Connection>>,
        /// The connection that reads, so reads never queue behind a write waiting for a lock (the same connection
        /// as `conn` for a database in memory).
        reader: Arc<Mutex<Connection>>,
    },
    /// A PostgreSQL database shared by several instances.
    Postgres(PgDb),
}

impl CallStore {
    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:5432/dbname`, as libpq reads
    /// it; no TLS) and migrates its schema (`schema_migrations`), under an advisory lock so that instances starting
    /// at once migrate it once.
    ///
    /// # Errors
    ///
    /// [`StoreError::Postgres`] when the URL is invalid, the database cannot be reached or a migration fails,
    /// [`StoreError::SchemaTooNew`] when a newer callbridge migrated it, [`StoreError::PostgresTimeout`] when the
    /// migrations do not finish in time.
    pub fn open_url(url: &str) -> Result<CallStore, StoreError> {
        Ok(CallStore {
            backend: Backend::Postgres(PgDb::connect(url)?),
        })
    }

    /// Where a PostgreSQL store's database is (`host:port/dbname`, no password), for logs; `None` for SQLite.
    pub fn postgres_target(&self) -> Option<&str> {
        self.postgres().map(PgDb::target)
    }

    /// A SQLite store on one connection (a database in memory, or a file until its reader is added).
    pub(super) fn sqlite(conn: Connection) -> CallStore {
        let conn = Arc::new(Mutex::new(conn));
        CallStore {
            backend: Backend::Sqlite {
                reader: conn.clone(),
                conn,
            },
        }
    }

    /// This SQLite store with its own read connection.
    pub(super) fn with_sqlite_reader(self, reader: Connection) -> CallStore {
        match self.backend {
            Backend::Sqlite { conn, .. } => CallStore {
                backend: Backend::Sqlite {
                    conn,
                    reader: Arc::new(Mutex::new(reader)),
                },
            },
            postgres @ Backend::Postgres(_) => CallStore { backend: postgres },
        }
    }

    /// The PostgreSQL database, when the records are there.
    pub(super) fn postgres(&self) -> Option<&PgDb> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite { .. } => None,
        }
    }

    /// The SQLite connections, or [`StoreError::Unsupported`] naming `what` on PostgreSQL.
    fn sqlite_connections(
        &self,
        what: &'static str,
    ) -> Result<(&Mutex<Connection>, &Mutex<Connection>), StoreError> {
        match &self.backend {
            Backend::Sqlite { conn, reader } => Ok((conn, reader)),
            Backend::Postgres(_) => Err(StoreError::Unsupported { what }),
        }
    }

    /// The SQLite write connection. A panic while it was held cannot leave it half-written (an open transaction
    /// rolls back when dropped), so a poisoned lock is taken over.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unsupported`] on PostgreSQL.
    pub(super) fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        let (conn, _) = self
            .sqlite_connections("this write (scheduled calls, the webhook outbox, recordings)")?;
        Ok(conn.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The SQLite read connection (poisoning taken over as for [`CallStore::lock`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unsupported`] on PostgreSQL.
    pub(super) fn read(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        let (_, reader) =
            self.sqlite_connections("this read (scheduled calls, the webhook outbox, recordings)")?;
        Ok(reader.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `body` in one SQLite write transaction (`BEGIN IMMEDIATE`, so a busy database is reported at once
    /// rather than when a read is upgraded) and commits it; an error from `body` rolls it back. `context` names the
    /// write in errors.
    ///
    /// # Errors
    ///
    /// `body`'s, [`StoreError::Sqlite`] when the transaction cannot begin or commit, [`StoreError::Unsupported`] on
    /// PostgreSQL.
    pub(super) fn write<T>(
        &self,
        context: &'static str,
        body: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (conn, _) = self.sqlite_connections(context)?;
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(ctx(context))?;
        let value = body(&tx)?;
        tx.commit().map_err(ctx(context))?;
        Ok(value)
    }
}
