//! Reading rows back into the call model, and the column types: timestamps as nanoseconds, JSON columns, and the
//! call model's enums as their text.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql};
use time::OffsetDateTime;

use super::{StoreError, ctx};
use crate::calls::model::{Answering, CallError, CallStatus, CallSummary, CallView, StatusChange};
use crate::calls::{Direction, DroppedInput, Speaker, StreamHandover, TransferAttempt, Turn};
use crate::cost::CallCost;
use crate::realtime::usage::Usage;
use crate::twilio::amd::{AnsweredBy, MachinePolicy};

/// The columns of `calls` that make a [`CallView`] (without timeline and transcript), in [`view_from_row`]'s order.
pub(super) const VIEW_COLUMNS: &str = "id, direction, from_number, to_number, call_sid, status, instructions, greeting, voice, \
     language, max_duration_s, metadata, outcome, end_reason, error_code, error_message, created_at_ns, \
     answered_at_ns, ended_at_ns, duration_ms, usage, stream_sid, skipped_frames, dropped, answering_machine, \
     voicemail_message, answered_by, voicemail_left, voicemail_transcript, handovers, transfers, webhook_url, \
     outcome_schema, structured_outcome, mcp_servers, mode, cost, max_cost_usd, rollovers, engine";

/// The columns of `calls` that make a [`CallSummary`], in [`summary_from_row`]'s order.
pub(super) const SUMMARY_COLUMNS: &str = "id, direction, from_number, to_number, status, created_at_ns, outcome, end_reason, duration_ms, cost";

