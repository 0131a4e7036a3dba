//! The call service: what the REST API, the MCP tools and the CLI do with calls.
//!
//! It places outbound calls (E.164 check, stored `queued` with their instructions, then Twilio's `Calls.json`),
//! reads calls back (optionally waiting for the next status change), lists them, hangs them up and injects
//! instructions into live ones. Every method returns a `Send` future (Twilio's REST client runs on its own thread, see
//! [`RestHandle`]), so MCP tool handlers and actix handlers can await them alike.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use url::Url;

use crate::calls::Direction;
use crate::calls::live::{CallControl, LiveCalls};
use crate::calls::model::{CallError, CallStatus, CallSummary, CallView, NewCall};
use crate::calls::store::{CallStore, StoreError};
use crate::twilio::rest::{CreateCall, RestError, RestHandle};

/// The longest `wait_s` a caller may ask for.
pub const MAX_WAIT_S: u64 = 120;
/// The most calls one list returns.
pub const MAX_LIST: usize = 200;

/// A request to place a call (the REST API's body and the MCP tool's arguments).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PlaceCall {
    /// Who to call, E.164 (`+15550100`).
    pub to: String,
    /// What the voice model should do on this call, in plain words.
    pub instructions: String,
    /// What the model says as soon as the callee answers; without it the model waits for the callee's "hello".
    #[serde(default)]
    pub greeting: Option<String>,
    /// The Realtime voice for this call (default: the configured voice).
    #[serde(default)]
    pub voice: Option<String>,
    /// The language to speak (`en`, `fr-FR`, ...), when it matters.
    #[serde(default)]
    pub language: Option<String>,
    /// The longest the call may last, seconds (default: the configured maximum, which also caps it).
    #[serde(default)]
    pub max_duration_s: Option<u64>,
    /// Anything the caller wants stored with the call and returned untouched.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// What can go wrong; each has a stable `code` for JSON errors and MCP tool errors.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `to` is not a valid E.164 number.
    #[error("{0}")]
    InvalidNumber(String),
    /// A request field is wrong (empty instructions, a too long wait, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// No call has that id.
    #[error("no call with id {0}")]
    NotFound(String),
    /// The call is not in progress on this server (for `instruct`).
    #[error("call {0} is not in progress")]
    NotLive(String),
    /// Outbound calls need settings that are missing; the message names them.
    #[error("{0}")]
    NotConfigured(String),
    /// Twilio refused; its code and message are kept.
    #[error("Twilio refused: {message}{}", code.map(|c| format!(" (Twilio error {c})")).unwrap_or_default())]
    Twilio {
        /// Twilio's error code (21211 invalid `To`, 21219 unverified number on a trial account, ...).
        code: Option<u32>,
        /// Twilio's message.
        message: String,
    },
    /// The call records database failed.
    #[error("the call store failed: {0}")]
    Store(#[from] StoreError),
}

impl ServiceError {
    /// A stable machine-readable code: `invalid_number`, `invalid_request`, `not_found`, `not_live`,
    /// `not_configured`, `twilio_error`, `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::InvalidNumber(_) => "invalid_number",
            ServiceError::InvalidRequest(_) => "invalid_request",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::NotLive(_) => "not_live",
            ServiceError::NotConfigured(_) => "not_configured",
            ServiceError::Twilio { .. } => "twilio_error",
            ServiceError::Store(_) => "internal",
        }
    }
}

impl From<RestError> for ServiceError {
    fn from(error: RestError) -> Self {
        match error {
            RestError::Twilio { code, message, .. } => ServiceError::Twilio { code, message },
            other => ServiceError::Twilio {
                code: None,
                message: other.to_string(),
            },
        }
    }
}

/// What outbound calls need from the settings.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    /// The public base URL Twilio calls back (`/outbound-call/{id}`, `/call-status`); required to place calls.
    pub public_url: Option<Url>,
    /// The caller ID: your Twilio number.
    pub from_number: Option<String>,
    /// The configured maximum call duration (caps a call's own `max_duration_s`).
    pub max_call_duration_s: u64,
    /// How long to ring.
    pub ring_timeout_s: u32,
}

/// True when nothing more will happen to the call: its status is final and, if it was answered, its record (outcome,
/// end reason, transcript as heard) is written.
pub fn is_done(call: &CallView) -> bool {
    call.status.is_terminal() && (call.end_reason.is_some() || call.answered_at.is_none())
}

/// The service. Cheap to clone.
#[derive(Clone)]
pub struct CallService {
    inner: Arc<Inner>,
}

