//! Budgets: how much of something a call's peers may make the relay do (log lines, DTMF items for the model).
//!
//! A [`Budget`] is a token bucket with integer arithmetic and no clock of its own: the first `burst` requests pass at
//! once, then one more per `refill` interval, and every refused request is counted so that the next one that passes
//! can say how many were held back. Time is passed in as an argument, as the conductor does, so tests drive it with
//! hand-made instants.
//!
//! [`LogBudgets`] holds one budget per kind of log line a peer can provoke (a malformed frame, a repeated `start`, an
//! OpenAI `error` event, ...): a peer flooding one kind cannot hide another, and a call writes at most
//! [`LOG_BURST`] lines of each kind at once and then one per [`LOG_REFILL`] (a one-hour call: at most 365 of each).

use std::time::{Duration, Instant};

/// Log lines of one kind a call may write at once.
pub const LOG_BURST: u32 = 5;
/// Once the burst is spent, one more log line of that kind per this interval.
pub const LOG_REFILL: Duration = Duration::from_secs(10);

/// A token bucket: `burst` requests at once, then one per `refill`; refused requests are counted.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Requests that may pass at once (the bucket's size).
    burst: u32,
    /// One token comes back per this interval, up to `burst`.
    refill: Duration,
    /// Tokens left.
    tokens: u32,
    /// The instant from which the next token is being earned; `None` before the first request.
    earning_since: Option<Instant>,
    /// Requests refused since the last one that passed.
    refused_since_last: u64,
    /// Requests refused in all.
    refused_total: u64,
}

impl Budget {
    /// A full bucket of `burst` tokens that earns one back per `refill`. A zero `refill` refills at once (the budget
    /// never runs out); a zero `burst` refuses everything.
    pub const fn new(burst: u32, refill: Duration) -> Self {
        Budget {
            burst,
            refill,
            tokens: burst,
            earning_since: None,
            refused_since_last: 0,
            refused_total: 0,
        }
    }

    /// Asks for one token at `now`.
    ///
    /// Returns `Some(refused)` when the request passes, `refused` being how many requests were refused since the
    /// previous one that passed (report it with the log line); `None` when it is refused (it is counted). An
    /// instant earlier than a previous one counts as no time passed. No allocation.
    pub fn take(&mut self, now: Instant) -> Option<u64> {
        self.refill_at(now);
        if self.tokens == 0 {
            self.refused_since_last += 1;
            self.refused_total += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.refused_since_last))
    }

    /// Requests refused since the budget was made.
    pub fn refused_total(&self) -> u64 {
        self.refused_total
    }

    /// Adds the tokens earned between `earning_since` and `now`; the part of an interval already earned is kept.
    fn refill_at(&mut self, now: Instant) {
        let Some(since) = self.earning_since else {
            self.earning_since = Some(now);
            return;
        };
        if self.tokens >= self.burst {
            // A full bucket earns nothing: the next token is earned from now on.
            self.earning_since = Some(now);
            return;
        }
        if self.refill.is_zero() {
            self.tokens = self.burst;
            self.earning_since = Some(now);
            return;
        }
        let elapsed = now.saturating_duration_since(since);
        let earned = elapsed.as_nanos() / self.refill.as_nanos();
        if earned == 0 {
            return;
        }
        let missing = self.burst - self.tokens;
        if earned >= u128::from(missing) {
            self.tokens = self.burst;
            self.earning_since = Some(now);
        } else {
            // `earned < missing <= u32::MAX`, so both conversions are exact.
            let earned = u32::try_from(earned).expect("earned is below a u32 here");
            self.tokens += earned;
            self.earning_since = Some(since + self.refill * earned);
        }
    }
}

/// One [`Budget`] of [`LOG_BURST`] lines then one per [`LOG_REFILL`] for each kind of log line a call's peers can
/// provoke. Each field names the line it admits.
#[derive(Debug, Clone)]
pub struct LogBudgets {
    /// "malformed / binary / oversized Twilio frame skipped" (an invalid DTMF digit included).
    pub skipped_frame: Budget,
    /// "malformed OpenAI event skipped".
    pub malformed_openai_event: Budget,
    /// "caller pressed a key" (digits forwarded to the model).
    pub dtmf: Budget,
    /// "DTMF over the rate limit dropped".
    pub dtmf_dropped: Budget,
    /// "second start message ignored".
    pub repeated_start: Budget,
    /// "stop for another CallSid or StreamSid ignored".
    pub foreign_stop: Budget,
    /// "OpenAI Realtime error" (non-fatal `error` events).
    pub openai_error: Budget,
    /// "unknown Twilio event ignored" (debug level).
    pub unknown_event: Budget,
}