/// Reads a whole call: its row, its timeline and its transcript.
pub(super) fn read_view(conn: &Connection, id: &str) -> Result<Option<CallView>, StoreError> {
    const CONTEXT: &str = "read a call";
    let view = conn
        .prepare_cached(&format!("SELECT {VIEW_COLUMNS} FROM calls WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], view_from_row).optional())
        .map_err(ctx(CONTEXT))?;
    let Some(mut view) = view else {
        return Ok(None);
    };
    view.status_timeline = conn
        .prepare_cached("SELECT status, at_ns FROM status_changes WHERE call_id = ?1 ORDER BY seq")
        .and_then(|mut stmt| {
            stmt.query_map([id], |row| {
                Ok(StatusChange {
                    status: row.get(0)?,
                    at: row.get::<_, Ns>(1)?.0,
                })
            })?
            .collect()
        })
        .map_err(ctx(CONTEXT))?;
    view.transcript = conn
        .prepare_cached(
            "SELECT speaker, text, at_ns, offset_ms, interrupted, item_id FROM turns WHERE call_id = ?1 \
             ORDER BY seq",
        )
        .and_then(|mut stmt| {
            stmt.query_map([id], |row| {
                Ok(Turn {
                    speaker: row.get(0)?,
                    text: row.get(1)?,
                    at: row.get::<_, Ns>(2)?.0,
                    offset_ms: row.get::<_, Unsigned>(3)?.0,
                    interrupted: row.get(4)?,
                    item_id: row.get(5)?,
                })
            })?
            .collect()
        })
        .map_err(ctx(CONTEXT))?;
    (view.record, view.recordings) = super::recordings::read_recordings(conn, id)?;
    view.schedule = super::scheduling::read_schedule(conn, id)?;
    Ok(Some(view))
}

/// A [`CallView`] from a row of [`VIEW_COLUMNS`], with an empty timeline and transcript.
pub(super) fn view_from_row(row: &Row<'_>) -> rusqlite::Result<CallView> {
    let error_code: Option<u32> = row.get(14)?;
    let error_message: Option<String> = row.get(15)?;
    let error = match (error_code, error_message) {
        (None, None) => None,
        (code, message) => Some(CallError {
            code,
            message: message.unwrap_or_default(),
        }),
    };
    Ok(CallView {
        id: row.get(0)?,
        direction: row.get(1)?,
        from: row.get(2)?,
        to: row.get(3)?,
        call_sid: row.get(4)?,
        stream_sid: row.get(21)?,
        status: row.get(5)?,
        instructions: row.get(6)?,
        greeting: row.get(7)?,
        voice: row.get(8)?,
        language: row.get(9)?,
        max_duration_s: row.get::<_, Option<Unsigned>>(10)?.map(|n| n.0),
        metadata: row
            .get::<_, Option<Json<serde_json::Value>>>(11)?
            .map(|j| j.0),
        outcome: row.get(12)?,
        // Read by name: the columns added after version 4 sit at the end of VIEW_COLUMNS.
        outcome_schema: row
            .get::<_, Option<Json<serde_json::Value>>>("outcome_schema")?
            .map(|j| j.0),
        structured_outcome: row
            .get::<_, Option<Json<serde_json::Value>>>("structured_outcome")?
            .map(|j| j.0),
        mcp_servers: row
            .get::<_, Option<Json<Vec<String>>>>("mcp_servers")?
            .map(|j| j.0),
        end_reason: row.get(13)?,
        error,
        created_at: row.get::<_, Ns>(16)?.0,
        answered_at: row.get::<_, Option<Ns>>(17)?.map(|ns| ns.0),
        ended_at: row.get::<_, Option<Ns>>(18)?.map(|ns| ns.0),
        duration_ms: row.get::<_, Option<Unsigned>>(19)?.map(|n| n.0),
        status_timeline: Vec::new(),
        transcript: Vec::new(),
        record: false,
        recordings: Vec::new(),
        usage: row.get::<_, Json<Usage>>(20)?.0,
        skipped_frames: row.get::<_, Unsigned>(22)?.0,
        dropped: row
            .get::<_, Option<Json<DroppedInput>>>(23)?
            .map(|j| j.0)
            .unwrap_or_default(),
        answering: Answering {
            answering_machine: row
                .get::<_, Option<Parsed<MachinePolicy>>>(24)?
                .map(|p| p.0),
            voicemail_message: row.get(25)?,
            answered_by: row.get::<_, Option<Parsed<AnsweredBy>>>(26)?.map(|p| p.0),
            voicemail_left: row.get(27)?,
            voicemail_transcript: row.get(28)?,
        },
        handovers: row
            .get::<_, Option<Json<Vec<StreamHandover>>>>(29)?
            .map(|j| j.0)
            .unwrap_or_default(),
        transfers: row
            .get::<_, Option<Json<Vec<TransferAttempt>>>>(30)?
            .map(|j| j.0)
            .unwrap_or_default(),
        webhook_url: row.get("webhook_url")?,
        schedule: Default::default(),
        // Read by name: a column added by a later migration.
        mode: row
            .get::<_, Option<String>>("mode")?
            .as_deref()
            .and_then(crate::calls::say::CallMode::parse)
            .unwrap_or_default(),
        cost: row.get::<_, Option<Json<CallCost>>>("cost")?.map(|j| j.0),
        max_cost_usd: row.get("max_cost_usd")?,
        rollovers: row
            .get::<_, Option<Json<Vec<crate::calls::SessionRollover>>>>("rollovers")?
            .map(|j| j.0)
            .unwrap_or_default(),
        engine: row
            .get::<_, Option<String>>("engine")?
            .and_then(|text| text.parse().ok()),
    })
}

/// A [`CallSummary`] from a row of [`SUMMARY_COLUMNS`].
pub(super) fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<CallSummary> {
    Ok(CallSummary {
        id: row.get(0)?,
        direction: row.get(1)?,
        from: row.get(2)?,
        to: row.get(3)?,
        status: row.get(4)?,
        created_at: row.get::<_, Ns>(5)?.0,
        outcome: row.get(6)?,
        end_reason: row.get(7)?,
        duration_ms: row.get::<_, Option<Unsigned>>(8)?.map(|n| n.0),
        cost_usd: row
            .get::<_, Option<Json<CallCost>>>(9)?
            .map(|j| j.0.total_usd),
    })
}

/// `at` as integer nanoseconds since the Unix epoch.
pub(super) fn to_ns(at: OffsetDateTime, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(at.unix_timestamp_nanos()).map_err(|_| StoreError::OutOfRange { what })
}

/// The JSON text of a token usage (serializing plain integers cannot fail).
pub(super) fn usage_json(usage: &Usage) -> String {
    serde_json::to_string(usage).expect("Usage holds only integers")
}

/// A text column holding a value's `FromStr` spelling ([`MachinePolicy`], [`AnsweredBy`]).
pub(super) struct Parsed<T>(pub(super) T);

impl<T: std::str::FromStr> FromSql for Parsed<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map(Parsed)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// The JSON text of a list of a call's handovers or transfers; `None` (NULL) for an empty list.
pub(super) fn list_json<T: serde::Serialize>(items: &[T]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    serde_json::to_string(items).ok()
}

/// The JSON text of a call's dropped-input counters (serializing plain integers cannot fail).
pub(super) fn dropped_json(dropped: &DroppedInput) -> String {
    serde_json::to_string(dropped).expect("DroppedInput holds only integers")
}

/// A timestamp column: nanoseconds since the Unix epoch, read back as UTC.
pub(super) struct Ns(pub(super) OffsetDateTime);

impl FromSql for Ns {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let ns = i64::column_result(value)?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
            .map(Ns)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A non-negative integer column read as `u64` (stored as SQLite's signed 64-bit integer).
pub(super) struct Unsigned(pub(super) u64);

impl FromSql for Unsigned {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let n = i64::column_result(value)?;
        u64::try_from(n)
            .map(Unsigned)
            .map_err(|_| FromSqlError::OutOfRange(n))
    }
}

/// A JSON text column.
pub(super) struct Json<T>(pub(super) T);

impl<T: serde::de::DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        serde_json::from_str(text)
            .map(Json)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// Reads a text column naming an enum value, via `parse`.
fn text_column<T>(value: ValueRef<'_>, parse: impl FnOnce(&str) -> Option<T>) -> FromSqlResult<T> {
    let text = value.as_str()?;
    parse(text).ok_or_else(|| FromSqlError::Other(format!("unexpected value {text:?}").into()))
}

impl ToSql for CallStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for CallStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_column(value, |s| s.parse().ok())
    }
}

impl ToSql for Direction {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(match self {
            Direction::Inbound => "inbound",
            Direction::OutboundApi => "outbound-api",
        }))
    }
}

impl FromSql for Direction {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_column(value, |s| match s {
            "inbound" => Some(Direction::Inbound),
            "outbound-api" => Some(Direction::OutboundApi),
            _ => None,
        })
    }
}

impl ToSql for Speaker {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(match self {
            Speaker::Caller => "caller",
            Speaker::Assistant => "assistant",
            Speaker::Action => "action",
        }))
    }
}

impl FromSql for Speaker {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_column(value, |s| match s {
            "caller" => Some(Speaker::Caller),
            "assistant" => Some(Speaker::Assistant),
            "action" => Some(Speaker::Action),
            _ => None,
        })
    }
}
