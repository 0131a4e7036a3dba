//! Conductor unit tests: Requests for a response: never two at once, none after the goodbye.

use super::*;

#[test]
fn a_second_request_before_the_first_response_is_created_waits_for_that_response_to_be_done() {
    let mut call = Call::started();
    let first = call.dtmf(100, "1");

    let second = call.dtmf(150, "2");
    call.response_created(200, RESPONSE_1);
    let done = call.response_done(900, RESPONSE_1, "completed");

    assert_eq!(
        kinds(&first),
        ["openai:conversation.item.create", "openai:response.create"]
    );
    assert_eq!(
        kinds(&second),
        ["openai:conversation.item.create"],
        "the first response.create is not answered yet: a second one is rejected with \
         conversation_already_has_active_response"
    );
    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
}

#[test]
fn a_request_after_a_barge_in_waits_for_the_cancelled_response_to_be_done() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(200);

    let during_cancel = call.dtmf(210, "5");
    let done = call.response_done(250, RESPONSE_1, "cancelled");

    assert_eq!(
        kinds(&during_cancel),
        ["openai:conversation.item.create"],
        "the cancelled response stays active until its response.done"
    );
    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
}

#[test]
fn no_response_is_requested_once_the_final_mark_is_sent() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.function_call(50, RESPONSE_1, "call_lookup", "lookup_table", "{}");
    call.function_call(60, RESPONSE_1, "call_end", "end_call", "{}");

    let done = call.response_done(100, RESPONSE_1, "completed");

    assert_eq!(kinds(&done), ["twilio:mark g0:s1"]);
}

#[test]
fn a_request_deferred_behind_the_end_call_response_is_served_by_the_farewell_request() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);
    call.dtmf(50, "5");
    call.function_call(60, RESPONSE_1, "call_end", "end_call", "{}");
    let first_done = call.response_done(100, RESPONSE_1, "completed");
    call.speak(150, RESPONSE_2, ITEM_2, 1000);

    let farewell_done = call.response_done(200, RESPONSE_2, "completed");

    assert_eq!(kinds(&first_done), ["openai:response.create"]);
    assert_eq!(kinds(&farewell_done), ["twilio:mark g0:s1"]);
}

proptest! {
    #[test]
    fn only_the_echo_of_the_final_mark_hangs_up(name in "\\PC{0,24}") {
        let mut call = Call::started();
        let final_mark = call.end_call_then_farewell();
        prop_assume!(name != final_mark);

        let out = call.echo(1000, &name);

        prop_assert!(out.is_empty(), "{:?}", out);
    }
}
