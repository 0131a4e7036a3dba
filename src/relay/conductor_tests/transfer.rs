//! Conductor unit tests: transfers to a person (the model's `transfer_call`, an agent's request, Twilio's reports).

use super::*;
use crate::phone::E164;
use crate::relay::handover::CallUpdate;
use crate::twilio::dial::{
    DIAL_TIMEOUT_S, DialStatus, MAX_TRANSFERS_PER_CALL, TRANSFER_MARGIN, TransferEvent,
    TransferTarget,
};

const NEW_STREAM_SID: &str = "MZ22222222222222222222222222222222";

fn desk() -> TransferTarget {
    TransferTarget {
        name: Some("front desk".into()),
        number: E164::parse("+14155550100").expect("E.164"),
    }
}

/// A started call with the front desk configured.
fn call_with_desk() -> Call {
    let mut call = Call::started();
    call.conductor.set_transfer_targets(vec![desk()]);
    call
}

/// A started call whose model asked at 1000 ms to transfer to `target`; returns the actions of that function call.
fn model_transfers_to(target: &str) -> (Call, Vec<Action>) {
    let mut call = call_with_desk();
    call.response_created(900, RESPONSE_1);
    let arguments =
        json!({"target": target, "summary": "Ann wants to move her booking to Friday."})
            .to_string();
    let out = call.function_call(1_000, RESPONSE_1, "call_tr_1", "transfer_call", &arguments);
    (call, out)
}

fn tool_output(out: &[Action]) -> String {
    openai_events_of_type(out, "conversation.item.create")
        .into_iter()
        .find(|e| e["item"]["type"] == "function_call_output")
        .and_then(|e| e["item"]["output"].as_str().map(str::to_owned))
        .expect("a function_call_output")
}

fn report(call: &mut Call, ms: u64, event: TransferEvent) -> Vec<Action> {
    let mut out = Vec::new();
    let now = call.at(ms);
    call.conductor.on_transfer_event(event, now, &mut out);
    out
}

#[test]
fn transfer_call_to_a_configured_name_dials_its_number_with_the_summary_and_notes_it_in_the_transcript()
 {
    let (call, out) = model_transfers_to("Front Desk");

    assert!(out.contains(&Action::UpdateCall(CallUpdate::Transfer {
        target: desk(),
        summary: "Ann wants to move her booking to Friday.".into(),
    })));
    assert!(tool_output(&out).contains("\"ok\":true"));
    let turn = call.conductor.record().turns.last().expect("a turn");
    assert_eq!(
        (turn.speaker, turn.text.as_str()),
        (Speaker::Action, "transferring to front desk (+14155550100)")
    );
    assert_eq!(call.conductor.record().transfers[0].number, "+14155550100");
}

#[test]
fn transfer_call_to_a_name_not_on_the_list_or_to_a_number_is_refused_and_nothing_is_dialled() {
    for target in ["sales", "+14155550199", ""] {
        let (call, out) = model_transfers_to(target);

        assert!(
            !out.iter().any(|a| matches!(a, Action::UpdateCall(_))),
            "{target}: {out:?}"
        );
        let output = tool_output(&out);
        assert!(
            output.contains("\"ok\":false") && output.contains("front desk"),
            "{output}"
        );
        assert!(call.conductor.record().transfers.is_empty());
    }
}

#[test]
fn without_configured_targets_the_model_cannot_transfer() {
    let mut call = Call::started();
    call.response_created(900, RESPONSE_1);

    let out = call.function_call(
        1_000,
        RESPONSE_1,
        "c1",
        "transfer_call",
        r#"{"target":"front desk","summary":"x"}"#,
    );

    assert!(!out.iter().any(|a| matches!(a, Action::UpdateCall(_))));
    assert!(tool_output(&out).contains("\"ok\":false"));
}

#[test]
fn while_the_person_rings_the_idle_timer_gives_way_to_the_dial_timeout_plus_margin() {
    let (mut call, _) = model_transfers_to("front desk");
    call.twilio(1_200, TWILIO_STOP);
    let deadline_ms =
        1_000 + u64::from(DIAL_TIMEOUT_S) * 1_000 + TRANSFER_MARGIN.as_millis() as u64;

    let before = call.tick(deadline_ms - 1);

    assert!(before.is_empty(), "{before:?}");
    assert_eq!(call.conductor.next_deadline(), call.at(deadline_ms));
    assert!(call.conductor.awaiting_stream());
}

#[test]
fn once_the_person_answered_the_call_ends_as_transferred_after_the_grace_with_the_target_recorded()
{
    let (mut call, _) = model_transfers_to("front desk");
    call.twilio(1_200, TWILIO_STOP);
    let grace_end_ms = 6_000 + ANSWERED_GRACE.as_millis() as u64;

    let answered = report(&mut call, 6_000, TransferEvent::Answered);
    let before = call.tick(grace_end_ms - 1);
    let out = call.tick(grace_end_ms);

    assert!(
        answered.is_empty() && before.is_empty(),
        "{answered:?} {before:?}"
    );
    assert_eq!(out, [Action::HangUp(EndReason::Transferred)]);
    let record = call.finish(EndReason::Transferred, grace_end_ms);
    assert_eq!(record.end_reason, Some(EndReason::Transferred));
    assert_eq!(record.transfers[0].target, "front desk (+14155550100)");
    assert_eq!(record.transfers[0].status.as_deref(), Some("answered"));
}

