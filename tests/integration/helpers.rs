//! The test harness: the app on `127.0.0.1:0` pointed at a fake Realtime server, and helpers to place a call
//! through it the way Twilio does (signed webhook, TwiML, media stream).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use callbridge::calls::clock::{SharedClock, SystemClock};
use callbridge::calls::live::LiveCalls;
use callbridge::calls::model::CallView;
use callbridge::calls::service::{CallService, MAX_WAIT_S, is_done};
use callbridge::config::{Requirement, Settings};
use callbridge::simulate::webhook::random_hex_id;
use callbridge::simulate::{
    MediaClientConfig, MediaStreamClient, Observation, ObservedEvent, WebhookCall,
    local_stream_url, parse_connect_stream,
};
use callbridge::startup::Application;
use tokio_util::sync::CancellationToken;

use crate::fake_realtime::{FakeRealtime, Script};
use crate::fake_twilio::{FakeTwilio, Route};

/// The auth token the test app checks signatures with.
pub const AUTH_TOKEN: &str = "test-auth-token-0123456789abcdef";
/// The public URL the test app believes Twilio reaches it at (signatures are computed over it).
pub const PUBLIC_URL: &str = "https://callbridge.test";

/// Real recorded speech (espeak-ng), raw 8 kHz μ-law: "Hi, I'd like to book a table for four at seven tonight".
pub static CALLER_HELLO: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(fixture("caller-hello.ulaw")).expect("tests/fixtures/caller-hello.ulaw")
});
/// A short interruption: "Wait, sorry, stop."
pub static CALLER_INTERRUPT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(fixture("caller-interrupt.ulaw")).expect("tests/fixtures/caller-interrupt.ulaw")
});

/// Path of a file under `tests/fixtures`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Logs go to stdout when `TEST_LOG` is set; otherwise the tests are silent.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        callbridge::telemetry::init(callbridge::config::LogFormat::Text, "info,callbridge=debug");
    }
});

/// A fresh, empty data directory for one app.
pub fn temp_data_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("callbridge-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A running app with its fake OpenAI.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The port.
    pub port: u16,
    /// The fake Realtime server the app talks to.
    pub fake: FakeRealtime,
    /// The calls in progress.
    pub live_calls: LiveCalls,
    /// Ends every live call.
    pub shutdown: CancellationToken,
    /// The call service (records, outbound calls).
    pub calls: callbridge::calls::service::CallService,
}

/// Starts the app with the default test settings and a fake Realtime server playing `script`.
pub async fn spawn_app(script: Script) -> TestApp {
    spawn_app_with(script, &[]).await
}

/// Like [`spawn_app`], with extra environment settings (`CALLBRIDGE_...` or well-known names) on top.
pub async fn spawn_app_with(script: Script, extra_env: &[(&str, &str)]) -> TestApp {
    // Dropping the stop handle leaves the app running until the test process ends.
    spawn_app_with_clock(script, extra_env, Arc::new(SystemClock))
        .await
        .0
}

/// Stops an app started by [`spawn_app_with_clock`].
pub struct StopApp {
    /// Sent to start the graceful shutdown.
    stop: tokio::sync::oneshot::Sender<()>,
    /// The server's run.
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl StopApp {
    /// Shuts the app down gracefully and waits until it has stopped (its records written), as a SIGTERM does.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// Like [`spawn_app_with`], with the clock scheduled and retried calls are due by, and a handle that stops the app
/// (a restart is a stop and a new app on the same `CALLBRIDGE_DATA_DIR`).
pub async fn spawn_app_with_clock(
    script: Script,
    extra_env: &[(&str, &str)],
    clock: SharedClock,
) -> (TestApp, StopApp) {
    LazyLock::force(&TRACING);
    let fake = FakeRealtime::start(script).await;
    let mut env: HashMap<String, String> = [
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ("OPENAI_API_KEY", "sk-test-key"),
        ("PUBLIC_URL", PUBLIC_URL),
        ("CALLBRIDGE_HOST", "127.0.0.1"),
        ("PORT", "0"),
        // The assistant waits for the caller unless a test wants a greeting.
        ("CALLBRIDGE_ASSISTANT_SPEAKS_FIRST", "false"),
        // Outbound calls go nowhere by default; the tests call US and UK numbers.
        ("CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES", "+1,+44"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert("OPENAI_REALTIME_URL".into(), fake.url());
    env.insert(
        "CALLBRIDGE_DATA_DIR".into(),
        temp_data_dir().display().to_string(),
    );
    for (k, v) in extra_env {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let settings = Settings::load(&env, None, Requirement::Serve).expect("test settings are valid");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let app = Application::build_with_clock(settings, listener, clock)
        .await
        .expect("build the app");
    let port = app.port();
    let live_calls = app.live_calls();
    let shutdown = app.shutdown_token();
    let calls = app.calls();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        if stopped.await.is_err() {
            // The handle was dropped: run on.
            std::future::pending::<()>().await;
        }
    }));
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        fake,
        live_calls,
        shutdown,
        calls,
    };
    (app, StopApp { stop, server })
}

/// A server running in another process: only its address.
pub struct ExternalApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The port.
    pub port: u16,
}

