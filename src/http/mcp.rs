//! `/mcp`: the MCP server as Streamable HTTP on the running server, through `rmcp-actix-web`.
//!
//! Every request passes these checks before rmcp sees it:
//! 1. the `Host` header must name this server: the host of `PUBLIC_URL`, or a loopback name (`localhost`,
//!    `127.0.0.1`, `::1`), any port — a defence against DNS rebinding (without `PUBLIC_URL`, and with trusted
//!    forwarded headers, the host the proxy forwarded for). A request without `Host` gets 400, another host 403;
//! 2. the bearer key, `Authorization: Bearer <CALLBRIDGE_API_KEY>` ([`crate::http::auth::require_bearer`]); 401
//!    without it.
//!
//! rmcp's own `Host` allowlist is switched off: it is fixed when the service is built, and [`service`] is built by
//! [`crate::http::configure`], which does not know `PUBLIC_URL`; the first check above reads it from the
//! [`AppState`] of each request instead.
//!
//! 3. a `POST` whose `Content-Type` is `application/json` but whose body is not JSON gets `400` with a JSON-RPC
//!    parse error (`-32700`, `id: null`), and one that is JSON but not a JSON-RPC message `400` with an invalid
//!    request error (`-32600`), as JSON-RPC 2.0 (section 5.1) and the Streamable HTTP transport ask; rmcp itself
//!    would answer `415` ([`refuse_malformed_json_rpc`]).
//!
//! The transport is stateless (no `Mcp-Session-Id`; `GET` and `DELETE` answer 405): every `POST` is served on its
//! own by a fresh [`McpServer`], whose backend is the server's [`CallService`], put in the request's extensions by
//! the `on_request` hook. Nothing ties a client to one actix worker or one instance. Responses are SSE streams with
//! a keep-alive comment every 15 s, so a `get_call` waiting up to 120 s survives proxies that close idle
//! connections (Cloudflare: 100 s). Streamable HTTP:
//! <https://modelcontextprotocol.io/specification/2025-11-25/basic/transports#streamable-http>.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{HttpServiceFactory, Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Next, from_fn};
use actix_web::{Error, HttpResponse, ResponseError, web};
use rmcp_actix_web::transport::{LocalSessionManager, StreamableHttpService};
use url::Url;

use crate::calls::service::CallService;
use crate::http::auth::{json_error, require_bearer};
use crate::http::state::AppState;
use crate::mcp::server::McpServer;
use crate::urls::{ForwardedHeaders, public_base};

/// Where the MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";
/// The `Host` names always accepted (any port): the server itself, reached over loopback.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// JSON-RPC 2.0 error code: the body is not JSON (<https://www.jsonrpc.org/specification#error_object>).
pub const JSONRPC_PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0 error code: the JSON is not a valid Request object.
pub const JSONRPC_INVALID_REQUEST: i64 = -32600;
/// How often an open SSE response gets a keep-alive comment.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Why a request's `Host` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// No `Host` header (nor an authority in the request line).
    #[error("the request has no Host header")]
    Missing,
    /// The `Host` is neither the public URL's host nor a loopback name.
    #[error("Host {0:?} is not this server: use the PUBLIC_URL host or localhost")]
    NotAllowed(String),
}

impl ResponseError for HostError {
    fn status_code(&self) -> StatusCode {
        match self {
            HostError::Missing => StatusCode::BAD_REQUEST,
            HostError::NotAllowed(_) => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            HostError::Missing => "missing_host",
            HostError::NotAllowed(_) => "host_not_allowed",
        };
        json_error(self.status_code(), code, &self.to_string())
    }
}

/// The host name of a `Host` header value (`name`, `name:port`, `[v6]`, `[v6]:port`), lowercased, without the
/// brackets of an IPv6 literal or a trailing dot. `None` when it is not of that shape.
pub fn host_name(authority: &str) -> Option<String> {
    let authority = authority.trim();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| port.bytes().all(|b| b.is_ascii_digit()));
        if !port_ok {
            return None;
        }
        v6
    } else {
        match authority.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    valid.then(|| host.to_ascii_lowercase())
}

/// Whether a request with `Host: authority` may reach the MCP server: its host is a loopback name or
/// `public_host` (any port).
pub fn host_is_allowed(authority: &str, public_host: Option<&str>) -> bool {
    let Some(host) = host_name(authority) else {
        return false;
    };
    LOOPBACK_HOSTS.contains(&host.as_str())
        || public_host
            .and_then(host_name)
            .is_some_and(|public| public == host)
}

