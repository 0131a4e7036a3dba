//! Call recordings in PostgreSQL: the same rows and rules as the SQLite store's `recordings.rs` (whether a call is
//! to be recorded, one row per recording Twilio reported, which is also the durable deletion job of its
//! retention). A recording status callback locks its call's row while it reads and writes, so two instances
//! receiving Twilio's retries of one callback store it as one.
//!
//! Every instance runs the retention worker, so [`recordings_due`] claims the recordings it returns (`FOR UPDATE
//! SKIP LOCKED`, then `claimed_until_ns` = now + [`RECORDING_CLAIM`]): no other instance deletes them until the
//! outcome is recorded or the claim expires (the claiming instance died).

use std::time::Duration;

use postgres::GenericClient;
use time::OffsetDateTime;

use super::ctx;
use crate::calls::recording::Recording;
use crate::calls::store::rows::{Ns, Unsigned, to_ns};
use crate::calls::store::{DueRecording, StoreError};
use crate::twilio::recording::{RecordingStatus, RecordingUpdate};

/// How long recordings returned by [`recordings_due`] stay claimed by the instance that read them: longer than the
/// retention worker's batch of deletions at Twilio, each within its request timeout.
pub const RECORDING_CLAIM: time::Duration = time::Duration::minutes(10);

/// [`crate::calls::store::CallStore::apply_recording_update`].
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown call or a RecordingSid stored under another call,
/// [`StoreError::Postgres`] when the write fails, [`StoreError::OutOfRange`] for a time outside 1677–2262.
pub fn apply_recording_update(
    conn: &mut impl GenericClient,
    call_id: &str,
    update: &RecordingUpdate,
    at: OffsetDateTime,
    retention: Option<Duration>,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "store a recording";
    let at_ns = to_ns(at, "recording report time")?;
    let due_ns = match (update.status, retention) {
        (RecordingStatus::Completed, Some(retention)) => {
            let due = time::Duration::try_from(retention)
                .ok()
                .and_then(|retention| at.checked_add(retention))
                .ok_or(StoreError::OutOfRange {
                    what: "recording deletion time",
                })?;
            Some(to_ns(due, "recording deletion time")?)
        }
        _ => None,
    };
    let duration_s = update.duration_s.and_then(|d| i64::try_from(d).ok());
    super::calls::lock_call(conn, call_id)?;
    let known: Option<String> = conn
        .query_opt(
            "SELECT call_id FROM recordings WHERE sid = $1",
            &[&update.sid],
        )
        .and_then(|row| row.map(|row| row.try_get(0)).transpose())
        .map_err(ctx(CONTEXT))?;
    if known.as_deref().is_some_and(|known| known != call_id) {
        return Err(StoreError::NotFound(update.sid.clone()));
    }
    conn.execute(
        "INSERT INTO recordings AS r (sid, call_id, status, url, duration_s, channels, source, error_code, \
         reported_at_ns, delete_due_at_ns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (sid) DO UPDATE SET \
           status = CASE WHEN r.status = 'completed' THEN r.status ELSE excluded.status END, \
           url = COALESCE(excluded.url, r.url), \
           duration_s = COALESCE(excluded.duration_s, r.duration_s), \
           channels = COALESCE(excluded.channels, r.channels), \
           source = COALESCE(excluded.source, r.source), \
           error_code = COALESCE(excluded.error_code, r.error_code), \
           reported_at_ns = excluded.reported_at_ns, \
           delete_due_at_ns = COALESCE(r.delete_due_at_ns, excluded.delete_due_at_ns) \
         WHERE r.deleted_at_ns IS NULL",
        &[
            &update.sid,
            &call_id,
            &update.status.as_str(),
            &update.url,
            &duration_s,
            &update.channels.map(i64::from),
            &update.source,
            &update.error_code.map(i64::from),
            &at_ns,
            &due_ns,
        ],
    )
    .map_err(ctx(CONTEXT))?;
    Ok(known.is_none())
}

