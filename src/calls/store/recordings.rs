//! What the store keeps of call recording: whether a call was to be recorded (`calls.record`), and one row per
//! recording Twilio reported (`recordings`), which is also the durable deletion job of its retention: the row's due
//! time, attempts, last error and the time it was deleted. The retention worker
//! ([`crate::calls::retention`]) reads the due rows and writes their outcome through the store writer.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::rows::{Ns, Unsigned, to_ns};
use super::{CallStore, StoreError, ctx};
use crate::calls::recording::Recording;
use crate::twilio::recording::{RecordingStatus, RecordingUpdate};

/// A recording whose deletion at Twilio is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRecording {
    /// Twilio's RecordingSid.
    pub sid: String,
    /// The call it belongs to.
    pub call_id: String,
    /// How many attempts to delete it failed so far.
    pub failed_attempts: u32,
}

impl CallStore {
    /// Stores what a recording status callback says about recording `update.sid` of the call `call_id`. The first
    /// `completed` report sets the deletion's due time, `at` + `retention` (none without a retention); a retried
    /// callback keeps it. A recording already deleted is not changed, and a `completed` one does not go back to an
    /// earlier status. Returns whether the recording was new.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown call, [`StoreError::Sqlite`] when the write fails (also when the
    /// RecordingSid is stored under another call), [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn apply_recording_update(
        &self,
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
        self.write(CONTEXT, |tx| {
            super::ensure_exists(tx, call_id)?;
            let known: Option<String> = tx
                .query_row(
                    "SELECT call_id FROM recordings WHERE sid = ?1",
                    [&update.sid],
                    |row| row.get(0),
                )
                .optional()
                .map_err(ctx(CONTEXT))?;
            if known.as_deref().is_some_and(|known| known != call_id) {
                return Err(StoreError::NotFound(update.sid.clone()));
            }
            tx.execute(
                "INSERT INTO recordings (sid, call_id, status, url, duration_s, channels, source, error_code, \
                 reported_at_ns, delete_due_at_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (sid) DO UPDATE SET \
                   status = CASE WHEN status = 'completed' THEN status ELSE excluded.status END, \
                   url = COALESCE(excluded.url, url), \
                   duration_s = COALESCE(excluded.duration_s, duration_s), \
                   channels = COALESCE(excluded.channels, channels), \
                   source = COALESCE(excluded.source, source), \
                   error_code = COALESCE(excluded.error_code, error_code), \
                   reported_at_ns = excluded.reported_at_ns, \
                   delete_due_at_ns = COALESCE(delete_due_at_ns, excluded.delete_due_at_ns) \
                 WHERE deleted_at_ns IS NULL",
                params![
                    update.sid,
                    call_id,
                    update.status.as_str(),
                    update.url,
                    duration_s,
                    update.channels,
                    update.source,
                    update.error_code,
                    at_ns,
                    due_ns,
                ],
            )
            .map_err(ctx(CONTEXT))?;
            Ok(known.is_none())
        })
    }

    /// Up to `limit` recordings not deleted yet whose deletion was due at `now` or before, earliest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the read fails; [`StoreError::OutOfRange`] for a `now` outside 1677–2262.
    pub fn recordings_due(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<DueRecording>, StoreError> {
        const CONTEXT: &str = "list the recordings due for deletion";
        let now_ns = to_ns(now, "now")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.read()?;
        conn.prepare_cached(
            "SELECT sid, call_id, delete_attempts FROM recordings \
             WHERE deleted_at_ns IS NULL AND delete_due_at_ns IS NOT NULL AND delete_due_at_ns <= ?1 \
             ORDER BY delete_due_at_ns LIMIT ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![now_ns, limit], |row| {
                Ok(DueRecording {
                    sid: row.get(0)?,
                    call_id: row.get(1)?,
                    failed_attempts: row.get(2)?,
                })
            })?
            .collect()
        })
        .map_err(ctx(CONTEXT))
    }

    /// When the next deletion of a recording is due (it may be past); `None` when none is waiting.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the read fails.
    pub fn next_recording_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let conn = self.read()?;
        conn.query_row(
            "SELECT MIN(delete_due_at_ns) FROM recordings \
             WHERE deleted_at_ns IS NULL AND delete_due_at_ns IS NOT NULL",
            [],
            |row| row.get::<_, Option<Ns>>(0),
        )
        .map(|due| due.map(|ns| ns.0))
        .map_err(ctx("find the next recording deletion"))
    }

    /// Records that recording `sid` was deleted at Twilio at `at` (status `deleted`); returns whether it was not
    /// recorded as deleted before.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the write fails; [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn mark_recording_deleted(
        &self,
        sid: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const CONTEXT: &str = "record a recording's deletion";
        let at_ns = to_ns(at, "recording deletion time")?;
        self.write(CONTEXT, |tx| {
            let changed = tx
                .execute(
                    "UPDATE recordings SET deleted_at_ns = ?2, status = 'deleted', delete_error = NULL \
                     WHERE sid = ?1 AND deleted_at_ns IS NULL",
                    params![sid, at_ns],
                )
                .map_err(ctx(CONTEXT))?;
            Ok(changed == 1)
        })
    }

    /// Records a failed attempt to delete recording `sid`, and when to try again.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the write fails; [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn postpone_recording_deletion(
        &self,
        sid: &str,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), StoreError> {
        const CONTEXT: &str = "postpone a recording's deletion";
        let retry_ns = to_ns(retry_at, "recording deletion retry time")?;
        self.write(CONTEXT, |tx| {
            tx.execute(
                "UPDATE recordings SET delete_due_at_ns = ?2, delete_attempts = delete_attempts + 1, \
                 delete_error = ?3 WHERE sid = ?1 AND deleted_at_ns IS NULL",
                params![sid, retry_ns, error],
            )
            .map_err(ctx(CONTEXT))?;
            Ok(())
        })
    }
}