struct Inner {
    /// Call records.
    store: CallStore,
    /// Twilio REST, when credentials are configured.
    rest: Option<RestHandle>,
    /// Calls in progress (by CallSid).
    live: LiveCalls,
    /// Outbound settings.
    outbound: OutboundSettings,
    /// Woken whenever a call's status or record changes (for `wait_s`).
    changed: Notify,
}

impl std::fmt::Debug for CallService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallService").finish_non_exhaustive()
    }
}

/// True when `number` is a valid E.164 phone number (`+` and the country code, then a number valid for that
/// country), per the `phonenumber` crate (libphonenumber's metadata).
pub fn is_valid_e164(number: &str) -> bool {
    if !crate::config::is_e164(number) {
        return false;
    }
    phonenumber::parse(None, number).is_ok_and(|parsed| phonenumber::is_valid(&parsed))
}

impl CallService {
    /// A service over `store`, placing calls through `rest` when given.
    pub fn new(
        store: CallStore,
        rest: Option<RestHandle>,
        live: LiveCalls,
        outbound: OutboundSettings,
    ) -> Self {
        CallService {
            inner: Arc::new(Inner {
                store,
                rest,
                live,
                outbound,
                changed: Notify::new(),
            }),
        }
    }

    /// The call store.
    pub fn store(&self) -> &CallStore {
        &self.inner.store
    }

    /// Tells waiters (`get_call` with `wait_s`) that a call changed.
    pub fn notify_changed(&self) {
        self.inner.changed.notify_waiters();
    }

    /// Places an outbound call: checks `to`, stores the call `queued` with its instructions, and asks Twilio to dial.
    /// Twilio then fetches `/outbound-call/{id}` when the callee answers.
    ///
    /// # Errors
    /// [`ServiceError::InvalidNumber`] for a `to` that is not E.164; [`ServiceError::InvalidRequest`] for empty
    /// instructions or a zero duration; [`ServiceError::NotConfigured`] when Twilio credentials, the Twilio number
    /// or the public URL are missing; [`ServiceError::Twilio`] when Twilio refuses (the call is then stored as
    /// `failed` with Twilio's error).
    pub async fn place_call(&self, request: PlaceCall) -> Result<CallView, ServiceError> {
        let to = request.to.trim().to_owned();
        if !is_valid_e164(&to) {
            return Err(ServiceError::InvalidNumber(format!(
                "{to:?} is not a valid phone number in E.164 form: a plus sign, the country code and the number, no \
                 spaces (e.g. +14155550100)"
            )));
        }
        let instructions = request.instructions.trim().to_owned();
        if instructions.is_empty() {
            return Err(ServiceError::InvalidRequest(
                "instructions are empty: say what the call is for".into(),
            ));
        }
        if request.max_duration_s == Some(0) {
            return Err(ServiceError::InvalidRequest(
                "max_duration_s must be at least 1".into(),
            ));
        }
        let outbound = &self.inner.outbound;
        let mut missing = Vec::new();
        if self.inner.rest.is_none() {
            missing.push("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN");
        }
        if outbound.from_number.is_none() {
            missing.push("TWILIO_PHONE_NUMBER");
        }
        if outbound.public_url.is_none() {
            missing.push("PUBLIC_URL");
        }
        let (Some(rest), Some(from), Some(public_url)) = (
            &self.inner.rest,
            &outbound.from_number,
            &outbound.public_url,
        ) else {
            return Err(ServiceError::NotConfigured(format!(
                "outbound calls need {} to be set on the server",
                missing.join(", ")
            )));
        };
        let max_duration_s = request
            .max_duration_s
            .unwrap_or(outbound.max_call_duration_s)
            .min(outbound.max_call_duration_s);
        let call = self.inner.store.create(&NewCall {
            direction: Direction::OutboundApi,
            from: from.clone(),
            to: to.clone(),
            call_sid: None,
            instructions: Some(instructions),
            greeting: request.greeting.filter(|g| !g.trim().is_empty()),
            voice: request.voice.filter(|v| !v.trim().is_empty()),
            language: request.language.filter(|l| !l.trim().is_empty()),
            max_duration_s: Some(max_duration_s),
            metadata: request.metadata,
        })?;
        let base = public_url.as_str().trim_end_matches('/');
        let created = rest
            .create_call(CreateCall {
                to: to.clone(),
                from: from.clone(),
                url: format!("{base}/outbound-call/{}", call.id),
                status_callback: format!("{base}/call-status"),
                ring_timeout_s: outbound.ring_timeout_s,
                time_limit_s: max_duration_s,
            })
            .await;
        match created {
            Ok(created) => {
                self.inner.store.set_call_sid(&call.id, &created.sid)?;
                tracing::info!(call_id = %call.id, call_sid = %created.sid, %to, "outbound call placed");
            }
            Err(error) => {
                let error = ServiceError::from(error);
                if let ServiceError::Twilio { code, message } = &error {
                    self.inner.store.set_error(
                        &call.id,
                        &CallError {
                            code: *code,
                            message: message.clone(),
                        },
                    )?;
                }
                self.inner.store.update_status(
                    &call.id,
                    CallStatus::Failed,
                    time::OffsetDateTime::now_utc(),
                )?;
                self.notify_changed();
                tracing::warn!(call_id = %call.id, %to, error = %error, "Twilio refused the outbound call");
                return Err(error);
            }
        }
        self.notify_changed();
        self.get(&call.id)
    }

