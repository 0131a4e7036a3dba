//! `POST /incoming-call`: Twilio's voice webhook for a call to the number.
//!
//! Checks `X-Twilio-Signature` against the public URL (403 on mismatch; there is no bypass), issues a single-use
//! stream token bound to the CallSid, starts opening the Realtime session at once (pre-connect), and answers TwiML
//! `<Connect><Stream url="wss://PUBLIC/media-stream/TOKEN">` with `<Parameter>`s. While the server is shutting down a
//! (correctly signed) call hears a short apology and is hung up.
//!
//! After the signature check, a caller not on `CALLBRIDGE_ALLOWED_CALLERS` (when it is set) is refused with
//! `<Reject reason="rejected"/>`, and a call over `CALLBRIDGE_MAX_CONCURRENT_CALLS` with `<Reject reason="busy"/>`
//! (see <https://www.twilio.com/docs/voice/twiml/reject>): neither gets a stream token, a Realtime session or a record.
//! Follows <https://www.twilio.com/docs/usage/webhooks/webhooks-security> and
//! <https://www.twilio.com/docs/voice/twiml/stream>.

use actix_web::{HttpRequest, HttpResponse, web};
use tracing::Instrument as _;

use crate::calls::Direction;
use crate::calls::model::NewCall;
use crate::calls::service::STORE_DEADLINE;
use crate::calls::store::new_call_id;
use crate::calls::writer::Write;
use crate::http::recording::recording_prelude;
use crate::http::state::AppState;
use crate::http::webhook::first_session_event;
use crate::http::webhook::{
    SHUTTING_DOWN_APOLOGY, WebhookError, begin_stream_after, call_span, connect_twiml_after, param,
    request_public_base, required_call_sid, stream_token_published, twiml_response, verify_form,
};
use crate::relay::call::StreamPlan;
use crate::security::policy::CallerAllowlist;
use crate::twilio::twiml;
use crate::urls::{INCOMING_CALL_PATH, recording_status_path};

