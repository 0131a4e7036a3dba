//! Fleet-wide admission: the concurrency cap (`CALLBRIDGE_MAX_CONCURRENT_CALLS`) and the daily outbound budget
//! (`CALLBRIDGE_DAILY_OUTBOUND_BUDGET`) counted once for every instance sharing the Redis, atomically.
//!
//! - Call slots: the sorted set `P slots`, call id → expiry (ms, Redis's own clock from `TIME`, so the instances'
//!   clocks do not matter). One Lua script drops the expired slots, counts the rest and adds the new call's slot
//!   only if the count is under the cap: two instances can never both take the last slot. A slot is released when
//!   its call ends ([`super::Fleet::release_call`], [`Fleet::release_slot`]); a call that never got far enough to
//!   be held (a stream that never opened, an instance that died) loses its slot when it expires.
//! - The budget: `P budget:outbound:{YYYY-MM-DD}`, the UTC day's outbound calls placed, counted up in the same
//!   script before the slot is taken (a budget refusal takes no slot) and expiring two days later. The caller passes
//!   what its own store counts for the day as a floor, so a Redis that lost its data (or a fleet that starts mid-day)
//!   never counts fewer calls than the store knows.
//! - The daily cost budget: `P budget:cost_micros:{YYYY-MM-DD}`, the estimated spend of the UTC day's calls in
//!   millionths of a dollar, added to by each call's instance when its cost is final ([`Fleet::add_cost`]), read
//!   by [`Fleet::cost_spent_usd`].

use std::time::Duration;

use super::{Fleet, FleetError, millis};

/// How long a budget counter lives after its last change: two days, so the UTC day it counts is always covered.
pub const BUDGET_COUNTER_TTL_S: u64 = 2 * 24 * 3600;

/// What the fleet said to a call asking to be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetAdmission {
    /// The call has its slot (and, for an outbound call, counts against today's budget); `calls` is how many slots
    /// are taken now, this one included.
    Admitted {
        /// Slots taken, fleet-wide.
        calls: u64,
    },
    /// Every slot is taken: `calls` calls are in progress across the fleet.
    AtCap {
        /// Slots taken, fleet-wide.
        calls: u64,
    },
    /// Today's outbound budget is used up: `placed` calls were placed across the fleet.
    BudgetUsed {
        /// Outbound calls placed today, fleet-wide.
        placed: u64,
    },
}

/// A request for one slot: the call, the cap, how long the slot lasts unless renewed, and the budget (outbound).
#[derive(Debug, Clone)]
pub struct SlotRequest<'a> {
    /// Our call id (the slot's member).
    pub call_id: &'a str,
    /// `CALLBRIDGE_MAX_CONCURRENT_CALLS`.
    pub max_calls: u32,
    /// How long the slot lasts unless the holder's heartbeat renews it (a call that never gets held loses it then).
    pub slot_ttl: Duration,
    /// For an outbound call: today's budget, the UTC day (`YYYY-MM-DD`) and the calls this instance's store counts
    /// for it (a floor). `None` for an inbound call (no budget).
    pub budget: Option<(u32, String, u64)>,
}

/// Drops expired slots, checks the budget, checks the cap (a call that has its slot already passes), then takes (or
/// renews) the slot and counts the call against the budget.
/// ARGV: prefix, call id, cap, slot ttl ms, budget (-1: none), day, floor, counter ttl s.
/// Returns {verdict, n}: verdict 0 admitted (n = slots), 1 at cap (n = slots), 2 budget used (n = placed).
const ADMIT: &str = r"
local prefix, call_id = ARGV[1], ARGV[2]
local cap, ttl_ms, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local day, floor, counter_ttl = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slots = prefix .. 'slots'
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now_ms)
local held = redis.call('ZSCORE', slots, call_id)
local counter = prefix .. 'budget:outbound:' .. day
local placed = 0
if budget >= 0 then
  placed = tonumber(redis.call('GET', counter) or '0')
  if placed < floor then placed = floor end
  if placed >= budget then return {2, placed} end
end
local taken = redis.call('ZCARD', slots)
if not held and taken >= cap then return {1, taken} end
redis.call('ZADD', slots, now_ms + ttl_ms, call_id)
if budget >= 0 then redis.call('SET', counter, placed + 1, 'EX', counter_ttl) end
if held then return {0, taken} end
return {0, taken + 1}
";