/// The public host of the server for a request: `PUBLIC_URL`'s, else (with trusted forwarded headers) the one the
/// proxy forwarded for.
fn public_host(
    public_url: Option<&Url>,
    trust_forwarded: bool,
    headers: &HeaderMap,
) -> Option<String> {
    if let Some(url) = public_url {
        return url.host_str().map(str::to_owned);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let base = public_base(
        None,
        trust_forwarded,
        ForwardedHeaders {
            proto: header("x-forwarded-proto"),
            host: header("x-forwarded-host"),
            plain_host: header("host"),
        },
    )?;
    Url::parse(&base).ok()?.host_str().map(str::to_owned)
}

/// Checks the `Host` of a request against the server's public host and the loopback names.
///
/// # Errors
/// [`HostError::Missing`] without a host; [`HostError::NotAllowed`] for any other host.
pub fn check_host(
    headers: &HeaderMap,
    request_authority: Option<&str>,
    public_url: Option<&Url>,
    trust_forwarded: bool,
) -> Result<(), HostError> {
    let authority = headers
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or(""))
        .or(request_authority)
        .ok_or(HostError::Missing)?;
    let public = public_host(public_url, trust_forwarded, headers);
    if host_is_allowed(authority, public.as_deref()) {
        Ok(())
    } else {
        Err(HostError::NotAllowed(authority.to_owned()))
    }
}

/// Middleware: refuses a request whose `Host` is not this server (see [`check_host`]), reading the public URL from
/// the `web::Data<AppState>` app data.
///
/// # Errors
/// Only the wrapped service's own errors; refusals are answered as responses.
pub async fn require_allowed_host(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let verdict = match req.app_data::<web::Data<AppState>>() {
        Some(state) => check_host(
            req.headers(),
            req.uri().authority().map(|a| a.as_str()),
            state.public_url.as_ref(),
            state.settings.trust_forwarded_headers,
        ),
        None => {
            tracing::error!("/mcp without AppState in the app data; refusing the request");
            Err(HostError::NotAllowed(String::new()))
        }
    };
    match verdict {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(refusal) => {
            tracing::warn!(reason = %refusal, "MCP request refused: Host not allowed (DNS rebinding?)");
            Ok(req
                .into_response(refusal.error_response())
                .map_into_right_body())
        }
    }
}

/// A `400 Bad Request` carrying a JSON-RPC 2.0 error response with `id: null` (the id of a request that could not
/// be read): `{"jsonrpc":"2.0","id":null,"error":{"code":code,"message":message}}`.
pub fn json_rpc_error(code: i64, message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    }))
}

/// Whether a request says its body is JSON (`Content-Type: application/json`, parameters ignored).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Middleware: reads a JSON `POST` body (within the app's body limit) and answers `400` with a JSON-RPC parse error
/// when it is not JSON; otherwise hands the same bytes on to rmcp, and turns rmcp's `415` for JSON that is not a
/// JSON-RPC message into `400` with an invalid request error. Requests of another method or content type go to rmcp
/// untouched (`405`, `415` there are right).
///
/// # Errors
/// Only the wrapped service's own errors; refusals are answered as responses.
pub async fn refuse_malformed_json_rpc(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if req.method() != Method::POST || !is_json(req.headers()) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let body = match req.extract::<web::Bytes>().await {
        Ok(body) => body,
        Err(e) => return Ok(req.error_response(e).map_into_boxed_body()),
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        tracing::debug!(error = %e, "MCP request refused: the body is not JSON");
        let refusal = json_rpc_error(JSONRPC_PARSE_ERROR, &format!("Parse error: {e}"));
        return Ok(req.into_response(refusal).map_into_boxed_body());
    }
    req.set_payload(Payload::from(body));
    let response = next.call(req).await?;
    if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        // The content type was JSON and the body parsed: rmcp's 415 means it is not a JSON-RPC message.
        let refusal = json_rpc_error(
            JSONRPC_INVALID_REQUEST,
            "Invalid Request: the body is not a JSON-RPC 2.0 message",
        );
        return Ok(response.into_response(refusal).map_into_boxed_body());
    }
    Ok(response.map_into_boxed_body())
}

