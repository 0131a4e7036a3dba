//! The life of one call's media stream, from the moment its token was accepted to its finished record: waits for the
//! pre-connected Realtime session, builds the conductor, registers the call as live, runs the [`Bridge`], and stores
//! and logs the record. The HTTP route only checks the upgrade and hands the sockets over ([`run_call`]).
//!
//! [`StreamPlan`] and [`PendingCall`] are what the webhook decided for the stream (the call's direction, numbers,
//! greeting, `session.update`), kept under the stream token until Twilio opens the stream.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::calls::live::LiveCalls;
use crate::calls::recorder::Persistence;
use crate::calls::service::CallService;
use tracing::Instrument as _;

use crate::calls::{CallFailure, CallRecord, Direction, EndReason};
use crate::config::Settings;
use crate::realtime::client::Preconnect;
use crate::relay::bridge::{Bridge, close_twilio, log_record};
use crate::relay::conductor::{Conductor, ConductorConfig};
use crate::relay::goodbye::GoodbyeMatcher;
use crate::relay::handover::{HandoverDeps, StreamAttachments};
use crate::relay::sessions::{RealtimeSessions, SessionOpener};
use crate::relay::twilio_socket::{TwilioReader, TwilioWriter};
use crate::security::tokens::StreamTokens;
use crate::twilio::rest::TwilioRest;

/// Everything a call's media stream needs, decided when its webhook is answered.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// The call's id in the store, when stored.
    pub call_id: Option<String>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Caller number.
    pub from: String,
    /// Called number.
    pub to: String,
    /// Whether the assistant speaks first.
    pub assistant_speaks_first: bool,
    /// Its first words.
    pub greeting: String,
    /// The call's maximum duration.
    pub max_call_duration: Duration,
    /// The first client event of this call's session: Realtime's `session.update`, or GPT-Live's `session.start`.
    pub session_update: Arc<str>,
    /// The OpenAI voice API the call uses.
    pub engine: crate::config::Engine,
    /// Answering machine detection: the model is held back until the verdict (outbound calls that asked for it).
    pub machine: Option<crate::relay::machine::MachinePlan>,
    /// The public base URL the webhook was addressed to (`https://host`): the call's next streams connect there.
    pub public_base: String,
    /// The schema `end_call`'s outcome must match, for a call placed with an `outcome_schema`.
    pub outcome_schema: Option<Arc<crate::calls::outcome::OutcomeSchema>>,
    /// Who decides what the voice says (`relay`: the agent, through `say`).
    pub mode: crate::calls::say::CallMode,
    /// The call's own estimated cost cap, USD (`place_call`'s `max_cost_usd`); the server's applies when lower.
    pub max_cost_usd: Option<f64>,
}

/// Shares one `session.update` text between the calls that send the same one (every inbound call of a server, as a
/// rule), instead of keeping a copy per call for the sessions it may reopen: the last text seen is kept, and a new
/// call whose text equals it gets the same `Arc`. Cheap to clone; clones share the last text.
#[derive(Debug, Clone, Default)]
pub struct SessionUpdates(Arc<Mutex<Option<Arc<str>>>>);

impl SessionUpdates {
    /// `text` as a shared string: the one kept when it is equal, else `text` itself, kept from now on.
    pub fn share(&self, text: String) -> Arc<str> {
        // A compare and a swap under the lock: it cannot be left inconsistent by a panic.
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(kept) = last.as_ref()
            && **kept == *text
        {
            return Arc::clone(kept);
        }
        let shared: Arc<str> = text.into();
        *last = Some(Arc::clone(&shared));
        shared
    }
}

/// A call between its webhook and its media stream: what its stream needs, and its Realtime session being opened.
#[derive(Debug)]
pub struct PendingCall {
    /// Decided when the webhook was answered.
    pub plan: StreamPlan,
    /// The session opening in the background.
    pub preconnect: Preconnect,
    /// The task that closes the call if its stream never opens (see `begin_stream_after`); aborted when the stream
    /// opens here, so a call does not keep a sleeping task for the token's lifetime. `None` for a plan adopted from
    /// another instance.
    pub expiry: Option<tokio::task::AbortHandle>,
}

/// A pending call shared with the token cache; taken out once by the media-stream upgrade.
pub type PendingSlot = Arc<Mutex<Option<PendingCall>>>;

