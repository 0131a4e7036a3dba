//! Request rate limits: keyed GCRA limiters from `governor`, checked by one actix middleware
//! (`http::rate_limit::limit_requests`) before routing, so a refused request reaches no handler: no stream token, no
//! Realtime session, no call placed. This module holds the limiters and the decisions; the middleware that asks them
//! lives with the other routes in `http/`.
//!
//! Two limiters, both keyed, both "N per minute" from the settings:
//! - **webhooks**, per client IP ([`bucket_ip`]): `/incoming-call`, `/outbound-call/{id}`, `/call-status`,
//!   `/media-stream/{token}` upgrades, and every other path except `/health` and `/ready` (a 404 scan is limited
//!   like a webhook flood). Quota `security.webhook_rate_limit_per_min`; all these routes share one bucket per IP;
//! - **API**, per key ([`ApiClient`]): `/api/...` and `/mcp`. A request whose bearer key is the configured one is
//!   counted against that key (held only as its SHA-256); any other request (no key, a wrong key) is counted
//!   against its client IP, so guessing keys does not mint fresh buckets. Quota `security.api_rate_limit_per_min`.
//!
//! The burst is the whole per-minute quota (governor's `Quota::per_minute(n)`): `n` requests may come at once, then
//! one more every `60/n` s. A user who sets "10 per minute" expects 10 requests within a minute to pass.
//!
//! Over the limit: `429 Too Many Requests` with `Retry-After: <seconds>` (RFC 9110, section 10.2.3: governor's wait
//! time rounded up, at least 1) and a short body (the `/api` JSON error for `/api` and `/mcp`).
//!
//! The client IP is the socket's peer address; with `trust_forwarded_headers` it is the **last** address of
//! `X-Forwarded-For` (the one the trusted proxy itself appended: the addresses before it are whatever the client
//! sent, and would let it pick its own bucket). A missing or malformed header falls back to the peer. IPv6 clients
//! are bucketed by their /64 network, the block one subscriber usually holds.
//!
//! Memory stays bounded: every [`RETAIN_EVERY`] checks, keys whose bucket has refilled are dropped
//! (`retain_recent`), so the maps hold only the clients seen within about a minute.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::config::Settings;

/// How many checks pass between two sweeps of refilled buckets out of the limiters.
pub const RETAIN_EVERY: u64 = 1024;
/// The `X-Forwarded-For` header (de-facto standard; RFC 7239 `Forwarded` is not read).
const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// Bits of an IPv6 address that name the client's network (the rest is the host part, free to vary).
const IPV6_CLIENT_PREFIX_BITS: u32 = 64;

/// Which limiter a request path falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// `/health` and `/ready`: never limited (probes, load balancers).
    Exempt,
    /// Twilio webhooks, media-stream upgrades and any other path: per client IP.
    Webhook,
    /// `/api/...` and `/mcp`: per API key.
    Api,
}

/// The limiter for `path` (the routed path: percent-decoded as actix routes it).
pub fn route_class(path: &str) -> RouteClass {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    match path {
        "/health" | "/ready" => RouteClass::Exempt,
        _ if under("/api") || under("/mcp") => RouteClass::Api,
        _ => RouteClass::Webhook,
    }
}

/// What an `/api` or `/mcp` request is counted against. Never holds a raw key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiClient {
    /// A request carrying the configured bearer key: the SHA-256 of that key.
    Key([u8; 32]),
    /// A request without a valid key: its client IP (as [`bucket_ip`] gives it).
    Ip(IpAddr),
}

/// A refusal: the client is over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests: retry after {retry_after_s} s")]
pub struct RateLimited {
    /// Whole seconds until a request can pass again (at least 1): the `Retry-After` value.
    pub retry_after_s: u64,
}

