//! The durable webhook outbox: one row of `webhook_deliveries` per event to send, written in the same transaction
//! as the change of the record it reports (so an event is never lost and never sent for a change that was not
//! stored), and read by the delivery task ([`crate::calls::webhook_delivery`]).
//!
//! Events are queued for calls that have a `webhook_url`:
//! - `call.status_changed` by every accepted status change ([`super::advance_status`]);
//! - `call.answered_by` by the first answering machine verdict ([`CallStore::set_answered_by`]);
//! - `call.completed` once the call is done: its status is terminal and, if it was answered, its record is
//!   written (the end reason set). Whichever of the two comes last queues it, once per call; a call answered whose
//!   record never comes (no media stream, and no stream token to expire) gets it from
//!   [`CallStore::queue_overdue_completions`]. Its `data` is the record exactly as `get_call` returns it.
//!
//! A delivery is `pending` (with the time of its next attempt), `delivered` (a 2xx answer) or `failed` (no attempt
//! left, or the receiver answered 410 Gone). Pending rows survive a restart: the delivery task reads them from the
//! table.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::rows::{Ns, Unsigned, read_view, to_ns};
use super::{CallStore, StoreError, ctx};
use crate::calls::model::CallStatus;
use crate::twilio::amd::AnsweredBy;
use crate::webhooks::schedule::RetrySchedule;
use crate::webhooks::{WebhookEvent, envelope, new_message_id};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Given up: no attempt left, or the receiver answered 410 Gone.
    Failed,
}

impl DeliveryStatus {
    /// `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a delivery status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery status {0:?}; expected pending, delivered or failed")]
pub struct UnknownDeliveryStatus(pub String);

impl FromStr for DeliveryStatus {
    type Err = UnknownDeliveryStatus;

    /// Parses `pending`, `delivered` or `failed`.
    ///
    /// # Errors
    /// [`UnknownDeliveryStatus`] for anything else.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| UnknownDeliveryStatus(s.to_owned()))
    }
}

impl ToSql for DeliveryStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for DeliveryStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// One delivery as `GET /api/webhooks` and `callbridge webhooks list` show it (without its body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The `webhook-id`: `msg_` and 26 characters; the same on every attempt.
    pub id: String,
    /// The call the event is about.
    pub call_id: String,
    /// `call.status_changed`, `call.answered_by` or `call.completed`.
    pub event: String,
    /// Where it goes.
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the event was queued, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the next attempt is due (pending deliveries only), RFC 3339.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When the last attempt was made, RFC 3339.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// The HTTP status of the last answer, when there was one.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed (a status, a timeout, a connection error), when it did.
    pub last_error: Option<String>,
    /// When a 2xx answer came, RFC 3339.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

/// A delivery due now, as the delivery task needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// The `webhook-id`.
    pub id: String,
    /// The call it is about (the task sends one call's events one at a time, oldest first).
    pub call_id: String,
    /// Where it goes.
    pub url: String,
    /// The exact body to send and sign.
    pub body: String,
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered this 2xx status.
    Delivered {
        /// The status.
        status_code: u16,
    },
    /// Anything else: another status, a timeout, no connection.
    Failed {
        /// The status, when an answer came.
        status_code: Option<u16>,
        /// What went wrong, for the list and the logs.
        error: String,
    },
}

/// The columns of a [`WebhookDelivery`], in [`delivery_from_row`]'s order.
const DELIVERY_COLUMNS: &str = "id, call_id, event, url, status, attempts, created_at_ns, next_attempt_at_ns, \
     last_attempt_at_ns, last_status_code, last_error, delivered_at_ns";

/// A [`WebhookDelivery`] from a row of [`DELIVERY_COLUMNS`].
fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<WebhookDelivery> {
    let status: DeliveryStatus = row.get(4)?;
    Ok(WebhookDelivery {
        id: row.get(0)?,
        call_id: row.get(1)?,
        event: row.get(2)?,
        url: row.get(3)?,
        status,
        attempts: u32::try_from(row.get::<_, Unsigned>(5)?.0).unwrap_or(u32::MAX),
        created_at: row.get::<_, Ns>(6)?.0,
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| row.get::<_, Ns>(7).map(|ns| ns.0))
            .transpose()?,
        last_attempt_at: row.get::<_, Option<Ns>>(8)?.map(|ns| ns.0),
        last_status_code: row.get(9)?,
        last_error: row.get(10)?,
        delivered_at: row.get::<_, Option<Ns>>(11)?.map(|ns| ns.0),
    })
}

