//! The rate-limit middleware: asks [`crate::security::rate_limit`]'s limiters about each request before routing and
//! answers `429 Too Many Requests` with `Retry-After` (RFC 9110, section 10.2.3) when one says no, so a refused
//! request reaches no handler.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};

use crate::http::auth::{check_bearer, json_error};
use crate::http::state::AppState;
use crate::security::rate_limit::{RateLimited, RouteClass, client_ip, route_class};

/// The `429` answer: `Retry-After` and a short body, JSON for `/api` and `/mcp`.
fn too_many_requests(class: RouteClass, refusal: RateLimited) -> HttpResponse {
    let mut response = match class {
        RouteClass::Api => json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &refusal.to_string(),
        ),
        RouteClass::Webhook | RouteClass::Exempt => HttpResponse::TooManyRequests()
            .content_type("text/plain; charset=utf-8")
            .body("Too many requests\n"),
    };
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(refusal.retry_after_s),
    );
    response
}

/// Middleware on the whole app (`App::new().wrap(middleware::from_fn(limit_requests))`): counts each request
/// against its limiter ([`route_class`]) and answers `429` with `Retry-After` when over the limit, without calling
/// the routes. Reads the limiters and `trust_forwarded_headers` from the `web::Data<AppState>` app data.
///
/// # Errors
/// Only the wrapped service's own errors; refusals are answered as responses.
pub async fn limit_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let class = route_class(req.match_info().as_str());
    let verdict = match (class, req.app_data::<web::Data<AppState>>()) {
        (RouteClass::Exempt, _) => Ok(()),
        (_, None) => {
            // A wiring mistake, not something a peer can cause; the routes themselves need AppState anyway.
            tracing::error!("rate limits without AppState in the app data; not limiting");
            Ok(())
        }
        (RouteClass::Webhook, Some(state)) => {
            let ip = client_ip(
                req.peer_addr().map(|peer| peer.ip()),
                req.headers(),
                state.settings.trust_forwarded_headers,
            );
            state.limits.check_webhook(ip)
        }
        (RouteClass::Api, Some(state)) => {
            let ip = client_ip(
                req.peer_addr().map(|peer| peer.ip()),
                req.headers(),
                state.settings.trust_forwarded_headers,
            );
            let key_is_valid = check_bearer(req.request(), &state.api_key).is_ok();
            state
                .limits
                .check_api(state.limits.api_client(key_is_valid, ip))
        }
    };
    match verdict {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(refusal) => {
            tracing::debug!(
                path = %req.path(),
                retry_after_s = refusal.retry_after_s,
                "request refused: rate limit"
            );
            Ok(req
                .into_response(too_many_requests(class, refusal))
                .map_into_right_body())
        }
    }
}
