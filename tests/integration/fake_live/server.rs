//! The fake GPT-Live server: accepting connections, checking upgrades and playing a session (see the module docs).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::fake_realtime::{
    SPEECH_RMS_THRESHOLD, SPEECH_START_MS, VAD_FRAME_MS, frame_rms, linear_to_ulaw,
};

/// Silence after speech that ends the caller's turn, in ms.
pub const SILENCE_MS: u64 = 500;
/// μ-law bytes per ms at 8 kHz.
const BYTES_PER_MS: u64 = 8;

/// One turn the fake model takes.
#[derive(Debug, Clone)]
pub struct LiveTurn {
    /// Ms of audio it says.
    pub ms: u64,
    /// Its words (the output transcript).
    pub text: String,
    /// A backend function call `(name, arguments)` sent right after the turn's audio.
    pub then_call: Option<(String, String)>,
}

impl LiveTurn {
    /// A turn of `ms` ms saying `text`.
    pub fn speak(ms: u64, text: &str) -> Self {
        LiveTurn {
            ms,
            text: text.to_owned(),
            then_call: None,
        }
    }

    /// The same turn, followed by the backend calling `name` with `arguments`.
    pub fn then_call(mut self, name: &str, arguments: &str) -> Self {
        self.then_call = Some((name.to_owned(), arguments.to_owned()));
        self
    }
}

/// What every connection plays.
#[derive(Debug, Clone)]
pub struct LiveScript {
    /// The model's turns, in order: one after each caller turn or commentary.
    pub turns: Vec<LiveTurn>,
    /// The caller's words, one entry per caller turn.
    pub caller_transcripts: Vec<String>,
    /// Ms of audio per output delta.
    pub delta_ms: u64,
    /// How much faster than real time the deltas are sent.
    pub speed_up: u64,
    /// Between the caller's turn ending and the model's turn starting.
    pub reply_delay: Duration,
    /// Close the socket this long after `session.started`.
    pub close_after: Option<Duration>,
}

impl Default for LiveScript {
    fn default() -> Self {
        LiveScript {
            turns: Vec::new(),
            caller_transcripts: Vec::new(),
            delta_ms: 100,
            speed_up: 4,
            reply_delay: Duration::from_millis(150),
            close_after: None,
        }
    }
}

/// One upgrade request: path and query, headers (names lowercased), whether it was accepted.
pub type Upgrade = (String, Vec<(String, String)>, bool);

/// What the fake observed.
#[derive(Default)]
struct Record {
    client_events: Vec<Value>,
    server_events: Vec<Value>,
    upgrades: Vec<Upgrade>,
    connections: usize,
    closed: usize,
}

struct Shared {
    script: LiveScript,
    record: Mutex<Record>,
    changed: Notify,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Record)) {
        f(&mut self.record());
        self.changed.notify_waiters();
    }
}

/// A running fake GPT-Live server; dropping it stops accepting.
pub struct FakeLive {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeLive {
    /// Starts the fake on a free loopback port.
    pub async fn start(script: LiveScript) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            script,
            record: Mutex::new(Record::default()),
            changed: Notify::new(),
        });
        let accept = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, Arc::clone(&accept)));
                }
            }
        });
        FakeLive { addr, shared, task }
    }

    /// `ws://127.0.0.1:PORT/v1/live/sessions`, for `CALLBRIDGE_LIVE_URL`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/live/sessions", self.addr)
    }

    /// Every client event received, in order.
    pub fn client_events(&self) -> Vec<Value> {
        self.shared.record().client_events.clone()
    }

    /// Client events of one type.
    pub fn events_of_type(&self, event_type: &str) -> Vec<Value> {
        of_type(&self.client_events(), event_type)
    }

    /// Server events of one type.
    pub fn server_events_of_type(&self, event_type: &str) -> Vec<Value> {
        of_type(&self.shared.record().server_events, event_type)
    }

    /// Upgrade requests: (path and query, headers, accepted).
    pub fn upgrades(&self) -> Vec<Upgrade> {
        self.shared.record().upgrades.clone()
    }

    /// Connections that ended.
    pub fn closed_connections(&self) -> usize {
        self.shared.record().closed
    }

    /// Waits for a client event of `event_type`.
    pub async fn wait_for_event(&self, event_type: &str, timeout: Duration) -> Option<Value> {
        self.wait_until(timeout, || {
            self.events_of_type(event_type).into_iter().next()
        })
        .await
    }

    /// Waits until `n` connections ended.
    pub async fn wait_for_closed(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, || (self.closed_connections() >= n).then_some(()))
            .await
            .is_some()
    }

    /// Appends the client events to `$LIVE_EVENTS_DIR/{scenario}.jsonl` (the Makefile sets it), else to
    /// `target/conformance/live-client-events.jsonl`, for `tests/conformance/test_live_events.py`.
    pub fn dump_for_conformance(&self, scenario: &str) -> PathBuf {
        let path = conformance_path(std::env::var_os("LIVE_EVENTS_DIR"), scenario);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the dump directory");
        }
        let mut lines = String::new();
        for event in self.client_events() {
            lines.push_str(&event.to_string());
            lines.push('\n');
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(lines.as_bytes()))
            .expect("write the dump");
        path
    }

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

