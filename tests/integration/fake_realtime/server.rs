//! The fake Realtime server's socket side: the accept loop, the upgrade checks, and playing one connection
//! (reading client events into the [`Session`], writing what it says, the scripted close), plus the handle the tests
//! hold ([`FakeRealtime`]) and what it records.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::record::*;
use super::session::*;
use super::vad::*;

/// connection.
pub struct FakeRealtime {
    /// Where it listens.
    addr: SocketAddr,
    /// Script, records and the change notifier, shared with the connection tasks.
    shared: Arc<Shared>,
    /// The accept loop; it owns the connection tasks, so aborting it ends them all.
    accept_task: JoinHandle<()>,
}

impl FakeRealtime {
    /// Binds `127.0.0.1:0` and starts serving `script` to every connection.
    ///
    /// # Panics
    /// If the loopback listener cannot be bound (a broken test environment).
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for the fake");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            script,
            record: Mutex::new(Record::default()),
            changed: Notify::new(),
            next_id: AtomicU64::new(1),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Self {
            addr,
            shared,
            accept_task,
        }
    }

    /// The URL to give the relay: `ws://127.0.0.1:PORT/v1/realtime` (the relay appends `?model=...`).
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// The socket address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every client event received, on all connections, in arrival order. A text frame that is not a JSON object
    /// is recorded as a JSON string holding the raw text.
    pub fn client_events(&self) -> Vec<Value> {
        self.shared
            .record()
            .client_events
            .iter()
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// The client events of one connection (0-based, in accept order).
    pub fn client_events_of_connection(&self, connection: usize) -> Vec<Value> {
        let record = self.shared.record();
        record
            .client_events
            .iter()
            .filter(|(c, _)| *c == connection)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The client events whose `type` is `event_type`, in arrival order.
    pub fn events_of_type(&self, event_type: &str) -> Vec<Value> {
        filter_type(
            self.shared.record().client_events.iter().map(|(_, e)| e),
            event_type,
        )
    }

    /// Every event the fake sent, on all connections, in order.
    pub fn server_events(&self) -> Vec<Value> {
        self.shared
            .record()
            .server_events
            .iter()
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// The events the fake sent whose `type` is `event_type`, in order.
    pub fn server_events_of_type(&self, event_type: &str) -> Vec<Value> {
        filter_type(
            self.shared.record().server_events.iter().map(|(_, e)| e),
            event_type,
        )
    }

    /// Waits until a client event of type `event_type` has been received (now or earlier) and returns the first
    /// one; `None` after `timeout`.
    pub async fn wait_for_event(&self, event_type: &str, timeout: Duration) -> Option<Value> {
        self.wait_for_events(event_type, 1, timeout)
            .await
            .and_then(|events| events.into_iter().next())
    }

    /// Waits until at least `count` client events of type `event_type` have been received and returns them all;
    /// `None` after `timeout`.
    pub async fn wait_for_events(
        &self,
        event_type: &str,
        count: usize,
        timeout: Duration,
    ) -> Option<Vec<Value>> {
        self.wait_until(timeout, || {
            let events = self.events_of_type(event_type);
            (events.len() >= count).then_some(events)
        })
        .await
    }

    /// Waits until the fake has sent an event of type `event_type` and returns the first one; `None` after
    /// `timeout`.
    pub async fn wait_for_server_event(
        &self,
        event_type: &str,
        timeout: Duration,
    ) -> Option<Value> {
        self.wait_until(timeout, || {
            self.server_events_of_type(event_type).into_iter().next()
        })
        .await
    }

    /// How many WebSocket upgrades the fake accepted.
    pub fn connections(&self) -> usize {
        self.shared.record().connections
    }

    /// When accepted connection number `connection` (0-based, in accept order) ended, whichever side ended it: a
    /// client close frame (when it arrived), the socket's end or error, or the fake's scripted close (just before
    /// its close frame was sent). `None` while it is open, or when there is no such connection.
    pub fn connection_closed_at(&self, connection: usize) -> Option<std::time::Instant> {
        self.shared.record().closed_at.get(&connection).copied()
    }

    /// Waits until accepted connection number `connection` (0-based, in accept order) has ended (now or earlier)
    /// and returns when, as [`FakeRealtime::connection_closed_at`]; `None` after `timeout`.
    pub async fn wait_for_connection_closed(
        &self,
        connection: usize,
        timeout: Duration,
    ) -> Option<std::time::Instant> {
        self.wait_until(timeout, || self.connection_closed_at(connection))
            .await
    }

    /// The `session` object of the latest `session.update` received, as the client sent it.
    pub fn last_session(&self) -> Option<Value> {
        self.shared.record().last_session.clone()
    }

    /// The headers of each upgrade request, accepted or refused, in arrival order (names lowercased).
    pub fn request_headers(&self) -> Vec<Vec<(String, String)>> {
        self.shared
            .record()
            .upgrades
            .iter()
            .map(|u| u.headers.clone())
            .collect()
    }

    /// Every upgrade request, accepted or refused, in arrival order.
    pub fn upgrade_requests(&self) -> Vec<UpgradeRequest> {
        self.shared.record().upgrades.clone()
    }

    /// The `error` events the fake sent (e.g. rejected truncates), in order.
    pub fn errors_sent(&self) -> Vec<Value> {
        self.server_events_of_type("error")
    }

    /// The `error.code`s of [`FakeRealtime::errors_sent`], in order (`""` for an error without a code).
    pub fn error_codes_sent(&self) -> Vec<String> {
        self.errors_sent()
            .iter()
            .map(|e| {
                e.pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// The ms of audio the fake has sent in `response.output_audio.delta` events for assistant item `item_id`.
    pub fn audio_sent_ms(&self, item_id: &str) -> Option<u64> {
        self.shared.record().audio_sent_ms.get(item_id).copied()
    }

    /// Appends every client event received so far to `path` as one JSON object per line (creating the file and
    /// its parent directories), for `tests/conformance/test_realtime_events.py`.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn dump_jsonl(&self, path: &Path) {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).expect("creating the directory of the JSON-lines dump");
        }
        let mut lines = String::new();
        for event in self.client_events() {
            lines.push_str(&event.to_string());
            lines.push('\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("opening the JSON-lines dump for appending");
        file.write_all(lines.as_bytes())
            .expect("writing the JSON-lines dump");
    }

    /// Writes the client events received so far where the Python conformance check reads them
    /// (`tests/conformance/test_realtime_events.py`) and returns the file written: `$REALTIME_EVENTS_DIR/
    /// {scenario}.jsonl` when that variable is set (the Makefile sets it; each scenario gets its own file because
    /// nextest runs every test in its own process), else the file `$REALTIME_EVENTS_JSONL`, else
    /// `target/conformance/realtime-client-events.jsonl` in the crate. `scenario` is reduced to `[A-Za-z0-9_-]`.
    /// The file is appended to, so call this once per scenario, at its end.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn dump_for_conformance(&self, scenario: &str) -> PathBuf {
        let path = conformance_path(
            std::env::var_os("REALTIME_EVENTS_DIR"),
            std::env::var_os("REALTIME_EVENTS_JSONL"),
            scenario,
        );
        self.dump_jsonl(&path);
        path
    }

    /// Polls `check` after every recorded change until it returns `Some`, or `timeout` passes.
    async fn wait_until<T>(&self, timeout: Duration, check: impl Fn() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(found) = check() {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return check();
            }
        }
    }
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Where [`FakeRealtime::dump_for_conformance`] writes, given `REALTIME_EVENTS_DIR` and `REALTIME_EVENTS_JSONL`.
pub(super) fn conformance_path(
    events_dir: Option<OsString>,
    events_file: Option<OsString>,
    scenario: &str,
) -> PathBuf {
    if let Some(dir) = events_dir {
        let name: String = scenario
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from(dir).join(format!("{name}.jsonl"))
    } else if let Some(file) = events_file {
        PathBuf::from(file)
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/conformance/realtime-client-events.jsonl")
    }
}

pub(super) fn filter_type<'a>(
    events: impl Iterator<Item = &'a Value>,
    event_type: &str,
) -> Vec<Value> {
    events
        .filter(|e| e.get("type").and_then(Value::as_str) == Some(event_type))
        .cloned()
        .collect()
}

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _peer)) = accepted {
                    // Small events written back to back must not wait for the client's delayed ACK (Nagle).
                    if let Err(error) = stream.set_nodelay(true) {
                        eprintln!("fake realtime: TCP_NODELAY not set on an accepted socket: {error}");
                    }
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
            }
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Checks an upgrade request; `Err` is the HTTP refusal.
pub(super) fn check_upgrade(request: &Request) -> Result<String, (StatusCode, &'static str)> {
    let path = request.uri().path();
    if path != "/v1/realtime" && path != "/openai/v1/realtime" {
        return Err((
            StatusCode::NOT_FOUND,
            "not found: the Realtime API is at /v1/realtime",
        ));
    }
    let model = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "model")
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty());
    let Some(model) = model else {
        return Err((
            StatusCode::BAD_REQUEST,
            "missing required query parameter: model",
        ));
    };
    let headers = request.headers();
    if headers.contains_key("openai-beta") {
        return Err((
            StatusCode::BAD_REQUEST,
            "OpenAI-Beta selects the beta interface; this fake speaks GA only",
        ));
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| !key.trim().is_empty());
    let api_key = headers.get("api-key").is_some_and(|v| !v.is_empty());
    if !bearer && !api_key {
        return Err((
            StatusCode::UNAUTHORIZED,
            "missing bearer authentication in header",
        ));
    }
    Ok(model)
}

