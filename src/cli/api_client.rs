//! [`ApiClient`]: a client for a running callbridge server's REST API (`/api`, see [`crate::http::api`]), used by
//! `callbridge call` and by `callbridge mcp` (stdio), which forwards the MCP tools to a long-running server.
//!
//! It implements [`CallBackend`], so the MCP tools run over it exactly as over the in-process
//! [`crate::calls::service::CallService`]. Every request carries `Authorization: Bearer <CALLBRIDGE_API_KEY>`. The
//! server's JSON errors (`{"error":{"code","message"}}`) come back as [`BackendError`]s with the server's code and
//! message; a server that cannot be reached is `unavailable` (naming `CALLBRIDGE_URL`) and a refused key is
//! `unauthorized` (naming `CALLBRIDGE_API_KEY`).
//!
//! awc's client is not `Send`, while MCP tool handlers need `Send` futures: like
//! [`crate::twilio::rest::RestHandle`], the requests run on a thread of their own (a current-thread runtime and a
//! `LocalSet`), and the handle sends them there over a channel and awaits each answer on a oneshot.

use std::time::Duration;

use bytes::Bytes;
use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use super::output::{EXAMPLE_SERVER_URL, server_url};
use crate::awc_worker::AwcWorker;
use crate::calls::backend::{BackendError, CallBackend};
use crate::calls::model::{CallSummary, CallView};
use crate::calls::service::PlaceCall;
use crate::calls::store::{DeliveryStatus, WebhookDelivery};
use crate::config::{Requirement, Settings};
use crate::http::webhooks_api::WebhookList;

/// How long a request may take, answer body included, when it does not wait on purpose.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than its `wait_s` a `GET /api/calls/{id}?wait_s=N` may take.
pub const WAIT_MARGIN: Duration = Duration::from_secs(15);
/// The largest answer body read, bytes (a long call's transcript included).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// A `Send + Sync + Clone` client for the `/api` of the callbridge server at a base URL.
///
/// Cloning shares the request thread; the thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct ApiClient {
    /// The server's base URL, e.g. `http://127.0.0.1:5050` (a path prefix is kept).
    base_url: Url,
    /// The request thread ([`AwcWorker`]), holding the API key; `None` when it could not start.
    worker: Option<AwcWorker<SecretString>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// Read a call or the list.
    Get,
    /// Place, hang up, instruct.
    Post,
}

/// An HTTP answer: status and body.
#[derive(Debug)]
struct Answer {
    /// HTTP status.
    status: u16,
    /// The body (at most [`MAX_RESPONSE_BYTES`]).
    body: Bytes,
}

/// Why no answer arrived.
#[derive(Debug)]
enum Transport {
    /// The server could not be reached (refused, unknown host, TLS failure, ...).
    Connect(String),
    /// No complete answer within the timeout.
    Timeout,
    /// The connection failed after it was made, or the answer was malformed or too long.
    Failed(String),
}

/// The server's JSON error body: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    /// The error.
    error: ErrorBody,
}

/// The `error` object.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    /// The server's stable code.
    code: String,
    /// The server's message.
    message: String,
}

/// `{"calls":[...]}` of `GET /api/calls`.
#[derive(Debug, Deserialize)]
struct CallList {
    /// The calls, newest first.
    calls: Vec<CallSummary>,
}

/// `{"text":"..."}` of `POST /api/calls/{id}/instruct`.
#[derive(Debug, Serialize)]
struct InstructBody<'a> {
    /// The instruction.
    text: &'a str,
}