impl ExternalApp {
    /// A webhook for a fresh inbound call, signed with the test token and public URL.
    pub fn webhook(&self) -> WebhookCall {
        webhook_for(&self.address)
    }

    /// Posts the webhook and returns the local `ws://` URL of the stream from the TwiML.
    pub async fn answer(&self, webhook: &WebhookCall) -> String {
        answer_at(&self.address, webhook).await
    }

    /// Places an inbound call the way Twilio does and starts its media stream, as [`TestApp::call`] does.
    pub async fn call(&self) -> TestCall {
        call_at(&self.address).await
    }
}

/// Places an inbound call on the server at `address` (signed webhook, TwiML) and starts its media stream.
async fn call_at(address: &str) -> TestCall {
    let webhook = webhook_for(address);
    let url = answer_at(address, &webhook).await;
    let stream = MediaStreamClient::connect(&url)
        .await
        .expect("the media stream upgrade succeeds");
    stream
        .start(&webhook.call_sid, &[])
        .await
        .expect("start is sent");
    TestCall { webhook, stream }
}

fn webhook_for(address: &str) -> WebhookCall {
    WebhookCall {
        server_url: address.to_owned(),
        public_url: PUBLIC_URL.to_owned(),
        auth_token: AUTH_TOKEN.to_owned(),
        call_sid: random_hex_id("CA"),
        account_sid: random_hex_id("AC"),
        from: "+15550100001".to_owned(),
        to: "+15550100002".to_owned(),
    }
}

async fn answer_at(address: &str, webhook: &WebhookCall) -> String {
    let answer = webhook
        .post_incoming()
        .await
        .expect("the webhook is answered");
    assert_eq!(answer.status, 200, "webhook refused: {}", answer.body);
    let stream = answer.stream.expect("TwiML with <Connect><Stream>");
    local_stream_url(&stream.url, address).expect("a stream URL")
}

/// The record of the call `call_sid` once its end reason is written (or nothing more will happen to it), read with
/// `get_call` and its `wait_s`, which wakes on every write to the store. Runs until then: bound it with a timeout.
async fn finished_record(calls: &CallService, call_sid: &str) -> CallView {
    // The webhook queued the record before it answered; its write may still be on its way.
    let id = loop {
        if let Some(view) = calls
            .store()
            .get_by_call_sid(call_sid)
            .expect("the store reads")
        {
            break view.id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    loop {
        let view = calls
            .get_call(&id, Some(MAX_WAIT_S))
            .await
            .expect("the stored call reads");
        if view.end_reason.is_some() || is_done(&view) {
            return view;
        }
    }
}

/// Waits up to `timeout` for the server to close `stream` (a hang-up, a refusal); `None` if it did not.
pub async fn server_closed(stream: &MediaStreamClient, timeout: Duration) -> Option<ObservedEvent> {
    stream
        .wait_for(
            |e| {
                matches!(
                    e.kind,
                    Observation::Closed {
                        by_server: true,
                        ..
                    }
                )
            },
            timeout,
        )
        .await
}

/// A call in progress: the webhook Twilio sent and the media stream it opened.
pub struct TestCall {
    /// The webhook (CallSid, numbers).
    pub webhook: WebhookCall,
    /// Twilio's side of the media stream.
    pub stream: MediaStreamClient,
}

impl TestApp {
    /// A handle on a server started some other way (the real binary) at `address`; it has no fake and no records.
    pub fn for_address(address: &str, port: u16) -> ExternalApp {
        ExternalApp {
            address: address.to_owned(),
            port,
        }
    }

    /// A webhook for a fresh inbound call, signed with the right token and public URL.
    pub fn webhook(&self) -> WebhookCall {
        webhook_for(&self.address)
    }

    /// Posts the webhook and returns the local `ws://` URL of the stream from the TwiML.
    pub async fn answer(&self, webhook: &WebhookCall) -> String {
        answer_at(&self.address, webhook).await
    }

    /// Places an inbound call the way Twilio does and starts its media stream. Caller audio is silence until the
    /// test queues some.
    pub async fn call(&self) -> TestCall {
        self.call_with(MediaClientConfig::default()).await
    }

    /// [`TestApp::call`] with a media-client configuration.
    pub async fn call_with(&self, config: MediaClientConfig) -> TestCall {
        let webhook = self.webhook();
        let url = self.answer(&webhook).await;
        let stream = MediaStreamClient::connect_with(&url, config)
            .await
            .expect("the media stream upgrade succeeds");
        stream
            .start(&webhook.call_sid, &[])
            .await
            .expect("start is sent");
        TestCall { webhook, stream }
    }

    /// Waits for the call's finished record in the server's store, as a user reads it (`get_call`): the call must
    /// end within `timeout`, its record (end reason) be written, and the call be no longer live.
    pub async fn record(&self, call_sid: &str, timeout: Duration) -> CallView {
        let finished = async {
            let record = finished_record(&self.calls, call_sid).await;
            // The bridge writes the record before it closes the OpenAI session and lets go of the call.
            while self.live_calls.is_live(call_sid) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            record
        };
        tokio::time::timeout(timeout, finished)
            .await
            .unwrap_or_else(|_| panic!("call {call_sid} did not end within {timeout:?}"))
    }

    /// The call's stored record as it is now, `None` before its webhook stored it.
    pub fn stored(&self, call_sid: &str) -> Option<CallView> {
        self.calls
            .store()
            .get_by_call_sid(call_sid)
            .expect("the store reads")
    }
}

impl TestCall {
    /// Waits until an observation matches, failing the test with `what` after `timeout`.
    pub async fn expect(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Observation) -> bool,
    ) -> ObservedEvent {
        self.stream
            .wait_for(|e| pred(&e.kind), timeout)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; saw {:#?}",
                    self.stream.events()
                )
            })
    }

    /// Waits for the server to close the stream (hang up), failing the test after `timeout`.
    pub async fn expect_hang_up(&self, timeout: Duration) -> ObservedEvent {
        self.expect("the server to hang up", timeout, |o| {
            matches!(
                o,
                Observation::Closed {
                    by_server: true,
                    ..
                }
            )
        })
        .await
    }

    /// Assistant audio received so far, ms.
    pub fn assistant_ms_received(&self) -> u64 {
        self.stream
            .events()
            .iter()
            .map(|e| match e.kind {
                Observation::Media { bytes, .. } => bytes as u64,
                _ => 0,
            })
            .sum::<u64>()
            / 8
    }
}

