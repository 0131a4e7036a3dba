//! The connector to the OpenAI Realtime WebSocket API, and the "link" task that owns the socket.
//!
//! The socket lives in a task of its own on the runtime that created it (I/O resources belong to the runtime that
//! registered them); the bridge talks to it through two channels: [`RealtimeLink::outgoing`] (event JSON to send)
//! and [`RealtimeLink::incoming`] (text frames received, then one [`LinkEvent::Closed`]). This lets the server open
//! the session while Twilio is still setting up the stream (pre-connect, see [`preconnect`]) and hand it to whichever
//! worker accepts the media-stream socket.
//!
//! Follows <https://platform.openai.com/docs/guides/realtime-websocket>: `wss://api.openai.com/v1/realtime?model=M`
//! with `Authorization: Bearer KEY` and no `OpenAI-Beta` header (GA); Azure OpenAI uses an `api-key` header.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{
    self, Message, Utf8Bytes, client::IntoClientRequest, http::HeaderValue,
};
use tracing::Instrument as _;
use url::Url;

/// How long opening the Realtime socket (TCP, TLS, upgrade) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames buffered from OpenAI to the bridge before the link waits for the bridge.
const INCOMING_CAPACITY: usize = 1024;
/// Events buffered from the bridge to OpenAI.
const OUTGOING_CAPACITY: usize = 256;

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

/// What the link task delivers to the bridge.
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

/// The bridge's side of an open Realtime session.
#[derive(Debug)]
pub struct RealtimeLink {
    /// Send a client event (JSON text). Dropping every sender closes the socket.
    pub outgoing: mpsc::Sender<String>,
    /// Server events as they arrive, then one [`LinkEvent::Closed`].
    pub incoming: mpsc::Receiver<LinkEvent>,
}

/// Why the Realtime session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The upgrade was answered with an HTTP error (401: bad key; 404: unknown model or path).
    #[error("OpenAI Realtime refused the connection with HTTP {status}")]
    Rejected {
        /// HTTP status of the refused upgrade.
        status: u16,
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

/// Opens the socket, sends `first_events` (normally the `session.update`), and starts the link task on the current
/// runtime.
///
/// # Errors
/// [`RealtimeError`] when the socket cannot be opened within [`CONNECT_TIMEOUT`] or the first events cannot be sent.
pub async fn connect(
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

    let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
    let (mut socket, _response) = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => return Err(RealtimeError::Timeout),
        Ok(Err(tungstenite::Error::Http(response))) => {
            return Err(RealtimeError::Rejected {
                status: response.status().as_u16(),
            });
        }
        Ok(Err(e)) => return Err(RealtimeError::Connect(e.to_string())),
        Ok(Ok(pair)) => pair,
    };
    for event in first_events {
        socket
            .send(Message::text(event))
            .await
            .map_err(|e| RealtimeError::Connect(e.to_string()))?;
    }

    let (in_tx, in_rx) = mpsc::channel(INCOMING_CAPACITY);
    let (out_tx, out_rx) = mpsc::channel(OUTGOING_CAPACITY);
    tokio::spawn(pump(socket, in_tx, out_rx).instrument(tracing::Span::current()));
    Ok(RealtimeLink {
        outgoing: out_tx,
        incoming: in_rx,
    })
}

/// Moves frames between the socket and the bridge until either side ends.
async fn pump<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    incoming: mpsc::Sender<LinkEvent>,
    mut outgoing: mpsc::Receiver<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let closed = loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if incoming.send(LinkEvent::Text(text)).await.is_err() {
                        // The bridge is gone: close our side too.
                        let _ = socket.close(None).await;
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break LinkEvent::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_else(|| "closed by OpenAI".into()),
                    };
                }
                Some(Ok(_)) => {} // ping/pong are answered by tungstenite; binary frames are not part of the API
                Some(Err(e)) => break LinkEvent::Closed { code: None, reason: e.to_string() },
                None => break LinkEvent::Closed { code: None, reason: "connection closed".into() },
            },
            event = outgoing.recv() => match event {
                Some(text) => {
                    if let Err(e) = socket.send(Message::text(text)).await {
                        break LinkEvent::Closed { code: None, reason: e.to_string() };
                    }
                }
                None => {
                    let _ = socket.close(None).await;
                    return;
                }
            },
        }
    };
    tracing::debug!(?closed, "realtime link ended");
    let _ = incoming.send(closed).await;
}

/// A Realtime session being opened in the background.
#[derive(Debug)]
pub struct Preconnect {
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
}

/// Starts opening a session on `runtime` now, so it is ready by the time Twilio opens the media stream. Dropping the
/// returned [`Preconnect`] (e.g. when its stream token expires unused) closes the session.
pub fn preconnect(
    runtime: &tokio::runtime::Handle,
    endpoint: RealtimeEndpoint,
    first_events: Vec<String>,
) -> Preconnect {
    let (tx, rx) = oneshot::channel();
    // The link task logs inside the caller's span (the call's CallSid).
    let span = tracing::Span::current();
    runtime.spawn(
        async move {
            let result = connect(&endpoint, first_events).await;
            if let Err(e) = &result {
                tracing::warn!(error = %e, "pre-connect to OpenAI Realtime failed");
            }
            // If nobody waits any more, dropping the link closes the socket.
            let _ = tx.send(result);
        }
        .instrument(span),
    );
    Preconnect { ready: rx }
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
