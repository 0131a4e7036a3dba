//! `GET /media-stream/{token}`: the Media Streams WebSocket upgrade.
//!
//! The token is consumed at the upgrade: an unknown, used or expired token is answered 403 and no socket is opened.
//! When the upgrade carries `X-Twilio-Signature` (Twilio signs the stream URL alone, `wss://PUBLIC/media-stream/TOKEN`),
//! it must match, else 403; it is checked *before* the token is consumed, so a forged upgrade cannot burn the token of
//! the real call (whoever knows the token could connect without a signature anyway: the token alone decides when the
//! header is absent).
//! A good token hands the socket, the pre-connected Realtime session and a fresh [`Conductor`] to a [`Bridge`] task.
//! Follows <https://www.twilio.com/docs/voice/media-streams/websocket-messages> and
//! <https://www.twilio.com/docs/usage/webhooks/webhooks-security>.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use tracing::Instrument as _;

use crate::calls::recorder::Persistence;
use crate::calls::{CallRecord, Direction, EndReason};
use crate::http::state::{AppState, PendingCall};
use crate::http::voice::{StreamPlan, call_span, request_public_base, stream_url};
use crate::realtime::client::{self, RealtimeLink};
use crate::relay::bridge::{Bridge, close_twilio, log_record};
use crate::relay::conductor::{Conductor, ConductorConfig};
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
    /// The header is empty or does not match the stream URL.
    #[error("X-Twilio-Signature does not match the stream URL: {0}")]
    Invalid(#[from] crate::twilio::signature::SignatureError),
}

/// Checks the upgrade's `X-Twilio-Signature`, when it has one, against the stream URL Twilio was given
/// (`wss://PUBLIC/media-stream/TOKEN`: the public base with `https` → `wss`, no query, no parameters).
///
/// `Ok` when the header is absent (the token alone decides) or matches (with or without the default port).
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
    let base = request_public_base(state, req).map_err(|_| UpgradeSignatureError::NoPublicUrl)?;
    state
        .validator
        .validate(&stream_url(&base, token), &[], signature)?;
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
    let grant = match state.tokens.consume(&token) {
        Ok(grant) => grant,
        Err(_) => {
            tracing::warn!("media-stream upgrade with an unknown, used or expired token refused");
            return Ok(HttpResponse::Forbidden().body("invalid stream token"));
        }
    };
    let pending = state
        .pending
        .remove(&token)
        .and_then(|slot| slot.lock().ok().and_then(|mut p| p.take()));
    let call_sid = grant.call_sid;

    let state = state.into_inner();
    let span = call_span(&call_sid);
    actix_web::rt::spawn(
        async move {
            let (plan, link) = match pending {
                Some(PendingCall { plan, preconnect }) => {
                    let link = preconnect.ready().await;
                    (plan, link)
                }
                None => {
                    // The token outlived its pending entry (should not happen): connect now with the defaults.
                    let realtime = &state.settings.realtime;
                    let plan = StreamPlan {
                        call_id: None,
                        direction: Direction::Inbound,
                        from: String::new(),
                        to: String::new(),
                        assistant_speaks_first: realtime.assistant_speaks_first,
                        greeting: realtime.greeting.clone(),
                        max_call_duration: state.settings.calls.max_call_duration,
                        session_update: state.settings.session_config(realtime.system_message.clone()).to_json(),
                    };
                    let endpoint = state.realtime_endpoint.clone();
                    let first = plan.session_update.clone();
                    let link = state
                        .realtime_runtime
                        .spawn(async move { client::connect(&endpoint, vec![first]).await })
                        .await
                        .unwrap_or(Err(client::RealtimeError::Lost));
                    (plan, link)
                }
            };
            let persistence = plan.call_id.clone().map(|call_id| Persistence {
                calls: state.calls.clone(),
                call_id,
            });
            let record = CallRecord::new(call_sid.clone(), plan.direction, plan.from.clone(), plan.to.clone());
            let link: RealtimeLink = match link {
                Ok(link) => link,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the OpenAI Realtime session; ending the call");
                    let reason = EndReason::Error("openai_unavailable".into());
                    close_twilio(twilio, &reason);
                    let mut record = record;
                    record.finish(reason, 0);
                    log_record(&record);
                    if let Some(persistence) = &persistence {
                        persistence.finish(&record);
                    }
                    state.live_calls.remember(record);
                    return;
                }
            };
            let (control, guard) = state.live_calls.register(&call_sid);
            let conductor = Conductor::new(
                ConductorConfig {
                    call_sid: call_sid.clone(),
                    assistant_speaks_first: plan.assistant_speaks_first,
                    greeting: plan.greeting.clone(),
                    max_call_duration: plan.max_call_duration,
                    farewell_grace: state.settings.calls.farewell_grace,
                    goodbye: state.goodbye.clone(),
                    stream_idle_timeout: state.settings.security.stream_idle_timeout,
                },
                record,
                Instant::now(),
            );
            let record = Bridge {
                twilio,
                twilio_frames: frames,
                link,
                conductor,
                rest: state.rest.clone(),
                control,
                shutdown: state.shutdown.clone(),
                persistence,
                stall_timeout: state.settings.calls.peer_stall_timeout,
            }
            .run()
            .await;
            drop(guard);
            state.live_calls.remember(record);
        }
        .instrument(span),
    );
    Ok(response)
}
