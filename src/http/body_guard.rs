//! Request bodies: a size limit refused from the head and a deadline for the whole body, on every route, by one
//! app-wide middleware ([`guard_body`]) that runs before routing.
//!
//! actix's `client_request_timeout` covers only the request head. Without this guard a client that sends a head
//! with `Content-Length` and then one byte a second holds its connection (and a file descriptor) for as long as it
//! likes, on any route, without a secret. The guard:
//! 1. answers `413 Payload Too Large` when the declared `Content-Length` is over `CALLBRIDGE_MAX_BODY_BYTES`,
//!    before a byte of the body is read;
//! 2. otherwise wraps the request's payload in a [`GuardedPayload`]: when the body has not fully arrived
//!    `CALLBRIDGE_BODY_TIMEOUT_S` after the head, the route's body extractor gets an error and the answer is
//!    `408 Request Timeout`, whatever the route would have said about the error; a chunked body that grows over
//!    the limit is cut the same way with `413`.
//!
//! Requests without a body (no `Content-Length`, or 0, and no `Transfer-Encoding`) and WebSocket upgrades (whose
//! "payload" is the WebSocket itself) are not timed. A route that does not read its body answers when it is done
//! and actix then closes the connection (it does not keep a connection whose body was left unread): the deadline
//! only matters to routes that wait for their body, which every route taking one does first.
//!
//! Refusals close the connection (`Connection: close`; actix closes it anyway when a body is left unread). The
//! answer is the `/api` JSON error for `/api` and `/mcp` (`payload_too_large`, `request_timeout`), plain text
//! elsewhere. Twilio's webhooks are further refused without `X-Twilio-Signature` before their body is read, by
//! [`require_twilio_signature`] on those routes.
//! HTTP semantics: RFC 9110, sections 15.5.9 (408) and 15.5.14 (413).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, HttpResponse, web};
use bytes::Bytes;
use futures_util::Stream;

use crate::http::auth::json_error;
use crate::http::state::AppState;
use crate::security::rate_limit::{RouteClass, route_class};

/// The header carrying Twilio's request signature.
const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// What a request's head says about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredBody {
    /// No body: no `Content-Length` (or 0) and no `Transfer-Encoding`, or a WebSocket upgrade.
    None,
    /// A body of this many bytes, at most the limit.
    Length(u64),
    /// A body of unknown length (`Transfer-Encoding: chunked`).
    Unknown,
    /// A declared `Content-Length` over the limit: refused with 413 before it is read.
    TooLarge {
        /// The declared length, bytes.
        declared_bytes: u64,
    },
}

/// Reads the body a head declares, against a limit of `max_body_bytes`. A `Content-Length` actix could not parse
/// never gets here (actix answers 400 itself).
pub fn declared_body(headers: &HeaderMap, is_upgrade: bool, max_body_bytes: usize) -> DeclaredBody {
    if is_upgrade {
        return DeclaredBody::None;
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return DeclaredBody::Unknown;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    match length {
        None | Some(0) => DeclaredBody::None,
        Some(declared_bytes) if declared_bytes > max_body_bytes as u64 => {
            DeclaredBody::TooLarge { declared_bytes }
        }
        Some(length) => DeclaredBody::Length(length),
    }
}

/// How far a guarded body has come, shared between the payload wrapper and the middleware (one request, one
/// worker thread: `Rc<Cell>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProgress {
    /// Bytes are still expected.
    Arriving {
        /// Bytes received so far.
        received_bytes: u64,
    },
    /// The whole body has arrived.
    Complete,
    /// More bytes came than the limit allows (a chunked body): cut with 413.
    Overflow,
    /// The body was still incomplete at its deadline: cut with 408.
    TimedOut,
}

impl BodyProgress {
    /// The progress after `chunk_bytes` more bytes arrived, against a limit of `max_body_bytes`.
    pub fn received(self, chunk_bytes: usize, max_body_bytes: usize) -> Self {
        match self {
            BodyProgress::Arriving { received_bytes } => {
                let received_bytes = received_bytes.saturating_add(chunk_bytes as u64);
                if received_bytes > max_body_bytes as u64 {
                    BodyProgress::Overflow
                } else {
                    BodyProgress::Arriving { received_bytes }
                }
            }
            other => other,
        }
    }
}

