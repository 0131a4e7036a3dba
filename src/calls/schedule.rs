//! When a scheduled or retried outbound call may be dialled: the retry plan (`retry`: how many attempts, how long
//! between them, which results are worth another try), the earliest start (`not_before`, RFC 3339) and the call window
//! (local hours in an IANA time zone, `09:00-18:00 Europe/Berlin`). Plain types and functions of time: the store
//! asks them when the next attempt is due, the scheduler ([`crate::calls::scheduler`]) places attempts once due.
//!
//! Local times are converted with `jiff` and its time zone database (the system's `/usr/share/zoneinfo` when
//! present, else the copy bundled with the binary). A start time that falls in a daylight-saving gap moves to the
//! first instant after the gap. The attempt results follow Twilio's terminal call statuses
//! (<https://www.twilio.com/docs/voice/api/call-resource#call-status-values>).

use std::fmt;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The most attempts one call may make (the first one included).
pub const MAX_ATTEMPTS: u32 = 10;
/// The longest wait between two attempts, seconds (one day).
pub const MAX_BACKOFF_S: u64 = 86_400;
/// The wait between two attempts when `retry` does not say, seconds.
pub const DEFAULT_BACKOFF_S: u64 = 300;
/// The attempts a `retry` without `max_attempts` makes.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// How far ahead `not_before` may be (30 days).
pub const MAX_SCHEDULE_AHEAD: time::Duration = time::Duration::days(30);

/// A request's `retry`, `not_before` or `call_window` that cannot be used; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

/// An attempt's result that may be worth another try: Twilio's terminal statuses `busy`, `no-answer`, `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The line was busy.
    Busy,
    /// Nobody answered within the ring timeout.
    NoAnswer,
    /// Twilio could not place the call (or refused to).
    Failed,
}

impl RetryOn {
    /// The result of an attempt that ended with Twilio's status `status` (`busy`, `no-answer`, `failed`); `None`
    /// for every other status (`completed` and `canceled` are never retried).
    pub fn from_status(status: &str) -> Option<RetryOn> {
        match status {
            "busy" => Some(RetryOn::Busy),
            "no-answer" => Some(RetryOn::NoAnswer),
            "failed" => Some(RetryOn::Failed),
            _ => None,
        }
    }
}

/// A call's `retry`: `{ "max_attempts": 3, "backoff_s": 300, "retry_on": ["busy", "no-answer"] }`. Every field is
/// optional (defaults: [`DEFAULT_MAX_ATTEMPTS`], [`DEFAULT_BACKOFF_S`], `busy` and `no-answer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RetryPlan {
    /// How many attempts in all, the first one included (1 to [`MAX_ATTEMPTS`]).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Seconds from the end of an attempt to the next one (1 to [`MAX_BACKOFF_S`]); the call window may push it
    /// later.
    #[serde(default = "default_backoff_s")]
    pub backoff_s: u64,
    /// Which results count as worth another try: any of `busy`, `no-answer`, `failed`.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOn>,
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

fn default_backoff_s() -> u64 {
    DEFAULT_BACKOFF_S
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::Busy, RetryOn::NoAnswer]
}

impl Default for RetryPlan {
    /// No retry: one attempt.
    fn default() -> Self {
        RetryPlan {
            max_attempts: 1,
            backoff_s: DEFAULT_BACKOFF_S,
            retry_on: Vec::new(),
        }
    }
}

impl RetryPlan {
    /// Checks the limits.
    ///
    /// # Errors
    /// [`ScheduleError`] for `max_attempts` outside 1..=[`MAX_ATTEMPTS`] or `backoff_s` outside
    /// 1..=[`MAX_BACKOFF_S`].
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ScheduleError(format!(
                "retry.max_attempts must be between 1 and {MAX_ATTEMPTS} (it counts the first attempt)"
            )));
        }
        if !(1..=MAX_BACKOFF_S).contains(&self.backoff_s) {
            return Err(ScheduleError(format!(
                "retry.backoff_s must be between 1 and {MAX_BACKOFF_S} seconds"
            )));
        }
        Ok(())
    }

    /// Whether an attempt that ended with Twilio's status `status`, after `attempts_made` attempts in all, is
    /// followed by another one.
    pub fn retries(&self, status: &str, attempts_made: u32) -> bool {
        attempts_made < self.max_attempts
            && RetryOn::from_status(status).is_some_and(|result| self.retry_on.contains(&result))
    }
}

/// Local hours in an IANA time zone during which a call may start: `"09:00-18:00 Europe/Berlin"`. A window whose
/// end is before its start runs over midnight (`"22:00-06:00 UTC"`). The end is exclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct CallWindow {
    /// The first local time a call may start.
    start: Time,
    /// The local time from which no call starts.
    end: Time,
    /// The time zone the hours are in.
    zone: TimeZone,
    /// The window as given, for the record.
    text: String,
}

