//! Conductor unit tests: Goodbye by phrase (the fallback to `end_call`).

use super::*;

#[test]
fn a_goodbye_phrase_in_the_assistants_transcript_sends_the_final_mark_after_its_response_is_done() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 1000);

    let transcript = call.assistant_said(
        150,
        RESPONSE_1,
        ITEM_1,
        "Thanks for calling the Blue Door, goodbye!",
    );
    let done = call.response_done(200, RESPONSE_1, "completed");
    let echo = call.echo(1200, "g0:s1");

    assert!(transcript.is_empty(), "{transcript:?}");
    assert_eq!(kinds(&done), ["twilio:mark g0:s1"]);
    assert_eq!(echo, [Action::HangUp(EndReason::Goodbye)]);
}

#[test]
fn an_ordinary_reply_does_not_end_the_call() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 1000);

    call.assistant_said(150, RESPONSE_1, ITEM_1, "Sure. For how many people?");
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert!(done.is_empty(), "{done:?}");
}

#[test]
fn a_goodbye_phrase_in_a_cancelled_response_does_not_end_the_call() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(300);

    let transcript = call.assistant_said(
        350,
        RESPONSE_1,
        ITEM_1,
        "Thanks for calling the Blue Door, goodbye!",
    );
    let done = call.response_done(400, RESPONSE_1, "cancelled");
    let tick = call.tick(60_000);

    assert!(transcript.is_empty(), "{transcript:?}");
    assert!(done.is_empty(), "{done:?}");
    assert!(tick.is_empty(), "{tick:?}");
}

#[test]
fn a_caller_goodbye_ends_the_call_after_the_assistants_next_reply() {
    let mut call = Call::started();
    call.caller_said(100, "Okay, that's everything. Bye!");
    call.speak(200, RESPONSE_1, ITEM_1, 800);
    call.assistant_said(
        250,
        RESPONSE_1,
        ITEM_1,
        "You're welcome, enjoy your dinner.",
    );

    let done = call.response_done(300, RESPONSE_1, "completed");
    let echo = call.echo(1000, "g0:s1");

    assert_eq!(kinds(&done), ["twilio:mark g0:s1"]);
    assert_eq!(echo, [Action::HangUp(EndReason::Goodbye)]);
}
