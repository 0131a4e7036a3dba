//! What the Twilio webhooks share: the signature check over the public URL, form parameters, the `WebhookError`
//! answers, and starting a call's media stream (stream token, pre-connected Realtime session, `<Connect><Stream>`
//! TwiML). `/incoming-call` (`voice.rs`) and `/outbound-call/{id}` (`outbound.rs`) build on it.
//! Follows <https://www.twilio.com/docs/usage/webhooks/webhooks-security> and
//! <https://www.twilio.com/docs/voice/twiml/stream>.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, ResponseError, http::StatusCode};
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::calls::writer::Write;
use crate::calls::{CallFailure, EndReason};
use crate::config::Engine;
use crate::http::state::AppState;
use crate::realtime::client::{RealtimeEndpoint, preconnect};
use crate::relay::call::{PendingCall, StreamPlan};
use crate::relay::shared_plan::SharedPlan;
use crate::twilio::signature::{
    RequestValidator, SIGNATURE_SETTINGS_HEADER, SignatureError, parse_form,
};
use crate::twilio::twiml;
use crate::urls::{ForwardedHeaders, public_base};

/// What a caller hears when the server is shutting down; the call is then hung up.
pub const SHUTTING_DOWN_APOLOGY: &str =
    "Sorry, the assistant is restarting right now. Please call again in a minute. Goodbye.";

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong `X-Twilio-Signature`: 403.
    #[error("invalid Twilio signature")]
    Forbidden(#[from] SignatureError),
    /// A required form field is missing or malformed, or the public URL cannot be told: 400.
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebhookError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebhookError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The public base URL this request was addressed to (see [`crate::urls`]); logs it when it is derived
/// from forwarded headers and differs from the last one.
///
/// # Errors
/// [`WebhookError::BadRequest`] when `PUBLIC_URL` is not set and the trusted forwarded headers do not name a host.
pub fn request_public_base(state: &AppState, req: &HttpRequest) -> Result<String, WebhookError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let base = public_base(
        state.public_url.as_ref(),
        state.settings.trust_forwarded_headers,
        ForwardedHeaders {
            proto: header("x-forwarded-proto"),
            host: header("x-forwarded-host"),
            plain_host: header("host"),
        },
    )
    .ok_or_else(|| WebhookError::BadRequest("cannot tell the public URL of this request".into()))?;
    if state.public_url.is_none() {
        let mut last = state
            .derived_public_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_deref() != Some(base.as_str()) {
            tracing::info!(
                public_url = %base,
                webhook = %format!("{base}/incoming-call"),
                "public URL in effect, from forwarded headers; the number's voice webhook must be the webhook URL"
            );
            *last = Some(base.clone());
        }
    }
    Ok(base)
}