    /// The call `id`.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`]; [`ServiceError::Store`].
    pub fn get(&self, id: &str) -> Result<CallView, ServiceError> {
        self.inner
            .store
            .get(id)?
            .ok_or_else(|| ServiceError::NotFound(id.to_owned()))
    }

    /// The call `id`; with `wait_s`, answers as soon as its status changes or it ends (its record is written), after
    /// at most `wait_s` seconds (at most [`MAX_WAIT_S`]). A call that is done ([`is_done`]) is returned at once.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`]; [`ServiceError::InvalidRequest`] for `wait_s` over [`MAX_WAIT_S`].
    pub async fn get_call(&self, id: &str, wait_s: Option<u64>) -> Result<CallView, ServiceError> {
        let first = self.get(id)?;
        let Some(wait_s) = wait_s.filter(|w| *w > 0) else {
            return Ok(first);
        };
        if wait_s > MAX_WAIT_S {
            return Err(ServiceError::InvalidRequest(format!(
                "wait_s is at most {MAX_WAIT_S} seconds"
            )));
        }
        if is_done(&first) {
            return Ok(first);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_s);
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.get(id)?;
            if now.status != first.status
                || now.end_reason != first.end_reason
                || now.error != first.error
            {
                return Ok(now);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get(id);
            }
        }
    }

    /// The most recent calls, newest first (at most [`MAX_LIST`]).
    ///
    /// # Errors
    /// [`ServiceError::Store`].
    pub fn list_calls(&self, limit: usize) -> Result<Vec<CallSummary>, ServiceError> {
        Ok(self.inner.store.list(limit.clamp(1, MAX_LIST))?)
    }

    /// Hangs up the call `id`: a live call ends at once (end reason `hung_up_by_api`); a call still ringing is
    /// canceled at Twilio. A call that already ended is returned as it is.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`]; [`ServiceError::Twilio`] when Twilio refuses the cancel.
    pub async fn hang_up(&self, id: &str) -> Result<CallView, ServiceError> {
        let call = self.get(id)?;
        if call.status.is_terminal() {
            return Ok(call);
        }
        let Some(call_sid) = call.call_sid.clone() else {
            return Ok(call);
        };
        if self.inner.live.send(&call_sid, CallControl::HangUp) {
            tracing::info!(call_id = %id, "hang-up requested through the API");
        } else if let Some(rest) = &self.inner.rest {
            // Not bridged here (ringing, or answered but not streaming yet): end it at Twilio.
            if call.status == CallStatus::InProgress {
                rest.hang_up(call_sid).await?;
            } else {
                rest.cancel(call_sid).await?;
            }
        }
        self.get(id)
    }

    /// Adds an instruction to a live call's conversation as a system message.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`]; [`ServiceError::NotLive`] when the call is not in progress on this server;
    /// [`ServiceError::InvalidRequest`] for empty text.
    pub fn instruct(&self, id: &str, text: &str) -> Result<(), ServiceError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ServiceError::InvalidRequest(
                "the instruction is empty".into(),
            ));
        }
        let call = self.get(id)?;
        let live = call.call_sid.as_deref().is_some_and(|sid| {
            self.inner
                .live
                .send(sid, CallControl::Instruct(text.to_owned()))
        });
        if live {
            Ok(())
        } else {
            Err(ServiceError::NotLive(id.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_validation_uses_real_numbering_plans() {
        assert!(is_valid_e164("+14155552671"));
        assert!(is_valid_e164("+442071838750"));
        assert!(!is_valid_e164("4155552671"), "no plus");
        assert!(!is_valid_e164("+1 415 555 2671"), "spaces");
        assert!(!is_valid_e164("+1415"), "too short for its country");
        assert!(!is_valid_e164("+999123456789"), "no such country code");
    }
}
