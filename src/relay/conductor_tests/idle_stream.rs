//! Conductor unit tests: The idle stream.

use super::*;

const IDLE_MS: u64 = 5_000;

fn idle_config() -> ConductorConfig {
    ConductorConfig {
        stream_idle_timeout: Duration::from_millis(IDLE_MS),
        ..config()
    }
}

/// A call with a 5 s idle timeout whose stream started at 0 ms.
fn started_with_idle_timeout() -> Call {
    let mut call = Call::new(idle_config());
    let out = call.twilio(0, TWILIO_START);
    assert!(out.is_empty(), "{out:?}");
    call
}

#[test]
fn a_stream_that_sends_nothing_for_the_idle_timeout_is_hung_up_as_stream_idle() {
    let mut call = started_with_idle_timeout();

    let before = call.tick(IDLE_MS - 1);
    let at_timeout = call.tick(IDLE_MS);

    assert!(before.is_empty(), "{before:?}");
    assert_eq!(
        at_timeout,
        [Action::HangUp(EndReason::Error(CallFailure::StreamIdle))]
    );
    let end = call.at(IDLE_MS);
    let record = call
        .conductor
        .finish(EndReason::Error(CallFailure::StreamIdle), end);
    assert_eq!(
        record.end_reason.map(|r| r.to_string()).as_deref(),
        Some("error:stream_idle")
    );
}

#[test]
fn the_next_deadline_is_the_idle_deadline_when_it_comes_before_the_maximum_duration() {
    let call = started_with_idle_timeout();

    assert_eq!(call.conductor.next_deadline(), call.at(IDLE_MS));
}

#[test]
fn every_twilio_event_restarts_the_idle_timer() {
    let mut call = started_with_idle_timeout();
    call.twilio(3_000, TWILIO_MEDIA);
    call.twilio(4_000, &mark_json("unknown-mark"));

    let at_first_timeout = call.tick(IDLE_MS);
    let deadline = call.conductor.next_deadline();
    let at_new_timeout = call.tick(4_000 + IDLE_MS);

    assert!(at_first_timeout.is_empty(), "{at_first_timeout:?}");
    assert_eq!(deadline, call.at(4_000 + IDLE_MS));
    assert_eq!(
        at_new_timeout,
        [Action::HangUp(EndReason::Error(CallFailure::StreamIdle))]
    );
}

#[test]
fn a_skipped_frame_restarts_the_idle_timer_too() {
    let mut call = started_with_idle_timeout();

    call.conductor.on_frame(call.at(3_000));
    let _ = call.conductor.on_skipped_frame(call.at(3_000));
    let at_first_timeout = call.tick(IDLE_MS);

    assert!(at_first_timeout.is_empty(), "{at_first_timeout:?}");
    assert_eq!(call.conductor.next_deadline(), call.at(3_000 + IDLE_MS));
    assert_eq!(call.conductor.record().skipped_frames, 1);
}

#[test]
fn a_stream_that_never_sends_start_is_hung_up_when_idle() {
    let mut call = Call::new(idle_config());

    let out = call.tick(IDLE_MS);

    assert_eq!(
        out,
        [Action::HangUp(EndReason::Error(CallFailure::StreamIdle))]
    );
}

#[test]
fn the_maximum_duration_wins_over_an_idle_timeout_due_at_the_same_instant() {
    let mut call = Call::new(ConductorConfig {
        max_call_duration: Duration::from_millis(IDLE_MS),
        ..idle_config()
    });
    call.twilio(0, TWILIO_START);

    let out = call.tick(IDLE_MS);

    assert_eq!(out, [Action::HangUp(EndReason::MaxDuration)]);
}

proptest! {
    #[test]
    fn a_stream_is_never_hung_up_as_idle_while_frames_arrive_within_the_timeout(
        gaps_ms in proptest::collection::vec(0..IDLE_MS, 1..20),
    ) {
        let mut call = started_with_idle_timeout();
        let mut now_ms = 0;

        let mut hang_ups = Vec::new();
        for gap_ms in gaps_ms {
            now_ms += gap_ms;
            hang_ups.extend(call.tick(now_ms));
            let forwarded = call.twilio(now_ms, TWILIO_MEDIA);
            hang_ups.extend(forwarded.into_iter().filter(|a| matches!(a, Action::HangUp(_))));
        }

        prop_assert!(hang_ups.is_empty(), "{:?}", hang_ups);
    }
}
