//! Webhook signatures and single-use stream tokens.

use std::time::Duration;

use callbridge::calls::{CallFailure, EndReason};
use callbridge::simulate::{MediaClientConfig, MediaStreamClient, Observation, SimulateError};

use crate::fake_realtime::Script;
use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_signature_is_refused_with_403_and_opens_nothing() {
    let app = spawn_app(Script::default()).await;
    let mut webhook = app.webhook();
    webhook.auth_token = "not-the-real-token".into();

    let answer = webhook.post_incoming().await.expect("an answer");

    assert_eq!(answer.status, 403);
    assert!(answer.stream.is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.fake.connections(),
        0,
        "no OpenAI session for a forged webhook"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_signed_for_another_url_is_refused() {
    let app = spawn_app(Script::default()).await;
    let mut webhook = app.webhook();
    // Signed for the local address, as if PUBLIC_URL were wrong behind a tunnel.
    webhook.public_url = app.address.clone();

    let answer = webhook.post_incoming().await.expect("an answer");

    assert_eq!(answer.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_without_a_call_sid_is_a_bad_request() {
    let app = spawn_app(Script::default()).await;
    let mut webhook = app.webhook();
    webhook.call_sid = "not-a-call-sid".into();

    let answer = webhook.post_incoming().await.expect("an answer");

    assert_eq!(answer.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_token_works_once() {
    let app = spawn_app(Script::default()).await;
    let webhook = app.webhook();
    let url = app.answer(&webhook).await;
    let first = MediaStreamClient::connect(&url)
        .await
        .expect("the first upgrade succeeds");

    let second = MediaStreamClient::connect(&url).await;

    assert!(
        matches!(second, Err(SimulateError::Rejected(403))),
        "{second:?}"
    );
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stream_token_is_refused() {
    let app = spawn_app(Script::default()).await;
    let url = format!(
        "ws://127.0.0.1:{}/media-stream/{}",
        app.port,
        "A".repeat(43)
    );

    let result = MediaStreamClient::connect(&url).await;

    assert!(
        matches!(result, Err(SimulateError::Rejected(403))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_stream_token_is_refused() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_STREAM_TOKEN_TTL_S", "1")]).await;
    let webhook = app.webhook();
    let url = app.answer(&webhook).await;

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let result = MediaStreamClient::connect(&url).await;

    assert!(
        matches!(result, Err(SimulateError::Rejected(403))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_message_for_another_call_ends_the_stream() {
    let app = spawn_app(Script::default()).await;
    let webhook = app.webhook();
    let url = app.answer(&webhook).await;
    let stream = MediaStreamClient::connect_with(&url, MediaClientConfig::default())
        .await
        .expect("upgrade");

    stream
        .start("CA00000000000000000000000000000000", &[])
        .await
        .expect("start is sent");

    let closed = stream
        .wait_for(
            |e| {
                matches!(
                    e.kind,
                    Observation::Closed {
                        by_server: true,
                        ..
                    }
                )
            },
            Duration::from_secs(5),
        )
        .await;
    assert!(
        closed.is_some(),
        "the server must close a stream whose CallSid does not match its token"
    );
    let record = app.record(&webhook.call_sid, Duration::from_secs(2)).await;
    assert_eq!(
        record.end_reason,
        Some(EndReason::Error(CallFailure::CallSidMismatch).to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_preconnected_session_is_closed_when_its_token_expires() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_STREAM_TOKEN_TTL_S", "1")]).await;
    let webhook = app.webhook();

    // Twilio answers the webhook but never opens the stream.
    let _url = app.answer(&webhook).await;
    app.fake
        .wait_for_event("session.update", Duration::from_secs(5))
        .await
        .expect("the session was pre-connected");

    let closed = app
        .fake
        .wait_for_connection_closed(0, Duration::from_secs(3))
        .await;
    assert!(
        closed.is_some(),
        "the idle OpenAI session must be closed once its stream token expired"
    );
}
