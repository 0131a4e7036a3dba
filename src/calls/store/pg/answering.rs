//! What the store keeps of answering machine detection on PostgreSQL, mirroring `store/answering.rs`.

use postgres::GenericClient;

use super::calls::lock_call;
use super::{ctx, outbox};
use crate::calls::store::StoreError;
use crate::calls::store::rows::to_ns;
use crate::twilio::amd::AnsweredBy;

/// Records Twilio's `AnsweredBy` for the call `id` unless one is stored; returns whether it was the first (and
/// then queues the call's `call.answered_by` webhook).
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when the write fails.
pub(in crate::calls::store) fn set_answered_by(
    c: &mut impl GenericClient,
    id: &str,
    answered_by: AnsweredBy,
) -> Result<bool, StoreError> {
    lock_call(c, id)?;
    let changed = c
        .execute(
            "UPDATE calls SET answered_by = $2 WHERE id = $1 AND answered_by IS NULL",
            &[&id, &answered_by.as_str()],
        )
        .map_err(ctx("record an answering machine verdict"))?;
    if changed == 1 {
        let now_ns = to_ns(time::OffsetDateTime::now_utc(), "now")?;
        outbox::on_answered_by(c, id, answered_by, now_ns)?;
    }
    Ok(changed == 1)
}
