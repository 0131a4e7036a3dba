//! The call service: what the REST API, the MCP tools and the CLI do with calls.
//!
//! It places outbound calls (E.164 check, the destination policy, the daily budget and the concurrency cap, stored
//! `queued` with their instructions, then Twilio's `Calls.json`), admits inbound calls under the concurrency cap,
//! reads calls back (optionally waiting for the next status change), lists them, hangs them up and injects
//! instructions into live ones. Every method returns a `Send` future (Twilio's REST client runs on its own thread, see
//! [`RestHandle`]), so MCP tool handlers and actix handlers can await them alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use url::Url;

use crate::calls::Direction;
use crate::calls::clock::{SharedClock, SystemClock};
use crate::calls::live::{CallControl, LiveCalls};
use crate::calls::model::{Answering, CallError, CallStatus, CallSummary, CallView, NewCall};
use crate::calls::store::{CallStore, new_call_id};
use crate::calls::writer::{RetryPolicy, StoreWriter, Write};
use crate::phone::E164;
use crate::security::policy::DestinationPolicy;
use crate::twilio::amd::{AmdTuning, MachineDetection, MachinePolicy};
use crate::twilio::rest::{CreateCall, RestHandle};
use crate::urls::{
    CALL_STATUS_PATH, amd_status_path, outbound_call_path, public_endpoint, recording_status_path,
};

/// The longest `wait_s` a caller may ask for.
pub const MAX_WAIT_S: u64 = 120;
/// The most calls one list returns.
pub const MAX_LIST: usize = 200;
/// How long after its ring timeout an unanswered outbound call still counts against the concurrency cap (Twilio may
/// hold a call `queued` a while before dialing; a call whose status callbacks never arrive stops counting then).
pub const RINGING_GRACE: Duration = Duration::from_secs(60);
/// How long an API or MCP request waits for a write it needs before answering `store_busy` (the database is held
/// locked by another process; the write stays queued and still happens).
pub const STORE_DEADLINE: Duration = Duration::from_secs(2);

/// Counts the calls answered whose media stream has not opened yet (their stream tokens are pending). The server
/// counts its pending stream tokens; tests may count anything.
pub type PendingStreams = Arc<dyn Fn() -> usize + Send + Sync>;

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
    /// What to do when an answering machine picks up: `hang_up`, `leave_message` or `ignore` (default: the
    /// server's `CALLBRIDGE_ANSWERING_MACHINE`). Anything but `ignore` turns on Twilio's answering machine detection.
    #[serde(default)]
    pub answering_machine: Option<MachinePolicy>,
    /// For `leave_message`: what to say after the beep (the model says it in the call's voice, adapted to the
    /// task); without it the model composes a short message from the instructions.
    #[serde(default)]
    pub voicemail_message: Option<String>,
    /// The call's own estimated cost cap, USD: at it the assistant wraps up and says goodbye (the server's
    /// `CALLBRIDGE_MAX_CALL_COST_USD` still applies when lower).
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Keys Twilio presses as soon as the call is answered (an extension known in advance: `ww123`), sent as
    /// Twilio's `SendDigits`: `0-9`, `*`, `#`, `w` for a half-second pause.
    #[serde(default)]
    pub send_digits: Option<String>,
    /// Record the call at Twilio, both channels (default: the server's `CALLBRIDGE_RECORDING`). The callee hears
    /// the consent line first; the recording's URL and duration are stored with the call.
    #[serde(default)]
    pub record: Option<bool>,
    /// Where to POST this call's signed webhooks (`call.status_changed`, `call.answered_by`, `call.completed`):
    /// https, or http to a loopback host (default: the server's `CALLBRIDGE_WEBHOOK_URL`, if any).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Try again when an attempt ends with a result listed in `retry_on` (`busy`, `no-answer`, `failed`): at most
    /// `max_attempts` attempts in all, `backoff_s` apart. The call is then placed by the scheduler.
    #[serde(default)]
    pub retry: Option<crate::calls::schedule::RetryPlan>,
    /// The earliest the call may start, RFC 3339 (`2026-01-15T09:30:00+01:00`), at most 30 days ahead.
    #[serde(default)]
    pub not_before: Option<String>,
    /// Local hours in which the call (and each retry) may start, with an IANA time zone:
    /// `09:00-18:00 Europe/Berlin`.
    #[serde(default)]
    pub call_window: Option<String>,
    /// A JSON Schema object the call's outcome must match (at most 16 KiB): the model's `end_call` then takes an
    /// `outcome` of that shape, checked before the call ends, and `get_call` returns it as `structured_outcome`.
    #[serde(default)]
    pub outcome_schema: Option<serde_json::Value>,
    /// Remote MCP servers for the call's voice, by label (or URL) of `CALLBRIDGE_VOICE_MCP_SERVERS` entries;
    /// default: the entries marked `default`; `[]`: none.
    #[serde(default)]
    pub mcp_servers: Option<Vec<String>>,
    /// `relay`: the agent decides every word through `say` and the voice never answers on its own (the
    /// instructions are then context for tone and pronunciation); `autonomous` (the default): the voice model holds
    /// the conversation.
    #[serde(default)]
    pub mode: Option<crate::calls::say::CallMode>,
    /// The OpenAI voice API for this call: `realtime` or `live` (default: the server's `CALLBRIDGE_ENGINE`).
    #[serde(default)]
    pub engine: Option<crate::config::Engine>,
}

