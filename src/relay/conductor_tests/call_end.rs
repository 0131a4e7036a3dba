//! Conductor unit tests: The end of the call.

use super::*;

#[test]
fn stop_hangs_up_as_caller_hung_up() {
    let mut call = Call::started();

    let out = call.twilio(5000, TWILIO_STOP);

    assert_eq!(out, [Action::HangUp(EndReason::CallerHungUp)]);
}

#[test]
fn the_maximum_duration_is_the_next_deadline_and_on_tick_then_hangs_up_with_max_duration() {
    let mut call = Call::started();

    let before = call.tick(MAX_CALL_MS - 1);
    let at_max = call.tick(MAX_CALL_MS);

    assert_eq!(call.conductor.next_deadline(), call.at(MAX_CALL_MS));
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(at_max, [Action::HangUp(EndReason::MaxDuration)]);
}

#[test]
fn the_maximum_duration_wins_over_a_later_farewell_deadline() {
    let mut call = Call::new(ConductorConfig {
        max_call_duration: Duration::from_millis(1000),
        ..config()
    });
    call.twilio(0, TWILIO_START);
    call.end_call_then_farewell();

    let out = call.tick(1000);

    assert_eq!(call.conductor.next_deadline(), call.at(1000));
    assert_eq!(out, [Action::HangUp(EndReason::MaxDuration)]);
}

#[test]
fn a_fatal_error_hangs_up_with_its_code() {
    let mut call = Call::started();

    let out = call.openai(
        100,
        &error_json("invalid_api_key", "Incorrect API key provided."),
    );

    assert_eq!(
        out,
        [Action::HangUp(EndReason::Error(CallFailure::OpenAiFatal(
            "invalid_api_key".into()
        )))]
    );
}

#[test]
fn response_cancel_not_active_and_other_request_errors_do_nothing() {
    let mut call = Call::started();

    let not_active = call.openai(
        100,
        &error_json(
            "response_cancel_not_active",
            "Cancellation failed: no active response found",
        ),
    );
    let already_active = call.openai(110, OPENAI_ERROR);

    assert!(not_active.is_empty(), "{not_active:?}");
    assert!(already_active.is_empty(), "{already_active:?}");
}

#[test]
fn a_hang_up_request_ends_the_call_as_hung_up_by_api() {
    let mut call = Call::started();
    let mut out = Vec::new();

    call.conductor.on_hang_up_request(&mut out);

    assert_eq!(out, [Action::HangUp(EndReason::HungUpByApi)]);
}

#[test]
fn an_instruction_becomes_a_system_text_item() {
    let mut call = Call::started();
    let mut out = Vec::new();

    call.conductor
        .on_instruction("Ask whether they need a high chair.", &mut out);

    assert_eq!(
        openai_events(&out),
        [json!({
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": "Ask whether they need a high chair."}]
            }
        })]
    );
}

#[test]
fn events_the_conductor_has_no_use_for_do_nothing() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);

    let out: Vec<Action> = [
        call.twilio(10, TWILIO_UNKNOWN),
        call.twilio(10, TWILIO_CONNECTED),
        call.openai(10, OPENAI_UNKNOWN),
        call.openai(10, OPENAI_RATE_LIMITS),
        call.openai(10, OPENAI_SESSION_UPDATED),
        call.openai(10, OPENAI_SPEECH_STOPPED),
        call.openai(10, OPENAI_OUTPUT_AUDIO_DONE),
        call.openai(10, OPENAI_ITEM_TRUNCATED),
    ]
    .concat();

    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn skipped_frames_are_counted_on_the_record() {
    let mut call = Call::started();

    let _ = call.conductor.on_skipped_frame(call.at(0));
    let _ = call.conductor.on_skipped_frame(call.at(0));

    assert_eq!(call.conductor.record().skipped_frames, 2);
}
