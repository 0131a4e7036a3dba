//! Twilio's webhooks for outbound calls: `POST /outbound-call/{call_id}` (the callee answered: TwiML with a fresh
//! stream token, the Realtime session pre-connected with this call's instructions) and `POST /call-status` (status
//! callbacks: `initiated`, `ringing`, `in-progress`, `completed`, `busy`, `no-answer`, `failed`, `canceled`).
//! Both are signed like every Twilio webhook (403 otherwise).
//! Follows <https://www.twilio.com/docs/voice/api/call-resource#statuscallback>.

use std::str::FromStr as _;

use actix_web::{HttpRequest, HttpResponse, web};
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::calls::model::{CallStatus, CallView};
use crate::calls::outcome::OutcomeSchema;
use crate::calls::say::CallMode;
use crate::calls::service::STORE_DEADLINE;
use crate::calls::writer::Write;
use crate::http::recording::recording_prelude;
use crate::http::state::AppState;
use crate::http::webhook::first_session_event;
use crate::http::webhook::{
    SHUTTING_DOWN_APOLOGY, WebhookError, begin_stream_after, call_span, param, request_public_base,
    required_call_sid, stream_token_published, twiml_response, verify_form,
};
use crate::realtime::session::{
    end_call_tool, end_call_tool_with_schema, relay_instructions, send_dtmf_tool,
    turn_detection_update,
};
use crate::relay::call::StreamPlan;
use crate::relay::machine::MachinePlan;
use crate::twilio::amd::MachinePolicy;
use crate::twilio::twiml;
use crate::urls::{CALL_STATUS_PATH, outbound_call_path};

/// The instructions of an outbound call's session: the system message, then this call's task, told that the model is
/// the one calling and how to end the call.
pub fn outbound_instructions(system_message: &str, call: &CallView) -> String {
    let mut text = format!(
        "{system_message}\n\n# This call\nYou placed this phone call to {to}. The person who answers did not call \
         you: introduce yourself briefly and say why you are calling. Your task on this call:\n{task}\n",
        to = call.to,
        task = call
            .instructions
            .as_deref()
            .unwrap_or("(no instructions were given)"),
    );
    if let Some(language) = &call.language {
        text.push_str(&format!("\nSpeak {language}.\n"));
    }
    text.push_str(
        "\nIf an automated phone menu answers, listen to the options and press the right key with the send_dtmf \
         tool, then wait silently for the next prompt or a person.",
    );
    text.push_str(
        "\nWhen the task is done, or clearly cannot be done, say goodbye and call the end_call tool with an outcome: \
         one or two sentences of what was achieved.",
    );
    if call.outcome_schema.is_some() {
        text.push_str(
            " The outcome is structured: fill in end_call's outcome exactly as its schema says, from what was \
             actually agreed on the call.",
        );
    }
    text
}