pub(super) async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut model = None;
    // The `Err` type is tungstenite's `ErrorResponse`, fixed by its `Callback` trait.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let accepted = shared.record().connections;
        let checked = check_upgrade(request).and_then(|model| {
            match shared.script.accept_connections {
                Some(limit) if accepted >= limit => Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"error":{"message":"The server is overloaded.","type":"server_error","param":null,"code":null}}"#,
                )),
                _ => Ok(model),
            }
        });
        let upgrade = UpgradeRequest {
            path_and_query: request
                .uri()
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default(),
            headers: request
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            accepted: checked.is_ok(),
        };
        shared.update(|record| record.upgrades.push(upgrade));
        match checked {
            Ok(m) => {
                model = Some(m);
                Ok(response)
            }
            Err((status, body)) => {
                let mut refusal = ErrorResponse::new(Some(body.to_owned()));
                *refusal.status_mut() = status;
                Err(refusal)
            }
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let model = model.unwrap_or_default();
    let connection = {
        let mut record = shared.record();
        record.connections += 1;
        record.connections - 1
    };
    play(&mut ws, &shared, connection, &model).await;
    // Every way out of `play` ends the connection; the ends it records itself (close frames) were earlier.
    shared.mark_closed(connection);
}

/// Plays one accepted connection's session until either side ends it.
pub(super) async fn play(
    ws: &mut WebSocketStream<TcpStream>,
    shared: &Arc<Shared>,
    connection: usize,
    model: &str,
) {
    let mut session = Session::new(Arc::clone(shared), model);
    loop {
        for event in session.take_outgoing() {
            let text = event.to_string();
            shared.update(|record| {
                if event.get("type").and_then(Value::as_str) == Some("response.output_audio.delta")
                    && let (Some(item_id), Some(ms)) = (
                        event.get("item_id").and_then(Value::as_str),
                        event
                            .get("delta")
                            .and_then(Value::as_str)
                            .map(|d| decoded_len(d) / ULAW_BYTES_PER_MS),
                    )
                {
                    *record.audio_sent_ms.entry(item_id.to_owned()).or_default() += ms;
                }
                record.server_events.push((connection, event));
            });
            if ws.send(Message::text(text)).await.is_err() {
                return;
            }
        }
        if session.close_requested {
            shared.mark_closed(connection);
            let frame = CloseFrame {
                code: CloseCode::from(shared.script.close_code),
                reason: Utf8Bytes::from("fake: scripted close"),
            };
            let _ = ws.close(Some(frame)).await;
            // Let the client's close reply arrive before the socket is dropped.
            drain_until_closed(ws).await;
            return;
        }
        let deadline = session.next_deadline();
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let recorded = match serde_json::from_str::<Value>(&text) {
                        Ok(value @ Value::Object(_)) => value,
                        _ => Value::String(text.to_string()),
                    };
                    let is_session_update =
                        recorded.get("type").and_then(Value::as_str) == Some("session.update");
                    shared.update(|record| {
                        if recorded.get("type").and_then(Value::as_str) == Some("session.update") {
                            record.last_session = recorded.get("session").cloned();
                        }
                        record.client_events.push((connection, recorded));
                    });
                    session.handle_text(&text, Instant::now());
                    if is_session_update && shared.script.stop_reading_after_session_update {
                        stop_reading(ws, &mut session).await;
                        return;
                    }
                }
                Some(Ok(Message::Binary(_))) => session.error(
                    None,
                    "invalid_request_error",
                    "invalid_message",
                    "Binary frames are not supported; send JSON text frames.",
                    None,
                ),
                Some(Ok(Message::Close(_))) => {
                    shared.mark_closed(connection);
                    // Reading on sends tungstenite's queued close reply, completing the client's handshake.
                    drain_until_closed(ws).await;
                    return;
                }
                Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            () = sleep_until_option(deadline) => session.tick(Instant::now()),
        }
    }
}

