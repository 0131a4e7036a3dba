//! The call store: every call's record in SQLite, in one local file under the data directory (or in memory for
//! tests). It owns the schema and its migrations, call ids, the status rules (a call only moves forward, a terminal
//! status is final), the transcript as it is written turn by turn, and the idempotency tokens of Twilio's status
//! callbacks. Records survive a restart; a crash mid-call loses at most the turn in progress.
//!
//! [`CallStore`] is a cheap clone around two connections to one file, each behind a `std::sync::Mutex`: one writes
//! (every write is one `BEGIN IMMEDIATE` transaction), one reads. In WAL mode a reader never waits for a writer, ours
//! or another process's, so reads stay quick while a write waits out a lock. The server writes only through its
//! store writer ([`crate::calls::writer`]), off the relay's threads. At start-up, [`CallStore::reconcile`] closes
//! every record an earlier process left open.
//!
//! With `CALLBRIDGE_DATABASE_URL` the records are in PostgreSQL instead ([`CallStore::open_url`], `pg/`), for
//! several instances sharing them: the same methods and rules, two connections on store threads of their own,
//! every wait bounded (`backend.rs` says which database a store uses).
//!
//! Timestamps are stored as integer nanoseconds since the Unix epoch, in UTC: they round-trip exactly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

use crate::calls::model::{CallError, CallStatus, CallSummary, CallView, NewCall};
use crate::calls::{CallRecord, Turn};
use crate::realtime::usage::Usage;

mod answering;
mod backend;
mod closing;
mod counts;
mod error;
mod outbox;
mod pg;
mod recordings;
mod rows;
mod scheduling;
mod schema;
#[cfg(test)]
pub(crate) mod test_db;

use backend::Backend;
use error::ctx;
use rows::{
    SUMMARY_COLUMNS, dropped_json, list_json, read_view, summary_from_row, to_ns, usage_json,
};
use schema::migrate;

pub use error::StoreError;

pub use closing::Reconciled;
pub use outbox::{
    AttemptOutcome, DeliveryStatus, DueDelivery, OutboxWrite, UnknownDeliveryStatus,
    WebhookDelivery,
};
pub use recordings::DueRecording;
pub use scheduling::{DUE_BATCH, NewSchedule};

/// How long a write waits for another connection's lock before it fails with `SQLITE_BUSY` (the server's writer
/// then retries it, see [`crate::calls::writer`]).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the read connection waits on a lock: in WAL mode readers do not wait for writers, so only a rare
/// recovery (another process opening a crashed database) makes it wait at all.
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a status callback's idempotency token is remembered. Twilio retries within minutes.
const IDEMPOTENCY_TOKEN_TTL: time::Duration = time::Duration::days(1);

/// Length of the random part of a call id.
const CALL_ID_RANDOM_CHARS: usize = 26;

/// The characters of a call id's random part: lowercase, URL-safe, no look-alikes (`i`, `l`, `o`, `u`). 32 of
/// them, so a random byte maps to one without bias.
const CALL_ID_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The call records, in one SQLite database or in PostgreSQL ([`CallStore::open_url`]). Cloning shares the
/// connections.
#[derive(Debug, Clone)]
pub struct CallStore {
    /// Which database holds the records, and its connections.
    backend: Backend,
}

