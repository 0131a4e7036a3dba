//! Conductor unit tests: Goodbye by the `end_call` tool.

use super::*;

#[test]
fn end_call_is_answered_with_a_function_call_output_for_its_call_id() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);

    let out = call.openai(150, OPENAI_END_CALL);

    assert_eq!(kinds(&out), ["openai:conversation.item.create"]);
    let item = &openai_events(&out)[0]["item"];
    assert_eq!(item["type"], "function_call_output");
    assert_eq!(item["call_id"], "call_Xy7Qm2Lk9Pz4Rt1v");
    let output = parse_json(item["output"].as_str().expect("output is text"));
    assert_eq!(output["ok"], true);
}

#[test]
fn end_call_in_a_response_without_audio_asks_for_the_farewell_once_that_response_is_done() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");

    let out = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(openai_events(&out), [json!({"type": "response.create"})]);
    assert_eq!(out.len(), 1);
}

#[test]
fn after_the_farewell_response_is_done_a_bare_mark_is_sent() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");
    call.response_done(200, RESPONSE_1, "completed");
    call.response_created(250, RESPONSE_2);
    let audio = call.audio(300, RESPONSE_2, ITEM_2, 1500);

    let out = call.response_done(400, RESPONSE_2, "completed");

    assert_eq!(mark_names(&audio), ["g0:s0"]);
    assert_eq!(
        twilio_frames(&out),
        [json!({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "g0:s1"}})]
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn the_echo_of_the_final_mark_hangs_up_with_goodbye() {
    let mut call = Call::started();
    let final_mark = call.end_call_then_farewell();

    let out = call.echo(1850, &final_mark);

    assert_eq!(out, [Action::HangUp(EndReason::Goodbye)]);
}

#[test]
fn the_echo_of_another_mark_does_not_hang_up() {
    let mut call = Call::started();
    let final_mark = call.end_call_then_farewell();
    assert_ne!(final_mark, "g0:s0");

    let out = call.echo(1800, "g0:s0");

    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn without_the_echo_the_call_hangs_up_at_the_farewell_deadline() {
    let mut call = Call::started();
    call.end_call_then_farewell();
    // At 400 ms, 100 of the 1500 ms sent at 300 ms have played: 1400 ms to go, plus the grace.
    let deadline_ms = 400 + 1400 + FAREWELL_GRACE_MS;

    let early = call.tick(deadline_ms - 1);
    let due = call.tick(deadline_ms);

    assert_eq!(call.conductor.next_deadline(), call.at(deadline_ms));
    assert!(early.is_empty(), "{early:?}");
    assert_eq!(due, [Action::HangUp(EndReason::Goodbye)]);
}

#[test]
fn speech_during_the_farewell_cancels_the_hang_up_on_the_echo_and_at_the_deadline() {
    let mut call = Call::started();
    let final_mark = call.end_call_then_farewell();

    let barge_in = call.speech_started(1000);
    let echo = call.echo(1010, &final_mark);
    let tick = call.tick(400 + 1400 + FAREWELL_GRACE_MS + 1);

    assert_eq!(
        kinds(&barge_in),
        ["twilio:clear", "openai:conversation.item.truncate"]
    );
    assert!(echo.is_empty(), "{echo:?}");
    assert!(tick.is_empty(), "{tick:?}");
    assert_eq!(
        call.conductor.next_deadline(),
        call.at(MAX_CALL_MS),
        "only the maximum duration is left"
    );
}

#[test]
fn speech_while_the_farewell_is_still_being_generated_cancels_it_and_no_final_mark_follows() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");
    call.response_done(200, RESPONSE_1, "completed");
    call.speak(250, RESPONSE_2, ITEM_2, 1500);

    let barge_in = call.speech_started(600);
    let done = call.response_done(650, RESPONSE_2, "cancelled");

    assert_eq!(
        kinds(&barge_in),
        [
            "twilio:clear",
            "openai:response.cancel",
            "openai:conversation.item.truncate"
        ]
    );
    assert!(done.is_empty(), "{done:?}");
}

#[test]
fn end_call_in_a_response_that_spoke_sends_the_final_mark_when_that_response_is_done() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 1200);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");

    let out = call.response_done(200, RESPONSE_1, "completed");
    let echo = call.echo(1400, "g0:s1");

    assert_eq!(kinds(&out), ["twilio:mark g0:s1"]);
    assert_eq!(echo, [Action::HangUp(EndReason::Goodbye)]);
}

#[test]
fn an_end_call_whose_response_is_cancelled_does_not_end_the_call() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");

    let done = call.response_done(200, RESPONSE_1, "cancelled");
    let tick = call.tick(60_000);

    assert!(done.is_empty(), "{done:?}");
    assert!(tick.is_empty(), "{tick:?}");
}

#[test]
fn a_farewell_response_that_is_cancelled_sends_no_final_mark() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");
    call.response_done(200, RESPONSE_1, "completed");
    call.response_created(250, RESPONSE_2);

    let done = call.response_done(300, RESPONSE_2, "cancelled");

    assert!(done.is_empty(), "{done:?}");
    assert_eq!(call.conductor.next_deadline(), call.at(MAX_CALL_MS));
}

#[test]
fn end_call_with_an_outcome_stores_it_on_the_record() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);

    call.openai(150, OPENAI_END_CALL);

    assert_eq!(
        call.conductor.record().outcome.as_deref(),
        Some("Table for 4 booked at 19:30 on Friday.")
    );
}

#[test]
fn end_call_with_arguments_that_are_not_json_stores_no_outcome_but_still_ends_the_call() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 500);

    call.function_call(
        150,
        RESPONSE_1,
        "call_1",
        "end_call",
        "{\"outcome\": \"booked",
    );
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(call.conductor.record().outcome, None);
    assert_eq!(kinds(&done), ["twilio:mark g0:s1"]);
}

#[test]
fn an_unknown_tool_gets_an_error_output_and_a_response_create_only_after_its_response_is_done() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);

    let during = call.function_call(150, RESPONSE_1, "call_7", "lookup_table", "{}");
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(kinds(&during), ["openai:conversation.item.create"]);
    let item = &openai_events(&during)[0]["item"];
    assert_eq!(item["type"], "function_call_output");
    assert_eq!(item["call_id"], "call_7");
    let output = parse_json(item["output"].as_str().expect("output is text"));
    assert_eq!(output["ok"], false);
    assert!(output["error"].is_string(), "{output}");
    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
    assert_eq!(done.len(), 1);
}