/// Handles `POST /incoming-call`: TwiML `<Connect><Stream>`, or `<Reject reason="rejected"/>` for a caller not on the
/// allowlist, `<Reject reason="busy"/>` over the concurrency cap, `<Say>` + `<Hangup/>` while shutting down.
///
/// # Errors
/// 403 on a bad signature, 400 without a valid `CallSid` or when the public URL cannot be told.
pub async fn incoming_call(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, WebhookError> {
    let _timer = crate::metrics::WebhookTimer::start("incoming-call");
    let base = request_public_base(&state, &req)?;
    let params = verify_form(&state, &req, &base, INCOMING_CALL_PATH, &body)?;
    let call_sid = required_call_sid(&params)?;
    let span = call_span(&call_sid);
    let _entered = span.enter();
    let from = param(&params, "From").unwrap_or("").to_owned();
    let to = param(&params, "To").unwrap_or("").to_owned();
    if !CallerAllowlist::from_settings(&state.settings.security).allows(&from) {
        tracing::info!(%from, %to, "incoming call rejected: the caller is not on CALLBRIDGE_ALLOWED_CALLERS");
        return Ok(twiml_response(twiml::reject(twiml::RejectReason::Rejected)));
    }
    if state.shutdown.is_draining() {
        tracing::info!("incoming call turned away: the server is shutting down");
        return Ok(twiml_response(twiml::say_and_hang_up(
            SHUTTING_DOWN_APOLOGY,
        )));
    }
    if state.calls.fleet().is_some() {
        drop(_entered);
        let refused = admit_in_fleet(&state, &call_sid)
            .instrument(span.clone())
            .await;
        if refused {
            return Ok(twiml_response(twiml::reject(twiml::RejectReason::Busy)));
        }
    }
    let _entered = span.enter();
    // Held until the call's stream token is pending, so it counts before another call is admitted, and so that
    // two deliveries of one webhook cannot both start a stream.
    let admission = state.calls.lock_admission();
    if let Some(token) = state.calls.awaited_stream(&call_sid)
        && state.pending.contains_key(&token)
    {
        // Twilio retries a webhook it got no answer to: the same stream again, no second record or session.
        tracing::info!(
            "incoming-call webhook delivered again; answered with the stream already pending"
        );
        drop(admission);
        let (record, callback) = match &state.calls.store().get_by_call_sid(&call_sid) {
            Ok(Some(call)) => (
                call.record,
                Some(format!("{base}{}", recording_status_path(&call.id))),
            ),
            _ => (false, None),
        };
        let prelude = recording_prelude(&state.settings.recording, record, callback.as_deref());
        return Ok(twiml_response(connect_twiml_after(
            &prelude, &base, &token, &from, &to,
        )));
    }
    let known = match state.calls.store().get_by_call_sid(&call_sid) {
        Ok(known) => known,
        Err(e) => {
            tracing::error!(error = %e, "cannot look the call up by CallSid");
            None
        }
    };
    if let Some(call) = known.as_ref().filter(|c| c.status.is_terminal()) {
        tracing::warn!(call_id = %call.id, status = %call.status, "incoming-call webhook for a call that has ended; hung up");
        return Ok(twiml_response(twiml::say_and_hang_up("")));
    }
    // With a fleet the cap was counted in Redis above.
    if known.is_none() && state.calls.fleet().is_none() && state.calls.check_capacity().is_err() {
        tracing::info!(%from, %to, "incoming call rejected busy: the concurrency cap is reached");
        return Ok(twiml_response(twiml::reject(twiml::RejectReason::Busy)));
    }
    if known.is_none() && state.calls.check_daily_cost_budget().is_err() {
        tracing::info!(%from, %to, "incoming call rejected busy: the daily cost budget is spent");
        return Ok(twiml_response(twiml::reject(twiml::RejectReason::Busy)));
    }
    let mut stored = None;
    let mut record = state.settings.recording.inbound;
    let call_id = match known {
        // The same call again after its stream opened or its token expired: one record per CallSid.
        Some(call) => {
            tracing::info!(call_id = %call.id, "incoming-call webhook for a call already stored; same record");
            record = call.record;
            call.id
        }
        None => {
            tracing::info!(%from, %to, "incoming call");
            let id = new_call_id();
            let (done, written) = tokio::sync::oneshot::channel();
            stored = Some(written);
            state.calls.writer().submit_then(
                Write::Create {
                    id: id.clone(),
                    call: Box::new(NewCall {
                        direction: Direction::Inbound,
                        from: from.clone(),
                        to: to.clone(),
                        call_sid: Some(call_sid.clone()),
                        instructions: None,
                        greeting: None,
                        voice: None,
                        language: None,
                        max_duration_s: None,
                        metadata: None,
                        answering: Default::default(),
                        record,
                        webhook_url: state.calls.default_webhook_url(),
                        outcome_schema: None,
                        mcp_servers: None,
                        mode: Default::default(),
                        max_cost_usd: None,
                        engine: Some(state.settings.engine),
                    }),
                    answered: true,
                },
                Box::new(move |result| {
                    let _ = done.send(result.is_ok());
                }),
            );
            id
        }
    };
    let realtime = &state.settings.realtime;
    let session = state
        .settings
        .session_config(realtime.system_message.clone());
    let recording_callback = format!("{base}{}", recording_status_path(&call_id));
    let prelude = recording_prelude(
        &state.settings.recording,
        record,
        Some(recording_callback.as_str()),
    );
    let twiml = begin_stream_after(
        &state,
        &base,
        &call_sid,
        span.clone(),
        StreamPlan {
            call_id: Some(call_id),
            direction: Direction::Inbound,
            from,
            to,
            assistant_speaks_first: realtime.assistant_speaks_first,
            greeting: realtime.greeting.clone(),
            max_call_duration: state.settings.calls.max_call_duration,
            session_update: state.session_updates.share(first_session_event(
                &state.settings,
                state.settings.engine,
                &session,
                None,
                false,
            )),
            engine: state.settings.engine,
            machine: None,
            mode: Default::default(),
            public_base: base.clone(),
            outcome_schema: None,
            max_cost_usd: None,
        },
        &prelude,
    );
    drop(admission);
    drop(_entered);
    stream_token_published(&state, &call_sid)
        .instrument(span.clone())
        .await;
    if let Some(written) = stored
        && tokio::time::timeout(STORE_DEADLINE, written).await.is_err()
    {
        // Answered anyway: the record stays queued and lands once the lock goes.
        span.in_scope(|| {
            tracing::warn!("inbound call record queued: the call records database is locked")
        });
    }
    Ok(twiml_response(twiml))
}

/// With a fleet: takes the call's slot under the fleet-wide cap (keyed by the CallSid, so a replayed webhook finds
/// its slot again) and checks the fleet's cost budget, for a call not stored yet. Returns true when the call is to be
/// rejected busy (logged); a call already stored (a replay) is never refused here.
async fn admit_in_fleet(state: &AppState, call_sid: &str) -> bool {
    match state.calls.store().get_by_call_sid(call_sid) {
        Ok(Some(_)) => return false,
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "cannot look the call up by CallSid"),
    }
    if let Err(refused) = state.calls.admit_in_fleet(call_sid, false).await {
        tracing::info!(reason = %refused, "incoming call rejected busy by the fleet's admission");
        return true;
    }
    if let Err(refused) = state.calls.check_fleet_cost_budget().await {
        tracing::info!(reason = %refused, "incoming call rejected busy: the fleet's daily cost budget is spent");
        state.calls.release_fleet_slots(&[call_sid]).await;
        return true;
    }
    false
}
