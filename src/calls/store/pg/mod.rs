//! The call store on PostgreSQL (`CALLBRIDGE_DATABASE_URL=postgres://…`): the same records as the SQLite store, for
//! several callbridge instances writing one database.
//!
//! [`PgDb`] is a cheap clone around two connections, a writer and a reader, each a blocking [`postgres::Client`]
//! owned by its own thread that takes boxed jobs from a channel (a blocking client must never run on a tokio
//! runtime thread: it starts a runtime of its own and panics there). A caller hands its job over and waits for the
//! answer with a deadline ([`DEADLINE`]), so a stuck database cannot wedge a call: it gets
//! [`StoreError::PostgresTimeout`] instead, which the server's store writer retries like a busy SQLite file. A
//! connection that broke is opened again for the next job.
//!
//! # Convention for the store's methods
//!
//! Every public method of [`CallStore`](super::CallStore) starts by asking which database it runs on, then runs
//! today's SQLite body unchanged:
//!
//! ```ignore
//! pub fn set_call_sid(&self, id: &str, call_sid: &str) -> Result<(), StoreError> {
//!     if let Some(pg) = self.postgres() {
//!         let (id, call_sid) = (id.to_owned(), call_sid.to_owned());
//!         return pg.write("record a CallSid", move |tx| pg::calls::set_call_sid(tx, &id, &call_sid));
//!     }
//!     // ... the SQLite body ...
//! }
//! ```
//!
//! The PostgreSQL SQL sits in `pg/FILE.rs` next to the SQLite file it mirrors (`calls.rs` for `mod.rs`,
//! `closing.rs`, `counts.rs`, `answering.rs`; `outbox.rs`, `scheduling.rs`, `recordings.rs` for theirs), as free
//! functions taking `&mut impl GenericClient` (a [`postgres::Transaction`] inside [`PgDb::write`], the reader's
//! [`postgres::Client`] inside [`PgDb::read`]) and owned arguments, with `$1` placeholders. Rows are read by column
//! name ([`rows`]). Read-then-write logic that SQLite's `BEGIN IMMEDIATE` made safe takes the call's row lock first
//! (`SELECT … FOR UPDATE`, see [`calls::lock_call`]): several instances write the same database.
//!
//! Timestamps are `BIGINT` nanoseconds since the Unix epoch, JSON is `TEXT`, flags are `BOOLEAN`, exactly as the
//! SQLite columns mean them.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, Config, NoTls, Transaction};

use super::StoreError;

pub(in crate::calls::store) mod answering;
pub(in crate::calls::store) mod calls;
pub(in crate::calls::store) mod closing;
pub(in crate::calls::store) mod counts;
pub(in crate::calls::store) mod outbox;
pub(in crate::calls::store) mod recordings;
pub(in crate::calls::store) mod rows;
pub(in crate::calls::store) mod scheduling;
pub(in crate::calls::store) mod schema;

/// How long a caller waits for the store thread's answer to one job (a read, or a write with its commit), and the
/// server-side `statement_timeout` of each statement. A call's path never waits longer on the database.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// How long opening the store waits for the schema's migrations (they may rewrite a large table).
const MIGRATION_DEADLINE: Duration = Duration::from_secs(120);

/// How long opening a connection may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Wraps a PostgreSQL error with what the store was doing.
pub(in crate::calls::store) fn ctx(
    context: &'static str,
) -> impl FnOnce(postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { context, source }
}

/// Whether a PostgreSQL error may go away when the same work is tried again: the connection broke or could not be
/// opened, the server is shutting down or refusing connections, or the transaction lost a serialization race, a
/// deadlock or a lock wait (`statement_timeout`).
pub(in crate::calls::store) fn is_transient(error: &postgres::Error) -> bool {
    if error.is_closed()
        || std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>())
    {
        return true;
    }
    error.code().is_some_and(|code| {
        code.code().starts_with("08")
            || [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::QUERY_CANCELED,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code)
    })
}

