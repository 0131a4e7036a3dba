//! Two in-process instances sharing one Redis (`CALLBRIDGE_TEST_REDIS_URL`) and one call database: live-call control
//! sent to instance A reaches a call held by instance B, a stream whose webhook A answered runs on B with an OpenAI
//! session of B's own, and a stream token used on one instance is refused on the other.

use std::time::Duration;

use callbridge::calls::EndReason;
use callbridge::simulate::{
    MediaStreamClient, Observation, SimulateError, WebhookCall, local_stream_url,
};
use rand::TryRng as _;
use serde_json::Value;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, TestApp, spawn_app_with, temp_data_dir};

const API_KEY: &str = "fleet-control-api-key";
const GREETING_MS: u64 = 600;

/// `CALLBRIDGE_TEST_REDIS_URL`; the test fails (never skips) without it.
fn redis_url() -> String {
    std::env::var("CALLBRIDGE_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "CALLBRIDGE_TEST_REDIS_URL is not set: run `make services` and source target/services/env, or start \
             redis-server yourself and set it (redis://127.0.0.1:PORT)"
        )
    })
}

/// A key prefix of this test's own.
fn random_prefix() -> String {
    let mut random = [0_u8; 8];
    rand::rngs::SysRng
        .try_fill_bytes(&mut random)
        .expect("randomness");
    format!("cbtest:{}:", hex::encode(random))
}

/// Instances `node-a` and `node-b` on one Redis prefix and one data directory, each with its fake OpenAI.
async fn two_instances(script: Script, extra_env: &[(&str, &str)]) -> (TestApp, TestApp, String) {
    let (url, prefix) = (redis_url(), random_prefix());
    let data_dir = temp_data_dir().display().to_string();
    let mut env = vec![
        ("CALLBRIDGE_REDIS_URL", url.as_str()),
        ("CALLBRIDGE_REDIS_KEY_PREFIX", prefix.as_str()),
        ("CALLBRIDGE_DATA_DIR", data_dir.as_str()),
        ("CALLBRIDGE_API_KEY", API_KEY),
    ];
    env.extend_from_slice(extra_env);
    let with_id = |id: &'static str| {
        let mut env = env.clone();
        env.push(("CALLBRIDGE_INSTANCE_ID", id));
        env
    };
    let a = spawn_app_with(script.clone(), &with_id("node-a")).await;
    let b = spawn_app_with(script, &with_id("node-b")).await;
    (a, b, prefix)
}

/// Waits until the fleet's registry names `instance` as the holder of `call_sid`.
async fn held_by(prefix: &str, call_sid: &str, instance: &str) {
    let client = redis::Client::open(redis_url()).expect("a Redis URL");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis is reachable");
    let key = format!("{prefix}call:{call_sid}");
    let registered = async {
        loop {
            let holder: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .expect("GET");
            if holder.as_deref() == Some(instance) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), registered)
        .await
        .expect("the call is registered in the fleet");
}

/// `POST {app}/api/calls/{id}/{action}` with the API key; the status and JSON body.
async fn post(app: &TestApp, id: &str, action: &str, body: Option<&str>) -> (u16, Value) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let request = client
        .post(format!("{}/api/calls/{id}/{action}", app.address))
        .bearer_auth(API_KEY)
        .insert_header(("Content-Type", "application/json"));
    let mut response = request
        .send_body(body.unwrap_or("").to_owned())
        .await
        .expect("the API answers");
    let bytes = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The stored id of the call `call_sid` (both instances share the database).
fn call_id(app: &TestApp, call_sid: &str) -> String {
    app.calls
        .store()
        .get_by_call_sid(call_sid)
        .expect("the store reads")
        .expect("the call is stored")
        .id
}

