//! `GET /media-stream/{token}`: the Media Streams WebSocket upgrade.
//!
//! The token is consumed at the upgrade: an unknown, used or expired token is answered 403 and no socket is opened.
//! When the upgrade carries `X-Twilio-Signature` (Twilio signs the stream URL alone, `wss://PUBLIC/media-stream/TOKEN`),
//! it must match, else 403; it is checked *before* the token is consumed, so a forged upgrade cannot burn the token of
//! the real call (whoever knows the token could connect without a signature anyway: the token alone decides when the
//! header is absent).
//! A good token hands the socket and the call's pending Realtime session to one task running
//! [`crate::relay::call::run_call`], which owns the rest of the call's life. A handover token (issued by a running
//! call for its next stream, see [`crate::relay::handover`]) hands the socket to that running call instead.
//! Follows <https://www.twilio.com/docs/voice/media-streams/websocket-messages> and
//! <https://www.twilio.com/docs/usage/webhooks/webhooks-security>.

use actix_web::{HttpRequest, HttpResponse, web};
use tracing::Instrument as _;

use crate::calls::{CallFailure, EndReason};
use crate::http::state::AppState;
use crate::http::webhook::{
    call_span, preconnect_plan, request_public_base, request_validator, stream_base, stream_url,
};
use crate::relay::bridge::{close_reason, close_twilio};
use crate::relay::call::{PendingCall, run_call};
use crate::relay::handover::StreamAttachment;
use crate::relay::media_link::{MediaLink, pump};
use crate::relay::shared_plan::SharedPlan;
use crate::relay::twilio_socket;

/// Why a media-stream upgrade's `X-Twilio-Signature` was refused (answered 403; the stream token stays unused).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpgradeSignatureError {
    /// The header is not visible ASCII text.
    #[error("X-Twilio-Signature is not text")]
    NotText,
    /// The public URL of the request cannot be told, so the signed URL cannot be rebuilt.
    #[error("the public URL of the upgrade cannot be told, so its signature cannot be checked")]
    NoPublicUrl,
    /// The header is empty or does not match the stream URL, or `X-Twilio-Webhooks-Signature-Settings` names no key,
    /// an unknown key or an unsupported algorithm.
    #[error("X-Twilio-Signature does not match the stream URL: {0}")]
    Invalid(#[from] crate::twilio::signature::SignatureError),
}

/// Checks the upgrade's `X-Twilio-Signature`, when it has one, against the stream URL Twilio was given
/// (`wss://PUBLIC/media-stream/TOKEN`: the stream base — `CALLBRIDGE_STREAM_PUBLIC_URL`, else the public base — with
/// `https` → `wss`, no query, no parameters).
///
/// `Ok` when the header is absent (the token alone decides) or matches (with or without the default port), under
/// the auth token or the SharedKey its `X-Twilio-Webhooks-Signature-Settings` names.
///
/// # Errors
/// [`UpgradeSignatureError`] when the header is present but not text, empty, or not matching, or cannot be
/// checked because the public URL of the request cannot be told.
pub fn verify_upgrade_signature(
    state: &AppState,
    req: &HttpRequest,
    token: &str,
) -> Result<(), UpgradeSignatureError> {
    let Some(header) = req.headers().get("X-Twilio-Signature") else {
        return Ok(());
    };
    let signature = header
        .to_str()
        .map_err(|_| UpgradeSignatureError::NotText)?;
    let base = match &state.settings.stream_public_url {
        Some(url) => stream_base(Some(url), ""),
        None => request_public_base(state, req).map_err(|_| UpgradeSignatureError::NoPublicUrl)?,
    };
    request_validator(state, req)?.validate(&stream_url(&base, token), &[], signature)?;
    Ok(())
}

