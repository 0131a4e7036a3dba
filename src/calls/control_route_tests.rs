//! Tests of the routing I/O against a real redis-server (`CALLBRIDGE_TEST_REDIS_URL`; `make services` starts one),
//! with two instances' live-call tables in one process. Each test uses a key prefix of its own.

use std::time::Duration;

use secrecy::SecretString;

use super::*;
use crate::calls::say::SayReport;
use crate::config::fleet::FleetSettings;

const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";

/// `CALLBRIDGE_TEST_REDIS_URL`; fails the test (never skips it) when unset.
fn redis_url() -> String {
    std::env::var("CALLBRIDGE_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "CALLBRIDGE_TEST_REDIS_URL is not set: run `make services` and source target/services/env, or start \
             redis-server yourself and set it (redis://127.0.0.1:PORT)"
        )
    })
}

/// One instance: its fleet handle, its live calls routed through Redis, and its subscription (stopped on drop of
/// the token's owner at the end of the test).
struct Instance {
    fleet: Fleet,
    live: LiveCalls,
    remote: Arc<FleetRemote>,
    stop: CancellationToken,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn instance(prefix: &str, id: &str) -> Instance {
    instance_on_db(prefix, id, None).await
}

/// [`instance`], its pub/sub connections selecting database `db` (channels are global, but `CLIENT LIST` shows the
/// database, which tells these connections apart from other tests').
async fn instance_on_db(prefix: &str, id: &str, db: Option<i64>) -> Instance {
    let settings = FleetSettings {
        redis_url: Some(SecretString::from(redis_url())),
        key_prefix: prefix.to_owned(),
        instance_id: id.to_owned(),
        lease_s: 15,
    };
    let fleet = Fleet::connect(&settings)
        .await
        .expect("the test Redis is reachable")
        .expect("a Redis URL is set");
    let mut info =
        redis::IntoConnectionInfo::into_connection_info(redis_url()).expect("a Redis URL");
    if let Some(db) = db {
        let on_db = info.redis_settings().clone().set_db(db);
        info = info.set_redis_settings(on_db);
    }
    let client = redis::Client::open(info).expect("a Redis URL");
    let remote = Arc::new(FleetRemote::new(fleet.clone(), client));
    let live = LiveCalls::default();
    live.set_remote(remote.clone());
    let stop = CancellationToken::new();
    spawn_subscriber(remote.clone(), live.clone(), stop.clone()).await;
    Instance {
        fleet,
        live,
        remote,
        stop,
    }
}

fn prefix() -> String {
    format!("cbtest:{}:", random_id())
}

/// Two instances, `node-a` and `node-b`, under a fresh key prefix, B holding `CALL_SID` (as `call_1`) live and in the
/// fleet's registry: the prefix, A, B, and B's control receiver for the call with its registration guard.
async fn b_holding_the_call() -> (
    String,
    Instance,
    Instance,
    crate::calls::live::ControlReceiver,
    crate::calls::live::LiveCallGuard,
) {
    let prefix = prefix();
    let (a, b) = (
        instance(&prefix, "node-a").await,
        instance(&prefix, "node-b").await,
    );
    let (control, guard) = b.live.register(CALL_SID);
    b.fleet
        .register_call(CALL_SID, "call_1")
        .await
        .expect("held");
    (prefix, a, b, control, guard)
}

#[tokio::test]
async fn a_control_for_a_call_held_by_another_instance_reaches_it_there() {
    let (_prefix, a, _b, mut control, _guard) = b_holding_the_call().await;

    let routed = a
        .live
        .route(CALL_SID, CallControl::Instruct("Offer 8 pm.".into()))
        .await;
    let received = tokio::time::timeout(Duration::from_secs(5), control.recv())
        .await
        .map(|control| control.map(|c| *c));

    assert_eq!(routed, Ok(true));
    assert_eq!(
        received.expect("in time"),
        Some(CallControl::Instruct("Offer 8 pm.".into()))
    );
}

#[tokio::test]
async fn a_control_for_a_call_no_instance_holds_is_not_delivered() {
    let prefix = prefix();
    let a = instance(&prefix, "node-a").await;
    let _b = instance(&prefix, "node-b").await;

    let unknown = a.live.route(CALL_SID, CallControl::HangUp).await;
    // Registered for an instance that is gone: nobody reads its channel, PUBLISH reaches no one.
    a.fleet
        .register_call(CALL_SID, "call_1")
        .await
        .expect("held");
    let gone_holder = {
        let mut redis = a.fleet.connection();
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}call:{CALL_SID}"))
            .arg("node-gone")
            .query_async(&mut redis)
            .await
            .expect("SET");
        a.live.route(CALL_SID, CallControl::HangUp).await
    };

