//! The time the scheduler and the call service decide by: the system clock in the server, a clock the tests set
//! and move forward, so a call scheduled for tomorrow morning is tested without waiting for it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use time::OffsetDateTime;

/// Tells the current time (UTC).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> OffsetDateTime;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock for tests: it starts at a chosen instant, runs at real speed from there, and jumps forward when told
/// ([`TestClock::advance`]). Cheap to clone; the clones share the time.
#[derive(Debug, Clone)]
pub struct TestClock {
    /// The instant it was set to, and when (monotonic).
    base: Arc<Mutex<(OffsetDateTime, Instant)>>,
}

impl TestClock {
    /// A clock that reads `start` now.
    pub fn starting_at(start: OffsetDateTime) -> TestClock {
        TestClock {
            base: Arc::new(Mutex::new((start, Instant::now()))),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: time::Duration) {
        let mut base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
        base.0 += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        let (start, since) = *self.base.lock().unwrap_or_else(PoisonError::into_inner);
        start + since.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_test_clock_starts_where_it_is_set_and_jumps_when_advanced() {
        let clock = TestClock::starting_at(datetime!(2026-01-15 02:30 UTC));

        let first = clock.now();
        clock.advance(time::Duration::hours(6));
        let later = clock.now();

        assert!(first >= datetime!(2026-01-15 02:30 UTC));
        assert!(first < datetime!(2026-01-15 02:31 UTC));
        assert!(later >= datetime!(2026-01-15 08:30 UTC));
    }
}