/// Handles the upgrade.
///
/// # Errors
/// 400 when the request is not a WebSocket upgrade (the token is left unused then). A present but wrong
/// `X-Twilio-Signature` or a bad token is answered 403 (an `Ok` response); the former leaves the token unused.
pub async fn media_stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    // Validate the handshake first, so a plain GET cannot burn a token.
    let (response, twilio, frames) =
        twilio_socket::accept(&req, body, state.settings.calls.max_frame_bytes)?;
    let token = token.into_inner();
    if let Err(e) = verify_upgrade_signature(&state, &req, &token) {
        tracing::warn!(error = %e, "media-stream upgrade with a bad X-Twilio-Signature refused; its token stays unused");
        return Ok(HttpResponse::Forbidden().body("invalid Twilio signature"));
    }
    // With a fleet this asks Redis (under its deadline); a token that cannot be checked is refused like a bad one.
    let grant = match state.tokens.consume(&token).await {
        Ok(grant) => grant,
        Err(e) => {
            tracing::warn!(error = %e, "media-stream upgrade with an unknown, used or expired token refused");
            return Ok(HttpResponse::Forbidden().body("invalid stream token"));
        }
    };
    if grant.handover {
        // The next stream of a running call (keypad tones, a transfer that came back): hand the socket over.
        let span = call_span(&grant.call_sid);
        let attachment = StreamAttachment {
            stream: pump(twilio, frames),
            opened_at: std::time::Instant::now(),
        };
        if let Err(refused) = state.attachments.attach(&grant.call_sid, attachment) {
            span.in_scope(|| {
                tracing::warn!("handover stream for a call that is not running; closing it")
            });
            MediaLink::Remote(refused.stream).close(close_reason(&EndReason::Error(
                CallFailure::StreamNotAwaited,
            )));
        }
        return Ok(response);
    }
    let pending = state
        .pending
        .remove(&token)
        .and_then(|slot| slot.lock().ok().and_then(|mut p| p.take()));
    let call_sid = grant.call_sid;
    if let Some(expiry) = pending.as_ref().and_then(|p| p.expiry.as_ref()) {
        // The stream opened: the call's expiry has nothing left to do.
        expiry.abort();
        state.calls.forget_stream(&call_sid, &token);
    }
    let (grant_plan, issued_by) = (grant.plan, grant.issued_by);
    let span = call_span(&call_sid);
    // A stream whose webhook another instance answered: run it from the plan shared with the token.
    let pending =
        pending.or_else(|| span.in_scope(|| adopt_shared_plan(&state, &grant_plan, issued_by)));
    let Some(pending) = pending else {
        // The token outlived its pending call (its expiry raced the upgrade): nothing to run the stream with.
        span.in_scope(|| tracing::warn!("media stream whose pending call has expired; closing it"));
        close_twilio(twilio, &EndReason::Error(CallFailure::StreamExpired));
        return Ok(response);
    };
    actix_web::rt::spawn(
        state
            .shutdown
            .track(run_call(state.call_deps(), twilio, frames, call_sid, pending).instrument(span)),
    );
    Ok(response)
}

/// The pending call of a stream whose webhook another instance answered: its plan, rebuilt from the grant's `plan`,
/// and an OpenAI session of its own opened now (the other instance's pre-connected one goes unused). `None` when the
/// grant carries no plan or one this instance cannot read (logged).
fn adopt_shared_plan(
    state: &AppState,
    plan: &Option<serde_json::Value>,
    issued_by: Option<String>,
) -> Option<PendingCall> {
    let plan = plan.as_ref()?;
    let plan = serde_json::from_value::<SharedPlan>(plan.clone())
        .map_err(|e| e.to_string())
        .and_then(|shared| shared.into_plan().map_err(|e| e.to_string()));
    match plan {
        Ok(plan) => {
            tracing::info!(
                issued_by = issued_by.as_deref().unwrap_or("?"),
                engine = ?plan.engine,
                "stream answered by another instance: opening an OpenAI session here"
            );
            let preconnect = preconnect_plan(state, &plan);
            Some(PendingCall {
                plan,
                preconnect,
                expiry: None,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "the stream plan shared with the token cannot be used");
            None
        }
    }
}