/// The rate limiters of the server, shared by every worker through the HTTP layer's app state (`AppState`).
pub struct Limits {
    /// Per client IP on the webhooks, media-stream upgrades and unknown paths.
    webhook: DefaultKeyedRateLimiter<IpAddr>,
    /// Per API key (or client IP without a valid key) on `/api` and `/mcp`.
    api: DefaultKeyedRateLimiter<ApiClient>,
    /// SHA-256 of the configured API key, the bucket of every request presenting it; `None` without a key.
    api_key_sha256: Option<[u8; 32]>,
    /// The clock the limiters decide with, to turn a refusal into a wait time.
    clock: DefaultClock,
    /// Checks made so far, to sweep refilled buckets every [`RETAIN_EVERY`] checks.
    checks: AtomicU64,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("webhook_clients", &self.webhook.len())
            .field("api_clients", &self.api.len())
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// The limiters of `settings.security` (`webhook_rate_limit_per_min`, `api_rate_limit_per_min`; a 0, which
    /// the settings refuse, is taken as 1) for the API key `settings.api_key`.
    pub fn new(settings: &Settings) -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self::with_quotas(
            per_minute(settings.security.webhook_rate_limit_per_min),
            per_minute(settings.security.api_rate_limit_per_min),
            &settings.api_key,
        )
    }

    /// Limiters with explicit quotas (tests use short periods).
    pub fn with_quotas(webhook: Quota, api: Quota, api_key: &SecretString) -> Self {
        let key = api_key.expose_secret();
        Limits {
            webhook: DefaultKeyedRateLimiter::keyed(webhook),
            api: DefaultKeyedRateLimiter::keyed(api),
            api_key_sha256: (!key.is_empty()).then(|| Sha256::digest(key.as_bytes()).into()),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one webhook (or media-stream upgrade) request from `client_ip`.
    ///
    /// # Errors
    /// [`RateLimited`] when that IP (its /64 for IPv6) is over `webhook_rate_limit_per_min`.
    pub fn check_webhook(&self, client_ip: IpAddr) -> Result<(), RateLimited> {
        self.sweep_now_and_then();
        self.webhook
            .check_key(&bucket_ip(client_ip))
            .map_err(|not_until| RateLimited {
                retry_after_s: retry_after_s(not_until.wait_time_from(self.clock.now())),
            })
    }

    /// Counts one `/api` or `/mcp` request from `client`.
    ///
    /// # Errors
    /// [`RateLimited`] when `client` is over `api_rate_limit_per_min`.
    pub fn check_api(&self, client: ApiClient) -> Result<(), RateLimited> {
        self.sweep_now_and_then();
        self.api
            .check_key(&client)
            .map_err(|not_until| RateLimited {
                retry_after_s: retry_after_s(not_until.wait_time_from(self.clock.now())),
            })
    }

    /// What an API request is counted against: the configured key when it presents it (`key_is_valid`), else its
    /// client IP.
    pub fn api_client(&self, key_is_valid: bool, client_ip: IpAddr) -> ApiClient {
        match self.api_key_sha256 {
            Some(digest) if key_is_valid => ApiClient::Key(digest),
            _ => ApiClient::Ip(bucket_ip(client_ip)),
        }
    }

    /// How many clients the limiters currently track (webhook, API).
    pub fn tracked_clients(&self) -> (usize, usize) {
        (self.webhook.len(), self.api.len())
    }

    /// Every [`RETAIN_EVERY`] checks, drops the buckets that have refilled (they equal a fresh one).
    fn sweep_now_and_then(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.webhook.retain_recent();
            self.webhook.shrink_to_fit();
            self.api.retain_recent();
            self.api.shrink_to_fit();
        }
    }
}

/// `Retry-After` seconds for a wait: rounded up to whole seconds, at least 1 (a 0 would invite an immediate retry
/// that is still refused).
pub fn retry_after_s(wait: Duration) -> u64 {
    let whole = wait.as_secs();
    let rounded = if wait.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    };
    rounded.max(1)
}

/// The bucket of an IP: IPv4 as is (also when written IPv4-mapped in IPv6), IPv6 cut to its /64 network.
pub fn bucket_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_CLIENT_PREFIX_BITS);
                IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
            }
        },
    }
}

/// The client IP of a request: `peer`, or with `trust_forwarded_headers` the last address of the first
/// `X-Forwarded-For` header (`1.2.3.4`, `2001:db8::1`, and the `1.2.3.4:5678` / `[2001:db8::1]:5678` forms some
/// proxies send). A missing or malformed header falls back to `peer`; without a peer (not a TCP connection), the
/// unspecified address `0.0.0.0`, one shared bucket.
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trust_forwarded_headers: bool,
) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    if !trust_forwarded_headers {
        return peer;
    }
    headers
        .get(X_FORWARDED_FOR)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(parse_forwarded_address)
        .unwrap_or(peer)
}

