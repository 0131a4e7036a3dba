//! Tests of the fleet against a real redis-server (`CALLBRIDGE_TEST_REDIS_URL`, e.g. `redis://127.0.0.1:6401`;
//! `make services` starts one). Each test uses a key prefix of its own, so tests run side by side on one Redis.

use std::time::Duration;

use rand::TryRng as _;
use secrecy::SecretString;

use super::*;
use crate::config::fleet::FleetSettings;

/// `CALLBRIDGE_TEST_REDIS_URL`; fails the test (never skips it) when unset.
pub(crate) fn test_redis_url() -> String {
    std::env::var("CALLBRIDGE_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "CALLBRIDGE_TEST_REDIS_URL is not set: run `make services` and source target/services/env, or start \
             redis-server yourself and set it (redis://127.0.0.1:PORT)"
        )
    })
}

/// A key prefix no other test uses: `cbtest:{16 random hex}:`.
pub(crate) fn random_prefix() -> String {
    let mut random = [0_u8; 8];
    rand::rngs::SysRng
        .try_fill_bytes(&mut random)
        .expect("randomness");
    format!("cbtest:{}:", hex::encode(random))
}

/// Fleet settings for instance `instance_id` under `prefix` on the test Redis, with a lease of `lease_s`.
pub(crate) fn settings(prefix: &str, instance_id: &str, lease_s: u32) -> FleetSettings {
    FleetSettings {
        redis_url: Some(SecretString::from(test_redis_url())),
        key_prefix: prefix.to_owned(),
        instance_id: instance_id.to_owned(),
        lease_s,
    }
}

/// A connected fleet handle for `instance_id` under `prefix`.
pub(crate) async fn fleet(prefix: &str, instance_id: &str) -> Fleet {
    Fleet::connect(&settings(prefix, instance_id, 15))
        .await
        .expect("the test Redis is reachable")
        .expect("a Redis URL is set")
}

#[tokio::test]
async fn without_a_redis_url_there_is_no_fleet() {
    let fleet = Fleet::connect(&FleetSettings::default()).await;

    assert!(matches!(fleet, Ok(None)), "{fleet:?}");
}

#[tokio::test]
async fn an_unreachable_redis_is_a_start_up_error_naming_the_url_without_its_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let settings = FleetSettings {
        redis_url: Some(SecretString::from("redis://:hunter2pass@127.0.0.1:1/0")),
        ..FleetSettings::default()
    };

    let error = Fleet::connect(&settings)
        .await
        .expect_err("nothing listens on port 1");

    let text = error.to_string();
    assert!(
        text.starts_with("cannot connect to Redis at redis://:********@127.0.0.1:1/0"),
        "{text}"
    );
    assert!(!text.contains("hunter2pass"), "{text}");
}

#[tokio::test]
async fn every_key_starts_with_the_prefix() {
    let prefix = random_prefix();
    let fleet = fleet(&prefix, "node-a").await;

    assert_eq!(fleet.key("token:abc"), format!("{prefix}token:abc"));
    assert_eq!(fleet.instance_id(), "node-a");
}

#[tokio::test]
async fn a_registered_call_is_found_on_its_instance_from_another_instance_until_released() {
    let prefix = random_prefix();
    let a = fleet(&prefix, "node-a").await;
    let b = fleet(&prefix, "node-b").await;
    let call_sid = "CA0123456789abcdef0123456789abcdef";

    a.register_call(call_sid, "call-1")
        .await
        .expect("registered");
    let while_held = b.instance_of(call_sid).await.expect("looked up");
    a.release_call(call_sid, "call-1").await.expect("released");
    let after = b.instance_of(call_sid).await.expect("looked up");

    assert_eq!(while_held.as_deref(), Some("node-a"));
    assert_eq!(after, None);
    let mut redis = a.connection();
    let held: Vec<String> = redis::cmd("HKEYS")
        .arg(a.key("instance:node-a:calls"))
        .query_async(&mut redis)
        .await
        .expect("HKEYS");
    assert!(held.is_empty(), "{held:?}");
}

