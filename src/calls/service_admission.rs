//! Admission in the call service: the concurrency cap (what counts as a call, [`CallService::concurrent_calls`]),
//! the admission lock that keeps two requests from taking the last slot, and the daily outbound and cost budgets.

use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use super::{CallService, RINGING_GRACE, ServiceError};

/// Room for one more call under the concurrency cap: hold it until the new call counts (its stream token is pending,
/// or its record is stored), so that no other call takes the same slot meanwhile. Never hold it across an `.await`.
#[must_use = "the slot is only reserved while the admission is held"]
pub struct Admission<'a> {
    _guard: MutexGuard<'a, ()>,
}

impl std::fmt::Debug for Admission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").finish_non_exhaustive()
    }
}

impl CallService {
    /// The calls this server counts against `CALLBRIDGE_MAX_CONCURRENT_CALLS`, inbound and outbound alike:
    /// - calls bridged now ([`LiveCalls::count`]);
    /// - calls answered whose media stream has not opened yet (pending stream tokens, from `pending_streams`);
    /// - outbound calls placed but not answered yet (`queued`, `initiated`, `ringing` in the store), created within
    ///   the ring timeout + [`RINGING_GRACE`]: they become calls if answered.
    ///
    /// Between a stream's upgrade and its Realtime session being ready (usually nothing: it was pre-connected), a
    /// call is in none of these. If the store cannot be read, the ringing calls are not counted (logged).
    pub fn concurrent_calls(&self) -> u64 {
        let outbound = &self.inner.outbound;
        let window = Duration::from_secs(u64::from(outbound.ring_timeout_s)) + RINGING_GRACE;
        let since = self.now() - window;
        let ringing = self
            .inner
            .store
            .count_outbound_ringing_since(since)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot count the ringing outbound calls");
                0
            });
        let live = u64::try_from(self.inner.live.count()).unwrap_or(u64::MAX);
        let pending = u64::try_from((self.inner.pending_streams)()).unwrap_or(u64::MAX);
        let reserved = self.inner.reserved.load(Ordering::SeqCst);
        live.saturating_add(pending)
            .saturating_add(ringing)
            .saturating_add(reserved)
    }

    /// Room for one more call under `CALLBRIDGE_MAX_CONCURRENT_CALLS` (counted by
    /// [`CallService::concurrent_calls`]). Hold the [`Admission`] until the new call counts.
    ///
    /// # Errors
    /// [`ServiceError::TooManyCalls`] when the server is at its cap.
    pub fn admit_call(&self) -> Result<Admission<'_>, ServiceError> {
        let admission = self.lock_admission();
        self.check_capacity()?;
        Ok(admission)
    }

    /// The admission lock alone (a panic while it was held left nothing half-done: it guards no data): a webhook
    /// takes it to tell a replay of a call it already answered (no new slot needed) from a new call, then calls
    /// [`CallService::check_capacity`] for a new one.
    pub fn lock_admission(&self) -> Admission<'_> {
        Admission {
            _guard: self
                .inner
                .admission
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// # Errors
    /// [`ServiceError::TooManyCalls`] when [`CallService::concurrent_calls`] is at the cap.
    pub fn check_capacity(&self) -> Result<(), ServiceError> {
        let max = self.inner.outbound.max_concurrent_calls;
        let calls = self.concurrent_calls();
        if calls >= u64::from(max) {
            tracing::warn!(calls, max, "call refused: the concurrency cap is reached");
            return Err(ServiceError::TooManyCalls { max });
        }
        Ok(())
    }

    /// Whether today's outbound budget allows one more call: outbound calls created since 00:00 UTC are fewer than
    /// `CALLBRIDGE_DAILY_OUTBOUND_BUDGET`.
    ///
    /// # Errors
    /// [`ServiceError::DailyBudgetExhausted`]; [`ServiceError::Store`] when the calls cannot be counted.
    pub(super) fn check_daily_budget(&self) -> Result<(), ServiceError> {
        let budget = self.inner.outbound.daily_outbound_budget;
        let midnight = self.now().replace_time(time::Time::MIDNIGHT);
        let placed = self
            .inner
            .store
            .count_outbound_created_since(midnight)?
            .saturating_add(self.inner.reserved.load(Ordering::SeqCst));
        if placed >= u64::from(budget) {
            tracing::warn!(
                placed,
                budget,
                "outbound call refused: the daily budget is used up"
            );
            return Err(ServiceError::DailyBudgetExhausted { budget });
        }
        Ok(())
    }

    /// Whether today's estimated spend leaves room for one more call: the calls created since 00:00 UTC cost less
    /// than `CALLBRIDGE_DAILY_COST_BUDGET_USD` (when set). Inbound and outbound calls both count and are both refused.
    ///
    /// # Errors
    /// [`ServiceError::DailyCostBudgetExhausted`]; [`ServiceError::Store`] when the costs cannot be added up.
    pub fn check_daily_cost_budget(&self) -> Result<(), ServiceError> {
        let Some(budget_usd) = self.inner.outbound.daily_cost_budget_usd else {
            return Ok(());
        };
        let midnight = time::OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT);
        let spent_usd = self.inner.store.cost_since(midnight)?;
        if spent_usd >= budget_usd {
            tracing::warn!(
                spent_usd,
                budget_usd,
                "call refused: the daily cost budget is spent"
            );
            return Err(ServiceError::DailyCostBudgetExhausted {
                budget_usd,
                spent_usd,
            });
        }
        Ok(())
    }
}
