//! Conductor unit tests: keypad tones out and the stream handover they need.

use super::*;
use crate::relay::handover::CallUpdate;
use crate::twilio::dtmf::DtmfDigits;

const NEW_STREAM_SID: &str = "MZ11111111111111111111111111111111";

fn new_start_json() -> String {
    start_json(CALL_SID).replace(STREAM_SID, NEW_STREAM_SID)
}

fn stop_json() -> String {
    TWILIO_STOP.to_owned()
}

/// A started call whose model pressed `1` at 1000 ms; returns the actions of that function call.
fn pressed_one() -> (Call, Vec<Action>) {
    let mut call = Call::started();
    call.response_created(900, RESPONSE_1);
    let out = call.function_call(
        1_000,
        RESPONSE_1,
        "call_dtmf_1",
        "send_dtmf",
        r#"{"digits":"1"}"#,
    );
    (call, out)
}

#[test]
fn send_dtmf_asks_for_a_call_update_answers_the_tool_and_notes_the_keypress_in_the_transcript() {
    let (call, out) = pressed_one();

    assert!(out.contains(&Action::UpdateCall(CallUpdate::PlayDigits(
        DtmfDigits::parse("1").expect("valid")
    ))));
    let outputs = openai_events_of_type(&out, "conversation.item.create");
    assert_eq!(outputs[0]["item"]["type"], "function_call_output");
    assert_eq!(outputs[0]["item"]["call_id"], "call_dtmf_1");
    assert!(
        outputs[0]["item"]["output"]
            .as_str()
            .unwrap_or("")
            .contains("\"ok\":true")
    );
    let turn = call.conductor.record().turns.last().expect("a turn");
    assert_eq!(
        (turn.speaker, turn.text.as_str()),
        (Speaker::Action, "pressed 1")
    );
}

#[test]
fn send_dtmf_with_a_phone_number_or_bad_keys_is_refused_and_nothing_is_pressed() {
    let mut call = Call::started();
    call.response_created(900, RESPONSE_1);
    let out = call.function_call(
        1_000,
        RESPONSE_1,
        "c1",
        "send_dtmf",
        r#"{"digits":"+14155550100"}"#,
    );

    assert!(
        !out.iter().any(|a| matches!(a, Action::UpdateCall(_))),
        "{out:?}"
    );
    let output = &openai_events_of_type(&out, "conversation.item.create")[0]["item"]["output"];
    assert!(
        output.as_str().unwrap_or("").contains("\"ok\":false"),
        "{output}"
    );
}

#[test]
fn the_old_streams_stop_during_a_handover_does_not_end_the_call() {
    let (mut call, _) = pressed_one();

    let out = call.twilio(1_200, &stop_json());

    assert!(
        !out.iter().any(|a| matches!(a, Action::HangUp(_))),
        "{out:?}"
    );
    assert!(call.conductor.awaiting_stream());
}

#[test]
fn a_stop_without_a_handover_still_ends_the_call() {
    let mut call = Call::started();

    let out = call.twilio(1_200, &stop_json());

    assert_eq!(out, [Action::HangUp(EndReason::CallerHungUp)]);
}

#[test]
fn the_new_stream_continues_the_call_in_a_new_ledger_generation_and_records_the_handover_and_its_gap()
 {
    let (mut call, _) = pressed_one();
    call.twilio(1_100, TWILIO_MEDIA);
    call.twilio(1_200, &stop_json());

    let started = call.twilio(2_000, &new_start_json());
    let media = call.twilio(2_300, TWILIO_MEDIA);
    call.response_created(2_400, RESPONSE_2);
    let delta = call.audio(2_400, RESPONSE_2, ITEM_2, 200);

    assert!(
        started.is_empty(),
        "no greeting, nothing re-sent: {started:?}"
    );
    assert_eq!(
        openai_events_of_type(&media, "input_audio_buffer.append").len(),
        1
    );
    assert_eq!(call.conductor.stream_sid(), Some(NEW_STREAM_SID));
    let frames = twilio_frames(&delta);
    assert_eq!(frames[0]["streamSid"], NEW_STREAM_SID);
    assert!(mark_names(&delta)[0].starts_with("g") && !mark_names(&delta)[0].starts_with("g0:"));
    let handover = &call.conductor.record().handovers[0];
    assert_eq!(handover.cause, "dtmf");
    assert_eq!(handover.stream_sid, NEW_STREAM_SID);
    // The old stream's last frame was its stop at 1200 ms; the new stream's first media came at 2300 ms.
    assert_eq!(handover.gap_ms, Some(1_100));
}

#[test]
fn while_no_stream_is_attached_the_idle_timer_gives_way_to_the_handover_deadline() {
    let mut call = Call::new(ConductorConfig {
        stream_idle_timeout: Duration::from_millis(5_000),
        ..config()
    });
    call.twilio(0, TWILIO_START);
    call.response_created(900, RESPONSE_1);
    call.function_call(1_000, RESPONSE_1, "c1", "send_dtmf", r#"{"digits":"1"}"#);
    call.twilio(1_200, &stop_json());
    let handover_deadline_ms = 1_000 + HANDOVER_TIMEOUT.as_millis() as u64;

    let past_idle = call.tick(1_200 + 5_000);
    let at_deadline = call.tick(handover_deadline_ms);

    assert!(past_idle.is_empty(), "{past_idle:?}");
    assert_eq!(
        call.conductor.next_deadline(),
        call.at(handover_deadline_ms)
    );
    assert_eq!(
        at_deadline,
        [Action::HangUp(EndReason::StreamHandoverTimeout)]
    );
}

#[test]
fn a_second_keypress_during_a_handover_is_refused() {
    let (mut call, _) = pressed_one();
    call.response_created(1_050, RESPONSE_2);

    let out = call.function_call(1_100, RESPONSE_2, "c2", "send_dtmf", r#"{"digits":"2"}"#);

    assert!(
        !out.iter().any(|a| matches!(a, Action::UpdateCall(_))),
        "{out:?}"
    );
}

#[test]
fn keypresses_over_the_per_call_limit_are_refused() {
    let mut call = Call::started();
    let mut sent = 0;
    let mut stream_sid = STREAM_SID.to_owned();
    for n in 0..(DTMF_OUT_BURST as u64 + 2) {
        let ms = 1_000 + n * 100;
        let mut out = Vec::new();
        let digits = DtmfDigits::parse("1").expect("valid");
        if call
            .conductor
            .send_digits(digits, call.at(ms), &mut out)
            .is_ok()
        {
            sent += 1;
        }
        // Each handover completes at once so that only the rate limit can refuse.
        call.twilio(ms + 10, &stop_json().replace(STREAM_SID, &stream_sid));
        let next = format!("MZ{n:032}");
        call.twilio(ms + 20, &start_json(CALL_SID).replace(STREAM_SID, &next));
        stream_sid = next;
    }

    assert_eq!(sent, DTMF_OUT_BURST);
}

#[test]
fn a_failed_call_update_ends_the_handover_and_tells_the_model() {
    let (mut call, _) = pressed_one();
    let mut out = Vec::new();

    call.conductor
        .on_call_update_failed("Twilio 21220", &mut out);

    assert!(!call.conductor.awaiting_stream());
    let told = openai_events_of_type(&out, "conversation.item.create");
    assert!(
        told[0]["item"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("could not be sent")
    );
}
