//! The connector to the OpenAI Realtime WebSocket API, and [`RealtimeLink`], the open socket as the bridge uses it.
//!
//! The socket is opened on the server's main runtime (so the server can open the session while Twilio is still
//! setting up the stream: pre-connect, see [`preconnect`]) and then polled directly by the call's bridge task,
//! whichever actix worker runs it: no pump task and no channel hop per message. I/O resources stay registered with
//! the runtime that opened them, which runs for the life of the server.
//!
//! Sends never block the bridge: [`RealtimeLink::send`] queues the event, and every poll of
//! [`RealtimeLink::next_event`] (and [`RealtimeLink::write_ready`]) feeds what the socket can take and flushes once,
//! so events queued together leave in one write. When queued events make no progress for a while,
//! [`RealtimeLink::stalled_since`] says since when; past [`MAX_QUEUED_BYTES`] a send fails at once. Frames over
//! [`MAX_FRAME_BYTES`] are refused from their header by tungstenite.
//!
//! Follows <https://platform.openai.com/docs/guides/realtime-websocket>: `wss://api.openai.com/v1/realtime?model=M`
//! with `Authorization: Bearer KEY` and no `OpenAI-Beta` header (GA); Azure OpenAI uses an `api-key` header.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, Stream};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{
    self, Message, Utf8Bytes, client::IntoClientRequest, http::HeaderValue,
    protocol::WebSocketConfig,
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument as _;
use url::Url;

use super::rebind::RebindableTcp;
use super::server_events::ApiError;

/// How long opening the Realtime socket (TCP, TLS, upgrade, the first events) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame (and message) accepted from OpenAI; a larger one is refused from its header. Server events are a
/// few KiB (an audio delta of 100 ms is about 1.1 KiB of base64); a `session.updated` echoes the instructions.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// Most bytes of client events queued and not yet taken by the socket before a send fails at once.
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// Bytes read from the socket per read. tungstenite zero-fills its read chunk before each read, so a large chunk
/// costs CPU and memory on every call; 4 KiB holds a few audio deltas of 100 ms (about 1.1 KiB of base64 each), and
/// a larger event is read on into a buffer grown for it.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Events are gathered up to this size before tungstenite writes them; the link flushes after each batch anyway.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// tungstenite's own write buffer may not grow past this (the link only feeds it when it is ready).
const MAX_WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// How long closing the socket at the end of a call may take.
pub const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// The WebSocket settings of a Realtime link: small read and write buffers, frame limits.
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .max_message_size(Some(MAX_FRAME_BYTES))
}

/// Where and how to connect.
#[derive(Clone)]
pub struct RealtimeEndpoint {
    /// Full WebSocket URL including `?model=...`.
    pub url: Url,
    /// The API key (never logged).
    pub api_key: SecretString,
}

impl std::fmt::Debug for RealtimeEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeEndpoint")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl RealtimeEndpoint {
    /// Builds the endpoint from the configured base URL and model: `model=MODEL` is added to the query unless the URL
    /// already carries a `model` parameter.
    pub fn new(base_url: &Url, model: &str, api_key: SecretString) -> Self {
        let mut url = base_url.clone();
        if !url.query_pairs().any(|(k, _)| k == "model") {
            url.query_pairs_mut().append_pair("model", model);
        }
        RealtimeEndpoint { url, api_key }
    }

    /// True for Azure OpenAI hosts, which take the key in an `api-key` header.
    fn is_azure(&self) -> bool {
        self.url
            .host_str()
            .is_some_and(|h| h.ends_with(".openai.azure.com"))
    }
}

/// What the link delivers to the bridge.
#[derive(Debug)]
pub enum LinkEvent {
    /// A text frame from OpenAI (one server event, JSON).
    Text(Utf8Bytes),
    /// The socket closed or failed; nothing follows.
    Closed {
        /// The close code OpenAI sent, if any (1001: the 60-minute session limit).
        code: Option<u16>,
        /// Why, for the log.
        reason: String,
    },
}

/// Why a client event could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The socket has closed.
    #[error("the OpenAI Realtime socket has closed")]
    Closed,
    /// [`MAX_QUEUED_BYTES`] are queued that the socket has not taken: OpenAI is not reading.
    #[error("OpenAI Realtime is not reading (send queue full)")]
    Full,
}