impl Drop for FakeLive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn conformance_path(dir: Option<OsString>, scenario: &str) -> PathBuf {
    match dir {
        Some(dir) => {
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
        }
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/conformance/live-client-events.jsonl"),
    }
}

fn of_type(events: &[Value], event_type: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == event_type)
        .cloned()
        .collect()
}

fn check_upgrade(request: &Request) -> Result<(), (StatusCode, &'static str)> {
    let path = request.uri().path();
    if path != "/v1/live/sessions" && path != "/openai/v1/live/sessions" {
        return Err((
            StatusCode::NOT_FOUND,
            "not found: GPT-Live is at /v1/live/sessions",
        ));
    }
    if request.uri().query().is_some() {
        return Err((
            StatusCode::BAD_REQUEST,
            "GPT-Live takes no query parameters",
        ));
    }
    let headers = request.headers();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| !key.trim().is_empty());
    if !bearer && !headers.contains_key("api-key") {
        return Err((StatusCode::UNAUTHORIZED, "missing bearer authentication"));
    }
    Ok(())
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let checked = check_upgrade(request);
        let headers = request
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let path = request
            .uri()
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default();
        shared.update(|r| r.upgrades.push((path, headers, checked.is_ok())));
        checked.map(|()| response).map_err(|(status, body)| {
            let mut refusal = ErrorResponse::new(Some(body.to_owned()));
            *refusal.status_mut() = status;
            refusal
        })
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    shared.update(|r| r.connections += 1);
    Session::new(Arc::clone(&shared)).play(&mut ws).await;
    shared.update(|r| r.closed += 1);
}

/// The model's turn being sent.
struct Speaking {
    deltas_left: u64,
    words: VecDeque<String>,
    words_per_delta: usize,
    then_call: Option<(String, String)>,
}

/// One connection's session.
struct Session {
    shared: Arc<Shared>,
    started_at: Option<Instant>,
    turns: VecDeque<LiveTurn>,
    callers: VecDeque<String>,
    caller_words: VecDeque<String>,
    speaking: Option<Speaking>,
    next_delta_at: Instant,
    reply_at: Option<Instant>,
    speech_ms: u64,
    silence_ms: u64,
    in_speech: bool,
    next_id: u64,
    closing: bool,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Self {
        let script = shared.script.clone();
        Session {
            shared,
            started_at: None,
            turns: script.turns.into(),
            callers: script.caller_transcripts.into(),
            caller_words: VecDeque::new(),
            speaking: None,
            next_delta_at: Instant::now(),
            reply_at: None,
            speech_ms: 0,
            silence_ms: 0,
            in_speech: false,
            next_id: 0,
            closing: false,
        }
    }

    fn script(&self) -> &LiveScript {
        &self.shared.script
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_fakelive{:08}", self.next_id)
    }

    async fn send(&mut self, ws: &mut WebSocketStream<TcpStream>, mut event: Value) -> bool {
        if event.get("event_id").is_none() {
            event["event_id"] = json!(self.id("event"));
        }
        let text = event.to_string();
        self.shared.update(|r| r.server_events.push(event));
        ws.send(Message::text(text)).await.is_ok()
    }

