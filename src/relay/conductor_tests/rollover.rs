//! Conductor unit tests: the rollover to a new Realtime session before the session limit, and the recovery of a
//! session OpenAI closed mid-call.

use super::*;
use crate::config::SessionLifetime;

const LIMIT_MS: u64 = 10_000;

/// A started call whose sessions last [`LIMIT_MS`], reopened up to `attempts` times.
fn call_with(attempts: u32) -> Call {
    let mut call = Call::started();
    call.conductor.set_session_lifetime(SessionLifetime {
        session_limit: Duration::from_millis(LIMIT_MS),
        reconnect_attempts: attempts,
    });
    call
}

impl Call {
    fn opened(&mut self, ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let now = self.at(ms);
        self.conductor.on_session_opened(now, &mut out);
        out
    }

    fn open_failed(&mut self, ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let now = self.at(ms);
        self.conductor
            .on_session_open_failed("HTTP 503", now, &mut out);
        out
    }

    fn closed(&mut self, ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let now = self.at(ms);
        self.conductor
            .on_session_closed(Some(1011), "gone", now, &mut out);
        out
    }
}

/// The items of the `conversation.item.create` events in `out`, after the switch.
fn seeded_items(out: &[Action]) -> Vec<Value> {
    let switch = out
        .iter()
        .position(|a| *a == Action::SwitchSession)
        .expect("a switch");
    openai_events_of_type(&out[switch..], "conversation.item.create")
        .into_iter()
        .map(|e| e["item"].clone())
        .collect()
}

#[test]
fn at_the_session_limit_a_new_session_is_opened_and_the_call_switches_when_nobody_speaks() {
    let mut call = call_with(3);
    call.caller_said(1_000, "Table for two, please.");
    call.speak(2_000, RESPONSE_1, ITEM_1, 1_000);
    call.assistant_said(2_100, RESPONSE_1, ITEM_1, "For which evening?");
    call.response_done(2_200, RESPONSE_1, "completed");

    let before_limit = call.tick(LIMIT_MS - 1);
    let at_limit = call.tick(LIMIT_MS);
    let switched = call.opened(LIMIT_MS + 500);

    assert!(!before_limit.contains(&Action::OpenSession));
    assert_eq!(at_limit, [Action::OpenSession]);
    assert_eq!(
        switched.first(),
        Some(&Action::SwitchSession),
        "{:?}",
        kinds(&switched)
    );
    let items = seeded_items(&switched);
    assert_eq!(items[0]["role"], "system");
    assert_eq!(items[1]["content"][0]["text"], "Table for two, please.");
    assert_eq!(items[2]["role"], "assistant");
    assert_eq!(items[2]["content"][0]["text"], "For which evening?");
    assert!(
        openai_events_of_type(&switched, "response.create").is_empty(),
        "a planned rollover does not make the assistant speak"
    );
    let rollover = &call.conductor.record().rollovers[0];
    assert_eq!(
        (rollover.reason.as_str(), rollover.attempts),
        ("session_limit", 1)
    );
}

#[test]
fn the_switch_waits_for_unheard_assistant_audio_and_for_the_caller_to_stop_speaking() {
    let mut call = call_with(3);
    call.tick(LIMIT_MS);
    call.speak(LIMIT_MS + 100, RESPONSE_1, ITEM_1, 2_000);
    call.response_done(LIMIT_MS + 200, RESPONSE_1, "completed");

    let while_playing = call.opened(LIMIT_MS + 300);
    let after_playing = call.tick(LIMIT_MS + 2_300);
    call.speech_started(LIMIT_MS + 2_400);
    let while_speaking = call.tick(LIMIT_MS + 2_500);
    call.openai(LIMIT_MS + 3_000, OPENAI_SPEECH_STOPPED);
    let after_speaking = call.tick(LIMIT_MS + 3_050);

    assert!(!while_playing.contains(&Action::SwitchSession));
    assert!(
        after_playing.contains(&Action::SwitchSession),
        "{:?}",
        kinds(&after_playing)
    );
    // A second rollover is not due yet: the new session started at the switch.
    assert!(!while_speaking.contains(&Action::SwitchSession));
    assert!(!after_speaking.contains(&Action::OpenSession));
}

