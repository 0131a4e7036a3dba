//! The Twilio REST API client (awc): form-encoded requests with HTTP Basic `AccountSid:AuthToken`.
//!
//! Follows <https://www.twilio.com/docs/usage/api> (requests, authentication, errors) and
//! <https://www.twilio.com/docs/voice/api/call-resource>: it updates a call to hang it up (`Status=completed`); a 404
//! with Twilio error 20404 means the call is already gone and counts as done. Phone-number configuration
//! ([`crate::twilio::numbers`]) goes through the same private request helper: every request carries HTTP Basic
//! `AccountSid:AuthToken` and `Accept: application/json`, must finish (body included) within [`REQUEST_TIMEOUT`], and
//! reads at most [`MAX_RESPONSE_BYTES`]. Twilio's JSON errors (`{code, message, more_info, status}`) become
//! [`RestError::Twilio`] keeping code and message. No credential ever appears in an error or a log line.

use std::time::Duration;

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::awc_worker::AwcWorker;

/// How long one REST request may take, from sending it to having read the whole answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer body read, bytes; a longer one is a [`RestError::InvalidResponse`] (or, for an error status,
/// an error without Twilio's code).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Twilio's error code for a request whose credentials it refused ("Authenticate"), sent with HTTP 401.
/// <https://www.twilio.com/docs/errors/20003>
pub const AUTHENTICATE_ERROR_CODE: u32 = 20003;

/// A Twilio REST client for one account.
#[derive(Clone)]
pub struct TwilioRest {
    /// Base URL, e.g. `https://api.twilio.com` (a fake in tests).
    base_url: Url,
    /// Account SID (`AC...`): the Basic-auth user and part of every path.
    account_sid: String,
    /// Auth token: the Basic-auth password.
    auth_token: SecretString,
    /// How long one request may take, body included ([`REQUEST_TIMEOUT`] unless changed).
    timeout: Duration,
}

impl std::fmt::Debug for TwilioRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioRest")
            .field("base_url", &self.base_url.as_str())
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

/// Twilio's error body.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TwilioErrorBody {
    /// Twilio error code, e.g. 20404, 21211.
    pub code: Option<u32>,
    /// Human-readable message.
    pub message: Option<String>,
    /// Link to the error's documentation.
    pub more_info: Option<String>,
}

/// What can go wrong talking to Twilio.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Twilio answered with an error status and (usually) a JSON error body.
    #[error("Twilio error {}: {} (HTTP {status})", code.map_or("?".to_owned(), |c| c.to_string()), message)]
    Twilio {
        /// HTTP status.
        status: u16,
        /// Twilio's error code, when the body had one.
        code: Option<u32>,
        /// Twilio's message, or the HTTP reason.
        message: String,
    },
    /// No answer within the request timeout ([`REQUEST_TIMEOUT`] by default).
    #[error("Twilio did not answer in time")]
    Timeout,
    /// Network failure before an answer.
    #[error("cannot reach Twilio: {0}")]
    Network(String),
    /// Twilio answered with success but the body is not what its API documents (not JSON, a missing field, too long,
    /// an id of the wrong shape).
    #[error("Twilio's answer could not be understood: {0}")]
    InvalidResponse(String),
}

impl RestError {
    /// True when Twilio refused the credentials: HTTP 401, or Twilio error 20003 ("Authenticate").
    pub fn is_authentication_failure(&self) -> bool {
        matches!(self, RestError::Twilio { status: 401, .. })
            || matches!(
                self,
                RestError::Twilio {
                    code: Some(AUTHENTICATE_ERROR_CODE),
                    ..
                }
            )
    }

    /// The error for an unsuccessful HTTP `status` with Twilio's JSON error `body` (or anything else: then the code is
    /// `None` and the message is the HTTP reason).
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> RestError {
        let error: Option<TwilioErrorBody> = serde_json::from_slice(body).ok();
        let code = error.as_ref().and_then(|e| e.code);
        let reason = || {
            awc::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_owned()
        };
        RestError::Twilio {
            status,
            code,
            message: error.and_then(|e| e.message).unwrap_or_else(reason),
        }
    }
}

/// The HTTP methods the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Read a resource or a list.
    Get,
    /// Create or update a resource with a form body.
    Post,
    /// Delete a resource (no body).
    Delete,
}

/// An answer from Twilio: its HTTP status and body (at most [`MAX_RESPONSE_BYTES`]).
#[derive(Debug)]
pub(crate) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body; empty when the answer was an error whose body could not be read.
    pub body: Bytes,
}

