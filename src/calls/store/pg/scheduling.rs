//! Scheduled and retried outbound calls on PostgreSQL: what the core call writes and reads ask of a call's schedule
//! and attempts. Until the `call_schedules` and `call_attempts` tables exist on PostgreSQL every call there is
//! placed at once (no schedule, no attempts), and the scheduling methods report [`StoreError::Unsupported`].
//!
//! Each function mirrors the one of the same name in `store/scheduling.rs` and runs inside the caller's
//! transaction (or on the reader connection).

use postgres::GenericClient;

use crate::calls::model::{CallStatus, Schedule};
use crate::calls::store::StoreError;

/// A condition on a `calls` row (SQL, no parameters): true for a call placed at once, without a schedule (the
/// daily outbound budget counts such a call by its creation, a scheduled one by its attempts).
pub(in crate::calls::store) const PLACED_AT_ONCE: &str = "TRUE";

/// An expression on a `calls` row (SQL, no parameters): when its latest attempt started, or when it was created
/// (nanoseconds since the Unix epoch).
pub(in crate::calls::store) const LATEST_START_NS: &str = "created_at_ns";

/// Records Twilio's CallSid on the call's latest attempt, if it has none yet. Nothing to do yet.
pub(in crate::calls::store) fn set_attempt_call_sid(
    _c: &mut impl GenericClient,
    _id: &str,
    _call_sid: &str,
) -> Result<(), StoreError> {
    Ok(())
}

/// The call one of whose attempts had the CallSid `call_sid` (an earlier attempt's late status callback). None yet.
pub(in crate::calls::store) fn call_of_attempt(
    _c: &mut impl GenericClient,
    _call_sid: &str,
) -> Result<Option<String>, StoreError> {
    Ok(None)
}

/// A status callback for the call `id` with the CallSid `call_sid`, if it is one of the call's attempts (`None`:
/// the call moves as any call does). None yet.
pub(in crate::calls::store) fn on_attempt_status(
    _c: &mut impl GenericClient,
    _id: &str,
    _call_sid: &str,
    _status: CallStatus,
    _at_ns: i64,
) -> Result<Option<bool>, StoreError> {
    Ok(None)
}

/// How many attempts started at or after `since_ns` (the daily budget counts them). None yet.
pub(in crate::calls::store) fn count_attempts_since(
    _c: &mut impl GenericClient,
    _since_ns: i64,
) -> Result<u64, StoreError> {
    Ok(0)
}

/// The call's plan and attempts ([`Schedule::default`] for a call placed at once, every call yet).
pub(in crate::calls::store) fn read_schedule(
    _c: &mut impl GenericClient,
    _id: &str,
) -> Result<Schedule, StoreError> {
    Ok(Schedule::default())
}
