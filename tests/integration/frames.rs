//! Malformed, oversized and binary frames from the Twilio side are skipped; the call goes on.

use std::time::Duration;

use callbridge::calls::EndReason;
use callbridge::simulate::Observation;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_are_skipped_without_ending_the_call() {
    let app = spawn_app(Script {
        responses: vec![ScriptedResponse::speak(500, "Still here.")],
        ..Script::default()
    })
    .await;
    let call = app.call().await;
    let stream_sid = call.stream.stream_sid().expect("started");

    // Act: five bad frames of different kinds.
    call.stream.send_raw_text("this is not json").await;
    call.stream
        .send_raw_text(&format!(r#"{{"event":"media","streamSid":"{stream_sid}","sequenceNumber":5,"media":{{"payload":7}}}}"#))
        .await;
    call.stream
        .send_raw_text(r#"{"event":"media","sequenceNumber":"x","media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"AAAA"}}"#)
        .await;
    call.stream.send_raw_binary(vec![0u8; 320]).await;
    let oversized = format!(
        r#"{{"event":"media","padding":"{}"}}"#,
        "A".repeat(100 * 1024)
    );
    call.stream.send_raw_text(&oversized).await;
    // Then the caller speaks: the call must still work.
    call.stream.send_audio(&CALLER_HELLO);
    call.expect(
        "the reply",
        Duration::from_secs(15),
        |o| matches!(o, Observation::PlaybackIdle { played_ms } if *played_ms >= 500),
    )
    .await;
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    app.fake.dump_for_conformance("bad_frames");

    assert_eq!(record.skipped_frames, 5);
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
    assert_eq!(call.assistant_ms_received(), 500);
}
