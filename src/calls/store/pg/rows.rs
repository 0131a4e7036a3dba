//! Reading PostgreSQL rows back into the call model, by column name, with the column types of the SQLite store
//! (`store/rows.rs`): its wrappers [`Ns`], [`Unsigned`], [`Json`] and [`Parsed`] read PostgreSQL values here too,
//! and the call model's enums are written and read as their text.

use std::error::Error;

use bytes::BytesMut;
use postgres::GenericClient;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use time::OffsetDateTime;

use super::{ctx, recordings, scheduling};
use crate::calls::model::{Answering, CallError, CallStatus, CallSummary, CallView, StatusChange};
use crate::calls::store::StoreError;
use crate::calls::store::rows::{Json, Ns, Parsed, Unsigned, VIEW_COLUMNS};
use crate::calls::{Direction, DroppedInput, Speaker, StreamHandover, TransferAttempt, Turn};
use crate::cost::CallCost;
use crate::realtime::usage::Usage;
use crate::twilio::amd::{AnsweredBy, MachinePolicy};

/// A driver-side conversion error.
type BoxError = Box<dyn Error + Sync + Send>;

/// Reads a whole call: its row, its timeline and its transcript (and, through their files, its recordings and
/// schedule).
///
/// # Errors
///
/// [`StoreError::Postgres`] when a query fails or a stored value is invalid.
pub(in crate::calls::store) fn read_view(
    c: &mut impl GenericClient,
    id: &str,
) -> Result<Option<CallView>, StoreError> {
    const CONTEXT: &str = "read a call";
    let Some(row) = c
        .query_opt(
            &format!("SELECT {VIEW_COLUMNS}, record FROM calls WHERE id = $1"),
            &[&id],
        )
        .map_err(ctx(CONTEXT))?
    else {
        return Ok(None);
    };
    let mut view = view_from_row(&row).map_err(ctx(CONTEXT))?;
    view.record = row.try_get("record").map_err(ctx(CONTEXT))?;
    view.status_timeline = c
        .query(
            "SELECT status, at_ns FROM status_changes WHERE call_id = $1 ORDER BY seq",
            &[&id],
        )
        .map_err(ctx(CONTEXT))?
        .iter()
        .map(|row| {
            Ok(StatusChange {
                status: row.try_get("status")?,
                at: row.try_get::<_, Ns>("at_ns")?.0,
            })
        })
        .collect::<Result<_, postgres::Error>>()
        .map_err(ctx(CONTEXT))?;
    view.transcript = c
        .query(
            "SELECT speaker, text, at_ns, offset_ms, interrupted, item_id FROM turns WHERE call_id = $1 \
             ORDER BY seq",
            &[&id],
        )
        .map_err(ctx(CONTEXT))?
        .iter()
        .map(|row| {
            Ok(Turn {
                speaker: row.try_get("speaker")?,
                text: row.try_get("text")?,
                at: row.try_get::<_, Ns>("at_ns")?.0,
                offset_ms: row.try_get::<_, Unsigned>("offset_ms")?.0,
                interrupted: row.try_get("interrupted")?,
                item_id: row.try_get("item_id")?,
            })
        })
        .collect::<Result<_, postgres::Error>>()
        .map_err(ctx(CONTEXT))?;
    view.recordings = recordings::read_recordings(c, id)?;
    view.schedule = scheduling::read_schedule(c, id)?;
    Ok(Some(view))
}

/// A [`CallView`] from a row of [`VIEW_COLUMNS`], with an empty timeline, transcript, recordings and schedule.
///
/// # Errors
///
/// The driver's error when a column is missing or holds an invalid value.
pub(in crate::calls::store) fn view_from_row(
    row: &postgres::Row,
) -> Result<CallView, postgres::Error> {
    let error_code: Option<i64> = row.try_get("error_code")?;
    let error_message: Option<String> = row.try_get("error_message")?;
    let error = match (error_code, error_message) {
        (None, None) => None,
        (code, message) => Some(CallError {
            code: code.and_then(|c| u32::try_from(c).ok()),
            message: message.unwrap_or_default(),
        }),
    };
    Ok(CallView {
        id: row.try_get("id")?,
        direction: row.try_get("direction")?,
        from: row.try_get("from_number")?,
        to: row.try_get("to_number")?,
        call_sid: row.try_get("call_sid")?,
        stream_sid: row.try_get("stream_sid")?,
        status: row.try_get("status")?,
        instructions: row.try_get("instructions")?,
        greeting: row.try_get("greeting")?,
        voice: row.try_get("voice")?,
        language: row.try_get("language")?,
        max_duration_s: row
            .try_get::<_, Option<Unsigned>>("max_duration_s")?
            .map(|n| n.0),
        metadata: row
            .try_get::<_, Option<Json<serde_json::Value>>>("metadata")?
            .map(|j| j.0),
        outcome: row.try_get("outcome")?,
        outcome_schema: row
            .try_get::<_, Option<Json<serde_json::Value>>>("outcome_schema")?
            .map(|j| j.0),
        structured_outcome: row
            .try_get::<_, Option<Json<serde_json::Value>>>("structured_outcome")?
            .map(|j| j.0),
        mcp_servers: row
            .try_get::<_, Option<Json<Vec<String>>>>("mcp_servers")?
            .map(|j| j.0),
        end_reason: row.try_get("end_reason")?,
        error,
        created_at: row.try_get::<_, Ns>("created_at_ns")?.0,
        answered_at: row
            .try_get::<_, Option<Ns>>("answered_at_ns")?
            .map(|ns| ns.0),
        ended_at: row.try_get::<_, Option<Ns>>("ended_at_ns")?.map(|ns| ns.0),
        duration_ms: row
            .try_get::<_, Option<Unsigned>>("duration_ms")?
            .map(|n| n.0),
        status_timeline: Vec::new(),
        transcript: Vec::new(),
        record: false,
        recordings: Vec::new(),
        usage: row.try_get::<_, Json<Usage>>("usage")?.0,
        skipped_frames: row.try_get::<_, Unsigned>("skipped_frames")?.0,
        dropped: row
            .try_get::<_, Option<Json<DroppedInput>>>("dropped")?
            .map(|j| j.0)
            .unwrap_or_default(),
        answering: Answering {
            answering_machine: row
                .try_get::<_, Option<Parsed<MachinePolicy>>>("answering_machine")?
                .map(|p| p.0),
            voicemail_message: row.try_get("voicemail_message")?,
            answered_by: row
                .try_get::<_, Option<Parsed<AnsweredBy>>>("answered_by")?
                .map(|p| p.0),
            voicemail_left: row.try_get("voicemail_left")?,
            voicemail_transcript: row.try_get("voicemail_transcript")?,
        },
        handovers: row
            .try_get::<_, Option<Json<Vec<StreamHandover>>>>("handovers")?
            .map(|j| j.0)
            .unwrap_or_default(),
        transfers: row
            .try_get::<_, Option<Json<Vec<TransferAttempt>>>>("transfers")?
            .map(|j| j.0)
            .unwrap_or_default(),
        webhook_url: row.try_get("webhook_url")?,
        schedule: Default::default(),
        mode: row
            .try_get::<_, Option<String>>("mode")?
            .as_deref()
            .and_then(crate::calls::say::CallMode::parse)
            .unwrap_or_default(),
        cost: row
            .try_get::<_, Option<Json<CallCost>>>("cost")?
            .map(|j| j.0),
        max_cost_usd: row.try_get("max_cost_usd")?,
        rollovers: row
            .try_get::<_, Option<Json<Vec<crate::calls::SessionRollover>>>>("rollovers")?
            .map(|j| j.0)
            .unwrap_or_default(),
        engine: row
            .try_get::<_, Option<String>>("engine")?
            .and_then(|text| text.parse().ok()),
    })
}

