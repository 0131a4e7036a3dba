//! The webhook outbox on PostgreSQL: what the core call writes queue in their own transaction. Until the
//! `webhook_deliveries` table exists on PostgreSQL these queue nothing (a call stored there sends no signed
//! webhooks), and the outbox's own methods report [`StoreError::Unsupported`].
//!
//! Each function mirrors the one of the same name in `store/outbox.rs` and runs inside the caller's transaction.

use postgres::GenericClient;

use crate::calls::model::CallStatus;
use crate::calls::store::StoreError;
use crate::twilio::amd::AnsweredBy;

/// Inside the transaction that moved the call from `previous` to `status` at `at_ns`: queues
/// `call.status_changed`, and `call.completed` if the call is now done. Queues nothing yet.
pub(in crate::calls::store) fn on_status_changed(
    _c: &mut impl GenericClient,
    _call_id: &str,
    _previous: CallStatus,
    _status: CallStatus,
    _at_ns: i64,
) -> Result<(), StoreError> {
    Ok(())
}

/// Inside the transaction that stored the call's first answering machine verdict: queues `call.answered_by`.
/// Queues nothing yet.
pub(in crate::calls::store) fn on_answered_by(
    _c: &mut impl GenericClient,
    _call_id: &str,
    _answered_by: AnsweredBy,
    _at_ns: i64,
) -> Result<(), StoreError> {
    Ok(())
}

/// Queues `call.completed` with the whole record, once per call, if the call has a webhook URL and is done (or
/// `force` says to send it anyway). Queues nothing yet.
pub(in crate::calls::store) fn queue_completed(
    _c: &mut impl GenericClient,
    _call_id: &str,
    _at_ns: i64,
    _force: bool,
) -> Result<(), StoreError> {
    Ok(())
}