/// One `X-Forwarded-For` element as an IP, with or without a port; `None` when it is neither.
fn parse_forwarded_address(element: &str) -> Option<IpAddr> {
    let element = element.trim();
    element
        .parse::<IpAddr>()
        .ok()
        .or_else(|| element.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test IP")
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                HeaderName::from_static(X_FORWARDED_FOR),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
        headers
    }

    fn limits(webhook_per_min: u32, api_per_min: u32, key: &str) -> Limits {
        let per_minute = |n| Quota::per_minute(NonZeroU32::new(n).expect("non-zero"));
        Limits::with_quotas(
            per_minute(webhook_per_min),
            per_minute(api_per_min),
            &SecretString::from(key.to_owned()),
        )
    }

    #[test]
    fn a_wait_is_rounded_up_to_whole_seconds() {
        assert_eq!(retry_after_s(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_s(Duration::from_millis(29_999)), 30);
        assert_eq!(retry_after_s(Duration::from_secs(30)), 30);
        assert_eq!(retry_after_s(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn retry_after_is_never_zero() {
        assert_eq!(retry_after_s(Duration::ZERO), 1);
    }

    #[test]
    fn the_peer_address_is_the_client_when_forwarded_headers_are_not_trusted() {
        let headers = forwarded(&["203.0.113.7"]);

        assert_eq!(client_ip(Some(PEER), &headers, false), PEER);
    }

    #[test]
    fn a_trusted_x_forwarded_for_names_the_client() {
        let headers = forwarded(&["203.0.113.7"]);

        assert_eq!(client_ip(Some(PEER), &headers, true), ip("203.0.113.7"));
    }

    #[test]
    fn the_last_forwarded_address_is_the_one_the_trusted_proxy_added() {
        let headers = forwarded(&["198.51.100.1, 10.0.0.1,  203.0.113.7 "]);

        assert_eq!(client_ip(Some(PEER), &headers, true), ip("203.0.113.7"));
    }

    #[test]
    fn forwarded_addresses_with_ports_and_ipv6_are_understood() {
        for (value, expected) in [
            ("203.0.113.7:5678", "203.0.113.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
        ] {
            let headers = forwarded(&[value]);

            assert_eq!(
                client_ip(Some(PEER), &headers, true),
                ip(expected),
                "{value}"
            );
        }
    }

    #[test]
    fn a_malformed_or_missing_forwarded_header_falls_back_to_the_peer() {
        for value in [
            "",
            "unknown",
            "203.0.113",
            "203.0.113.7,",
            "not an ip",
            "::ffff:zz",
        ] {
            let headers = forwarded(&[value]);

            assert_eq!(client_ip(Some(PEER), &headers, true), PEER, "{value:?}");
        }
        assert_eq!(client_ip(Some(PEER), &HeaderMap::new(), true), PEER);
    }

    #[test]
    fn a_request_without_a_peer_counts_as_the_unspecified_address() {
        assert_eq!(client_ip(None, &HeaderMap::new(), false), ip("0.0.0.0"));
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64_network_and_mapped_ipv4_is_ipv4() {
        assert_eq!(bucket_ip(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            bucket_ip(ip("2001:db8:1:2:ffff::9")),
            bucket_ip(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            bucket_ip(ip("2001:db8:1:3::1")),
            bucket_ip(ip("2001:db8:1:2::1"))
        );
        assert_eq!(bucket_ip(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(bucket_ip(ip("203.0.113.7")), ip("203.0.113.7"));
    }

    #[test]
    fn paths_fall_under_the_right_limiter() {
        for (path, class) in [
            ("/health", RouteClass::Exempt),
            ("/ready", RouteClass::Exempt),
            ("/incoming-call", RouteClass::Webhook),
            ("/outbound-call/abc", RouteClass::Webhook),
            ("/call-status", RouteClass::Webhook),
            ("/media-stream/token", RouteClass::Webhook),
            ("/nonexistent", RouteClass::Webhook),
            ("/health/x", RouteClass::Webhook),
            ("/apiary", RouteClass::Webhook),
            ("/api", RouteClass::Api),
            ("/api/calls", RouteClass::Api),
            ("/mcp", RouteClass::Api),
            ("/mcp/", RouteClass::Api),
        ] {
            assert_eq!(route_class(path), class, "{path}");
        }
    }

    #[test]
    fn the_request_past_the_quota_is_refused_with_a_retry_after() {
        let limits = limits(2, 2, "key");

        assert_eq!(limits.check_webhook(PEER), Ok(()));
        assert_eq!(limits.check_webhook(PEER), Ok(()));
        let refusal = limits
            .check_webhook(PEER)
            .expect_err("the third is over 2/min");

        // One request comes back every 30 s at 2 per minute.
        assert!((1..=30).contains(&refusal.retry_after_s), "{refusal:?}");
        assert!(refusal.retry_after_s >= 29, "{refusal:?}");
    }

    #[test]
    fn another_client_ip_has_its_own_bucket() {
        let limits = limits(1, 1, "key");
        limits.check_webhook(PEER).expect("the first request");
        assert!(limits.check_webhook(PEER).is_err());

        let other = limits.check_webhook(ip("198.51.100.1"));

        assert_eq!(other, Ok(()));
    }

    #[test]
    fn the_api_key_has_one_bucket_and_keyless_clients_are_counted_by_ip() {
        let limits = limits(1, 1, "key");
        let with_key = limits.api_client(true, PEER);
        let from_elsewhere_with_key = limits.api_client(true, ip("198.51.100.1"));
        let without_key = limits.api_client(false, PEER);
        assert_eq!(with_key, from_elsewhere_with_key);
        assert_eq!(without_key, ApiClient::Ip(PEER));

        limits.check_api(with_key).expect("the first keyed request");
        let keyed_again = limits.check_api(from_elsewhere_with_key);
        let keyless = limits.check_api(without_key);

        assert!(keyed_again.is_err());
        assert_eq!(keyless, Ok(()));
    }

    #[test]
    fn the_key_is_held_only_as_its_sha256() {
        let limits = limits(1, 1, "super-secret-key");

        let ApiClient::Key(digest) = limits.api_client(true, PEER) else {
            panic!("a keyed client");
        };

        let expected: [u8; 32] = Sha256::digest(b"super-secret-key").into();
        assert_eq!(digest, expected);
        assert!(!format!("{limits:?}").contains("super-secret-key"));
    }

    #[test]
    fn without_a_configured_key_every_api_client_is_counted_by_ip() {
        let limits = limits(1, 1, "");

        assert_eq!(limits.api_client(true, PEER), ApiClient::Ip(PEER));
    }

    #[test]
    fn refilled_buckets_are_swept_so_memory_stays_bounded() {
        // 1000 per second: a bucket of one refills in 1 ms.
        let quota = Quota::per_second(NonZeroU32::new(1_000).expect("non-zero"))
            .allow_burst(NonZeroU32::MIN);
        let limits = Limits::with_quotas(quota, quota, &SecretString::from("k".to_owned()));
        for n in 0..RETAIN_EVERY / 2 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from_bits(0x0a00_0000 + n as u32));
            limits.check_webhook(addr).expect("a fresh client");
        }
        assert_eq!(limits.tracked_clients().0, (RETAIN_EVERY / 2) as usize);
        std::thread::sleep(Duration::from_millis(20));

        for _ in 0..RETAIN_EVERY / 2 {
            let _ = limits.check_webhook(PEER);
        }

        assert!(
            limits.tracked_clients().0 <= 1,
            "{:?}",
            limits.tracked_clients()
        );
    }

    proptest! {
        #[test]
        fn any_forwarded_header_gives_an_ip_without_panicking(value in "[ -~]{0,80}") {
            let Ok(header) = HeaderValue::from_str(&value) else { return Ok(()) };
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_static(X_FORWARDED_FOR), header);

            let _ = client_ip(Some(PEER), &headers, true);
        }

        #[test]
        fn retry_after_covers_the_whole_wait(wait_ms in 0u64..10_000_000) {
            let wait = Duration::from_millis(wait_ms);

            let seconds = retry_after_s(wait);

            prop_assert!(Duration::from_secs(seconds) >= wait);
            prop_assert!(Duration::from_secs(seconds) < wait + Duration::from_secs(1) || seconds == 1);
        }
    }
}
