//! Two in-process servers sharing one real redis-server (`CALLBRIDGE_TEST_REDIS_URL`, a key prefix per test): the
//! concurrency cap counted once for both, and a stream token used once across both.

use callbridge::calls::service::{PlaceCall, ServiceError};
use callbridge::simulate::{MediaStreamClient, SimulateError};

use crate::fake_realtime::Script;
use crate::helpers::{
    AUTH_TOKEN, PUBLIC_URL, TestApp, outbound_env, outbound_twilio, spawn_app_with,
    spawn_app_with_clock, temp_data_dir,
};

/// `CALLBRIDGE_TEST_REDIS_URL`; the test fails (never skips) when it is unset.
fn redis_url() -> String {
    std::env::var("CALLBRIDGE_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("CALLBRIDGE_TEST_REDIS_URL is not set: run `make services` (or start redis-server and set it)")
    })
}

/// Two servers of one fleet (instances `a` and `b`) on a fresh key prefix, with `extra` settings on both.
async fn two_servers(extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    let url = redis_url();
    let prefix = format!("cbtest:{}:", uuid_like());
    let fleet = |id: &'static str| {
        let mut env: Vec<(&str, &str)> = vec![
            ("CALLBRIDGE_REDIS_URL", url.as_str()),
            ("CALLBRIDGE_REDIS_KEY_PREFIX", prefix.as_str()),
            ("CALLBRIDGE_INSTANCE_ID", id),
        ];
        env.extend_from_slice(extra);
        env
    };
    let a = spawn_app_with(Script::default(), &fleet("a")).await;
    let b = spawn_app_with(Script::default(), &fleet("b")).await;
    (a, b)
}

