//! Conductor unit tests: DTMF keys passed to the model.

use super::*;

#[test]
fn a_dtmf_digit_becomes_a_user_text_item_then_a_response_create() {
    let mut call = Call::started();

    let out = call.dtmf(100, "5");

    assert_eq!(
        kinds(&out),
        ["openai:conversation.item.create", "openai:response.create"]
    );
    let events = openai_events(&out);
    assert_eq!(
        events[0]["item"],
        json!({
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "The caller pressed 5"}]
        })
    );
    assert_eq!(events[1], json!({"type": "response.create"}));
}

#[test]
fn the_dtmf_fixture_names_its_digit() {
    let mut call = Call::started();

    let out = call.twilio(100, TWILIO_DTMF);

    assert_eq!(
        openai_events(&out)[0]["item"]["content"][0]["text"],
        "The caller pressed 3"
    );
}

#[test]
fn a_dtmf_digit_during_an_active_response_defers_response_create_until_that_response_is_done() {
    let mut call = Call::started();
    call.response_created(50, RESPONSE_1);

    let during = call.dtmf(100, "5");
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(kinds(&during), ["openai:conversation.item.create"]);
    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
}

#[test]
fn a_dtmf_digit_before_start_is_ignored() {
    let mut call = Call::new(config());

    let out = call.dtmf(100, "5");

    assert!(out.is_empty(), "{out:?}");
}