/// Whether `result` says the connection it ran on is lost (broken, or closed by the server): the store thread then
/// opens a new one for its next job, as `Client::is_closed` does not always know yet.
fn connection_lost<T>(result: &Result<T, StoreError>) -> bool {
    let Err(StoreError::Postgres { source, .. }) = result else {
        return false;
    };
    source.is_closed()
        || std::error::Error::source(source).is_some_and(|s| s.is::<std::io::Error>())
        || source.code().is_some_and(|code| {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
        })
}

/// A job for a store thread: it gets the thread's connection, or the error of opening it, and returns whether the
/// connection is lost ([`connection_lost`]).
type Job = Box<dyn FnOnce(Result<&mut Client, postgres::Error>) -> bool + Send>;

/// The PostgreSQL call store's two connections. Cloning shares them; the threads end when the last clone is dropped.
#[derive(Clone)]
pub struct PgDb {
    /// The thread whose connection runs every write, one transaction per job.
    writer: Sender<Job>,
    /// The thread whose connection runs the reads, so reads never queue behind a write waiting for a row lock.
    reader: Sender<Job>,
    /// Where the database is, for logs: host, port and database name, never the password.
    target: Arc<str>,
}

impl fmt::Debug for PgDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgDb")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A write's progress, shared by the caller and the store thread, so that a write the caller gave up on is rolled
/// back rather than committed behind its back (the store writer would then apply it a second time).
#[derive(Debug, Default)]
struct Handshake(AtomicU8);

impl Handshake {
    const PENDING: u8 = 0;
    const COMMITTING: u8 = 1;
    const ABANDONED: u8 = 2;

