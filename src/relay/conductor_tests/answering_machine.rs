//! Conductor unit tests: the hold until the answering machine verdict, and what each verdict does.

use super::*;
use crate::relay::machine::MachinePlan;
use crate::twilio::amd::{AnsweredBy, MachinePolicy};

const VERDICT_WAIT_MS: u64 = 40_000;
const RELEASE: &str = r#"{"type":"session.update","session":{"type":"realtime","audio":{"input":{"turn_detection":{"type":"server_vad","create_response":true}}}}}"#;

fn held(policy: MachinePolicy, speaks_first: bool) -> Call {
    Call::new(ConductorConfig {
        assistant_speaks_first: speaks_first,
        machine: Some(MachinePlan {
            policy,
            voicemail_message: Some("Table for four tonight, please call back.".into()),
            verdict_wait: Duration::from_millis(VERDICT_WAIT_MS),
            release_update: RELEASE.into(),
        }),
        ..config()
    })
}

impl Call {
    fn verdict(&mut self, ms: u64, answered_by: AnsweredBy) -> Vec<Action> {
        let mut out = Vec::new();
        let now = self.at(ms);
        self.conductor.on_answered_by(answered_by, now, &mut out);
        out
    }
}

#[test]
fn no_greeting_is_asked_for_while_the_verdict_is_pending() {
    let mut call = held(MachinePolicy::LeaveMessage, true);

    let out = call.twilio(0, TWILIO_START);

    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_keypress_while_holding_asks_for_no_response() {
    let mut call = held(MachinePolicy::LeaveMessage, false);
    call.twilio(0, TWILIO_START);

    let dtmf = call.dtmf(500, "1");

    assert_eq!(kinds(&dtmf), ["openai:conversation.item.create"]);
}

#[test]
fn a_human_verdict_turns_responses_back_on_and_then_greets() {
    let mut call = held(MachinePolicy::LeaveMessage, true);
    call.twilio(0, TWILIO_START);

    let out = call.verdict(2500, AnsweredBy::Human);

    assert_eq!(
        kinds(&out),
        [
            "openai:session.update",
            "openai:conversation.item.create",
            "openai:response.create"
        ]
    );
    assert_eq!(openai_events(&out)[0], parse_json(RELEASE));
    let greeting = openai_events(&out)[1]["item"]["content"][0]["text"].clone();
    assert!(
        greeting.as_str().is_some_and(|t| t.contains(GREETING)),
        "{greeting}"
    );
    assert_eq!(call.conductor.record().answered_by, Some(AnsweredBy::Human));
}

#[test]
fn a_human_who_spoke_while_the_model_was_held_back_is_answered_at_once() {
    let mut call = held(MachinePolicy::HangUp, false);
    call.twilio(0, TWILIO_START);
    call.openai(1800, OPENAI_SPEECH_STOPPED);

    let out = call.verdict(2500, AnsweredBy::Human);

    assert_eq!(
        kinds(&out),
        ["openai:session.update", "openai:response.create"]
    );
}

#[test]
fn no_verdict_before_the_wait_ends_starts_the_conversation_as_unknown() {
    let mut call = held(MachinePolicy::LeaveMessage, true);
    call.twilio(0, TWILIO_START);
    assert_eq!(call.conductor.next_deadline(), call.at(VERDICT_WAIT_MS));

    let early = call.tick(VERDICT_WAIT_MS - 1);
    let due = call.tick(VERDICT_WAIT_MS);

    assert!(early.is_empty(), "{early:?}");
    assert_eq!(
        kinds(&due),
        [
            "openai:session.update",
            "openai:conversation.item.create",
            "openai:response.create"
        ]
    );
}

#[test]
fn the_end_of_a_machine_greeting_asks_for_the_voicemail_with_turn_detection_off_and_no_tools() {
    let mut call = held(MachinePolicy::LeaveMessage, true);
    call.twilio(0, TWILIO_START);

    let out = call.verdict(6000, AnsweredBy::MachineEndBeep);

    let events = openai_events(&out);
    assert_eq!(
        kinds(&out),
        [
            "openai:session.update",
            "openai:conversation.item.create",
            "openai:response.create"
        ]
    );
    assert_eq!(
        events[0]["session"]["audio"]["input"]["turn_detection"],
        Value::Null
    );
    let instruction = events[1]["item"]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(
        instruction.contains("Table for four tonight, please call back."),
        "{instruction}"
    );
    assert!(instruction.contains("answering machine"), "{instruction}");
    assert_eq!(events[2]["response"]["tool_choice"], "none");
}

#[test]
fn the_voicemail_ends_the_call_as_voicemail_left_once_its_last_mark_is_echoed() {
    let mut call = held(MachinePolicy::LeaveMessage, false);
    call.twilio(0, TWILIO_START);
    call.caller_said(
        5000,
        "Hi, you've reached Luigi's, leave a message after the tone",
    );
    call.verdict(6000, AnsweredBy::MachineEndBeep);
    call.response_created(6100, RESPONSE_1);
    call.audio(6200, RESPONSE_1, ITEM_1, 3000);
    call.assistant_said(
        6300,
        RESPONSE_1,
        ITEM_1,
        "Hi, this is Ada calling to book a table for four.",
    );
    let done = call.response_done(6400, RESPONSE_1, "completed");
    let final_mark = mark_names(&done);
    assert_eq!(final_mark.len(), 1, "{done:?}");

    let barge = call.speech_started(7000);
    let out = call.echo(9300, &final_mark[0]);
    let record = call.finish(EndReason::VoicemailLeft, 9300);

    assert!(barge.is_empty(), "the machine cannot barge in: {barge:?}");
    assert_eq!(out, [Action::HangUp(EndReason::VoicemailLeft)]);
    assert!(record.voicemail_left);
    assert_eq!(record.answered_by, Some(AnsweredBy::MachineEndBeep));
    assert_eq!(
        record.voicemail_transcript.as_deref(),
        Some("Hi, this is Ada calling to book a table for four.")
    );
    assert_eq!(
        record.outcome, None,
        "a voicemail is no conversation outcome"
    );
}

#[test]
fn a_machine_that_hangs_up_during_the_message_leaves_no_voicemail() {
    let mut call = held(MachinePolicy::LeaveMessage, false);
    call.twilio(0, TWILIO_START);
    call.verdict(6000, AnsweredBy::MachineEndSilence);
    call.response_created(6100, RESPONSE_1);
    call.audio(6200, RESPONSE_1, ITEM_1, 3000);

    let out = call.twilio(6500, TWILIO_STOP);
    let record = call.finish(EndReason::CallerHungUp, 6500);

    assert_eq!(out, [Action::HangUp(EndReason::CallerHungUp)]);
    assert!(!record.voicemail_left);
    assert!(record.voicemail_transcript.is_some());
}

#[test]
fn a_machine_with_the_hang_up_policy_and_a_fax_end_the_call_as_machine_hung_up() {
    for (policy, verdict) in [
        (MachinePolicy::HangUp, AnsweredBy::MachineEndBeep),
        (MachinePolicy::HangUp, AnsweredBy::MachineStart),
        (MachinePolicy::LeaveMessage, AnsweredBy::Fax),
    ] {
        let mut call = held(policy, true);
        call.twilio(0, TWILIO_START);

        let out = call.verdict(3000, verdict);

        assert_eq!(
            out,
            [Action::HangUp(EndReason::MachineHungUp)],
            "{policy:?} {verdict:?}"
        );
    }
}

#[test]
fn a_repeated_verdict_does_nothing() {
    let mut call = held(MachinePolicy::LeaveMessage, false);
    call.twilio(0, TWILIO_START);
    call.verdict(6000, AnsweredBy::MachineEndBeep);

    let again = call.verdict(6050, AnsweredBy::MachineEndBeep);
    let other = call.verdict(6060, AnsweredBy::Human);

    assert!(again.is_empty() && other.is_empty(), "{again:?} {other:?}");
}

#[test]
fn a_verdict_before_the_stream_started_is_acted_on_when_it_starts() {
    let mut call = held(MachinePolicy::LeaveMessage, true);

    let before = call.verdict(0, AnsweredBy::MachineEndBeep);
    let start = call.twilio(100, TWILIO_START);

    assert!(before.is_empty(), "{before:?}");
    assert_eq!(
        kinds(&start),
        [
            "openai:session.update",
            "openai:conversation.item.create",
            "openai:response.create"
        ]
    );
}

#[test]
fn a_verdict_on_a_call_without_detection_is_ignored() {
    let mut call = Call::started();

    let out = call.verdict(100, AnsweredBy::MachineEndBeep);

    assert!(out.is_empty(), "{out:?}");
    assert_eq!(call.conductor.record().answered_by, None);
}

#[test]
fn shutting_down_while_holding_hangs_up_without_speaking() {
    let mut call = held(MachinePolicy::LeaveMessage, false);
    call.twilio(0, TWILIO_START);
    let mut out = Vec::new();

    call.conductor.on_shutdown(call.at(1000), &mut out);

    assert_eq!(out, [Action::HangUp(EndReason::Shutdown)]);
}