impl Answer {
    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl TwilioRest {
    /// A client for `account_sid` with `auth_token` against `base_url`.
    pub fn new(base_url: Url, account_sid: String, auth_token: SecretString) -> Self {
        TwilioRest {
            base_url,
            account_sid,
            auth_token,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// The same client with another request timeout (tests; slow links).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The account this client acts for (`AC...`).
    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// `{base}/2010-04-01/Accounts/{AccountSid}/{resource}`, e.g. `resource` = `Calls/CA....json`.
    pub(crate) fn account_url(&self, resource: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{}",
            self.base_url.as_str().trim_end_matches('/'),
            self.account_sid,
            resource
        )
    }

    /// Sends one request with Basic auth and `Accept: application/json`: a GET, or a POST with `form` as
    /// `application/x-www-form-urlencoded`. Any status is an [`Answer`]; only the transport can fail.
    ///
    /// # Errors
    /// [`RestError::Timeout`] when the whole exchange takes longer than the client's timeout ([`REQUEST_TIMEOUT`] by
    /// default); [`RestError::Network`] when Twilio cannot be reached; [`RestError::InvalidResponse`] when a successful answer's
    /// body cannot be read (too long, cut short).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Answer, RestError> {
        let client = awc::Client::builder().timeout(self.timeout).finish();
        let request = match method {
            Method::Get => client.get(url),
            Method::Post => client.post(url),
            Method::Delete => client.delete(url),
        }
        .insert_header(("Accept", "application/json"))
        .basic_auth(&self.account_sid, self.auth_token.expose_secret());
        let sent = match method {
            Method::Get | Method::Delete => request.send().await,
            Method::Post => request.send_form(&form).await,
        };
        let mut response = sent.map_err(|e| match e {
            awc::error::SendRequestError::Timeout => RestError::Timeout,
            other => RestError::Network(other.to_string()),
        })?;
        let status = response.status().as_u16();
        let body = match response.body().limit(MAX_RESPONSE_BYTES).await {
            Ok(body) => body,
            // An error status explains itself; its unreadable body only loses Twilio's code.
            Err(_) if !response.status().is_success() => Bytes::new(),
            Err(awc::error::PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(RestError::Timeout);
            }
            Err(e) => return Err(RestError::InvalidResponse(format!("reading the body: {e}"))),
        };
        Ok(Answer { status, body })
    }

    /// Sends a request and parses a successful answer's JSON body as `T`.
    ///
    /// # Errors
    /// [`RestError::Twilio`] for an error status; [`RestError::InvalidResponse`] when the body is not a `T`; the
    /// transport errors of [`Self::send`].
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<T, RestError> {
        let answer = self.send(method, url, form).await?;
        if !answer.is_success() {
            return Err(RestError::from_answer(answer.status, &answer.body));
        }
        serde_json::from_slice(&answer.body).map_err(|e| RestError::InvalidResponse(e.to_string()))
    }

    /// Hangs up a live call: `POST .../Calls/{CallSid}.json` with `Status=completed`.
    ///
    /// # Errors
    /// [`RestError`] for a Twilio error other than "already gone" (404 / 20404), a timeout or a network failure.
    pub async fn hang_up(&self, call_sid: &str) -> Result<(), RestError> {
        let url = self.account_url(&format!("Calls/{call_sid}.json"));
        let answer = self
            .send(Method::Post, &url, &[("Status", "completed")])
            .await?;
        if answer.is_success() {
            return Ok(());
        }
        match RestError::from_answer(answer.status, &answer.body) {
            RestError::Twilio {
                status: 404,
                code: None | Some(20404),
                ..
            } => Ok(()),
            error => Err(error),
        }
    }
}

impl TwilioRest {
    /// Replaces the running TwiML of a live call: `POST .../Calls/{CallSid}.json` with `Twiml=`. The call's current
    /// `<Connect><Stream>` ends (Twilio sends `stop` and closes that media stream) and `twiml` runs instead.
    /// Follows <https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource>.
    ///
    /// # Errors
    /// [`RestError::Twilio`] with Twilio's code (21220: the call is not in progress; 20404: no such call); transport
    /// errors as for every request.
    pub async fn update_twiml(&self, call_sid: &str, twiml: &str) -> Result<(), RestError> {
        let url = self.account_url(&format!("Calls/{call_sid}.json"));
        let answer = self.send(Method::Post, &url, &[("Twiml", twiml)]).await?;
        if answer.is_success() {
            return Ok(());
        }
        Err(RestError::from_answer(answer.status, &answer.body))
    }
}

/// A call to create: `POST .../Calls.json` (<https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    /// Who to call, E.164.
    pub to: String,
    /// The caller ID: your Twilio number, E.164.
    pub from: String,
    /// Where Twilio fetches the call's TwiML when it is answered (`PUBLIC_URL/outbound-call/{call_id}`).
    pub url: String,
    /// Where Twilio posts status changes (`PUBLIC_URL/call-status`), for all four events.
    pub status_callback: String,
    /// How long to let it ring, seconds (Twilio's `Timeout`, 5 to 600).
    pub ring_timeout_s: u32,
    /// The call's maximum duration, seconds (Twilio's `TimeLimit`).
    pub time_limit_s: u64,
    /// Asynchronous answering machine detection, when the call asks for it.
    pub machine_detection: Option<crate::twilio::amd::MachineDetection>,
    /// Keys to press once the call is answered (Twilio's `SendDigits`: `0-9`, `*`, `#`, `w` a half-second pause).
    pub send_digits: Option<String>,
    /// Record the call in two channels, with the recording status callback at this URL
    /// ([`crate::twilio::recording::create_form_fields`]); `None` does not record.
    pub recording_callback: Option<String>,
}

