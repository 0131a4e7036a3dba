//! Stream tokens shared through Redis by several instances (a real redis-server: `CALLBRIDGE_TEST_REDIS_URL`, a
//! random key prefix per test).

use std::time::Duration;

use crate::fleet::tests::{fleet, random_prefix};
use crate::security::tokens::{GrantRecord, StreamTokens, TokenError};

const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";

async fn two_instances(ttl: Duration) -> (StreamTokens, StreamTokens) {
    let prefix = random_prefix();
    (
        StreamTokens::shared(ttl, 100, Some(fleet(&prefix, "node-a").await)),
        StreamTokens::shared(ttl, 100, Some(fleet(&prefix, "node-b").await)),
    )
}

#[tokio::test]
async fn a_token_issued_by_one_instance_works_once_on_another() {
    let (a, b) = two_instances(Duration::from_secs(60)).await;
    let token = a.issue(CALL_SID);
    a.published(&token).await.expect("shared through Redis");

    let first = b.consume(&token).await;
    let again_on_b = b.consume(&token).await;
    let again_on_a = a.consume(&token).await;

    let grant = first.expect("the first consume works");
    assert_eq!(grant.call_sid, CALL_SID);
    assert!(!grant.handover);
    assert_eq!(grant.issued_by.as_deref(), Some("node-a"));
    assert_eq!(again_on_b, Err(TokenError::Unknown));
    assert_eq!(again_on_a, Err(TokenError::Unknown));
}

#[tokio::test]
async fn a_handover_token_stays_a_handover_token_across_instances() {
    let (a, b) = two_instances(Duration::from_secs(60)).await;
    let token = a.issue_handover(CALL_SID);
    a.all_published().await.expect("shared through Redis");

    let grant = b.consume(&token).await.expect("works");

    assert!(grant.handover);
}

#[tokio::test]
async fn a_token_consumed_at_once_on_its_own_instance_waits_for_its_write() {
    let (a, _b) = two_instances(Duration::from_secs(60)).await;
    let token = a.issue(CALL_SID);

    let grant = a.consume(&token).await;

    assert_eq!(grant.map(|g| g.call_sid), Ok(CALL_SID.to_owned()));
}

#[tokio::test]
async fn an_expired_shared_token_is_refused() {
    let (a, b) = two_instances(Duration::from_millis(200)).await;
    let token = a.issue(CALL_SID);
    a.published(&token).await.expect("shared through Redis");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let result = b.consume(&token).await;

    assert_eq!(result, Err(TokenError::Unknown));
}

#[tokio::test]
async fn unknown_and_malformed_tokens_are_refused_like_used_ones() {
    let (a, b) = two_instances(Duration::from_secs(60)).await;
    let token = a.issue(CALL_SID);
    a.published(&token).await.expect("shared through Redis");

    let unknown = b
        .consume("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await;
    let malformed = b.consume(&format!("{token}x")).await;

    assert_eq!(unknown, Err(TokenError::Unknown));
    assert_eq!(malformed, Err(TokenError::Unknown));
    assert!(
        b.consume(&token).await.is_ok(),
        "near misses must not burn the real token"
    );
}

#[tokio::test]
async fn concurrent_consumes_on_two_instances_succeed_exactly_once() {
    let (a, b) = two_instances(Duration::from_secs(60)).await;
    let token = a.issue(CALL_SID);
    a.published(&token).await.expect("shared through Redis");

    let results = futures_util::future::join_all((0..16).map(|i| {
        let tokens = if i % 2 == 0 { a.clone() } else { b.clone() };
        let token = token.clone();
        async move { tokens.consume(&token).await.is_ok() }
    }))
    .await;

    assert_eq!(results.iter().filter(|ok| **ok).count(), 1);
}

#[tokio::test]
async fn the_grant_in_redis_is_json_bound_to_the_call_sid_with_a_ttl() {
    let prefix = random_prefix();
    let fleet = fleet(&prefix, "node-a").await;
    let tokens = StreamTokens::shared(Duration::from_secs(60), 100, Some(fleet.clone()));
    let token = tokens.issue(CALL_SID);
    tokens
        .published(&token)
        .await
        .expect("shared through Redis");

    let mut redis = fleet.connection();
    let json: String = redis::cmd("GET")
        .arg(fleet.key(&format!("token:{token}")))
        .query_async(&mut redis)
        .await
        .expect("GET");
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(fleet.key(&format!("token:{token}")))
        .query_async(&mut redis)
        .await
        .expect("PTTL");

    let record: GrantRecord = serde_json::from_str(&json).expect("a grant");
    assert_eq!(record.call_sid, CALL_SID);
    assert_eq!(record.issued_by, "node-a");
    assert!(
        !json.contains("plan"),
        "no plan field when there is none: {json}"
    );
    assert!(ttl_ms > 0 && ttl_ms <= 60_000, "{ttl_ms}");
}

#[test]
fn a_grant_with_fields_it_does_not_know_still_reads() {
    let json = r#"{"call_sid":"CA01","handover":false,"issued_at_unix_ms":1,"issued_by":"node-a",
                   "plan":{"from":"+15550100"},"future_field":true}"#;

    let record: GrantRecord = serde_json::from_str(json).expect("reads");

    assert_eq!(record.plan, Some(serde_json::json!({"from": "+15550100"})));
}
