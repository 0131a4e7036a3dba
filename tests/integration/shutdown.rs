//! Graceful shutdown of the real binary: SIGTERM with a call in progress.

use std::time::Duration;

use callbridge::simulate::Observation;

use crate::fake_realtime::{FakeRealtime, Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, TestApp, TestCall, get_status, server_closed, spawn_binary};

#[actix_web::test]
async fn sigterm_turns_new_calls_away_ends_the_live_call_with_a_goodbye_and_exits_0() {
    // Arrange: the real binary, a long reply in progress.
    let fake = FakeRealtime::start(Script {
        responses: vec![
            ScriptedResponse::speak(
                20_000,
                "Once upon a time there was a very long story that went on and on.",
            ),
            ScriptedResponse::speak(800, "Sorry, I have to end the call now. Goodbye!"),
        ],
        speed_up: 2.0,
        ..Script::default()
    })
    .await;
    let mut server = spawn_binary(&fake.url(), &[("CALLBRIDGE_DRAIN_TIMEOUT_S", "1")]).await;
    let address = server.address.clone();
    let app = TestApp::for_address(&address, server.port);
    let TestCall { stream, .. } = app.call().await;
    stream.send_audio(&CALLER_HELLO);
    stream
        .wait_for(
            |e| matches!(e.kind, Observation::Media { .. }),
            Duration::from_secs(15),
        )
        .await
        .expect("the long reply is playing");

    // Act: SIGTERM.
    server.sigterm().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Assert: not ready; a new call hears the apology and is hung up.
    assert_eq!(get_status(&address, "/ready").await, Some(503));
    let answer = app
        .webhook()
        .post_incoming()
        .await
        .expect("the webhook is answered");
    assert_eq!(answer.status, 200);
    assert!(
        answer.stream.is_none(),
        "no stream for a call arriving while draining"
    );
    assert!(
        answer.body.contains("<Say>") && answer.body.contains("<Hangup/>"),
        "{}",
        answer.body
    );
    // The live call is ended after the drain timeout, with the goodbye played first.
    let closed = server_closed(&stream, Duration::from_secs(15))
        .await
        .expect("the server hangs up the live call");
    let goodbye_played = stream
        .events()
        .iter()
        .any(|e| e.at <= closed.at && matches!(e.kind, Observation::PlaybackIdle { .. }));
    assert!(goodbye_played, "the goodbye played out before the hang-up");
    assert!(
        fake.events_of_type("conversation.item.create")
            .iter()
            .any(|e| e["item"]["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .contains("shutting down")),
        "the model was asked to say goodbye"
    );
    // The process exits 0, after logging the call's record.
    let (status, logs) = server.wait_with_logs().await;
    assert!(status.success(), "exit status {status:?}\n{logs}");
    assert!(logs.contains("call ended"), "{logs}");
    assert!(logs.contains("end_reason=shutdown"), "{logs}");
    assert!(
        logs.contains("Once upon a time"),
        "the transcript so far is in the record:\n{logs}"
    );
}
