//! The webhook outbox in PostgreSQL: the same rows and rules as the SQLite outbox ([`crate::calls::store`]'s
//! `outbox.rs`, whose pure parts, the event bodies and an attempt's outcome, are shared), for several instances
//! sharing one database.
//!
//! What SQLite gets from its single writer, PostgreSQL gets from row locks: every instance runs a delivery task, so
//! [`due_webhooks`] claims what it returns. It locks the due rows with `FOR UPDATE SKIP LOCKED` (an instance never
//! waits for, nor takes, a row another one is claiming) and marks them `claimed_until_ns` = now +
//! [`WEBHOOK_CLAIM`]; a claimed delivery is due for no one else until its attempt is recorded or the claim expires
//! (the instance sending it died). It returns at most one delivery per call, the call's longest due, and none of a
//! call that has a delivery claimed: one call's events go out one at a time, oldest first, across the fleet.

use postgres::GenericClient;
use time::OffsetDateTime;

use super::ctx;
use crate::calls::model::CallStatus;
use crate::calls::store::StoreError;
use crate::calls::store::outbox::{
    AttemptOutcome, AttemptRecord, DeliveryStatus, DueDelivery, WebhookDelivery, answered_by_body,
    completed_body, completion_due, status_changed_body,
};
use crate::calls::store::rows::{Ns, Parsed, Unsigned, to_ns};
use crate::twilio::amd::AnsweredBy;
use crate::webhooks::schedule::RetrySchedule;
use crate::webhooks::{WebhookEvent, new_message_id};

/// How long a claimed delivery is held by the instance that claimed it: longer than one attempt and the write of
/// its outcome ([`crate::calls::webhook_delivery::REQUEST_TIMEOUT`] plus its record deadline).
pub const WEBHOOK_CLAIM: time::Duration = time::Duration::seconds(60);

/// The columns of a [`WebhookDelivery`], in [`delivery_from_row`]'s order.
const DELIVERY_COLUMNS: &str = "id, call_id, event, url, status, attempts, created_at_ns, next_attempt_at_ns, \
     last_attempt_at_ns, last_status_code, last_error, delivered_at_ns";

/// A [`WebhookDelivery`] from a row of [`DELIVERY_COLUMNS`], read by column name.
fn delivery_from_row(row: &postgres::Row) -> Result<WebhookDelivery, postgres::Error> {
    let status = row.try_get::<_, Parsed<DeliveryStatus>>("status")?.0;
    let time = |column: &str| {
        row.try_get::<_, Option<Ns>>(column)
            .map(|ns| ns.map(|ns| ns.0))
    };
    Ok(WebhookDelivery {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        event: row.try_get("event")?,
        url: row.try_get("url")?,
        status,
        attempts: u32::try_from(row.try_get::<_, Unsigned>("attempts")?.0).unwrap_or(u32::MAX),
        created_at: row.try_get::<_, Ns>("created_at_ns")?.0,
        next_attempt_at: if status == DeliveryStatus::Pending {
            time("next_attempt_at_ns")?
        } else {
            None
        },
        last_attempt_at: time("last_attempt_at_ns")?,
        last_status_code: row
            .try_get::<_, Option<i64>>("last_status_code")?
            .and_then(|code| u16::try_from(code).ok()),
        last_error: row.try_get("last_error")?,
        delivered_at: time("delivered_at_ns")?,
    })
}