#[path = "service_error.rs"]
mod error;
pub use error::ServiceError;
#[path = "service_say.rs"]
mod say;
pub use say::SayCall;

#[path = "service_schedule.rs"]
mod schedule;
pub use schedule::CAP_RETRY_DELAY;
#[path = "service_admission.rs"]
mod admission;
pub use admission::Admission;

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
    /// Where outbound calls may go (`CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES` / `_NUMBERS`).
    pub destinations: DestinationPolicy,
    /// Most outbound calls placed per UTC day (attempts count, including those Twilio refused).
    pub daily_outbound_budget: u32,
    /// Most calls at once (see [`CallService::concurrent_calls`]).
    pub max_concurrent_calls: u32,
    /// What a call does when a machine answers, unless its request says (`CALLBRIDGE_ANSWERING_MACHINE`).
    pub answering_machine: MachinePolicy,
    /// Twilio's answering machine detection tuning (`CALLBRIDGE_AMD_*`).
    pub amd_tuning: AmdTuning,
    /// Whether a call is recorded when its request does not say (`CALLBRIDGE_RECORDING`).
    pub record: bool,
    /// Which webhook URL a call gets (`CALLBRIDGE_WEBHOOK_URL`, `CALLBRIDGE_WEBHOOK_SECRET`).
    pub webhooks: crate::webhooks::destination::WebhookPolicy,
    /// The remote MCP servers a call may name for its voice (`CALLBRIDGE_VOICE_MCP_SERVERS`).
    pub voice_mcp_servers: crate::realtime::mcp_tools::VoiceMcpServers,
    /// Once the calls of the UTC day cost this much (estimated), new calls are refused (`CALLBRIDGE_DAILY_COST_BUDGET_USD`).
    pub daily_cost_budget_usd: Option<f64>,
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
    /// Call records (reads; writes go through `writer`).
    store: CallStore,
    /// The store writer: every write, off the callers' threads.
    writer: StoreWriter,
    /// Outbound calls counted (under `admission`) whose record is still queued for the writer: they count against
    /// the cap and the budget until written.
    reserved: Arc<AtomicU64>,
    /// Twilio REST, when credentials are configured.
    rest: Option<RestHandle>,
    /// Calls in progress (by CallSid).
    live: LiveCalls,
    /// Outbound settings.
    outbound: OutboundSettings,
    /// Woken whenever a call's status or record changes (for `wait_s`).
    changed: Arc<Notify>,
    /// Calls answered whose stream has not opened yet.
    pending_streams: PendingStreams,
    /// CallSid → the stream token of its answered call whose media stream has not opened yet: one pending stream
    /// per CallSid, so a replayed webhook is answered with the same stream instead of a new one.
    awaited: Mutex<std::collections::HashMap<String, String>>,
    /// Held from counting the calls to storing a new one, so two requests cannot both take the last slot (or the
    /// last call of the budget). Never held across an `.await`.
    admission: Mutex<()>,
    /// The time scheduled and retried calls are due by.
    clock: SharedClock,
    /// Woken when a call is scheduled, so the scheduler looks at once.
    scheduled: Arc<Notify>,
    /// The fleet's Redis, set once at start-up when `CALLBRIDGE_REDIS_URL` is: the cap and the budgets are then
    /// counted for the whole fleet (see `service_admission.rs`).
    fleet: std::sync::OnceLock<crate::fleet::Fleet>,
}

