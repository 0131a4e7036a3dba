//! The core call writes and reads on PostgreSQL, one function per method of `store/mod.rs` (same names, same
//! rules): creating a call, its CallSid, status moves and status callbacks, its error, its turns, its end, reading
//! it back and listing calls, and the idempotency tokens of status callbacks.
//!
//! Every function that reads a call's status before writing it takes the call's row lock first ([`lock_call`]),
//! where the SQLite store relies on its database-wide write lock: two instances may update one call at once.

use postgres::GenericClient;
use postgres::types::ToSql;
use time::OffsetDateTime;

use super::rows::{read_view, summary_from_row};
use super::{ctx, outbox, scheduling};
use crate::calls::model::{CallError, CallStatus, CallSummary, CallView, NewCall};
use crate::calls::store::rows::{SUMMARY_COLUMNS, dropped_json, list_json, to_ns, usage_json};
use crate::calls::store::{IDEMPOTENCY_TOKEN_TTL, StoreError};
use crate::calls::{CallRecord, Turn};
use crate::realtime::usage::Usage;

/// `Ok` when a statement touched a row, [`StoreError::NotFound`] otherwise.
fn found(changed_rows: u64, id: &str) -> Result<(), StoreError> {
    if changed_rows == 0 {
        Err(StoreError::NotFound(id.to_owned()))
    } else {
        Ok(())
    }
}

/// Takes the call's row lock until the transaction ends (`SELECT … FOR UPDATE`) and returns its status: every
/// read-then-write of a call's status, timeline or turns goes through it, so concurrent writers of one call (two
/// instances, or a status callback and the relay) take turns.
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when the query fails.
pub(in crate::calls::store) fn lock_call(
    c: &mut impl GenericClient,
    id: &str,
) -> Result<CallStatus, StoreError> {
    c.query_opt("SELECT status FROM calls WHERE id = $1 FOR UPDATE", &[&id])
        .and_then(|row| row.map(|row| row.try_get("status")).transpose())
        .map_err(ctx("look a call up"))?
        .ok_or_else(|| StoreError::NotFound(id.to_owned()))
}

/// Stores a new call with the id `id` (see `CallStore::create_with_id`) and returns it as read back.
///
/// # Errors
///
/// [`StoreError::Postgres`] when the write fails (also when the id is taken), [`StoreError::OutOfRange`] for a
/// `max_duration_s` above `i64::MAX`.
pub(in crate::calls::store) fn create(
    c: &mut impl GenericClient,
    id: &str,
    call: &NewCall,
) -> Result<CallView, StoreError> {
    const CONTEXT: &str = "store a new call";
    let created_at_ns = to_ns(OffsetDateTime::now_utc(), "created_at")?;
    let max_duration_s = call
        .max_duration_s
        .map(|s| {
            i64::try_from(s).map_err(|_| StoreError::OutOfRange {
                what: "max_duration_s",
            })
        })
        .transpose()?;
    let metadata = call.metadata.as_ref().map(serde_json::Value::to_string);
    let outcome_schema = call
        .outcome_schema
        .as_ref()
        .map(serde_json::Value::to_string);
    let mcp_servers = call
        .mcp_servers
        .as_ref()
        .map(|labels| serde_json::json!(labels).to_string());
    let params: [&(dyn ToSql + Sync); 23] = [
        &id,
        &call.direction,
        &call.from,
        &call.to,
        &call.call_sid,
        &CallStatus::Queued,
        &call.instructions,
        &call.greeting,
        &call.voice,
        &call.language,
        &max_duration_s,
        &metadata,
        &created_at_ns,
        &usage_json(&Usage::default()),
        &call.answering.answering_machine.map(|p| p.as_str()),
        &call.answering.voicemail_message,
        &call.webhook_url,
        &call.max_cost_usd,
        &outcome_schema,
        &mcp_servers,
        &call.mode.as_str(),
        &call.engine.map(|e| e.as_str()),
        &call.record,
    ];
    c.execute(
        "INSERT INTO calls (id, direction, from_number, to_number, call_sid, status, instructions, greeting, voice, \
         language, max_duration_s, metadata, created_at_ns, usage, answering_machine, voicemail_message, \
         webhook_url, max_cost_usd, outcome_schema, mcp_servers, mode, engine, record) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
         $22, $23)",
        &params,
    )
    .map_err(ctx(CONTEXT))?;
    c.execute(
        "INSERT INTO status_changes (call_id, seq, status, at_ns) VALUES ($1, 0, $2, $3)",
        &[&id, &CallStatus::Queued, &created_at_ns],
    )
    .map_err(ctx(CONTEXT))?;
    read_view(c, id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))
}