/// The call's webhook URL and CallSid, when it has a URL.
fn webhook_target(
    conn: &mut impl GenericClient,
    call_id: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    let row = conn
        .query_opt(
            "SELECT webhook_url, call_sid FROM calls WHERE id = $1",
            &[&call_id],
        )
        .map_err(ctx("read a call's webhook URL"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let url: Option<String> = row.try_get(0).map_err(ctx("read a call's webhook URL"))?;
    let sid: Option<String> = row.try_get(1).map_err(ctx("read a call's webhook URL"))?;
    Ok(url.map(|url| (url, sid)))
}

/// Queues `body` for `url`, due at `at_ns`.
fn insert(
    conn: &mut impl GenericClient,
    call_id: &str,
    event: WebhookEvent,
    url: &str,
    body: &str,
    at_ns: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO webhook_deliveries (id, call_id, event, url, body, status, attempts, created_at_ns, \
         next_attempt_at_ns) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
        &[
            &new_message_id(),
            &call_id,
            &event.as_str(),
            &url,
            &body,
            &DeliveryStatus::Pending.as_str(),
            &at_ns,
        ],
    )
    .map_err(ctx("queue a webhook"))?;
    Ok(())
}

/// Inside the transaction that moved the call from `previous` to `status` at `at_ns`: queues
/// `call.status_changed`, and `call.completed` if the call is now done.
///
/// # Errors
/// [`StoreError::Postgres`] when a read or the write fails.
pub(in crate::calls::store) fn on_status_changed(
    conn: &mut impl GenericClient,
    call_id: &str,
    previous: CallStatus,
    status: CallStatus,
    at_ns: i64,
) -> Result<(), StoreError> {
    let Some((url, call_sid)) = webhook_target(conn, call_id)? else {
        return Ok(());
    };
    let body = status_changed_body(call_id, call_sid.as_deref(), previous, status, at_ns);
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
///
/// # Errors
/// [`StoreError::Postgres`] when a read or the write fails.
pub(in crate::calls::store) fn on_answered_by(
    conn: &mut impl GenericClient,
    call_id: &str,
    answered_by: AnsweredBy,
    at_ns: i64,
) -> Result<(), StoreError> {
    let Some((url, call_sid)) = webhook_target(conn, call_id)? else {
        return Ok(());
    };
    let body = answered_by_body(call_id, call_sid.as_deref(), answered_by, at_ns);
    insert(conn, call_id, WebhookEvent::AnsweredBy, &url, &body, at_ns)
}

/// Queues `call.completed` with the whole record, once per call, if the call has a webhook URL and is done, or
/// `force` says to send it anyway (as the SQLite outbox does). The call's row is locked first, so two instances
/// finishing the same call queue it once.
///
/// # Errors
/// [`StoreError::Postgres`] when a read or the write fails.
pub(in crate::calls::store) fn queue_completed(
    conn: &mut impl GenericClient,
    call_id: &str,
    at_ns: i64,
    force: bool,
) -> Result<(), StoreError> {
    try_queue_completed(conn, call_id, at_ns, force).map(drop)
}

/// [`queue_completed`], saying whether it queued the event.
fn try_queue_completed(
    conn: &mut impl GenericClient,
    call_id: &str,
    at_ns: i64,
    force: bool,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "queue call.completed";
    if webhook_target(conn, call_id)?.is_none() {
        return Ok(false);
    }
    super::calls::lock_call(conn, call_id)?;
    let Some(view) = super::rows::read_view(conn, call_id)? else {
        return Ok(false);
    };
    let Some(url) = view.webhook_url.clone() else {
        return Ok(false);
    };
    if !completion_due(&view, force) {
        return Ok(false);
    }
    let queued: bool = conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE call_id = $1 AND event = $2)",
            &[&call_id, &WebhookEvent::Completed.as_str()],
        )
        .and_then(|row| row.try_get(0))
        .map_err(ctx(CONTEXT))?;
    if queued {
        return Ok(false);
    }
    let body = completed_body(&view, at_ns);
    insert(conn, call_id, WebhookEvent::Completed, &url, &body, at_ns)?;
    Ok(true)
}

