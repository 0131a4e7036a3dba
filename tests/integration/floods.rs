//! Floods: the real binary, its stderr counted line by line while a caller floods DTMF frames
//! (valid keys and 60,000-character "digits") or the Realtime server floods `error` events. The logs stay bounded,
//! no invalid digit reaches the model, the keys passed on are rate-limited, and the call goes on.

use std::time::{Duration, Instant};

use callbridge::relay::conductor::{DTMF_BURST, DTMF_REFILL};
use callbridge::simulate::{MediaStreamClient, Observation};
use serde_json::{Value, json};

use crate::fake_realtime::{FakeRealtime, Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, RunningBinary, TestApp, TestCall, spawn_binary};

/// The server's log lines, watched while it runs.
struct ServerLog<'a> {
    server: &'a RunningBinary,
}

impl ServerLog<'_> {
    /// Waits (at most `timeout`) for a line containing `text` and returns it parsed as JSON (`LOG_FORMAT=json`).
    async fn wait_for_line(&self, text: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .server
                .log_lines()
                .into_iter()
                .find(|l| l.contains(text));
            if let Some(line) = found {
                return serde_json::from_str(&line).expect("a JSON log line");
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The call record of a `call ended` line (its `record` field, JSON text).
fn record_of(call_ended: &Value) -> Value {
    let text = call_ended
        .get("record")
        .or_else(|| call_ended.pointer("/fields/record"))
        .and_then(Value::as_str)
        .expect("the call ended line holds the record");
    serde_json::from_str(text).expect("the record is JSON")
}

/// Starts the binary (JSON logs) against `fake` and places one call on it; returns the server, its log and the call.
async fn binary_with_a_call(fake: &FakeRealtime) -> (RunningBinary, MediaStreamClient, String) {
    let server = spawn_binary(
        &fake.url(),
        &[("LOG_FORMAT", "json"), ("CALLBRIDGE_DRAIN_TIMEOUT_S", "0")],
    )
    .await;
    let app = TestApp::for_address(&server.address, server.port);
    let TestCall { webhook, stream } = app.call().await;
    (server, stream, webhook.call_sid)
}

fn dtmf_frame(stream_sid: &str, sequence_number: u64, digit: &str) -> String {
    json!({
        "event": "dtmf",
        "streamSid": stream_sid,
        "sequenceNumber": sequence_number.to_string(),
        "dtmf": {"track": "inbound_track", "digit": digit}
    })
    .to_string()
}

#[actix_web::test]
async fn a_dtmf_flood_with_60000_character_digits_keeps_the_logs_bounded_and_the_model_sees_only_rate_limited_keys()
 {
    let fake = FakeRealtime::start(Script::default()).await;
    let (mut server, stream, _) = binary_with_a_call(&fake).await;
    let log = ServerLog { server: &server };
    let stream_sid = stream.stream_sid().expect("started");
    let huge_digit = "7".repeat(60_000);
    const FRAMES: u64 = 3_000;
    const HUGE_EVERY: u64 = 10;

    let flood_started = Instant::now();
    for n in 0..FRAMES {
        let digit = if n % HUGE_EVERY == 0 {
            huge_digit.as_str()
        } else {
            ["1", "2", "#"][(n % 3) as usize]
        };
        stream
            .send_raw_text(&dtmf_frame(&stream_sid, n + 2, digit))
            .await;
    }
    stream.stop().await;
    let call_ended = log
        .wait_for_line("call ended", Duration::from_secs(30))
        .await;
    let flood_ms = flood_started.elapsed().as_millis() as u64;
    let (status, _) = server.stop().await;
    let lines = server.log_lines();

    assert!(status.success(), "{status:?}");
    // Start-up, the call and shutdown take about 15 lines; the flood may add a handful per kind and per 10 s.
    assert!(
        lines.len() <= 40,
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    let log_bytes: usize = lines.iter().map(String::len).sum();
    assert!(log_bytes < 64 * 1024, "{log_bytes} bytes of log");
    let items = fake.events_of_type("conversation.item.create");
    let texts: Vec<&str> = items
        .iter()
        .filter_map(|e| e.pointer("/item/content/0/text").and_then(Value::as_str))
        .collect();
    assert!(
        texts.iter().all(|t| [
            "The caller pressed 1",
            "The caller pressed 2",
            "The caller pressed #"
        ]
        .contains(t)),
        "{texts:?}"
    );
    let allowed = u64::from(DTMF_BURST) + flood_ms / DTMF_REFILL.as_millis() as u64 + 1;
    assert!(
        (u64::from(DTMF_BURST)..=allowed).contains(&(texts.len() as u64)),
        "{} DTMF items in {flood_ms} ms",
        texts.len()
    );
    let record = record_of(&call_ended);
    let valid_frames = FRAMES - FRAMES / HUGE_EVERY;
    assert_eq!(record["skipped_frames"], FRAMES / HUGE_EVERY);
    assert_eq!(
        record["dropped"]["dtmf_digits"],
        valid_frames - texts.len() as u64
    );
    assert_eq!(record["end_reason"], "caller_hung_up");
}

#[actix_web::test]
async fn a_flood_of_20000_error_events_keeps_the_logs_bounded_and_the_call_goes_on() {
    let fake = FakeRealtime::start(Script {
        responses: vec![ScriptedResponse::speak(500, "Still here.")],
        error_flood: 20_000,
        ..Script::default()
    })
    .await;
    let (mut server, stream, _) = binary_with_a_call(&fake).await;
    let log = ServerLog { server: &server };

    fake.wait_for_events("session.update", 1, Duration::from_secs(5))
        .await
        .expect("the session is set up");
    stream.send_audio(&CALLER_HELLO);
    let replied = stream
        .wait_for(
            |e| matches!(e.kind, Observation::PlaybackIdle { played_ms } if played_ms >= 500),
            Duration::from_secs(30),
        )
        .await;
    stream.stop().await;
    let call_ended = log
        .wait_for_line("call ended", Duration::from_secs(30))
        .await;
    let (status, _) = server.stop().await;
    let lines = server.log_lines();

    assert!(replied.is_some(), "{:#?}", stream.events());
    assert!(status.success(), "{status:?}");
    assert!(
        fake.errors_sent().len() >= 20_000,
        "{} errors sent",
        fake.errors_sent().len()
    );
    assert!(
        lines.len() <= 40,
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    let error_lines = lines
        .iter()
        .filter(|l| l.contains("OpenAI Realtime error"))
        .count();
    assert!((1..=8).contains(&error_lines), "{error_lines} error lines");
    let record = record_of(&call_ended);
    assert!(
        record["dropped"]["openai_errors"]
            .as_u64()
            .is_some_and(|n| n >= 20_000),
        "{record}"
    );
    assert_eq!(record["end_reason"], "caller_hung_up");
}