/// A [`CallSummary`] from a row of `SUMMARY_COLUMNS`.
///
/// # Errors
///
/// The driver's error when a column is missing or holds an invalid value.
pub(in crate::calls::store) fn summary_from_row(
    row: &postgres::Row,
) -> Result<CallSummary, postgres::Error> {
    Ok(CallSummary {
        id: row.try_get("id")?,
        direction: row.try_get("direction")?,
        from: row.try_get("from_number")?,
        to: row.try_get("to_number")?,
        status: row.try_get("status")?,
        created_at: row.try_get::<_, Ns>("created_at_ns")?.0,
        outcome: row.try_get("outcome")?,
        end_reason: row.try_get("end_reason")?,
        duration_ms: row
            .try_get::<_, Option<Unsigned>>("duration_ms")?
            .map(|n| n.0),
        cost_usd: row
            .try_get::<_, Option<Json<CallCost>>>("cost")?
            .map(|j| j.0.total_usd),
    })
}

/// The text of a direction, as Twilio spells it and the `direction` column stores it.
pub(in crate::calls::store) fn direction_str(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::OutboundApi => "outbound-api",
    }
}

/// The text of a speaker, as the `speaker` column stores it.
fn speaker_str(speaker: Speaker) -> &'static str {
    match speaker {
        Speaker::Caller => "caller",
        Speaker::Assistant => "assistant",
        Speaker::Action => "action",
    }
}

/// Reads a text column naming an enum value, via `parse`.
fn text_value<T>(
    ty: &Type,
    raw: &[u8],
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, BoxError> {
    let text = <&str as FromSql>::from_sql(ty, raw)?;
    parse(text).ok_or_else(|| format!("unexpected value {text:?}").into())
}

/// Implements [`ToSql`] and [`FromSql`] for an enum stored as text: `$to` spells a value, `$from` parses one.
macro_rules! text_enum {
    ($ty:ty, $to:expr, $from:expr) => {
        impl ToSql for $ty {
            fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
                let text: &str = $to(*self);
                text.to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $ty {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
                text_value(ty, raw, $from)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    };
}

text_enum!(CallStatus, CallStatus::as_str, |s: &str| s.parse().ok());
text_enum!(Direction, direction_str, |s: &str| match s {
    "inbound" => Some(Direction::Inbound),
    "outbound-api" => Some(Direction::OutboundApi),
    _ => None,
});
text_enum!(Speaker, speaker_str, |s: &str| match s {
    "caller" => Some(Speaker::Caller),
    "assistant" => Some(Speaker::Assistant),
    "action" => Some(Speaker::Action),
    _ => None,
});

impl<'a> FromSql<'a> for Ns {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let ns = i64::from_sql(ty, raw)?;
        Ok(Ns(OffsetDateTime::from_unix_timestamp_nanos(i128::from(
            ns,
        ))?))
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as FromSql>::accepts(ty)
    }
}

impl<'a> FromSql<'a> for Unsigned {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let n = i64::from_sql(ty, raw)?;
        Ok(Unsigned(u64::try_from(n)?))
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as FromSql>::accepts(ty)
    }
}

impl<'a, T: serde::de::DeserializeOwned> FromSql<'a> for Json<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        Ok(Json(serde_json::from_str(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

impl<'a, T: std::str::FromStr> FromSql<'a> for Parsed<T>
where
    T::Err: Error + Send + Sync + 'static,
{
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        Ok(Parsed(text.parse()?))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}
