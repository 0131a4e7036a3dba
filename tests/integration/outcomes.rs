//! Structured outcomes and the voice's remote MCP servers, end to end: an outbound call placed with an
//! `outcome_schema` whose model first sends an outcome that breaks it, gets the errors back as its
//! `function_call_output`, then sends a valid one that `get_call` returns as JSON; and a call whose session carries
//! the configured remote MCP servers (`type: "mcp"` tool entries), while a URL not in the setting is refused when
//! the call is placed.

use std::time::Duration;

use callbridge::calls::model::{CallStatus, CallView};
use callbridge::calls::service::{PlaceCall, ServiceError};
use serde_json::{Value, json};

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::fake_twilio::FakeTwilio;
use crate::helpers::{
    ACCOUNT_SID, CALLER_HELLO, TestApp, answer_outbound, outbound_env, outbound_twilio,
    post_signed, server_closed, spawn_app_with,
};

const CALL_SID: &str = "CA99992222333344445555666677778888";
const RESTAURANT: &str = "+14155552671";

/// Two remote MCP servers: `calendar` attached by default (with a secret header), `crm` only when a call names it.
const VOICE_MCP_SERVERS: &str = r#"[
  {"label": "calendar", "url": "https://mcp.example.com/calendar", "allowed_tools": ["find_slot"],
   "headers": {"Authorization": "Bearer cal-s3cret"}, "default": true},
  {"label": "crm", "url": "https://crm.example.com/mcp",
   "require_approval": {"always": {"tool_names": ["delete_contact"]}}}
]"#;

async fn app(twilio: &FakeTwilio, script: Script) -> TestApp {
    let mut env = outbound_env(twilio);
    env.push(("CALLBRIDGE_VOICE_MCP_SERVERS", VOICE_MCP_SERVERS));
    spawn_app_with(script, &env).await
}

fn booking_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "booked": {"type": "boolean"},
            "time": {"type": "string"},
            "party_size": {"type": "integer", "minimum": 1},
            "notes": {"type": "string"},
        },
        "required": ["booked", "party_size"],
        "additionalProperties": false,
    })
}

fn booking() -> PlaceCall {
    PlaceCall {
        to: RESTAURANT.into(),
        instructions: "Book a table for 4 tonight at 7:30 under the name Rivera.".into(),
        ..PlaceCall::default()
    }
}

/// Answers the call as Twilio would, streams the callee's hello, and waits for the model to end the call; returns
/// the finished record.
async fn answer_and_talk(app: &TestApp, id: &str) -> CallView {
    let stream = answer_outbound(app, id, CALL_SID).await;
    stream.send_audio(&CALLER_HELLO);
    server_closed(&stream, Duration::from_secs(20))
        .await
        .expect("the model ends the call");
    let (code, _) = post_signed(
        &app.address,
        "/call-status",
        &[
            ("CallSid", CALL_SID),
            ("AccountSid", ACCOUNT_SID),
            ("CallStatus", "completed"),
        ],
        None,
        Some("idem-completed"),
    )
    .await;
    assert_eq!(code, 204);
    app.calls.get_call(id, Some(5)).await.expect("the call")
}

#[actix_web::test]
async fn an_outcome_that_breaks_the_schema_is_sent_back_with_its_errors_and_the_corrected_one_is_stored_as_json()
 {
    let twilio = outbound_twilio(CALL_SID);
    let app = app(
        &twilio,
        Script {
            responses: vec![
                // party_size as words and an unknown key: two schema errors.
                ScriptedResponse::call_tool(
                    "end_call",
                    r#"{"outcome":{"booked":true,"time":"19:30","party_size":"four","table":"window"}}"#,
                ),
                ScriptedResponse::call_tool(
                    "end_call",
                    r#"{"outcome":{"booked":true,"time":"19:30","party_size":4,"notes":"no window seat"}}"#,
                ),
                ScriptedResponse::speak(800, "Thank you, goodbye!"),
            ],
            caller_transcripts: vec!["Hello, Luigi's, how can I help?".into()],
            ..Script::default()
        },
    )
    .await;

    let placed = app
        .calls
        .place_call(PlaceCall {
            outcome_schema: Some(booking_schema()),
            ..booking()
        })
        .await
        .expect("placed");
    assert_eq!(placed.outcome_schema, Some(booking_schema()));
    let call = answer_and_talk(&app, &placed.id).await;
    app.fake.dump_for_conformance("outbound_outcome_schema");

    // end_call offered the agent's schema as its outcome parameter.
    let session = app.fake.last_session().expect("session.update");
    let end_call = session["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "end_call"))
        .expect("end_call offered")
        .clone();
    assert_eq!(
        end_call["parameters"]["properties"]["outcome"],
        booking_schema()
    );
    // The first end_call was answered with the errors, and the model was asked to go on; the second with ok.
    let outputs: Vec<Value> = app
        .fake
        .events_of_type("conversation.item.create")
        .iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| serde_json::from_str(e["item"]["output"].as_str().expect("text")).expect("JSON"))
        .collect();
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(outputs[0]["ok"], false, "{}", outputs[0]);
    let errors: Vec<&str> = outputs[0]["errors"]
        .as_array()
        .expect("errors listed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("/party_size") && e.contains("integer")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("table")), "{errors:?}");
    assert_eq!(outputs[1]["ok"], true, "{}", outputs[1]);
    // The call did not end on the invalid outcome: it ended with the goodbye after the valid one.
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason.as_deref(), Some("goodbye"));
    assert_eq!(
        call.structured_outcome,
        Some(json!({"booked": true, "time": "19:30", "party_size": 4, "notes": "no window seat"}))
    );
    let as_text: Value =
        serde_json::from_str(call.outcome.as_deref().expect("outcome text")).expect("JSON text");
    assert_eq!(Some(as_text), call.structured_outcome);
    // The REST shape carries it as JSON too.
    let api: Value = serde_json::to_value(&call).expect("serializes");
    assert_eq!(api["structured_outcome"]["party_size"], 4);
}

