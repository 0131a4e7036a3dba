//! What calls cost and how the server is watched: the estimated cost stored with a call (from the usage the fake
//! Realtime server reported), the per-call cost cap, the daily cost budget, the Prometheus metrics at `/metrics`
//! during and after calls, and `check-config`'s warning on a deprecated model.

use std::process::Stdio;
use std::time::Duration;

use callbridge::relay::conductor::COST_CAP_INSTRUCTION;
use callbridge::simulate::Observation;
use serde_json::Value;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, TestApp, spawn_app_with};

const API_KEY: &str = "test-metrics-key-0123456789";

/// gpt-realtime-2.1's published prices, USD per 1M tokens: text in, cached in, out; audio in, cached in, out.
const TEXT: [f64; 3] = [4.0, 0.40, 24.0];
const AUDIO: [f64; 3] = [32.0, 0.40, 64.0];

/// The cost of the usages the fake reported, priced by hand (no cached tokens in the fake's usage).
fn expected_openai_usd(dones: &[Value]) -> f64 {
    dones
        .iter()
        .map(|done| {
            let usage = &done["response"]["usage"];
            let n = |path: [&str; 2]| usage[path[0]][path[1]].as_u64().unwrap_or(0) as f64;
            assert_eq!(n(["input_token_details", "cached_tokens"]), 0.0);
            (n(["input_token_details", "text_tokens"]) * TEXT[0]
                + n(["input_token_details", "audio_tokens"]) * AUDIO[0]
                + n(["output_token_details", "text_tokens"]) * TEXT[2]
                + n(["output_token_details", "audio_tokens"]) * AUDIO[2])
                / 1e6
        })
        .sum()
}

/// A caller who says hello, hears the answer, then hangs up; the record once stored.
async fn hello_and_hang_up(app: &TestApp) -> callbridge::calls::model::CallView {
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect("the answer's audio", Duration::from_secs(15), |o| {
        matches!(o, Observation::PlaybackIdle { .. })
    })
    .await;
    call.stream.stop().await;
    app.record(&call.webhook.call_sid, Duration::from_secs(10))
        .await
}

#[actix_web::test]
async fn a_call_with_known_usage_is_stored_with_the_cost_the_price_table_gives() {
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(600, "Hello, how can I help?")],
            ..Script::default()
        },
        &[
            ("CALLBRIDGE_TRANSCRIPTION_MODEL", "gpt-transcribe"),
            ("CALLBRIDGE_TWILIO_INBOUND_PRICE_PER_MIN_USD", "0.01"),
        ],
    )
    .await;

    let record = hello_and_hang_up(&app).await;

    let cost = record.cost.expect("an ended call has a cost");
    let dones = app.fake.server_events_of_type("response.done");
    assert!(!dones.is_empty());
    let openai = expected_openai_usd(&dones);
    let duration_ms = record.duration_ms.expect("ended") as f64;
    let transcription = 0.0045 * duration_ms / 60_000.0;
    let twilio = 0.01 * (duration_ms / 60_000.0).ceil();
    assert!(
        (cost.openai_usd - openai).abs() < 2e-6,
        "{cost:?} vs {openai}"
    );
    assert!(
        (cost.transcription_usd - transcription).abs() < 2e-6,
        "{cost:?}"
    );
    assert!((cost.twilio_usd - twilio).abs() < 2e-6, "{cost:?}");
    assert!(
        (cost.total_usd - (openai + transcription + twilio)).abs() < 4e-6,
        "{cost:?}"
    );
    assert_eq!(cost.model, "gpt-realtime-2.1");
    let listed = app.calls.list_calls(1).expect("listed");
    assert_eq!(listed[0].cost_usd, Some(cost.total_usd));
}

#[actix_web::test]
async fn the_per_call_cap_ends_the_call_with_a_goodbye() {
    let app = spawn_app_with(
        Script {
            responses: vec![
                ScriptedResponse::speak(600, "Sure, let me look into that for you."),
                ScriptedResponse::speak(600, "I have to end the call now. Goodbye!"),
            ],
            ..Script::default()
        },
        &[("CALLBRIDGE_MAX_CALL_COST_USD", "0.000001")],
    )
    .await;
    let call = app.call().await;

    call.stream.send_audio(&CALLER_HELLO);
    call.expect_hang_up(Duration::from_secs(20)).await;

    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(10))
        .await;
    assert_eq!(record.end_reason.as_deref(), Some("cost_cap"));
    let told = app
        .fake
        .events_of_type("conversation.item.create")
        .iter()
        .any(|e| e["item"]["content"][0]["text"].as_str() == Some(COST_CAP_INSTRUCTION));
    assert!(told, "the model was asked to wrap up");
    let last = record.transcript.last().expect("turns");
    assert_eq!(last.text, "I have to end the call now. Goodbye!");
    assert!(!last.interrupted, "the goodbye played to its end");
}

