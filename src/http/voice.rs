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

use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, ResponseError, http::StatusCode, web};
use tracing::Instrument as _;

use time::OffsetDateTime;

use crate::calls::Direction;
use crate::calls::model::NewCall;
use crate::calls::recorder::END_REASON_STREAM_NEVER_OPENED;
use crate::calls::service::STORE_DEADLINE;
use crate::calls::store::new_call_id;
use crate::calls::writer::Write;
use crate::http::state::AppState;
use crate::realtime::client::preconnect;
use crate::relay::call::{PendingCall, StreamPlan};
use crate::security::policy::CallerAllowlist;
use crate::twilio::signature::{SignatureError, parse_form};
use crate::twilio::twiml;
use crate::urls::{ForwardedHeaders, INCOMING_CALL_PATH, public_base};

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
/// # Errors
/// [`WebhookError::Forbidden`] when the signature header is missing or does not match, or (JSON) the body does not
/// match its `bodySHA256`.
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
    let json_body = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    let (checked, params) = if json_body {
        (
            state.validator.validate_json(&url, body, signature),
            Vec::new(),
        )
    } else {
        let params = parse_form(body);
        (state.validator.validate(&url, &params, signature), params)
    };
    checked.inspect_err(|e| {
        tracing::warn!(
            %url,
            error = %e,
            "webhook signature mismatch: refused with 403. If this is Twilio, PUBLIC_URL does not match the URL \
             configured on the number (tunnel hostname changed?) or TWILIO_AUTH_TOKEN is wrong"
        )
    })?;
    Ok(params)
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

/// The `wss://` URL Twilio opens for a token (`ws://` when the public URL is plain http, for local testing).
pub fn stream_url(public_base: &str, token: &str) -> String {
    let url = format!("{public_base}/media-stream/{token}");
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url
    }
}

/// The span every log line of a call carries: its CallSid, and its StreamSid once the stream started.
pub fn call_span(call_sid: &str) -> tracing::Span {
    tracing::info_span!("call", call_sid = %call_sid, stream_sid = tracing::field::Empty)
}

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
        return Ok(twiml_response(connect_twiml(&base, &token, &from, &to)));
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
    if known.is_none() && state.calls.check_capacity().is_err() {
        tracing::info!(%from, %to, "incoming call rejected busy: the concurrency cap is reached");
        return Ok(twiml_response(twiml::reject(twiml::RejectReason::Busy)));
    }
    let mut stored = None;
    let call_id = match known {
        // The same call again after its stream opened or its token expired: one record per CallSid.
        Some(call) => {
            tracing::info!(call_id = %call.id, "incoming-call webhook for a call already stored; same record");
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
    let twiml = begin_stream(
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
            session_update: session.to_json(),
        },
    );
    drop(admission);
    drop(_entered);
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

/// Issues the stream token, starts pre-connecting the Realtime session, remembers the token as the call's one
/// awaited stream, arranges for an unused session to be closed (and the call's record finished, end reason
/// [`END_REASON_STREAM_NEVER_OPENED`]) when its token expires, and returns the `<Connect><Stream>` TwiML.
pub fn begin_stream(
    state: &AppState,
    public_base: &str,
    call_sid: &str,
    span: tracing::Span,
    plan: StreamPlan,
) -> String {
    let token = state.tokens.issue(call_sid);
    let preconnect = span.in_scope(|| {
        preconnect(
            &state.realtime_runtime,
            state.realtime_endpoint.clone(),
            vec![plan.session_update.clone()],
        )
    });
    let twiml = connect_twiml(public_base, &token, &plan.from, &plan.to);
    state.calls.await_stream(call_sid, &token);
    state.pending.insert(
        token.clone(),
        Arc::new(Mutex::new(Some(PendingCall { plan, preconnect }))),
    );

    // If Twilio never opens the stream, close the pre-connected session when the token expires; the cache's own
    // expiry only runs when the cache is next used, which on a quiet server may be never.
    let pending = state.pending.clone();
    let calls = state.calls.clone();
    let call_sid = call_sid.to_owned();
    let expired_token = token;
    let ttl = state.settings.calls.stream_token_ttl;
    state.realtime_runtime.spawn(
        async move {
            tokio::time::sleep(ttl).await;
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
            // The call was answered but its stream never opened: its record must not stay in progress.
            calls.writer().submit(Write::CloseUnopened {
                id: call_id,
                end_reason: END_REASON_STREAM_NEVER_OPENED.to_owned(),
                at: OffsetDateTime::now_utc(),
            });
            if let Err(e) = calls.end_at_twilio(&call_sid).await {
                tracing::warn!(error = %e, "REST hang-up of a call whose stream never opened failed");
            }
        }
        .instrument(span),
    );
    twiml
}

/// The `<Connect><Stream>` TwiML for a stream token, with the caller's and called numbers as `<Parameter>`s.
fn connect_twiml(public_base: &str, token: &str, from: &str, to: &str) -> String {
    let url = stream_url(public_base, token);
    twiml::connect_stream(&url, &[("caller", from), ("called", to)])
}

/// Answers TwiML (`text/xml`).
pub fn twiml_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}