/// Records Twilio's CallSid for the call (and its latest attempt).
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when the write fails.
pub(in crate::calls::store) fn set_call_sid(
    c: &mut impl GenericClient,
    id: &str,
    call_sid: &str,
) -> Result<(), StoreError> {
    let changed = c
        .execute(
            "UPDATE calls SET call_sid = $2 WHERE id = $1",
            &[&id, &call_sid],
        )
        .map_err(ctx("record a CallSid"))?;
    found(changed, id)?;
    scheduling::set_attempt_call_sid(c, id, call_sid)
}

/// Moves the call to `status` at `at_ns` if that is a step forward (see `CallStore::update_status`), inside the
/// caller's transaction. Returns whether anything changed.
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when a statement fails.
pub(in crate::calls::store) fn advance_status(
    c: &mut impl GenericClient,
    id: &str,
    status: CallStatus,
    at_ns: i64,
) -> Result<bool, StoreError> {
    let current = lock_call(c, id)?;
    if status.rank() <= current.rank() || current.is_waiting() {
        return Ok(false);
    }
    record_status(c, id, status, at_ns)?;
    Ok(true)
}

/// Moves the call to `status` at `at_ns` whatever its current status and appends the change to its timeline:
/// `in-progress` sets `answered_at`, a terminal status sets `ended_at` unless set (see the SQLite store's
/// `record_status`).
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when a statement fails.
pub(in crate::calls::store) fn record_status(
    c: &mut impl GenericClient,
    id: &str,
    status: CallStatus,
    at_ns: i64,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "update a call's status";
    let previous = lock_call(c, id)?;
    let answered_at_ns = (status == CallStatus::InProgress).then_some(at_ns);
    let ended_at_ns = status.is_terminal().then_some(at_ns);
    c.execute(
        "UPDATE calls SET status = $2, answered_at_ns = COALESCE(answered_at_ns, $3), \
         ended_at_ns = COALESCE(ended_at_ns, $4) WHERE id = $1",
        &[&id, &status, &answered_at_ns, &ended_at_ns],
    )
    .map_err(ctx(CONTEXT))?;
    c.execute(
        "INSERT INTO status_changes (call_id, seq, status, at_ns) \
         SELECT $1::text, COALESCE(MAX(seq) + 1, 0), $2::text, $3::bigint FROM status_changes WHERE call_id = $1",
        &[&id, &status, &at_ns],
    )
    .map_err(ctx(CONTEXT))?;
    outbox::on_status_changed(c, id, previous, status, at_ns)
}

/// A status callback in the caller's transaction (see `CallStore::apply_status_callback`): remembers the
/// idempotency token, finds the call by CallSid (or by an attempt's), moves it. `None` for an unknown CallSid or a
/// retried delivery.
///
/// # Errors
///
/// [`StoreError::Postgres`] when a statement fails, [`StoreError::OutOfRange`] for a time outside 1677–2262.
pub(in crate::calls::store) fn apply_status_callback(
    c: &mut impl GenericClient,
    call_sid: &str,
    status: CallStatus,
    idempotency_token: Option<&str>,
    at: OffsetDateTime,
) -> Result<Option<(String, bool)>, StoreError> {
    let at_ns = to_ns(at, "status time")?;
    let cutoff_ns = to_ns(at - IDEMPOTENCY_TOKEN_TTL, "status time")?;
    if let Some(token) = idempotency_token
        && !remember_token(c, token, at_ns, cutoff_ns)?
    {
        return Ok(None);
    }
    let id = match newest_by_call_sid(c, call_sid)? {
        Some(id) => Some(id),
        None => scheduling::call_of_attempt(c, call_sid)?,
    };
    let Some(id) = id else {
        return Ok(None);
    };
    let changed = match scheduling::on_attempt_status(c, &id, call_sid, status, at_ns)? {
        Some(changed) => changed,
        None => advance_status(c, &id, status, at_ns)?,
    };
    Ok(Some((id, changed)))
}