#[actix_web::test]
async fn a_schema_that_is_not_a_json_schema_is_refused_when_the_call_is_placed() {
    let twilio = outbound_twilio(CALL_SID);
    let app = app(&twilio, Script::default()).await;

    let refused = app
        .calls
        .place_call(PlaceCall {
            outcome_schema: Some(json!({"type": "objekt"})),
            ..booking()
        })
        .await
        .expect_err("not a JSON Schema");

    let ServiceError::InvalidRequest(message) = refused else {
        panic!("expected invalid_request, got {refused:?}");
    };
    assert!(message.contains("outcome_schema"), "{message}");
    assert!(twilio.requests().is_empty(), "Twilio was asked to dial");
}

#[actix_web::test]
async fn the_session_carries_the_named_mcp_servers_and_the_record_keeps_only_their_labels() {
    let twilio = outbound_twilio(CALL_SID);
    let app = app(
        &twilio,
        Script {
            responses: vec![
                ScriptedResponse::call_tool("end_call", r#"{"outcome":"Booked."}"#),
                ScriptedResponse::speak(600, "Goodbye!"),
            ],
            caller_transcripts: vec!["Hello?".into()],
            ..Script::default()
        },
    )
    .await;

    let placed = app
        .calls
        .place_call(PlaceCall {
            mcp_servers: Some(vec![
                "calendar".into(),
                "https://crm.example.com/mcp".into(),
            ]),
            ..booking()
        })
        .await
        .expect("placed");
    let call = answer_and_talk(&app, &placed.id).await;
    app.fake.dump_for_conformance("voice_mcp_servers");

    let session = app.fake.last_session().expect("session.update");
    let mcp: Vec<&Value> = session["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter(|t| t["type"] == "mcp")
        .collect();
    assert_eq!(
        mcp,
        [
            &json!({"type": "mcp", "server_label": "calendar",
                    "server_url": "https://mcp.example.com/calendar", "allowed_tools": ["find_slot"],
                    "headers": {"Authorization": "Bearer cal-s3cret"}, "require_approval": "never"}),
            &json!({"type": "mcp", "server_label": "crm", "server_url": "https://crm.example.com/mcp",
                    "require_approval": {"always": {"tool_names": ["delete_contact"]}}}),
        ]
    );
    // The record names the servers by label; their headers never leave the server's settings.
    assert_eq!(
        call.mcp_servers,
        Some(vec!["calendar".to_owned(), "crm".to_owned()])
    );
    let record = serde_json::to_string(&call).expect("serializes");
    assert!(!record.contains("cal-s3cret"), "{record}");
}

#[actix_web::test]
async fn a_call_that_names_no_mcp_servers_gets_the_default_ones() {
    let twilio = outbound_twilio(CALL_SID);
    let app = app(
        &twilio,
        Script {
            responses: vec![
                ScriptedResponse::call_tool("end_call", r#"{"outcome":"Done."}"#),
                ScriptedResponse::speak(600, "Goodbye!"),
            ],
            ..Script::default()
        },
    )
    .await;

    let placed = app.calls.place_call(booking()).await.expect("placed");
    answer_and_talk(&app, &placed.id).await;

    let session = app.fake.last_session().expect("session.update");
    let labels: Vec<&Value> = session["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter(|t| t["type"] == "mcp")
        .map(|t| &t["server_label"])
        .collect();
    assert_eq!(labels, [&json!("calendar")]);
}

#[actix_web::test]
async fn an_mcp_server_url_not_in_the_setting_is_refused_when_the_call_is_placed() {
    let twilio = outbound_twilio(CALL_SID);
    let app = app(&twilio, Script::default()).await;

    let refused = app
        .calls
        .place_call(PlaceCall {
            mcp_servers: Some(vec!["https://evil.example.net/mcp".into()]),
            ..booking()
        })
        .await
        .expect_err("not an allowed MCP server");

    let ServiceError::InvalidRequest(message) = refused else {
        panic!("expected invalid_request, got {refused:?}");
    };
    assert!(
        message.contains("https://evil.example.net/mcp"),
        "{message}"
    );
    assert!(message.contains("calendar, crm"), "{message}");
    assert!(twilio.requests().is_empty(), "Twilio was asked to dial");
}