/// What a running call uses from the server: shared handles, cloned per call.
#[derive(Clone)]
pub struct CallDeps {
    /// Effective settings (timeouts of the `calls` and `security` sections).
    pub settings: Arc<Settings>,
    /// The call records and their writer.
    pub calls: CallService,
    /// Live calls (for `hang_up`/`instruct_call`).
    pub live_calls: LiveCalls,
    /// REST client for the hang-up, when credentials are configured.
    pub rest: Option<TwilioRest>,
    /// Goodbye phrases.
    pub goodbye: GoodbyeMatcher,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Issues the handover tokens of a call's next streams.
    pub tokens: StreamTokens,
    /// Where later Realtime sessions of a call are opened (a rollover, a reopening).
    pub realtime_endpoint: crate::realtime::client::RealtimeEndpoint,
    /// Running calls that can take a new media stream (a handover).
    pub attachments: StreamAttachments,
    /// Transfers under way, read by the whisper and `<Dial action>` webhooks.
    pub transfers: crate::relay::transfer::Transfers,
    /// The fleet's Redis, when there is one: the call is registered there as held by this instance while it runs.
    pub fleet: Option<crate::fleet::Fleet>,
}

/// The cost meter of a call of `direction` with its own cap `max_cost_usd`: the configured model's and transcription
/// model's prices, and the lower of the call's cap and `CALLBRIDGE_MAX_CALL_COST_USD`.
fn cost_meter(
    settings: &Settings,
    &(direction, max_cost_usd, engine): &(Direction, Option<f64>, crate::config::Engine),
) -> crate::relay::conductor::CostMeter {
    let realtime = &settings.realtime;
    // A GPT-Live call is priced by its Live model (per active minute); its transcripts come with it.
    let (model, transcription) = match engine {
        crate::config::Engine::Live => (&settings.live.model, None),
        crate::config::Engine::Realtime => {
            (&realtime.model, realtime.transcription_model.as_deref())
        }
    };
    let cap_usd = match (max_cost_usd, settings.cost.max_call_cost_usd) {
        (Some(own), Some(server)) => Some(own.min(server)),
        (own, server) => own.or(server),
    };
    crate::relay::conductor::CostMeter {
        rates: settings
            .cost
            .prices
            .rates(model, transcription, direction == Direction::Inbound),
        cap_usd,
    }
}

/// Runs the call `call_sid` on its accepted media stream to its end: waits for the pre-connected Realtime session
/// (a failure ends the call with close code 1011 and `error:` + OpenAI's refusal code, e.g. `error:invalid_api_key`,
/// or `error:openai_unavailable` when OpenAI could not be reached or gave no code), then bridges the two until either
/// side ends, and stores and logs the record.
///
/// Not an `async fn`: an `async fn` keeps its arguments in its future for good, beside the locals they are moved
/// into, and the call's task holds this future for the whole call. Here they travel in one box, freed once unpacked.
pub fn run_call(
    deps: CallDeps,
    twilio: TwilioWriter,
    frames: TwilioReader,
    call_sid: String,
    pending: PendingCall,
) -> impl std::future::Future<Output = ()> {
    let start = Box::new((deps, twilio, frames, call_sid, pending));
    async move {
        let (deps, twilio, frames, call_sid, pending) = {
            let start = start;
            *start
        };
        let PendingCall {
            plan,
            preconnect,
            expiry,
        } = pending;
        drop(expiry);
        let opened = preconnect.ready().await;
        // Everything else is done in plain functions that take their inputs by value: what an `async` block borrows
        // stays in its future even once it has been moved on.
        let (bridge, running) = match opened {
            Ok(link) => bridge_for(deps, twilio, frames, call_sid, plan, link),
            Err(e) => return session_not_opened(deps, twilio, call_sid, plan, &e),
        };
        // The bridge stores and logs the finished record; the call is unregistered once it has.
        let record = bridge.run().await;
        running.ended(&record);
    }
}

