//! The public URL behind a tunnel: configured `PUBLIC_URL` wins; forwarded headers count only when trusted; webhook
//! signatures are checked against the URL in effect.

use callbridge::simulate::parse_connect_stream;
use callbridge::simulate::webhook::random_hex_id;
use callbridge::twilio::signature::RequestValidator;

use crate::fake_realtime::Script;
use crate::helpers::{AUTH_TOKEN, spawn_app_with};

fn form(call_sid: &str) -> Vec<(String, String)> {
    [
        ("CallSid", call_sid),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+15550100001"),
        ("To", "+15550100002"),
        ("Direction", "inbound"),
        ("CallStatus", "ringing"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Posts a webhook signed for `signed_for` (a full URL) with `X-Forwarded-Proto: https` and `X-Forwarded-Host`.
async fn post(address: &str, signed_for: &str, forwarded_host: &str) -> (u16, String) {
    let params = form(&random_hex_id("CA"));
    let signature = RequestValidator::new(AUTH_TOKEN).sign(signed_for, &params);
    let mut response = awc::Client::default()
        .post(format!("{address}/incoming-call"))
        .insert_header(("X-Twilio-Signature", signature))
        .insert_header(("X-Forwarded-Proto", "https"))
        .insert_header(("X-Forwarded-Host", forwarded_host))
        .send_form(&params)
        .await
        .expect("the webhook is answered");
    let body = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_web::test]
async fn with_trusted_forwarded_headers_the_tunnel_host_is_the_public_url() {
    let app = spawn_app_with(
        Script::default(),
        &[
            ("PUBLIC_URL", ""),
            ("CALLBRIDGE_TRUST_FORWARDED_HEADERS", "true"),
        ],
    )
    .await;

    let (status, body) = post(
        &app.address,
        "https://quiet-forest-1234.trycloudflare.com/incoming-call",
        "quiet-forest-1234.trycloudflare.com",
    )
    .await;

    assert_eq!(status, 200, "{body}");
    let stream = parse_connect_stream(&body)
        .expect("TwiML")
        .expect("a stream");
    assert!(
        stream
            .url
            .starts_with("wss://quiet-forest-1234.trycloudflare.com/media-stream/"),
        "{}",
        stream.url
    );
}

#[actix_web::test]
async fn a_signature_for_another_host_than_the_forwarded_one_is_refused() {
    let app = spawn_app_with(
        Script::default(),
        &[
            ("PUBLIC_URL", ""),
            ("CALLBRIDGE_TRUST_FORWARDED_HEADERS", "true"),
        ],
    )
    .await;

    let (status, _) = post(
        &app.address,
        "https://other.example/incoming-call",
        "quiet-forest-1234.trycloudflare.com",
    )
    .await;

    assert_eq!(status, 403);
}

#[actix_web::test]
async fn the_configured_public_url_wins_over_forwarded_headers() {
    // PUBLIC_URL is https://callbridge.test in the test settings; the headers claim another host.
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_TRUST_FORWARDED_HEADERS", "true")],
    )
    .await;

    let (forged_status, _) = post(
        &app.address,
        "https://evil.example/incoming-call",
        "evil.example",
    )
    .await;
    let (status, body) = post(
        &app.address,
        "https://callbridge.test/incoming-call",
        "evil.example",
    )
    .await;

    assert_eq!(forged_status, 403);
    assert_eq!(status, 200, "{body}");
    let stream = parse_connect_stream(&body)
        .expect("TwiML")
        .expect("a stream");
    assert!(
        stream
            .url
            .starts_with("wss://callbridge.test/media-stream/"),
        "{}",
        stream.url
    );
}

#[actix_web::test]
async fn forwarded_headers_are_ignored_unless_trusted() {
    let app = spawn_app_with(Script::default(), &[]).await;

    let (status, _) = post(
        &app.address,
        "https://tunnel.example/incoming-call",
        "tunnel.example",
    )
    .await;

    assert_eq!(
        status, 403,
        "an untrusted X-Forwarded-Host must not change the URL signatures are checked against"
    );
}