/// 16 random hex digits.
fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:016x}", nanos ^ u128::from(std::process::id()) << 64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_with_a_cap_of_two_reject_the_third_inbound_call_busy_whichever_gets_it() {
    let (a, b) = two_servers(&[("CALLBRIDGE_MAX_CONCURRENT_CALLS", "2")]).await;
    let _first = a.answer(&a.webhook()).await;
    let _second = b.answer(&b.webhook()).await;

    let third_on_a = a.webhook().post_incoming().await.expect("an answer");
    let third_on_b = b.webhook().post_incoming().await.expect("an answer");

    for third in [third_on_a, third_on_b] {
        assert_eq!(third.status, 200);
        assert!(
            third.stream.is_none(),
            "no stream for the third call: {}",
            third.body
        );
        assert!(
            third.body.contains(r#"<Reject reason="busy"/>"#),
            "{}",
            third.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_token_issued_on_one_server_is_accepted_once_by_the_other_and_then_refused_everywhere()
 {
    let (a, b) = two_servers(&[]).await;
    let url_on_a = a.answer(&a.webhook()).await;
    let url_on_b = url_on_a.replace(&format!(":{}/", a.port), &format!(":{}/", b.port));

    let on_b = MediaStreamClient::connect(&url_on_b).await;
    let again_on_a = MediaStreamClient::connect(&url_on_a).await;
    let again_on_b = MediaStreamClient::connect(&url_on_b).await;

    assert!(
        on_b.is_ok(),
        "the token issued by A is accepted by B: {:?}",
        on_b.err()
    );
    assert!(
        matches!(again_on_a, Err(SimulateError::Rejected(403))),
        "{again_on_a:?}"
    );
    assert!(
        matches!(again_on_b, Err(SimulateError::Rejected(403))),
        "{again_on_b:?}"
    );
}

fn call_to_the_restaurant() -> PlaceCall {
    PlaceCall {
        to: "+14155552671".into(),
        instructions: "Ask whether they are open on Sunday.".into(),
        ..PlaceCall::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_outbound_budget_is_counted_once_for_both_servers() {
    let twilio = outbound_twilio("CA11112222333344445555666677778888");
    let mut extra = outbound_env(&twilio);
    extra.push(("CALLBRIDGE_DAILY_OUTBOUND_BUDGET", "2"));
    let (a, b) = two_servers(&extra).await;

    let first = a.calls.place_call(call_to_the_restaurant()).await;
    let second = b.calls.place_call(call_to_the_restaurant()).await;
    let third_on_a = a.calls.place_call(call_to_the_restaurant()).await;
    let third_on_b = b.calls.place_call(call_to_the_restaurant()).await;

    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    for third in [third_on_a, third_on_b] {
        assert!(
            matches!(third, Err(ServiceError::DailyBudgetExhausted { budget: 2 })),
            "{third:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_call_over_the_fleet_cap_is_refused_on_the_other_server_before_twilio_is_asked()
{
    let twilio = outbound_twilio("CA11112222333344445555666677778888");
    let mut extra = outbound_env(&twilio);
    extra.push(("CALLBRIDGE_MAX_CONCURRENT_CALLS", "1"));
    let (a, b) = two_servers(&extra).await;
    let ringing = a.calls.place_call(call_to_the_restaurant()).await;

    let refused = b.calls.place_call(call_to_the_restaurant()).await;

    assert!(ringing.is_ok(), "{ringing:?}");
    assert!(
        matches!(refused, Err(ServiceError::TooManyCalls { max: 1 })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_redis_cannot_be_reached_does_not_start_and_names_the_url_without_its_password()
 {
    let data_dir = temp_data_dir().display().to_string();
    let env: std::collections::HashMap<String, String> = [
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ("OPENAI_API_KEY", "sk-test-key"),
        ("PUBLIC_URL", PUBLIC_URL),
        ("CALLBRIDGE_DATA_DIR", data_dir.as_str()),
        // Nothing listens on port 1 of loopback.
        ("CALLBRIDGE_REDIS_URL", "redis://:hunter2pass@127.0.0.1:1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let settings =
        callbridge::config::Settings::load(&env, None, callbridge::config::Requirement::Serve)
            .expect("valid settings");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");

    let built = callbridge::startup::Application::build_with_listener(settings, listener).await;

    let error = format!("{:#}", built.err().expect("no server without its Redis"));
    assert!(
        error.contains("CALLBRIDGE_REDIS_URL is set but Redis cannot be used"),
        "{error}"
    );
    assert!(error.contains("redis://:********@127.0.0.1:1"), "{error}");
    assert!(!error.contains("hunter2pass"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_gracefully_removes_its_lease_from_the_fleet() {
    let url = redis_url();
    let prefix = format!("cbtest:{}:", uuid_like());
    let env = [
        ("CALLBRIDGE_REDIS_URL", url.as_str()),
        ("CALLBRIDGE_REDIS_KEY_PREFIX", prefix.as_str()),
        ("CALLBRIDGE_INSTANCE_ID", "leaving"),
    ];
    let (_app, stop) = spawn_app_with_clock(
        Script::default(),
        &env,
        std::sync::Arc::new(callbridge::calls::clock::SystemClock),
    )
    .await;
    let client = redis::Client::open(url.as_str()).expect("a Redis URL");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis is reachable");
    let lease_key = format!("{prefix}instance:leaving");
    let listed = async |redis: &mut redis::aio::MultiplexedConnection| -> bool {
        redis::cmd("SISMEMBER")
            .arg(format!("{prefix}instances"))
            .arg("leaving")
            .query_async(redis)
            .await
            .expect("SISMEMBER")
    };
    let mut joined = false;
    for _ in 0..100 {
        if listed(&mut redis).await {
            joined = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    stop.stop().await;

    let lease: bool = redis::cmd("EXISTS")
        .arg(&lease_key)
        .query_async(&mut redis)
        .await
        .expect("EXISTS");
    assert!(joined, "the running server holds a lease and is listed");
    assert!(!lease, "its lease is removed after draining");
    assert!(!listed(&mut redis).await, "it is no longer listed");
}