/// An open Realtime session, polled by the call's bridge (see the module docs).
pub struct RealtimeLink {
    /// The socket.
    socket: WebSocketStream<MaybeTlsStream<RebindableTcp>>,
    /// Client events not yet handed to the socket, oldest first.
    queue: VecDeque<Message>,
    /// Bytes in `queue`.
    queued_bytes: usize,
    /// Events were handed to the socket since its last completed flush.
    unflushed: bool,
    /// Since when queued or unflushed events have made no progress; `None` when everything is written.
    waiting_since: Option<Instant>,
    /// The socket has closed or failed: nothing more is read or written.
    closed: bool,
    /// A write failure not reported yet: the next poll of [`Self::next_event`] returns it.
    failure: Option<LinkEvent>,
}

impl std::fmt::Debug for RealtimeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeLink")
            .field("queued", &self.queue.len())
            .field("queued_bytes", &self.queued_bytes)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl RealtimeLink {
    fn new(socket: WebSocketStream<MaybeTlsStream<RebindableTcp>>) -> Self {
        RealtimeLink {
            socket,
            queue: VecDeque::with_capacity(8),
            queued_bytes: 0,
            unflushed: false,
            waiting_since: None,
            closed: false,
            failure: None,
        }
    }

    /// Queues a client event (JSON text); it leaves with the next poll of the link.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the socket has closed; [`SendError::Full`] when OpenAI has left
    /// [`MAX_QUEUED_BYTES`] unread.
    pub fn send(&mut self, event: String) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if self.queued_bytes + event.len() > MAX_QUEUED_BYTES {
            return Err(SendError::Full);
        }
        if self.waiting_since.is_none() {
            self.waiting_since = Some(Instant::now());
        }
        self.queued_bytes += event.len();
        self.queue.push_back(Message::text(event));
        Ok(())
    }

    /// Moves the socket to the I/O driver of the runtime this is called on (the call's own worker), so its events
    /// wake the bridge task directly instead of through the runtime that opened it (see
    /// [`RebindableTcp`]). Call it before the first poll on the new runtime. A failed move closes the link: the next
    /// [`Self::next_event`] reports it.
    pub fn adopt_current_runtime(&mut self) {
        let tcp = match self.socket.get_mut() {
            MaybeTlsStream::Plain(tcp) => tcp,
            MaybeTlsStream::Rustls(tls) => tls.get_mut().0,
            _ => return,
        };
        if let Err(e) = tcp.rebind_to_current_runtime() {
            self.closed = true;
            self.failure = Some(LinkEvent::Closed {
                code: None,
                reason: format!("cannot move the socket to the call's runtime: {e}"),
            });
        }
    }

    /// Since when queued events have waited without progress; `None` when everything queued is written.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.waiting_since
    }

    /// Feeds the socket what it can take and flushes, without waiting. A failure closes the link and is kept in
    /// `failure`.
    fn poll_write(&mut self, cx: &mut Context<'_>) {
        let mut socket = Pin::new(&mut self.socket);
        let mut progressed = false;
        while !self.queue.is_empty() {
            match socket.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let Some(message) = self.queue.pop_front() else {
                        break;
                    };
                    self.queued_bytes -= message.len();
                    if let Err(e) = socket.as_mut().start_send(message) {
                        return self.failed(e);
                    }
                    self.unflushed = true;
                    progressed = true;
                }
                Poll::Ready(Err(e)) => return self.failed(e),
                Poll::Pending => break,
            }
        }
        if self.unflushed {
            match socket.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    progressed = true;
                }
                Poll::Ready(Err(e)) => return self.failed(e),
                Poll::Pending => {}
            }
        }
        if self.queue.is_empty() && !self.unflushed {
            self.waiting_since = None;
        } else if progressed {
            self.waiting_since = Some(Instant::now());
        }
    }

    /// Closes the link after a socket error; the next poll of [`Self::next_event`] reports it.
    fn failed(&mut self, e: tungstenite::Error) {
        self.closed = true;
        self.queue.clear();
        self.queued_bytes = 0;
        self.waiting_since = None;
        self.failure = Some(LinkEvent::Closed {
            code: None,
            reason: e.to_string(),
        });
    }

    /// Writes what is queued as far as the socket takes it now, without waiting (call after queuing a batch, so it
    /// leaves before the bridge next waits). A failure is reported by the next [`Self::next_event`].
    pub fn write_ready(&mut self) {
        if self.closed || (self.queue.is_empty() && !self.unflushed) {
            return;
        }
        self.poll_write(&mut Context::from_waker(std::task::Waker::noop()));
    }

    /// Writes what is queued, then waits for the next server event. Cancel-safe: nothing is lost when the future is
    /// dropped. After [`LinkEvent::Closed`] it stays pending.
    pub async fn next_event(&mut self) -> LinkEvent {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<LinkEvent> {
        if !self.closed {
            self.poll_write(cx);
        }
        if let Some(failure) = self.failure.take() {
            return Poll::Ready(failure);
        }
        if self.closed {
            return Poll::Pending;
        }
        loop {
            return match Pin::new(&mut self.socket).poll_next(cx) {
                Poll::Ready(Some(Ok(Message::Text(text)))) => Poll::Ready(LinkEvent::Text(text)),
                Poll::Ready(Some(Ok(Message::Close(frame)))) => {
                    self.closed = true;
                    Poll::Ready(LinkEvent::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame
                            .map(|f| f.reason.to_string())
                            .unwrap_or_else(|| "closed by OpenAI".into()),
                    })
                }
                // Pings are answered by tungstenite (with the next write or flush); binary frames are not part of
                // the API.
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(e))) => {
                    self.failed(e);
                    Poll::Ready(self.failure.take().unwrap_or(LinkEvent::Closed {
                        code: None,
                        reason: "connection failed".into(),
                    }))
                }
                Poll::Ready(None) => {
                    self.closed = true;
                    Poll::Ready(LinkEvent::Closed {
                        code: None,
                        reason: "connection closed".into(),
                    })
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }

    /// Sends a close frame and waits up to [`CLOSE_TIMEOUT`] for it to leave; the socket is dropped either way.
    pub async fn close(mut self) {
        if !self.closed {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.close(None)).await;
        }
    }
}

