//! Conductor unit tests: The stream start and the caller's audio.

use super::*;

#[test]
fn caller_media_before_start_is_not_forwarded() {
    let mut call = Call::new(config());

    let out = call.twilio(0, TWILIO_MEDIA);

    assert!(out.is_empty(), "{out:?}");
    assert!(!call.conductor.stream_started());
}

#[test]
fn caller_media_after_start_becomes_exactly_an_input_audio_buffer_append_of_the_same_payload() {
    let mut call = Call::started();
    let payload = parse_json(TWILIO_MEDIA)["media"]["payload"].clone();
    assert!(payload.as_str().is_some_and(|p| !p.is_empty()));

    let out = call.twilio(20, TWILIO_MEDIA);

    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        openai_events(&out),
        [json!({"type": "input_audio_buffer.append", "audio": payload})]
    );
}

#[test]
fn a_start_whose_call_sid_differs_from_the_configured_one_ends_the_call_with_call_sid_mismatch() {
    let mut call = Call::new(config());

    let out = call.twilio(0, &start_json("CA00000000000000000000000000000001"));

    assert_eq!(
        out,
        [Action::HangUp(EndReason::Error(
            CallFailure::CallSidMismatch
        ))]
    );
    assert!(!call.conductor.stream_started());
    assert!(call.twilio(20, TWILIO_MEDIA).is_empty());
}

#[test]
fn a_start_with_the_configured_call_sid_starts_the_stream_and_records_its_stream_sid() {
    let mut call = Call::new(config());
    assert!(call.twilio(0, TWILIO_CONNECTED).is_empty());

    let out = call.twilio(0, TWILIO_START);

    assert!(out.is_empty(), "{out:?}");
    assert!(call.conductor.stream_started());
    assert_eq!(
        call.conductor.record().stream_sid.as_deref(),
        Some(STREAM_SID)
    );
}

#[test]
fn a_second_start_is_ignored_even_with_another_call_sid() {
    let mut call = Call::started();

    let out = call.twilio(10, &start_json("CA00000000000000000000000000000001"));

    assert!(out.is_empty(), "{out:?}");
    assert!(call.conductor.stream_started());
    assert_eq!(call.conductor.record().dropped.repeated_starts, 1);
}

#[test]
fn when_the_assistant_speaks_first_start_sends_a_system_item_with_the_greeting_then_response_create()
 {
    let mut call = Call::new(ConductorConfig {
        assistant_speaks_first: true,
        ..config()
    });

    let out = call.twilio(0, TWILIO_START);

    assert_eq!(
        kinds(&out),
        ["openai:conversation.item.create", "openai:response.create"]
    );
    let events = openai_events(&out);
    let item = &events[0]["item"];
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "system");
    assert_eq!(item["content"][0]["type"], "input_text");
    let text = item["content"][0]["text"].as_str().expect("a text part");
    assert!(text.contains(GREETING), "{text}");
    assert_eq!(events[1], json!({"type": "response.create"}));
}

#[test]
fn when_the_assistant_does_not_speak_first_start_sends_nothing_to_openai() {
    let mut call = Call::new(config());

    let out = call.twilio(0, TWILIO_START);

    assert!(openai_events(&out).is_empty(), "{out:?}");
}