/// The id of the newest call with this CallSid.
fn newest_by_call_sid(
    c: &mut impl GenericClient,
    call_sid: &str,
) -> Result<Option<String>, StoreError> {
    c.query_opt(
        "SELECT id FROM calls WHERE call_sid = $1 ORDER BY created_at_ns DESC, created_seq DESC LIMIT 1",
        &[&call_sid],
    )
    .and_then(|row| row.map(|row| row.try_get("id")).transpose())
    .map_err(ctx("find a call by CallSid"))
}

/// Records why Twilio could not place or run the call (replacing an earlier error).
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when the write fails.
pub(in crate::calls::store) fn set_error(
    c: &mut impl GenericClient,
    id: &str,
    error: &CallError,
) -> Result<(), StoreError> {
    let changed = c
        .execute(
            "UPDATE calls SET error_code = $2, error_message = $3 WHERE id = $1",
            &[&id, &error.code.map(i64::from), &error.message],
        )
        .map_err(ctx("record a call's error"))?;
    found(changed, id)
}

/// Appends a completed turn to the call's transcript.
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when the write fails,
/// [`StoreError::OutOfRange`] for a timestamp outside 1677–2262 or an offset above `i64::MAX` ms.
pub(in crate::calls::store) fn append_turn(
    c: &mut impl GenericClient,
    id: &str,
    turn: &Turn,
) -> Result<(), StoreError> {
    lock_call(c, id)?;
    let seq: i64 = c
        .query_one(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM turns WHERE call_id = $1",
            &[&id],
        )
        .and_then(|row| row.try_get(0))
        .map_err(ctx("append a turn"))?;
    insert_turn(c, id, seq, turn)
}

/// Stores what the bridge knows at the end of the media stream (see `CallStore::finish`).
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when the write fails,
/// [`StoreError::OutOfRange`] for a timestamp outside 1677–2262 or a number above `i64::MAX`.
pub(in crate::calls::store) fn finish(
    c: &mut impl GenericClient,
    id: &str,
    record: &CallRecord,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "store the end of a call";
    let ended_at_ns = record
        .ended_at
        .map(|at| to_ns(at, "ended_at"))
        .transpose()?;
    let duration_ms = i64::try_from(record.duration_ms).map_err(|_| StoreError::OutOfRange {
        what: "duration_ms",
    })?;
    let call_sid = Some(record.call_sid.as_str()).filter(|sid| !sid.is_empty());
    let end_reason = record.end_reason.as_ref().map(ToString::to_string);
    let skipped_frames =
        i64::try_from(record.skipped_frames).map_err(|_| StoreError::OutOfRange {
            what: "skipped_frames",
        })?;
    let cost = record
        .cost
        .as_ref()
        .and_then(|c| serde_json::to_string(c).ok());
    let params: [&(dyn ToSql + Sync); 18] = [
        &id,
        &record.outcome,
        &end_reason,
        &duration_ms,
        &usage_json(&record.usage),
        &record.stream_sid,
        &ended_at_ns,
        &call_sid,
        &skipped_frames,
        &dropped_json(&record.dropped),
        &record.answered_by.map(|a| a.as_str()),
        &record.voicemail_left,
        &record.voicemail_transcript,
        &list_json(&record.handovers),
        &list_json(&record.transfers),
        &cost,
        &record.cost.as_ref().map(|c| c.total_usd),
        &list_json(&record.rollovers),
    ];
    let changed = c
        .execute(
            "UPDATE calls SET outcome = COALESCE($2, outcome), end_reason = COALESCE($3, end_reason), \
             duration_ms = $4, usage = $5, stream_sid = COALESCE($6, stream_sid), \
             ended_at_ns = COALESCE($7, ended_at_ns), call_sid = COALESCE(call_sid, $8), skipped_frames = $9, \
             dropped = $10, answered_by = COALESCE(answered_by, $11), voicemail_left = $12, \
             voicemail_transcript = COALESCE($13, voicemail_transcript), handovers = $14, transfers = $15, \
             cost = COALESCE($16, cost), cost_usd = COALESCE($17, cost_usd), rollovers = $18 WHERE id = $1",
            &params,
        )
        .map_err(ctx(CONTEXT))?;
    found(changed, id)?;
    if let Some(outcome) = &record.structured_outcome {
        c.execute(
            "UPDATE calls SET structured_outcome = $2 WHERE id = $1",
            &[&id, &outcome.to_string()],
        )
        .map_err(ctx(CONTEXT))?;
    }
    c.execute("DELETE FROM turns WHERE call_id = $1", &[&id])
        .map_err(ctx(CONTEXT))?;
    for (seq, turn) in (0_i64..).zip(&record.turns) {
        insert_turn(c, id, seq, turn)?;
    }
    let now_ns = to_ns(OffsetDateTime::now_utc(), "now")?;
    outbox::queue_completed(c, id, ended_at_ns.unwrap_or(now_ns), false)
}

