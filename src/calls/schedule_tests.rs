//! Unit tests of the call window and the retry plan: local hours in real time zones, with fixed instants.

use time::macros::datetime;

use super::*;

fn berlin_office() -> CallWindow {
    CallWindow::parse("09:00-18:00 Europe/Berlin").expect("a valid window")
}

#[test]
fn a_call_at_night_in_the_windows_time_zone_is_moved_to_the_morning() {
    // 02:30 UTC on 15 January is 03:30 in Berlin (UTC+1 in winter).
    let night = datetime!(2026-01-15 02:30 UTC);

    let due = berlin_office().next_open(night);

    assert_eq!(due, datetime!(2026-01-15 08:00 UTC), "09:00 Berlin time");
}

#[test]
fn a_call_after_the_window_closes_is_moved_to_the_next_morning() {
    // 18:00 UTC on 10 July is 20:00 in Berlin (UTC+2 in summer).
    let evening = datetime!(2026-07-10 18:00 UTC);

    let due = berlin_office().next_open(evening);

    assert_eq!(
        due,
        datetime!(2026-07-11 07:00 UTC),
        "09:00 Berlin summer time"
    );
}

#[test]
fn a_call_inside_the_window_is_due_at_once() {
    let noon = datetime!(2026-01-15 11:00 UTC);

    assert!(berlin_office().contains(noon));
    assert_eq!(berlin_office().next_open(noon), noon);
}

#[test]
fn the_windows_end_is_exclusive() {
    // 18:00 Berlin in winter is 17:00 UTC.
    let closing = datetime!(2026-01-15 17:00 UTC);

    assert!(!berlin_office().contains(closing));
    assert_eq!(
        berlin_office().next_open(closing),
        datetime!(2026-01-16 08:00 UTC)
    );
}

#[test]
fn a_window_over_midnight_is_open_late_and_early() {
    let night_shift = CallWindow::parse("22:00-06:00 UTC").expect("valid");

    assert!(night_shift.contains(datetime!(2026-03-01 23:30 UTC)));
    assert!(night_shift.contains(datetime!(2026-03-01 05:59 UTC)));
    assert_eq!(
        night_shift.next_open(datetime!(2026-03-01 12:00 UTC)),
        datetime!(2026-03-01 22:00 UTC)
    );
}

#[test]
fn a_start_in_the_spring_forward_gap_moves_past_the_gap() {
    // On 29 March 2026 Berlin skips from 02:00 to 03:00; 02:30 does not exist that day.
    let window = CallWindow::parse("02:30-04:00 Europe/Berlin").expect("valid");
    // 23:00 UTC on the 28th is 00:00 Berlin (UTC+1).
    let before = datetime!(2026-03-28 23:00 UTC);

    let due = window.next_open(before);

    assert_eq!(
        due,
        datetime!(2026-03-29 01:30 UTC),
        "03:30 Berlin summer time"
    );
}

#[test]
fn bad_windows_are_refused_with_what_is_wrong() {
    let cases = [
        ("09:00-18:00", "HH:MM-HH:MM Time/Zone"),
        ("9-18 Europe/Berlin", "HH:MM-HH:MM Time/Zone"),
        ("09:00-25:00 Europe/Berlin", "HH:MM-HH:MM Time/Zone"),
        ("09:00-18:00 Europe/Atlantis", "not an IANA time zone"),
        ("09:00-09:00 Europe/Berlin", "empty"),
        ("09:00-18:00 Europe/Berlin extra", "HH:MM-HH:MM Time/Zone"),
    ];

    for (text, expected) in cases {
        let error = CallWindow::parse(text).expect_err(text);
        assert!(error.0.contains(expected), "{text}: {error}");
    }
}

#[test]
fn a_retry_follows_a_listed_result_until_the_attempts_are_used() {
    let plan = RetryPlan {
        max_attempts: 3,
        backoff_s: 60,
        retry_on: vec![RetryOn::Busy],
    };

    assert!(plan.retries("busy", 1));
    assert!(plan.retries("busy", 2));
    assert!(!plan.retries("busy", 3), "three attempts made");
    assert!(!plan.retries("no-answer", 1), "not listed");
    assert!(!plan.retries("completed", 1));
    assert!(!plan.retries("canceled", 1));
}

#[test]
fn the_next_attempt_waits_the_backoff_then_the_window() {
    let plan = RetryPlan {
        max_attempts: 2,
        backoff_s: 600,
        retry_on: vec![RetryOn::Busy],
    };
    // 16:55 Berlin in winter: the backoff ends at 17:05, after the window.
    let ended = datetime!(2026-01-15 15:55 UTC);

    assert_eq!(
        retry_at(ended, &plan, None),
        datetime!(2026-01-15 16:05 UTC)
    );
    assert_eq!(
        retry_at(ended, &plan, Some(&berlin_office())),
        datetime!(2026-01-15 16:05 UTC),
        "17:05 Berlin is inside 09:00-18:00"
    );
    let late = datetime!(2026-01-15 16:55 UTC);
    assert_eq!(
        retry_at(late, &plan, Some(&berlin_office())),
        datetime!(2026-01-16 08:00 UTC)
    );
}

#[test]
fn the_first_attempt_is_due_at_not_before_inside_the_window() {
    let now = datetime!(2026-01-15 10:00 UTC);

    assert_eq!(first_attempt_at(now, None, None), now);
    assert_eq!(
        first_attempt_at(now, Some(datetime!(2026-01-15 09:00 UTC)), None),
        now,
        "a time past is now"
    );
    assert_eq!(
        first_attempt_at(
            now,
            Some(datetime!(2026-01-15 20:00 UTC)),
            Some(&berlin_office())
        ),
        datetime!(2026-01-16 08:00 UTC)
    );
}

#[test]
fn retry_limits_are_checked_and_defaults_fill_an_empty_retry() {
    let empty: RetryPlan = serde_json::from_str("{}").expect("every field defaults");
    let too_many = RetryPlan {
        max_attempts: MAX_ATTEMPTS + 1,
        ..empty.clone()
    };
    let no_wait = RetryPlan {
        backoff_s: 0,
        ..empty.clone()
    };

    assert_eq!(empty.max_attempts, DEFAULT_MAX_ATTEMPTS);
    assert_eq!(empty.retry_on, [RetryOn::Busy, RetryOn::NoAnswer]);
    assert!(empty.validate().is_ok());
    assert!(too_many.validate().is_err());
    assert!(no_wait.validate().is_err());
    assert!(
        serde_json::from_str::<RetryPlan>(r#"{"retry_on":["completed"]}"#).is_err(),
        "completed is never retried"
    );
}

#[test]
fn not_before_more_than_thirty_days_ahead_is_refused() {
    let now = datetime!(2026-01-15 10:00 UTC);

    assert!(check_not_before(now + time::Duration::days(29), now).is_ok());
    assert!(check_not_before(now + time::Duration::days(31), now).is_err());
}