impl Default for LogBudgets {
    fn default() -> Self {
        let budget = Budget::new(LOG_BURST, LOG_REFILL);
        LogBudgets {
            skipped_frame: budget.clone(),
            malformed_openai_event: budget.clone(),
            dtmf: budget.clone(),
            dtmf_dropped: budget.clone(),
            repeated_start: budget.clone(),
            foreign_stop: budget.clone(),
            openai_error: budget.clone(),
            unknown_event: budget,
        }
    }
}

/// Most bytes of peer-sent text (an error message, a CallSid, an event name) that one log line carries.
pub const LOGGED_TEXT_MAX_BYTES: usize = 200;

/// At most [`LOGGED_TEXT_MAX_BYTES`] of `text`, cut at a character boundary: peer-sent text in a log line.
pub fn clip(text: &str) -> &str {
    if text.len() <= LOGGED_TEXT_MAX_BYTES {
        return text;
    }
    let mut end = LOGGED_TEXT_MAX_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn the_first_burst_passes_at_once_and_the_next_request_is_refused() {
        let start = Instant::now();
        let mut budget = Budget::new(3, SECOND);

        let passed: Vec<Option<u64>> = (0..4).map(|_| budget.take(start)).collect();

        assert_eq!(passed, [Some(0), Some(0), Some(0), None]);
        assert_eq!(budget.refused_total(), 1);
    }

    #[test]
    fn one_request_passes_per_refill_interval_once_the_burst_is_spent() {
        let start = Instant::now();
        let mut budget = Budget::new(1, SECOND);
        budget.take(start);

        let before_the_interval = budget.take(at(start, 999));
        let at_the_interval = budget.take(at(start, 1000));
        let right_after = budget.take(at(start, 1001));

        assert_eq!(before_the_interval, None);
        assert_eq!(at_the_interval, Some(1));
        assert_eq!(right_after, None);
    }

    #[test]
    fn the_request_that_passes_reports_how_many_were_refused_since_the_last_one() {
        let start = Instant::now();
        let mut budget = Budget::new(1, SECOND);
        budget.take(start);
        for _ in 0..41 {
            budget.take(at(start, 500));
        }

        let next = budget.take(at(start, 1000));
        let after_that = budget.take(at(start, 2000));

        assert_eq!(next, Some(41));
        assert_eq!(after_that, Some(0));
        assert_eq!(budget.refused_total(), 41);
    }

    #[test]
    fn a_long_pause_refills_the_burst_but_never_more() {
        let start = Instant::now();
        let mut budget = Budget::new(3, SECOND);
        for _ in 0..3 {
            budget.take(start);
        }

        let after_an_hour: Vec<Option<u64>> =
            (0..4).map(|_| budget.take(at(start, 3_600_000))).collect();

        assert_eq!(after_an_hour, [Some(0), Some(0), Some(0), None]);
    }

    #[test]
    fn time_already_earned_towards_the_next_token_is_kept() {
        let start = Instant::now();
        let mut budget = Budget::new(2, SECOND);
        budget.take(start);
        budget.take(start);

        // 1.5 s: one token earned, half of the next one too.
        let first = budget.take(at(start, 1500));
        let second = budget.take(at(start, 2000));

        assert_eq!(first, Some(0));
        assert_eq!(second, Some(0));
    }

    #[test]
    fn an_earlier_instant_counts_as_no_time_passed() {
        let start = Instant::now();
        let mut budget = Budget::new(1, SECOND);
        budget.take(at(start, 5000));

        let earlier = budget.take(start);

        assert_eq!(earlier, None);
    }

    #[test]
    fn a_zero_burst_refuses_everything_and_a_zero_refill_never_runs_out() {
        let start = Instant::now();
        let mut closed = Budget::new(0, SECOND);
        let mut unlimited = Budget::new(2, Duration::ZERO);

        let closed_after_an_hour = closed.take(at(start, 3_600_000));
        let all_at_once: Vec<Option<u64>> = (0..10).map(|_| unlimited.take(start)).collect();

        assert_eq!(closed_after_an_hour, None);
        assert_eq!(all_at_once, [Some(0); 10]);
    }

    proptest! {
        /// Whatever the arrival pattern, no more than `burst + elapsed / refill` requests pass.
        #[test]
        fn never_more_pass_than_the_burst_plus_one_per_elapsed_interval(
            gaps_ms in proptest::collection::vec(0u64..700, 1..400),
            burst in 0u32..8,
            refill_ms in 1u64..1000,
        ) {
            let start = Instant::now();
            let mut budget = Budget::new(burst, Duration::from_millis(refill_ms));
            let mut now_ms = 0;
            let mut passed = 0u64;

            for gap_ms in &gaps_ms {
                now_ms += gap_ms;
                if budget.take(at(start, now_ms)).is_some() {
                    passed += 1;
                }
            }

            prop_assert!(passed <= u64::from(burst) + now_ms / refill_ms, "{} passed", passed);
            prop_assert_eq!(passed + budget.refused_total(), gaps_ms.len() as u64);
        }
    }
}
