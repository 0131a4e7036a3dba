//! Hang-up through Twilio's REST API, besides closing the stream, when credentials are configured.

use std::time::Duration;

use base64::Engine as _;
use callbridge::calls::EndReason;
use callbridge::twilio::rest::{RestError, TwilioRest};
use secrecy::SecretString;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::fake_twilio::FakeTwilio;
use crate::helpers::{AUTH_TOKEN, CALLER_HELLO, spawn_app_with};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

async fn goodbye_call(twilio: &FakeTwilio) -> (String, callbridge::calls::model::CallView) {
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(400, "Thanks for calling, goodbye!")],
            ..Script::default()
        },
        &[
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_API_BASE_URL", &twilio.url),
        ],
    )
    .await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect_hang_up(Duration::from_secs(20)).await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(15))
        .await;
    (call.webhook.call_sid.clone(), record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_also_completes_the_call_through_the_rest_api() {
    let twilio = FakeTwilio::start(200, r#"{"sid":"CA","status":"completed"}"#);

    let (call_sid, record) = goodbye_call(&twilio).await;

    let request = twilio
        .wait_for_request(Duration::from_secs(5))
        .await
        .expect("a REST request");
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call_sid}.json")
    );
    assert_eq!(
        request.form,
        vec![("Status".to_owned(), "completed".to_owned())]
    );
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Basic {expected}").as_str())
    );
    assert_eq!(record.end_reason, Some(EndReason::Goodbye.to_string()));
}

fn client(twilio: &FakeTwilio) -> TwilioRest {
    TwilioRest::new(
        url::Url::parse(&twilio.url).expect("url"),
        ACCOUNT_SID.to_owned(),
        SecretString::from(AUTH_TOKEN.to_owned()),
    )
}

#[actix_web::test]
async fn a_call_already_gone_at_twilio_counts_as_hung_up() {
    let twilio = FakeTwilio::start(
        404,
        r#"{"code":20404,"message":"The requested resource was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}"#,
    );

    let result = client(&twilio)
        .hang_up("CA0123456789abcdef0123456789abcdef")
        .await;

    assert!(result.is_ok(), "{result:?}");
    assert_eq!(twilio.requests().len(), 1, "one attempt, no retries");
}

#[actix_web::test]
async fn a_twilio_error_keeps_its_code_and_message_and_no_credential() {
    let twilio = FakeTwilio::start(
        401,
        r#"{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}"#,
    );

    let error = client(&twilio)
        .hang_up("CA0123456789abcdef0123456789abcdef")
        .await
        .expect_err("401 is an error");

    assert!(
        matches!(&error, RestError::Twilio { status: 401, code: Some(20003), message } if message == "Authenticate"),
        "{error:?}"
    );
    let shown = format!("{error} {error:?} {:?}", client(&twilio));
    assert!(!shown.contains(AUTH_TOKEN), "{shown}");
}

/// A server that accepts connections and never answers.
async fn silent_server() -> (url::Url, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url =
        url::Url::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("url");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[actix_web::test]
async fn a_twilio_that_does_not_answer_times_out_with_a_clear_error() {
    let (url, server) = silent_server().await;
    let rest = TwilioRest::new(
        url,
        ACCOUNT_SID.to_owned(),
        SecretString::from(AUTH_TOKEN.to_owned()),
    )
    .with_timeout(std::time::Duration::from_millis(300));

    let started = std::time::Instant::now();
    let hang_up = rest.hang_up("CA0123456789abcdef0123456789abcdef").await;
    let create = rest
        .create_call(&callbridge::twilio::rest::CreateCall {
            to: "+14155552671".into(),
            from: "+14155550100".into(),
            url: "https://callbridge.test/outbound-call/call_x".into(),
            status_callback: "https://callbridge.test/call-status".into(),
            ring_timeout_s: 30,
            time_limit_s: 600,
            machine_detection: None,
            send_digits: None,
            recording_callback: None,
        })
        .await;

    assert!(matches!(hang_up, Err(RestError::Timeout)), "{hang_up:?}");
    assert!(matches!(create, Err(RestError::Timeout)), "{create:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "both gave up after their timeout"
    );
    assert_eq!(
        RestError::Timeout.to_string(),
        "Twilio did not answer in time"
    );
    server.abort();
}