/// Handles `POST /outbound-call/{call_id}`.
///
/// # Errors
/// 403 on a bad signature; 404 for an unknown call id; 400 for a missing CallSid.
pub async fn outbound_call(
    state: web::Data<AppState>,
    req: HttpRequest,
    call_id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebhookError> {
    let _timer = crate::metrics::WebhookTimer::start("outbound-call");
    let call_id = call_id.into_inner();
    let base = request_public_base(&state, &req)?;
    let params = verify_form(&state, &req, &base, &outbound_call_path(&call_id), &body)?;
    let Some(call) = state.calls.store().get(&call_id).ok().flatten() else {
        tracing::warn!(%call_id, "outbound-call webhook for an unknown call");
        return Ok(HttpResponse::NotFound().body("unknown call"));
    };
    let call_sid = required_call_sid(&params)?;
    let span = call_span(&call_sid);
    let _entered = span.enter();
    if call
        .call_sid
        .as_deref()
        .is_some_and(|known| known != call_sid)
    {
        tracing::warn!(%call_id, "outbound-call webhook with another call's CallSid refused");
        return Ok(HttpResponse::NotFound().body("unknown call"));
    }
    let writer = state.calls.writer();
    if call.call_sid.is_none() {
        writer.submit(Write::SetCallSid {
            id: call_id.clone(),
            call_sid: call_sid.clone(),
        });
    }
    if state.shutdown.is_draining() {
        tracing::info!("answered outbound call turned away: the server is shutting down");
        return Ok(twiml_response(twiml::say_and_hang_up(
            SHUTTING_DOWN_APOLOGY,
        )));
    }
    if call.status.is_terminal() {
        return Ok(twiml_response(twiml::say_and_hang_up("")));
    }
    // Waited for below (without holding a thread) so that readers see the call answered; answered anyway after
    // the deadline: the write stays queued.
    let (done, answered) = tokio::sync::oneshot::channel();
    writer.submit_then(
        Write::Status {
            id: call_id.clone(),
            status: CallStatus::InProgress,
            at: OffsetDateTime::now_utc(),
        },
        Box::new(move |result| {
            let _ = done.send(result.is_ok());
        }),
    );
    tracing::info!(%call_id, to = %call.to, "outbound call answered");

    let realtime = &state.settings.realtime;
    let relay = call.mode == CallMode::Relay;
    let instructions = if relay {
        relay_instructions(call.instructions.as_deref(), call.language.as_deref())
    } else {
        outbound_instructions(&realtime.system_message, &call)
    };
    let mut session = state.settings.session_config(instructions);
    // A stored schema passed its check when the call was placed; one that no longer compiles (a crate upgrade)
    // leaves the outcome free text rather than failing the call.
    let outcome_schema = call.outcome_schema.clone().and_then(|schema| {
        OutcomeSchema::parse(schema)
            .inspect_err(
                |e| tracing::warn!(error = %e, "stored outcome schema refused; free-text outcome"),
            )
            .ok()
            .map(std::sync::Arc::new)
    });
    if relay {
        // The agent speaks through `say`: the voice has no tools, and never answers on its own (below).
        session.tools = Vec::new();
    } else {
        let end_call = outcome_schema.as_ref().map_or_else(
            || end_call_tool(true),
            |schema| end_call_tool_with_schema(schema.schema()),
        );
        session.tools = vec![end_call, send_dtmf_tool()];
        session.tools.extend(state.settings.transfer_tool());
        if let Some(labels) = &call.mcp_servers {
            session.mcp_servers = state
                .settings
                .calls
                .voice_mcp_servers
                .tools_for(Some(labels));
        }
    }
    if let Some(voice) = &call.voice {
        session.voice = voice.clone();
    }
    // With answering machine detection the model is held back until the verdict: automatic responses off.
    let machine = call
        .answering
        .answering_machine
        .filter(|policy| *policy != MachinePolicy::Ignore)
        .map(|policy| MachinePlan {
            policy,
            voicemail_message: call.answering.voicemail_message.clone(),
            verdict_wait: state.settings.amd.verdict_wait,
            // A relay-mode call stays without automatic responses after the verdict.
            release_update: if relay {
                session.to_json_holding()
            } else {
                turn_detection_update(Some(&session.turn_detection))
            },
        });
    // A relay-mode call never creates responses on its own: server VAD with `create_response: false`.
    let engine = call.engine.unwrap_or(state.settings.engine);
    let session_update = first_session_event(
        &state.settings,
        engine,
        &session,
        call.voice.as_deref(),
        machine.is_some() || relay,
    );
    let max_call_duration = call
        .max_duration_s
        .map(std::time::Duration::from_secs)
        .unwrap_or(state.settings.calls.max_call_duration)
        .min(state.settings.calls.max_call_duration);
    // Recorded since it was answered (`Record=true` on create): the callee hears the consent line first.
    let prelude = recording_prelude(&state.settings.recording, call.record, None);
    let twiml = begin_stream_after(
        &state,
        &base,
        &call_sid,
        span.clone(),
        StreamPlan {
            call_id: Some(call_id),
            direction: call.direction,
            from: call.from.clone(),
            to: call.to.clone(),
            // With a greeting the model speaks first; without one it waits for the callee's "hello". In relay
            // mode the agent's first `say` is the greeting.
            assistant_speaks_first: call.greeting.is_some() && !relay,
            greeting: call.greeting.clone().unwrap_or_default(),
            max_call_duration,
            session_update: state.session_updates.share(session_update),
            engine,
            machine,
            public_base: base.clone(),
            outcome_schema,
            mode: call.mode,
            max_cost_usd: call.max_cost_usd,
        },
        &prelude,
    );
    drop(_entered);
    stream_token_published(&state, &call_sid)
        .instrument(span.clone())
        .await;
    if tokio::time::timeout(STORE_DEADLINE, answered)
        .await
        .is_err()
    {
        span.in_scope(|| {
            tracing::warn!("answered status queued: the call records database is locked")
        });
    }
    Ok(twiml_response(twiml))
}

/// Handles `POST /call-status`: moves the call through its statuses, through the store writer (the answer waits for
/// the write at most [`STORE_DEADLINE`], without holding a thread; the write stays queued after that). A retried delivery (same `I-Twilio-Idempotency-Token`) changes nothing; an unknown
/// CallSid is acknowledged and ignored.
///
/// # Errors
/// 403 on a bad signature; 400 for a missing CallSid or an unknown CallStatus.
pub async fn call_status(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, WebhookError> {
    let base = request_public_base(&state, &req)?;
    let params = verify_form(&state, &req, &base, CALL_STATUS_PATH, &body)?;
    let call_sid = param(&params, "CallSid")
        .ok_or_else(|| WebhookError::BadRequest("CallSid missing".into()))?
        .to_owned();
    let status = param(&params, "CallStatus")
        .ok_or_else(|| WebhookError::BadRequest("CallStatus missing".into()))
        .and_then(|s| {
            CallStatus::from_str(s).map_err(|e| WebhookError::BadRequest(e.to_string()))
        })?;
    let span = call_span(&call_sid);
    let _entered = span.enter();
    // Queued for the store writer, which also drops a retried delivery (same idempotency token) and a CallSid it
    // does not know: answering never waits on the database.
    let idempotency_token = req
        .headers()
        .get("I-Twilio-Idempotency-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    drop(_entered);
    let written = state
        .calls
        .writer()
        .write(
            Write::StatusCallback {
                call_sid: call_sid.clone(),
                status,
                idempotency_token,
                // The service's clock: a retry's due time counts from here.
                at: state.calls.now(),
            },
            STORE_DEADLINE,
        )
        .await;
    if let Err(None) = written {
        // Answered anyway: the write stays queued and lands once the lock goes.
        span.in_scope(|| {
            tracing::warn!(%status, "status callback queued: the call records database is locked");
        });
    }
    if status.is_terminal() && state.calls.fleet().is_some() {
        // The call is over: its fleet slot (keyed by its id when outbound, its CallSid when inbound) is free.
        let call_id = state
            .calls
            .store()
            .get_by_call_sid(&call_sid)
            .ok()
            .flatten()
            .map(|c| c.id);
        let mut members = vec![call_sid.as_str()];
        members.extend(call_id.as_deref());
        state
            .calls
            .release_fleet_slots(&members)
            .instrument(span)
            .await;
    }
    Ok(HttpResponse::NoContent().finish())
}
