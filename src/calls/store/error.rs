//! What can go wrong in the call store, on SQLite or PostgreSQL, and which of it a retry may cure.

use std::path::PathBuf;

use rusqlite::ErrorCode;

/// What went wrong in the call store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database file could not be opened or set up.
    #[error("cannot open the call database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database was written by a newer callbridge whose schema this one does not know.
    #[error(
        "the call database has schema version {found}, newer than this callbridge understands ({supported}); \
         upgrade callbridge"
    )]
    SchemaTooNew {
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A query failed.
    #[error("call store: cannot {context}: {source}")]
    Sqlite {
        /// What the store was doing (`"store a new call"`, `"append a turn"`, ...).
        context: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// No call has this id.
    #[error("no call with id {0}")]
    NotFound(String),
    /// A PostgreSQL statement failed, or its connection could not be opened.
    #[error("call store: cannot {context}: {source}")]
    Postgres {
        /// What the store was doing (`"store a new call"`, `"append a turn"`, ...).
        context: &'static str,
        /// The driver's error (a database error carries its SQLSTATE code).
        source: postgres::Error,
    },
    /// The PostgreSQL store thread did not answer within its deadline (the database is slow, locked or
    /// unreachable); a write that timed out was not committed.
    #[error("call store: cannot {context}: PostgreSQL did not answer within {waited_ms} ms")]
    PostgresTimeout {
        /// What the store was doing.
        context: &'static str,
        /// How long the caller waited, milliseconds.
        waited_ms: u64,
    },
    /// The PostgreSQL store thread is gone (it could not be started).
    #[error("call store: cannot {context}: the PostgreSQL store thread is not running")]
    PostgresGone {
        /// What the store was doing.
        context: &'static str,
    },
    /// The operation is not available on this store's database yet (PostgreSQL: the webhook outbox, schedules and
    /// recordings).
    #[error("call store: {what} is not available on PostgreSQL yet")]
    Unsupported {
        /// What was asked (`"webhook deliveries"`, ...).
        what: &'static str,
    },
    /// A value cannot be stored: a timestamp outside 1677–2262, a number above `i64::MAX`.
    #[error("call store: {what} is out of the storable range")]
    OutOfRange {
        /// Which value.
        what: &'static str,
    },
}

/// Wraps a rusqlite error with what the store was doing.
pub(super) fn ctx(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { context, source }
}

impl StoreError {
    /// Whether the same write may succeed later, so the writer retries it: another connection's lock on SQLite
    /// (`SQLITE_BUSY`, `SQLITE_LOCKED`); on PostgreSQL a lost or refused connection, a deadline passed, a
    /// serialization failure or deadlock.
    pub fn is_busy(&self) -> bool {
        let source = match self {
            StoreError::Sqlite { source, .. } | StoreError::Open { source, .. } => source,
            StoreError::Postgres { source, .. } => return super::pg::is_transient(source),
            StoreError::PostgresTimeout { .. } => return true,
            _ => return false,
        };
        matches!(
            source.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    }
}
