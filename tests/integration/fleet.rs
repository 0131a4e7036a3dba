//! Two in-process servers sharing one real redis-server (`CALLBRIDGE_TEST_REDIS_URL`, a key prefix per test): the
//! concurrency cap counted once for both, and a stream token used once across both.

use callbridge::calls::service::{PlaceCall, ServiceError};
use callbridge::simulate::{MediaStreamClient, SimulateError};

use crate::fake_realtime::Script;
use crate::helpers::{TestApp, outbound_env, outbound_twilio, spawn_app_with};

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
