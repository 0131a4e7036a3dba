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
    /// - calls bridged now ([`crate::calls::live::LiveCalls::count`]);
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

/// With a fleet (`CALLBRIDGE_REDIS_URL`), the cap and the budgets are counted in Redis for every instance at once
/// ([`crate::fleet::admission`]); the local admission lock and counts above are then not used for them.
///
/// A call's slot is keyed by the CallSid for an inbound call (known at the webhook, so a replayed webhook finds its
/// slot) and by the call id for an outbound one (known before Twilio is asked); both are released when the call
/// ends ([`crate::fleet::Fleet::release_call`]) or, for an outbound call never answered, when its final status
/// arrives. A slot whose call is not held by any instance yet (ringing, or waiting for its stream) lasts
/// [`CallService::pending_slot_ttl`].
impl CallService {
    /// Joins the fleet: from now on the concurrency cap and the daily budgets are counted for the whole fleet in
    /// its Redis. Called once at start-up; a second call changes nothing.
    pub fn join_fleet(&self, fleet: crate::fleet::Fleet) {
        let _ = self.inner.fleet.set(fleet);
    }

    /// The fleet, when this server is part of one.
    pub fn fleet(&self) -> Option<&crate::fleet::Fleet> {
        self.inner.fleet.get()
    }

    /// How long a fleet slot lasts before an instance holds its call (the stream opened there): the ring timeout
    /// and [`RINGING_GRACE`] for an outbound call (inbound calls are answered at once), then [`RINGING_GRACE`] for
    /// the stream to open, then two leases.
    pub fn pending_slot_ttl(&self, outbound: bool, fleet: &crate::fleet::Fleet) -> Duration {
        let ringing = if outbound {
            Duration::from_secs(u64::from(self.inner.outbound.ring_timeout_s)) + RINGING_GRACE
        } else {
            Duration::ZERO
        };
        ringing + RINGING_GRACE + fleet.holding_ttl()
    }

    /// Admits a call under the fleet's cap (and, for an outbound call, today's fleet-wide outbound budget): `member`
    /// is the slot's key (see above). Without a fleet, `Ok` at once (the local checks apply instead).
    ///
    /// # Errors
    /// [`ServiceError::TooManyCalls`], [`ServiceError::DailyBudgetExhausted`] as without a fleet;
    /// [`ServiceError::FleetUnavailable`] when Redis cannot be asked; [`ServiceError::Store`] when this instance's
    /// calls of the day cannot be counted.
    pub async fn admit_in_fleet(&self, member: &str, outbound: bool) -> Result<(), ServiceError> {
        use crate::fleet::admission::{FleetAdmission, SlotRequest, utc_day};
        let Some(fleet) = self.fleet() else {
            return Ok(());
        };
        let settings = &self.inner.outbound;
        let budget = if outbound {
            let now = self.now();
            let midnight = now.replace_time(time::Time::MIDNIGHT);
            let counted_here = self.inner.store.count_outbound_created_since(midnight)?;
            Some((settings.daily_outbound_budget, utc_day(now), counted_here))
        } else {
            None
        };
        let request = SlotRequest {
            call_id: member,
            max_calls: settings.max_concurrent_calls,
            slot_ttl: self.pending_slot_ttl(outbound, fleet),
            budget,
        };
        match fleet.admit(&request).await {
            Ok(FleetAdmission::Admitted { calls }) => {
                tracing::debug!(calls, "call admitted by the fleet");
                Ok(())
            }
            Ok(FleetAdmission::AtCap { calls }) => {
                let max = settings.max_concurrent_calls;
                tracing::warn!(
                    calls,
                    max,
                    "call refused: the fleet's concurrency cap is reached"
                );
                Err(ServiceError::TooManyCalls { max })
            }
            Ok(FleetAdmission::BudgetUsed { placed }) => {
                let budget = settings.daily_outbound_budget;
                tracing::warn!(
                    placed,
                    budget,
                    "outbound call refused: the fleet's daily budget is used up"
                );
                Err(ServiceError::DailyBudgetExhausted { budget })
            }
            Err(error) => {
                tracing::error!(%error, "call refused: the fleet's cap and budget cannot be checked");
                Err(ServiceError::FleetUnavailable(error.to_string()))
            }
        }
    }

    /// Frees the fleet slots keyed `members` (a call that was not placed, or ended before any instance held it);
    /// does nothing without a fleet. A failure is logged: the slot then expires by itself.
    pub async fn release_fleet_slots(&self, members: &[&str]) {
        let Some(fleet) = self.fleet() else {
            return;
        };
        for member in members {
            if let Err(error) = fleet.release_slot(member).await {
                tracing::warn!(%error, "call slot not released; it expires by itself");
            }
        }
    }

    /// [`CallService::check_daily_cost_budget`], with the fleet's spend of the day when there is a fleet: the larger
    /// of what this instance's store adds up and what the fleet's instances added to Redis.
    ///
    /// # Errors
    /// As [`CallService::check_daily_cost_budget`]; [`ServiceError::FleetUnavailable`] when Redis cannot be asked.
    pub async fn check_fleet_cost_budget(&self) -> Result<(), ServiceError> {
        self.check_daily_cost_budget()?;
        let (Some(fleet), Some(budget_usd)) =
            (self.fleet(), self.inner.outbound.daily_cost_budget_usd)
        else {
            return Ok(());
        };
        let today = crate::fleet::admission::utc_day(time::OffsetDateTime::now_utc());
        let spent_usd = fleet
            .cost_spent_usd(&today)
            .await
            .map_err(|e| ServiceError::FleetUnavailable(e.to_string()))?;
        if spent_usd >= budget_usd {
            tracing::warn!(
                spent_usd,
                budget_usd,
                "call refused: the fleet's daily cost budget is spent"
            );
            return Err(ServiceError::DailyCostBudgetExhausted {
                budget_usd,
                spent_usd,
            });
        }
        Ok(())
    }
}
