//! The counting queries the call limits read: outbound calls created since a time (the daily outbound budget),
//! the cost of calls since a time (the daily cost budget) and outbound calls still ringing (the concurrency cap).

use rusqlite::params;
use time::OffsetDateTime;

use super::rows::{Unsigned, to_ns};
use super::{CallStore, StoreError, ctx, pg, scheduling};
use crate::calls::Direction;
use crate::calls::model::CallStatus;

impl CallStore {
    /// How many outbound calls were created (placed or attempted: a call Twilio refused counts too) at or after
    /// `since`; a scheduled or retried call counts each attempt started at or after `since` instead. The daily
    /// outbound budget counts these since UTC midnight.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the read fails, [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn count_outbound_created_since(&self, since: OffsetDateTime) -> Result<u64, StoreError> {
        const CONTEXT: &str = "count outbound calls";
        let since_ns = to_ns(since, "since")?;
        if let Some(pg) = self.postgres() {
            return pg.read(CONTEXT, move |c| {
                pg::counts::count_outbound_created_since(c, since_ns)
            });
        }
        let conn = self.read()?;
        let placed = conn
            .query_row(
                "SELECT COUNT(*) FROM calls WHERE direction = ?1 AND created_at_ns >= ?2 \
                 AND NOT EXISTS (SELECT 1 FROM call_schedules s WHERE s.call_id = calls.id)",
                params![Direction::OutboundApi, since_ns],
                |row| row.get::<_, Unsigned>(0),
            )
            .map(|n| n.0)
            .map_err(ctx(CONTEXT))?;
        Ok(placed.saturating_add(scheduling::count_attempts_since(&conn, since_ns)?))
    }

    /// The estimated cost of the calls created at or after `since`, inbound and outbound, USD (calls still in
    /// progress count as nothing until they end).
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the read fails, [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn cost_since(&self, since: OffsetDateTime) -> Result<f64, StoreError> {
        let since_ns = to_ns(since, "since")?;
        if let Some(pg) = self.postgres() {
            return pg.read("add up the cost of calls", move |c| {
                pg::counts::cost_since(c, since_ns)
            });
        }
        let conn = self.read()?;
        conn.query_row(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM calls WHERE created_at_ns >= ?1",
            params![since_ns],
            |row| row.get::<_, f64>(0),
        )
        .map_err(ctx("add up the cost of calls"))
    }

    /// How many outbound calls created (or, for a scheduled or retried call, whose latest attempt started) at or
    /// after `since` are not answered yet and not over: `queued`, `initiated` or `ringing`. The concurrency cap
    /// counts these (they become calls if answered); `since` keeps a call whose status callbacks never arrived from
    /// counting forever.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the read fails, [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn count_outbound_ringing_since(&self, since: OffsetDateTime) -> Result<u64, StoreError> {
        const CONTEXT: &str = "count ringing outbound calls";
        let since_ns = to_ns(since, "since")?;
        if let Some(pg) = self.postgres() {
            return pg.read(CONTEXT, move |c| {
                pg::counts::count_outbound_ringing_since(c, since_ns)
            });
        }
        let conn = self.read()?;
        conn.query_row(
            "SELECT COUNT(*) FROM calls WHERE direction = ?1 AND status IN (?3, ?4, ?5) \
             AND COALESCE((SELECT MAX(a.started_at_ns) FROM call_attempts a WHERE a.call_id = calls.id), \
             created_at_ns) >= ?2",
            params![
                Direction::OutboundApi,
                since_ns,
                CallStatus::Queued,
                CallStatus::Initiated,
                CallStatus::Ringing
            ],
            |row| row.get::<_, Unsigned>(0),
        )
        .map(|n| n.0)
        .map_err(ctx(CONTEXT))
    }
}