    async fn play(mut self, ws: &mut WebSocketStream<TcpStream>) {
        let far = Duration::from_secs(3600);
        loop {
            let close_at = match (self.started_at, self.script().close_after) {
                (Some(at), Some(after)) => at + after,
                _ => Instant::now() + far,
            };
            let delta_at = if self.speaking.is_some() {
                self.next_delta_at
            } else {
                Instant::now() + far
            };
            let reply_at = self.reply_at.unwrap_or(Instant::now() + far);
            let wake = close_at.min(delta_at).min(reply_at);
            tokio::select! {
                message = ws.next() => {
                    let Some(Ok(message)) = message else { return };
                    match message {
                        Message::Text(text) if !self.on_client_text(ws, text.as_str()).await || self.closing => {
                            let _ = ws.close(None).await;
                            return;
                        }
                        Message::Close(_) => return,
                        _ => {}
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= close_at {
                        let _ = ws.close(Some(CloseFrame { code: CloseCode::Error, reason: "fake live closes".into() })).await;
                        return;
                    }
                    if self.reply_at.is_some_and(|at| now >= at) {
                        self.reply_at = None;
                        self.start_turn();
                    }
                    if self.speaking.is_some() && now >= self.next_delta_at && !self.send_delta(ws).await {
                        return;
                    }
                }
            }
        }
    }

    fn start_turn(&mut self) {
        let Some(turn) = self.turns.pop_front() else {
            return;
        };
        let delta_ms = self.script().delta_ms.max(1);
        let deltas = turn.ms.div_ceil(delta_ms).max(1);
        let words: VecDeque<String> = turn.text.split_whitespace().map(str::to_owned).collect();
        let words_per_delta = words.len().div_ceil(deltas as usize).max(1);
        self.speaking = Some(Speaking {
            deltas_left: deltas,
            words,
            words_per_delta,
            then_call: turn.then_call,
        });
        self.next_delta_at = Instant::now();
    }

    async fn send_delta(&mut self, ws: &mut WebSocketStream<TcpStream>) -> bool {
        let delta_ms = self.script().delta_ms.max(1);
        let interval = Duration::from_millis(delta_ms / self.script().speed_up.max(1));
        let Some(speaking) = &mut self.speaking else {
            return true;
        };
        speaking.deltas_left -= 1;
        let mut words = Vec::new();
        for _ in 0..speaking.words_per_delta {
            if let Some(w) = speaking.words.pop_front() {
                words.push(w);
            }
        }
        let last = speaking.deltas_left == 0;
        let then_call = if last {
            speaking.then_call.take()
        } else {
            None
        };
        if last {
            self.speaking = None;
        }
        let audio: Vec<u8> = (0..delta_ms * BYTES_PER_MS)
            .map(|i| linear_to_ulaw(((i as f64 * 0.3).sin() * 8000.0) as i16))
            .collect();
        if !self
            .send(
                ws,
                json!({"type": "session.output_audio.delta", "delta": BASE64.encode(&audio)}),
            )
            .await
        {
            return false;
        }
        if !words.is_empty() {
            let text = format!("{} ", words.join(" "));
            let at = self.elapsed_ms();
            if !self
                .send(
                    ws,
                    json!({"type": "session.output_transcript.delta", "delta": text,
                "start_ms": at, "end_ms": at}),
                )
                .await
            {
                return false;
            }
        }
        self.next_delta_at = Instant::now() + interval;
        if let Some((name, arguments)) = then_call {
            let call_id = self.id("call");
            let item_id = self.id("fc");
            let delegation = self.id("dlg");
            let event = json!({"type": "response.event", "delegation_id": delegation, "event": {
                "type": "response.output_item.done", "output_index": 0, "sequence_number": 1,
                "item": {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                         "arguments": arguments, "status": "completed"}}});
            if !self.send(ws, event).await {
                return false;
            }
        }
        if last {
            let seconds = self.elapsed_ms() / 1000;
            return self
                .send(
                    ws,
                    json!({"type": "session.usage.updated", "usage": {"seconds": seconds}}),
                )
                .await;
        }
        true
    }

    fn elapsed_ms(&self) -> u64 {
        self.started_at
            .map_or(0, |at| at.elapsed().as_millis() as u64)
    }

    /// Handles one client frame; false ends the connection.
    async fn on_client_text(&mut self, ws: &mut WebSocketStream<TcpStream>, text: &str) -> bool {
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return self.error(ws, "invalid_json", "not JSON", None).await;
        };
        self.shared.update(|r| r.client_events.push(event.clone()));
        let event_type = event["type"].as_str().unwrap_or_default().to_owned();
        if self.started_at.is_none() {
            if event_type != "session.start" || !event["session"]["model"].is_string() {
                self.error(
                    ws,
                    "invalid_request_error",
                    "send session.start with session.model first",
                    None,
                )
                .await;
                return false;
            }
            self.started_at = Some(Instant::now());
            let mut session = event["session"].clone();
            session["id"] = json!(self.id("sess"));
            session["expires_at"] = json!(4_102_444_800u64);
            session["status"] = json!("active");
            return self
                .send(ws, json!({"type": "session.started", "session": session}))
                .await;
        }
        match event_type.as_str() {
            "session.input_audio.append" => {
                let Some(audio) = event["audio"].as_str().and_then(|a| BASE64.decode(a).ok())
                else {
                    return self
                        .error(ws, "invalid_value", "audio is not base64", Some("audio"))
                        .await;
                };
                self.hear(ws, &audio).await
            }
            "session.commentary.append" => {
                let ok = self
                    .send(
                        ws,
                        json!({"type": "session.commentary.appended",
                    "content": event["content"], "delegation_id": event["delegation_id"]}),
                    )
                    .await;
                self.reply_at = Some(Instant::now());
                ok
            }
            "session.instructions.append" => {
                self.send(
                    ws,
                    json!({"type": "session.instructions.appended",
                    "content": event["content"], "delegation_id": event["delegation_id"]}),
                )
                .await
            }
            "response.item.create" | "response.create" => true,
            "session.close" => {
                let seconds = self.elapsed_ms() / 1000;
                self.closing = true;
                self.send(ws, json!({"type": "session.closed", "reason": "close_requested",
                    "session": {"id": "sess", "expires_at": 4_102_444_800u64, "model": "gpt-live-1", "status": "active"},
                    "usage": {"seconds": seconds}})).await
            }
            other => {
                let message = format!("unknown client event type {other:?}");
                self.error(ws, "invalid_request_error", &message, Some("type"))
                    .await
            }
        }
    }