/// Stores whether the new call `id` is to be recorded (part of storing the call).
pub(super) fn store_record_flag(
    conn: &Connection,
    id: &str,
    record: bool,
) -> Result<(), StoreError> {
    if record {
        conn.execute("UPDATE calls SET record = 1 WHERE id = ?1", [id])
            .map_err(ctx("store a new call"))?;
    }
    Ok(())
}

/// Whether the call `id` was to be recorded, and its recordings in the order Twilio reported them.
pub(super) fn read_recordings(
    conn: &Connection,
    id: &str,
) -> Result<(bool, Vec<Recording>), StoreError> {
    const CONTEXT: &str = "read a call's recordings";
    let record: bool = conn
        .query_row("SELECT record FROM calls WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .optional()
        .map_err(ctx(CONTEXT))?
        .unwrap_or(false);
    let recordings = conn
        .prepare_cached(
            "SELECT sid, status, url, duration_s, channels, reported_at_ns, delete_due_at_ns, deleted_at_ns, \
             delete_error FROM recordings WHERE call_id = ?1 ORDER BY reported_at_ns, sid",
        )
        .and_then(|mut stmt| {
            stmt.query_map([id], |row| {
                Ok(Recording {
                    sid: row.get(0)?,
                    status: row.get(1)?,
                    url: row.get(2)?,
                    duration_s: row.get::<_, Option<Unsigned>>(3)?.map(|d| d.0),
                    channels: row.get(4)?,
                    reported_at: row.get::<_, Ns>(5)?.0,
                    delete_due_at: row.get::<_, Option<Ns>>(6)?.map(|ns| ns.0),
                    deleted_at: row.get::<_, Option<Ns>>(7)?.map(|ns| ns.0),
                    delete_error: row.get(8)?,
                })
            })?
            .collect()
        })
        .map_err(ctx(CONTEXT))?;
    Ok((record, recordings))
}

#[cfg(test)]
#[path = "recordings_tests.rs"]
mod tests;