impl CallStore {
    /// Opens the database file at `path`, creating its parent directories and the file on first run, in WAL mode
    /// (readers such as `callbridge calls` do not block the server), and migrates the schema to this build's
    /// version (`PRAGMA user_version`).
    ///
    /// # Errors
    ///
    /// [`StoreError::CreateDir`] when the directory cannot be created, [`StoreError::Open`] when the file cannot be
    /// opened or is not a database, [`StoreError::SchemaTooNew`] when a newer callbridge wrote it.
    pub fn open(path: &Path) -> Result<CallStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        let store = CallStore::set_up(conn, Some(path))?;
        let reader = Connection::open(path).map_err(open_error)?;
        reader.busy_timeout(READ_BUSY_TIMEOUT).map_err(open_error)?;
        Ok(store.with_sqlite_reader(reader))
    }

    /// Opens a fresh, empty database in memory (tests, or a server run without a data directory).
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] if SQLite cannot allocate it.
    pub fn open_in_memory() -> Result<CallStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        CallStore::set_up(conn, None)
    }

    /// Turns foreign keys on and migrates the schema.
    fn set_up(mut conn: Connection, path: Option<&Path>) -> Result<CallStore, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.map_or_else(|| PathBuf::from(":memory:"), Path::to_owned),
            source,
        };
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_error)?;
        migrate(&mut conn).map_err(|e| match e {
            StoreError::Sqlite { source, .. } => open_error(source),
            other => other,
        })?;
        Ok(CallStore::sqlite(conn))
    }

    /// Stores a new call: a fresh id (`call_` + 26 random characters), status `queued`, the timeline `[queued]`,
    /// created now. Returns the call as [`CallStore::get`] would.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the write fails, [`StoreError::OutOfRange`] for a `max_duration_s` above
    /// `i64::MAX`.
    pub fn create(&self, call: &NewCall) -> Result<CallView, StoreError> {
        self.create_with_id(&new_call_id(), call)
    }

    /// [`CallStore::create`] with an id chosen beforehand ([`new_call_id`]): the server picks the id when it
    /// queues the write, so later writes for the call can be queued behind it at once.
    ///
    /// # Errors
    ///
    /// As [`CallStore::create`]; [`StoreError::Sqlite`] also when the id is taken.
    pub fn create_with_id(&self, id: &str, call: &NewCall) -> Result<CallView, StoreError> {
        if let Some(pg) = self.postgres() {
            let (id, call) = (id.to_owned(), call.clone());
            return pg.write("store a new call", move |tx| {
                pg::calls::create(tx, &id, &call)
            });
        }
        let id = id.to_owned();
        let created_at = OffsetDateTime::now_utc();
        let created_at_ns = to_ns(created_at, "created_at")?;
        let max_duration_s = call
            .max_duration_s
            .map(|s| {
                i64::try_from(s).map_err(|_| StoreError::OutOfRange {
                    what: "max_duration_s",
                })
            })
            .transpose()?;
        let metadata = call.metadata.as_ref().map(serde_json::Value::to_string);
        let usage = usage_json(&Usage::default());
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(ctx("store a new call"))?;
        tx.execute(
            "INSERT INTO calls (id, direction, from_number, to_number, call_sid, status, instructions, greeting, \
             voice, language, max_duration_s, metadata, created_at_ns, usage, answering_machine, voicemail_message, \
             webhook_url, max_cost_usd) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            params![
                id,
                call.direction,
                call.from,
                call.to,
                call.call_sid,
                CallStatus::Queued,
                call.instructions,
                call.greeting,
                call.voice,
                call.language,
                max_duration_s,
                metadata,
                created_at_ns,
                usage,
                call.answering.answering_machine.map(|p| p.as_str()),
                call.answering.voicemail_message,
                call.webhook_url,
                call.max_cost_usd,
            ],
        )
        .map_err(ctx("store a new call"))?;
        if call.outcome_schema.is_some() || call.mcp_servers.is_some() {
            tx.execute(
                "UPDATE calls SET outcome_schema = ?2, mcp_servers = ?3 WHERE id = ?1",
                params![
                    id,
                    call.outcome_schema
                        .as_ref()
                        .map(serde_json::Value::to_string),
                    call.mcp_servers
                        .as_ref()
                        .map(|labels| serde_json::json!(labels).to_string()),
                ],
            )
            .map_err(ctx("store a new call"))?;
        }
        if call.mode != crate::calls::say::CallMode::default() {
            tx.execute(
                "UPDATE calls SET mode = ?2 WHERE id = ?1",
                params![id, call.mode.as_str()],
            )
            .map_err(ctx("store a new call"))?;
        }
        if let Some(engine) = call.engine {
            tx.execute(
                "UPDATE calls SET engine = ?2 WHERE id = ?1",
                params![id, engine.as_str()],
            )
            .map_err(ctx("store a new call"))?;
        }
        tx.execute(
            "INSERT INTO status_changes (call_id, seq, status, at_ns) VALUES (?1, 0, ?2, ?3)",
            params![id, CallStatus::Queued, created_at_ns],
        )
        .map_err(ctx("store a new call"))?;
        recordings::store_record_flag(&tx, &id, call.record)?;
        let view = read_view(&tx, &id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        tx.commit().map_err(ctx("store a new call"))?;
        Ok(view)
    }

    /// Records Twilio's CallSid for the call (once Twilio created it).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Sqlite`] when the write fails.
    pub fn set_call_sid(&self, id: &str, call_sid: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            let (id, call_sid) = (id.to_owned(), call_sid.to_owned());
            return pg.write("record a CallSid", move |tx| {
                pg::calls::set_call_sid(tx, &id, &call_sid)
            });
        }
        self.write("record a CallSid", |tx| {
            let changed = tx
                .execute(
                    "UPDATE calls SET call_sid = ?2 WHERE id = ?1",
                    params![id, call_sid],
                )
                .map_err(ctx("record a CallSid"))?;
            found(changed, id)?;
            scheduling::set_attempt_call_sid(tx, id, call_sid)
        })
    }

    /// Moves the call to `status`, observed at `at`, if that is a step forward: only when `status.rank()` is above
    /// the current status's rank (out-of-order callbacks never move a call back, and a terminal status is final).
    /// An accepted change is appended to the timeline; `in-progress` sets `answered_at`, a terminal status sets
    /// `ended_at` unless the end of the stream already did.
    ///
    /// Returns whether anything changed.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Sqlite`] when the write fails,
    /// [`StoreError::OutOfRange`] for a timestamp outside 1677–2262.
    pub fn update_status(
        &self,
        id: &str,
        status: CallStatus,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let at_ns = to_ns(at, "status time")?;
        if let Some(pg) = self.postgres() {
            let id = id.to_owned();
            return pg.write("update a call's status", move |tx| {
                pg::calls::advance_status(tx, &id, status, at_ns)
            });
        }
        self.write("update a call's status", |tx| {
            advance_status(tx, id, status, at_ns)
        })
    }

    /// A status callback, in one transaction: remembers its `I-Twilio-Idempotency-Token` (when given; a token seen
    /// before changes nothing), finds the call by CallSid, and moves it to `status` as [`CallStore::update_status`]
    /// does. Returns the call's id and whether its status changed; `None` for an unknown CallSid or a retried
    /// delivery.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when a read or write fails, [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn apply_status_callback(
        &self,
        call_sid: &str,
        status: CallStatus,
        idempotency_token: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<Option<(String, bool)>, StoreError> {
        const CONTEXT: &str = "apply a status callback";
        if let Some(pg) = self.postgres() {
            let call_sid = call_sid.to_owned();
            let token = idempotency_token.map(str::to_owned);
            return pg.write(CONTEXT, move |tx| {
                pg::calls::apply_status_callback(tx, &call_sid, status, token.as_deref(), at)
            });
        }
        let at_ns = to_ns(at, "status time")?;
        let cutoff_ns = to_ns(at - IDEMPOTENCY_TOKEN_TTL, "status time")?;
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(ctx(CONTEXT))?;
        if let Some(token) = idempotency_token
            && !remember_token(&tx, token, at_ns, cutoff_ns)?
        {
            return Ok(None);
        }
        let id: Option<String> = tx
            .query_row(
                "SELECT id FROM calls WHERE call_sid = ?1 ORDER BY created_at_ns DESC, rowid DESC LIMIT 1",
                [call_sid],
                |row| row.get(0),
            )
            .optional()
            .map_err(ctx(CONTEXT))?;
        let id = match id {
            Some(id) => Some(id),
            None => scheduling::call_of_attempt(&tx, call_sid)?,
        };
        let Some(id) = id else {
            tx.commit().map_err(ctx(CONTEXT))?;
            return Ok(None);
        };
        let changed = match scheduling::on_attempt_status(&tx, &id, call_sid, status, at_ns)? {
            Some(changed) => changed,
            None => advance_status(&tx, &id, status, at_ns)?,
        };
        tx.commit().map_err(ctx(CONTEXT))?;
        Ok(Some((id, changed)))
    }

    /// Records why Twilio could not place or run the call (replacing an earlier error).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Sqlite`] when the write fails.
    pub fn set_error(&self, id: &str, error: &CallError) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            let (id, error) = (id.to_owned(), error.clone());
            return pg.write("record a call's error", move |tx| {
                pg::calls::set_error(tx, &id, &error)
            });
        }
        let conn = self.lock()?;
        let changed = conn
            .execute(
                "UPDATE calls SET error_code = ?2, error_message = ?3 WHERE id = ?1",
                params![id, error.code, error.message],
            )
            .map_err(ctx("record a call's error"))?;
        found(changed, id)
    }

    /// Appends a completed turn to the call's transcript. Called as each turn completes, so a crash mid-call loses
    /// at most the turn in progress.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Sqlite`] when the write fails,
    /// [`StoreError::OutOfRange`] for a timestamp outside 1677–2262 or an offset above `i64::MAX` ms.
    pub fn append_turn(&self, id: &str, turn: &Turn) -> Result<(), StoreError> {
        const CONTEXT: &str = "append a turn";
        if let Some(pg) = self.postgres() {
            let (id, turn) = (id.to_owned(), turn.clone());
            return pg.write(CONTEXT, move |tx| pg::calls::append_turn(tx, &id, &turn));
        }
        self.write(CONTEXT, |tx| {
            ensure_exists(tx, id)?;
            let seq: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM turns WHERE call_id = ?1",
                    [id],
                    |row| row.get(0),
                )
                .map_err(ctx(CONTEXT))?;
            insert_turn(tx, id, seq, turn)
        })
    }

    /// Stores what the bridge knows at the end of the media stream: the transcript is replaced by the record's
    /// (an assistant turn may have been cut after it was written), and the outcome, end reason, duration, token
    /// usage, StreamSid and end time are set. An outcome or end reason the record lacks keeps the stored one; the
    /// CallSid is filled in if the call had none. The status is left alone: status callbacks own it.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Sqlite`] when the write fails,
    /// [`StoreError::OutOfRange`] for a timestamp outside 1677–2262 or a number above `i64::MAX`.
    pub fn finish(&self, id: &str, record: &CallRecord) -> Result<(), StoreError> {
        self.finish_then(id, record, None)
    }

    /// [`CallStore::finish`] and, in the same transaction, the call's move to `completed` at `at`: the end of an
    /// inbound call, which no status callback closes. A reader never sees the record finished but still in progress.
    ///
    /// # Errors
    ///
    /// As [`CallStore::finish`].
    pub fn finish_completed(
        &self,
        id: &str,
        record: &CallRecord,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.finish_then(id, record, Some(to_ns(at, "completed at")?))
    }

    /// [`CallStore::finish`], then the move to `completed` at `completed_at_ns` when given, in one transaction.
    fn finish_then(
        &self,
        id: &str,
        record: &CallRecord,
        completed_at_ns: Option<i64>,
    ) -> Result<(), StoreError> {
        const CONTEXT: &str = "store the end of a call";
        if let Some(pg) = self.postgres() {
            let (id, record) = (id.to_owned(), record.clone());
            return pg.write(CONTEXT, move |tx| {
                pg::calls::finish(tx, &id, &record)?;
                if let Some(at_ns) = completed_at_ns {
                    pg::calls::advance_status(tx, &id, CallStatus::Completed, at_ns)?;
                }
                Ok(())
            });
        }
        let ended_at_ns = record
            .ended_at
            .map(|at| to_ns(at, "ended_at"))
            .transpose()?;
        let duration_ms =
            i64::try_from(record.duration_ms).map_err(|_| StoreError::OutOfRange {
                what: "duration_ms",
            })?;
        let call_sid = Some(record.call_sid.as_str()).filter(|sid| !sid.is_empty());
        let end_reason = record.end_reason.as_ref().map(ToString::to_string);
        let skipped_frames =
            i64::try_from(record.skipped_frames).map_err(|_| StoreError::OutOfRange {
                what: "skipped_frames",
            })?;
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(ctx(CONTEXT))?;
        let changed = tx
            .execute(
                "UPDATE calls SET outcome = COALESCE(?2, outcome), end_reason = COALESCE(?3, end_reason), \
                 duration_ms = ?4, usage = ?5, stream_sid = COALESCE(?6, stream_sid), \
                 ended_at_ns = COALESCE(?7, ended_at_ns), call_sid = COALESCE(call_sid, ?8), skipped_frames = ?9, \
                 dropped = ?10, answered_by = COALESCE(answered_by, ?11), voicemail_left = ?12, \
                 voicemail_transcript = COALESCE(?13, voicemail_transcript), handovers = ?14, transfers = ?15, \
                 cost = COALESCE(?16, cost), cost_usd = COALESCE(?17, cost_usd), rollovers = ?18 WHERE id = ?1",
                params![
                    id,
                    record.outcome,
                    end_reason,
                    duration_ms,
                    usage_json(&record.usage),
                    record.stream_sid,
                    ended_at_ns,
                    call_sid,
                    skipped_frames,
                    dropped_json(&record.dropped),
                    record.answered_by.map(|a| a.as_str()),
                    record.voicemail_left,
                    record.voicemail_transcript,
                    list_json(&record.handovers),
                    list_json(&record.transfers),
                    record.cost.as_ref().and_then(|c| serde_json::to_string(c).ok()),
                    record.cost.as_ref().map(|c| c.total_usd),
                    list_json(&record.rollovers),
                ],
            )
            .map_err(ctx(CONTEXT))?;
        found(changed, id)?;
        if let Some(outcome) = &record.structured_outcome {
            tx.execute(
                "UPDATE calls SET structured_outcome = ?2 WHERE id = ?1",
                params![id, outcome.to_string()],
            )
            .map_err(ctx(CONTEXT))?;
        }
        tx.execute("DELETE FROM turns WHERE call_id = ?1", [id])
            .map_err(ctx(CONTEXT))?;
        for (seq, turn) in (0_i64..).zip(&record.turns) {
            insert_turn(&tx, id, seq, turn)?;
        }
        let now_ns = to_ns(OffsetDateTime::now_utc(), "now")?;
        outbox::queue_completed(&tx, id, ended_at_ns.unwrap_or(now_ns), false)?;
        if let Some(at_ns) = completed_at_ns {
            advance_status(&tx, id, CallStatus::Completed, at_ns)?;
        }
        tx.commit().map_err(ctx(CONTEXT))
    }

    /// The call with this id, with its timeline and transcript; `None` when there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the read fails or a stored value is invalid.
    pub fn get(&self, id: &str) -> Result<Option<CallView>, StoreError> {
        if let Some(pg) = self.postgres() {
            let id = id.to_owned();
            return pg.read("read a call", move |c| pg::rows::read_view(c, &id));
        }
        let conn = self.read()?;
        read_view(&conn, id)
    }

    /// The newest call with this Twilio CallSid; `None` when there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the read fails or a stored value is invalid.
    pub fn get_by_call_sid(&self, call_sid: &str) -> Result<Option<CallView>, StoreError> {
        if let Some(pg) = self.postgres() {
            let call_sid = call_sid.to_owned();
            return pg.read("find a call by CallSid", move |c| {
                pg::calls::get_by_call_sid(c, &call_sid)
            });
        }
        let conn = self.read()?;
        let id: Option<String> = conn
            .query_row(
                "SELECT id FROM calls WHERE call_sid = ?1 ORDER BY created_at_ns DESC, rowid DESC LIMIT 1",
                [call_sid],
                |row| row.get(0),
            )
            .optional()
            .map_err(ctx("find a call by CallSid"))?;
        match id {
            Some(id) => read_view(&conn, &id),
            None => Ok(None),
        }
    }

    /// Up to `limit` calls, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the read fails or a stored value is invalid.
    pub fn list(&self, limit: usize) -> Result<Vec<CallSummary>, StoreError> {
        const CONTEXT: &str = "list calls";
        if let Some(pg) = self.postgres() {
            return pg.read(CONTEXT, move |c| pg::calls::list(c, limit));
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.read()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM calls ORDER BY created_at_ns DESC, rowid DESC LIMIT ?1"
            ))
            .map_err(ctx(CONTEXT))?;
        let rows = stmt
            .query_map([limit], summary_from_row)
            .map_err(ctx(CONTEXT))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(ctx(CONTEXT))
    }

    /// Remembers a status callback's `I-Twilio-Idempotency-Token`; returns `true` the first time the token is seen
    /// and `false` for a retried delivery, which must then change nothing. Tokens older than a day are forgotten.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the write fails.
    pub fn remember_idempotency_token(&self, token: &str) -> Result<bool, StoreError> {
        self.remember_idempotency_token_at(token, OffsetDateTime::now_utc())
    }

    /// [`CallStore::remember_idempotency_token`] as if it were `now`.
    fn remember_idempotency_token_at(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const CONTEXT: &str = "remember an idempotency token";
        let now_ns = to_ns(now, "now")?;
        let cutoff_ns = to_ns(now - IDEMPOTENCY_TOKEN_TTL, "now")?;
        if let Some(pg) = self.postgres() {
            let token = token.to_owned();
            return pg.write(CONTEXT, move |tx| {
                pg::calls::remember_token(tx, &token, now_ns, cutoff_ns)
            });
        }
        self.write(CONTEXT, |tx| remember_token(tx, token, now_ns, cutoff_ns))
    }
}

