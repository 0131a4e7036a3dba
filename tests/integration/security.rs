//! Webhook signatures and single-use stream tokens.

use std::time::Duration;

use callbridge::calls::{CallFailure, EndReason};
use callbridge::simulate::{MediaClientConfig, MediaStreamClient, SimulateError};

use callbridge::twilio::signature::RequestValidator;

use crate::fake_realtime::{FakeRealtime, Script};
use crate::helpers::{
    AUTH_TOKEN, PUBLIC_URL, TestApp, server_closed, spawn_app, spawn_app_with, spawn_binary,
};

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

    let closed = server_closed(&stream, Duration::from_secs(5)).await;
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

// ---- Twilio's newer signing: a SharedKey and HMAC-SHA256, named by X-Twilio-Webhooks-Signature-Settings ----

/// The SharedKey the signing tests configure, as `CALLBRIDGE_TWILIO_SIGNING_KEYS` gives it.
const SHARED_KEY_ID: &str = "webhooks_sharedkey_01test";
const SHARED_KEY_SECRET: &str = "shared-key-secret-0123456789abcdef";

/// `base64(HMAC-SHA256(secret, url + sorted name+value pairs))`, computed here with the `hmac` and `sha2` crates
/// rather than by the server's validator.
fn hmac_sha256_signature(secret: &str, url: &str, params: &[(String, String)]) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// POSTs `webhook`'s incoming-call form to `address` with this `X-Twilio-Signature` and, when given,
/// `X-Twilio-Webhooks-Signature-Settings`; returns the status and body (awc: needs an actix runtime).
async fn post_incoming_signed(
    address: &str,
    webhook: &callbridge::simulate::WebhookCall,
    signature: &str,
    settings: Option<&str>,
) -> (u16, String) {
    let mut request = awc::Client::default()
        .post(format!("{address}/incoming-call"))
        .insert_header(("X-Twilio-Signature", signature));
    if let Some(settings) = settings {
        request = request.insert_header(("X-Twilio-Webhooks-Signature-Settings", settings));
    }
    let mut response = request
        .send_form(&webhook.form_params())
        .await
        .expect("the webhook is answered");
    let body = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn incoming_call_url() -> String {
    format!("{PUBLIC_URL}/incoming-call")
}

#[actix_web::test]
async fn a_webhook_signed_with_a_configured_shared_key_and_hmac_sha256_is_answered_with_its_stream()
{
    let keys = format!("{SHARED_KEY_ID}={SHARED_KEY_SECRET}");
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_TWILIO_SIGNING_KEYS", keys.as_str())],
    )
    .await;
    let webhook = app.webhook();
    let signature = hmac_sha256_signature(
        SHARED_KEY_SECRET,
        &incoming_call_url(),
        &webhook.form_params(),
    );
    let settings = format!("key={SHARED_KEY_ID},algorithm=HMAC_SHA256");

    let (status, body) =
        post_incoming_signed(&app.address, &webhook, &signature, Some(&settings)).await;

    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Stream"), "TwiML with a stream: {body}");
}

#[actix_web::test]
async fn a_forged_hmac_sha256_signature_is_refused_with_403_and_opens_nothing() {
    let keys = format!("{SHARED_KEY_ID}={SHARED_KEY_SECRET}");
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_TWILIO_SIGNING_KEYS", keys.as_str())],
    )
    .await;
    let webhook = app.webhook();
    let settings = format!("key={SHARED_KEY_ID},algorithm=HMAC_SHA256");
    let forged = hmac_sha256_signature(
        "not-the-shared-secret",
        &incoming_call_url(),
        &webhook.form_params(),
    );
    // The auth token's own HMAC-SHA1 signature does not count once the header names a SharedKey.
    let with_auth_token =
        RequestValidator::new(AUTH_TOKEN).sign(&incoming_call_url(), &webhook.form_params());

    let (forged_status, _) =
        post_incoming_signed(&app.address, &webhook, &forged, Some(&settings)).await;
    let (auth_token_status, _) =
        post_incoming_signed(&app.address, &webhook, &with_auth_token, Some(&settings)).await;

    assert_eq!(forged_status, 403);
    assert_eq!(auth_token_status, 403);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.fake.connections(),
        0,
        "no OpenAI session for a refused webhook"
    );
    assert_eq!(
        app.stored(&webhook.call_sid),
        None,
        "no record for a refused webhook"
    );
}

#[actix_web::test]
async fn an_unknown_shared_key_or_algorithm_is_refused_with_403_and_a_log_line_that_names_it() {
    let fake = FakeRealtime::start(Script::default()).await;
    let keys = format!("{SHARED_KEY_ID}={SHARED_KEY_SECRET}");
    let mut server = spawn_binary(
        &fake.url(),
        &[
            ("CALLBRIDGE_TWILIO_SIGNING_KEYS", keys.as_str()),
            ("CALLBRIDGE_DRAIN_TIMEOUT_S", "0"),
        ],
    )
    .await;
    let app = TestApp::for_address(&server.address, server.port);
    let webhook = app.webhook();
    let signature = hmac_sha256_signature(
        SHARED_KEY_SECRET,
        &incoming_call_url(),
        &webhook.form_params(),
    );

    let (unknown_key, _) = post_incoming_signed(
        &server.address,
        &webhook,
        &signature,
        Some("key=webhooks_sharedkey_unknown,algorithm=HMAC_SHA256"),
    )
    .await;
    let (unknown_algorithm, _) = post_incoming_signed(
        &server.address,
        &webhook,
        &signature,
        Some(&format!("key={SHARED_KEY_ID},algorithm=HMAC_SHA512")),
    )
    .await;
    let (_, logs) = server.stop().await;

    assert_eq!(unknown_key, 403);
    assert_eq!(unknown_algorithm, 403);
    assert!(
        logs.lines()
            .any(|l| l.contains("webhooks_sharedkey_unknown")
                && l.contains("CALLBRIDGE_TWILIO_SIGNING_KEYS")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("HMAC_SHA512") && l.contains("only HMAC_SHA1 and HMAC_SHA256")),
        "{logs}"
    );
    assert!(
        !logs.contains(SHARED_KEY_SECRET),
        "the secret is never logged"
    );
}