/// [`crate::calls::store::CallStore::recordings_due`], claiming what it returns (see the module docs): up to
/// `limit` recordings not deleted yet whose deletion was due at `now` or before and that no one claimed, earliest
/// first.
///
/// # Errors
/// [`StoreError::Postgres`] when the read or the claim fails; [`StoreError::OutOfRange`] for a `now` outside
/// 1677–2262.
pub fn recordings_due(
    conn: &mut impl GenericClient,
    now: OffsetDateTime,
    limit: usize,
) -> Result<Vec<DueRecording>, StoreError> {
    const CONTEXT: &str = "claim the recordings due for deletion";
    let now_ns = to_ns(now, "now")?;
    let until_ns = to_ns(now + RECORDING_CLAIM, "claim time")?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let due = conn
        .query(
            "SELECT sid, call_id, delete_attempts FROM recordings \
             WHERE deleted_at_ns IS NULL AND delete_due_at_ns IS NOT NULL AND delete_due_at_ns <= $1 \
             AND (claimed_until_ns IS NULL OR claimed_until_ns <= $1) \
             ORDER BY delete_due_at_ns, sid LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&now_ns, &limit],
        )
        .and_then(|rows| {
            rows.iter()
                .map(|row| {
                    Ok(DueRecording {
                        sid: row.try_get("sid")?,
                        call_id: row.try_get("call_id")?,
                        failed_attempts: u32::try_from(
                            row.try_get::<_, Unsigned>("delete_attempts")?.0,
                        )
                        .unwrap_or(u32::MAX),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(ctx(CONTEXT))?;
    if !due.is_empty() {
        let sids: Vec<&str> = due.iter().map(|d| d.sid.as_str()).collect();
        conn.execute(
            "UPDATE recordings SET claimed_until_ns = $2 WHERE sid = ANY($1)",
            &[&sids, &until_ns],
        )
        .map_err(ctx(CONTEXT))?;
    }
    Ok(due)
}

/// [`crate::calls::store::CallStore::next_recording_due`] (or when its claim expires, for a claimed one).
///
/// # Errors
/// [`StoreError::Postgres`] when the read fails.
pub fn next_recording_due(
    conn: &mut impl GenericClient,
) -> Result<Option<OffsetDateTime>, StoreError> {
    conn.query_one(
        "SELECT MIN(GREATEST(delete_due_at_ns, claimed_until_ns)) AS due_ns FROM recordings \
         WHERE deleted_at_ns IS NULL AND delete_due_at_ns IS NOT NULL",
        &[],
    )
    .and_then(|row| row.try_get::<_, Option<Ns>>("due_ns"))
    .map(|due| due.map(|ns| ns.0))
    .map_err(ctx("find the next recording deletion"))
}

/// [`crate::calls::store::CallStore::mark_recording_deleted`].
///
/// # Errors
/// [`StoreError::Postgres`] when the write fails; [`StoreError::OutOfRange`] for a time outside 1677–2262.
pub fn mark_recording_deleted(
    conn: &mut impl GenericClient,
    sid: &str,
    at: OffsetDateTime,
) -> Result<bool, StoreError> {
    let at_ns = to_ns(at, "recording deletion time")?;
    let changed = conn
        .execute(
            "UPDATE recordings SET deleted_at_ns = $2, status = 'deleted', delete_error = NULL \
             WHERE sid = $1 AND deleted_at_ns IS NULL",
            &[&sid, &at_ns],
        )
        .map_err(ctx("record a recording's deletion"))?;
    Ok(changed == 1)
}

/// [`crate::calls::store::CallStore::postpone_recording_deletion`]; also releases the recording's claim.
///
/// # Errors
/// [`StoreError::Postgres`] when the write fails; [`StoreError::OutOfRange`] for a time outside 1677–2262.
pub fn postpone_recording_deletion(
    conn: &mut impl GenericClient,
    sid: &str,
    retry_at: OffsetDateTime,
    error: &str,
) -> Result<(), StoreError> {
    let retry_ns = to_ns(retry_at, "recording deletion retry time")?;
    conn.execute(
        "UPDATE recordings SET delete_due_at_ns = $2, delete_attempts = delete_attempts + 1, \
         delete_error = $3, claimed_until_ns = NULL WHERE sid = $1 AND deleted_at_ns IS NULL",
        &[&sid, &retry_ns, &error],
    )
    .map_err(ctx("postpone a recording's deletion"))?;
    Ok(())
}

/// The call's recordings in the order Twilio reported them (whether it was to be recorded is a column of `calls`,
/// read with the call).
///
/// # Errors
/// [`StoreError::Postgres`] when a read fails; [`StoreError::OutOfRange`] for an invalid stored value.
pub(in crate::calls::store) fn read_recordings(
    conn: &mut impl GenericClient,
    id: &str,
) -> Result<Vec<Recording>, StoreError> {
    const CONTEXT: &str = "read a call's recordings";
    conn.query(
        "SELECT sid, status, url, duration_s, channels, reported_at_ns, delete_due_at_ns, deleted_at_ns, \
         delete_error FROM recordings WHERE call_id = $1 ORDER BY reported_at_ns, sid",
        &[&id],
    )
    .and_then(|rows| {
        rows.iter()
            .map(|row| {
                let time = |column: &str| {
                    row.try_get::<_, Option<Ns>>(column)
                        .map(|ns| ns.map(|ns| ns.0))
                };
                Ok(Recording {
                    sid: row.try_get("sid")?,
                    status: row.try_get("status")?,
                    url: row.try_get("url")?,
                    duration_s: row.try_get::<_, Option<Unsigned>>("duration_s")?.map(|d| d.0),
                    channels: row
                        .try_get::<_, Option<i64>>("channels")?
                        .and_then(|c| u8::try_from(c).ok()),
                    reported_at: row.try_get::<_, Ns>("reported_at_ns")?.0,
                    delete_due_at: time("delete_due_at_ns")?,
                    deleted_at: time("deleted_at_ns")?,
                    delete_error: row.try_get("delete_error")?,
                })
            })
            .collect()
    })
    .map_err(ctx(CONTEXT))
}