/// Remembers an idempotency token seen at `now_ns` (forgetting those seen before `cutoff_ns`); true when new.
fn remember_token(
    conn: &Connection,
    token: &str,
    now_ns: i64,
    cutoff_ns: i64,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "remember an idempotency token";
    conn.execute(
        "DELETE FROM idempotency_tokens WHERE seen_at_ns < ?1",
        [cutoff_ns],
    )
    .map_err(ctx(CONTEXT))?;
    let inserted = conn
        .execute(
            "INSERT OR IGNORE INTO idempotency_tokens (token, seen_at_ns) VALUES (?1, ?2)",
            params![token, now_ns],
        )
        .map_err(ctx(CONTEXT))?;
    Ok(inserted == 1)
}

/// Moves the call to `status` at `at_ns` if that is a step forward (see [`CallStore::update_status`]), inside the
/// caller's transaction. Returns whether anything changed.
fn advance_status(
    conn: &Connection,
    id: &str,
    status: CallStatus,
    at_ns: i64,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "update a call's status";
    let current: CallStatus = conn
        .query_row("SELECT status FROM calls WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .optional()
        .map_err(ctx(CONTEXT))?
        .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    if status.rank() <= current.rank() || current.is_waiting() {
        return Ok(false);
    }
    record_status(conn, id, status, at_ns)?;
    Ok(true)
}

/// Moves the call to `status` at `at_ns` whatever its current status, and appends the change to its timeline:
/// `in-progress` sets `answered_at`, a terminal status sets `ended_at` unless set. Every accepted status change is
/// written here ([`advance_status`] for Twilio's statuses; the scheduled and retried calls' own moves in
/// [`scheduling`]).
fn record_status(
    conn: &Connection,
    id: &str,
    status: CallStatus,
    at_ns: i64,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "update a call's status";
    let previous: CallStatus = conn
        .query_row("SELECT status FROM calls WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .optional()
        .map_err(ctx(CONTEXT))?
        .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    let answered_at_ns = (status == CallStatus::InProgress).then_some(at_ns);
    let ended_at_ns = status.is_terminal().then_some(at_ns);
    conn.execute(
        "UPDATE calls SET status = ?2, answered_at_ns = COALESCE(answered_at_ns, ?3), \
         ended_at_ns = COALESCE(ended_at_ns, ?4) WHERE id = ?1",
        params![id, status, answered_at_ns, ended_at_ns],
    )
    .map_err(ctx(CONTEXT))?;
    conn.execute(
        "INSERT INTO status_changes (call_id, seq, status, at_ns) \
         SELECT ?1, COALESCE(MAX(seq) + 1, 0), ?2, ?3 FROM status_changes WHERE call_id = ?1",
        params![id, status, at_ns],
    )
    .map_err(ctx(CONTEXT))?;
    outbox::on_status_changed(conn, id, previous, status, at_ns)?;
    Ok(())
}

/// A fresh call id: `call_` and 26 characters of Crockford's base-32 alphabet in lower case (`0-9a-z` without
/// `i l o u`; 130 random bits).
pub fn new_call_id() -> String {
    let bytes: [u8; CALL_ID_RANDOM_CHARS] = rand::random();
    let mut id = String::with_capacity(5 + CALL_ID_RANDOM_CHARS);
    id.push_str("call_");
    id.extend(
        bytes
            .iter()
            .map(|b| char::from(CALL_ID_ALPHABET[usize::from(b % 32)])),
    );
    id
}

/// `Ok` when an UPDATE touched a row, [`StoreError::NotFound`] otherwise.
fn found(changed_rows: usize, id: &str) -> Result<(), StoreError> {
    if changed_rows == 0 {
        Err(StoreError::NotFound(id.to_owned()))
    } else {
        Ok(())
    }
}

/// [`StoreError::NotFound`] unless the call exists.
fn ensure_exists(conn: &Connection, id: &str) -> Result<(), StoreError> {
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM calls WHERE id = ?1)",
            [id],
            |row| row.get(0),
        )
        .map_err(ctx("look a call up"))?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(id.to_owned()))
    }
}

