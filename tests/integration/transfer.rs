//! Transfers to a person: the model (a configured name) or an agent (a number the destination policy allows) hands
//! the caller to a person with a Twilio call update to `<Dial><Number url>`; the fake Twilio plays the dial (the
//! whisper fetched, the `<Dial action>` posted, both signed). No answer brings the caller back to the same Realtime
//! session on a new stream; an answered transfer ends the call `transferred`.

use std::time::Duration;

use callbridge::calls::{EndReason, Speaker};
use callbridge::cli::api_client::ApiClient;
use callbridge::simulate::{
    MediaStreamClient, Observation, local_stream_url, parse_connect_stream,
};

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::fake_twilio::FakeTwilio;
use crate::helpers::{CALLER_HELLO, TestApp, spawn_app_with};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TARGETS: &str = "front desk=+14155550100,billing=+14155550111";
const SUMMARY: &str = "Ann Lee wants to move her Friday booking to Saturday.";
const API_KEY: &str = "test-api-key";

fn transfer_to(target: &str) -> ScriptedResponse {
    ScriptedResponse::call_tool(
        "transfer_call",
        &serde_json::json!({"target": target, "summary": SUMMARY}).to_string(),
    )
}

async fn app_with(twilio: &FakeTwilio, responses: Vec<ScriptedResponse>) -> TestApp {
    spawn_app_with(
        Script {
            responses,
            ..Script::default()
        },
        &[
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_API_BASE_URL", &twilio.url),
            ("CALLBRIDGE_TRANSFER_TARGETS", TARGETS),
            ("CALLBRIDGE_API_KEY", API_KEY),
        ],
    )
    .await
}