#[test]
fn a_completed_dial_also_ends_the_call_as_transferred() {
    let (mut call, _) = model_transfers_to("front desk");
    call.twilio(1_200, TWILIO_STOP);

    let out = report(
        &mut call,
        9_000,
        TransferEvent::Ended(DialStatus::Completed),
    );

    assert_eq!(out, [Action::HangUp(EndReason::Transferred)]);
}

#[test]
fn no_answer_tells_the_model_and_it_speaks_once_the_new_stream_starts() {
    let (mut call, _) = model_transfers_to("front desk");
    call.response_done(1_100, RESPONSE_1, "completed");
    call.twilio(1_200, TWILIO_STOP);

    let failed = report(
        &mut call,
        21_000,
        TransferEvent::Ended(DialStatus::NoAnswer),
    );
    let started = call.twilio(
        22_000,
        &start_json(CALL_SID).replace(STREAM_SID, NEW_STREAM_SID),
    );

    assert!(
        !failed.iter().any(|a| matches!(a, Action::HangUp(_))),
        "{failed:?}"
    );
    let told = openai_events_of_type(&failed, "conversation.item.create");
    assert!(
        told[0]["item"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("nobody answered"),
        "{told:?}"
    );
    assert!(openai_events_of_type(&failed, "response.create").is_empty());
    assert_eq!(openai_events_of_type(&started, "response.create").len(), 1);
    let record = call.conductor.record();
    assert_eq!(record.handovers[0].cause, "transfer_returned");
    assert_eq!(record.transfers[0].status.as_deref(), Some("no-answer"));
    assert!(
        record
            .turns
            .iter()
            .any(|t| t.text == "transfer failed: no-answer")
    );
}

#[test]
fn a_person_who_hangs_up_during_the_whisper_brings_the_caller_back() {
    let (mut call, _) = model_transfers_to("front desk");
    call.twilio(1_200, TWILIO_STOP);
    report(&mut call, 6_000, TransferEvent::Answered);

    let out = report(&mut call, 8_000, TransferEvent::Ended(DialStatus::NoAnswer));

    assert!(
        !out.iter().any(|a| matches!(a, Action::HangUp(_))),
        "{out:?}"
    );
    assert!(call.conductor.awaiting_stream());
    assert_eq!(
        call.conductor.record().transfers[0].status.as_deref(),
        Some("no-answer")
    );
}

#[test]
fn a_transfer_that_was_never_answered_times_out_as_a_handover() {
    let (mut call, _) = model_transfers_to("front desk");
    call.twilio(1_200, TWILIO_STOP);
    let deadline_ms =
        1_000 + u64::from(DIAL_TIMEOUT_S) * 1_000 + TRANSFER_MARGIN.as_millis() as u64;

    let out = call.tick(deadline_ms);

    assert_eq!(out, [Action::HangUp(EndReason::StreamHandoverTimeout)]);
}

#[test]
fn a_report_with_no_transfer_under_way_changes_nothing() {
    let mut call = call_with_desk();

    let out = report(
        &mut call,
        1_000,
        TransferEvent::Ended(DialStatus::Completed),
    );

    assert!(out.is_empty(), "{out:?}");
    assert!(!call.conductor.awaiting_stream());
}

#[test]
fn transfers_over_the_per_call_limit_are_refused() {
    let mut call = call_with_desk();
    let mut started = 0;
    let mut stream_sid = STREAM_SID.to_owned();
    for n in 0..u64::from(MAX_TRANSFERS_PER_CALL) + 1 {
        let ms = 1_000 + n * 1_000;
        let mut out = Vec::new();
        if call
            .conductor
            .transfer(desk(), "s", call.at(ms), &mut out)
            .is_ok()
        {
            started += 1;
        }
        // Each attempt fails at once and the caller comes back, so that only the limit can refuse.
        call.twilio(ms + 10, &TWILIO_STOP.replace(STREAM_SID, &stream_sid));
        report(&mut call, ms + 20, TransferEvent::Ended(DialStatus::Busy));
        let next = format!("MZ{n:032}");
        call.twilio(ms + 30, &start_json(CALL_SID).replace(STREAM_SID, &next));
        stream_sid = next;
    }

    assert_eq!(started, MAX_TRANSFERS_PER_CALL);
}

#[test]
fn an_agents_transfer_is_dialled_and_the_model_is_told() {
    let mut call = Call::started();
    let target = TransferTarget {
        name: None,
        number: E164::parse("+442071838750").expect("E.164"),
    };
    let mut out = Vec::new();
    let now = call.at(1_000);

    call.conductor
        .on_transfer_request(target.clone(), "Billing question", now, &mut out);

    assert!(out.contains(&Action::UpdateCall(CallUpdate::Transfer {
        target,
        summary: "Billing question".into(),
    })));
    let told = openai_events_of_type(&out, "conversation.item.create");
    assert!(
        told[0]["item"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("+442071838750")
    );
}

#[test]
fn a_failed_transfer_update_tells_the_model_the_transfer_could_not_start() {
    let (mut call, _) = model_transfers_to("front desk");
    let mut out = Vec::new();

    call.conductor
        .on_call_update_failed("Twilio 21220", &mut out);

    assert!(!call.conductor.awaiting_stream());
    let told = openai_events_of_type(&out, "conversation.item.create");
    assert!(
        told[0]["item"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("transfer could not be started")
    );
    assert_eq!(
        call.conductor.record().transfers[0].status.as_deref(),
        Some("update_failed")
    );
}
