//! The two webhooks of a transfer to a person (see [`crate::relay::transfer`]), both signed by Twilio and checked
//! like every other webhook ([`verify_form`]): a forged or unsigned request is answered 403 and changes nothing, an
//! unknown transfer id 404.
//!
//! - `POST /transfer/{id}/whisper` — the `<Number url>`: Twilio fetches it when the person answers and plays the
//!   `<Say>` it answers to them alone before the two are connected. The running call learns the person answered.
//! - `POST /transfer/{id}/action` — the `<Dial action>`: Twilio posts `DialCallStatus` when the dial ends.
//!   `completed`/`answered`: `<Response><Hangup/></Response>` (the caller's leg ends with the dial). `busy`,
//!   `no-answer`, `failed`, `canceled`: a fresh `<Connect><Stream>` on a new handover token brings the caller back to
//!   the same Realtime session. The answer is stored with the transfer, so a retried action gets it again and the
//!   call is told once.
//!
//! Follows <https://www.twilio.com/docs/voice/twiml/dial>, <https://www.twilio.com/docs/voice/twiml/number> and
//! <https://www.twilio.com/docs/usage/webhooks/webhooks-security>.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::calls::live::CallControl;
use crate::http::state::AppState;
use crate::http::webhook::{
    WebhookError, call_span, param, request_public_base, twiml_response, verify_form,
};
use crate::twilio::dial::{DialStatus, TransferEvent};
use crate::twilio::twiml;
use crate::urls::{stream_base, stream_url, transfer_action_path, transfer_whisper_path};

/// What the caller hears when the transfer failed and the call has already left this server.
const TRANSFER_LOST_APOLOGY: &str =
    "Sorry, nobody could take your call. Please call again later. Goodbye.";

/// What the person hears when the transfer came with no summary.
const DEFAULT_WHISPER: &str = "You have a transferred call from the assistant.";

/// `POST /transfer/{id}/whisper`: `<Response><Say>summary</Say></Response>` for the person; the call is told once
/// that they answered.
///
/// # Errors
/// [`WebhookError::Forbidden`] (403) for a missing or wrong signature; an unknown id is answered 404.
pub async fn whisper(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebhookError> {
    let base = request_public_base(&state, &req)?;
    verify_form(&state, &req, &base, &transfer_whisper_path(&id), &body)?;
    let Some(answer) = state.transfers.whisper(&id, |summary| {
        twiml::say(if summary.is_empty() {
            DEFAULT_WHISPER
        } else {
            summary
        })
    }) else {
        return Ok(HttpResponse::NotFound().body("unknown transfer"));
    };
    if answer.first {
        call_span(&answer.call_sid).in_scope(|| {
            tracing::info!("the transfer's person answered; whispering the summary");
        });
        route_event(&state, &answer.call_sid, TransferEvent::Answered).await;
    }
    Ok(twiml_response(answer.twiml))
}

/// `POST /transfer/{id}/action`: how the dial ended (`DialCallStatus`), answered with `<Hangup/>` when the person
/// was reached, else with a new `<Connect><Stream>` back to the assistant.
///
/// # Errors
/// [`WebhookError::Forbidden`] (403) for a missing or wrong signature; [`WebhookError::BadRequest`] (400) for a
/// missing or unknown `DialCallStatus`; an unknown id is answered 404. Nothing changes on any of them.
pub async fn action(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebhookError> {
    let base = request_public_base(&state, &req)?;
    let params = verify_form(&state, &req, &base, &transfer_action_path(&id), &body)?;
    let status = param(&params, "DialCallStatus")
        .and_then(DialStatus::parse)
        .ok_or_else(|| WebhookError::BadRequest("DialCallStatus missing or unknown".into()))?;
    let answer = state.transfers.action(&id, |leg| {
        if status.connected() {
            twiml::hang_up()
        } else if state.live_calls.is_live(&leg.call_sid) {
            let token = state.tokens.issue_handover(&leg.call_sid);
            let parameters: Vec<(&str, &str)> = leg
                .parameters
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let stream_base = stream_base(state.settings.stream_public_url.as_ref(), &base);
            twiml::connect_stream(&stream_url(&stream_base, &token), &parameters)
        } else {
            twiml::say_and_hang_up(TRANSFER_LOST_APOLOGY)
        }
    });
    let Some(answer) = answer else {
        return Ok(HttpResponse::NotFound().body("unknown transfer"));
    };
    let span = call_span(&answer.call_sid);
    if answer.first {
        span.in_scope(|| tracing::info!(status = status.as_str(), "transfer dial ended"));
        route_event(&state, &answer.call_sid, TransferEvent::Ended(status)).await;
    } else {
        span.in_scope(|| tracing::info!("retried transfer action answered again"));
    }
    // With a fleet, a stream that brings the caller back carries a token that must be in Redis first.
    if let Err(error) = state.tokens.all_published().await {
        span.in_scope(|| tracing::error!(%error, "the caller's return stream token is not shared through Redis"));
    }
    Ok(twiml_response(answer.twiml))
}

/// Hands a transfer event to the call `call_sid` wherever it runs; a failure is logged (the call's own transfer
/// deadline then ends the wait).
async fn route_event(state: &AppState, call_sid: &str, event: TransferEvent) {
    match state
        .live_calls
        .route(call_sid, CallControl::TransferEvent(event))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(%call_sid, "transfer event for a call no instance holds; dropped")
        }
        Err(e) => {
            tracing::warn!(%call_sid, error = %e, "transfer event could not be routed; dropped")
        }
    }
}