fn system_texts(app: &TestApp) -> Vec<String> {
    app.fake
        .events_of_type("conversation.item.create")
        .into_iter()
        .filter(|e| e["item"]["role"] == "system")
        .filter_map(|e| e["item"]["content"][0]["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_nobody_answers_brings_the_caller_back_to_the_same_session_and_the_model_is_told()
 {
    let twilio = FakeTwilio::start(200, r#"{"sid":"CA","status":"in-progress"}"#);
    let app = app_with(
        &twilio,
        vec![
            transfer_to("front desk"),
            ScriptedResponse::speak(
                600,
                "Sorry, nobody at the front desk answered. Can I take a message?",
            ),
        ],
    )
    .await;
    let webhook = app.webhook();
    let old_url = app.answer(&webhook).await;
    let old = MediaStreamClient::connect(&old_url)
        .await
        .expect("the first stream opens");
    old.start(&webhook.call_sid, &[])
        .await
        .expect("start is sent");

    old.send_audio(&CALLER_HELLO);
    let update = twilio
        .wait_for_call_update(0, Duration::from_secs(20))
        .await
        .expect("a call update");
    let dial = update.dial().expect("a <Dial>");
    let played = twilio.play_dial(&update, &old, &webhook, "no-answer").await;
    let (status, twiml) = played.action;
    let stream = parse_connect_stream(&twiml)
        .expect("TwiML")
        .expect("the action answers <Connect><Stream>");
    let new_url = local_stream_url(&stream.url, &app.address).expect("a stream URL");
    let new = MediaStreamClient::connect(&new_url)
        .await
        .expect("the new stream opens");
    new.start(&webhook.call_sid, &stream.parameters)
        .await
        .expect("start is sent");
    new.wait_for(
        |e| matches!(e.kind, Observation::Media { .. }),
        Duration::from_secs(20),
    )
    .await
    .expect("the assistant speaks on the new stream without being spoken to");
    new.stop().await;
    let record = app.record(&webhook.call_sid, Duration::from_secs(10)).await;
    app.fake.dump_for_conformance("transfer_no_answer");

    assert_eq!(dial.number, "+14155550100");
    assert_eq!(dial.caller_id, webhook.to, "the call's own Twilio number");
    assert_eq!(dial.timeout, "20");
    assert!(
        !update.twiml.contains("Saturday"),
        "the summary is not in the TwiML"
    );
    assert!(played.whisper.is_none());
    assert_eq!(status, 200);
    assert_ne!(new_url, old_url, "a fresh token");
    assert!(
        MediaStreamClient::connect(&new_url).await.is_err(),
        "the new token was single-use"
    );
    assert_eq!(
        app.fake.connections(),
        1,
        "one Realtime session for both streams"
    );
    assert!(
        system_texts(&app)
            .iter()
            .any(|t| t.contains("transfer failed")),
        "{:?}",
        system_texts(&app)
    );
    let tools = &app.fake.events_of_type("session.update")[0]["session"]["tools"];
    assert!(
        tools
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "transfer_call")),
        "{tools}"
    );
    assert_eq!(record.transfers.len(), 1);
    assert_eq!(record.transfers[0].status.as_deref(), Some("no-answer"));
    assert_eq!(record.handovers[0].cause, "transfer_returned");
    assert!(
        record
            .transcript
            .iter()
            .any(|t| t.speaker == Speaker::Action
                && t.text == "transferring to front desk (+14155550100)")
    );
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_transfer_whispers_the_summary_and_ends_the_record_transferred_with_the_target()
{
    let twilio = FakeTwilio::start(200, r#"{"sid":"CA","status":"in-progress"}"#);
    let app = app_with(&twilio, vec![transfer_to("billing")]).await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    let update = twilio
        .wait_for_call_update(0, Duration::from_secs(20))
        .await
        .expect("a call update");

    let played = twilio
        .play_dial(&update, &call.stream, &call.webhook, "completed")
        .await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(10))
        .await;
    let retried = twilio
        .play_dial(&update, &call.stream, &call.webhook, "completed")
        .await;

    let (whisper_status, whisper) = played.whisper.expect("the whisper was fetched");
    assert_eq!(whisper_status, 200);
    assert!(
        whisper.contains(&format!("<Say>{SUMMARY}</Say>")),
        "{whisper}"
    );
    assert_eq!(played.action.0, 200);
    assert!(played.action.1.contains("<Hangup/>"), "{}", played.action.1);
    assert_eq!(
        retried.action, played.action,
        "a retried action gets the same answer"
    );
    assert_eq!(record.end_reason, Some(EndReason::Transferred.to_string()));
    assert_eq!(record.transfers[0].target, "billing (+14155550111)");
    assert_eq!(record.transfers[0].status.as_deref(), Some("completed"));
    app.fake
        .wait_for_connection_closed(0, Duration::from_secs(5))
        .await
        .expect("the Realtime session closed");
    assert!(
        !twilio.requests().iter().any(|r| r
            .form
            .iter()
            .any(|(k, v)| k == "Status" && v == "completed")),
        "the transferred call is not hung up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_cannot_transfer_to_a_name_not_on_the_list_or_to_a_number() {
    let twilio = FakeTwilio::start(200, r#"{"sid":"CA","status":"in-progress"}"#);
    let app = app_with(&twilio, vec![transfer_to("+14155550199")]).await;
    let call = app.call().await;

    call.stream.send_audio(&CALLER_HELLO);
    let output = app
        .fake
        .wait_for_events("conversation.item.create", 1, Duration::from_secs(20))
        .await
        .expect("the tool call was answered");

    let output = output
        .iter()
        .find(|e| e["item"]["type"] == "function_call_output")
        .and_then(|e| e["item"]["output"].as_str())
        .expect("the tool call was answered")
        .to_owned();
    assert!(
        output.contains("\"ok\":false") && output.contains("front desk"),
        "{output}"
    );
    assert!(twilio.call_updates().is_empty(), "nothing dialled");
    app.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_transfer_to_a_destination_the_policy_refuses_but_can_to_an_allowed_one() {
    let twilio = FakeTwilio::start(200, r#"{"sid":"CA","status":"in-progress"}"#);
    let app = app_with(&twilio, Vec::new()).await;
    let call = app.call().await;
    let id = app
        .calls
        .list_calls(10)
        .expect("the calls are listed")
        .into_iter()
        .find(|c| c.from == call.webhook.from)
        .expect("the live call is stored")
        .id;
    let client = ApiClient::new(
        app.address.parse().expect("a URL"),
        API_KEY.to_owned().into(),
    );

    let refused = client
        .transfer_call(&id, "+33142685300", "Billing question")
        .await
        .expect_err("the policy refuses France");
    let premium = client
        .transfer_call(&id, "+19005550100", "Billing question")
        .await
        .expect_err("a premium-rate number is refused under +1");

    let nothing_dialled = twilio.call_updates().is_empty();
    let still_live = app.live_calls.count();
    client
        .transfer_call(&id, "+14155550122", "Billing question")
        .await
        .expect("an allowed destination is accepted");
    let update = twilio
        .wait_for_call_update(0, Duration::from_secs(10))
        .await
        .expect("the allowed transfer is dialled");

    assert_eq!(
        refused.code, "destination_not_allowed",
        "{}",
        refused.message
    );
    assert_eq!(
        premium.code, "destination_not_allowed",
        "{}",
        premium.message
    );
    assert!(nothing_dialled, "nothing dialled for the refused ones");
    assert_eq!(still_live, 1, "the call goes on");
    assert_eq!(update.dial().expect("a <Dial>").number, "+14155550122");
    app.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_dial_action_is_refused_with_403_and_changes_nothing() {
    let twilio = FakeTwilio::start(200, r#"{"sid":"CA","status":"in-progress"}"#);
    let app = app_with(&twilio, vec![transfer_to("front desk")]).await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    let update = twilio
        .wait_for_call_update(0, Duration::from_secs(20))
        .await
        .expect("a call update");
    let dial = update.dial().expect("a <Dial>");
    let action_path = dial
        .action
        .strip_prefix(&call.webhook.public_url)
        .expect("on the public URL")
        .to_owned();
    call.stream.stop().await;
    let mut forger = call.webhook.clone();
    forger.auth_token = "not-the-auth-token".into();
    let params = vec![
        ("CallSid".to_owned(), call.webhook.call_sid.clone()),
        ("DialCallStatus".to_owned(), "completed".to_owned()),
    ];

    let (forged, _) = forger
        .post_signed(&action_path, params.clone())
        .await
        .expect("answered");
    let (unknown, _) = call
        .webhook
        .post_signed("/transfer/AAAAAAAAAAAAAAAAAAAAAA/action", params.clone())
        .await
        .expect("answered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still_live = app.live_calls.count();
    let (genuine, twiml) = call
        .webhook
        .post_signed(&action_path, params)
        .await
        .expect("answered");
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(10))
        .await;

    assert_eq!(forged, 403);
    assert_eq!(unknown, 404);
    assert_eq!(still_live, 1, "the forged action changed nothing");
    assert_eq!(genuine, 200);
    assert!(twiml.contains("<Hangup/>"));
    assert_eq!(record.end_reason, Some(EndReason::Transferred.to_string()));
}