/// The `/mcp` service: the Host check, the bearer key, the JSON check, then rmcp's Streamable HTTP transport serving
/// [`McpServer`] over the request's [`CallService`]. JSON-RPC bodies over `max_body_bytes` are refused. Register it
/// with `cfg.service(http::mcp::service(max_body_bytes))`; the app must carry `web::Data<AppState>`.
pub fn service(max_body_bytes: usize) -> impl HttpServiceFactory {
    StreamableHttpService::builder()
        .service_factory(Arc::new(|| Ok(McpServer::<CallService>::per_request())))
        .session_manager(Arc::new(LocalSessionManager::default()))
        .stateful_mode(false)
        .sse_keep_alive(SSE_KEEP_ALIVE)
        .max_request_body_bytes(max_body_bytes)
        // Checked by `require_allowed_host`, which knows PUBLIC_URL (an empty list switches rmcp's check off).
        .allowed_hosts(Vec::new())
        .on_request_fn(|req, extensions| {
            if let Some(state) = req.app_data::<web::Data<AppState>>() {
                extensions.insert(state.calls.clone());
            }
        })
        .build()
        .scope_with_path(MCP_PATH)
        .wrap(from_fn(refuse_malformed_json_rpc))
        .wrap(from_fn(require_bearer))
        .wrap(from_fn(require_allowed_host))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                header::HeaderName::from_static(name),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
        map
    }

    fn public() -> Url {
        Url::parse("https://abc.trycloudflare.com").expect("a url")
    }

    #[test]
    fn host_names_lose_their_port_brackets_case_and_trailing_dot() {
        assert_eq!(
            host_name("Example.COM:8443").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_name("example.com.").as_deref(), Some("example.com"));
        assert_eq!(host_name("[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]").as_deref(), Some("::1"));
        assert_eq!(host_name("127.0.0.1").as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn malformed_hosts_have_no_name() {
        for bad in [
            "",
            ":80",
            "host:port",
            "[::1",
            "[::1]x",
            "a b",
            "user@host",
            "host/path",
        ] {
            assert_eq!(host_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loopback_names_are_allowed_on_any_port() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:5050",
            "[::1]:8080",
        ] {
            assert!(host_is_allowed(host, None), "{host}");
        }
    }

    #[test]
    fn the_public_urls_host_is_allowed_and_others_are_not() {
        assert!(host_is_allowed(
            "abc.trycloudflare.com",
            Some("abc.trycloudflare.com")
        ));
        assert!(host_is_allowed(
            "ABC.trycloudflare.com:443",
            Some("abc.trycloudflare.com")
        ));
        assert!(!host_is_allowed(
            "evil.example",
            Some("abc.trycloudflare.com")
        ));
        assert!(!host_is_allowed("abc.trycloudflare.com", None));
        assert!(!host_is_allowed("127.0.0.1.evil.example", None));
    }

    #[test]
    fn a_request_for_the_public_host_passes_the_check() {
        let request = headers(&[("host", "abc.trycloudflare.com")]);

        let verdict = check_host(&request, None, Some(&public()), false);

        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn a_rebound_host_is_refused_with_403() {
        let request = headers(&[("host", "attacker.example:5050")]);

        let verdict = check_host(&request, None, Some(&public()), false);

        let error = verdict.expect_err("another host");
        assert_eq!(error, HostError::NotAllowed("attacker.example:5050".into()));
        assert_eq!(error.status_code(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_request_without_a_host_is_refused_with_400() {
        let verdict = check_host(&HeaderMap::new(), None, Some(&public()), false);

        let error = verdict.expect_err("no host");
        assert_eq!(error, HostError::Missing);
        assert_eq!(error.status_code(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_request_lines_authority_stands_in_for_a_missing_host_header() {
        let verdict = check_host(&HeaderMap::new(), Some("localhost:8080"), None, false);

        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn forwarded_headers_name_the_public_host_only_when_trusted() {
        let request = headers(&[
            ("host", "abc.trycloudflare.com"),
            ("x-forwarded-host", "abc.trycloudflare.com"),
        ]);

        assert_eq!(check_host(&request, None, None, true), Ok(()));
        assert!(check_host(&request, None, None, false).is_err());
    }

    #[test]
    fn a_configured_public_url_wins_over_forwarded_headers() {
        let request = headers(&[
            ("host", "attacker.example"),
            ("x-forwarded-host", "attacker.example"),
        ]);

        let verdict = check_host(&request, None, Some(&public()), true);

        assert!(verdict.is_err());
    }

    proptest! {
        #[test]
        fn checking_any_host_header_never_panics(host in "[ -~]{0,64}") {
            let _ = host_is_allowed(&host, Some("abc.trycloudflare.com"));
        }

        #[test]
        fn only_loopback_or_the_public_host_is_allowed(name in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,10}){0,3}", port in proptest::option::of(1u16..)) {
            let authority = match port {
                Some(port) => format!("{name}:{port}"),
                None => name.clone(),
            };
            let allowed = host_is_allowed(&authority, Some("abc.trycloudflare.com"));
            let expected = name == "abc.trycloudflare.com" || name == "localhost" || name == "127.0.0.1";
            prop_assert_eq!(allowed, expected);
        }
    }
}
