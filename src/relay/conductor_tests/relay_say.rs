//! Relay mode (agent-in-the-loop calls): the voice speaks only the agent's lines, each `say` is one verbatim
//! `response.create`, and its report says what the callee heard and what they answered.

use super::*;
use crate::calls::say::{SayRefusal, SayReport, SayRequest};

/// A relay-mode call whose stream started at 0 ms.
fn relay_call() -> Call {
    let mut call = Call::new(config());
    call.conductor.set_relay_mode();
    let out = call.twilio(0, TWILIO_START);
    assert!(out.is_empty(), "{out:?}");
    call
}

fn line(text: &str, wait_for_reply: bool) -> SayRequest {
    SayRequest {
        text: text.to_owned(),
        wait_for_reply,
        reply_timeout: Duration::from_secs(10),
        hang_up_after: false,
    }
}

impl Call {
    fn say(&mut self, ms: u64, request: SayRequest) -> Result<Vec<Action>, SayRefusal> {
        let mut out = Vec::new();
        let now = self.at(ms);
        self.conductor.on_say(request, now, &mut out)?;
        Ok(out)
    }
}

/// The report among `actions`, if any.
fn report(actions: &[Action]) -> Option<SayReport> {
    actions.iter().find_map(|action| match action {
        Action::SayDone(report) => Some(report.clone()),
        _ => None,
    })
}

#[test]
fn a_relay_call_does_not_answer_the_callee_on_its_own() {
    let mut call = relay_call();

    let mut out = call.caller_said(1_000, "Hello, who is this?");
    out.extend(call.dtmf(1_500, "5"));

    assert!(
        openai_events_of_type(&out, "response.create").is_empty(),
        "{:?}",
        kinds(&out)
    );
}

#[test]
fn a_say_is_one_response_create_whose_instructions_quote_the_text() {
    let mut call = relay_call();

    let out = call
        .say(100, line("Hi, a table for four at seven, please.", false))
        .expect("taken");

    let creates = openai_events_of_type(&out, "response.create");
    assert_eq!(creates.len(), 1, "{:?}", kinds(&out));
    let instructions = creates[0]["response"]["instructions"]
        .as_str()
        .expect("instructions");
    assert!(
        instructions.contains("Hi, a table for four at seven, please."),
        "{instructions}"
    );
    assert_eq!(creates[0]["response"]["tool_choice"], "none");
}

#[test]
fn a_say_before_the_stream_starts_goes_out_when_it_starts() {
    let mut call = Call::new(config());
    call.conductor.set_relay_mode();

    let before = call.say(0, line("Hello?", false)).expect("taken");
    let at_start = call.twilio(50, TWILIO_START);

    assert!(openai_events_of_type(&before, "response.create").is_empty());
    assert_eq!(openai_events_of_type(&at_start, "response.create").len(), 1);
}

#[test]
fn a_say_heard_to_the_end_reports_its_words_then_the_callers_reply() {
    let mut call = relay_call();
    call.say(100, line(TEN_WORDS, true)).expect("taken");
    call.speak(200, RESPONSE_1, ITEM_1, 1_000);
    call.assistant_said(300, RESPONSE_1, ITEM_1, TEN_WORDS);
    let done = call.response_done(400, RESPONSE_1, "completed");
    let mark = mark_names(&done)
        .pop()
        .expect("a mark behind the say's audio");

    let heard = call.echo(1_200, &mark);
    call.speech_started(1_500);
    let replied = call.caller_said(2_500, "Yes, seven works.");

    assert_eq!(report(&heard), None, "the reply is still awaited");
    let report = report(&replied).expect("reported once the callee answered");
    assert_eq!(report.spoken, TEN_WORDS);
    assert_eq!(report.heard_text, TEN_WORDS);
    assert!(!report.interrupted);
    assert_eq!(report.reply.as_deref(), Some("Yes, seven works."));
    assert!(!report.reply_timed_out && !report.call_ended);
}