/// Ends the call whose pre-connected Realtime session failed to open, before it was bridged: close code 1011 to
/// Twilio, and a record ended with `error:` + OpenAI's refusal code (or `error:openai_unavailable`), stored and logged.
fn session_not_opened(
    deps: CallDeps,
    twilio: TwilioWriter,
    call_sid: String,
    plan: StreamPlan,
    e: &crate::realtime::client::RealtimeError,
) {
    tracing::error!(error = %e, "cannot open the OpenAI Realtime session; ending the call");
    let failure = match e.end_reason() {
        "openai_unavailable" => CallFailure::OpenAiUnavailable,
        code => CallFailure::OpenAiFatal(code.to_owned()),
    };
    let reason = EndReason::Error(failure);
    close_twilio(twilio, &reason);
    let mut record = CallRecord::new(call_sid.clone(), plan.direction, plan.from, plan.to);
    record.finish(reason, 0);
    log_record(&record);
    if let Some(call_id) = plan.call_id.clone() {
        Persistence {
            calls: deps.calls.clone(),
            call_id,
        }
        .finish(&record);
    }
    crate::metrics::call_ended(&record);
    release_in_fleet(
        deps.fleet.as_ref(),
        &call_sid,
        plan.call_id.as_deref(),
        None,
    );
}

/// What a bridged call holds until its record is stored: its live registrations and what the fleet needs to hear of
/// its end.
struct RunningCall {
    /// Keeps the call in `LiveCalls` (hang-up, instructions, verdicts reach it).
    _live: crate::calls::live::LiveCallGuard,
    /// Keeps the call able to take a new stream.
    _attachments: crate::relay::handover::AttachmentGuard,
    /// Counts the call in the live-calls gauge.
    live_metric: crate::metrics::LiveCall,
    fleet: Option<crate::fleet::Fleet>,
    call_sid: String,
    call_id: Option<String>,
}

impl RunningCall {
    /// The call's record is stored: counted in the metrics and released in the fleet; then the call is unregistered.
    fn ended(self, record: &CallRecord) {
        crate::metrics::call_ended(record);
        release_in_fleet(
            self.fleet.as_ref(),
            &self.call_sid,
            self.call_id.as_deref(),
            record.cost.as_ref().map(|c| c.total_usd),
        );
        drop(self.live_metric);
    }
}

