//! Signed webhooks from a whole call: an inbound call on a server with a default `CALLBRIDGE_WEBHOOK_URL` sends its
//! status changes and then `call.completed`, whose data is the record `get_call` returns (transcript included),
//! signed with the configured secret, to a receiver on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use callbridge::webhooks::signing::WebhookSecret;
use serde_json::Value;
use tokio::sync::Notify;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, spawn_app_with};
use callbridge::simulate::Observation;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const REPLY: &str = "Sure, a table for four at seven tonight.";

/// One POST the receiver got: its three Standard Webhooks headers and its body.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// A receiver on 127.0.0.1 that answers 204 and keeps what it got.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
}

impl Receiver {
    fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let state = (got.clone(), arrived.clone());
        let server = HttpServer::new(move || {
            let state = state.clone();
            App::new().route(
                "/hook",
                web::post().to(move |req: HttpRequest, body: String| {
                    let (got, arrived) = state.clone();
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        got.lock().expect("not poisoned").push(Received {
                            id: header("webhook-id"),
                            timestamp: header("webhook-timestamp"),
                            signature: header("webhook-signature"),
                            body,
                        });
                        arrived.notify_waiters();
                        HttpResponse::NoContent().finish()
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the receiver");
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            got,
            arrived,
        }
    }

    /// Waits up to `timeout` until a `call.completed` arrived; returns everything received.
    async fn until_completed(&self, timeout: Duration) -> Vec<Received> {
        tokio::time::timeout(timeout, async {
            loop {
                let arrived = self.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                let got = self.got.lock().expect("not poisoned").clone();
                if got.iter().any(|r| r.body.contains("\"call.completed\"")) {
                    return got;
                }
                arrived.await;
            }
        })
        .await
        .expect("call.completed arrives")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_call_sends_its_status_changes_then_call_completed_with_the_record_get_call_returns()
 {
    inbound_call_sends_its_webhooks(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_records_in_postgresql_an_inbound_call_sends_the_same_webhooks() {
    let schema = crate::pg_store::Schema::create();
    inbound_call_sends_its_webhooks(Some(&schema.url())).await;
}

/// An inbound call's signed webhooks, end to end: its status changes, then `call.completed` with the record
/// `get_call` returns; the records in PostgreSQL at `database_url` when given, else in SQLite.
async fn inbound_call_sends_its_webhooks(database_url: Option<&str>) {
    let receiver = Receiver::start();
    let mut env = vec![
        ("CALLBRIDGE_WEBHOOK_URL", receiver.url.as_str()),
        ("CALLBRIDGE_WEBHOOK_SECRET", SECRET),
    ];
    env.extend(database_url.map(|url| ("CALLBRIDGE_DATABASE_URL", url)));
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(1000, REPLY)],
            caller_transcripts: vec!["A table for four, please.".into()],
            ..Script::default()
        },
        &env,
    )
    .await;

    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect(
        "the reply to play out",
        Duration::from_secs(15),
        |o| matches!(o, Observation::PlaybackIdle { played_ms } if *played_ms >= 1000),
    )
    .await;
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(10))
        .await;
    let received = receiver.until_completed(Duration::from_secs(15)).await;
    let get_call = app
        .calls
        .get_call(&record.id, None)
        .await
        .expect("the call reads");

    let secret = WebhookSecret::parse(SECRET).expect("valid");
    for r in &received {
        let timestamp_s: i64 = r.timestamp.parse().expect("integer seconds");
        assert_eq!(
            r.signature,
            secret.sign(&r.id, timestamp_s, r.body.as_bytes()),
            "{}",
            r.body
        );
    }
    let bodies: Vec<Value> = received
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("JSON"))
        .collect();
    let kinds: Vec<(&str, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap_or(""),
                b["data"]["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("call.status_changed", "in-progress"),
            ("call.status_changed", "completed"),
            ("call.completed", "completed"),
        ]
    );
    let completed = &bodies[2]["data"];
    assert_eq!(
        completed,
        &serde_json::to_value(&get_call).expect("JSON"),
        "call.completed carries get_call's record"
    );
    assert_eq!(completed["transcript"][1]["text"], REPLY);
    assert_eq!(completed["end_reason"], "caller_hung_up");
    assert_eq!(completed["webhook_url"], receiver.url.as_str());
}
