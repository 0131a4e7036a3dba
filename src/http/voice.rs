//! `POST /incoming-call`: Twilio's voice webhook for a call to the number.
//!
//! Checks `X-Twilio-Signature` against the configured public URL (403 on mismatch; there is no bypass), issues a
//! single-use stream token bound to the CallSid, starts opening the Realtime session at once (pre-connect), and
//! answers TwiML `<Connect><Stream url="wss://PUBLIC/media-stream/TOKEN">` with `<Parameter>`s.
//! Follows <https://www.twilio.com/docs/usage/webhooks/webhooks-security> and
//! <https://www.twilio.com/docs/voice/twiml/stream>.

use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, ResponseError, http::StatusCode, web};

use crate::calls::Direction;
use crate::config::public_endpoint;
use crate::http::state::{AppState, PendingCall};
use crate::realtime::client::preconnect;
use crate::twilio::signature::{SignatureError, parse_form};
use crate::twilio::twiml;

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong `X-Twilio-Signature`: 403.
    #[error("invalid Twilio signature")]
    Forbidden(#[from] SignatureError),
    /// A required form field is missing or malformed: 400.
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

/// The URL Twilio signed: the configured public base URL + the request's path and query.
pub fn signed_url(state: &AppState, req: &HttpRequest, path: &str) -> String {
    let mut url = public_endpoint(&state.public_url, path);
    if let Some(query) = req.uri().query() {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// Verifies a form-encoded webhook and returns its parameters.
///
/// # Errors
/// [`WebhookError::Forbidden`] when the signature header is missing or does not match.
pub fn verify_form(
    state: &AppState,
    req: &HttpRequest,
    path: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>, WebhookError> {
    let params = parse_form(body);
    let url = signed_url(state, req, path);
    let signature = req
        .headers()
        .get("X-Twilio-Signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(SignatureError::Missing)
        .inspect_err(|_| tracing::warn!(%url, "webhook without X-Twilio-Signature refused"))?;
    state.validator.validate(&url, &params, signature).inspect_err(|_| {
        tracing::warn!(
            %url,
            "webhook signature mismatch: refused with 403. If this is Twilio, PUBLIC_URL does not match the URL \
             configured on the number (tunnel hostname changed?) or TWILIO_AUTH_TOKEN is wrong"
        )
    })?;
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// True for a Twilio CallSid: `CA` followed by 32 hex characters.
pub fn is_call_sid(text: &str) -> bool {
    text.len() == 34 && text.starts_with("CA") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `wss://` URL Twilio opens for a token (`ws://` when the public URL is plain http, for local testing).
pub fn stream_url(state: &AppState, token: &str) -> String {
    let base = public_endpoint(&state.public_url, &format!("/media-stream/{token}"));
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base
    }
}

/// Handles `POST /incoming-call`.
///
/// # Errors
/// 403 on a bad signature, 400 without a valid `CallSid`.
pub async fn incoming_call(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, WebhookError> {
    let params = verify_form(&state, &req, "/incoming-call", &body)?;
    let call_sid = param(&params, "CallSid")
        .filter(|sid| is_call_sid(sid))
        .ok_or_else(|| WebhookError::BadRequest("CallSid missing or malformed".into()))?
        .to_owned();
    let from = param(&params, "From").unwrap_or("").to_owned();
    let to = param(&params, "To").unwrap_or("").to_owned();
    tracing::info!(%call_sid, %from, %to, "incoming call");

    let token = state.tokens.issue(&call_sid);
    let session = state
        .settings
        .session_config(state.settings.realtime.system_message.clone());
    let preconnect = preconnect(
        &state.realtime_runtime,
        state.realtime_endpoint.clone(),
        vec![session.to_json()],
    );
    state.pending.insert(
        token.clone(),
        Arc::new(Mutex::new(Some(PendingCall {
            direction: Direction::Inbound,
            from: from.clone(),
            to: to.clone(),
            preconnect,
        }))),
    );

    // If Twilio never opens the stream, close the pre-connected session when the token expires; the cache's own
    // expiry only runs when the cache is next used, which on a quiet server may be never.
    let pending = state.pending.clone();
    let expired_token = token.clone();
    let ttl = state.settings.calls.stream_token_ttl;
    state.realtime_runtime.spawn(async move {
        tokio::time::sleep(ttl).await;
        // Take the call out of its slot: moka may hold the slot itself a while longer (until its maintenance runs).
        let unused = pending
            .remove(&expired_token)
            .and_then(|slot| slot.lock().ok().and_then(|mut call| call.take()));
        if unused.is_some() {
            drop(unused);
            tracing::info!("stream token expired unused; pre-connected OpenAI session closed");
        }
    });

    let url = stream_url(&state, &token);
    let body = twiml::connect_stream(&url, &[("caller", from.as_str()), ("called", to.as_str())]);
    Ok(HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body))
}