/// A request payload that reports its progress, stops with [`PayloadError::Overflow`] past the limit and with a
/// timed-out I/O error when the body is still incomplete at its deadline.
pub struct GuardedPayload {
    /// The request's own payload.
    inner: Payload,
    /// Shared with [`guard_body`].
    progress: Rc<Cell<BodyProgress>>,
    /// The body limit, bytes.
    max_body_bytes: usize,
    /// When the whole body must have arrived.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for GuardedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.progress.get() {
            BodyProgress::Overflow => return Poll::Ready(Some(Err(PayloadError::Overflow))),
            BodyProgress::TimedOut => return Poll::Ready(Some(Err(timed_out()))),
            BodyProgress::Complete => return Poll::Ready(None),
            BodyProgress::Arriving { .. } => {}
        }
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let next = self
                    .progress
                    .get()
                    .received(chunk.len(), self.max_body_bytes);
                self.progress.set(next);
                if next == BodyProgress::Overflow {
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
            }
            Poll::Ready(None) => self.progress.set(BodyProgress::Complete),
            Poll::Ready(Some(Err(_))) => {}
            // Nothing to read now: the body is late if its deadline has passed (polling the timer also wakes this
            // task at the deadline).
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.progress.set(BodyProgress::TimedOut);
                    return Poll::Ready(Some(Err(timed_out())));
                }
            }
        }
        polled
    }
}

/// The error a late body ends with.
fn timed_out() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the request body did not arrive in time",
    ))
}

/// Why the guard answered instead of the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// 413: the body is over the limit (declared or counted).
    TooLarge { max_body_bytes: usize },
    /// 408: the body did not arrive in time.
    TooSlow { body_timeout: Duration },
}

/// The refusal's answer: the `/api` JSON error under `/api` and `/mcp`, plain text elsewhere; the connection is
/// closed after it.
fn refusal_response(class: RouteClass, refusal: Refusal) -> HttpResponse {
    let (status, code, message) = match refusal {
        Refusal::TooLarge { max_body_bytes } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {max_body_bytes} bytes"),
        ),
        Refusal::TooSlow { body_timeout } => (
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s of its head",
                body_timeout.as_secs()
            ),
        ),
    };
    let mut response = match class {
        RouteClass::Api => json_error(status, code, &message),
        RouteClass::Webhook | RouteClass::Exempt => HttpResponse::build(status)
            .content_type("text/plain; charset=utf-8")
            .body(format!("{message}\n")),
    };
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    response
}

/// Middleware on the whole app (`App::new().wrap(middleware::from_fn(guard_body))`): refuses a declared body over
/// `max_body_bytes` with 413 before reading it, and answers 408 when the body has not fully arrived `body_timeout_s`
/// after the head (413 when a chunked body grows over the limit), whatever the route made of the body's error. See
/// the module docs. Reads the limits from the `web::Data<AppState>` app data.
///
/// # Errors
/// Only the wrapped service's own errors; refusals are answered as responses.
pub async fn guard_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some((max_body_bytes, body_timeout)) = req.app_data::<web::Data<AppState>>().map(|state| {
        (
            state.settings.security.max_body_bytes,
            state.settings.security.body_timeout,
        )
    }) else {
        // A wiring mistake, not something a peer can cause; the routes themselves need AppState anyway.
        tracing::error!("body guard without AppState in the app data; not guarding");
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let class = route_class(req.match_info().as_str());
    match declared_body(req.headers(), req.head().upgrade(), max_body_bytes) {
        DeclaredBody::None => return Ok(next.call(req).await?.map_into_boxed_body()),
        DeclaredBody::TooLarge { declared_bytes } => {
            tracing::debug!(path = %req.path(), declared_bytes, max_body_bytes, "request refused: body too large");
            let refusal = refusal_response(class, Refusal::TooLarge { max_body_bytes });
            return Ok(req.into_response(refusal).map_into_boxed_body());
        }
        DeclaredBody::Length(_) | DeclaredBody::Unknown => {}
    }
    let progress = Rc::new(Cell::new(BodyProgress::Arriving { received_bytes: 0 }));
    let guarded: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(GuardedPayload {
            inner: req.take_payload(),
            progress: progress.clone(),
            max_body_bytes,
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
        });
    req.set_payload(Payload::from(guarded));
    let response = next.call(req).await?;
    let refusal = match progress.get() {
        BodyProgress::Overflow => Refusal::TooLarge { max_body_bytes },
        BodyProgress::TimedOut => Refusal::TooSlow { body_timeout },
        BodyProgress::Arriving { .. } | BodyProgress::Complete => {
            return Ok(response.map_into_boxed_body());
        }
    };
    tracing::debug!(path = %response.request().path(), ?refusal, "request refused by the body guard");
    Ok(response
        .into_response(refusal_response(class, refusal))
        .map_into_boxed_body())
}

