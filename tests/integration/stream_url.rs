//! `CALLBRIDGE_STREAM_PUBLIC_URL`: the TwiML `<Stream url>` names this instance's own address, while webhook
//! signatures are still checked against `PUBLIC_URL`, and the upgrade's own signature against the stream URL.

use std::time::Duration;

use callbridge::calls::EndReason;
use callbridge::simulate::{MediaClientConfig, MediaStreamClient, SimulateError, local_stream_url};
use callbridge::twilio::signature::RequestValidator;

use crate::fake_realtime::Script;
use crate::helpers::{AUTH_TOKEN, spawn_app_with};

/// The stream base of the instance under test.
const INSTANCE_URL: &str = "https://cb-a.callbridge.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twiml_stream_url_carries_the_stream_public_urls_host() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_STREAM_PUBLIC_URL", INSTANCE_URL)],
    )
    .await;
    let webhook = app.webhook();

    let answer = webhook.post_incoming().await.expect("an answer");

    assert_eq!(answer.status, 200, "{}", answer.body);
    let url = answer.stream.expect("<Connect><Stream>").url;
    assert!(
        url.starts_with("wss://cb-a.callbridge.test/media-stream/"),
        "{url}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signatures_are_still_checked_against_the_public_url_not_the_stream_url() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_STREAM_PUBLIC_URL", INSTANCE_URL)],
    )
    .await;
    let signed_for_the_instance = callbridge::simulate::WebhookCall {
        public_url: INSTANCE_URL.to_owned(),
        ..app.webhook()
    };

    let refused = signed_for_the_instance
        .post_incoming()
        .await
        .expect("an answer");
    let accepted = app.webhook().post_incoming().await.expect("an answer");

    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(accepted.status, 200, "{}", accepted.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_signed_for_the_instance_stream_url_is_accepted_and_the_call_runs() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_STREAM_PUBLIC_URL", INSTANCE_URL)],
    )
    .await;
    let webhook = app.webhook();
    let answer = webhook.post_incoming().await.expect("an answer");
    let public = answer.stream.expect("<Connect><Stream>").url;
    let local = local_stream_url(&public, &app.address).expect("a stream URL");
    let signed_for_public_url = public.replacen("cb-a.callbridge.test", "callbridge.test", 1);
    let config = |url: &str| MediaClientConfig {
        upgrade_signature: Some(RequestValidator::new(AUTH_TOKEN).sign(url, &[])),
        ..MediaClientConfig::default()
    };

    let wrong = MediaStreamClient::connect_with(&local, config(&signed_for_public_url)).await;
    let stream = MediaStreamClient::connect_with(&local, config(&public))
        .await
        .expect("an upgrade signed for the stream URL Twilio was given is accepted");
    stream
        .start(&webhook.call_sid, &[])
        .await
        .expect("start is sent");
    stream.stop().await;
    let record = app.record(&webhook.call_sid, Duration::from_secs(5)).await;

    assert!(
        matches!(wrong, Err(SimulateError::Rejected(403))),
        "{:?}",
        wrong.err()
    );
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
}
