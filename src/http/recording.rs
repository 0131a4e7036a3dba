//! `POST /recording-status/{call_id}`: Twilio's recording status callback for a recorded call
//! (`RecordingStatusCallback` on an outbound call, `<Recording recordingStatusCallback>` on an inbound one),
//! form-encoded with `CallSid`, `RecordingSid`, `RecordingStatus`, `RecordingUrl`, `RecordingDuration`,
//! `RecordingChannels`, signed like every Twilio webhook.
//!
//! A forged signature is refused with 403 and changes nothing; an unknown call id, a CallSid that is not the
//! call's, or a RecordingSid already stored for another call, gets 404; a malformed callback 400. The recording (SID, URL, duration) is stored with the call, with its
//! deletion due after the retention (`CALLBRIDGE_RECORDING_RETENTION_DAYS`), and the retention task is woken. A
//! retried delivery stores the same values again and keeps the first due time.
//! Follows <https://www.twilio.com/docs/voice/api/recording> and
//! <https://www.twilio.com/docs/usage/webhooks/webhooks-security>.

use actix_web::{HttpRequest, HttpResponse, web};
use time::OffsetDateTime;

use crate::calls::service::STORE_DEADLINE;
use crate::calls::store::StoreError;
use crate::calls::writer::Write;
use crate::config::recording::RecordingSettings;
use crate::http::state::AppState;
use crate::http::webhook::{
    WebhookError, call_span, request_public_base, required_call_sid, verify_form,
};
use crate::twilio::recording::RecordingUpdate;
use crate::twilio::twiml::Prelude;
use crate::urls::recording_status_path;

/// What a call's TwiML does before its stream when it is recorded: on an inbound call (`callback` given: the
/// recording status URL), `<Start><Recording>`; then the consent line when one is set. An outbound call is recorded
/// by its create request (`Record=true`): `callback` is `None` and only the consent line is said. A call not
/// recorded gets nothing.
pub fn recording_prelude<'a>(
    settings: &'a RecordingSettings,
    record: bool,
    callback: Option<&'a str>,
) -> Prelude<'a> {
    if !record {
        return Prelude::default();
    }
    Prelude {
        recording_callback: callback,
        say: settings.consent_message.as_deref(),
    }
}

/// Handles `POST /recording-status/{call_id}`; answers 204 once the recording is stored (or queued for the store,
/// after [`STORE_DEADLINE`]).
///
/// # Errors
/// 403 on a bad signature; 404 (as a response) for an unknown call id or another call's CallSid; 400 for a missing
/// or malformed CallSid, RecordingSid, RecordingStatus or RecordingUrl.
pub async fn recording_status(
    state: web::Data<AppState>,
    req: HttpRequest,
    call_id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebhookError> {
    let call_id = call_id.into_inner();
    let base = request_public_base(&state, &req)?;
    let params = verify_form(&state, &req, &base, &recording_status_path(&call_id), &body)?;
    let Some(call) = state.calls.store().get(&call_id).ok().flatten() else {
        tracing::warn!(%call_id, "recording status for an unknown call");
        return Ok(HttpResponse::NotFound().body("unknown call"));
    };
    let call_sid = required_call_sid(&params)?;
    let span = call_span(&call_sid);
    if call.call_sid.as_deref() != Some(call_sid.as_str()) {
        span.in_scope(
            || tracing::warn!(%call_id, "recording status with another call's CallSid refused"),
        );
        return Ok(HttpResponse::NotFound().body("unknown call"));
    }
    let update =
        RecordingUpdate::from_form(&params).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
    let written = state
        .calls
        .writer()
        .write(
            Write::Recording {
                call_id,
                update: Box::new(update),
                at: OffsetDateTime::now_utc(),
                retention: state.settings.recording.retention,
            },
            STORE_DEADLINE,
        )
        .await;
    match written {
        Ok(()) => state.recording_retention.wake(),
        Err(None) => span.in_scope(|| {
            tracing::warn!("recording status queued: the call records database is locked")
        }),
        Err(Some(StoreError::NotFound(_))) => {
            // The RecordingSid is stored under another call.
            span.in_scope(|| {
                tracing::warn!("recording status for another call's recording refused")
            });
            return Ok(HttpResponse::NotFound().body("unknown recording"));
        }
        Err(Some(error)) => span.in_scope(|| {
            tracing::error!(%error, "recording status not stored");
        }),
    }
    Ok(HttpResponse::NoContent().finish())
}