/// Writes one transcript turn at position `seq`.
fn insert_turn(conn: &Connection, id: &str, seq: i64, turn: &Turn) -> Result<(), StoreError> {
    let at_ns = to_ns(turn.at, "turn time")?;
    let offset_ms =
        i64::try_from(turn.offset_ms).map_err(|_| StoreError::OutOfRange { what: "offset_ms" })?;
    conn.execute(
        "INSERT INTO turns (call_id, seq, speaker, text, at_ns, offset_ms, interrupted, item_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            seq,
            turn.speaker,
            turn.text,
            at_ns,
            offset_ms,
            turn.interrupted,
            turn.item_id
        ],
    )
    .map_err(ctx("write a turn"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::model::CallError;
    use crate::calls::model::StatusChange;
    use crate::calls::store::test_db::both_backends;
    use crate::calls::{CallFailure, Direction, DroppedInput, EndReason, Speaker};
    use proptest::prelude::*;
    use time::macros::datetime;

    /// A directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let path = std::env::temp_dir().join(format!(
                "callbridge-store-{}-{name}-{}",
                std::process::id(),
                new_call_id()
            ));
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An outbound call to `to` with instructions, a greeting, a voice and metadata.
    pub(super) fn outbound(to: &str) -> NewCall {
        NewCall {
            engine: None,
            direction: Direction::OutboundApi,
            from: "+15550100".into(),
            to: to.into(),
            call_sid: None,
            instructions: Some("Book a table for 4 tonight at 7:30 under Rivera".into()),
            greeting: Some("Hello, I'd like to book a table.".into()),
            voice: Some("marin".into()),
            language: Some("en".into()),
            max_duration_s: Some(300),
            metadata: Some(serde_json::json!({"ticket": 42, "tags": ["dinner"]})),
            answering: Default::default(),
            record: false,
            webhook_url: None,
            outcome_schema: None,
            mcp_servers: None,
            mode: Default::default(),
            max_cost_usd: None,
        }
    }

    fn turn(speaker: Speaker, text: &str, offset_ms: u64) -> Turn {
        Turn {
            speaker,
            text: text.into(),
            at: datetime!(2025-03-04 05:06:07.123456789 UTC)
                + time::Duration::milliseconds(offset_ms as i64),
            offset_ms,
            interrupted: false,
            item_id: (speaker == Speaker::Assistant).then(|| format!("item_{offset_ms}")),
        }
    }

    both_backends! {
        fn a_created_call_is_queued_and_reads_back_exactly(store) {

            let created = store.create(&outbound("+15550199")).expect("stored");
            let read = store.get(&created.id).expect("read").expect("present");

            assert_eq!(read, created);
            assert!(created.id.starts_with("call_"), "{}", created.id);
            assert_eq!(created.id.len(), 5 + 26);
            assert!(
                created.id[5..]
                    .bytes()
                    .all(|b| CALL_ID_ALPHABET.contains(&b))
            );
            assert_eq!(created.status, CallStatus::Queued);
            assert_eq!(
                created.status_timeline,
                [StatusChange {
                    status: CallStatus::Queued,
                    at: created.created_at
                }]
            );
            assert_eq!(
                created.instructions.as_deref(),
                Some("Book a table for 4 tonight at 7:30 under Rivera")
            );
            assert_eq!(
                created.metadata,
                Some(serde_json::json!({"ticket": 42, "tags": ["dinner"]}))
            );
            assert_eq!(created.max_duration_s, Some(300));
            assert_eq!(created.direction, Direction::OutboundApi);
            assert!(created.transcript.is_empty());
            assert_eq!(created.usage, Usage::default());
        }
    }

    both_backends! {
        fn two_calls_get_different_ids(store) {

            let a = store.create(&outbound("+15550199")).expect("stored");
            let b = store.create(&outbound("+15550199")).expect("stored");

            assert_ne!(a.id, b.id);
        }
    }

    both_backends! {
        fn an_unknown_id_reads_as_none_and_cannot_be_updated(store) {
            let record = CallRecord::new("CA1".into(), Direction::Inbound, "+1".into(), "+2".into());
            let at = OffsetDateTime::now_utc();

            assert!(store.get("call_nope").expect("read").is_none());
            assert!(
                matches!(store.set_call_sid("call_nope", "CA1"), Err(StoreError::NotFound(id)) if id == "call_nope")
            );
            assert!(matches!(
                store.update_status("call_nope", CallStatus::Ringing, at),
                Err(StoreError::NotFound(_))
            ));
            assert!(matches!(
                store.set_error(
                    "call_nope",
                    &CallError {
                        code: None,
                        message: "x".into()
                    }
                ),
                Err(StoreError::NotFound(_))
            ));
            assert!(matches!(
                store.append_turn("call_nope", &turn(Speaker::Caller, "hi", 1)),
                Err(StoreError::NotFound(_))
            ));
            assert!(matches!(
                store.finish("call_nope", &record),
                Err(StoreError::NotFound(_))
            ));
        }
    }

    both_backends! {
        fn a_late_ringing_after_in_progress_is_ignored_and_a_terminal_status_is_final(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            let t0 = datetime!(2025-03-04 05:06:00 UTC);
            let at = |s: i64| t0 + time::Duration::seconds(s);

            let initiated = store
                .update_status(&call.id, CallStatus::Initiated, at(1))
                .expect("updated");
            let in_progress = store
                .update_status(&call.id, CallStatus::InProgress, at(3))
                .expect("updated");
            let late_ringing = store
                .update_status(&call.id, CallStatus::Ringing, at(2))
                .expect("updated");
            let completed = store
                .update_status(&call.id, CallStatus::Completed, at(60))
                .expect("updated");
            let busy_after_end = store
                .update_status(&call.id, CallStatus::Busy, at(61))
                .expect("updated");
            let view = store.get(&call.id).expect("read").expect("present");

            assert_eq!(
                [
                    initiated,
                    in_progress,
                    late_ringing,
                    completed,
                    busy_after_end
                ],
                [true, true, false, true, false]
            );
            assert_eq!(view.status, CallStatus::Completed);
            assert_eq!(
                view.status_timeline,
                [
                    StatusChange {
                        status: CallStatus::Queued,
                        at: call.created_at
                    },
                    StatusChange {
                        status: CallStatus::Initiated,
                        at: at(1)
                    },
                    StatusChange {
                        status: CallStatus::InProgress,
                        at: at(3)
                    },
                    StatusChange {
                        status: CallStatus::Completed,
                        at: at(60)
                    },
                ]
            );
            assert_eq!(view.answered_at, Some(at(3)));
            assert_eq!(view.ended_at, Some(at(60)));
        }
    }

    both_backends! {
        fn a_busy_call_ends_without_being_answered(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            let at = datetime!(2025-03-04 05:06:00 UTC);

            store
                .update_status(&call.id, CallStatus::Busy, at)
                .expect("updated");
            let view = store.get(&call.id).expect("read").expect("present");

            assert_eq!(view.status, CallStatus::Busy);
            assert_eq!(view.answered_at, None);
            assert_eq!(view.ended_at, Some(at));
        }
    }

    both_backends! {
        fn turns_appended_during_the_call_are_replaced_by_the_finished_record(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            store.set_call_sid(&call.id, "CA0123").expect("stored");
            store
                .update_status(&call.id, CallStatus::InProgress, OffsetDateTime::now_utc())
                .expect("updated");
            let caller = turn(Speaker::Caller, "Hello, Trattoria Rivera.", 1_000);
            let assistant = turn(
                Speaker::Assistant,
                "Hi! I'd like to book a table for four tonight.",
                3_000,
            );
            store.append_turn(&call.id, &caller).expect("appended");
            store.append_turn(&call.id, &assistant).expect("appended");
            let during = store.get(&call.id).expect("read").expect("present");
            let mut record = CallRecord::new(
                "CA0123".into(),
                Direction::OutboundApi,
                call.from.clone(),
                call.to.clone(),
            );
            record.stream_sid = Some("MZ0123".into());
            let mut cut = assistant.clone();
            cut.text = "Hi! I'd like".into();
            cut.interrupted = true;
            record.turns = vec![caller.clone(), cut.clone()];
            record.outcome = Some("Booked 4 people at 19:30 under Rivera".into());
            record.usage = Usage {
                total_tokens: 900,
                input_tokens: 600,
                output_tokens: 300,
                ..Usage::default()
            };
            record.finish(EndReason::Goodbye, 42_000);

            store.finish(&call.id, &record).expect("finished");
            let after = store.get(&call.id).expect("read").expect("present");

            assert_eq!(during.transcript, [caller.clone(), assistant]);
            assert_eq!(after.transcript, [caller, cut]);
            assert_eq!(
                after.outcome.as_deref(),
                Some("Booked 4 people at 19:30 under Rivera")
            );
            assert_eq!(after.end_reason.as_deref(), Some("goodbye"));
            assert_eq!(after.duration_ms, Some(42_000));
            assert_eq!(after.usage, record.usage);
            assert_eq!(after.ended_at, record.ended_at);
            assert_eq!(
                after.status,
                CallStatus::InProgress,
                "status callbacks own the status"
            );
        }
    }

    both_backends! {
        fn the_outcome_schema_mcp_servers_and_structured_outcome_are_stored_and_read_back_as_json(store) {
            let schema = serde_json::json!({"type": "object", "required": ["booked"]});
            let call = store
                .create(&NewCall {
                    outcome_schema: Some(schema.clone()),
                    mcp_servers: Some(vec!["calendar".into()]),
                    ..outbound("+15550199")
                })
                .expect("stored");
            let mut record = CallRecord::new(
                "CA7".into(),
                Direction::OutboundApi,
                call.from.clone(),
                call.to.clone(),
            );
            record.structured_outcome = Some(serde_json::json!({"booked": true}));
            record.finish(EndReason::Goodbye, 10);

            store.finish(&call.id, &record).expect("finished");
            let view = store.get(&call.id).expect("read").expect("present");
            let plain = store.create(&outbound("+15550198")).expect("stored");

            assert_eq!(call.outcome_schema, Some(schema.clone()));
            assert_eq!(view.outcome_schema, Some(schema));
            assert_eq!(view.mcp_servers, Some(vec!["calendar".to_owned()]));
            assert_eq!(
                view.structured_outcome,
                Some(serde_json::json!({"booked": true}))
            );
            assert_eq!(
                (
                    plain.outcome_schema,
                    plain.mcp_servers,
                    plain.structured_outcome
                ),
                (None, None, None)
            );
        }
    }

    both_backends! {
        fn a_finished_record_without_an_outcome_keeps_the_stored_one_and_fills_a_missing_call_sid(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            let mut first = CallRecord::new(
                "CA9".into(),
                Direction::OutboundApi,
                call.from.clone(),
                call.to.clone(),
            );
            first.outcome = Some("Booked".into());
            first.finish(EndReason::Goodbye, 10);
            store.finish(&call.id, &first).expect("finished");
            let second = CallRecord::new(
                "CA9".into(),
                Direction::OutboundApi,
                call.from.clone(),
                call.to.clone(),
            );

            store.finish(&call.id, &second).expect("finished");
            let view = store.get(&call.id).expect("read").expect("present");

            assert_eq!(view.outcome.as_deref(), Some("Booked"));
            assert_eq!(view.end_reason.as_deref(), Some("goodbye"));
            assert_eq!(view.call_sid.as_deref(), Some("CA9"));
        }
    }

    both_backends! {
        fn a_finished_record_stores_its_stream_sid_and_what_the_peers_sent_that_was_dropped(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            let before = store.get(&call.id).expect("read").expect("present");
            let mut record = CallRecord::new(
                "CA9".into(),
                Direction::OutboundApi,
                call.from.clone(),
                call.to.clone(),
            );
            record.stream_sid = Some("MZ1".into());
            record.skipped_frames = 5;
            record.dropped.dtmf_digits = 2;
            record.dropped.openai_errors = 1;
            record.finish(EndReason::CallerHungUp, 10);

            store.finish(&call.id, &record).expect("finished");
            let view = store.get(&call.id).expect("read").expect("present");

            assert_eq!(
                (before.skipped_frames, before.dropped),
                (0, DroppedInput::default())
            );
            assert_eq!(view.stream_sid.as_deref(), Some("MZ1"));
            assert_eq!(view.skipped_frames, 5);
            assert_eq!(view.dropped, record.dropped);
        }
    }

    both_backends! {
        fn an_error_is_stored_with_twilios_code(store) {
            let call = store.create(&outbound("+1555")).expect("stored");
            let error = CallError {
                code: Some(21211),
                message: "Invalid 'To' Phone Number".into(),
            };

            store.set_error(&call.id, &error).expect("stored");
            let view = store.get(&call.id).expect("read").expect("present");

            assert_eq!(view.error, Some(error));
        }
    }

    #[test]
    fn records_survive_closing_and_reopening_the_file() {
        let dir = TempDir::new("restart");
        let path = dir.0.join("nested").join("callbridge.db");
        let (before, id) = {
            let store = CallStore::open(&path).expect("created on first run");
            let call = store.create(&outbound("+15550199")).expect("stored");
            store.set_call_sid(&call.id, "CA0123").expect("stored");
            store
                .update_status(
                    &call.id,
                    CallStatus::InProgress,
                    datetime!(2025-03-04 05:06:00.5 UTC),
                )
                .expect("updated");
            store
                .append_turn(&call.id, &turn(Speaker::Caller, "Hello?", 500))
                .expect("appended");
            store
                .append_turn(&call.id, &turn(Speaker::Assistant, "Hi there.", 1_500))
                .expect("appended");
            (
                store.get(&call.id).expect("read").expect("present"),
                call.id,
            )
        };

        let reopened = CallStore::open(&path).expect("reopens");
        let after = reopened.get(&id).expect("read").expect("still there");

        assert!(path.is_file());
        assert_eq!(after, before);
        assert_eq!(after.transcript.len(), 2);
    }

    both_backends! {
        fn a_call_keeps_the_engine_it_was_placed_with(store) {
            let mut call = outbound("+15550199");
            call.engine = Some(crate::config::Engine::Live);
            let live = store.create(&call).expect("stored");
            let default = store.create(&outbound("+15550198")).expect("stored");

            assert_eq!(live.engine, Some(crate::config::Engine::Live));
            assert_eq!(
                store.get(&live.id).expect("read").expect("there").engine,
                Some(crate::config::Engine::Live)
            );
            assert_eq!(default.engine, None);
        }
    }

    #[test]
    fn a_database_from_a_newer_callbridge_is_refused() {
        let dir = TempDir::new("newer");
        let path = dir.0.join("callbridge.db");
        drop(CallStore::open(&path).expect("created"));
        Connection::open(&path)
            .expect("opens")
            .pragma_update(None, "user_version", 99)
            .expect("set");

        let result = CallStore::open(&path);

        let newest = schema::MIGRATIONS.len() as i64;
        assert!(
            matches!(
                result,
                Err(StoreError::SchemaTooNew {
                    found: 99,
                    supported
                }) if supported == newest
            ),
            "{result:?}"
        );
    }

    both_backends! {
        fn a_list_is_newest_first_and_limited(store) {
            let ids: Vec<String> = (0..5)
                .map(|i| {
                    store
                        .create(&outbound(&format!("+1555010{i}")))
                        .expect("stored")
                        .id
                })
                .collect();

            let listed = store.list(3).expect("listed");

            let listed_ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(
                listed_ids,
                [ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]
            );
            assert_eq!(listed[0].to, "+15550104");
            assert_eq!(
                listed[0],
                store
                    .get(&ids[4])
                    .expect("read")
                    .expect("present")
                    .summary()
            );
        }
    }

    both_backends! {
        fn outbound_calls_created_since_a_time_are_counted_whatever_their_status(store) {
            let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
            let placed = store.create(&outbound("+15550199")).expect("stored");
            let refused = store.create(&outbound("+15550198")).expect("stored");
            store
                .update_status(&refused.id, CallStatus::Failed, OffsetDateTime::now_utc())
                .expect("updated");
            let mut inbound = outbound("+15550100");
            inbound.direction = Direction::Inbound;
            store.create(&inbound).expect("stored");
            let after = OffsetDateTime::now_utc() + time::Duration::seconds(1);

            let since_before = store.count_outbound_created_since(before).expect("counted");
            let since_after = store.count_outbound_created_since(after).expect("counted");

            assert_eq!(
                since_before, 2,
                "both outbound calls, not the inbound one ({placed:?})"
            );
            assert_eq!(since_after, 0);
        }
    }

    both_backends! {
        fn only_unanswered_outbound_calls_count_as_ringing(store) {
            let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
            let now = OffsetDateTime::now_utc();
            let _queued = store.create(&outbound("+15550101")).expect("stored");
            let ringing = store.create(&outbound("+15550102")).expect("stored");
            store
                .update_status(&ringing.id, CallStatus::Ringing, now)
                .expect("updated");
            let answered = store.create(&outbound("+15550103")).expect("stored");
            store
                .update_status(&answered.id, CallStatus::InProgress, now)
                .expect("updated");
            let busy = store.create(&outbound("+15550104")).expect("stored");
            store
                .update_status(&busy.id, CallStatus::Busy, now)
                .expect("updated");
            let mut inbound = outbound("+15550100");
            inbound.direction = Direction::Inbound;
            store.create(&inbound).expect("stored");
            let after = OffsetDateTime::now_utc() + time::Duration::seconds(1);

            let since_before = store.count_outbound_ringing_since(before).expect("counted");
            let since_after = store.count_outbound_ringing_since(after).expect("counted");

            assert_eq!(since_before, 2, "the queued and the ringing call");
            assert_eq!(since_after, 0, "calls created before `since` do not count");
        }
    }

    both_backends! {
        fn a_call_is_found_by_its_call_sid(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            store.create(&outbound("+15550198")).expect("stored");
            store.set_call_sid(&call.id, "CAabc").expect("stored");

            let found = store.get_by_call_sid("CAabc").expect("read");
            let missing = store.get_by_call_sid("CAzzz").expect("read");

            assert_eq!(found.map(|v| v.id), Some(call.id));
            assert!(missing.is_none());
        }
    }

    both_backends! {
        fn an_idempotency_token_is_new_once_and_forgotten_after_a_day(store) {
            let now = datetime!(2025-03-04 05:06:00 UTC);

            let first = store
                .remember_idempotency_token_at("tok-1", now)
                .expect("stored");
            let retry = store
                .remember_idempotency_token_at("tok-1", now)
                .expect("stored");
            let other = store
                .remember_idempotency_token_at("tok-2", now)
                .expect("stored");
            let much_later = store
                .remember_idempotency_token_at("tok-1", now + time::Duration::hours(25))
                .expect("stored");

            assert_eq!([first, retry, other, much_later], [true, false, true, true]);
            assert!(
                store
                    .remember_idempotency_token("tok-live")
                    .expect("stored")
            );
            assert!(
                !store
                    .remember_idempotency_token("tok-live")
                    .expect("stored")
            );
        }
    }

    both_backends! {
        file fn threads_appending_turns_to_different_calls_keep_every_turn_in_order(store) {
            let ids: Vec<String> = (0..4)
                .map(|i| {
                    store
                        .create(&outbound(&format!("+1555020{i}")))
                        .expect("stored")
                        .id
                })
                .collect();

            let handles: Vec<_> = ids
                .iter()
                .cloned()
                .map(|id| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        for n in 0..25_u64 {
                            store
                                .append_turn(&id, &turn(Speaker::Caller, &format!("{id} turn {n}"), n))
                                .expect("appended");
                        }
                    })
                })
                .collect();
            for handle in handles {
                handle.join().expect("no thread panicked");
            }

            for id in &ids {
                let texts: Vec<String> = store
                    .get(id)
                    .expect("read")
                    .expect("present")
                    .transcript
                    .into_iter()
                    .map(|t| t.text)
                    .collect();
                let expected: Vec<String> = (0..25).map(|n| format!("{id} turn {n}")).collect();
                assert_eq!(texts, expected);
            }
        }
    }

    both_backends! {
        fn reconciliation_closes_every_open_record_and_keeps_its_turns(store) {
            let now = datetime!(2025-03-04 06:00:00 UTC);
            let earlier = datetime!(2025-03-04 05:00:00 UTC);
            let mut inbound = outbound("+15550100");
            inbound.direction = Direction::Inbound;
            inbound.call_sid = Some("CAin".into());
            let live_inbound = store.create(&inbound).expect("stored");
            store
                .update_status(&live_inbound.id, CallStatus::InProgress, earlier)
                .expect("updated");
            store
                .append_turn(&live_inbound.id, &turn(Speaker::Caller, "Hello?", 500))
                .expect("appended");
            let answered = store.create(&outbound("+15550101")).expect("stored");
            store
                .update_status(&answered.id, CallStatus::InProgress, earlier)
                .expect("updated");
            let ringing = store.create(&outbound("+15550102")).expect("stored");
            store.set_call_sid(&ringing.id, "CAring").expect("stored");
            store
                .update_status(&ringing.id, CallStatus::Ringing, earlier)
                .expect("updated");
            let done = store.create(&outbound("+15550103")).expect("stored");
            store
                .update_status(&done.id, CallStatus::Busy, earlier)
                .expect("updated");

            let closed = store.reconcile(now).expect("reconciled");
            let again = store.reconcile(now).expect("reconciled twice");

            let summary: Vec<(&str, CallStatus, CallStatus)> = closed
                .iter()
                .map(|c| (c.id.as_str(), c.was, c.now))
                .collect();
            assert_eq!(
                summary,
                [
                    (
                        live_inbound.id.as_str(),
                        CallStatus::InProgress,
                        CallStatus::Completed
                    ),
                    (
                        answered.id.as_str(),
                        CallStatus::InProgress,
                        CallStatus::Completed
                    ),
                    (
                        ringing.id.as_str(),
                        CallStatus::Ringing,
                        CallStatus::Canceled
                    ),
                ]
            );
            assert_eq!(closed[2].call_sid.as_deref(), Some("CAring"));
            assert!(again.is_empty(), "nothing is left open");
            let inbound_after = store.get(&live_inbound.id).expect("read").expect("present");
            assert_eq!(inbound_after.status, CallStatus::Completed);
            assert_eq!(
                inbound_after.end_reason.as_deref(),
                Some("error:server_stopped")
            );
            assert_eq!(inbound_after.ended_at, Some(now));
            assert_eq!(inbound_after.transcript.len(), 1, "its turns are kept");
            let done_after = store.get(&done.id).expect("read").expect("present");
            assert_eq!(done_after.status, CallStatus::Busy);
            assert_eq!(done_after.end_reason, None, "a finished call is left alone");
        }
    }

    both_backends! {
        fn reconciliation_keeps_an_end_reason_already_written(store) {
            let mut inbound = outbound("+15550100");
            inbound.direction = Direction::Inbound;
            let call = store.create(&inbound).expect("stored");
            let mut record = CallRecord::new(
                "CA1".into(),
                Direction::Inbound,
                call.from.clone(),
                call.to.clone(),
            );
            record.finish(EndReason::Goodbye, 1_000);
            store.finish(&call.id, &record).expect("finished");

            store
                .reconcile(OffsetDateTime::now_utc())
                .expect("reconciled");
            let view = store.get(&call.id).expect("read").expect("present");

            assert_eq!(view.status, CallStatus::Completed);
            assert_eq!(view.end_reason.as_deref(), Some("goodbye"));
        }
    }

    both_backends! {
        fn a_call_whose_stream_never_opened_is_closed_with_its_reason(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            store
                .update_status(&call.id, CallStatus::InProgress, OffsetDateTime::now_utc())
                .expect("updated");

            let changed = store
                .close_unopened(
                    &call.id,
                    &EndReason::Error(CallFailure::StreamNeverOpened),
                    OffsetDateTime::now_utc(),
                )
                .expect("closed");
            let view = store.get(&call.id).expect("read").expect("present");

            assert!(changed);
            assert_eq!(view.status, CallStatus::Completed);
            assert_eq!(
                view.end_reason.as_deref(),
                Some("error:stream_never_opened")
            );
            assert!(crate::calls::service::is_done(&view));
        }
    }

    both_backends! {
        fn a_finished_and_completed_call_has_its_end_and_its_completed_status_together(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            store
                .update_status(&call.id, CallStatus::InProgress, OffsetDateTime::now_utc())
                .expect("answered");
            let mut record = CallRecord::new("CAfin".into(), Direction::Inbound, "+1".into(), "+2".into());
            record.end_reason = Some(EndReason::CallerHungUp);

            store
                .finish_completed(&call.id, &record, OffsetDateTime::now_utc())
                .expect("finished");
            let view = store.get(&call.id).expect("read").expect("present");

            assert_eq!(view.status, CallStatus::Completed);
            assert_eq!(view.end_reason.as_deref(), Some("caller_hung_up"));
            assert_eq!(
                view.status_timeline.last().map(|change| change.status),
                Some(CallStatus::Completed)
            );
        }
    }

    both_backends! {
        fn a_status_callback_is_applied_once_per_idempotency_token(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            store.set_call_sid(&call.id, "CAcb").expect("stored");
            let now = OffsetDateTime::now_utc();

            let first = store
                .apply_status_callback("CAcb", CallStatus::Ringing, Some("tok"), now)
                .expect("applied");
            let retried = store
                .apply_status_callback("CAcb", CallStatus::InProgress, Some("tok"), now)
                .expect("applied");
            let unknown = store
                .apply_status_callback("CAzz", CallStatus::Ringing, None, now)
                .expect("applied");

            assert_eq!(first, Some((call.id.clone(), true)));
            assert_eq!(retried, None);
            assert_eq!(unknown, None);
            assert_eq!(
                store.get(&call.id).expect("read").expect("present").status,
                CallStatus::Ringing
            );
        }
    }

    both_backends! {
        fn random_status_sequences_never_move_a_call_back(store) {
            proptest!(|(steps in proptest::collection::vec(proptest::sample::select(CallStatus::ALL.to_vec()), 0..12))| {
                let call = store.create(&outbound("+15550199")).expect("stored");
                let t0 = datetime!(2025-03-04 05:06:00 UTC);
                let mut highest = CallStatus::Queued;

                for (i, status) in steps.iter().enumerate() {
                    let changed = store
                        .update_status(&call.id, *status, t0 + time::Duration::seconds(i as i64))
                        .expect("updated");
                    prop_assert_eq!(changed, status.rank() > highest.rank());
                    if changed {
                        highest = *status;
                    }
                }
                let view = store.get(&call.id).expect("read").expect("present");

                prop_assert_eq!(view.status, highest);
                let ranks: Vec<u8> = view.status_timeline.iter().map(|c| c.status.rank()).collect();
                prop_assert!(ranks.windows(2).all(|w| w[0] < w[1]), "timeline ranks {:?}", ranks);
                prop_assert_eq!(view.status_timeline.last().map(|c| c.status), Some(highest));
            });
        }
    }

    both_backends! {
        file fn two_instances_appending_turns_and_moving_one_call_at_once_lose_nothing(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            let other = store.reopen();
            let t0 = datetime!(2025-03-04 05:06:00 UTC);

            std::thread::scope(|scope| {
                for (instance, writer) in [&*store, &other].into_iter().enumerate() {
                    let id = call.id.clone();
                    scope.spawn(move || {
                        for n in 0..20_u64 {
                            writer
                                .append_turn(&id, &turn(Speaker::Caller, &format!("{instance}:{n}"), n))
                                .expect("appended");
                            let status = [CallStatus::Initiated, CallStatus::Ringing, CallStatus::InProgress]
                                [usize::try_from(n % 3).expect("small")];
                            writer
                                .update_status(&id, status, t0 + time::Duration::seconds(n as i64))
                                .expect("updated");
                        }
                    });
                }
            });
            let view = store.get(&call.id).expect("read").expect("present");

            assert_eq!(view.transcript.len(), 40, "every turn of both instances is kept");
            for instance in 0..2 {
                let mine: Vec<String> = view
                    .transcript
                    .iter()
                    .filter(|t| t.text.starts_with(&format!("{instance}:")))
                    .map(|t| t.text.clone())
                    .collect();
                let expected: Vec<String> = (0..20).map(|n| format!("{instance}:{n}")).collect();
                assert_eq!(mine, expected, "each instance's turns stay in its order");
            }
            let ranks: Vec<u8> = view.status_timeline.iter().map(|c| c.status.rank()).collect();
            assert!(ranks.windows(2).all(|w| w[0] < w[1]), "timeline ranks {ranks:?}");
            assert_eq!(view.status, CallStatus::InProgress);
        }
    }

    both_backends! {
        file fn one_idempotency_token_sent_to_two_instances_at_once_is_new_exactly_once(store) {
            let other = store.reopen();

            let firsts: Vec<bool> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|i| {
                        let writer: &CallStore = if i % 2 == 0 { &store } else { &other };
                        scope.spawn(move || writer.remember_idempotency_token("tok-shared").expect("stored"))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("no panic")).collect()
            });

            assert_eq!(firsts.iter().filter(|&&first| first).count(), 1, "{firsts:?}");
        }
    }

    both_backends! {
        file fn a_reopened_store_reads_every_record_as_it_was(store) {
            let call = store.create(&outbound("+15550199")).expect("stored");
            store.set_call_sid(&call.id, "CA0123").expect("stored");
            store
                .update_status(&call.id, CallStatus::InProgress, datetime!(2025-03-04 05:06:00.5 UTC))
                .expect("updated");
            store
                .append_turn(&call.id, &turn(Speaker::Caller, "Hello?", 500))
                .expect("appended");
            let before = store.get(&call.id).expect("read").expect("present");

            let reopened = store.reopen();
            let after = reopened.get(&call.id).expect("read").expect("still there");

            assert_eq!(after, before);
            assert_eq!(reopened.list(10).expect("listed"), store.list(10).expect("listed"));
        }
    }
}