    /// Energy detection over the appended audio, 20 ms at a time.
    async fn hear(&mut self, ws: &mut WebSocketStream<TcpStream>, audio: &[u8]) -> bool {
        let frame_bytes = (VAD_FRAME_MS * BYTES_PER_MS) as usize;
        for frame in audio.chunks(frame_bytes) {
            if frame_rms(frame) >= SPEECH_RMS_THRESHOLD {
                self.speech_ms += VAD_FRAME_MS;
                self.silence_ms = 0;
                if !self.in_speech && self.speech_ms >= SPEECH_START_MS {
                    self.in_speech = true;
                    // Full duplex: the model yields to the caller; what it had not sent is never sent.
                    self.speaking = None;
                    self.reply_at = None;
                    self.caller_words = self
                        .callers
                        .pop_front()
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect();
                    let first = self
                        .caller_words
                        .pop_front()
                        .unwrap_or_else(|| "…".to_owned());
                    let at = self.elapsed_ms();
                    if !self.send(ws, json!({"type": "session.input_transcript.delta", "delta": format!("{first} "),
                        "start_ms": at, "end_ms": at})).await {
                        return false;
                    }
                }
            } else {
                self.speech_ms = 0;
                self.silence_ms += VAD_FRAME_MS;
                if self.in_speech && self.silence_ms >= SILENCE_MS {
                    self.in_speech = false;
                    while let Some(word) = self.caller_words.pop_front() {
                        let at = self.elapsed_ms();
                        if !self.send(ws, json!({"type": "session.input_transcript.delta", "delta": format!("{word} "),
                            "start_ms": at, "end_ms": at})).await {
                            return false;
                        }
                    }
                    self.reply_at = Some(Instant::now() + self.script().reply_delay);
                }
            }
        }
        true
    }

    async fn error(
        &mut self,
        ws: &mut WebSocketStream<TcpStream>,
        code: &str,
        message: &str,
        param: Option<&str>,
    ) -> bool {
        self.send(
            ws,
            json!({"type": "error", "error": {"type": "invalid_request_error", "code": code,
            "message": message, "param": param}}),
        )
        .await
    }
}