impl ApiClient {
    /// The client the CLI commands use: the server at `CALLBRIDGE_URL` (default: this machine's `PORT`, see
    /// [`server_url`]) with `CALLBRIDGE_API_KEY`, from the usual settings (environment, `.env`, `callbridge.toml`).
    ///
    /// # Errors
    ///
    /// The message to print when the settings are invalid, `CALLBRIDGE_URL` is not an http(s) URL, or the API key is
    /// not set (the caller exits with its own code).
    pub fn from_settings() -> Result<Self, String> {
        let settings = Settings::from_process(Requirement::Nothing)
            .map_err(|e| format!("invalid settings:\n{e}"))?;
        let base_url = server_url(
            std::env::var("CALLBRIDGE_URL").ok().as_deref(),
            settings.port,
        )?;
        if settings.api_key.expose_secret().is_empty() {
            return Err(format!(
                "CALLBRIDGE_API_KEY is not set: set it to the API key of the callbridge server at {}",
                base_url.as_str().trim_end_matches('/')
            ));
        }
        Ok(Self::new(base_url, settings.api_key.clone()))
    }

    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:5050`), sending `api_key` as the bearer key (an
    /// empty key sends none, and the server answers `unauthorized`). Starts the request thread.
    ///
    /// Should the thread not start (the system is out of threads), every request fails with `unavailable`.
    pub fn new(base_url: Url, api_key: SecretString) -> Self {
        let worker = AwcWorker::spawn("callbridge-api-client", move || api_key)
            .inspect_err(
                |error| tracing::error!(%error, "cannot start the callbridge API client thread"),
            )
            .ok();
        ApiClient { base_url, worker }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// `POST /api/calls`: places an outbound call.
    ///
    /// # Errors
    /// The server's error (`invalid_number`, `invalid_request`, `not_configured`, `twilio_error`, ...), or
    /// `unauthorized` / `unavailable` / `internal` as described on [`ApiClient`].
    pub async fn place_call(&self, request: PlaceCall) -> Result<CallView, BackendError> {
        let body = serde_json::json!({
            "to": request.to,
            "instructions": request.instructions,
            "greeting": request.greeting,
            "voice": request.voice,
            "language": request.language,
            "max_duration_s": request.max_duration_s,
            "metadata": request.metadata,
            "answering_machine": request.answering_machine,
            "voicemail_message": request.voicemail_message,
            "send_digits": request.send_digits,
            "record": request.record,
            "webhook_url": request.webhook_url,
            "retry": request.retry,
            "not_before": request.not_before,
            "call_window": request.call_window,
            "outcome_schema": request.outcome_schema,
            "mcp_servers": request.mcp_servers,
            "mode": request.mode,
            "max_cost_usd": request.max_cost_usd,
        });
        let url = self.endpoint(&["calls"])?;
        self.call(Method::Post, url, Some(body), REQUEST_TIMEOUT)
            .await
    }

    /// `GET /api/calls/{id}?wait_s=N`: the call, after waiting up to `wait_s` seconds for its status to change. The
    /// request may take `wait_s` + [`WAIT_MARGIN`].
    ///
    /// # Errors
    /// `not_found`, `invalid_request` (`wait_s` over 120), and the errors common to every request.
    pub async fn get_call(&self, id: &str, wait_s: Option<u64>) -> Result<CallView, BackendError> {
        let mut url = self.endpoint(&["calls", id])?;
        let mut timeout = REQUEST_TIMEOUT;
        if let Some(wait_s) = wait_s {
            url.query_pairs_mut()
                .append_pair("wait_s", &wait_s.to_string());
            timeout = timeout.max(Duration::from_secs(wait_s).saturating_add(WAIT_MARGIN));
        }
        self.call(Method::Get, url, None, timeout).await
    }

    /// `GET /api/calls?limit=N`: the most recent calls, newest first.
    ///
    /// # Errors
    /// The errors common to every request.
    pub async fn list_calls(&self, limit: usize) -> Result<Vec<CallSummary>, BackendError> {
        let mut url = self.endpoint(&["calls"])?;
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        let list: CallList = self.call(Method::Get, url, None, REQUEST_TIMEOUT).await?;
        Ok(list.calls)
    }

    /// `POST /api/calls/{id}/hangup`: hangs the call up.
    ///
    /// # Errors
    /// `not_found`, `twilio_error`, and the errors common to every request.
    pub async fn hang_up(&self, id: &str) -> Result<CallView, BackendError> {
        let url = self.endpoint(&["calls", id, "hangup"])?;
        self.call(Method::Post, url, None, REQUEST_TIMEOUT).await
    }

    /// `POST /api/calls/{id}/instruct`: adds an instruction to a live call.
    ///
    /// # Errors
    /// `not_found`, `not_live`, `invalid_request`, and the errors common to every request.
    pub async fn instruct_call(&self, id: &str, text: &str) -> Result<(), BackendError> {
        let url = self.endpoint(&["calls", id, "instruct"])?;
        let body =
            serde_json::to_value(InstructBody { text }).map_err(|e| internal(e.to_string()))?;
        let _: serde_json::Value = self
            .call(Method::Post, url, Some(body), REQUEST_TIMEOUT)
            .await?;
        Ok(())
    }

    /// `POST /api/calls/{id}/dtmf`: presses keys on a live call's keypad.
    ///
    /// # Errors
    /// `not_found`, `not_live`, `invalid_request`, and the errors common to every request.
    pub async fn send_dtmf(&self, id: &str, digits: &str) -> Result<(), BackendError> {
        let url = self.endpoint(&["calls", id, "dtmf"])?;
        let body = serde_json::json!({ "digits": digits });
        let _: serde_json::Value = self
            .call(Method::Post, url, Some(body), REQUEST_TIMEOUT)
            .await?;
        Ok(())
    }

    /// `POST /api/calls/{id}/say`: the voice of a relay-mode call speaks `request.text`; the report once spoken (and
    /// answered). The request may take as long as the say's own deadlines and [`WAIT_MARGIN`].
    ///
    /// # Errors
    /// `not_found`, `not_live`, `invalid_request`, `say_refused`, and the errors common to every request.
    pub async fn say(
        &self,
        id: &str,
        request: &crate::calls::service::SayCall,
    ) -> Result<crate::calls::say::SayReport, BackendError> {
        let url = self.endpoint(&["calls", id, "say"])?;
        let body = serde_json::to_value(request).map_err(|e| internal(e.to_string()))?;
        let reply_s = request
            .timeout_s
            .unwrap_or(crate::calls::say::DEFAULT_REPLY_TIMEOUT_S);
        let timeout = crate::calls::say::SAY_SPEAKING_TIMEOUT
            + crate::calls::say::REPLY_TRANSCRIPT_GRACE
            + Duration::from_secs(reply_s).saturating_add(WAIT_MARGIN)
            + REQUEST_TIMEOUT;
        self.call(Method::Post, url, Some(body), timeout).await
    }

    /// `POST /api/calls/{id}/transfer`: transfers a live call to a person.
    ///
    /// # Errors
    /// `not_found`, `not_live`, `invalid_number`, `destination_not_allowed`, and the errors common to every request.
    pub async fn transfer_call(
        &self,
        id: &str,
        to: &str,
        summary: &str,
    ) -> Result<(), BackendError> {
        let url = self.endpoint(&["calls", id, "transfer"])?;
        let body = serde_json::json!({ "to": to, "summary": summary });
        let _: serde_json::Value = self
            .call(Method::Post, url, Some(body), REQUEST_TIMEOUT)
            .await?;
        Ok(())
    }

    /// `GET /api/webhooks?status=S&limit=N`: the webhook deliveries, newest first.
    ///
    /// # Errors
    /// `invalid_request` (an unknown status), and the errors common to every request.
    pub async fn list_webhooks(
        &self,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, BackendError> {
        let mut url = self.endpoint(&["webhooks"])?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(status) = status {
                query.append_pair("status", status.as_str());
            }
            query.append_pair("limit", &limit.to_string());
        }
        let list: WebhookList = self.call(Method::Get, url, None, REQUEST_TIMEOUT).await?;
        Ok(list.deliveries)
    }

    /// `POST /api/webhooks/{id}/retry`: sends the delivery again now.
    ///
    /// # Errors
    /// `not_found`, and the errors common to every request.
    pub async fn retry_webhook(&self, id: &str) -> Result<WebhookDelivery, BackendError> {
        let url = self.endpoint(&["webhooks", id, "retry"])?;
        self.call(Method::Post, url, None, REQUEST_TIMEOUT).await
    }

    /// `{base}/api/{segments...}`, each segment percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, BackendError> {
        let mut url = self.base_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        {
            let mut path = url.path_segments_mut().map_err(|()| BackendError {
                code: "invalid_request".into(),
                message: format!(
                    "CALLBRIDGE_URL {:?} is not an http(s) base URL such as {EXAMPLE_SERVER_URL}",
                    self.base_url.as_str()
                ),
            })?;
            path.pop_if_empty().push("api").extend(segments);
        }
        Ok(url)
    }

    /// Sends one request on the request thread and reads its JSON answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<T, BackendError> {
        let stopped = || Transport::Failed("the API client thread has stopped".into());
        let outcome = match &self.worker {
            Some(worker) => worker
                .run(move |api_key| {
                    let api_key = api_key.clone();
                    async move { send(method, &url, body.as_ref(), timeout, &api_key).await }
                })
                .await
                .unwrap_or_else(|_| Err(stopped())),
            None => Err(stopped()),
        };
        let answer = outcome.map_err(|transport| self.transport_error(transport, timeout))?;
        decode_answer(&self.base_url, &answer)
    }

    /// The [`BackendError`] for a request that got no answer.
    fn transport_error(&self, transport: Transport, timeout: Duration) -> BackendError {
        let base = self.base_url.as_str().trim_end_matches('/');
        let message = match transport {
            Transport::Connect(detail) => format!(
                "cannot reach the callbridge server at {base} ({detail}); start `callbridge serve` there, or set \
                 CALLBRIDGE_URL to the address of a running server"
            ),
            Transport::Timeout => format!(
                "the callbridge server at {base} did not answer within {} s (CALLBRIDGE_URL)",
                timeout.as_secs()
            ),
            Transport::Failed(detail) => {
                format!(
                    "the request to the callbridge server at {base} failed: {detail} (CALLBRIDGE_URL)"
                )
            }
        };
        BackendError {
            code: "unavailable".into(),
            message,
        }
    }
}

/// An `internal` error with `message`.
fn internal(message: String) -> BackendError {
    BackendError {
        code: "internal".into(),
        message,
    }
}

/// Reads an answer: a 2xx body as `T`, a 401 as `unauthorized` naming `CALLBRIDGE_API_KEY`, any other error status
/// as the server's `{"error":{code,message}}` (or, when the body is not that, a code from the status).
fn decode_answer<T: DeserializeOwned>(base_url: &Url, answer: &Answer) -> Result<T, BackendError> {
    let base = base_url.as_str().trim_end_matches('/');
    let server_error = serde_json::from_slice::<ErrorEnvelope>(&answer.body)
        .ok()
        .map(|e| e.error);
    match answer.status {
        200..=299 => serde_json::from_slice(&answer.body).map_err(|e| {
            internal(format!(
                "the answer of the callbridge server at {base} could not be understood ({e}); is CALLBRIDGE_URL a \
                 callbridge server of the same version?"
            ))
        }),
        401 => {
            let detail = server_error.map_or_else(String::new, |e| format!(": {}", e.message));
            Err(BackendError {
                code: "unauthorized".into(),
                message: format!(
                    "the callbridge server at {base} refused the API key{detail}. Set CALLBRIDGE_API_KEY to the key \
                     the server runs with"
                ),
            })
        }
        status => Err(server_error.map_or_else(
            || BackendError {
                code: if status >= 500 { "unavailable" } else { "internal" }.into(),
                message: format!(
                    "the server at {base} answered HTTP {status} without a callbridge error; is CALLBRIDGE_URL the \
                     address of a callbridge server?"
                ),
            },
            |e| BackendError {
                code: e.code,
                message: e.message,
            },
        )),
    }
}

/// Sends one request with awc (on the request thread) and reads the whole answer within `timeout`.
async fn send(
    method: Method,
    url: &Url,
    body: Option<&serde_json::Value>,
    timeout: Duration,
    api_key: &SecretString,
) -> Result<Answer, Transport> {
    // A fresh client per request: no pooled connection the server may have closed while a long wait was pending.
    let client = awc::Client::builder().timeout(timeout).finish();
    let mut request = match method {
        Method::Get => client.get(url.as_str()),
        Method::Post => client.post(url.as_str()),
    }
    .insert_header(("Accept", "application/json"));
    if !api_key.expose_secret().is_empty() {
        request = request.bearer_auth(api_key.expose_secret());
    }
    let exchange = async {
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(|e| match e {
            awc::error::SendRequestError::Connect(e) => Transport::Connect(e.to_string()),
            awc::error::SendRequestError::Timeout => Transport::Timeout,
            other => Transport::Failed(other.to_string()),
        })?;
        let status = response.status().as_u16();
        let body = response
            .body()
            .limit(MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| Transport::Failed(format!("reading the answer: {e}")))?;
        Ok(Answer { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(Transport::Timeout))
}

impl CallBackend for ApiClient {
    async fn place_call(&self, request: PlaceCall) -> Result<CallView, BackendError> {
        ApiClient::place_call(self, request).await
    }

    async fn get_call(&self, id: String, wait_s: Option<u64>) -> Result<CallView, BackendError> {
        ApiClient::get_call(self, &id, wait_s).await
    }

    async fn list_calls(&self, limit: usize) -> Result<Vec<CallSummary>, BackendError> {
        ApiClient::list_calls(self, limit).await
    }

    async fn hang_up(&self, id: String) -> Result<CallView, BackendError> {
        ApiClient::hang_up(self, &id).await
    }

    async fn instruct_call(&self, id: String, text: String) -> Result<(), BackendError> {
        ApiClient::instruct_call(self, &id, &text).await
    }

    async fn send_dtmf(&self, id: String, digits: String) -> Result<(), BackendError> {
        ApiClient::send_dtmf(self, &id, &digits).await
    }

    async fn say(
        &self,
        id: String,
        request: crate::calls::service::SayCall,
    ) -> Result<crate::calls::say::SayReport, BackendError> {
        ApiClient::say(self, &id, &request).await
    }

    async fn transfer_call(
        &self,
        id: String,
        to: String,
        summary: String,
    ) -> Result<(), BackendError> {
        ApiClient::transfer_call(self, &id, &to, &summary).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:8080").expect("a valid URL")
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn client(base_url: &str) -> ApiClient {
        ApiClient::new(
            Url::parse(base_url).expect("a valid URL"),
            SecretString::from("k".to_owned()),
        )
    }

    #[test]
    fn the_client_is_send_sync_and_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<ApiClient>();
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_percent_encode_the_id() {
        let api = client("https://example.com/callbridge/");

        let url = api
            .endpoint(&["calls", "call_a/b?c", "hangup"])
            .expect("an http URL");

        assert_eq!(
            url.as_str(),
            "https://example.com/callbridge/api/calls/call_a%2Fb%3Fc/hangup"
        );
    }

    #[test]
    fn a_base_url_that_cannot_take_a_path_is_an_invalid_request_naming_callbridge_url() {
        let api = client("mailto:someone@example.com");

        let error = api.endpoint(&["calls"]).expect_err("not a base URL");

        assert_eq!(error.code, "invalid_request");
        assert!(
            error.message.contains("CALLBRIDGE_URL"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_server_error_keeps_the_servers_code_and_message() {
        let body = r#"{"error":{"code":"twilio_error","message":"Twilio refused: Invalid 'To' Phone Number (Twilio error 21211)"}}"#;

        let error =
            decode_answer::<CallView>(&base(), &answer(502, body)).expect_err("an error status");

        assert_eq!(error.code, "twilio_error");
        assert_eq!(
            error.message,
            "Twilio refused: Invalid 'To' Phone Number (Twilio error 21211)"
        );
    }

    #[test]
    fn a_401_is_unauthorized_naming_callbridge_api_key() {
        let body = r#"{"error":{"code":"unauthorized","message":"invalid bearer key"}}"#;

        let error =
            decode_answer::<CallView>(&base(), &answer(401, body)).expect_err("an error status");

        assert_eq!(error.code, "unauthorized");
        assert!(
            error.message.contains("CALLBRIDGE_API_KEY"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("invalid bearer key"),
            "{}",
            error.message
        );
    }

    #[test]
    fn an_error_status_without_a_callbridge_error_body_names_callbridge_url() {
        let error = decode_answer::<CallView>(&base(), &answer(404, "<html>nope</html>"))
            .expect_err("an error status");

        assert_eq!(error.code, "internal");
        assert!(error.message.contains("HTTP 404"), "{}", error.message);
        assert!(
            error.message.contains("CALLBRIDGE_URL"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_success_that_is_not_the_expected_json_is_internal() {
        let error = decode_answer::<CallView>(&base(), &answer(200, r#"{"calls":[]}"#))
            .expect_err("not a call");

        assert_eq!(error.code, "internal");
    }

    #[test]
    fn a_list_answer_is_decoded() {
        let list: CallList =
            decode_answer(&base(), &answer(200, r#"{"calls":[]}"#)).expect("a list");

        assert!(list.calls.is_empty());
    }

    #[tokio::test]
    async fn a_server_that_refuses_connections_is_unavailable_naming_callbridge_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        drop(listener);
        let api = client(&format!("http://127.0.0.1:{port}"));

        let error = api.list_calls(10).await.expect_err("nothing listens there");

        assert_eq!(error.code, "unavailable");
        assert!(
            error.message.contains("CALLBRIDGE_URL"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains(&port.to_string()),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_as_unavailable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        // Accept the connection and read nothing: the request hangs until the client gives up.
        let _silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let api = client(&format!("http://127.0.0.1:{port}"));
        let url = api.endpoint(&["calls"]).expect("an http URL");

        let error = api
            .call::<CallList>(Method::Get, url, None, Duration::from_millis(300))
            .await
            .expect_err("the server never answers");

        assert_eq!(error.code, "unavailable");
        assert!(
            error.message.contains("did not answer"),
            "{}",
            error.message
        );
    }
}