/// Why the Realtime session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The upgrade was answered with an HTTP error (401: bad key; 429: no quota; 404: unknown model or path).
    #[error("OpenAI Realtime refused the connection with HTTP {status}{}", refusal_detail(.code.as_deref(), .message))]
    Rejected {
        /// HTTP status of the refused upgrade.
        status: u16,
        /// The `code` of OpenAI's error body (`{"error":{"code":"invalid_api_key",...}}`), when it had one made of
        /// lower-case letters, digits and `_` (at most 64 characters).
        code: Option<String>,
        /// The body's `message`, its control characters replaced and cut to 200 characters; empty without one.
        message: String,
    },
    /// TCP, TLS or WebSocket failure.
    #[error("cannot connect to OpenAI Realtime: {0}")]
    Connect(String),
    /// No answer within [`CONNECT_TIMEOUT`].
    #[error("OpenAI Realtime did not answer within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    /// The pre-connect task was dropped before it finished (server shutting down).
    #[error("the pre-connected session was lost")]
    Lost,
}

impl RealtimeError {
    /// What a call that could not open its session ended with, after `error:`: the code of OpenAI's refusal
    /// (`invalid_api_key`, `insufficient_quota`, `model_not_found`, ...) when it gave one, else
    /// `openai_unavailable`.
    pub fn end_reason(&self) -> &str {
        match self {
            RealtimeError::Rejected {
                code: Some(code), ..
            } => code,
            _ => "openai_unavailable",
        }
    }
}

/// Longest refusal message kept, in characters.
const REFUSAL_MESSAGE_CHARS: usize = 200;