/// Route middleware for Twilio's webhooks (`web::resource(..).wrap(middleware::from_fn(require_twilio_signature))`):
/// a request without `X-Twilio-Signature` (or with an empty one) is answered `403` before its body is read. The signature itself is
/// checked by the handler, which needs the body (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>).
///
/// # Errors
/// Only the wrapped service's own errors; refusals are answered as responses.
pub async fn require_twilio_signature(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let signed = req
        .headers()
        .get(SIGNATURE_HEADER)
        .is_some_and(|value| !value.is_empty());
    if signed {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    tracing::warn!(path = %req.path(), "webhook without X-Twilio-Signature refused");
    let mut response = HttpResponse::Forbidden()
        .content_type("text/plain; charset=utf-8")
        .body("invalid Twilio signature\n");
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(req.into_response(response).map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
        map
    }

    #[test]
    fn a_head_without_a_length_or_encoding_has_no_body() {
        assert_eq!(
            declared_body(&HeaderMap::new(), false, 10),
            DeclaredBody::None
        );
        assert_eq!(
            declared_body(&headers(&[("content-length", "0")]), false, 10),
            DeclaredBody::None
        );
    }

    #[test]
    fn a_declared_length_over_the_limit_is_too_large_and_at_the_limit_is_not() {
        assert_eq!(
            declared_body(
                &headers(&[("content-length", "10000000000")]),
                false,
                65_536
            ),
            DeclaredBody::TooLarge {
                declared_bytes: 10_000_000_000
            }
        );
        assert_eq!(
            declared_body(&headers(&[("content-length", "65536")]), false, 65_536),
            DeclaredBody::Length(65_536)
        );
    }

    #[test]
    fn a_chunked_body_has_an_unknown_length() {
        let head = headers(&[("transfer-encoding", "chunked")]);

        assert_eq!(declared_body(&head, false, 10), DeclaredBody::Unknown);
    }

    #[test]
    fn a_websocket_upgrade_has_no_body_to_time() {
        let head = headers(&[("content-length", "10000000000")]);

        assert_eq!(declared_body(&head, true, 10), DeclaredBody::None);
    }

    #[test]
    fn bytes_past_the_limit_overflow_and_a_finished_body_stays_finished() {
        let start = BodyProgress::Arriving { received_bytes: 0 };

        let within = start.received(10, 10);
        let over = within.received(1, 10);

        assert_eq!(within, BodyProgress::Arriving { received_bytes: 10 });
        assert_eq!(over, BodyProgress::Overflow);
        assert_eq!(
            BodyProgress::Complete.received(100, 10),
            BodyProgress::Complete
        );
    }

    #[test]
    fn refusals_under_api_and_mcp_are_json_and_close_the_connection() {
        let response = refusal_response(
            RouteClass::Api,
            Refusal::TooSlow {
                body_timeout: Duration::from_secs(10),
            },
        );

        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        assert_eq!(
            response.head().connection_type(),
            actix_web::http::ConnectionType::Close
        );
    }

    proptest! {
        #[test]
        fn any_content_length_is_read_without_panicking(value in "[ -~]{0,30}", limit in 0usize..1_000_000) {
            let Ok(value) = HeaderValue::from_str(&value) else { return Ok(()) };
            let mut head = HeaderMap::new();
            head.insert(header::CONTENT_LENGTH, value);

            let declared = declared_body(&head, false, limit);

            if let DeclaredBody::Length(n) = declared {
                prop_assert!(n as usize <= limit);
            }
        }
    }
}