/// The call's webhook URL and CallSid, when it has a URL.
fn webhook_target(
    conn: &Connection,
    call_id: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    conn.query_row(
        "SELECT webhook_url, call_sid FROM calls WHERE id = ?1",
        [call_id],
        |row| Ok((row.get::<_, Option<String>>(0)?, row.get(1)?)),
    )
    .optional()
    .map_err(ctx("read a call's webhook URL"))
    .map(|found| found.and_then(|(url, sid)| url.map(|url| (url, sid))))
}

/// Queues `body` for `url`, due at `at_ns`.
fn insert(
    conn: &Connection,
    call_id: &str,
    event: WebhookEvent,
    url: &str,
    body: &str,
    at_ns: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO webhook_deliveries (id, call_id, event, url, body, status, attempts, created_at_ns, \
         next_attempt_at_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)",
        params![
            new_message_id(),
            call_id,
            event.as_str(),
            url,
            body,
            DeliveryStatus::Pending,
            at_ns
        ],
    )
    .map_err(ctx("queue a webhook"))?;
    Ok(())
}

/// From integer nanoseconds back to a time (for event timestamps).
fn from_ns(at_ns: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ns))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Inside the transaction that moved the call from `previous` to `status` at `at_ns`: queues
/// `call.status_changed`, and `call.completed` if the call is now done.
pub(super) fn on_status_changed(
    conn: &Connection,
    call_id: &str,
    previous: CallStatus,
    status: CallStatus,
    at_ns: i64,
) -> Result<(), StoreError> {
    let Some((url, call_sid)) = webhook_target(conn, call_id)? else {
        return Ok(());
    };
    let at = from_ns(at_ns);
    let data = serde_json::json!({
        "call_id": call_id,
        "call_sid": call_sid,
        "status": status,
        "previous_status": previous,
        "at": at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    let body = envelope(WebhookEvent::StatusChanged, at, data);
    insert(
        conn,
        call_id,
        WebhookEvent::StatusChanged,
        &url,
        &body,
        at_ns,
    )?;
    if status.is_terminal() {
        queue_completed(conn, call_id, at_ns, false)?;
    }
    Ok(())
}

/// Inside the transaction that stored the call's first answering machine verdict: queues `call.answered_by`.
pub(super) fn on_answered_by(
    conn: &Connection,
    call_id: &str,
    answered_by: AnsweredBy,
    at_ns: i64,
) -> Result<(), StoreError> {
    let Some((url, call_sid)) = webhook_target(conn, call_id)? else {
        return Ok(());
    };
    let data = serde_json::json!({
        "call_id": call_id,
        "call_sid": call_sid,
        "answered_by": answered_by,
    });
    let body = envelope(WebhookEvent::AnsweredBy, from_ns(at_ns), data);
    insert(conn, call_id, WebhookEvent::AnsweredBy, &url, &body, at_ns)
}

/// Queues `call.completed` with the whole record, once per call, if the call has a webhook URL and is done (its
/// status terminal and, if it was answered, its end reason stored) or `force` says to send it anyway.
pub(super) fn queue_completed(
    conn: &Connection,
    call_id: &str,
    at_ns: i64,
    force: bool,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "queue call.completed";
    let Some((url, _)) = webhook_target(conn, call_id)? else {
        return Ok(());
    };
    let Some(view) = read_view(conn, call_id)? else {
        return Ok(());
    };
    let done = view.status.is_terminal()
        && (force || view.end_reason.is_some() || view.answered_at.is_none());
    if !done {
        return Ok(());
    }
    let queued: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE call_id = ?1 AND event = ?2)",
            params![call_id, WebhookEvent::Completed.as_str()],
            |row| row.get(0),
        )
        .map_err(ctx(CONTEXT))?;
    if queued {
        return Ok(());
    }
    let data = serde_json::to_value(&view).expect("a call record is plain data with string keys");
    let at = view.ended_at.unwrap_or_else(|| from_ns(at_ns));
    let body = envelope(WebhookEvent::Completed, at, data);
    insert(conn, call_id, WebhookEvent::Completed, &url, &body, at_ns)
}

