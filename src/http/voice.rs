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

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, ResponseError, http::StatusCode, web};
use tracing::Instrument as _;

use time::OffsetDateTime;

use crate::calls::Direction;
use crate::calls::model::{CallStatus, NewCall};
use crate::http::public_url::{ForwardedHeaders, public_base};
use crate::http::state::{AppState, PendingCall};
use crate::realtime::client::preconnect;
use crate::security::policy::CallerAllowlist;
use crate::twilio::signature::{SignatureError, parse_form};
use crate::twilio::twiml;

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

/// The public base URL this request was addressed to (see [`crate::http::public_url`]); logs it when it is derived
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
    let params = verify_form(&state, &req, &base, "/incoming-call", &body)?;
    let call_sid = required_call_sid(&params)?;
    let span = call_span(&call_sid);
    let _entered = span.enter();
    let from = param(&params, "From").unwrap_or("").to_owned();
    let to = param(&params, "To").unwrap_or("").to_owned();
    if !CallerAllowlist::from_settings(&state.settings.security).allows(&from) {
        tracing::info!(%from, %to, "incoming call rejected: the caller is not on CALLBRIDGE_ALLOWED_CALLERS");
        return Ok(twiml_response(twiml::reject(twiml::RejectReason::Rejected)));
    }
    if state.draining.load(Ordering::SeqCst) {
        tracing::info!("incoming call turned away: the server is shutting down");
        return Ok(twiml_response(twiml::say_and_hang_up(
            SHUTTING_DOWN_APOLOGY,
        )));
    }
    // Held until the call's stream token is pending, so it counts before another call is admitted.
    let Ok(admission) = state.calls.admit_call() else {
        tracing::info!(%from, %to, "incoming call rejected busy: the concurrency cap is reached");
        return Ok(twiml_response(twiml::reject(twiml::RejectReason::Busy)));
    };
    tracing::info!(%from, %to, "incoming call");

    let call_id = match state.calls.store().create(&NewCall {
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
    }) {
        Ok(call) => {
            let _ = state.calls.store().update_status(
                &call.id,
                CallStatus::InProgress,
                OffsetDateTime::now_utc(),
            );
            Some(call.id)
        }
        Err(e) => {
            // The call still goes ahead; its record is then only logged.
            tracing::error!(error = %e, "cannot store the inbound call");
            None
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
            call_id,
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
    Ok(twiml_response(twiml))
}

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
    pub max_call_duration: std::time::Duration,
    /// The `session.update` JSON for this call.
    pub session_update: String,
}

/// Issues the stream token, starts pre-connecting the Realtime session, arranges for an unused session to be closed
/// when its token expires, and returns the `<Connect><Stream>` TwiML.
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
    let parameters = [("caller", plan.from.clone()), ("called", plan.to.clone())];
    state.pending.insert(
        token.clone(),
        Arc::new(Mutex::new(Some(PendingCall { plan, preconnect }))),
    );

    // If Twilio never opens the stream, close the pre-connected session when the token expires; the cache's own
    // expiry only runs when the cache is next used, which on a quiet server may be never.
    let pending = state.pending.clone();
    let expired_token = token.clone();
    let ttl = state.settings.calls.stream_token_ttl;
    state.realtime_runtime.spawn(
        async move {
            tokio::time::sleep(ttl).await;
            // Take the call out of its slot: moka may hold the slot itself a while longer (until its maintenance).
            let unused = pending
                .remove(&expired_token)
                .and_then(|slot| slot.lock().ok().and_then(|mut call| call.take()));
            if unused.is_some() {
                drop(unused);
                tracing::info!("stream token expired unused; pre-connected OpenAI session closed");
            }
        }
        .instrument(span),
    );

    let url = stream_url(public_base, &token);
    let parameters: Vec<(&str, &str)> = parameters.iter().map(|(k, v)| (*k, v.as_str())).collect();
    twiml::connect_stream(&url, &parameters)
}

/// Answers TwiML (`text/xml`).
pub fn twiml_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}