/// [`crate::calls::store::CallStore::due_webhooks`], claiming what it returns (see the module docs): up to `limit`
/// pending deliveries due at `now`, at most one per call and none of a call with a delivery claimed, the longest due
/// first.
///
/// # Errors
/// [`StoreError::Postgres`] when the read or the claim fails; [`StoreError::OutOfRange`] for a time outside
/// 1677–2262.
pub fn due_webhooks(
    conn: &mut impl GenericClient,
    now: OffsetDateTime,
    limit: usize,
) -> Result<Vec<DueDelivery>, StoreError> {
    const CONTEXT: &str = "claim the webhooks due";
    let now_ns = to_ns(now, "now")?;
    let until_ns = to_ns(now + WEBHOOK_CLAIM, "claim time")?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let pending = DeliveryStatus::Pending.as_str();
    let rows = conn
        .query(
            "SELECT d.id, d.call_id, d.url, d.body FROM webhook_deliveries d \
             WHERE d.status = $1 AND d.next_attempt_at_ns <= $2 \
             AND (d.claimed_until_ns IS NULL OR d.claimed_until_ns <= $2) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries c WHERE c.call_id = d.call_id \
                 AND c.status = $1 AND c.claimed_until_ns > $2) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.call_id = d.call_id \
                 AND e.status = $1 AND e.next_attempt_at_ns <= $2 \
                 AND (e.next_attempt_at_ns, e.seq) < (d.next_attempt_at_ns, d.seq)) \
             ORDER BY d.next_attempt_at_ns, d.seq LIMIT $3 FOR UPDATE SKIP LOCKED",
            &[&pending, &now_ns, &limit],
        )
        .map_err(ctx(CONTEXT))?;
    let due = rows
        .iter()
        .map(|row| {
            Ok(DueDelivery {
                id: row.try_get("id")?,
                call_id: row.try_get("call_id")?,
                url: row.try_get("url")?,
                body: row.try_get("body")?,
            })
        })
        .collect::<Result<Vec<_>, postgres::Error>>()
        .map_err(ctx(CONTEXT))?;
    if !due.is_empty() {
        let ids: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
        conn.execute(
            "UPDATE webhook_deliveries SET claimed_until_ns = $2 WHERE id = ANY($1)",
            &[&ids, &until_ns],
        )
        .map_err(ctx(CONTEXT))?;
    }
    Ok(due)
}

/// [`crate::calls::store::CallStore::release_webhook`]: the delivery is claimed by no one.
///
/// # Errors
/// [`StoreError::Postgres`] when the write fails.
pub fn release_webhook(conn: &mut impl GenericClient, id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE webhook_deliveries SET claimed_until_ns = NULL WHERE id = $1",
        &[&id],
    )
    .map_err(ctx("release a webhook"))?;
    Ok(())
}

/// When the next pending delivery is due, or its claim expires when it is claimed; `None` when none is pending.
///
/// # Errors
/// [`StoreError::Postgres`] when the read fails; [`StoreError::OutOfRange`] for a stored time out of range.
pub fn next_webhook_due(
    conn: &mut impl GenericClient,
) -> Result<Option<OffsetDateTime>, StoreError> {
    const CONTEXT: &str = "read when the next webhook is due";
    conn.query_one(
        "SELECT MIN(GREATEST(next_attempt_at_ns, claimed_until_ns)) AS due_ns FROM webhook_deliveries \
         WHERE status = $1",
        &[&DeliveryStatus::Pending.as_str()],
    )
    .and_then(|row| row.try_get::<_, Option<Ns>>("due_ns"))
    .map(|due| due.map(|ns| ns.0))
    .map_err(ctx(CONTEXT))
}

/// [`crate::calls::store::CallStore::record_webhook_attempt`]: the pending row is locked while it is read and
/// written, and its claim is released.
///
/// # Errors
/// [`StoreError::Postgres`] when the write fails; [`StoreError::OutOfRange`] for a time outside 1677–2262.
pub fn record_webhook_attempt(
    conn: &mut impl GenericClient,
    id: &str,
    outcome: &AttemptOutcome,
    at: OffsetDateTime,
    schedule: RetrySchedule,
) -> Result<Option<DeliveryStatus>, StoreError> {
    const CONTEXT: &str = "record a webhook attempt";
    let at_ns = to_ns(at, "attempt time")?;
    let attempts: Option<i64> = conn
        .query_opt(
            "SELECT attempts FROM webhook_deliveries WHERE id = $1 AND status = $2 FOR UPDATE",
            &[&id, &DeliveryStatus::Pending.as_str()],
        )
        .and_then(|row| row.map(|row| row.try_get(0)).transpose())
        .map_err(ctx(CONTEXT))?;
    let Some(attempts) = attempts else {
        return Ok(None);
    };
    let record = AttemptRecord::after(attempts, outcome, at, schedule)?;
    conn.execute(
        "UPDATE webhook_deliveries SET status = $2, attempts = $3, last_attempt_at_ns = $4, \
         last_status_code = $5, last_error = $6, next_attempt_at_ns = $7, \
         delivered_at_ns = COALESCE($8, delivered_at_ns), claimed_until_ns = NULL WHERE id = $1",
        &[
            &id,
            &record.status.as_str(),
            &i64::from(record.attempts),
            &at_ns,
            &record.status_code.map(i64::from),
            &record.error,
            &record.next_ns,
            &record.delivered_ns,
        ],
    )
    .map_err(ctx(CONTEXT))?;
    Ok(Some(record.status))
}