impl CallStore {
    /// Up to `limit` pending deliveries due at `now`, the longest due first (oldest queued first among equals).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the read fails; [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn due_webhooks(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        const CONTEXT: &str = "read the webhooks due";
        let now_ns = to_ns(now, "now")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.read()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, call_id, url, body FROM webhook_deliveries WHERE status = ?1 \
                 AND next_attempt_at_ns <= ?2 ORDER BY next_attempt_at_ns, rowid LIMIT ?3",
            )
            .map_err(ctx(CONTEXT))?;
        let rows = stmt
            .query_map(params![DeliveryStatus::Pending, now_ns, limit], |row| {
                Ok(DueDelivery {
                    id: row.get(0)?,
                    call_id: row.get(1)?,
                    url: row.get(2)?,
                    body: row.get(3)?,
                })
            })
            .map_err(ctx(CONTEXT))?;
        rows.collect::<Result<_, _>>().map_err(ctx(CONTEXT))
    }

    /// When the next pending delivery is due; `None` when none is pending.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the read fails.
    pub fn next_webhook_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let conn = self.read()?;
        conn.query_row(
            "SELECT MIN(next_attempt_at_ns) FROM webhook_deliveries WHERE status = ?1",
            [DeliveryStatus::Pending],
            |row| row.get::<_, Option<Ns>>(0),
        )
        .map(|ns| ns.map(|ns| ns.0))
        .map_err(ctx("read when the next webhook is due"))
    }

    /// Records an attempt on the pending delivery `id` made at `at`: `delivered` on a 2xx; otherwise pending again
    /// after the schedule's next delay, or `failed` when no attempt is left or the receiver answered 410 Gone.
    /// Returns the delivery's new status; `None` when `id` is not pending (a retry moved it meanwhile).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the write fails; [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn record_webhook_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        at: OffsetDateTime,
        schedule: RetrySchedule,
    ) -> Result<Option<DeliveryStatus>, StoreError> {
        const CONTEXT: &str = "record a webhook attempt";
        let at_ns = to_ns(at, "attempt time")?;
        self.write(CONTEXT, |tx| {
            let attempts: Option<i64> = tx
                .query_row(
                    "SELECT attempts FROM webhook_deliveries WHERE id = ?1 AND status = ?2",
                    params![id, DeliveryStatus::Pending],
                    |row| row.get(0),
                )
                .optional()
                .map_err(ctx(CONTEXT))?;
            let Some(attempts) = attempts else {
                return Ok(None);
            };
            let attempts = u32::try_from(attempts.saturating_add(1)).unwrap_or(u32::MAX);
            let (status, status_code, error, next_ns, delivered_ns) = match outcome {
                AttemptOutcome::Delivered { status_code } => (
                    DeliveryStatus::Delivered,
                    Some(*status_code),
                    None,
                    at_ns,
                    Some(at_ns),
                ),
                AttemptOutcome::Failed { status_code, error } => {
                    let gone = *status_code == Some(410);
                    match schedule.delay_after(attempts).filter(|_| !gone) {
                        Some(delay) => (
                            DeliveryStatus::Pending,
                            *status_code,
                            Some(error.as_str()),
                            to_ns(at + delay, "next attempt time")?,
                            None,
                        ),
                        None => (
                            DeliveryStatus::Failed,
                            *status_code,
                            Some(error.as_str()),
                            at_ns,
                            None,
                        ),
                    }
                }
            };
            tx.execute(
                "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, last_attempt_at_ns = ?4, \
                 last_status_code = ?5, last_error = ?6, next_attempt_at_ns = ?7, \
                 delivered_at_ns = COALESCE(?8, delivered_at_ns) WHERE id = ?1",
                params![
                    id,
                    status,
                    attempts,
                    at_ns,
                    status_code,
                    error,
                    next_ns,
                    delivered_ns
                ],
            )
            .map_err(ctx(CONTEXT))?;
            Ok(Some(status))
        })
    }

    /// Sends the delivery `id` again: pending, due at `at`, whatever it was (a `failed` one gets one more attempt;
    /// if that fails too it is `failed` again). Returns the delivery as it is now.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id; [`StoreError::Sqlite`] when the write fails.
    pub fn retry_webhook(
        &self,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<WebhookDelivery, StoreError> {
        const CONTEXT: &str = "retry a webhook";
        let at_ns = to_ns(at, "retry time")?;
        self.write(CONTEXT, |tx| {
            let changed = tx
                .execute(
                    "UPDATE webhook_deliveries SET status = ?2, next_attempt_at_ns = ?3 WHERE id = ?1",
                    params![id, DeliveryStatus::Pending, at_ns],
                )
                .map_err(ctx(CONTEXT))?;
            super::found(changed, id)?;
            read_delivery(tx, id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))
        })
    }

    /// Queues `call.completed` for every call ended (terminal) before `ended_before`, within the week before it,
    /// that was answered but whose record never came (no end reason), and has none queued yet: their media stream
    /// never ran. Returns how many were queued.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the read or a write fails; [`StoreError::OutOfRange`] for a time outside
    /// 1677–2262.
    pub fn queue_overdue_completions(
        &self,
        ended_before: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        const CONTEXT: &str = "queue overdue call.completed webhooks";
        let before_ns = to_ns(ended_before, "time")?;
        let since_ns = to_ns(ended_before - time::Duration::days(7), "time")?;
        self.write(CONTEXT, |tx| {
            let ids: Vec<String> = tx
                .prepare(
                    "SELECT id FROM calls WHERE webhook_url IS NOT NULL AND ended_at_ns >= ?1 \
                     AND ended_at_ns < ?2 AND end_reason IS NULL AND answered_at_ns IS NOT NULL \
                     AND status IN (?3, ?4, ?5, ?6, ?7) AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                     WHERE d.call_id = calls.id AND d.event = ?8)",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(
                        params![
                            since_ns,
                            before_ns,
                            CallStatus::Completed,
                            CallStatus::Busy,
                            CallStatus::NoAnswer,
                            CallStatus::Failed,
                            CallStatus::Canceled,
                            WebhookEvent::Completed.as_str()
                        ],
                        |row| row.get(0),
                    )?
                    .collect()
                })
                .map_err(ctx(CONTEXT))?;
            for id in &ids {
                queue_completed(tx, id, before_ns, true)?;
            }
            Ok(ids.len())
        })
    }

    /// Up to `limit` deliveries, newest first, only those in `status` when given.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the read fails or a stored value is invalid.
    pub fn list_webhooks(
        &self,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        const CONTEXT: &str = "list webhooks";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.read()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE ?1 IS NULL OR status = ?1 \
                 ORDER BY created_at_ns DESC, rowid DESC LIMIT ?2"
            ))
            .map_err(ctx(CONTEXT))?;
        let rows = stmt
            .query_map(params![status, limit], delivery_from_row)
            .map_err(ctx(CONTEXT))?;
        rows.collect::<Result<_, _>>().map_err(ctx(CONTEXT))
    }

    /// The delivery `id`; `None` when there is none.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the read fails or a stored value is invalid.
    pub fn get_webhook(&self, id: &str) -> Result<Option<WebhookDelivery>, StoreError> {
        read_delivery(&*self.read()?, id)
    }

    /// The exact body queued for the delivery `id`; `None` when there is none.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the read fails.
    pub fn webhook_body(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.read()?
            .query_row(
                "SELECT body FROM webhook_deliveries WHERE id = ?1",
                [id],
                |row| row.get(0),
            )
            .optional()
            .map_err(ctx("read a webhook's body"))
    }
}