/// The `code` and `message` of an HTTP error body in OpenAI's shape, `{"error":{"code":"invalid_api_key",
/// "message":"Incorrect API key provided: ...","type":"invalid_request_error","param":null}}`
/// (<https://platform.openai.com/docs/guides/error-codes>). A code that is not a plain identifier is dropped: it
/// becomes an end reason and a log field. Any other body gives `(None, "")`.
fn refusal_body(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct Body {
        error: ApiError,
    }
    let Ok(Body { error }) = serde_json::from_slice::<Body>(body) else {
        return (None, String::new());
    };
    // `insufficient_quota` sometimes comes as the error's `type` with no `code`.
    let kind_is_the_code = error.code.is_none() && error.is_fatal();
    let code = if kind_is_the_code {
        Some(error.kind)
    } else {
        error.code
    };
    let code = code.filter(|code| {
        !code.is_empty()
            && code.len() <= 64
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    });
    let message = error
        .message
        .chars()
        .take(REFUSAL_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    (code, message)
}

/// ` (code: message)` for a refusal's Display, or nothing when the body said nothing.
fn refusal_detail(code: Option<&str>, message: &str) -> String {
    match (code, message.is_empty()) {
        (None, true) => String::new(),
        (Some(code), true) => format!(" ({code})"),
        (None, false) => format!(" ({message})"),
        (Some(code), false) => format!(" ({code}: {message})"),
    }
}

/// Opens the socket and sends `first_events` (normally the `session.update`), all within [`CONNECT_TIMEOUT`]. The
/// socket belongs to the current runtime's I/O driver.
///
/// # Errors
/// [`RealtimeError`] when the socket cannot be opened within [`CONNECT_TIMEOUT`] or the first events cannot be sent.
pub async fn connect(
    endpoint: &RealtimeEndpoint,
    first_events: Vec<String>,
) -> Result<RealtimeLink, RealtimeError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, open(endpoint, first_events)).await {
        Ok(result) => result,
        Err(_) => Err(RealtimeError::Timeout),
    }
}

async fn open(
    endpoint: &RealtimeEndpoint,
    first_events: Vec<String>,
) -> Result<RealtimeLink, RealtimeError> {
    let mut request = endpoint
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| RealtimeError::Connect(e.to_string()))?;
    let (name, value) = if endpoint.is_azure() {
        ("api-key", endpoint.api_key.expose_secret().to_owned())
    } else {
        (
            "authorization",
            format!("Bearer {}", endpoint.api_key.expose_secret()),
        )
    };
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| RealtimeError::Connect("the API key is not a valid header value".into()))?;
    value.set_sensitive(true);
    request.headers_mut().insert(name, value);

    let host = endpoint
        .url
        .host_str()
        .ok_or_else(|| RealtimeError::Connect("the Realtime URL has no host".into()))?;
    let port = endpoint
        .url
        .port_or_known_default()
        .ok_or_else(|| RealtimeError::Connect("the Realtime URL has no port".into()))?;
    // IPv6 literals come bracketed from the URL; the resolver wants them bare.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| RealtimeError::Connect(e.to_string()))?;
    tcp.set_nodelay(true)
        .map_err(|e| RealtimeError::Connect(e.to_string()))?;
    let (mut socket, _response) = match tokio_tungstenite::client_async_tls_with_config(
        request,
        RebindableTcp::new(tcp),
        Some(websocket_config()),
        None,
    )
    .await
    {
        Err(tungstenite::Error::Http(response)) => {
            let (code, message) = refusal_body(response.body().as_deref().unwrap_or_default());
            return Err(RealtimeError::Rejected {
                status: response.status().as_u16(),
                code,
                message,
            });
        }
        Err(e) => return Err(RealtimeError::Connect(e.to_string())),
        Ok(pair) => pair,
    };
    for event in first_events {
        socket
            .feed(Message::text(event))
            .await
            .map_err(|e| RealtimeError::Connect(e.to_string()))?;
    }
    socket
        .flush()
        .await
        .map_err(|e| RealtimeError::Connect(e.to_string()))?;
    Ok(RealtimeLink::new(socket))
}

/// A Realtime session being opened in the background.
#[derive(Debug)]
pub struct Preconnect {
    /// Receives the opened link (or why it could not be opened).
    ready: oneshot::Receiver<Result<RealtimeLink, RealtimeError>>,
}

impl Preconnect {
    /// Waits for the session.
    ///
    /// # Errors
    /// What [`connect`] returned, or [`RealtimeError::Lost`].
    pub async fn ready(self) -> Result<RealtimeLink, RealtimeError> {
        self.ready.await.unwrap_or(Err(RealtimeError::Lost))
    }

    /// Waits for the session without giving the handle up: cancel-safe (a `select!` branch may drop the wait and
    /// call it again). Call it until it returns once; after that it reports [`RealtimeError::Lost`].
    ///
    /// # Errors
    /// As [`Preconnect::ready`].
    pub async fn wait(&mut self) -> Result<RealtimeLink, RealtimeError> {
        (&mut self.ready).await.unwrap_or(Err(RealtimeError::Lost))
    }
}

