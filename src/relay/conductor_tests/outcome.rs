//! Conductor unit tests: structured outcomes checked against the call's schema, and remote MCP tool calls in the
//! transcript.

use std::sync::Arc;

use super::*;
use crate::calls::outcome::{MAX_OUTCOME_REJECTIONS, OutcomeSchema};

fn with_schema() -> Call {
    let mut call = Call::started();
    let schema = OutcomeSchema::parse(json!({
        "type": "object",
        "properties": {"booked": {"type": "boolean"}, "party_size": {"type": "integer"}},
        "required": ["booked", "party_size"],
    }))
    .expect("a valid schema");
    call.conductor.set_outcome_schema(Some(Arc::new(schema)));
    call
}

fn output_of(out: &[Action]) -> Value {
    let item = &openai_events_of_type(out, "conversation.item.create")[0]["item"];
    assert_eq!(item["type"], "function_call_output");
    parse_json(item["output"].as_str().expect("output is text"))
}

#[test]
fn an_outcome_that_breaks_the_schema_is_answered_with_the_errors_and_the_call_goes_on() {
    let mut call = with_schema();
    call.speak(100, RESPONSE_1, ITEM_1, 500);

    let answer = call.function_call(
        150,
        RESPONSE_1,
        "call_1",
        "end_call",
        r#"{"outcome":{"booked":true,"party_size":"four"}}"#,
    );
    let done = call.response_done(200, RESPONSE_1, "completed");

    let output = output_of(&answer);
    assert_eq!(output["ok"], false);
    assert!(
        output["errors"][0]
            .as_str()
            .expect("an error")
            .starts_with("/party_size"),
        "{output}"
    );
    // No final mark: the model is asked for a new response instead.
    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
    assert_eq!(call.conductor.record().structured_outcome, None);
}

#[test]
fn a_goodbye_phrase_in_the_same_response_does_not_end_the_call_when_the_outcome_is_refused() {
    let mut call = with_schema();
    call.response_created(100, RESPONSE_1);
    call.audio(120, RESPONSE_1, ITEM_1, 500);
    call.openai(
        130,
        &transcript_done_json(RESPONSE_1, ITEM_1, "Thank you, goodbye!"),
    );

    call.function_call(
        150,
        RESPONSE_1,
        "call_1",
        "end_call",
        r#"{"outcome":{"booked":true}}"#,
    );
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
    assert!(twilio_frames(&done).is_empty(), "{done:?}");
}

#[test]
fn a_valid_outcome_is_stored_as_json_and_ends_the_call() {
    let mut call = with_schema();
    call.speak(100, RESPONSE_1, ITEM_1, 500);

    let answer = call.function_call(
        150,
        RESPONSE_1,
        "call_1",
        "end_call",
        r#"{"outcome":{"booked":true,"party_size":4}}"#,
    );
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(output_of(&answer)["ok"], true);
    assert_eq!(kinds(&done), ["twilio:mark g0:s1"]);
    let record = call.conductor.record();
    assert_eq!(
        record.structured_outcome,
        Some(json!({"booked": true, "party_size": 4}))
    );
    assert_eq!(
        record.outcome.as_deref(),
        Some(r#"{"booked":true,"party_size":4}"#)
    );
}

#[test]
fn after_the_last_allowed_rejection_end_call_ends_the_call_without_a_structured_outcome() {
    let mut call = with_schema();
    for n in 0..MAX_OUTCOME_REJECTIONS {
        let answer = call.function_call(100 + u64::from(n), RESPONSE_1, "call_1", "end_call", "{}");
        assert_eq!(output_of(&answer)["ok"], false, "rejection {n}");
    }

    let answer = call.function_call(
        200,
        RESPONSE_1,
        "call_2",
        "end_call",
        r#"{"outcome":"booked, four people"}"#,
    );

    assert_eq!(output_of(&answer)["ok"], true);
    let record = call.conductor.record();
    assert_eq!(record.structured_outcome, None);
    assert_eq!(record.outcome.as_deref(), Some(r#""booked, four people""#));
}

#[test]
fn a_remote_mcp_tool_call_becomes_an_action_turn_with_its_arguments_and_result() {
    let mut call = Call::started();

    call.openai(
        300,
        &json!({"type": "response.output_item.done", "event_id": "event_1", "response_id": RESPONSE_1,
                "output_index": 0,
                "item": {"id": "item_mcp1", "type": "mcp_call", "server_label": "calendar", "name": "find_slot",
                         "arguments": "{\"day\":\"friday\"}", "output": "19:30 free"}})
        .to_string(),
    );
    call.openai(
        400,
        &json!({"type": "response.output_item.done", "event_id": "event_2", "response_id": RESPONSE_1,
                "output_index": 1,
                "item": {"id": "item_mcp2", "type": "mcp_call", "server_label": "crm", "name": "lookup",
                         "arguments": "{}", "output": null,
                         "error": {"type": "http_error", "code": 502, "message": "Bad gateway"}}})
        .to_string(),
    );

    let turns: Vec<(Speaker, &str)> = call
        .conductor
        .record()
        .turns
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            (
                Speaker::Action,
                r#"mcp calendar.find_slot({"day":"friday"}) → 19:30 free"#
            ),
            (Speaker::Action, "mcp crm.lookup({}) → error: Bad gateway"),
        ]
    );
}

#[test]
fn an_mcp_approval_request_is_recorded_as_not_given() {
    let mut call = Call::started();

    call.openai(
        300,
        &json!({"type": "response.output_item.done", "event_id": "event_1", "response_id": RESPONSE_1,
                "output_index": 0,
                "item": {"id": "item_apr1", "type": "mcp_approval_request", "server_label": "crm",
                         "name": "delete_contact", "arguments": "{}"}})
        .to_string(),
    );

    let turn = &call.conductor.record().turns[0];
    assert_eq!(
        turn.text,
        "mcp crm.delete_contact: approval requested, not given"
    );
}

#[test]
fn a_long_mcp_result_is_cut_in_the_transcript() {
    let mut call = Call::started();

    call.openai(
        300,
        &json!({"type": "response.output_item.done", "event_id": "event_1", "response_id": RESPONSE_1,
                "output_index": 0,
                "item": {"id": "item_mcp1", "type": "mcp_call", "server_label": "calendar", "name": "list",
                         "arguments": "{}", "output": "x".repeat(10_000)}})
        .to_string(),
    );

    let text = &call.conductor.record().turns[0].text;
    let result = text.split_once(" → ").expect("a result").1;
    assert_eq!(
        result.chars().count(),
        super::super::outcome::MCP_TURN_TEXT_MAX_CHARS + 1
    );
    assert!(result.ends_with('…'), "{text}");
}
