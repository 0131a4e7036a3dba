//! A Realtime client for the fake's own tests: connect, send, read events, stream audio.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

pub(super) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) const HELLO: &[u8] = include_bytes!("../../fixtures/caller-hello.ulaw");
pub(super) const INTERRUPT: &[u8] = include_bytes!("../../fixtures/caller-interrupt.ulaw");
pub(super) const WAIT: Duration = Duration::from_secs(5);

pub(super) async fn connect(fake: &FakeRealtime) -> Client {
    let mut request = format!("{}?model=gpt-realtime-2.1", fake.url())
        .into_client_request()
        .expect("valid URL");
    request.headers_mut().insert(
        "authorization",
        "Bearer sk-test".parse().expect("valid header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the fake accepts the upgrade");
    let created = next_event(&mut ws).await;
    assert_eq!(created["type"], "session.created");
    ws
}

pub(super) async fn send(ws: &mut Client, event: Value) {
    ws.send(Message::text(event.to_string()))
        .await
        .expect("sending to the fake");
}

pub(super) async fn next_event(ws: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an event within the wait")
            .expect("open");
        if let Message::Text(text) = message.expect("a frame") {
            return serde_json::from_str(&text).expect("the fake sends JSON");
        }
    }
}

/// Reads events until one of type `until` (inclusive); returns them all.
pub(super) async fn events_until(ws: &mut Client, until: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = next_event(ws).await;
        let done = event["type"] == until;
        events.push(event);
        if done {
            return events;
        }
    }
}

/// Reads a response's events up to `response.done` (inclusive), then checks and drops the
/// `rate_limits.updated` that follows it.
pub(super) async fn response_events(ws: &mut Client) -> Vec<Value> {
    let events = events_until(ws, "response.done").await;
    assert_eq!(next_event(ws).await["type"], "rate_limits.updated");
    events
}

pub(super) async fn session_update(ws: &mut Client) {
    let session = json!({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}},
                                                       "output": {"format": {"type": "audio/pcmu"}}}});
    send(ws, json!({"type": "session.update", "session": session})).await;
    let updated = events_until(ws, "session.updated").await;
    assert_eq!(
        updated.len(),
        1,
        "nothing but session.updated answers session.update: {updated:?}"
    );
}

/// Appends `ulaw` in 20 ms Twilio-sized frames, without pacing.
pub(super) async fn append_audio(ws: &mut Client, ulaw: &[u8]) {
    for frame in ulaw.chunks(160) {
        send(
            ws,
            json!({"type": "input_audio_buffer.append", "audio": BASE64.encode(frame)}),
        )
        .await;
    }
}

pub(super) fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect()
}

pub(super) fn delta_bytes(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| {
            BASE64
                .decode(e["delta"].as_str().expect("delta is a string"))
                .expect("valid base64")
                .len()
        })
        .sum()
}

pub(super) fn speak_script(audio_ms: u64) -> Script {
    Script {
        responses: vec![ScriptedResponse::speak(audio_ms, "A table for four.")],
        ..Script::default()
    }
}
