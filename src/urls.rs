//! Public URLs and route paths: the leaf every layer asks for "where does Twilio reach this route".
//!
//! Twilio signs the exact URL it requested, and the TwiML stream URL must point back at the same host. Behind a
//! TLS-terminating tunnel the server only sees its local address, so the public URL is either configured
//! (`PUBLIC_URL`, which always wins) or — only when `CALLBRIDGE_TRUST_FORWARDED_HEADERS` is set — taken from the
//! request's `X-Forwarded-Proto` and `X-Forwarded-Host` (else `Host`), which a tunnel such as cloudflared fills in.
//! Untrusted forwarded headers are never read: anyone could send them.
//!
//! This module depends on nothing in the crate, so configuration, the Twilio REST client, start-up and the HTTP
//! routes can all use it without depending on each other.

use url::Url;

/// The path of the inbound-call webhook Twilio requests when a call comes in (`POST`, form-encoded); the number's
/// `VoiceUrl` points here.
pub const INCOMING_CALL_PATH: &str = "/incoming-call";

/// The path of the status-callback webhook Twilio requests as an outbound call rings, answers and ends (`POST`).
pub const CALL_STATUS_PATH: &str = "/call-status";

/// The route pattern (actix syntax) of the outbound-call webhook; see [`outbound_call_path`].
pub const OUTBOUND_CALL_ROUTE: &str = "/outbound-call/{call_id}";

/// The path of the webhook Twilio requests when the outbound call `call_id` (`call_...`) is answered: the TwiML that
/// connects its media stream comes from there.
pub fn outbound_call_path(call_id: &str) -> String {
    format!("/outbound-call/{call_id}")
}

/// The route pattern (actix syntax) of the answering machine detection callback; see [`amd_status_path`].
pub const AMD_STATUS_ROUTE: &str = "/amd-status/{call_id}";

/// The path of the webhook Twilio requests with the answering machine verdict (`AsyncAmdStatusCallback`) of the
/// outbound call `call_id`.
pub fn amd_status_path(call_id: &str) -> String {
    format!("/amd-status/{call_id}")
}

/// The route pattern (actix syntax) of the recording status callback; see [`recording_status_path`].
pub const RECORDING_STATUS_ROUTE: &str = "/recording-status/{call_id}";

/// The path of the webhook Twilio requests with the status of a recording of the call `call_id`
/// (`RecordingStatusCallback`, `<Recording recordingStatusCallback>`).
pub fn recording_status_path(call_id: &str) -> String {
    format!("/recording-status/{call_id}")
}

/// The route of a transfer's whisper (`<Number url>`): TwiML `<Say>` for the person before the two are connected.
pub const TRANSFER_WHISPER_ROUTE: &str = "/transfer/{id}/whisper";
/// The route of a transfer's `<Dial action>`: Twilio reports `DialCallStatus` there.
pub const TRANSFER_ACTION_ROUTE: &str = "/transfer/{id}/action";

/// The path of transfer `id`'s whisper webhook.
pub fn transfer_whisper_path(id: &str) -> String {
    format!("/transfer/{id}/whisper")
}

/// The path of transfer `id`'s `<Dial action>` webhook.
pub fn transfer_action_path(id: &str) -> String {
    format!("/transfer/{id}/action")
}

/// The `wss://` URL Twilio opens for a stream token: `{public_base}/media-stream/{token}` (`ws://` when the public URL
/// is plain http, for local testing).
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

/// The base URL media streams are given (see [`stream_url`]): the per-instance `CALLBRIDGE_STREAM_PUBLIC_URL` when
/// configured (no trailing slash), else `public_base`, the public URL the webhook was addressed to.
pub fn stream_base(stream_public_url: Option<&Url>, public_base: &str) -> String {
    match stream_public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => public_base.to_owned(),
    }
}

/// Joins a route path onto the public base URL, keeping any path prefix: `https://h/p` + `/incoming-call` →
/// `https://h/p/incoming-call`. `path` starts with `/`.
pub fn public_endpoint(public_url: &Url, path: &str) -> String {
    format!("{}{}", public_url.as_str().trim_end_matches('/'), path)
}

/// The request headers that can tell the public URL.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardedHeaders<'a> {
    /// `X-Forwarded-Proto` (`https`), first value if a list.
    pub proto: Option<&'a str>,
    /// `X-Forwarded-Host`, first value if a list.
    pub host: Option<&'a str>,
    /// `Host`.
    pub plain_host: Option<&'a str>,
}