/// The part of Twilio's call resource callbridge reads after creating a call.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CreatedCall {
    /// The new call's CallSid.
    pub sid: String,
    /// Its status (`queued`).
    pub status: String,
}

impl TwilioRest {
    /// Creates an outbound call. The form carries `To`, `From`, `Url` (POST), `StatusCallback` (POST) with the
    /// `StatusCallbackEvent`s `initiated`, `ringing`, `answered` and `completed`, `Timeout` and `TimeLimit`, and
    /// with [`CreateCall::machine_detection`] the asynchronous AMD fields
    /// ([`crate::twilio::amd::MachineDetection::form_fields`]), `SendDigits` when given, and with
    /// [`CreateCall::recording_callback`] the recording fields ([`crate::twilio::recording::create_form_fields`]).
    ///
    /// # Errors
    /// [`RestError::Twilio`] with Twilio's code and message (21211 invalid `To`, 21219 unverified number on a trial
    /// account, ...); transport errors as for every request.
    pub async fn create_call(&self, call: &CreateCall) -> Result<CreatedCall, RestError> {
        let url = self.account_url("Calls.json");
        let ring_timeout = call.ring_timeout_s.to_string();
        let time_limit = call.time_limit_s.to_string();
        let amd = call
            .machine_detection
            .as_ref()
            .map(crate::twilio::amd::MachineDetection::form_fields)
            .unwrap_or_default();
        let mut form: Vec<(&str, &str)> = vec![
            ("To", &call.to),
            ("From", &call.from),
            ("Url", &call.url),
            ("Method", "POST"),
            ("StatusCallback", &call.status_callback),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            ("Timeout", &ring_timeout),
            ("TimeLimit", &time_limit),
        ];
        form.extend(amd.iter().map(|(name, value)| (*name, value.as_str())));
        if let Some(digits) = &call.send_digits {
            form.push(("SendDigits", digits));
        }
        let recording = call
            .recording_callback
            .as_deref()
            .map(crate::twilio::recording::create_form_fields)
            .unwrap_or_default();
        form.extend(
            recording
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        );
        self.send_json(Method::Post, &url, &form).await
    }

    /// Ends a call that has not been answered yet: `Status=canceled` (queued or ringing calls).
    ///
    /// # Errors
    /// As for [`TwilioRest::hang_up`].
    pub async fn cancel(&self, call_sid: &str) -> Result<(), RestError> {
        let url = self.account_url(&format!("Calls/{call_sid}.json"));
        let answer = self
            .send(Method::Post, &url, &[("Status", "canceled")])
            .await?;
        if answer.is_success() {
            return Ok(());
        }
        Err(RestError::from_answer(answer.status, &answer.body))
    }
}

impl TwilioRest {
    /// Deletes a recording: `DELETE .../Recordings/{RecordingSid}.json` (Twilio answers 204). A recording Twilio no
    /// longer has (404, error 20404) counts as deleted.
    /// Follows <https://www.twilio.com/docs/voice/api/recording>.
    ///
    /// # Errors
    /// [`RestError::Twilio`] for any other error status; transport errors as for every request.
    pub async fn delete_recording(&self, recording_sid: &str) -> Result<(), RestError> {
        let url = self.account_url(&format!("Recordings/{recording_sid}.json"));
        let answer = self.send(Method::Delete, &url, &[]).await?;
        if answer.is_success() {
            return Ok(());
        }
        match RestError::from_answer(answer.status, &answer.body) {
            RestError::Twilio {
                status: 404,
                code: None | Some(20404),
                ..
            } => Ok(()),
            error => Err(error),
        }
    }
}

/// A `Send + Clone` handle on a [`TwilioRest`] client that lives on a thread of its own ([`AwcWorker`]).
///
/// awc's client is not `Send` (it belongs to the thread that made it), while the call service, the REST API and the
/// MCP tools need `Send` futures. The handle sends each request to that thread and awaits the answer. The thread ends
/// when the last handle is dropped.
#[derive(Clone)]
pub struct RestHandle {
    /// The account (for messages; no secret).
    account_sid: String,
    /// The REST thread, holding the client.
    worker: AwcWorker<TwilioRest>,
}