/// [`crate::calls::store::CallStore::retry_webhook`].
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown id; [`StoreError::Postgres`] when the write fails.
pub fn retry_webhook(
    conn: &mut impl GenericClient,
    id: &str,
    at: OffsetDateTime,
) -> Result<WebhookDelivery, StoreError> {
    const CONTEXT: &str = "retry a webhook";
    let at_ns = to_ns(at, "retry time")?;
    let changed = conn
        .execute(
            "UPDATE webhook_deliveries SET status = $2, next_attempt_at_ns = $3 WHERE id = $1",
            &[&id, &DeliveryStatus::Pending.as_str(), &at_ns],
        )
        .map_err(ctx(CONTEXT))?;
    if changed == 0 {
        return Err(StoreError::NotFound(id.to_owned()));
    }
    get_webhook(conn, id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))
}

/// [`crate::calls::store::CallStore::queue_overdue_completions`]; each call's row is locked as its event is queued
/// ([`queue_completed`]), so two instances sweeping at once queue each event once.
///
/// # Errors
/// [`StoreError::Postgres`] when the read or a write fails; [`StoreError::OutOfRange`] for a time outside
/// 1677–2262.
pub fn queue_overdue_completions(
    conn: &mut impl GenericClient,
    ended_before: OffsetDateTime,
) -> Result<usize, StoreError> {
    const CONTEXT: &str = "queue overdue call.completed webhooks";
    let before_ns = to_ns(ended_before, "time")?;
    let since_ns = to_ns(ended_before - time::Duration::days(7), "time")?;
    let terminal: Vec<&str> = [
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::NoAnswer,
        CallStatus::Failed,
        CallStatus::Canceled,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    let rows = conn
        .query(
            "SELECT id FROM calls WHERE webhook_url IS NOT NULL AND ended_at_ns >= $1 \
             AND ended_at_ns < $2 AND end_reason IS NULL AND answered_at_ns IS NOT NULL \
             AND status = ANY($3) AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
             WHERE d.call_id = calls.id AND d.event = $4)",
            &[
                &since_ns,
                &before_ns,
                &terminal,
                &WebhookEvent::Completed.as_str(),
            ],
        )
        .map_err(ctx(CONTEXT))?;
    let ids = rows
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ctx(CONTEXT))?;
    let mut queued = 0;
    for id in &ids {
        if try_queue_completed(conn, id, before_ns, true)? {
            queued += 1;
        }
    }
    Ok(queued)
}

/// [`crate::calls::store::CallStore::list_webhooks`]: newest first.
///
/// # Errors
/// [`StoreError::Postgres`] when the read fails or a stored value is invalid.
pub fn list_webhooks(
    conn: &mut impl GenericClient,
    status: Option<DeliveryStatus>,
    limit: usize,
) -> Result<Vec<WebhookDelivery>, StoreError> {
    const CONTEXT: &str = "list webhooks";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let status = status.map(DeliveryStatus::as_str);
    conn.query(
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE $1::TEXT IS NULL OR status = $1 \
             ORDER BY created_at_ns DESC, seq DESC LIMIT $2"
        ),
        &[&status, &limit],
    )
    .map_err(ctx(CONTEXT))?
    .iter()
    .map(delivery_from_row)
    .collect::<Result<_, _>>()
    .map_err(ctx(CONTEXT))
}

/// [`crate::calls::store::CallStore::get_webhook`].
///
/// # Errors
/// [`StoreError::Postgres`] when the read fails or a stored value is invalid.
pub fn get_webhook(
    conn: &mut impl GenericClient,
    id: &str,
) -> Result<Option<WebhookDelivery>, StoreError> {
    conn.query_opt(
        &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"),
        &[&id],
    )
    .and_then(|row| row.as_ref().map(delivery_from_row).transpose())
    .map_err(ctx("read a webhook"))
}

/// [`crate::calls::store::CallStore::webhook_body`].
///
/// # Errors
/// [`StoreError::Postgres`] when the read fails.
pub fn webhook_body(conn: &mut impl GenericClient, id: &str) -> Result<Option<String>, StoreError> {
    conn.query_opt("SELECT body FROM webhook_deliveries WHERE id = $1", &[&id])
        .and_then(|row| row.map(|row| row.try_get(0)).transpose())
        .map_err(ctx("read a webhook's body"))
}