/// The public base URL (scheme, host, optional port and path prefix; no trailing slash) for a request.
///
/// `configured` wins; otherwise, with `trust_forwarded`, `proto://host` from the headers (`https` when no proto is
/// given, since Twilio only calls https webhooks). `None` when there is no way to tell, or when the forwarded values
/// are not a plain scheme and host (a header carrying a path, spaces or credentials is refused).
pub fn public_base(
    configured: Option<&Url>,
    trust_forwarded: bool,
    headers: ForwardedHeaders<'_>,
) -> Option<String> {
    if let Some(url) = configured {
        return Some(url.as_str().trim_end_matches('/').to_owned());
    }
    if !trust_forwarded {
        return None;
    }
    let first = |v: &str| v.split(',').next().unwrap_or("").trim().to_owned();
    let proto = headers
        .proto
        .map(first)
        .unwrap_or_else(|| "https".to_owned())
        .to_ascii_lowercase();
    if proto != "https" && proto != "http" {
        return None;
    }
    let host = headers.host.or(headers.plain_host).map(first)?;
    let parsed = Url::parse(&format!("{proto}://{host}")).ok()?;
    // Only scheme://host[:port] may come from a header.
    let plain = parsed.path() == "/"
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.host_str().is_some();
    plain.then(|| parsed.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(
        proto: Option<&'a str>,
        host: Option<&'a str>,
        plain_host: Option<&'a str>,
    ) -> ForwardedHeaders<'a> {
        ForwardedHeaders {
            proto,
            host,
            plain_host,
        }
    }

    #[test]
    fn a_public_endpoint_keeps_the_path_prefix_of_the_public_url() {
        let url = Url::parse("https://x.example/voice/").expect("url");
        assert_eq!(
            public_endpoint(&url, INCOMING_CALL_PATH),
            "https://x.example/voice/incoming-call"
        );
        let bare = Url::parse("https://x.example").expect("url");
        assert_eq!(
            public_endpoint(&bare, "/call-status"),
            "https://x.example/call-status"
        );
    }

    #[test]
    fn the_stream_base_is_the_stream_public_url_when_set_else_the_public_base() {
        let instance = Url::parse("https://cb-a.example/voice/").expect("url");
        assert_eq!(
            stream_base(Some(&instance), "https://cb.example"),
            "https://cb-a.example/voice"
        );
        assert_eq!(
            stream_base(None, "https://cb.example"),
            "https://cb.example"
        );
    }

    #[test]
    fn the_outbound_call_path_fills_the_route_pattern() {
        assert_eq!(
            OUTBOUND_CALL_ROUTE.replace("{call_id}", "call_1"),
            outbound_call_path("call_1")
        );
    }

    #[test]
    fn the_amd_status_path_fills_the_route_pattern() {
        assert_eq!(
            AMD_STATUS_ROUTE.replace("{call_id}", "call_1"),
            amd_status_path("call_1")
        );
    }

    #[test]
    fn the_configured_url_wins_over_trusted_forwarded_headers() {
        let configured = Url::parse("https://configured.example/voice").expect("url");
        let base = public_base(
            Some(&configured),
            true,
            headers(Some("https"), Some("evil.example"), None),
        );
        assert_eq!(base.as_deref(), Some("https://configured.example/voice"));
    }

    #[test]
    fn forwarded_headers_are_ignored_unless_trusted() {
        assert_eq!(
            public_base(
                None,
                false,
                headers(Some("https"), Some("tunnel.example"), None)
            ),
            None
        );
    }

    #[test]
    fn trusted_forwarded_headers_give_the_public_url() {
        let base = public_base(
            None,
            true,
            headers(
                Some("https"),
                Some("abc.trycloudflare.com"),
                Some("127.0.0.1:5050"),
            ),
        );
        assert_eq!(base.as_deref(), Some("https://abc.trycloudflare.com"));
    }

    #[test]
    fn the_host_header_is_used_when_no_forwarded_host_is_given_and_https_is_assumed() {
        let base = public_base(
            None,
            true,
            headers(None, None, Some("abc.trycloudflare.com")),
        );
        assert_eq!(base.as_deref(), Some("https://abc.trycloudflare.com"));
    }

    #[test]
    fn the_first_of_a_list_of_forwarded_values_counts() {
        let base = public_base(
            None,
            true,
            headers(Some("https, http"), Some("a.example, b.example"), None),
        );
        assert_eq!(base.as_deref(), Some("https://a.example"));
    }

    #[test]
    fn forwarded_values_that_are_not_a_plain_host_are_refused() {
        for host in ["a.example/path", "user@a.example", "a example", ""] {
            assert_eq!(
                public_base(None, true, headers(None, Some(host), None)),
                None,
                "{host:?}"
            );
        }
        assert_eq!(
            public_base(None, true, headers(Some("ftp"), Some("a.example"), None)),
            None
        );
    }
}