impl std::fmt::Debug for RestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestHandle")
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl RestHandle {
    /// Starts the REST thread for `rest`.
    ///
    /// # Errors
    /// When the thread or its runtime cannot be created.
    pub fn spawn(rest: TwilioRest) -> std::io::Result<Self> {
        let account_sid = rest.account_sid().to_owned();
        let worker = AwcWorker::spawn("twilio-rest", move || rest)?;
        Ok(RestHandle {
            account_sid,
            worker,
        })
    }

    /// Runs `request` on the REST thread and returns its result.
    async fn run<T, F, Fut>(&self, request: F) -> Result<T, RestError>
    where
        T: Send + 'static,
        F: FnOnce(TwilioRest) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, RestError>> + 'static,
    {
        self.worker
            .run(move |rest| request(rest.clone()))
            .await
            .unwrap_or_else(|_| {
                Err(RestError::Network(
                    "the Twilio REST worker has stopped".into(),
                ))
            })
    }

    /// [`TwilioRest::create_call`] on the REST thread.
    ///
    /// # Errors
    /// As [`TwilioRest::create_call`].
    pub async fn create_call(&self, call: CreateCall) -> Result<CreatedCall, RestError> {
        self.run(move |rest| async move { rest.create_call(&call).await })
            .await
    }

    /// [`TwilioRest::hang_up`] on the REST thread.
    ///
    /// # Errors
    /// As [`TwilioRest::hang_up`].
    pub async fn hang_up(&self, call_sid: String) -> Result<(), RestError> {
        self.run(move |rest| async move { rest.hang_up(&call_sid).await })
            .await
    }

    /// [`TwilioRest::delete_recording`] on the REST thread.
    ///
    /// # Errors
    /// As [`TwilioRest::delete_recording`].
    pub async fn delete_recording(&self, recording_sid: String) -> Result<(), RestError> {
        self.run(move |rest| async move { rest.delete_recording(&recording_sid).await })
            .await
    }

    /// [`TwilioRest::cancel`] on the REST thread.
    ///
    /// # Errors
    /// As [`TwilioRest::cancel`].
    pub async fn cancel(&self, call_sid: String) -> Result<(), RestError> {
        self.run(move |rest| async move { rest.cancel(&call_sid).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_twilio_error_body_keeps_its_code_and_message() {
        let body = br#"{"code":21211,"message":"Invalid 'To' Phone Number","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#;

        let error = RestError::from_answer(400, body);

        assert!(
            matches!(&error, RestError::Twilio { status: 400, code: Some(21211), message } if message == "Invalid 'To' Phone Number"),
            "{error:?}"
        );
    }

    #[test]
    fn an_error_without_a_json_body_uses_the_http_reason() {
        let error = RestError::from_answer(503, b"<html>busy</html>");

        assert!(
            matches!(&error, RestError::Twilio { status: 503, code: None, message } if message == "Service Unavailable"),
            "{error:?}"
        );
    }

    #[test]
    fn a_401_or_error_20003_is_an_authentication_failure_and_others_are_not() {
        let unauthorized = RestError::from_answer(401, b"");
        let authenticate =
            RestError::from_answer(403, br#"{"code":20003,"message":"Authenticate"}"#);
        let not_found = RestError::from_answer(404, br#"{"code":20404,"message":"Not found"}"#);

        assert!(unauthorized.is_authentication_failure());
        assert!(authenticate.is_authentication_failure());
        assert!(!not_found.is_authentication_failure());
        assert!(!RestError::Timeout.is_authentication_failure());
    }

    #[test]
    fn account_urls_join_the_base_without_a_double_slash() {
        let rest = TwilioRest::new(
            Url::parse("https://api.twilio.com/").expect("valid URL"),
            "AC0123456789abcdef0123456789abcdef".to_owned(),
            SecretString::from("token".to_owned()),
        );

        let url = rest.account_url("Calls/CA1.json");

        assert_eq!(
            url,
            "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls/CA1.json"
        );
    }

    #[test]
    fn the_client_debug_output_hides_the_auth_token() {
        let rest = TwilioRest::new(
            Url::parse("https://api.twilio.com").expect("valid URL"),
            "AC0123456789abcdef0123456789abcdef".to_owned(),
            SecretString::from("very-secret-token".to_owned()),
        );

        let shown = format!("{rest:?}");

        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert!(
            shown.contains("AC0123456789abcdef0123456789abcdef"),
            "{shown}"
        );
    }
}