/// Starts opening a session on `runtime` now, so it is ready by the time Twilio opens the media stream. Dropping the
/// returned [`Preconnect`] (e.g. when its stream token expires unused) closes the session.
pub fn preconnect(
    runtime: &tokio::runtime::Handle,
    endpoint: RealtimeEndpoint,
    first_events: Vec<String>,
) -> Preconnect {
    Preconnect::spawn(
        runtime,
        async move { connect(&endpoint, first_events).await },
    )
}

impl Preconnect {
    /// Runs `open` (a connector: Realtime's [`connect`], or another engine's over the same socket type) on `runtime`
    /// now, in the caller's span; [`Preconnect::ready`] waits for what it returns.
    pub fn spawn<F>(runtime: &tokio::runtime::Handle, open: F) -> Preconnect
    where
        F: std::future::Future<Output = Result<RealtimeLink, RealtimeError>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        // The link task logs inside the caller's span (the call's CallSid).
        let span = tracing::Span::current();
        runtime.spawn(
            async move {
                let result = open.await;
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "pre-connect to OpenAI failed");
                }
                // If nobody waits any more, dropping the link closes the socket.
                let _ = tx.send(result);
            }
            .instrument(span),
        );
        Preconnect { ready: rx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_is_added_to_the_query_unless_present() {
        let key = SecretString::from("k".to_owned());
        let base = Url::parse("wss://api.openai.com/v1/realtime").expect("url");
        let endpoint = RealtimeEndpoint::new(&base, "gpt-realtime-2.1", key.clone());
        assert_eq!(
            endpoint.url.as_str(),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1"
        );
        let base =
            Url::parse("wss://x.openai.azure.com/openai/v1/realtime?model=my-deploy").expect("url");
        let endpoint = RealtimeEndpoint::new(&base, "gpt-realtime-2.1", key);
        assert_eq!(endpoint.url.query(), Some("model=my-deploy"));
        assert!(endpoint.is_azure());
    }

    #[test]
    fn debug_output_does_not_show_the_key() {
        let endpoint = RealtimeEndpoint::new(
            &Url::parse("wss://api.openai.com/v1/realtime").expect("url"),
            "m",
            SecretString::from("sk-secret-value".to_owned()),
        );
        assert!(!format!("{endpoint:?}").contains("sk-secret-value"));
    }

    #[test]
    fn openai_refusal_bodies_give_their_code_as_the_end_reason() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-...","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let (code, message) = refusal_body(body);
        assert_eq!(code.as_deref(), Some("invalid_api_key"));
        assert_eq!(message, "Incorrect API key provided: sk-...");
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":null}}"#;
        assert_eq!(refusal_body(quota).0.as_deref(), Some("insufficient_quota"));
        let rejected = |body: &[u8]| {
            let (code, message) = refusal_body(body);
            RealtimeError::Rejected {
                status: 401,
                code,
                message,
            }
        };
        assert_eq!(rejected(body).end_reason(), "invalid_api_key");
        assert_eq!(
            rejected(body).to_string(),
            "OpenAI Realtime refused the connection with HTTP 401 (invalid_api_key: Incorrect API key provided: sk-...)"
        );
    }

    #[test]
    fn a_refusal_without_a_usable_code_ends_the_call_as_openai_unavailable() {
        for body in [
            &b"<html>502 Bad Gateway</html>"[..],
            br#"{"error":{"message":"x","type":"server_error","code":"Not An Identifier!"}}"#,
            b"",
        ] {
            let (code, message) = refusal_body(body);
            let error = RealtimeError::Rejected {
                status: 502,
                code,
                message,
            };
            assert_eq!(error.end_reason(), "openai_unavailable", "{body:?}");
        }
        assert_eq!(RealtimeError::Timeout.end_reason(), "openai_unavailable");
    }

    #[tokio::test]
    async fn a_refused_connection_is_reported_not_panicked() {
        let endpoint = RealtimeEndpoint::new(
            &Url::parse("ws://127.0.0.1:9/v1/realtime").expect("url"),
            "m",
            SecretString::from("k".to_owned()),
        );
        let err = connect(&endpoint, vec![])
            .await
            .expect_err("nothing listens on port 9");
        assert!(
            matches!(err, RealtimeError::Connect(_) | RealtimeError::Timeout),
            "{err}"
        );
    }
}