/// The bridge of the call `call_sid` on its open Realtime `link`, registered as live (and as able to take a new
/// stream) until the returned guards are dropped.
fn bridge_for(
    deps: CallDeps,
    twilio: TwilioWriter,
    frames: TwilioReader,
    call_sid: String,
    plan: StreamPlan,
    mut link: crate::realtime::client::RealtimeLink,
) -> (Box<Bridge>, RunningCall) {
    // The session was opened on the main runtime; from now on this task is its only user.
    link.adopt_current_runtime();
    let live_metric = crate::metrics::call_live();
    let plan_cost = (plan.direction, plan.max_cost_usd, plan.engine);
    let engine = plan.engine;
    let persistence = plan.call_id.clone().map(|call_id| Persistence {
        calls: deps.calls.clone(),
        call_id,
    });
    let record = CallRecord::new(
        call_sid.clone(),
        plan.direction,
        plan.from.clone(),
        plan.to.clone(),
    );
    let (control, guard) = deps.live_calls.register(&call_sid);
    let fleet_call_sid = call_sid.clone();
    if let (Some(fleet), Some(call_id)) = (deps.fleet.clone(), plan.call_id.clone()) {
        // In the background: the call does not wait on Redis (the command has its own deadline).
        let call_sid = call_sid.clone();
        tokio::spawn(
            async move {
                if let Err(error) = fleet.register_call(&call_sid, &call_id).await {
                    tracing::warn!(%error, "call not registered in the fleet: other instances cannot route to it");
                }
            }
            .in_current_span(),
        );
    }
    let (new_streams, attachment_guard) = deps.attachments.register(&call_sid);
    let handover = HandoverDeps {
        tokens: deps.tokens.clone(),
        stream_base: crate::urls::stream_base(
            deps.settings.stream_public_url.as_ref(),
            &plan.public_base,
        ),
        public_base: plan.public_base.clone(),
        parameters: vec![
            ("caller".to_owned(), plan.from.clone()),
            ("called".to_owned(), plan.to.clone()),
        ],
        transfers: deps.transfers.clone(),
        // The caller ID a transferred person sees: the call's own Twilio number.
        twilio_number: match plan.direction {
            crate::calls::Direction::Inbound => plan.to.clone(),
            crate::calls::Direction::OutboundApi => plan.from.clone(),
        },
    };
    // A rollover or a reopened session starts with the same `session.update` as the first session.
    let plan_session_update = plan.session_update;
    let mut conductor = Conductor::new(
        ConductorConfig {
            call_sid,
            assistant_speaks_first: plan.assistant_speaks_first,
            greeting: plan.greeting,
            max_call_duration: plan.max_call_duration,
            farewell_grace: deps.settings.calls.farewell_grace,
            goodbye: deps.goodbye.clone(),
            stream_idle_timeout: deps.settings.security.stream_idle_timeout,
            machine: plan.machine,
        },
        record,
        Instant::now(),
    );
    conductor.set_transfer_targets(deps.settings.calls.transfer_targets.clone());
    conductor.set_outcome_schema(plan.outcome_schema);
    if plan.mode == crate::calls::say::CallMode::Relay {
        conductor.set_relay_mode();
    }
    conductor.set_cost_meter(cost_meter(&deps.settings, &plan_cost));
    if engine == crate::config::Engine::Live {
        // GPT-Live has no rollover here (the reopen path speaks the Realtime API): a Live session that closes ends
        // the call, and no second session is opened before a limit.
        conductor.set_session_lifetime(crate::config::SessionLifetime::WITHOUT_ROLLOVER);
    } else {
        conductor.set_session_lifetime(deps.settings.realtime.sessions);
    }
    let bridge = Box::new(Bridge {
        twilio,
        twilio_frames: frames,
        sessions: RealtimeSessions::new(
            link,
            SessionOpener {
                endpoint: deps.realtime_endpoint.clone(),
                session_update: plan_session_update,
            },
        ),
        conductor,
        rest: deps.rest.clone(),
        control,
        shutdown: deps.shutdown.clone(),
        persistence,
        stall_timeout: deps.settings.calls.peer_stall_timeout,
        handover,
        new_streams,
        live: (engine == crate::config::Engine::Live)
            .then(crate::live::translate::LiveTranslator::new),
    });
    let running = RunningCall {
        _live: guard,
        _attachments: attachment_guard,
        live_metric,
        fleet: deps.fleet,
        call_sid: fleet_call_sid,
        call_id: plan.call_id,
    };
    (bridge, running)
}

/// Tells the fleet (when there is one) that the call has ended here: its registry entry and slot are freed and its
/// estimated cost is added to the UTC day's fleet-wide spend, in the background (each command has its own deadline;
/// a failure is logged and the entries expire by themselves).
fn release_in_fleet(
    fleet: Option<&crate::fleet::Fleet>,
    call_sid: &str,
    call_id: Option<&str>,
    cost_usd: Option<f64>,
) {
    let Some(fleet) = fleet.cloned() else {
        return;
    };
    let call_sid = call_sid.to_owned();
    let call_id = call_id.unwrap_or_default().to_owned();
    tokio::spawn(
        async move {
            if let Err(error) = fleet.release_call(&call_sid, &call_id).await {
                tracing::warn!(%error, "call not released in the fleet; its entries expire by themselves");
            }
            if let Some(cost_usd) = cost_usd {
                let today = crate::fleet::admission::utc_day(time::OffsetDateTime::now_utc());
                if let Err(error) = fleet.add_cost(&today, cost_usd).await {
                    tracing::warn!(%error, cost_usd, "call's cost not added to the fleet's daily spend");
                }
            }
        }
        .in_current_span(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_with_the_same_session_update_share_one_copy_and_a_different_one_gets_its_own() {
        let updates = SessionUpdates::default();
        let first = updates.share(r#"{"type":"session.update","n":1}"#.to_owned());
        let same = updates.share(r#"{"type":"session.update","n":1}"#.to_owned());
        let other = updates.share(r#"{"type":"session.update","n":2}"#.to_owned());
        let other_again = updates.share(r#"{"type":"session.update","n":2}"#.to_owned());

        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(&*other, r#"{"type":"session.update","n":2}"#);
        assert!(!Arc::ptr_eq(&first, &other));
        assert!(Arc::ptr_eq(&other, &other_again));
        assert_eq!(
            &*first, r#"{"type":"session.update","n":1}"#,
            "a shared text is never changed"
        );
    }
}
