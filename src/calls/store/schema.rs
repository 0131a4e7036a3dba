//! The call records schema: one migration per version, applied at open.

use rusqlite::{Connection, TransactionBehavior};

use super::{StoreError, ctx};

/// The schema, one migration per version: `MIGRATIONS[n]` takes `PRAGMA user_version` from `n` to `n + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // Version 1.
    "
    CREATE TABLE calls (
        id             TEXT PRIMARY KEY NOT NULL,
        direction      TEXT NOT NULL,
        from_number    TEXT NOT NULL,
        to_number      TEXT NOT NULL,
        call_sid       TEXT,
        stream_sid     TEXT,
        status         TEXT NOT NULL,
        instructions   TEXT,
        greeting       TEXT,
        voice          TEXT,
        language       TEXT,
        max_duration_s INTEGER,
        metadata       TEXT,
        outcome        TEXT,
        end_reason     TEXT,
        error_code     INTEGER,
        error_message  TEXT,
        created_at_ns  INTEGER NOT NULL,
        answered_at_ns INTEGER,
        ended_at_ns    INTEGER,
        duration_ms    INTEGER,
        usage          TEXT NOT NULL
    );
    CREATE INDEX calls_by_call_sid ON calls (call_sid);
    CREATE INDEX calls_by_created_at ON calls (created_at_ns);
    CREATE TABLE status_changes (
        call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        seq     INTEGER NOT NULL,
        status  TEXT NOT NULL,
        at_ns   INTEGER NOT NULL,
        PRIMARY KEY (call_id, seq)
    );
    CREATE TABLE turns (
        call_id     TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        speaker     TEXT NOT NULL,
        text        TEXT NOT NULL,
        at_ns       INTEGER NOT NULL,
        offset_ms   INTEGER NOT NULL,
        interrupted INTEGER NOT NULL,
        item_id     TEXT,
        PRIMARY KEY (call_id, seq)
    );
    CREATE TABLE idempotency_tokens (
        token      TEXT PRIMARY KEY NOT NULL,
        seen_at_ns INTEGER NOT NULL
    );
    CREATE INDEX idempotency_tokens_by_age ON idempotency_tokens (seen_at_ns);
    ",
    // Version 2: answering machine detection. Calls stored before it have no policy, no verdict, no voicemail.
    "
    ALTER TABLE calls ADD COLUMN answering_machine TEXT;
    ALTER TABLE calls ADD COLUMN voicemail_message TEXT;
    ALTER TABLE calls ADD COLUMN answered_by TEXT;
    ALTER TABLE calls ADD COLUMN voicemail_left INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN voicemail_transcript TEXT;
    ",
    // Version 3: what the call's peers sent that was skipped or dropped (`CallRecord::skipped_frames`, `dropped`).
    "
    ALTER TABLE calls ADD COLUMN skipped_frames INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN dropped TEXT;
    ",
    // Version 4: the call's moves to new media streams and its transfers to a person (JSON lists).
    "
    ALTER TABLE calls ADD COLUMN handovers TEXT;
    ALTER TABLE calls ADD COLUMN transfers TEXT;
    ",
    // Call recording: whether Twilio was asked to record the call, and each recording Twilio reported, with its
    // deletion at Twilio (a durable job: due time, attempts, last error, done time).
    "
    ALTER TABLE calls ADD COLUMN record INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE recordings (
        sid              TEXT PRIMARY KEY NOT NULL,
        call_id          TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        status           TEXT NOT NULL,
        url              TEXT,
        duration_s       INTEGER,
        channels         INTEGER,
        source           TEXT,
        error_code       INTEGER,
        reported_at_ns   INTEGER NOT NULL,
        delete_due_at_ns INTEGER,
        delete_attempts  INTEGER NOT NULL DEFAULT 0,
        delete_error     TEXT,
        deleted_at_ns    INTEGER
    );
    CREATE INDEX recordings_by_call ON recordings (call_id, reported_at_ns);
    CREATE INDEX recordings_by_due ON recordings (delete_due_at_ns)
        WHERE deleted_at_ns IS NULL AND delete_due_at_ns IS NOT NULL;
    ",
    // Signed webhooks: the call's webhook URL, and the durable outbox of its deliveries (`store/outbox.rs`).
    "
    ALTER TABLE calls ADD COLUMN webhook_url TEXT;
    CREATE TABLE webhook_deliveries (
        id                 TEXT PRIMARY KEY NOT NULL,
        call_id            TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        event              TEXT NOT NULL,
        url                TEXT NOT NULL,
        body               TEXT NOT NULL,
        status             TEXT NOT NULL,
        attempts           INTEGER NOT NULL DEFAULT 0,
        created_at_ns      INTEGER NOT NULL,
        next_attempt_at_ns INTEGER NOT NULL,
        last_attempt_at_ns INTEGER,
        last_status_code   INTEGER,
        last_error         TEXT,
        delivered_at_ns    INTEGER
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at_ns);
    CREATE INDEX webhook_deliveries_by_call ON webhook_deliveries (call_id, event);
    ",
    // Scheduled and retried outbound calls: the plan and the next attempt's due time (one row per such call), and
    // each attempt with its own CallSid and status. Calls placed at once have neither.
    "
    CREATE TABLE call_schedules (
        call_id            TEXT PRIMARY KEY NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        max_attempts       INTEGER NOT NULL,
        backoff_s          INTEGER NOT NULL,
        retry_on           TEXT NOT NULL,
        retry_asked        INTEGER NOT NULL DEFAULT 0,
        not_before_ns      INTEGER,
        call_window        TEXT,
        send_digits        TEXT,
        next_attempt_at_ns INTEGER
    );
    CREATE INDEX call_schedules_by_due ON call_schedules (next_attempt_at_ns);
    CREATE TABLE call_attempts (
        call_id       TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        seq           INTEGER NOT NULL,
        call_sid      TEXT,
        status        TEXT NOT NULL,
        started_at_ns INTEGER NOT NULL,
        ended_at_ns   INTEGER,
        result        TEXT,
        PRIMARY KEY (call_id, seq)
    );
    CREATE INDEX call_attempts_by_call_sid ON call_attempts (call_sid);
    CREATE INDEX call_attempts_by_start ON call_attempts (started_at_ns);
    ",
    // Structured outcomes and the voice's remote MCP servers: the outcome's JSON Schema and the outcome that passed
    // it (JSON text), and the labels of the MCP servers the call named (a JSON list; NULL: the server's defaults).
    "
    ALTER TABLE calls ADD COLUMN outcome_schema TEXT;
    ALTER TABLE calls ADD COLUMN structured_outcome TEXT;
    ALTER TABLE calls ADD COLUMN mcp_servers TEXT;
    ",
    // Agent-in-the-loop calls: who decides what the voice says. Calls stored before it are autonomous.
    "
    ALTER TABLE calls ADD COLUMN mode TEXT NOT NULL DEFAULT 'autonomous';
    ",
    // The estimated cost of a call (`CallRecord::cost`, JSON, and its total in dollars for the daily budget) and an
    // outbound call's own cost cap.
    "
    ALTER TABLE calls ADD COLUMN cost TEXT;
    ALTER TABLE calls ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN max_cost_usd REAL;
    ",
    // Next version: the call's moves to new OpenAI Realtime sessions (a JSON list; NULL for none).
    "
    ALTER TABLE calls ADD COLUMN rollovers TEXT;
    ",
    // The OpenAI voice API of a call (`realtime`, `live`); NULL for calls stored before engines were chosen.
    "
    ALTER TABLE calls ADD COLUMN engine TEXT;
    ",
];