#[tokio::test]
async fn a_registry_entry_expires_when_no_heartbeat_renews_it() {
    let prefix = random_prefix();
    let fleet = Fleet::connect(&settings(&prefix, "node-a", 15))
        .await
        .expect("reachable")
        .expect("set");
    let call_sid = "CAffffffffffffffffffffffffffffffff";

    fleet
        .register_call(call_sid, "call-2")
        .await
        .expect("registered");
    let mut redis = fleet.connection();
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(fleet.key(&format!("call:{call_sid}")))
        .query_async(&mut redis)
        .await
        .expect("PTTL");

    assert!(
        ttl_ms > 0 && ttl_ms <= 30_000,
        "two leases of 15 s at most: {ttl_ms} ms"
    );
    assert_eq!(fleet.holding_ttl(), Duration::from_secs(30));
}

#[test]
fn the_redis_version_is_read_from_info_and_compared_by_major_and_minor() {
    let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";

    assert_eq!(redis_version(info).as_deref(), Some("7.0.15"));
    assert!(version_at_least("7.0.15", (6, 2)));
    assert!(version_at_least("6.2.0", (6, 2)));
    assert!(!version_at_least("6.0.16", (6, 2)));
    assert!(!version_at_least("", (6, 2)));
}

mod fleet_admission {
    use std::time::Duration;

    use super::{fleet, random_prefix};
    use crate::fleet::admission::{FleetAdmission, SlotRequest};

    fn inbound(call_id: &str, max_calls: u32, slot_ttl: Duration) -> SlotRequest<'_> {
        SlotRequest {
            call_id,
            max_calls,
            slot_ttl,
            budget: None,
        }
    }

    #[tokio::test]
    async fn an_expired_slot_no_longer_counts() {
        let prefix = random_prefix();
        let a = fleet(&prefix, "node-a").await;
        a.admit(&inbound("c1", 1, Duration::from_millis(100)))
            .await
            .expect("asked");

        let at_once = a
            .admit(&inbound("c2", 1, Duration::from_secs(60)))
            .await
            .expect("asked");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let later = a
            .admit(&inbound("c2", 1, Duration::from_secs(60)))
            .await
            .expect("asked");

        assert_eq!(at_once, FleetAdmission::AtCap { calls: 1 });
        assert_eq!(later, FleetAdmission::Admitted { calls: 1 });
    }

    #[tokio::test]
    async fn concurrent_admissions_never_take_more_slots_than_the_cap() {
        let prefix = random_prefix();
        let a = fleet(&prefix, "node-a").await;
        let b = fleet(&prefix, "node-b").await;
        let ids: Vec<String> = (0..20).map(|i| format!("call-{i}")).collect();

        let verdicts = futures_util::future::join_all(ids.iter().enumerate().map(|(i, id)| {
            let fleet = if i % 2 == 0 { a.clone() } else { b.clone() };
            async move {
                fleet
                    .admit(&inbound(id, 5, Duration::from_secs(60)))
                    .await
                    .expect("asked")
            }
        }))
        .await;

        let admitted = verdicts
            .iter()
            .filter(|v| matches!(v, FleetAdmission::Admitted { .. }))
            .count();
        assert_eq!(admitted, 5, "{verdicts:?}");
        assert_eq!(a.calls_in_progress().await.expect("counted"), 5);
    }

    #[tokio::test]
    async fn the_days_spend_adds_up_every_instances_costs() {
        let prefix = random_prefix();
        let a = fleet(&prefix, "node-a").await;
        let b = fleet(&prefix, "node-b").await;

        a.add_cost("2026-12-01", 0.25).await.expect("added");
        b.add_cost("2026-12-01", 0.5).await.expect("added");
        b.add_cost("2026-12-02", 9.0).await.expect("added");

        let spent = a.cost_spent_usd("2026-12-01").await.expect("read");
        assert!((spent - 0.75).abs() < 1e-9, "{spent}");
    }
}