impl fmt::Display for CallWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl CallWindow {
    /// Parses `HH:MM-HH:MM Zone/Name` (24-hour local times, an IANA time zone name such as `Europe/Berlin`,
    /// `America/New_York` or `UTC`).
    ///
    /// # Errors
    /// [`ScheduleError`] saying what is wrong: the shape, a time, an unknown time zone, or an empty window.
    pub fn parse(text: &str) -> Result<CallWindow, ScheduleError> {
        let shape = || {
            ScheduleError(format!(
                "call_window {text:?} is not \"HH:MM-HH:MM Time/Zone\" (e.g. \"09:00-18:00 Europe/Berlin\")"
            ))
        };
        let mut parts = text.split_whitespace();
        let (Some(hours), Some(zone_name), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(shape());
        };
        let (start, end) = hours.split_once('-').ok_or_else(shape)?;
        let start = parse_hh_mm(start).ok_or_else(shape)?;
        let end = parse_hh_mm(end).ok_or_else(shape)?;
        if start == end {
            return Err(ScheduleError(format!(
                "call_window {text:?} is empty: its start and end are the same time"
            )));
        }
        let zone = TimeZone::get(zone_name).map_err(|_| {
            ScheduleError(format!(
                "call_window {text:?}: {zone_name:?} is not an IANA time zone name (e.g. Europe/Berlin, \
                 America/New_York, UTC)"
            ))
        })?;
        Ok(CallWindow {
            start,
            end,
            zone,
            text: format!("{hours} {zone_name}"),
        })
    }

    /// Whether the local time of `at` is inside the window.
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        match self.local(at) {
            Some(zoned) => self.contains_time(zoned.time()),
            None => true,
        }
    }

    /// `at` when it is inside the window, else the next start of the window after `at` (today's when `at` is
    /// before it in local time, else tomorrow's). An instant the time zone database cannot place (beyond year
    /// 9999) is returned unchanged.
    pub fn next_open(&self, at: OffsetDateTime) -> OffsetDateTime {
        let Some(zoned) = self.local(at) else {
            return at;
        };
        let time = zoned.time();
        if self.contains_time(time) {
            return at;
        }
        let date = if time < self.start {
            Some(zoned.date())
        } else {
            zoned.date().tomorrow().ok()
        };
        date.and_then(|date| {
            date.to_datetime(self.start)
                .to_zoned(self.zone.clone())
                .ok()
        })
        .and_then(|start| from_jiff(start.timestamp()))
        .unwrap_or(at)
    }

    fn contains_time(&self, time: Time) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }

    fn local(&self, at: OffsetDateTime) -> Option<jiff::Zoned> {
        let timestamp = jiff::Timestamp::from_nanosecond(at.unix_timestamp_nanos()).ok()?;
        Some(timestamp.to_zoned(self.zone.clone()))
    }
}

/// `HH:MM`, 24-hour.
fn parse_hh_mm(text: &str) -> Option<Time> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i8 = hours.parse().ok()?;
    let minutes: i8 = minutes.parse().ok()?;
    Time::new(hours, minutes, 0, 0).ok()
}

fn from_jiff(timestamp: jiff::Timestamp) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(timestamp.as_nanosecond()).ok()
}

/// When a scheduled call's first attempt is due: now, or `not_before` when later, moved into the call window.
pub fn first_attempt_at(
    now: OffsetDateTime,
    not_before: Option<OffsetDateTime>,
    window: Option<&CallWindow>,
) -> OffsetDateTime {
    let earliest = not_before.map_or(now, |not_before| not_before.max(now));
    window.map_or(earliest, |window| window.next_open(earliest))
}

/// When the attempt after one that ended at `ended_at` is due: `backoff_s` later, moved into the call window.
pub fn retry_at(
    ended_at: OffsetDateTime,
    plan: &RetryPlan,
    window: Option<&CallWindow>,
) -> OffsetDateTime {
    let backoff = time::Duration::seconds(i64::try_from(plan.backoff_s).unwrap_or(i64::MAX));
    let earliest = ended_at.saturating_add(backoff);
    window.map_or(earliest, |window| window.next_open(earliest))
}

/// Checks a request's `not_before` against `now`: at most [`MAX_SCHEDULE_AHEAD`] ahead (a time in the past means
/// now).
///
/// # Errors
/// [`ScheduleError`] for a time too far ahead.
pub fn check_not_before(
    not_before: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), ScheduleError> {
    if not_before > now + MAX_SCHEDULE_AHEAD {
        return Err(ScheduleError(format!(
            "not_before is more than {} days ahead",
            MAX_SCHEDULE_AHEAD.whole_days()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