    /// The store thread is about to commit; false when the caller has given up (roll back instead).
    fn commit(&self) -> bool {
        self.0
            .compare_exchange(
                Self::PENDING,
                Self::COMMITTING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Whether the caller has given up.
    fn abandoned(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::ABANDONED
    }

    /// The caller gives up; false when the commit is already under way (then wait for its answer).
    fn abandon(&self) -> bool {
        self.0
            .compare_exchange(
                Self::PENDING,
                Self::ABANDONED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

impl PgDb {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname?options`, as libpq reads it;
    /// plain TCP or a Unix socket, no TLS), starts the two store threads, and migrates the schema under an advisory
    /// lock (two instances starting at once migrate once).
    ///
    /// # Errors
    ///
    /// [`StoreError::Postgres`] when the URL is invalid, the database cannot be reached or a migration fails,
    /// [`StoreError::SchemaTooNew`] when a newer callbridge migrated it, [`StoreError::PostgresTimeout`] when the
    /// migrations take longer than two minutes.
    pub fn connect(url: &str) -> Result<PgDb, StoreError> {
        let mut config = Config::from_str(url).map_err(ctx("read the PostgreSQL URL"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(DEADLINE);
        }
        if config.get_application_name().is_none() {
            config.application_name("callbridge");
        }
        let db = PgDb {
            target: Arc::from(describe(&config)),
            writer: spawn_thread("callbridge-pg-writer", config.clone()),
            reader: spawn_thread("callbridge-pg-reader", config),
        };
        db.run_write("migrate the schema", MIGRATION_DEADLINE, |tx| {
            schema::migrate(tx)
        })?;
        db.read("open the PostgreSQL call store", |client| {
            client
                .simple_query("")
                .map(|_| ())
                .map_err(ctx("open the PostgreSQL call store"))
        })?;
        Ok(db)
    }

    /// Where the database is (`host:port/dbname`), for logs; never the user's password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `body` in one transaction on the writer connection and commits it; an error from `body` (or a caller
    /// that stopped waiting) rolls it back. `context` names the write in errors. Waits at most [`DEADLINE`].
    ///
    /// # Errors
    ///
    /// `body`'s error; [`StoreError::Postgres`] when the transaction cannot begin or commit,
    /// [`StoreError::PostgresTimeout`] when the answer did not come in time (nothing was committed then).
    pub fn write<T: Send + 'static>(
        &self,
        context: &'static str,
        body: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_write(context, DEADLINE, body)
    }

    /// Runs `body` on the reader connection (each statement on its own, no transaction). Waits at most
    /// [`DEADLINE`].
    ///
    /// # Errors
    ///
    /// `body`'s error; [`StoreError::Postgres`] when the connection cannot be opened,
    /// [`StoreError::PostgresTimeout`] when the answer did not come in time.
    pub fn read<T: Send + 'static>(
        &self,
        context: &'static str,
        body: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::channel();
        let start_by = Instant::now() + DEADLINE;
        let job: Job = Box::new(move |client| {
            if Instant::now() >= start_by {
                return false; // The caller has given up.
            }
            let result = client.map_err(ctx(context)).and_then(body);
            let lost = connection_lost(&result);
            let _ = reply.send(result);
            lost
        });
        self.reader
            .send(job)
            .map_err(|_| StoreError::PostgresGone { context })?;
        wait(&answer, context, DEADLINE)
    }

    /// [`PgDb::write`] with its own deadline.
    fn run_write<T: Send + 'static>(
        &self,
        context: &'static str,
        deadline: Duration,
        body: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::channel();
        let handshake = Arc::new(Handshake::default());
        let job: Job = {
            let handshake = handshake.clone();
            Box::new(move |client| {
                if handshake.abandoned() {
                    return false; // The caller has given up.
                }
                let result = client.map_err(ctx(context)).and_then(|client| {
                    let mut tx = client.transaction().map_err(ctx(context))?;
                    let value = body(&mut tx)?;
                    if !handshake.commit() {
                        return Err(StoreError::PostgresTimeout {
                            context,
                            waited_ms: duration_ms(deadline),
                        });
                    }
                    tx.commit().map_err(ctx(context))?;
                    Ok(value)
                });
                let lost = connection_lost(&result);
                let _ = reply.send(result);
                lost
            })
        };
        self.writer
            .send(job)
            .map_err(|_| StoreError::PostgresGone { context })?;
        match wait(&answer, context, deadline) {
            Err(StoreError::PostgresTimeout { .. }) if !handshake.abandon() => {
                // The commit is under way: its answer says whether the write happened.
                wait(&answer, context, DEADLINE)
            }
            other => other,
        }
    }
}

/// Waits up to `deadline` for a store thread's answer.
fn wait<T>(
    answer: &Receiver<Result<T, StoreError>>,
    context: &'static str,
    deadline: Duration,
) -> Result<T, StoreError> {
    match answer.recv_timeout(deadline) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(StoreError::PostgresTimeout {
            context,
            waited_ms: duration_ms(deadline),
        }),
        Err(RecvTimeoutError::Disconnected) => Err(StoreError::PostgresGone { context }),
    }
}

/// A duration in whole milliseconds.
fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Starts a store thread holding one connection (opened at its first job, and again after it broke).
fn spawn_thread(name: &str, config: Config) -> Sender<Job> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut connection: Option<Client> = None;
            for job in queue {
                if connection.as_ref().is_none_or(Client::is_closed) {
                    connection = None;
                    match open_connection(&config) {
                        Ok(client) => connection = Some(client),
                        Err(error) => {
                            job(Err(error));
                            continue;
                        }
                    }
                }
                if let Some(client) = connection.as_mut() {
                    // A job that panics (a bug) loses its answer, not the thread: its caller gets
                    // `PostgresGone`, and the connection, maybe mid-transaction, is dropped.
                    let lost = std::panic::catch_unwind(AssertUnwindSafe(|| job(Ok(client))))
                        .unwrap_or(true);
                    if lost {
                        connection = None;
                    }
                }
            }
        });
    if let Err(error) = spawned {
        // Every job then fails at once with `PostgresGone` (the receiver is dropped with the closure).
        tracing::error!(%error, thread = name, "cannot start a PostgreSQL store thread");
    }
    jobs
}

/// Opens one connection, with every statement limited to [`DEADLINE`].
fn open_connection(config: &Config) -> Result<Client, postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!(
        "SET statement_timeout = {}",
        duration_ms(DEADLINE)
    ))?;
    Ok(client)
}

/// `host:port/dbname` of a connection config (the first host), for logs.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or_default()
    )
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