/// The URL Twilio signed: the public base URL + the request's path and query.
pub fn signed_url(public_base: &str, req: &HttpRequest, path: &str) -> String {
    let mut url = format!("{public_base}{path}");
    if let Some(query) = req.uri().query() {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// Verifies a webhook sent to `public_base` + `path` and returns its form parameters.
///
/// A form-encoded body (`application/x-www-form-urlencoded`, Twilio's default) is checked with the URL followed by
/// its sorted parameters. A JSON body (`Content-Type: application/json`) is checked as Twilio signs it: the URL
/// carries `?bodySHA256=<hex sha256(body)>`, the signature covers the URL alone, and the body's hash must equal
/// that value ([`crate::twilio::signature::RequestValidator::validate_json`]). Our webhooks are form-encoded, so for
/// a JSON body no parameters are returned (empty list): the handler then finds its required fields missing.
/// Follows <https://www.twilio.com/docs/usage/webhooks/webhooks-security>.
///
/// The key and MAC are the auth token and HMAC-SHA1, unless the request carries
/// `X-Twilio-Webhooks-Signature-Settings: key=<SharedKey id>,algorithm=<HMAC_SHA1|HMAC_SHA256>`: then the configured
/// secret of that SharedKey and that algorithm ([`request_validator`],
/// <https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys>).
///
/// # Errors
/// [`WebhookError::Forbidden`] when the signature header is missing or does not match, (JSON) the body does not
/// match its `bodySHA256`, or the signature settings name no key, an unknown key or an unsupported algorithm.
pub fn verify_form(
    state: &AppState,
    req: &HttpRequest,
    public_base: &str,
    path: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>, WebhookError> {
    let url = signed_url(public_base, req, path);
    let signature = req
        .headers()
        .get("X-Twilio-Signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(SignatureError::Missing)
        .inspect_err(|_| tracing::warn!(%url, "webhook without X-Twilio-Signature refused"))?;
    let validator = request_validator(state, req).inspect_err(|e| {
        tracing::warn!(
            %url,
            error = %e,
            "webhook signed with a SharedKey or algorithm callbridge cannot check: refused with 403. Add the \
             SharedKey's id and secret to CALLBRIDGE_TWILIO_SIGNING_KEYS (key_id=secret)"
        )
    })?;
    let shared_key = signature_settings(req).is_some_and(|h| !h.trim().is_empty());
    let json_body = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    let (checked, params) = if json_body {
        (validator.validate_json(&url, body, signature), Vec::new())
    } else {
        let params = parse_form(body);
        (validator.validate(&url, &params, signature), params)
    };
    checked.inspect_err(|e| {
        if shared_key {
            tracing::warn!(
                %url,
                error = %e,
                "webhook signature mismatch (signed with a SharedKey): refused with 403. If this is Twilio, PUBLIC_URL \
                 does not match the URL configured on the number or the SharedKey's secret in \
                 CALLBRIDGE_TWILIO_SIGNING_KEYS is wrong"
            )
        } else {
            tracing::warn!(
                %url,
                error = %e,
                "webhook signature mismatch: refused with 403. If this is Twilio, PUBLIC_URL does not match the URL \
                 configured on the number (tunnel hostname changed?) or TWILIO_AUTH_TOKEN is wrong"
            )
        }
    })?;
    Ok(params)
}

/// The request's `X-Twilio-Webhooks-Signature-Settings` value, when present; a value that is not text reads as
/// `"?"`, which names no key (refused).
fn signature_settings(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(SIGNATURE_SETTINGS_HEADER)
        .map(|v| v.to_str().unwrap_or("?"))
}

/// The validator for `req`'s `X-Twilio-Signature`: the auth token with HMAC-SHA1, or the SharedKey and algorithm its
/// `X-Twilio-Webhooks-Signature-Settings` names ([`crate::twilio::signature::WebhookSigning::validator`]).
///
/// # Errors
/// [`SignatureError::NoSigningKey`], [`SignatureError::UnknownSigningKey`] or
/// [`SignatureError::UnsupportedAlgorithm`] when the settings header cannot be honoured.
pub fn request_validator<'a>(
    state: &'a AppState,
    req: &HttpRequest,
) -> Result<Cow<'a, RequestValidator>, SignatureError> {
    state.signing.validator(signature_settings(req))
}

/// The value of form field `name`, if present.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The webhook's `CallSid` form field.
///
/// # Errors
/// [`WebhookError::BadRequest`] when it is missing or is not `CA` followed by 32 hex characters.
pub fn required_call_sid(params: &[(String, String)]) -> Result<String, WebhookError> {
    param(params, "CallSid")
        .filter(|sid| is_call_sid(sid))
        .map(str::to_owned)
        .ok_or_else(|| WebhookError::BadRequest("CallSid missing or malformed".into()))
}

/// True for a Twilio CallSid: `CA` followed by 32 hex characters.
pub fn is_call_sid(text: &str) -> bool {
    text.len() == 34 && text.starts_with("CA") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

pub use crate::urls::{stream_base, stream_url};

/// The span every log line of a call carries: its CallSid, and its StreamSid once the stream started.
pub fn call_span(call_sid: &str) -> tracing::Span {
    tracing::info_span!("call", call_sid = %call_sid, stream_sid = tracing::field::Empty)
}

/// Issues the stream token, starts pre-connecting the Realtime session, remembers the token as the call's one
/// awaited stream, arranges for an unused session to be closed (and the call's record finished, end reason
/// `error:stream_never_opened`) when its token expires, and returns the `<Connect><Stream>` TwiML.
pub fn begin_stream(
    state: &AppState,
    public_base: &str,
    call_sid: &str,
    span: tracing::Span,
    plan: StreamPlan,
) -> String {
    begin_stream_after(
        state,
        public_base,
        call_sid,
        span,
        plan,
        &twiml::Prelude::default(),
    )
}

/// Waits until the stream token of the call `call_sid` (issued by [`begin_stream_after`]) is shared through the
/// fleet's Redis, so the TwiML that carries it goes out only then; at once without a fleet. A failure is logged:
/// the TwiML is answered anyway, its stream is then refused at the upgrade and the record closed when the token
/// expires.
pub async fn stream_token_published(state: &AppState, call_sid: &str) {
    let Some(token) = state.calls.awaited_stream(call_sid) else {
        return;
    };
    if let Err(error) = state.tokens.published(&token).await {
        tracing::error!(%error, "the call's stream token is not shared through Redis; its stream will be refused");
    }
}

/// [`begin_stream`], with `prelude` (start a recording, say the recording notice) before the `<Connect><Stream>`.
pub fn begin_stream_after(
    state: &AppState,
    public_base: &str,
    call_sid: &str,
    span: tracing::Span,
    plan: StreamPlan,
    prelude: &twiml::Prelude<'_>,
) -> String {
    // With a fleet the plan travels with the token, so that any instance can run the stream.
    let shared = state
        .fleet
        .as_ref()
        .and_then(|_| serde_json::to_value(SharedPlan::from_plan(&plan)).ok());
    let token = state.tokens.issue_with_plan(call_sid, shared);
    let preconnect = span.in_scope(|| preconnect_plan(state, &plan));
    // The stream goes to this instance's own address when it has one; signatures stay on the public URL.
    let stream_base = stream_base(state.settings.stream_public_url.as_ref(), public_base);
    let twiml = connect_twiml_after(prelude, &stream_base, &token, &plan.from, &plan.to);
    state.calls.await_stream(call_sid, &token);

    // If Twilio never opens the stream, close the pre-connected session when the token expires; the cache's own
    // expiry only runs when the cache is next used, which on a quiet server may be never. The media-stream route
    // aborts this task when the stream opens.
    let pending = state.pending.clone();
    let calls = state.calls.clone();
    let fleet = state.fleet.clone();
    let expired_call_sid = call_sid.to_owned();
    let expired_token = token.clone();
    let ttl = state.settings.calls.stream_token_ttl;
    let expiry = state.realtime_runtime.spawn(
        async move {
            tokio::time::sleep(ttl).await;
            // Boxed: while it sleeps, the task holds only what it captured.
            Box::pin(expire_unused_stream(
                pending,
                calls,
                fleet,
                expired_call_sid,
                expired_token,
            ))
            .await;
        }
        .instrument(span),
    );
    state.pending.insert(
        token,
        Arc::new(Mutex::new(Some(PendingCall {
            plan,
            preconnect,
            expiry: Some(expiry.abort_handle()),
        }))),
    );
    twiml
}

/// A stream token expired: forgets it, and when its pending call was never taken by a media stream, closes the
/// pre-connected session and the call's record (`error:stream_never_opened`), frees its fleet slots and hangs the call
/// up at Twilio.
async fn expire_unused_stream(
    pending: moka::sync::Cache<String, crate::relay::call::PendingSlot>,
    calls: crate::calls::service::CallService,
    fleet: Option<crate::fleet::Fleet>,
    call_sid: String,
    expired_token: String,
) {
    calls.forget_stream(&call_sid, &expired_token);
    // Take the call out of its slot: moka may hold the slot itself a while longer (until its maintenance).
    let unused = pending
        .remove(&expired_token)
        .and_then(|slot| slot.lock().ok().and_then(|mut call| call.take()));
    let Some(unused) = unused else {
        return;
    };
    let call_id = unused.plan.call_id.clone();
    drop(unused);
    tracing::info!("stream token expired unused; pre-connected OpenAI session closed");
    let Some(call_id) = call_id else {
        return;
    };
    if opened_elsewhere(fleet.as_ref(), &calls, &call_sid, &call_id).await {
        return;
    }
    // The call was answered but its stream never opened: its record must not stay in progress.
    calls.writer().submit(Write::CloseUnopened {
        id: call_id.clone(),
        end_reason: EndReason::Error(CallFailure::StreamNeverOpened),
        at: OffsetDateTime::now_utc(),
    });
    // With a fleet, its slot (keyed by its CallSid when inbound, its id when outbound) is free now.
    calls.release_fleet_slots(&[&call_sid, &call_id]).await;
    if let Err(e) = calls.end_at_twilio(&call_sid).await {
        tracing::warn!(error = %e, "REST hang-up of a call whose stream never opened failed");
    }
}

/// Starts opening the OpenAI session of `plan`'s engine (Realtime or GPT-Live) with its first event, on the
/// Realtime runtime.
pub fn preconnect_plan(state: &AppState, plan: &StreamPlan) -> crate::realtime::client::Preconnect {
    match plan.engine {
        Engine::Realtime => preconnect(
            &state.realtime_runtime,
            state.realtime_endpoint.clone(),
            vec![plan.session_update.to_string()],
        ),
        Engine::Live => crate::live::client::preconnect(
            &state.realtime_runtime,
            RealtimeEndpoint {
                url: state.settings.live.url.clone(),
                api_key: state.settings.openai_api_key.clone(),
            },
            plan.session_update.to_string(),
        ),
    }
}

/// With a fleet, whether the call's stream opened on another instance (the token was taken there): an instance
/// holds the call, or its record has ended. Then the unused pre-connected session here is all there is to close.
async fn opened_elsewhere(
    fleet: Option<&crate::fleet::Fleet>,
    calls: &crate::calls::service::CallService,
    call_sid: &str,
    call_id: &str,
) -> bool {
    let Some(fleet) = fleet else {
        return false;
    };
    match fleet.instance_of(call_sid).await {
        Ok(Some(instance)) => {
            tracing::info!(%instance, "the call's stream opened on another instance");
            return true;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot tell whether another instance holds the call"),
    }
    calls
        .get_call(call_id, None)
        .await
        .is_ok_and(|view| view.end_reason.is_some())
}

/// The first client event of a call's session on `engine`: Realtime's `session.update` for `session` (`holding`:
/// with automatic responses off, for the answering machine hold), or GPT-Live's `session.start` with the same
/// instructions and tools and the Live model, voice (`voice` when it is one of GPT-Live's, else the configured one)
/// and backend.
pub fn first_session_event(
    settings: &crate::config::Settings,
    engine: Engine,
    session: &crate::realtime::session::SessionConfig,
    voice: Option<&str>,
    holding: bool,
) -> String {
    match engine {
        Engine::Realtime if holding => session.to_json_holding(),
        Engine::Realtime => session.to_json(),
        Engine::Live => {
            let live = &settings.live;
            let voice = voice
                .filter(|v| crate::config::LIVE_VOICES.contains(v))
                .unwrap_or(&live.voice);
            crate::live::session::session_start_json(
                session,
                &crate::live::session::LiveSession {
                    model: live.model.clone(),
                    voice: voice.to_owned(),
                    backend_model: live.backend_model.clone(),
                },
            )
        }
    }
}

/// The `<Connect><Stream>` TwiML for a stream token, with the caller's and called numbers as `<Parameter>`s.
pub fn connect_twiml(public_base: &str, token: &str, from: &str, to: &str) -> String {
    connect_twiml_after(&twiml::Prelude::default(), public_base, token, from, to)
}

/// [`connect_twiml`] after `prelude` ([`twiml::connect_stream_after`]).
pub fn connect_twiml_after(
    prelude: &twiml::Prelude<'_>,
    public_base: &str,
    token: &str,
    from: &str,
    to: &str,
) -> String {
    let url = stream_url(public_base, token);
    twiml::connect_stream_after(prelude, &url, &[("caller", from), ("called", to)])
}

/// Answers TwiML (`text/xml`).
pub fn twiml_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}
