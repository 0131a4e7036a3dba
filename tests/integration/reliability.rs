//! No single peer can take the server down or wedge a call: a frame header that declares a terabyte is refused before
//! its payload is buffered, and a peer that stops reading (the Twilio client, or the Realtime server) ends its own
//! call within the stall timeout while `hang_up` and shutdown keep working.

use std::time::Duration;

use callbridge::calls::live::CallControl;
use callbridge::calls::{CallFailure, EndReason};
use callbridge::simulate::WebhookCall;
use futures_util::SinkExt as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::fake_realtime::{FakeRealtime, Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, TestApp, spawn_app_with, spawn_binary};

/// Opens the media stream at `url` (`ws://127.0.0.1:PORT/media-stream/TOKEN`) as a bare WebSocket client. With
/// `receive_buffer_bytes`, the socket's kernel receive buffer is that small (a client that stops reading then backs
/// up the server quickly).
async fn open_stream(url: &str, receive_buffer_bytes: Option<u32>) -> WebSocketStream<TcpStream> {
    let address = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .expect("a ws:// URL")
        .parse()
        .expect("a socket address");
    let socket = TcpSocket::new_v4().expect("a socket");
    if let Some(bytes) = receive_buffer_bytes {
        socket
            .set_recv_buffer_size(bytes)
            .expect("set the receive buffer");
    }
    let stream = socket.connect(address).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (ws, response) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("the upgrade succeeds");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

/// Sends Twilio's `connected` and `start` for `call_sid`.
async fn start(ws: &mut WebSocketStream<TcpStream>, call_sid: &str) {
    ws.send(Message::text(
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string(),
    ))
    .await
    .expect("connected is sent");
    ws.send(Message::text(
        json!({
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ00000000000000000000000000000001",
            "start": {
                "accountSid": "AC00000000000000000000000000000001",
                "streamSid": "MZ00000000000000000000000000000001",
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        })
        .to_string(),
    ))
    .await
    .expect("start is sent");
}

/// A call answered the way Twilio answers it, whose media stream is a bare client that has sent `start`.
async fn bare_call(
    app: &TestApp,
    receive_buffer_bytes: Option<u32>,
) -> (WebhookCall, WebSocketStream<TcpStream>) {
    let webhook = app.webhook();
    let url = app.answer(&webhook).await;
    let mut ws = open_stream(&url, receive_buffer_bytes).await;
    start(&mut ws, &webhook.call_sid).await;
    (webhook, ws)
}

/// A fake whose model greets with `minutes` of audio, sent as fast as the relay takes it.
fn flooding_script(minutes: u64) -> Script {
    Script {
        responses: vec![ScriptedResponse::speak(
            minutes * 60_000,
            "A very long story.",
        )],
        response_delay: Duration::ZERO,
        delta_ms: 1000,
        speed_up: f64::INFINITY,
        ..Script::default()
    }
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[actix_web::test]
async fn a_frame_header_declaring_a_terabyte_is_refused_with_1009_before_its_payload_is_buffered() {
    // Arrange: the real binary, a normal call on it, and a hostile stream on a valid token.
    let fake = FakeRealtime::start(Script {
        responses: vec![ScriptedResponse::speak(500, "Still here.")],
        ..Script::default()
    })
    .await;
    let mut server = spawn_binary(&fake.url(), &[]).await;
    let pid = server.child.id().expect("the server runs");
    let app = TestApp::for_address(&server.address, server.port);
    let hostile_webhook = app.webhook();
    let hostile_url = app.answer(&hostile_webhook).await;
    let mut hostile = open_stream(&hostile_url, None).await.into_inner();
    let rss_before_kib = rss_kib(pid);

    // Act: a masked text frame header that declares 2^40 bytes, then 64 KiB of its "payload".
    let mut header = vec![0x81, 0xFF];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    hostile
        .write_all(&header)
        .await
        .expect("the header is sent");
    hostile
        .write_all(&vec![0u8; 64 * 1024])
        .await
        .expect("64 KiB are sent");

    // Assert: the server answers with a close frame 1009 (the stream ends there) ...
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), hostile.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closes the hostile stream");
    assert!(answer.len() >= 4, "a close frame: {answer:?}");
    assert_eq!(answer[0], 0x88, "a close frame: {answer:?}");
    assert_eq!(
        u16::from_be_bytes([answer[2], answer[3]]),
        1009,
        "close code 1009 (message too big): {answer:?}"
    );
    // ... and more bytes have nowhere to go: the connection is gone.
    let mut refused = false;
    for _ in 0..64 {
        if hostile.write_all(&vec![0u8; 64 * 1024]).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "4 MiB more were accepted by a closed connection");
    let grown_kib = rss_kib(pid).saturating_sub(rss_before_kib);
    assert!(
        grown_kib < 8 * 1024,
        "the server's memory grew by {grown_kib} KiB for one hostile frame"
    );

    // Another call on the same server still relays both ways.
    let other = app.call().await.stream;
    other.send_audio(&CALLER_HELLO);
    let replied = other
        .wait_for(
            |e| matches!(e.kind, callbridge::simulate::Observation::PlaybackIdle { played_ms } if played_ms >= 500),
            Duration::from_secs(20),
        )
        .await;
    assert!(
        replied.is_some(),
        "the other call got its reply: {:#?}",
        other.events()
    );
    other.stop().await;
    let (_, logs) = server.stop().await;
    assert!(
        logs.contains("error:frame_too_large"),
        "the hostile call ended as frame_too_large:\n{logs}"
    );
}

#[actix_web::test]
async fn a_twilio_client_that_stops_reading_ends_its_call_as_stalled_and_frees_its_slot() {
    // Arrange: one call allowed at a time, a 1 s stall timeout, and a model that greets with 30 minutes of audio.
    let app = spawn_app_with(
        flooding_script(30),
        &[
            ("CALLBRIDGE_ASSISTANT_SPEAKS_FIRST", "true"),
            ("CALLBRIDGE_PEER_STALL_TIMEOUT_MS", "1000"),
            ("CALLBRIDGE_MAX_CONCURRENT_CALLS", "1"),
        ],
    )
    .await;

    // Act: the Twilio side starts the stream, then never reads again.
    let (webhook, _never_read) = bare_call(&app, Some(4096)).await;

    // Assert: the call ends as stalled, its record is final, and the slot is free for the next call.
    let record = app.record(&webhook.call_sid, Duration::from_secs(30)).await;
    assert_eq!(
        record.end_reason,
        Some(EndReason::Error(CallFailure::TwilioStalled).to_string())
    );
    assert_eq!(app.live_calls.count(), 0, "the call is no longer live");
    let next = app.webhook();
    let answer = next.post_incoming().await.expect("the webhook is answered");
    assert!(
        answer.stream.is_some(),
        "the next call gets a stream, not busy: {}",
        answer.body
    );
}

#[actix_web::test]
async fn hang_up_and_shutdown_still_end_calls_whose_twilio_client_stopped_reading() {
    // Arrange: a stall timeout far longer than the test, and two calls whose Twilio side never reads while the model
    // floods them with audio.
    let app = spawn_app_with(
        flooding_script(3),
        &[
            ("CALLBRIDGE_ASSISTANT_SPEAKS_FIRST", "true"),
            ("CALLBRIDGE_PEER_STALL_TIMEOUT_MS", "120000"),
            ("CALLBRIDGE_FAREWELL_GRACE_MS", "500"),
        ],
    )
    .await;
    let (hung_up, _never_read_1) = bare_call(&app, Some(4096)).await;
    let (shut_down, _never_read_2) = bare_call(&app, Some(4096)).await;
    // Both floods are under way (the relay is backed up behind the clients that do not read).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Act + assert: hang_up reaches the first call at once.
    assert_eq!(
        app.stored(&hung_up.call_sid).map(|r| r.end_reason),
        Some(None),
        "the call is still going when hang_up is asked"
    );
    assert!(
        app.live_calls.send(&hung_up.call_sid, CallControl::HangUp),
        "the call is live and takes the request"
    );
    let record = app.record(&hung_up.call_sid, Duration::from_secs(10)).await;
    assert_eq!(record.end_reason, Some(EndReason::HungUpByApi.to_string()));

    // Shutdown reaches the second: its goodbye cannot be heard, so it ends after the farewell grace.
    app.shutdown.cancel();
    let record = app
        .record(&shut_down.call_sid, Duration::from_secs(20))
        .await;
    assert!(
        record.end_reason.is_some(),
        "the call ended with a reason: {record:?}"
    );
    assert_eq!(app.live_calls.count(), 0, "no call is left live");
}

#[actix_web::test]
async fn a_realtime_server_that_stops_reading_ends_its_call_as_stalled() {
    // Arrange: the fake answers session.update, then never reads again.
    let app = spawn_app_with(
        Script {
            stop_reading_after_session_update: true,
            ..Script::default()
        },
        &[("CALLBRIDGE_PEER_STALL_TIMEOUT_MS", "1000")],
    )
    .await;
    let (webhook, mut ws) = bare_call(&app, None).await;

    // Act: the caller sends audio as fast as the relay takes it (each frame becomes an append to OpenAI).
    let payload = "f".repeat(32 * 1024);
    let frame = json!({
        "event": "media",
        "sequenceNumber": "2",
        "streamSid": "MZ00000000000000000000000000000001",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": payload},
    })
    .to_string();
    // Bounded: at most 2,000 frames (64 MiB) or 20 s, whichever comes first; a busy machine only slows it down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for _ in 0..2000 {
        if app
            .stored(&webhook.call_sid)
            .is_some_and(|r| r.end_reason.is_some())
        {
            break;
        }
        match tokio::time::timeout_at(deadline, ws.send(Message::text(frame.clone()))).await {
            Ok(Ok(())) => {}
            // The server closed the stream (the call ended) or the time is up.
            Ok(Err(_)) | Err(_) => break,
        }
    }

    // Assert: the call ends as stalled, and its record is final.
    let record = app.record(&webhook.call_sid, Duration::from_secs(30)).await;
    assert_eq!(
        record.end_reason,
        Some(EndReason::Error(CallFailure::OpenAiStalled).to_string())
    );
    assert_eq!(app.live_calls.count(), 0);
}

#[actix_web::test]
async fn an_unmasked_client_frame_ends_the_call_as_a_protocol_error_with_close_1002() {
    let app = spawn_app_with(Script::default(), &[]).await;
    let (webhook, ws) = bare_call(&app, None).await;
    let mut raw = ws.into_inner();

    // Act: a text frame without a mask (clients must mask: RFC 6455 §5.1).
    raw.write_all(&[0x81, 0x02, b'h', b'i'])
        .await
        .expect("the frame is sent");

    // Assert: close 1002, and the record says why.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
    assert!(
        answer.len() >= 4 && answer[0] == 0x88,
        "a close frame: {answer:?}"
    );
    assert_eq!(u16::from_be_bytes([answer[2], answer[3]]), 1002);
    let record = app.record(&webhook.call_sid, Duration::from_secs(5)).await;
    assert_eq!(
        record.end_reason,
        Some(EndReason::Error(CallFailure::TwilioProtocolError).to_string())
    );
}