#[actix_web::test]
async fn the_daily_cost_budget_refuses_the_next_call() {
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(400, "Hello!")],
            ..Script::default()
        },
        &[("CALLBRIDGE_DAILY_COST_BUDGET_USD", "0.000001")],
    )
    .await;
    hello_and_hang_up(&app).await;

    let answer = app
        .webhook()
        .post_incoming()
        .await
        .expect("the webhook is answered");

    assert_eq!(answer.status, 200);
    assert!(answer.stream.is_none(), "no stream over the budget");
    assert!(
        answer.body.contains("<Reject reason=\"busy\""),
        "{}",
        answer.body
    );
    let refused = app.calls.check_daily_cost_budget().expect_err("spent");
    assert_eq!(refused.code(), "daily_cost_budget_exhausted");
    assert!(
        refused
            .to_string()
            .contains("CALLBRIDGE_DAILY_COST_BUDGET_USD"),
        "{refused}"
    );
}

/// `GET /metrics` with `key` (or none): the status and the body.
async fn scrape(app: &TestApp, key: Option<&str>) -> (u16, String) {
    let mut request = awc::Client::default().get(format!("{}/metrics", app.address));
    if let Some(key) = key {
        request = request.insert_header(("Authorization", format!("Bearer {key}")));
    }
    let mut response = request.send().await.expect("the server answers");
    let body = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The value of the sample `name` (with its labels, exactly as written) in the metrics text, 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

#[actix_web::test]
async fn metrics_are_refused_without_the_key_and_move_as_the_calls_did() {
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(600, "Hello there!")],
            ..Script::default()
        },
        &[("CALLBRIDGE_API_KEY", API_KEY)],
    )
    .await;
    assert_eq!(scrape(&app, None).await.0, 401);
    assert_eq!(scrape(&app, Some("wrong-key")).await.0, 401);
    let ended = r#"callbridge_calls_total{direction="inbound",end_reason="caller_hung_up"}"#;
    let before = scrape(&app, Some(API_KEY)).await.1;

    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect("the answer's audio", Duration::from_secs(15), |o| {
        matches!(o, Observation::PlaybackIdle { .. })
    })
    .await;
    let (status, during) = scrape(&app, Some(API_KEY)).await;
    call.stream.stop().await;
    app.record(&call.webhook.call_sid, Duration::from_secs(10))
        .await;
    let after = scrape(&app, Some(API_KEY)).await.1;

    assert_eq!(status, 200);
    assert_eq!(sample(&before, "callbridge_calls_live"), 0.0);
    assert_eq!(sample(&during, "callbridge_calls_live"), 1.0, "{during}");
    assert_eq!(sample(&after, "callbridge_calls_live"), 0.0, "{after}");
    assert_eq!(sample(&during, ended), 0.0);
    assert_eq!(sample(&after, ended), 1.0, "{after}");
    let webhooks = r#"callbridge_webhook_twiml_seconds_count{route="incoming-call"}"#;
    assert_eq!(sample(&after, webhooks), 1.0, "{after}");
    assert_eq!(
        sample(&during, "callbridge_start_to_first_audio_seconds_count"),
        1.0
    );
    assert!(
        sample(&after, "callbridge_speech_end_to_first_audio_seconds_count") >= 1.0,
        "{after}"
    );
    let to_twilio = r#"callbridge_frames_relayed_total{direction="assistant_to_twilio"}"#;
    assert!(sample(&after, to_twilio) > 0.0, "{after}");
    let tokens = r#"callbridge_openai_tokens_total{kind="output_audio"}"#;
    assert!(sample(&after, tokens) > 0.0, "{after}");
    let cost = r#"callbridge_estimated_cost_usd_total{meter="openai"}"#;
    assert!(sample(&after, cost) > 0.0, "{after}");
}

#[actix_web::test]
async fn check_config_warns_on_a_deprecated_model() {
    let dir = crate::helpers::temp_data_dir();
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .arg("check-config")
        .env_clear()
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .env("CALLBRIDGE_TRANSCRIPTION_MODEL", "gpt-4o-mini-transcribe")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("check-config runs");
    let stdout = String::from_utf8_lossy(&output.stdout);

    assert!(
        stdout.contains(
            "warning: transcription_model = gpt-4o-mini-transcribe: OpenAI deprecated this model; it"
        ) && stdout.contains("2027-02-26 (use gpt-transcribe instead"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning: openai_model"), "{stdout}");
}