#[test]
fn a_say_without_wait_for_reply_is_done_when_its_mark_is_echoed() {
    let mut call = relay_call();
    call.say(100, line("One moment, please.", false))
        .expect("taken");
    call.speak(200, RESPONSE_1, ITEM_1, 800);
    call.assistant_said(300, RESPONSE_1, ITEM_1, "One moment, please.");
    let done = call.response_done(400, RESPONSE_1, "completed");
    let mark = mark_names(&done).pop().expect("a mark");

    let out = call.echo(1_000, &mark);

    let report = report(&out).expect("reported");
    assert_eq!(report.heard_text, "One moment, please.");
    assert_eq!(report.reply, None);
    assert!(!report.reply_timed_out);
}

#[test]
fn a_barge_in_during_a_say_reports_what_the_callee_heard() {
    let mut call = relay_call();
    call.say(100, line(TEN_WORDS, true)).expect("taken");
    call.speak(100, RESPONSE_1, ITEM_1, 2_000);
    call.assistant_said(150, RESPONSE_1, ITEM_1, TEN_WORDS);

    let cut = call.speech_started(600);
    let cancelled = call.response_done(700, RESPONSE_1, "cancelled");
    let replied = call.caller_said(1_500, "Wait, sorry, stop.");

    assert!(kinds(&cut).contains(&"twilio:clear".to_owned()), "{cut:?}");
    assert_eq!(report(&cancelled), None, "the reply is still awaited");
    let report = report(&replied).expect("reported with the callee's words");
    assert!(report.interrupted);
    let heard = word_count(&report.heard_text);
    assert!(heard > 0 && heard < 10, "{report:?}");
    assert!(TEN_WORDS.starts_with(report.heard_text.trim_end_matches('.')));
    assert_eq!(report.reply.as_deref(), Some("Wait, sorry, stop."));
}

#[test]
fn a_reply_that_does_not_come_in_time_is_reported_as_timed_out() {
    let mut call = relay_call();
    call.say(100, line("Are you there?", true)).expect("taken");
    call.speak(200, RESPONSE_1, ITEM_1, 500);
    let done = call.response_done(300, RESPONSE_1, "completed");
    let mark = mark_names(&done).pop().expect("a mark");
    call.echo(800, &mark);

    let early = call.tick(5_000);
    let late = call.tick(10_800);

    assert_eq!(report(&early), None);
    let report = report(&late).expect("reported at the timeout");
    assert!(report.reply_timed_out);
    assert_eq!(report.reply, None);
}

#[test]
fn a_second_say_while_one_is_under_way_is_refused_and_a_plain_call_refuses_any() {
    let mut relay = relay_call();
    relay.say(100, line("First.", false)).expect("taken");
    let mut plain = Call::started();

    assert_eq!(
        relay.say(200, line("Second.", false)),
        Err(SayRefusal::Busy)
    );
    assert_eq!(
        plain.say(200, line("Hi.", false)),
        Err(SayRefusal::NotRelay)
    );
}

#[test]
fn a_final_line_hangs_up_once_it_has_played() {
    let mut call = relay_call();
    let mut request = line("Thank you, goodbye!", false);
    request.hang_up_after = true;
    call.say(100, request).expect("taken");
    call.speak(200, RESPONSE_1, ITEM_1, 1_000);
    call.assistant_said(300, RESPONSE_1, ITEM_1, "Thank you, goodbye!");
    let done = call.response_done(400, RESPONSE_1, "completed");
    let mark = mark_names(&done).pop().expect("the final mark");

    let out = call.echo(1_300, &mark);

    assert_eq!(kinds(&out), ["hang_up:goodbye"]);
    let turn = call
        .conductor
        .take_say()
        .expect("still under way at the end");
    let record = call.finish(EndReason::Goodbye, 1_300);
    let report = say_report_at_end(&turn, &record);
    assert!(report.call_ended && !report.interrupted);
    assert_eq!(report.heard_text, "Thank you, goodbye!");
}
