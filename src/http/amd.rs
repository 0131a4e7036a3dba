//! `POST /amd-status/{call_id}`: Twilio's asynchronous answering machine detection callback
//! (`AsyncAmdStatusCallback`), form-encoded with `CallSid`, `AccountSid`, `AnsweredBy` and
//! `MachineDetectionDuration` (ms), signed like every Twilio webhook.
//!
//! The verdict is stored on the call (the first one stays) and handed to the running call through the live-call
//! registry, which keeps it if the media stream has not started yet. A forged signature is refused with 403 and
//! changes nothing; an unknown call id, or a CallSid that is not the call's, gets 404. A retried delivery is
//! acknowledged and changes nothing: a call whose verdict is stored ignores another, the store keeps the first
//! verdict, the registry keeps the first one waiting for a stream, and a running call acts on one verdict only.
//! Follows <https://www.twilio.com/docs/voice/answering-machine-detection>.

use std::str::FromStr as _;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::calls::live::{CallControl, VerdictDelivery};
use crate::calls::writer::Write;
use crate::http::state::AppState;
use crate::http::webhook::{
    WebhookError, call_span, param, request_public_base, required_call_sid, verify_form,
};
use crate::twilio::amd::AnsweredBy;
use crate::urls::amd_status_path;

/// Handles `POST /amd-status/{call_id}`; answers 204 once the verdict is queued for the store and delivered.
///
/// # Errors
/// 403 on a bad signature; 404 (as a response) for an unknown call id or another call's CallSid; 400 for a missing
/// or malformed CallSid or an `AnsweredBy` that is not one of Twilio's values.
pub async fn amd_status(
    state: web::Data<AppState>,
    req: HttpRequest,
    call_id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebhookError> {
    let call_id = call_id.into_inner();
    let base = request_public_base(&state, &req)?;
    let params = verify_form(&state, &req, &base, &amd_status_path(&call_id), &body)?;
    let Some(call) = state.calls.store().get(&call_id).ok().flatten() else {
        tracing::warn!(%call_id, "answering machine verdict for an unknown call");
        return Ok(HttpResponse::NotFound().body("unknown call"));
    };
    let call_sid = required_call_sid(&params)?;
    let span = call_span(&call_sid);
    let _entered = span.enter();
    if call.call_sid.as_deref() != Some(call_sid.as_str()) {
        // The CallSid is stored when Twilio accepts the call, before it can be answered: another one is not ours.
        tracing::warn!(%call_id, "answering machine verdict with another call's CallSid refused");
        return Ok(HttpResponse::NotFound().body("unknown call"));
    }
    let answered_by = param(&params, "AnsweredBy")
        .ok_or_else(|| WebhookError::BadRequest("AnsweredBy missing".into()))
        .and_then(|text| {
            AnsweredBy::from_str(text).map_err(|e| WebhookError::BadRequest(e.to_string()))
        })?;
    let detection_ms =
        param(&params, "MachineDetectionDuration").and_then(|d| d.parse::<u64>().ok());
    if let Some(first) = call.answering.answered_by {
        tracing::info!(%answered_by, %first, "answering machine verdict delivered again; ignored");
        return Ok(HttpResponse::NoContent().finish());
    }
    tracing::info!(%answered_by, ?detection_ms, "answering machine verdict");
    state.calls.writer().submit(Write::AnsweredBy {
        id: call_id,
        answered_by,
    });
    // The call's stream may run on another instance of the fleet: hand the verdict there.
    if !state.live_calls.is_live(&call_sid) {
        match state
            .live_calls
            .route(&call_sid, CallControl::AnsweredBy(answered_by))
            .await
        {
            Ok(true) => {
                tracing::info!("verdict handed to the instance holding the call");
                return Ok(HttpResponse::NoContent().finish());
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "verdict could not be routed; kept here"),
        }
    }
    match state
        .live_calls
        .deliver_verdict(&call_sid, answered_by, Instant::now())
    {
        VerdictDelivery::Delivered => {}
        VerdictDelivery::Kept => tracing::debug!("verdict kept until the media stream starts"),
        VerdictDelivery::Dropped => tracing::warn!("verdict could not reach the call; dropped"),
    }
    Ok(HttpResponse::NoContent().finish())
}
