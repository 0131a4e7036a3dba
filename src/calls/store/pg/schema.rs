//! The PostgreSQL call records schema: one migration per version, recorded in `schema_migrations`, applied at open
//! under an advisory lock so that instances starting at once migrate once. The columns mean what the SQLite ones
//! mean (`store/schema.rs`): timestamps are `BIGINT` nanoseconds since the Unix epoch, JSON is `TEXT`, flags are
//! `BOOLEAN`.

use postgres::Transaction;

use super::ctx;
use crate::calls::store::StoreError;

/// The advisory lock key every callbridge takes while it migrates (any fixed number; this one spells "callbrdg").
const MIGRATION_LOCK_KEY: i64 = 0x6361_6c6c_6272_6467;

/// The schema, one migration per version: `MIGRATIONS[n]` takes the database from version `n` to `n + 1` (the
/// highest `version` in `schema_migrations`; 0 for an empty database).
pub(in crate::calls::store) const MIGRATIONS: &[&str] = &[
    // Version 1: the calls (every column of the SQLite store's migrations), their status timelines and turns, and
    // the idempotency tokens of status callbacks. `created_seq` breaks ties between calls created in the same
    // nanosecond, as SQLite's rowid does.
    "
    CREATE TABLE calls (
        id                   TEXT PRIMARY KEY NOT NULL,
        created_seq          BIGINT GENERATED ALWAYS AS IDENTITY,
        direction            TEXT NOT NULL,
        from_number          TEXT NOT NULL,
        to_number            TEXT NOT NULL,
        call_sid             TEXT,
        stream_sid           TEXT,
        status               TEXT NOT NULL,
        instructions         TEXT,
        greeting             TEXT,
        voice                TEXT,
        language             TEXT,
        max_duration_s       BIGINT,
        metadata             TEXT,
        outcome              TEXT,
        end_reason           TEXT,
        error_code           BIGINT,
        error_message        TEXT,
        created_at_ns        BIGINT NOT NULL,
        answered_at_ns       BIGINT,
        ended_at_ns          BIGINT,
        duration_ms          BIGINT,
        usage                TEXT NOT NULL,
        answering_machine    TEXT,
        voicemail_message    TEXT,
        answered_by          TEXT,
        voicemail_left       BOOLEAN NOT NULL DEFAULT FALSE,
        voicemail_transcript TEXT,
        skipped_frames       BIGINT NOT NULL DEFAULT 0,
        dropped              TEXT,
        handovers            TEXT,
        transfers            TEXT,
        record               BOOLEAN NOT NULL DEFAULT FALSE,
        webhook_url          TEXT,
        outcome_schema       TEXT,
        structured_outcome   TEXT,
        mcp_servers          TEXT,
        mode                 TEXT NOT NULL DEFAULT 'autonomous',
        cost                 TEXT,
        cost_usd             DOUBLE PRECISION NOT NULL DEFAULT 0,
        max_cost_usd         DOUBLE PRECISION,
        rollovers            TEXT,
        engine               TEXT
    );
    CREATE INDEX calls_by_call_sid ON calls (call_sid);
    CREATE INDEX calls_by_created_at ON calls (created_at_ns);
    CREATE INDEX calls_open ON calls (status)
        WHERE status IN ('queued', 'initiated', 'ringing', 'in-progress');
    CREATE TABLE status_changes (
        call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        seq     BIGINT NOT NULL,
        status  TEXT NOT NULL,
        at_ns   BIGINT NOT NULL,
        PRIMARY KEY (call_id, seq)
    );
    CREATE TABLE turns (
        call_id     TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        seq         BIGINT NOT NULL,
        speaker     TEXT NOT NULL,
        text        TEXT NOT NULL,
        at_ns       BIGINT NOT NULL,
        offset_ms   BIGINT NOT NULL,
        interrupted BOOLEAN NOT NULL,
        item_id     TEXT,
        PRIMARY KEY (call_id, seq)
    );
    CREATE TABLE idempotency_tokens (
        token      TEXT PRIMARY KEY NOT NULL,
        seen_at_ns BIGINT NOT NULL
    );
    CREATE INDEX idempotency_tokens_by_age ON idempotency_tokens (seen_at_ns);
    ",
];

/// Brings the schema up to the newest version inside the transaction `tx` (one transaction for all: PostgreSQL's
/// DDL is transactional, so a failed migration leaves the database as it was). Holds the advisory lock
/// [`MIGRATION_LOCK_KEY`] until the transaction ends, so a second instance waits and then finds nothing to do.
///
/// # Errors
///
/// [`StoreError::SchemaTooNew`] when a newer callbridge migrated the database, [`StoreError::Postgres`] when a
/// statement fails.
pub(in crate::calls::store) fn migrate(tx: &mut Transaction<'_>) -> Result<(), StoreError> {
    const CONTEXT: &str = "migrate the schema";
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = 0; SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY}); \
         CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY NOT NULL, \
         applied_at_ns BIGINT NOT NULL)"
    ))
    .map_err(ctx(CONTEXT))?;
    let supported = i64::try_from(MIGRATIONS.len()).expect("a handful of migrations");
    let found: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(ctx(CONTEXT))?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    let now_ns = crate::calls::store::rows::to_ns(time::OffsetDateTime::now_utc(), "now")?;
    for (version, migration) in (1_i64..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(migration).map_err(ctx(CONTEXT))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at_ns) VALUES ($1, $2)",
            &[&version, &now_ns],
        )
        .map_err(ctx(CONTEXT))?;
    }
    Ok(())
}
