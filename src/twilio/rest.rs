//! The Twilio REST API client (awc): form-encoded requests with HTTP Basic `AccountSid:AuthToken`.
//!
//! Follows <https://www.twilio.com/docs/voice/api/call-resource>. Today it updates a call to hang it up
//! (`Status=completed`); a 404 with Twilio error 20404 means the call is already gone and counts as done.
//! Twilio's JSON errors (`{code, message, more_info, status}`) become [`RestError::Twilio`] keeping code and message.
//! No credential ever appears in an error or a log line.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// How long one REST request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A Twilio REST client for one account.
#[derive(Clone)]
pub struct TwilioRest {
    /// Base URL, e.g. `https://api.twilio.com` (a fake in tests).
    base_url: Url,
    /// Account SID (`AC...`): the Basic-auth user and part of every path.
    account_sid: String,
    /// Auth token: the Basic-auth password.
    auth_token: SecretString,
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
    /// No answer in [`REQUEST_TIMEOUT`].
    #[error("Twilio did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    /// Network failure before an answer.
    #[error("cannot reach Twilio: {0}")]
    Network(String),
}

impl TwilioRest {
    /// A client for `account_sid` with `auth_token` against `base_url`.
    pub fn new(base_url: Url, account_sid: String, auth_token: SecretString) -> Self {
        TwilioRest {
            base_url,
            account_sid,
            auth_token,
        }
    }

    /// `{base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`
    fn call_url(&self, call_sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls/{}.json",
            self.base_url.as_str().trim_end_matches('/'),
            self.account_sid,
            call_sid
        )
    }

    /// Hangs up a live call: `POST .../Calls/{CallSid}.json` with `Status=completed`.
    ///
    /// # Errors
    /// [`RestError`] for a Twilio error other than "already gone" (404 / 20404), a timeout or a network failure.
    pub async fn hang_up(&self, call_sid: &str) -> Result<(), RestError> {
        let client = awc::Client::builder().timeout(REQUEST_TIMEOUT).finish();
        let request = client
            .post(self.call_url(call_sid))
            .basic_auth(&self.account_sid, self.auth_token.expose_secret());
        let mut response = request
            .send_form(&[("Status", "completed")])
            .await
            .map_err(|e| match e {
                awc::error::SendRequestError::Timeout => RestError::Timeout,
                other => RestError::Network(other.to_string()),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.body().limit(64 * 1024).await.unwrap_or_default();
        let error: Option<TwilioErrorBody> = serde_json::from_slice(&body).ok();
        let code = error.as_ref().and_then(|e| e.code);
        if status.as_u16() == 404 && code.is_none_or(|c| c == 20404) {
            return Ok(());
        }
        Err(RestError::Twilio {
            status: status.as_u16(),
            code,
            message: error
                .and_then(|e| e.message)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
        })
    }
}