impl std::fmt::Debug for CallService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallService").finish_non_exhaustive()
    }
}

impl CallService {
    /// A service over `store`, placing calls through `rest` when given; `pending_streams` counts the calls answered
    /// whose media stream has not opened yet (for the concurrency cap).
    pub fn new(
        store: CallStore,
        rest: Option<RestHandle>,
        live: LiveCalls,
        outbound: OutboundSettings,
        pending_streams: PendingStreams,
    ) -> Self {
        Self::with_clock(
            store,
            rest,
            live,
            outbound,
            pending_streams,
            Arc::new(SystemClock),
        )
    }

    /// [`CallService::new`] with the clock scheduled and retried calls are due by (tests move it forward).
    pub fn with_clock(
        store: CallStore,
        rest: Option<RestHandle>,
        live: LiveCalls,
        outbound: OutboundSettings,
        pending_streams: PendingStreams,
        clock: SharedClock,
    ) -> Self {
        let changed = Arc::new(Notify::new());
        let writer = StoreWriter::spawn(store.clone(), changed.clone(), RetryPolicy::default());
        CallService {
            inner: Arc::new(Inner {
                store,
                writer,
                reserved: Arc::new(AtomicU64::new(0)),
                rest,
                live,
                outbound,
                changed,
                pending_streams,
                awaited: Mutex::new(std::collections::HashMap::new()),
                admission: Mutex::new(()),
                clock,
                scheduled: Arc::new(Notify::new()),
                fleet: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The call store. The server reads it directly (reads never wait for a lock in WAL mode) and writes only
    /// through [`CallService::writer`].
    pub fn store(&self) -> &CallStore {
        &self.inner.store
    }

    /// The store writer: queue every write here.
    pub fn writer(&self) -> &StoreWriter {
        &self.inner.writer
    }

    /// Queues `write` and waits up to [`STORE_DEADLINE`] for it.
    ///
    /// # Errors
    /// [`ServiceError::StoreBusy`] when the deadline passed (the write stays queued); [`ServiceError::Store`] when
    /// it failed for good.
    async fn write(&self, write: Write) -> Result<(), ServiceError> {
        self.inner
            .writer
            .write(write, STORE_DEADLINE)
            .await
            .map_err(|e| e.map_or(ServiceError::StoreBusy, ServiceError::Store))
    }

    /// Remembers that the call `call_sid` waits for its media stream on `token` (replacing an earlier token).
    pub fn await_stream(&self, call_sid: &str, token: &str) {
        self.lock_awaited()
            .insert(call_sid.to_owned(), token.to_owned());
    }

    /// The stream token the call `call_sid` waits on, if any (it may have been used since: check it is pending).
    pub fn awaited_stream(&self, call_sid: &str) -> Option<String> {
        self.lock_awaited().get(call_sid).cloned()
    }

    /// Forgets the call's awaited stream if it is still `token` (its token expired or was used).
    pub fn forget_stream(&self, call_sid: &str, token: &str) {
        let mut awaited = self.lock_awaited();
        if awaited.get(call_sid).is_some_and(|t| t == token) {
            awaited.remove(call_sid);
        }
    }

    /// The awaited streams (single inserts and removes: a poisoned lock is taken over).
    fn lock_awaited(&self) -> MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.inner
            .awaited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the call `call_sid` at Twilio (`Status=completed`; a call Twilio no longer knows counts as done), when
    /// REST credentials are configured; does nothing otherwise.
    ///
    /// # Errors
    /// [`ServiceError::Twilio`] when Twilio refuses or cannot be reached.
    pub async fn end_at_twilio(&self, call_sid: &str) -> Result<(), ServiceError> {
        if let Some(rest) = &self.inner.rest {
            rest.hang_up(call_sid.to_owned()).await?;
        }
        Ok(())
    }

    /// Cancels the unanswered call `call_sid` at Twilio, when REST credentials are configured.
    ///
    /// # Errors
    /// [`ServiceError::Twilio`] when Twilio refuses or cannot be reached.
    pub async fn cancel_at_twilio(&self, call_sid: &str) -> Result<(), ServiceError> {
        if let Some(rest) = &self.inner.rest {
            rest.cancel(call_sid.to_owned()).await?;
        }
        Ok(())
    }

    /// Where the webhooks of a call that names none go (inbound calls): `CALLBRIDGE_WEBHOOK_URL` when webhooks
    /// are signed.
    pub fn default_webhook_url(&self) -> Option<String> {
        self.inner.outbound.webhooks.resolve(None).ok().flatten()
    }

    /// Woken after every store write but transcript turns (the webhook delivery task waits on it).
    pub fn changes(&self) -> Arc<Notify> {
        self.inner.changed.clone()
    }

    /// Tells waiters (`get_call` with `wait_s`) that a call changed.
    pub fn notify_changed(&self) {
        self.inner.changed.notify_waiters();
    }

    /// Places an outbound call: checks `to` (E.164, then the destination policy), checks the daily budget and the
    /// concurrency cap, stores the call `queued` with its instructions, and asks Twilio to dial. Twilio then fetches
    /// `/outbound-call/{id}` when the callee answers. A call refused before it is stored does not use the budget;
    /// one Twilio refuses does.
    ///
    /// # Errors
    /// [`ServiceError::InvalidNumber`] for a `to` that is not E.164; [`ServiceError::InvalidRequest`] for empty
    /// instructions or a zero duration; [`ServiceError::DestinationNotAllowed`] when the destination policy refuses
    /// `to`; [`ServiceError::NotConfigured`] when Twilio credentials, the Twilio number or the public URL are
    /// missing; [`ServiceError::DailyBudgetExhausted`]; [`ServiceError::TooManyCalls`]; [`ServiceError::Twilio`]
    /// when Twilio refuses (the call is then stored as `failed` with Twilio's error).
    pub async fn place_call(&self, request: PlaceCall) -> Result<CallView, ServiceError> {
        let to_text = request.to.trim();
        let Ok(to) = E164::parse_dialable(to_text) else {
            return Err(ServiceError::InvalidNumber(format!(
                "{to_text:?} is not a valid phone number in E.164 form: a plus sign, the country code and the number, \
                 no spaces (e.g. +14155550100)"
            )));
        };
        let instructions = request.instructions.trim().to_owned();
        if instructions.is_empty() {
            return Err(ServiceError::InvalidRequest(
                "instructions are empty: say what the call is for".into(),
            ));
        }
        let send_digits = request
            .send_digits
            .as_deref()
            .map(crate::twilio::dtmf::DtmfDigits::parse)
            .transpose()
            .map_err(|e| ServiceError::InvalidRequest(format!("send_digits: {e}")))?;
        let schedule = self.schedule_of(&request)?;
        let outcome_schema = request
            .outcome_schema
            .map(crate::calls::outcome::OutcomeSchema::parse)
            .transpose()
            .map_err(|e| ServiceError::InvalidRequest(e.to_string()))?
            .map(|schema| schema.schema().clone());
        let mcp_servers = request
            .mcp_servers
            .as_deref()
            .map(|names| self.inner.outbound.voice_mcp_servers.resolve(names))
            .transpose()
            .map_err(ServiceError::InvalidRequest)?;
        if request
            .max_cost_usd
            .is_some_and(|usd| !usd.is_finite() || usd <= 0.0)
        {
            return Err(ServiceError::InvalidRequest(
                "max_cost_usd must be a number of US dollars above 0".into(),
            ));
        }
        if request.max_duration_s == Some(0) {
            return Err(ServiceError::InvalidRequest(
                "max_duration_s must be at least 1".into(),
            ));
        }
        let outbound = &self.inner.outbound;
        let webhook_url = outbound.webhooks.resolve(request.webhook_url.as_deref())?;
        if let Err(refused) = outbound.destinations.check(to.as_str()) {
            tracing::warn!(%to, reason = %refused, "outbound call refused by the destination policy");
            return Err(refused.into());
        }
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
        let answering_machine = request
            .answering_machine
            .unwrap_or(outbound.answering_machine);
        let voicemail_message = request.voicemail_message.filter(|m| !m.trim().is_empty());
        let record = request.record.unwrap_or(outbound.record);
        let id = new_call_id();
        let new_call = NewCall {
            direction: Direction::OutboundApi,
            from: from.clone(),
            to: to.to_string(),
            call_sid: None,
            instructions: Some(instructions),
            greeting: request.greeting.filter(|g| !g.trim().is_empty()),
            voice: request.voice.filter(|v| !v.trim().is_empty()),
            language: request.language.filter(|l| !l.trim().is_empty()),
            max_duration_s: Some(max_duration_s),
            metadata: request.metadata,
            answering: Answering {
                answering_machine: Some(answering_machine),
                voicemail_message,
                ..Answering::default()
            },
            record,
            webhook_url,
            outcome_schema,
            mcp_servers,
            mode: request.mode.unwrap_or_default(),
            max_cost_usd: request.max_cost_usd,
            engine: request.engine,
        };
        if let Some(mut schedule) = schedule {
            schedule.send_digits = send_digits.map(|d| d.as_str().to_owned());
            return self.place_scheduled(id, new_call, schedule).await;
        }
        let (stored, written) = tokio::sync::oneshot::channel();
        if self.fleet().is_some() {
            // The fleet counts the cap and the budget in Redis, atomically for every instance.
            self.check_fleet_cost_budget().await?;
            self.admit_in_fleet(&id, true).await?;
            self.inner.writer.submit_then(
                Write::Create {
                    id: id.clone(),
                    call: Box::new(new_call),
                    answered: false,
                },
                Box::new(move |result| {
                    let _ = stored.send(result);
                }),
            );
        } else {
            // Counting and queueing under one admission: the reserved call counts until its record is written,
            // and from then on as a stored `queued` call.
            let _admission = self.lock_admission();
            self.check_daily_budget()?;
            self.check_daily_cost_budget()?;
            self.check_capacity()?;
            self.inner.reserved.fetch_add(1, Ordering::SeqCst);
            let reserved = self.inner.reserved.clone();
            self.inner.writer.submit_then(
                Write::Create {
                    id: id.clone(),
                    call: Box::new(new_call),
                    answered: false,
                },
                Box::new(move |result| {
                    reserved.fetch_sub(1, Ordering::SeqCst);
                    let _ = stored.send(result);
                }),
            );
        }
        match tokio::time::timeout(STORE_DEADLINE, written).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => return Err(error.into()),
            Ok(Err(_)) | Err(_) => {
                // The record is still queued: once written it is failed at once, and Twilio is never asked.
                let writer = &self.inner.writer;
                writer.submit(Write::SetError {
                    id: id.clone(),
                    error: CallError {
                        code: None,
                        message: "not placed: the call records database was busy".into(),
                    },
                });
                writer.submit(Write::Status {
                    id: id.clone(),
                    status: CallStatus::Failed,
                    at: time::OffsetDateTime::now_utc(),
                });
                tracing::warn!(call_id = %id, %to, "outbound call not placed: the call store is busy");
                self.release_fleet_slots(&[&id]).await;
                return Err(ServiceError::StoreBusy);
            }
        }
        let call = self.get(&id)?;
        let created = rest
            .create_call(CreateCall {
                to: to.to_string(),
                from: from.clone(),
                url: public_endpoint(public_url, &outbound_call_path(&call.id)),
                status_callback: public_endpoint(public_url, CALL_STATUS_PATH),
                ring_timeout_s: outbound.ring_timeout_s,
                time_limit_s: max_duration_s,
                machine_detection: (answering_machine != MachinePolicy::Ignore).then(|| {
                    MachineDetection {
                        callback_url: public_endpoint(public_url, &amd_status_path(&call.id)),
                        tuning: outbound.amd_tuning,
                    }
                }),
                send_digits: send_digits.map(|d| d.as_str().to_owned()),
                recording_callback: record
                    .then(|| public_endpoint(public_url, &recording_status_path(&call.id))),
            })
            .await;
        match created {
            Ok(created) => {
                tracing::info!(call_id = %call.id, call_sid = %created.sid, %to, "outbound call placed");
                let recorded = self
                    .write(Write::SetCallSid {
                        id: call.id.clone(),
                        call_sid: created.sid.clone(),
                    })
                    .await;
                if let Err(error) = recorded {
                    // The call is placed whatever the store does; the CallSid lands once the lock goes.
                    tracing::warn!(call_id = %call.id, %error, "the CallSid is not stored yet");
                    let mut call = call;
                    call.call_sid = Some(created.sid);
                    return Ok(call);
                }
            }
            Err(error) => {
                let error = ServiceError::from(error);
                self.release_fleet_slots(&[&call.id]).await;
                if let ServiceError::Twilio { code, message } = &error {
                    self.inner.writer.submit(Write::SetError {
                        id: call.id.clone(),
                        error: CallError {
                            code: *code,
                            message: message.clone(),
                        },
                    });
                }
                let failed = self
                    .write(Write::Status {
                        id: call.id.clone(),
                        status: CallStatus::Failed,
                        at: time::OffsetDateTime::now_utc(),
                    })
                    .await;
                if let Err(store_error) = failed {
                    tracing::warn!(call_id = %call.id, error = %store_error, "the failed status is not stored yet");
                }
                tracing::warn!(call_id = %call.id, %to, error = %error, "Twilio refused the outbound call");
                return Err(error);
            }
        }
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
            if is_done(&now)
                || now.status != first.status
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
    /// canceled at Twilio (a call stored but not placed yet is returned as it is); a call waiting for its next
    /// attempt (`scheduled`, `retry-pending`) is `canceled` and no attempt follows.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`]; [`ServiceError::AlreadyEnded`] (409 `call_ended`) when the call has ended;
    /// [`ServiceError::NotLive`] when it is not bridged here and there are no Twilio credentials to end it with;
    /// [`ServiceError::Twilio`] when Twilio refuses the cancel.
    pub async fn hang_up(&self, id: &str) -> Result<CallView, ServiceError> {
        let call = self.get(id)?;
        if call.status.is_terminal() {
            return Err(ServiceError::AlreadyEnded {
                id: call.id,
                status: call.status,
                end_reason: call.end_reason,
            });
        }
        if call.status.is_waiting() {
            return self.cancel_waiting(call).await;
        }
        let Some(call_sid) = call.call_sid.clone() else {
            return Ok(call);
        };
        if self.route(&call_sid, CallControl::HangUp).await? {
            tracing::info!(call_id = %id, "hang-up requested through the API");
        } else if self.inner.rest.is_none() {
            return Err(ServiceError::NotLive(id.to_owned()));
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
    pub async fn instruct(&self, id: &str, text: &str) -> Result<(), ServiceError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ServiceError::InvalidRequest(
                "the instruction is empty".into(),
            ));
        }
        let call = self.get(id)?;
        self.route_to_live(
            id,
            call.call_sid.as_deref(),
            CallControl::Instruct(text.to_owned()),
        )
        .await
    }

    /// Sends `control` to the live call `call_sid` wherever it runs ([`LiveCalls::route`]); false when no instance
    /// holds it.
    ///
    /// # Errors
    /// [`ServiceError::FleetUnavailable`] when the fleet's routing failed.
    async fn route(&self, call_sid: &str, control: CallControl) -> Result<bool, ServiceError> {
        self.inner
            .live
            .route(call_sid, control)
            .await
            .map_err(|e| ServiceError::FleetUnavailable(e.to_string()))
    }

    /// [`CallService::route`] for the call `id` with CallSid `call_sid`: [`ServiceError::NotLive`] when it has none
    /// or no instance holds it.
    async fn route_to_live(
        &self,
        id: &str,
        call_sid: Option<&str>,
        control: CallControl,
    ) -> Result<(), ServiceError> {
        match call_sid {
            Some(sid) if self.route(sid, control).await? => Ok(()),
            _ => Err(ServiceError::NotLive(id.to_owned())),
        }
    }

    /// Presses keys on a live call's keypad (`0-9`, `*`, `#`, `w` for a half-second pause): Twilio plays them with a
    /// call update and the call continues on a new media stream. The call may refuse it (another keypress under way,
    /// the per-call rate limit, the call ending); that is logged with the call.
    ///
    /// # Errors
    /// [`ServiceError::InvalidRequest`] for digits outside `0-9*#w`, none, or too many; [`ServiceError::NotFound`];
    /// [`ServiceError::NotLive`] when the call is not in progress on this server.
    pub async fn send_dtmf(&self, id: &str, digits: &str) -> Result<(), ServiceError> {
        let digits = crate::twilio::dtmf::DtmfDigits::parse(digits)
            .map_err(|e| ServiceError::InvalidRequest(e.to_string()))?;
        let call = self.get(id)?;
        self.route_to_live(
            id,
            call.call_sid.as_deref(),
            CallControl::SendDigits(digits),
        )
        .await
    }

    /// Transfers a live call to a person at `to` (E.164), who hears `summary` first (cut to
    /// [`crate::twilio::dial::SUMMARY_MAX_CHARS`]): a Twilio call update to `<Dial>`. `to` must pass the outbound
    /// destination policy, as for [`CallService::place_call`]. The call may still refuse (another action under way,
    /// its transfers used, the call ending); that is logged with the call.
    ///
    /// # Errors
    /// [`ServiceError::InvalidNumber`] for a `to` that is not E.164; [`ServiceError::DestinationNotAllowed`] when the
    /// policy refuses it; [`ServiceError::NotFound`]; [`ServiceError::NotLive`] when the call is not in progress here.
    pub async fn transfer(&self, id: &str, to: &str, summary: &str) -> Result<(), ServiceError> {
        let number =
            E164::parse(to).map_err(|e| ServiceError::InvalidNumber(format!("{to:?}: {e}")))?;
        if let Err(refused) = self.inner.outbound.destinations.check(number.as_str()) {
            tracing::warn!(%number, reason = %refused, "transfer refused by the destination policy");
            return Err(refused.into());
        }
        let call = self.get(id)?;
        let control = CallControl::Transfer {
            target: crate::twilio::dial::TransferTarget { name: None, number },
            summary: summary.to_owned(),
        };
        self.route_to_live(id, call.call_sid.as_deref(), control)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(max_concurrent_calls: u32, pending_streams: usize) -> CallService {
        let store = CallStore::open_in_memory().expect("an in-memory database opens");
        CallService::new(
            store,
            None,
            LiveCalls::default(),
            OutboundSettings {
                public_url: None,
                from_number: None,
                max_call_duration_s: 60,
                ring_timeout_s: 30,
                destinations: DestinationPolicy::new(vec!["+1".into()], Vec::new()),
                daily_outbound_budget: 10,
                max_concurrent_calls,
                answering_machine: MachinePolicy::Ignore,
                amd_tuning: AmdTuning::default(),
                record: false,
                webhooks: Default::default(),
                voice_mcp_servers: Default::default(),
                daily_cost_budget_usd: None,
            },
            Arc::new(move || pending_streams),
        )
    }

    fn new_outbound() -> NewCall {
        NewCall {
            engine: None,
            direction: Direction::OutboundApi,
            from: "+14155550100".into(),
            to: "+14155552671".into(),
            call_sid: None,
            instructions: Some("Say hello.".into()),
            greeting: None,
            voice: None,
            language: None,
            max_duration_s: None,
            metadata: None,
            answering: Default::default(),
            record: false,
            webhook_url: None,
            outcome_schema: None,
            mcp_servers: None,
            mode: Default::default(),
            max_cost_usd: None,
        }
    }

    #[test]
    fn live_pending_and_ringing_calls_all_count_against_the_cap() {
        let service = service(10, 2);
        let (_control, _guard) = service.inner.live.register("CA1");
        service.store().create(&new_outbound()).expect("stored");
        let answered = service.store().create(&new_outbound()).expect("stored");
        service
            .store()
            .update_status(
                &answered.id,
                CallStatus::InProgress,
                time::OffsetDateTime::now_utc(),
            )
            .expect("updated");

        let calls = service.concurrent_calls();

        assert_eq!(calls, 1 + 2 + 1, "live + pending streams + one ringing");
    }

    #[test]
    fn a_call_is_admitted_below_the_cap_and_refused_at_it() {
        let below = service(3, 2);
        let at = service(2, 2);

        let admitted = below.admit_call().map(drop);
        let refused = at.admit_call().map(drop);

        assert!(admitted.is_ok(), "{admitted:?}");
        assert!(
            matches!(refused, Err(ServiceError::TooManyCalls { max: 2 })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_destination_is_neither_stored_nor_placed() {
        let service = service(10, 0);

        let refused = service
            .place_call(PlaceCall {
                to: "+442071838750".into(),
                instructions: "Say hello.".into(),
                ..PlaceCall::default()
            })
            .await;

        let error = refused.expect_err("+44 is not allowed");
        assert_eq!(error.code(), "destination_not_allowed");
        assert!(
            error
                .to_string()
                .contains("CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES"),
            "{error}"
        );
        assert!(service.list_calls(10).expect("listed").is_empty());
    }

    #[tokio::test]
    async fn a_plain_http_webhook_url_or_one_without_a_signing_secret_is_refused_and_nothing_stored()
     {
        let service = service(10, 0);
        let call = |url: &str| PlaceCall {
            to: "+14155552671".into(),
            instructions: "Say hello.".into(),
            webhook_url: Some(url.into()),
            ..PlaceCall::default()
        };

        let plain_http = service
            .place_call(call("http://hooks.example.com/cb"))
            .await
            .expect_err("not https");
        let unsigned = service
            .place_call(call("https://hooks.example.com/cb"))
            .await
            .expect_err("no secret on this server");

        assert_eq!(plain_http.code(), "invalid_request");
        assert!(plain_http.to_string().contains("https://"), "{plain_http}");
        assert_eq!(unsigned.code(), "not_configured");
        assert!(
            unsigned.to_string().contains("CALLBRIDGE_WEBHOOK_SECRET"),
            "{unsigned}"
        );
        assert!(service.list_calls(10).expect("listed").is_empty());
    }
}