/// The real `callbridge serve` binary running on a free loopback port, talking to `realtime_url`.
pub struct RunningBinary {
    /// The process (stderr piped: the logs).
    pub child: tokio::process::Child,
    /// The log lines (stderr) read so far: a reader collects them as they come, so a verbose server never blocks on a
    /// full pipe, and a test can watch them while the server runs.
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The reader; it ends with the process.
    reader: Option<tokio::task::JoinHandle<()>>,
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The port.
    pub port: u16,
}

impl RunningBinary {
    /// Sends SIGTERM: the server starts its graceful shutdown.
    pub async fn sigterm(&self) {
        let pid = self.child.id().expect("the server is running").to_string();
        let killed = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(killed.success(), "kill -TERM {pid} failed");
    }

    /// Waits (at most 10 s) for the server to exit; returns its exit status and everything it logged.
    pub async fn wait_with_logs(&mut self) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the server exits within 10 s")
            .expect("an exit status");
        if let Some(reader) = self.reader.take() {
            reader.await.expect("the log reader ends with the process");
        }
        (status, self.log_lines().join("\n"))
    }

    /// The log lines written so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// SIGTERM, then [`RunningBinary::wait_with_logs`].
    pub async fn stop(&mut self) -> (std::process::ExitStatus, String) {
        self.sigterm().await;
        self.wait_with_logs().await
    }
}

/// Starts `callbridge serve` with the test settings plus `extra_env`, and waits until `/ready` answers 200.
pub async fn spawn_binary(realtime_url: &str, extra_env: &[(&str, &str)]) -> RunningBinary {
    spawn_binary_with_fd_limit(realtime_url, extra_env, None).await
}