#[actix_web::test]
async fn a_call_held_by_b_is_instructed_and_hung_up_through_as_api() {
    let (a, b, prefix) = two_instances(Script::default(), &[]).await;
    let call = b.call().await;
    let sid = call.webhook.call_sid.clone();
    held_by(&prefix, &sid, "node-b").await;
    let id = call_id(&b, &sid);

    let (instructed, instructed_body) = post(
        &a,
        &id,
        "instruct",
        Some(r#"{"text":"Offer the 8 pm table instead."}"#),
    )
    .await;
    let seen = b
        .fake
        .wait_for_event("conversation.item.create", Duration::from_secs(5))
        .await;
    let (hung_up, hung_up_body) = post(&a, &id, "hangup", None).await;
    let record = b.record(&sid, Duration::from_secs(10)).await;
    let (after_end, after_end_body) =
        post(&a, &id, "instruct", Some(r#"{"text":"Too late."}"#)).await;

    assert!(
        (200..300).contains(&instructed),
        "{instructed}: {instructed_body}"
    );
    let text = seen.expect("B's OpenAI session got the instruction")["item"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("Offer the 8 pm table instead."), "{text}");
    assert!(
        a.fake.events_of_type("conversation.item.create").is_empty(),
        "A runs no session for the call"
    );
    assert_eq!(hung_up, 200, "{hung_up_body}");
    assert_eq!(record.end_reason, Some(EndReason::HungUpByApi.to_string()));
    assert_eq!(after_end, 409, "{after_end_body}");
    assert_eq!(after_end_body["error"]["code"], "not_live");
}

/// Answers a fresh inbound call's webhook on `app`: the webhook and the `wss://` stream URL of its TwiML.
async fn answered(app: &TestApp) -> (WebhookCall, String) {
    let webhook = app.webhook();
    let answer = webhook.post_incoming().await.expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    (webhook, answer.stream.expect("<Connect><Stream>").url)
}

/// Opens the stream of `webhook` at `app`, starts it, and returns the client with the time from `start` to the
/// assistant's first audio (the greeting).
async fn first_audio_after_start(
    app: &TestApp,
    webhook: &WebhookCall,
    twiml_url: &str,
) -> (MediaStreamClient, Duration) {
    let local = local_stream_url(twiml_url, &app.address).expect("a stream URL");
    let stream = MediaStreamClient::connect(&local)
        .await
        .expect("the upgrade succeeds");
    stream
        .start(&webhook.call_sid, &[])
        .await
        .expect("start is sent");
    let media = stream
        .wait_for(
            |e| matches!(e.kind, Observation::Media { .. }),
            Duration::from_secs(10),
        )
        .await
        .expect("the greeting's audio arrives");
    let started = stream
        .events()
        .into_iter()
        .find(|e| matches!(e.kind, Observation::Started { .. }))
        .expect("started");
    (stream, media.at - started.at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_webhook_a_answered_runs_on_b_and_audio_flows_both_ways() {
    let script = Script {
        responses: vec![ScriptedResponse::speak(
            GREETING_MS,
            "Hello! How can I help?",
        )],
        ..Script::default()
    };
    let (a, b, _prefix) =
        two_instances(script, &[("CALLBRIDGE_ASSISTANT_SPEAKS_FIRST", "true")]).await;
    // The stream reaches the instance that pre-connected its session (the usual case) ...
    let (local_webhook, local_url) = answered(&a).await;
    a.fake
        .wait_for_event("session.update", Duration::from_secs(5))
        .await
        .expect("A pre-connects the session");
    let (local_stream, preconnected_ms) =
        first_audio_after_start(&a, &local_webhook, &local_url).await;
    local_stream.stop().await;
    // ... or the balancer sends it to the other instance.
    let (webhook, url) = answered(&a).await;
    let sessions_of_b_before = b.fake.connections();

    let (stream, own_session_ms) = first_audio_after_start(&b, &webhook, &url).await;
    stream
        .wait_for(
            |e| matches!(e.kind, Observation::PlaybackIdle { played_ms } if played_ms >= GREETING_MS),
            Duration::from_secs(10),
        )
        .await
        .expect("the greeting plays out");
    stream.send_audio(&CALLER_HELLO);
    let appended = b
        .fake
        .wait_for_event("input_audio_buffer.append", Duration::from_secs(5))
        .await;
    stream.stop().await;
    let record = b.record(&webhook.call_sid, Duration::from_secs(10)).await;

    println!(
        "first assistant audio after start: pre-connected session on A {} ms, own session on B {} ms \
         (loopback fake Realtime, test profile)",
        preconnected_ms.as_millis(),
        own_session_ms.as_millis()
    );
    assert_eq!(
        b.fake.connections(),
        sessions_of_b_before + 1,
        "B opened a session of its own"
    );
    assert!(
        appended.is_some(),
        "the caller's audio reached B's OpenAI session"
    );
    let assistant_ms: u64 = stream
        .events()
        .iter()
        .map(|e| match e.kind {
            Observation::Media { bytes, .. } => bytes as u64 / 8,
            _ => 0,
        })
        .sum();
    assert_eq!(
        assistant_ms, GREETING_MS,
        "B's assistant audio reached the caller"
    );
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
    assert_eq!(
        record.id,
        call_id(&a, &webhook.call_sid),
        "one record, the one A's webhook stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_consumed_on_a_is_refused_on_b() {
    let (a, b, _prefix) = two_instances(Script::default(), &[]).await;
    let (webhook, url) = answered(&a).await;
    let on_a = MediaStreamClient::connect(&local_stream_url(&url, &a.address).expect("URL"))
        .await
        .expect("the first use is accepted");
    on_a.start(&webhook.call_sid, &[])
        .await
        .expect("start is sent");

    let on_b = MediaStreamClient::connect(&local_stream_url(&url, &b.address).expect("URL")).await;

    assert!(
        matches!(on_b, Err(SimulateError::Rejected(403))),
        "{:?}",
        on_b.err()
    );
    on_a.stop().await;
}