    assert_eq!(unknown, Ok(false));
    assert_eq!(gone_holder, Ok(false));
    assert_eq!(
        a.live.is_held_anywhere(CALL_SID).await,
        Ok(true),
        "the registry still names a holder"
    );
}

#[tokio::test]
async fn a_say_goes_to_the_holder_and_its_answer_comes_back() {
    let (_prefix, a, _b, mut control, _guard) = b_holding_the_call().await;
    let request = SayRequest {
        text: "Your table is booked.".into(),
        wait_for_reply: false,
        reply_timeout: Duration::from_secs(5),
        hang_up_after: false,
    };
    let (reply, answer) = SayReplySlot::new();
    let report = SayReport {
        spoken: "Your table is booked.".into(),
        heard_text: "Your table is booked.".into(),
        ..SayReport::default()
    };

    let routed = a
        .live
        .route(
            CALL_SID,
            CallControl::Say {
                request: request.clone(),
                reply,
            },
        )
        .await;
    let at_b = tokio::time::timeout(Duration::from_secs(5), control.recv())
        .await
        .expect("in time")
        .map(|c| *c);
    let Some(CallControl::Say {
        request: seen,
        reply: b_reply,
    }) = at_b
    else {
        panic!("B got {at_b:?}");
    };
    b_reply.send(Ok(report.clone()));
    let answered = tokio::time::timeout(Duration::from_secs(5), answer).await;

    assert_eq!(routed, Ok(true));
    assert_eq!(seen, request);
    assert_eq!(answered.expect("in time").expect("answered"), Ok(report));
}

#[tokio::test]
async fn a_malformed_message_is_skipped_and_the_next_one_delivered() {
    let (prefix, a, _b, mut control, _guard) = b_holding_the_call().await;
    let channel = control_channel(&prefix, "node-b");

    let receivers = a.remote.publish(&channel, "{not json").await;
    let newer = a
        .remote
        .publish(
            &channel,
            &format!(r#"{{"v":99,"call_sid":"{CALL_SID}","control":{{"kind":"hang_up"}}}}"#),
        )
        .await;
    let routed = a.live.route(CALL_SID, CallControl::HangUp).await;
    let received = tokio::time::timeout(Duration::from_secs(5), control.recv())
        .await
        .map(|control| control.map(|c| *c));

    assert_eq!(receivers, Ok(1), "B's subscriber read it");
    assert_eq!(newer, Ok(1));
    assert_eq!(routed, Ok(true));
    assert_eq!(
        received.expect("in time"),
        Some(CallControl::HangUp),
        "only the valid message arrives"
    );
}

#[tokio::test]
async fn the_subscriber_comes_back_after_its_connection_is_killed() {
    let prefix = prefix();
    // No other test selects this database.
    const B_DB: i64 = 9;
    let a = instance(&prefix, "node-a").await;
    let b = instance_on_db(&prefix, "node-b", Some(B_DB)).await;
    let (mut control, _guard) = b.live.register(CALL_SID);
    b.fleet
        .register_call(CALL_SID, "call_1")
        .await
        .expect("held");
    // Kill exactly B's subscription: the pub/sub connection on B's database.
    let mut redis = a.fleet.connection();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut redis)
        .await
        .expect("CLIENT LIST");
    let ids: Vec<&str> = clients
        .lines()
        .filter(|line| line.contains(&format!(" db={B_DB} ")))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    for id in &ids {
        let _: () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut redis)
            .await
            .expect("CLIENT KILL");
    }

    let delivered = async {
        loop {
            if a.live.route(CALL_SID, CallControl::HangUp).await == Ok(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), delivered)
        .await
        .expect("B resubscribes and takes controls again");
    let received = tokio::time::timeout(Duration::from_secs(5), control.recv())
        .await
        .map(|control| control.map(|c| *c));

    assert_eq!(
        ids.len(),
        1,
        "B's one subscription was found and killed: {clients}"
    );
    assert_eq!(received.expect("in time"), Some(CallControl::HangUp));
}