/// Brings the schema up to the newest version, one migration at a time, each in its own transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    const CONTEXT: &str = "migrate the schema";
    let supported = i64::try_from(MIGRATIONS.len()).expect("a handful of migrations");
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(ctx(CONTEXT))?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for (version, migration) in (1_i64..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(ctx(CONTEXT))?;
        tx.execute_batch(migration).map_err(ctx(CONTEXT))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(ctx(CONTEXT))?;
        tx.commit().map_err(ctx(CONTEXT))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_database_gains_the_dropped_input_columns_and_keeps_its_calls() {
        let mut conn = Connection::open_in_memory().expect("opens");
        conn.execute_batch(MIGRATIONS[0]).expect("version 1");
        conn.pragma_update(None, "user_version", 1).expect("set");
        conn.execute(
            "INSERT INTO calls (id, direction, from_number, to_number, status, created_at_ns, usage) \
             VALUES ('call_1', 'inbound', '+1', '+2', 'completed', 0, '{}')",
            [],
        )
        .expect("a version-1 call");

        migrate(&mut conn).expect("migrates");
        let (skipped, dropped): (i64, Option<String>) = conn
            .query_row(
                "SELECT skipped_frames, dropped FROM calls WHERE id = 'call_1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("the call is still there");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("a version");

        assert_eq!((skipped, dropped), (0, None));
        assert_eq!(version, i64::try_from(MIGRATIONS.len()).expect("a handful"));
    }
}