#[test]
fn a_ready_session_does_not_take_over_while_the_caller_speaks() {
    let mut call = call_with(3);
    call.tick(LIMIT_MS);
    call.speech_started(LIMIT_MS + 100);

    let speaking = call.opened(LIMIT_MS + 200);
    let still_speaking = call.tick(LIMIT_MS + 1_000);
    call.openai(LIMIT_MS + 1_500, OPENAI_SPEECH_STOPPED);
    let stopped = call.tick(LIMIT_MS + 1_550);

    assert!(!speaking.contains(&Action::SwitchSession));
    assert!(!still_speaking.contains(&Action::SwitchSession));
    assert!(
        stopped.contains(&Action::SwitchSession),
        "{:?}",
        kinds(&stopped)
    );
}

#[test]
fn the_gap_is_measured_from_the_switch_to_the_first_caller_audio_for_the_new_session() {
    let mut call = call_with(3);
    call.tick(LIMIT_MS);
    call.opened(LIMIT_MS + 100);

    let forwarded = call.twilio(LIMIT_MS + 120, TWILIO_MEDIA);

    assert_eq!(kinds(&forwarded), ["openai:input_audio_buffer.append"]);
    assert_eq!(call.conductor.record().rollovers[0].gap_ms, Some(20));
}

#[test]
fn a_session_closed_mid_call_is_reopened_seeded_with_an_apology_and_the_caller_audio_waits_meanwhile()
 {
    let mut call = call_with(3);
    call.caller_said(1_000, "Is the terrace open?");

    let closed = call.closed(2_000);
    let audio_while_lost = call.twilio(2_100, TWILIO_MEDIA);
    let reopened = call.opened(2_400);
    let audio_after = call.twilio(2_420, TWILIO_MEDIA);

    assert_eq!(closed, [Action::OpenSession]);
    assert!(
        audio_while_lost.is_empty(),
        "{:?}",
        kinds(&audio_while_lost)
    );
    assert_eq!(reopened.first(), Some(&Action::SwitchSession));
    let items = seeded_items(&reopened);
    assert_eq!(items[1]["content"][0]["text"], "Is the terrace open?");
    let last = items.last().expect("items");
    assert!(
        last["content"][0]["text"]
            .as_str()
            .expect("text")
            .contains("Apologise")
    );
    assert_eq!(
        kinds(&reopened).last().map(String::as_str),
        Some("openai:response.create")
    );
    assert_eq!(kinds(&audio_after), ["openai:input_audio_buffer.append"]);
    let rollover = &call.conductor.record().rollovers[0];
    assert_eq!(rollover.reason, "session_closed");
    assert_eq!(rollover.gap_ms, Some(420));
}

#[test]
fn a_session_that_cannot_be_reopened_ends_the_call_after_the_attempts_with_backoff() {
    let mut call = call_with(2);
    call.closed(1_000);

    let first_failure = call.open_failed(1_100);
    let too_early = call.tick(1_100 + 400);
    let retry = call.tick(1_100 + 500);
    let second_failure = call.open_failed(1_700);

    assert!(first_failure.is_empty());
    assert!(!too_early.contains(&Action::OpenSession));
    assert!(retry.contains(&Action::OpenSession));
    assert_eq!(
        second_failure,
        [Action::HangUp(EndReason::Error(
            CallFailure::OpenAiReconnectFailed
        ))]
    );
}

#[test]
fn without_reopening_attempts_a_closed_session_ends_the_call_as_before() {
    let mut call = call_with(0);

    let out = call.closed(1_000);

    assert_eq!(
        out,
        [Action::HangUp(EndReason::Error(CallFailure::OpenAiClosed))]
    );
}

#[test]
fn a_session_closed_while_the_rollover_session_is_ready_switches_at_once() {
    let mut call = call_with(3);
    call.tick(LIMIT_MS);
    call.speech_started(LIMIT_MS + 50);
    call.opened(LIMIT_MS + 100);

    let out = call.closed(LIMIT_MS + 200);

    assert_eq!(out.first(), Some(&Action::SwitchSession));
    assert_eq!(
        call.conductor.record().rollovers[0].reason,
        "session_closed"
    );
}

#[test]
fn instructions_added_mid_call_are_given_to_the_new_session() {
    let mut call = call_with(3);
    let mut out = Vec::new();
    call.conductor
        .on_instruction("Offer the 7 pm slot.", &mut out);
    call.tick(LIMIT_MS);

    let switched = call.opened(LIMIT_MS + 10);

    let texts: Vec<Value> = seeded_items(&switched)
        .iter()
        .map(|i| i["content"][0]["text"].clone())
        .collect();
    assert!(texts.contains(&json!("Offer the 7 pm slot.")), "{texts:?}");
}
