//! The counting queries of the call limits on PostgreSQL, mirroring `store/counts.rs`.

use postgres::GenericClient;

use super::{ctx, scheduling};
use crate::calls::Direction;
use crate::calls::model::CallStatus;
use crate::calls::store::StoreError;

/// A `COUNT(*)` (a `BIGINT`, never negative) as `u64`.
fn count(row: &postgres::Row) -> Result<u64, postgres::Error> {
    row.try_get::<_, i64>(0)
        .map(|n| u64::try_from(n).unwrap_or(0))
}

/// How many outbound calls were created at or after `since_ns` (a scheduled or retried call counts its attempts
/// instead; see `CallStore::count_outbound_created_since`).
///
/// # Errors
///
/// [`StoreError::Postgres`] when the read fails.
pub(in crate::calls::store) fn count_outbound_created_since(
    c: &mut impl GenericClient,
    since_ns: i64,
) -> Result<u64, StoreError> {
    let placed = c
        .query_one(
            &format!(
                "SELECT COUNT(*) FROM calls WHERE direction = $1 AND created_at_ns >= $2 AND {}",
                scheduling::PLACED_AT_ONCE
            ),
            &[&Direction::OutboundApi, &since_ns],
        )
        .and_then(|row| count(&row))
        .map_err(ctx("count outbound calls"))?;
    Ok(placed.saturating_add(scheduling::count_attempts_since(c, since_ns)?))
}

/// The estimated cost of the calls created at or after `since_ns`, USD.
///
/// # Errors
///
/// [`StoreError::Postgres`] when the read fails.
pub(in crate::calls::store) fn cost_since(
    c: &mut impl GenericClient,
    since_ns: i64,
) -> Result<f64, StoreError> {
    c.query_one(
        "SELECT COALESCE(SUM(cost_usd), 0)::DOUBLE PRECISION FROM calls WHERE created_at_ns >= $1",
        &[&since_ns],
    )
    .and_then(|row| row.try_get(0))
    .map_err(ctx("add up the cost of calls"))
}

/// How many outbound calls created (or whose latest attempt started) at or after `since_ns` are `queued`,
/// `initiated` or `ringing` (see `CallStore::count_outbound_ringing_since`).
///
/// # Errors
///
/// [`StoreError::Postgres`] when the read fails.
pub(in crate::calls::store) fn count_outbound_ringing_since(
    c: &mut impl GenericClient,
    since_ns: i64,
) -> Result<u64, StoreError> {
    c.query_one(
        &format!(
            "SELECT COUNT(*) FROM calls WHERE direction = $1 AND status IN ($3, $4, $5) AND {} >= $2",
            scheduling::LATEST_START_NS
        ),
        &[
            &Direction::OutboundApi,
            &since_ns,
            &CallStatus::Queued,
            &CallStatus::Initiated,
            &CallStatus::Ringing,
        ],
    )
    .and_then(|row| count(&row))
    .map_err(ctx("count ringing outbound calls"))
}
