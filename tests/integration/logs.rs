//! Logs of the real binary: with `LOG_FORMAT=json`, every line of a call carries its CallSid and StreamSid, and the
//! call ends with one summary line holding the record.

use std::time::Duration;

use callbridge::simulate::Observation;
use serde_json::Value;

use crate::fake_realtime::{FakeRealtime, Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, TestApp, TestCall, spawn_binary};

#[actix_web::test]
async fn json_logs_carry_the_call_sid_and_stream_sid_on_every_line_of_a_call() {
    let fake = FakeRealtime::start(Script {
        responses: vec![ScriptedResponse::speak(600, "Table for four, done.")],
        ..Script::default()
    })
    .await;
    let mut server = spawn_binary(
        &fake.url(),
        &[("LOG_FORMAT", "json"), ("CALLBRIDGE_DRAIN_TIMEOUT_S", "0")],
    )
    .await;
    let app = TestApp::for_address(&server.address, server.port);
    let TestCall { webhook, stream } = app.call().await;
    stream.send_audio(&CALLER_HELLO);
    stream
        .wait_for(
            |e| matches!(e.kind, Observation::PlaybackIdle { .. }),
            Duration::from_secs(15),
        )
        .await
        .expect("the reply played");
    stream.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, logs) = server.stop().await;

    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_call: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["call_sid"] == webhook.call_sid.as_str())
        .collect();
    assert!(of_call.len() >= 3, "{logs}");
    let stream_sid = stream.stream_sid().expect("started");
    let started = of_call
        .iter()
        .position(|l| {
            l["fields"]["message"] == "media stream started"
                || l["message"] == "media stream started"
        })
        .expect("the start is logged");
    for line in &of_call[started + 1..] {
        assert_eq!(line["span"]["stream_sid"], stream_sid.as_str(), "{line}");
    }
    let summary: Vec<&&Value> = of_call
        .iter()
        .filter(|l| l["message"] == "call ended")
        .collect();
    assert_eq!(summary.len(), 1, "one summary line per call");
    let record: Value =
        serde_json::from_str(summary[0]["record"].as_str().expect("the record")).expect("JSON");
    assert_eq!(record["call_sid"], webhook.call_sid.as_str());
    assert_eq!(record["end_reason"], "caller_hung_up");
}