/// The newest call with this Twilio CallSid, whole.
///
/// # Errors
///
/// [`StoreError::Postgres`] when the read fails or a stored value is invalid.
pub(in crate::calls::store) fn get_by_call_sid(
    c: &mut impl GenericClient,
    call_sid: &str,
) -> Result<Option<CallView>, StoreError> {
    match newest_by_call_sid(c, call_sid)? {
        Some(id) => read_view(c, &id),
        None => Ok(None),
    }
}

/// Up to `limit` calls, newest first.
///
/// # Errors
///
/// [`StoreError::Postgres`] when the read fails or a stored value is invalid.
pub(in crate::calls::store) fn list(
    c: &mut impl GenericClient,
    limit: usize,
) -> Result<Vec<CallSummary>, StoreError> {
    const CONTEXT: &str = "list calls";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    c.query(
        &format!(
            "SELECT {SUMMARY_COLUMNS} FROM calls ORDER BY created_at_ns DESC, created_seq DESC LIMIT $1"
        ),
        &[&limit],
    )
    .map_err(ctx(CONTEXT))?
    .iter()
    .map(summary_from_row)
    .collect::<Result<_, _>>()
    .map_err(ctx(CONTEXT))
}

/// Remembers an idempotency token seen at `now_ns` (forgetting those seen before `cutoff_ns`); true when new. Two
/// instances remembering one token at once: the second waits for the first's commit and finds it.
///
/// # Errors
///
/// [`StoreError::Postgres`] when a statement fails.
pub(in crate::calls::store) fn remember_token(
    c: &mut impl GenericClient,
    token: &str,
    now_ns: i64,
    cutoff_ns: i64,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "remember an idempotency token";
    c.execute(
        "DELETE FROM idempotency_tokens WHERE seen_at_ns < $1",
        &[&cutoff_ns],
    )
    .map_err(ctx(CONTEXT))?;
    let inserted = c
        .execute(
            "INSERT INTO idempotency_tokens (token, seen_at_ns) VALUES ($1, $2) ON CONFLICT (token) DO NOTHING",
            &[&token, &now_ns],
        )
        .map_err(ctx(CONTEXT))?;
    Ok(inserted == 1)
}

/// Writes one transcript turn at position `seq`.
fn insert_turn(
    c: &mut impl GenericClient,
    id: &str,
    seq: i64,
    turn: &Turn,
) -> Result<(), StoreError> {
    let at_ns = to_ns(turn.at, "turn time")?;
    let offset_ms =
        i64::try_from(turn.offset_ms).map_err(|_| StoreError::OutOfRange { what: "offset_ms" })?;
    c.execute(
        "INSERT INTO turns (call_id, seq, speaker, text, at_ns, offset_ms, interrupted, item_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &id,
            &seq,
            &turn.speaker,
            &turn.text,
            &at_ns,
            &offset_ms,
            &turn.interrupted,
            &turn.item_id,
        ],
    )
    .map_err(ctx("write a turn"))?;
    Ok(())
}