/// Counts live slots. ARGV: prefix.
const COUNT: &str = r"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slots = ARGV[1] .. 'slots'
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now_ms)
return redis.call('ZCARD', slots)
";

impl Fleet {
    /// Asks for a slot under the fleet's cap (and, for an outbound call, a call of today's budget), atomically for
    /// the whole fleet. Asking again for a call that has its slot renews it and admits it again (an outbound call
    /// still counts against the budget: each attempt does).
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time: the caller refuses the call then (a cap that
    /// cannot be checked is not a cap).
    pub async fn admit(&self, request: &SlotRequest<'_>) -> Result<FleetAdmission, FleetError> {
        let (budget, day, floor) = match &request.budget {
            Some((budget, day, floor)) => (i64::from(*budget), day.as_str(), *floor),
            None => (-1, "", 0),
        };
        let script = redis::Script::new(ADMIT);
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(self.prefix())
            .arg(request.call_id)
            .arg(request.max_calls)
            .arg(millis(request.slot_ttl))
            .arg(budget)
            .arg(day)
            .arg(floor)
            .arg(BUDGET_COUNTER_TTL_S);
        let mut redis = self.connection();
        let (verdict, n): (u8, u64) = self
            .deadline("admit a call", invocation.invoke_async(&mut redis))
            .await?;
        Ok(match verdict {
            0 => FleetAdmission::Admitted { calls: n },
            1 => FleetAdmission::AtCap { calls: n },
            _ => FleetAdmission::BudgetUsed { placed: n },
        })
    }

    /// Frees the slot of the call `call_id` (it ended, or was never placed).
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time (the slot then expires by itself).
    pub async fn release_slot(&self, call_id: &str) -> Result<(), FleetError> {
        let mut redis = self.connection();
        self.deadline(
            "release a call slot",
            redis::cmd("ZREM")
                .arg(self.key("slots"))
                .arg(call_id)
                .query_async::<()>(&mut redis),
        )
        .await
    }

    /// How many slots are taken across the fleet now (expired ones dropped first).
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn calls_in_progress(&self) -> Result<u64, FleetError> {
        let script = redis::Script::new(COUNT);
        let mut invocation = script.prepare_invoke();
        invocation.arg(self.prefix());
        let mut redis = self.connection();
        self.deadline("count the calls", invocation.invoke_async(&mut redis))
            .await
    }

    /// Adds a call's final estimated cost to the spend of the UTC day `day` (`YYYY-MM-DD`, the day the call was
    /// created), in millionths of a dollar.
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn add_cost(&self, day: &str, cost_usd: f64) -> Result<(), FleetError> {
        let micros = usd_to_micros(cost_usd);
        if micros == 0 {
            return Ok(());
        }
        let key = self.key(&format!("budget:cost_micros:{day}"));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCRBY")
            .arg(&key)
            .arg(micros)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(BUDGET_COUNTER_TTL_S)
            .ignore();
        let mut redis = self.connection();
        self.deadline("add a call's cost", pipe.query_async::<()>(&mut redis))
            .await
    }

    /// The estimated spend of the UTC day `day` across the fleet, USD (what [`Fleet::add_cost`] added up).
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn cost_spent_usd(&self, day: &str) -> Result<f64, FleetError> {
        let mut redis = self.connection();
        let micros: Option<u64> = self
            .deadline(
                "read the day's spend",
                redis::cmd("GET")
                    .arg(self.key(&format!("budget:cost_micros:{day}")))
                    .query_async(&mut redis),
            )
            .await?;
        Ok(micros.unwrap_or(0) as f64 / 1_000_000.0)
    }
}

/// `usd` in whole millionths of a dollar, rounded; 0 for a negative or non-finite amount.
pub fn usd_to_micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1_000_000.0).round() as u64
    } else {
        0
    }
}

/// The UTC day of `at` as `YYYY-MM-DD`, the budget counters' key.
pub fn utc_day(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_is_counted_in_millionths_of_a_dollar() {
        assert_eq!(usd_to_micros(0.123_456_7), 123_457);
        assert_eq!(usd_to_micros(-1.0), 0);
        assert_eq!(usd_to_micros(f64::NAN), 0);
    }

    #[test]
    fn the_budget_day_is_the_utc_date() {
        let at = time::macros::datetime!(2026-12-01 00:30 +02:00);

        assert_eq!(utc_day(at), "2026-11-30");
    }
}