/// Answers what is pending (`session.updated`), then holds the socket open without ever reading it again, until the
/// fake is dropped (its accept task, which owns the connection tasks, is aborted then): the client's sends fill the
/// (shrunk) receive buffer and stop.
pub(super) async fn stop_reading(ws: &mut WebSocketStream<TcpStream>, session: &mut Session) {
    for event in session.take_outgoing() {
        if ws.send(Message::text(event.to_string())).await.is_err() {
            return;
        }
    }
    if let Err(error) = socket2::SockRef::from(ws.get_ref()).set_recv_buffer_size(4096) {
        eprintln!("fake realtime: receive buffer not shrunk: {error}");
    }
    std::future::pending::<()>().await;
}

/// Reads (and drops) whatever still arrives until the socket ends, for at most a second, so that close handshakes
/// complete before the socket is dropped.
pub(super) async fn drain_until_closed(ws: &mut WebSocketStream<TcpStream>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

pub(super) async fn sleep_until_option(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_realtime::test_client::*;
    use serde_json::json;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    #[tokio::test]
    async fn the_socket_closes_the_scripted_time_after_session_update() {
        // Arrange
        let script = Script {
            close_after: Some(Duration::from_millis(100)),
            close_code: 1001,
            ..Script::default()
        };
        let fake = FakeRealtime::start(script).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a close in time");

        // Assert
        match message {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_scripted_close_is_recorded_as_the_connection_closing() {
        // Arrange
        let script = Script {
            close_after: Some(Duration::from_millis(100)),
            ..Script::default()
        };
        let fake = FakeRealtime::start(script).await;
        let mut ws = connect(&fake).await;
        let updated_at = std::time::Instant::now();
        session_update(&mut ws).await;
        let open_before = fake.connection_closed_at(0);

        // Act
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a close in time");
        let close_seen_at = std::time::Instant::now();
        let closed_at = fake.wait_for_connection_closed(0, WAIT).await;

        // Assert
        assert!(
            matches!(message, Some(Ok(Message::Close(_)))),
            "{message:?}"
        );
        assert_eq!(open_before, None);
        let closed_at = closed_at.expect("the scripted close is recorded");
        assert!(closed_at >= updated_at + Duration::from_millis(100));
        assert!(
            closed_at <= close_seen_at,
            "recorded before the close frame went out"
        );
    }

    #[tokio::test]
    async fn a_client_close_frame_is_recorded_promptly_for_that_connection_only() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let _first = connect(&fake).await;
        let mut second = connect(&fake).await;
        session_update(&mut second).await;

        // Act
        let closing_at = std::time::Instant::now();
        second.close(None).await.expect("sending a close frame");
        let closed_at = fake.wait_for_connection_closed(1, WAIT).await;

        // Assert
        let closed_at = closed_at.expect("the client's close is recorded");
        assert!(
            closed_at >= closing_at && closed_at - closing_at < Duration::from_millis(500),
            "recorded {:?} after the close was sent",
            closed_at.saturating_duration_since(closing_at)
        );
        assert_eq!(
            fake.connection_closed_at(0),
            None,
            "the other connection is still open"
        );
        assert_eq!(fake.connection_closed_at(2), None, "no such connection");
    }

    #[tokio::test]
    async fn a_client_close_frame_gets_the_close_reply() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;

        // Act
        ws.close(None).await.expect("sending a close frame");
        let reply = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the close handshake completes in time");

        // Assert
        assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{reply:?}");
    }

    #[tokio::test]
    async fn a_client_socket_dropped_without_a_close_frame_is_recorded_as_closed() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let ws = connect(&fake).await;

        // Act
        drop(ws);
        let closed_at = fake.wait_for_connection_closed(0, WAIT).await;

        // Assert
        assert!(closed_at.is_some());
    }

    #[tokio::test]
    async fn waiting_for_an_open_connection_to_close_times_out_with_none() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let _ws = connect(&fake).await;

        // Act
        let closed_at = fake
            .wait_for_connection_closed(0, Duration::from_millis(50))
            .await;

        // Assert
        assert_eq!(closed_at, None);
    }

    #[tokio::test]
    async fn upgrades_are_recorded_and_bad_ones_refused() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let no_auth = format!("{}?model=m", fake.url());
        let mut beta = no_auth.clone().into_client_request().expect("valid URL");
        beta.headers_mut()
            .insert("authorization", "Bearer sk".parse().expect("header"));
        beta.headers_mut()
            .insert("openai-beta", "realtime=v1".parse().expect("header"));

        // Act
        let unauthenticated = tokio_tungstenite::connect_async(no_auth).await;
        let beta_header = tokio_tungstenite::connect_async(beta).await;
        let _ws = connect(&fake).await;

        // Assert
        assert!(unauthenticated.is_err() && beta_header.is_err());
        let upgrades = fake.upgrade_requests();
        assert_eq!(
            upgrades.iter().map(|u| u.accepted).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(
            upgrades[2].path_and_query,
            "/v1/realtime?model=gpt-realtime-2.1"
        );
        let headers = &fake.request_headers()[2];
        assert!(headers.contains(&("authorization".to_owned(), "Bearer sk-test".to_owned())));
        assert_eq!(fake.connections(), 1);
    }

    #[tokio::test]
    async fn connections_are_independent_sessions_each_playing_the_script() {
        // Arrange
        let fake = FakeRealtime::start(speak_script(300)).await;
        let mut first = connect(&fake).await;
        let mut second = connect(&fake).await;
        session_update(&mut first).await;
        session_update(&mut second).await;

        // Act
        send(&mut first, json!({"type": "response.create"})).await;
        send(&mut second, json!({"type": "response.create"})).await;
        let a = response_events(&mut first).await;
        let b = response_events(&mut second).await;

        // Assert
        assert_eq!((delta_bytes(&a), delta_bytes(&b)), (300 * 8, 300 * 8));
        assert_eq!(fake.connections(), 2);
        assert_eq!(fake.client_events_of_connection(1).len(), 2);
    }

    #[tokio::test]
    async fn wait_for_event_returns_a_client_event_once_it_arrives() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;

        // Act
        let waiter = fake.wait_for_event("input_audio_buffer.clear", WAIT);
        let sender = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
        };
        let (found, ()) = tokio::join!(waiter, sender);
        let absent = fake
            .wait_for_event("response.cancel", Duration::from_millis(50))
            .await;

        // Assert
        assert_eq!(
            found.expect("the clear event")["type"],
            "input_audio_buffer.clear"
        );
        assert!(absent.is_none());
    }

    #[tokio::test]
    async fn dump_jsonl_appends_one_line_per_client_event() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        let path = std::env::temp_dir().join(format!("fake-realtime-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);

        // Act
        fake.dump_jsonl(&path);
        fake.dump_jsonl(&path);

        // Assert
        let text = std::fs::read_to_string(&path).expect("the dump exists");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(types(&lines), ["session.update", "session.update"]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn conformance_dumps_go_to_a_per_scenario_file_in_the_events_dir_when_it_is_set() {
        let path = conformance_path(
            Some("/tmp/ev".into()),
            Some("/tmp/one.jsonl".into()),
            "barge in/2",
        );
        assert_eq!(path, Path::new("/tmp/ev/barge_in_2.jsonl"));
    }

    #[test]
    fn conformance_dumps_go_to_the_events_file_or_the_default_without_a_dir() {
        let file = conformance_path(None, Some("/tmp/one.jsonl".into()), "any");
        let default = conformance_path(None, None, "any");
        assert_eq!(file, Path::new("/tmp/one.jsonl"));
        assert!(default.ends_with("target/conformance/realtime-client-events.jsonl"));
    }
}