/// [`spawn_binary`], the process started with `RLIMIT_NOFILE` set to `(soft, hard)` when given.
pub async fn spawn_binary_with_fd_limit(
    realtime_url: &str,
    extra_env: &[(&str, &str)],
    nofile: Option<(u64, u64)>,
) -> RunningBinary {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    // With a descriptor limit, util-linux's `prlimit` sets it and execs the server (same process).
    let mut command = match nofile {
        Some((soft, hard)) => {
            let mut command = tokio::process::Command::new("/usr/bin/prlimit");
            command
                .arg(format!("--nofile={soft}:{hard}"))
                .arg("--")
                .arg(env!("CARGO_BIN_EXE_callbridge"));
            command
        }
        None => tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge")),
    };
    command
        .arg("serve")
        .env_clear()
        .env("PORT", port.to_string())
        .env("CALLBRIDGE_HOST", "127.0.0.1")
        .env("PUBLIC_URL", PUBLIC_URL)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("OPENAI_API_KEY", "sk-test-key")
        .env("OPENAI_REALTIME_URL", realtime_url)
        .env("CALLBRIDGE_ASSISTANT_SPEAKS_FIRST", "false")
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .env("CALLBRIDGE_DATA_DIR", temp_data_dir())
        .env("RUST_LOG", "info")
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("the server starts");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let collected = std::sync::Arc::clone(&lines);
    let reader = child.stderr.take().map(|stderr| {
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt as _;
            let mut reader = tokio::io::BufReader::new(stderr);
            let mut line = Vec::new();
            // Lines are read as bytes: a log line is not always valid UTF-8 at this level.
            while let Ok(n) = reader.read_until(b'\n', &mut line).await {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\n')
                    .to_owned();
                collected
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(text);
                line.clear();
            }
        })
    });
    let address = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if get_status(&address, "/ready").await == Some(200) {
            return RunningBinary {
                child,
                lines,
                reader,
                address,
                port,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not come up on {address}");
}

/// The HTTP status of `GET {address}{path}`, or `None` when the server does not answer (awc: needs an actix runtime,
/// e.g. `#[actix_web::test]`).
pub async fn get_status(address: &str, path: &str) -> Option<u16> {
    awc::Client::default()
        .get(format!("{address}{path}"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// POSTs `params` form-encoded to `{address}{path}`, signed as Twilio signs it for `PUBLIC_URL{path}` with `token`
/// (the test auth token unless given), with an `I-Twilio-Idempotency-Token` when `idempotency_token` is given.
/// Returns the status and body (awc: needs an actix runtime, e.g. `#[actix_web::test]`).
pub async fn post_signed(
    address: &str,
    path: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
    idempotency_token: Option<&str>,
) -> (u16, String) {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let signature =
        callbridge::twilio::signature::RequestValidator::new(token.unwrap_or(AUTH_TOKEN))
            .sign(&format!("{PUBLIC_URL}{path}"), &params);
    let mut request = awc::Client::default()
        .post(format!("{address}{path}"))
        .insert_header(("X-Twilio-Signature", signature));
    if let Some(idempotency_token) = idempotency_token {
        request = request.insert_header(("I-Twilio-Idempotency-Token", idempotency_token));
    }
    let mut response = request
        .send_form(&params)
        .await
        .expect("the webhook is answered");
    let body = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The Twilio account SID the outbound-call tests configure (`TWILIO_ACCOUNT_SID`) and sign webhooks with.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// The E.164 number the outbound-call tests place calls from (`TWILIO_PHONE_NUMBER`).
pub const OUR_NUMBER: &str = "+14155550100";

/// A fake Twilio REST API for one outbound call: creating it answers 201 `queued` with `call_sid`, updating it
/// (hang-up) answers 200 `completed`.
pub fn outbound_twilio(call_sid: &str) -> FakeTwilio {
    FakeTwilio::start_routes(vec![
        Route::new(
            "POST",
            "/Calls.json",
            201,
            &format!(r#"{{"sid":"{call_sid}","status":"queued"}}"#),
        ),
        Route::new(
            "POST",
            &format!("/Calls/{call_sid}.json"),
            200,
            r#"{"status":"completed"}"#,
        ),
    ])
}

/// The settings that let the app place calls through `twilio`: `ACCOUNT_SID`, `OUR_NUMBER` and its base URL.
pub fn outbound_env(twilio: &FakeTwilio) -> Vec<(&'static str, &str)> {
    vec![
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_PHONE_NUMBER", OUR_NUMBER),
        ("TWILIO_API_BASE_URL", twilio.url.as_str()),
    ]
}

/// Answers the placed call `id` as Twilio does: fetches its TwiML (signed `POST /outbound-call/{id}` for
/// `call_sid`, `in-progress`), asserts it is a 200, opens the `<Connect><Stream>` it names and sends `start`.
/// Returns the started media stream.
pub async fn answer_outbound(app: &TestApp, id: &str, call_sid: &str) -> MediaStreamClient {
    let (code, twiml) = post_signed(
        &app.address,
        &format!("/outbound-call/{id}"),
        &[
            ("CallSid", call_sid),
            ("AccountSid", ACCOUNT_SID),
            ("CallStatus", "in-progress"),
            ("Direction", "outbound-api"),
        ],
        None,
        None,
    )
    .await;
    assert_eq!(code, 200, "{twiml}");
    let stream_url = parse_connect_stream(&twiml)
        .expect("TwiML")
        .expect("a stream")
        .url;
    let stream =
        MediaStreamClient::connect(&local_stream_url(&stream_url, &app.address).expect("url"))
            .await
            .expect("stream");
    stream.start(call_sid, &[]).await.expect("start");
    stream
}
