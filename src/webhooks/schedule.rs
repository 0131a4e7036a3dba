//! When a failed delivery is tried again: exponential backoff with a factor of 5 from a configurable base
//! (`CALLBRIDGE_WEBHOOK_RETRY_BASE_MS`, default 5 s), each delay capped at [`MAX_DELAY`], for a configurable
//! number of attempts in all (`CALLBRIDGE_WEBHOOK_MAX_ATTEMPTS`, default 8); after the last one the delivery is
//! `failed` (`callbridge webhooks retry` sends it again).
//!
//! With the defaults the retries come 5 s, 25 s, ~2 min, ~10 min, ~52 min, ~4.3 h and 6 h after the attempt
//! before them: the eighth and last attempt about 11.5 hours after the event. The Standard Webhooks spec
//! recommends exponential backoff ("Deliverability and reliability").

use std::time::Duration;

/// Each retry waits this many times longer than the one before.
pub const FACTOR: u32 = 5;
/// The longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(6 * 3600);
/// The default wait before the first retry.
pub const DEFAULT_BASE: Duration = Duration::from_secs(5);
/// The default number of attempts, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// The retry schedule of webhook deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The wait before the first retry (after the first attempt failed).
    pub base: Duration,
    /// How many attempts in all, the first included (at least 1).
    pub max_attempts: u32,
}

impl Default for RetrySchedule {
    /// 5 s base, 8 attempts.
    fn default() -> Self {
        RetrySchedule {
            base: DEFAULT_BASE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

impl RetrySchedule {
    /// The wait before the next attempt once `attempts` attempts (at least 1) have failed: `base × 5^(attempts-1)`,
    /// at most [`MAX_DELAY`]; `None` when no attempt is left (the delivery is then `failed`).
    pub fn delay_after(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let factor = FACTOR.saturating_pow(attempts.saturating_sub(1));
        Some(self.base.saturating_mul(factor).min(MAX_DELAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_grows_fivefold_up_to_six_hours_then_stops() {
        let schedule = RetrySchedule::default();

        let delays: Vec<Option<u64>> = (1..=8)
            .map(|n| schedule.delay_after(n).map(|d| d.as_secs()))
            .collect();

        assert_eq!(
            delays,
            [
                Some(5),
                Some(25),
                Some(125),
                Some(625),
                Some(3125),
                Some(15625),
                Some(21600),
                None
            ]
        );
    }

    #[test]
    fn a_short_base_scales_the_whole_schedule() {
        let schedule = RetrySchedule {
            base: Duration::from_millis(200),
            max_attempts: 3,
        };

        assert_eq!(schedule.delay_after(1), Some(Duration::from_millis(200)));
        assert_eq!(schedule.delay_after(2), Some(Duration::from_millis(1000)));
        assert_eq!(schedule.delay_after(3), None);
    }

    #[test]
    fn a_huge_attempt_count_neither_overflows_nor_exceeds_the_cap() {
        let schedule = RetrySchedule {
            base: Duration::from_secs(5),
            max_attempts: u32::MAX,
        };

        assert_eq!(schedule.delay_after(u32::MAX - 1), Some(MAX_DELAY));
    }
}