/// The delivery `id` read on `conn`.
fn read_delivery(conn: &Connection, id: &str) -> Result<Option<WebhookDelivery>, StoreError> {
    conn.query_row(
        &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1"),
        [id],
        delivery_from_row,
    )
    .optional()
    .map_err(ctx("read a webhook"))
}

/// A write of the delivery task or the API to the outbox, queued through the store writer like every write the
/// server makes ([`crate::calls::writer::Write::Webhook`]).
#[derive(Debug, Clone)]
pub enum OutboxWrite {
    /// [`CallStore::record_webhook_attempt`].
    Attempt {
        /// The delivery's id.
        id: String,
        /// What the attempt got.
        outcome: AttemptOutcome,
        /// When it was made.
        at: OffsetDateTime,
        /// The retry schedule in force.
        schedule: RetrySchedule,
    },
    /// [`CallStore::retry_webhook`].
    Retry {
        /// The delivery's id.
        id: String,
        /// When it becomes due.
        at: OffsetDateTime,
    },
    /// [`CallStore::queue_overdue_completions`].
    QueueOverdueCompletions {
        /// Calls ended before this.
        ended_before: OffsetDateTime,
    },
}

impl OutboxWrite {
    /// What the write does, for the logs.
    pub fn what(&self) -> &'static str {
        match self {
            OutboxWrite::Attempt { .. } => "record a webhook attempt",
            OutboxWrite::Retry { .. } => "retry a webhook",
            OutboxWrite::QueueOverdueCompletions { .. } => "queue overdue call.completed webhooks",
        }
    }

    /// Performs the write once.
    ///
    /// # Errors
    /// The store's error.
    pub fn apply(&self, store: &CallStore) -> Result<(), StoreError> {
        match self {
            OutboxWrite::Attempt {
                id,
                outcome,
                at,
                schedule,
            } => {
                store.record_webhook_attempt(id, outcome, *at, *schedule)?;
            }
            OutboxWrite::Retry { id, at } => {
                store.retry_webhook(id, *at)?;
            }
            OutboxWrite::QueueOverdueCompletions { ended_before } => {
                let queued = store.queue_overdue_completions(*ended_before)?;
                if queued > 0 {
                    tracing::info!(
                        queued,
                        "call.completed queued for answered calls whose record never came"
                    );
                }
            }
        }
        Ok(())
    }
}
