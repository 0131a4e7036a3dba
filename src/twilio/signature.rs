//! `X-Twilio-Signature`: checking that a webhook (or a Media Streams WebSocket upgrade) really comes from Twilio.
//!
//! Owns the signing algorithm (HMAC-SHA1 keyed with the account auth token, over the URL followed by the sorted
//! form parameters), the default-port leniency of the official SDKs, the `bodySHA256` check for JSON-body
//! webhooks, and the form-body parser that yields the parameters in the shape the algorithm needs.
//!
//! It does not know which URL to check against: the caller rebuilds it from the configured public base URL
//! (Twilio signs the URL it was configured with), never from the `Host` header of a request it cannot trust.
//!
//! Follows <https://www.twilio.com/docs/usage/webhooks/webhooks-security> and the reference implementation in the
//! official `twilio` Python SDK (`twilio/request_validator.py`, version 9.x).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64_STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// HMAC-SHA1, the MAC Twilio signs webhooks with when they are signed with the account auth token.
type HmacSha1 = Hmac<Sha1>;

/// Name of the query parameter that carries the hex SHA-256 of a JSON webhook body.
const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Why a request failed signature validation. Every variant maps to HTTP 403 at the webhook boundary.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The request carried no `X-Twilio-Signature` header, or an empty one.
    #[error("the X-Twilio-Signature header is missing")]
    Missing,
    /// The signature does not match the URL and parameters under this auth token (with or without the default
    /// port). Also covers signatures that are not even base64.
    #[error("the X-Twilio-Signature header does not match the request")]
    Mismatch,
    /// JSON-body webhook: the signature matched the URL, but the URL's `bodySHA256` is absent or is not the
    /// hex SHA-256 of the body received.
    #[error("the body does not match the bodySHA256 the request was signed with")]
    BodyHashMismatch,
}

/// Signs and validates Twilio webhook requests with one account's auth token.
///
/// Cheap to clone; `Debug` prints no part of the token.
///
/// See <https://www.twilio.com/docs/usage/webhooks/webhooks-security>.
#[derive(Clone)]
pub struct RequestValidator {
    /// The account auth token (or API secret) Twilio signs with: the HMAC key. A secret: never printed or logged.
    auth_token: String,
}

impl fmt::Debug for RequestValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestValidator")
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

impl RequestValidator {
    /// A validator for requests signed with `auth_token` (the Twilio account auth token).
    pub fn new(auth_token: impl Into<String>) -> Self {
        Self {
            auth_token: auth_token.into(),
        }
    }

    /// The signature Twilio would send for a request to `url` with these form `params`:
    /// `base64(HMAC-SHA1(key = auth token, message = url + name1 + value1 + name2 + value2 ...))`.
    ///
    /// `url` is used byte for byte (scheme, host, port if any, path, query string). Parameters are sorted by name,
    /// byte-wise, and for a repeated name by value, byte-wise; a pair that occurs more than once counts once, as in
    /// the official SDKs. Pass no parameters for a GET, a WebSocket upgrade or a JSON-body webhook.
    ///
    /// The result is standard base64 with padding: 28 characters.
    pub fn sign(&self, url: &str, params: &[(String, String)]) -> String {
        BASE64_STANDARD.encode(self.mac(url, params))
    }

    /// Checks `signature` (the `X-Twilio-Signature` header value) against `url` and the form `params`.
    ///
    /// `Ok` when the signature matches the URL as given or, because Twilio is inconsistent about default ports,
    /// the same URL with the scheme's default port added or removed (`:443` for `https`/`wss`, `:80` for
    /// `http`/`ws`). A non-default port is only accepted as given. Comparisons are constant time.
    ///
    /// # Errors
    ///
    /// - [`SignatureError::Missing`] when `signature` is empty (pass `""` when the header is absent);
    /// - [`SignatureError::Mismatch`] when no URL variant matches.
    pub fn validate(
        &self,
        url: &str,
        params: &[(String, String)],
        signature: &str,
    ) -> Result<(), SignatureError> {
        if signature.is_empty() {
            return Err(SignatureError::Missing);
        }
        if self.signature_matches(url, params, signature) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// Checks a JSON-body webhook: the URL carries `?bodySHA256=<hex sha256(body)>`, the signature covers the URL
    /// only (no parameters), and the body hash is compared separately, in constant time.
    ///
    /// The same default-port leniency as [`RequestValidator::validate`] applies.
    ///
    /// # Errors
    ///
    /// - [`SignatureError::Missing`] when `signature` is empty;
    /// - [`SignatureError::Mismatch`] when the signature does not match the URL;
    /// - [`SignatureError::BodyHashMismatch`] when the signature matches but the URL has no `bodySHA256`
    ///   parameter or its value is not the lowercase hex SHA-256 of `body`.
    pub fn validate_json(
        &self,
        url: &str,
        body: &[u8],
        signature: &str,
    ) -> Result<(), SignatureError> {
        if signature.is_empty() {
            return Err(SignatureError::Missing);
        }
        let signature_ok = self.signature_matches(url, &[], signature);
        let body_ok = body_hash_matches(url, body);
        match (signature_ok, body_ok) {
            (false, _) => Err(SignatureError::Mismatch),
            (true, false) => Err(SignatureError::BodyHashMismatch),
            (true, true) => Ok(()),
        }
    }

    /// True when `signature` matches `url` or its default-port variant. Both comparisons always run.
    fn signature_matches(&self, url: &str, params: &[(String, String)], signature: &str) -> bool {
        let as_given = self.sign(url, params);
        let mut matches = bool::from(as_given.as_bytes().ct_eq(signature.as_bytes()));
        if let Some(variant) = default_port_variant(url) {
            let with_variant = self.sign(&variant, params);
            matches |= bool::from(with_variant.as_bytes().ct_eq(signature.as_bytes()));
        }
        matches
    }

    /// The raw 20-byte HMAC-SHA1 over `url` followed by the sorted, de-duplicated `name + value` pairs.
    fn mac(&self, url: &str, params: &[(String, String)]) -> Vec<u8> {
        let mut sorted: Vec<(&str, &str)> = params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        // `str` orders byte-wise, which for UTF-8 is code-point order: the order Python's `sorted` gives.
        sorted.sort_unstable();
        sorted.dedup();

        let mut mac = HmacSha1::new_from_slice(self.auth_token.as_bytes())
            .expect("HMAC accepts a key of any length");
        mac.update(url.as_bytes());
        for (name, value) in sorted {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        mac.finalize().into_bytes().to_vec()
    }
}

/// Parses an `application/x-www-form-urlencoded` body into `(name, value)` pairs, in body order, with `+` and
/// percent escapes decoded. Invalid UTF-8 is replaced with U+FFFD; this never fails.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// True when `url`'s `bodySHA256` query parameter equals the lowercase hex SHA-256 of `body` (constant time).
fn body_hash_matches(url: &str, body: &[u8]) -> bool {
    let Some(claimed) = query_param(url, BODY_SHA256_PARAM) else {
        return false;
    };
    let actual = hex::encode(Sha256::digest(body));
    bool::from(actual.as_bytes().ct_eq(claimed.as_bytes()))
}

/// The first value of query parameter `name` in `url`, percent-decoded; `None` when absent.
fn query_param(url: &str, name: &str) -> Option<String> {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    let (_, query) = without_fragment.split_once('?')?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The default port of a URL scheme, as it would be written after the `:`.
fn default_port(scheme: &str) -> Option<&'static str> {
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some("443")
    } else if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some("80")
    } else {
        None
    }
}

/// `url` with its scheme's default port toggled: removed when written explicitly, added when absent.
///
/// Works on the string itself (no parse and re-serialize, which would normalize the bytes that were signed).
/// `None` when the scheme has no known default port, the URL has no authority, or the port is not the default.
fn default_port_variant(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = default_port(scheme)?;
    let authority_start = scheme.len() + "://".len();
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority_end = authority_start + authority_len;
    let authority = &url[authority_start..authority_end];

    // Skip any userinfo; an IPv6 literal's colons sit inside brackets.
    let host_port_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_port = &authority[host_port_start..];
    let search_from = host_port.rfind(']').map_or(0, |bracket| bracket + 1);

    match host_port[search_from..].rfind(':') {
        Some(colon) => {
            let port = &host_port[search_from + colon + 1..];
            if port != default {
                return None;
            }
            let colon_at = authority_start + host_port_start + search_from + colon;
            Some(format!("{}{}", &url[..colon_at], &url[authority_end..]))
        }
        None => Some(format!(
            "{}:{}{}",
            &url[..authority_end],
            default,
            &url[authority_end..]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const URL_WITH_PORT: &str = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    const EXPECTED: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

    fn published_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn sign_reproduces_the_published_twilio_test_vector() {
        let validator = RequestValidator::new(TOKEN);

        let signature = validator.sign(URL, &published_params());

        assert_eq!(signature, EXPECTED);
    }

    #[test]
    fn sign_does_not_depend_on_the_order_parameters_arrive_in() {
        let validator = RequestValidator::new(TOKEN);
        let mut reversed = published_params();
        reversed.reverse();

        let signature = validator.sign(URL, &reversed);

        assert_eq!(signature, EXPECTED);
    }

    #[test]
    fn validate_accepts_the_published_test_vector() {
        let validator = RequestValidator::new(TOKEN);

        let result = validator.validate(URL, &published_params(), EXPECTED);

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn validate_accepts_a_signature_made_with_port_443_on_the_url_without_it() {
        let validator = RequestValidator::new(TOKEN);
        let signature = validator.sign(URL_WITH_PORT, &published_params());

        let result = validator.validate(URL, &published_params(), &signature);

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn validate_accepts_a_signature_made_without_port_443_on_the_url_with_it() {
        let validator = RequestValidator::new(TOKEN);

        let result = validator.validate(URL_WITH_PORT, &published_params(), EXPECTED);

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn validate_accepts_a_signature_made_with_port_80_on_the_plain_http_url_without_it() {
        let validator = RequestValidator::new(TOKEN);
        let signature = validator.sign("http://example.com:80/hook", &published_params());

        let result = validator.validate("http://example.com/hook", &published_params(), &signature);

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn validate_accepts_a_signature_made_without_port_80_on_the_plain_http_url_with_it() {
        let validator = RequestValidator::new(TOKEN);
        let signature = validator.sign("http://example.com/hook", &published_params());

        let result = validator.validate(
            "http://example.com:80/hook",
            &published_params(),
            &signature,
        );

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn validate_accepts_a_wss_upgrade_signed_with_port_443() {
        let validator = RequestValidator::new(TOKEN);
        let signature = validator.sign("wss://example.com:443/media-stream/abc", &[]);

        let result = validator.validate("wss://example.com/media-stream/abc", &[], &signature);

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn validate_rejects_port_80_on_an_https_url() {
        let validator = RequestValidator::new(TOKEN);
        let signature = validator.sign(
            "https://mycompany.com:80/myapp.php?foo=1&bar=2",
            &published_params(),
        );

        let result = validator.validate(URL, &published_params(), &signature);

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn validate_rejects_a_url_whose_non_default_port_was_dropped() {
        let validator = RequestValidator::new(TOKEN);
        let signature = validator.sign("https://mycompany.com:8443/hook", &[]);

        let result = validator.validate("https://mycompany.com/hook", &[], &signature);

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn validate_rejects_a_tampered_parameter_value() {
        let validator = RequestValidator::new(TOKEN);
        let mut params = published_params();
        params[3].1 = "+14155550000".to_owned();

        let result = validator.validate(URL, &params, EXPECTED);

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn validate_rejects_an_added_parameter() {
        let validator = RequestValidator::new(TOKEN);
        let mut params = published_params();
        params.push(("Extra".to_owned(), "1".to_owned()));

        let result = validator.validate(URL, &params, EXPECTED);

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn validate_rejects_a_removed_parameter() {
        let validator = RequestValidator::new(TOKEN);
        let mut params = published_params();
        params.remove(2);

        let result = validator.validate(URL, &params, EXPECTED);

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn validate_rejects_a_signature_made_with_another_token() {
        let validator = RequestValidator::new("another-token");

        let result = validator.validate(URL, &published_params(), EXPECTED);

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn validate_rejects_a_different_url() {
        let validator = RequestValidator::new(TOKEN);

        let result = validator.validate(
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &published_params(),
            EXPECTED,
        );

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn validate_rejects_a_different_host() {
        let validator = RequestValidator::new(TOKEN);

        let result = validator.validate(
            "https://attacker.example/myapp.php?foo=1&bar=2",
            &published_params(),
            EXPECTED,
        );

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn validate_reports_an_empty_signature_as_missing() {
        let validator = RequestValidator::new(TOKEN);

        let result = validator.validate(URL, &published_params(), "");

        assert_eq!(result, Err(SignatureError::Missing));
    }

    #[test]
    fn validate_rejects_garbage_signature_strings_without_panicking() {
        let validator = RequestValidator::new(TOKEN);
        let garbage = [
            "not base64 at all!",
            "====",
            " ",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8==",
            "rsoydt4t1cutdk1pdd93/vvr8b8=",
            "\u{0}\u{ffff}",
        ];

        let results: Vec<_> = garbage
            .iter()
            .map(|signature| validator.validate(URL, &published_params(), signature))
            .collect();

        assert!(
            results
                .iter()
                .all(|result| *result == Err(SignatureError::Mismatch)),
            "{results:?}"
        );
    }

    #[test]
    fn sign_includes_every_value_of_a_repeated_name_in_sorted_order() {
        let validator = RequestValidator::new(TOKEN);
        let params = pairs(&[("Event", "ringing"), ("A", "1"), ("Event", "answered")]);
        // Hand-built message: URL + "A1" + "Eventanswered" + "Eventringing".
        let mut mac = HmacSha1::new_from_slice(TOKEN.as_bytes()).expect("any key length");
        mac.update(b"https://x.test/cbA1EventansweredEventringing");
        let by_hand = BASE64_STANDARD.encode(mac.finalize().into_bytes());

        let signature = validator.sign("https://x.test/cb", &params);

        assert_eq!(signature, by_hand);
    }

    #[test]
    fn sign_counts_a_pair_repeated_verbatim_once_as_the_official_sdks_do() {
        let validator = RequestValidator::new(TOKEN);
        let twice = pairs(&[("Event", "ringing"), ("Event", "ringing")]);
        let once = pairs(&[("Event", "ringing")]);

        let signature = validator.sign("https://x.test/cb", &twice);

        assert_eq!(signature, validator.sign("https://x.test/cb", &once));
    }

    #[test]
    fn validate_accepts_repeated_parameters_in_any_order() {
        let validator = RequestValidator::new(TOKEN);
        let signed = pairs(&[("Event", "answered"), ("Event", "ringing")]);
        let received = pairs(&[("Event", "ringing"), ("Event", "answered")]);
        let signature = validator.sign("https://x.test/cb", &signed);

        let result = validator.validate("https://x.test/cb", &received, &signature);

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn validate_rejects_a_dropped_value_of_a_repeated_parameter() {
        let validator = RequestValidator::new(TOKEN);
        let signed = pairs(&[("Event", "answered"), ("Event", "ringing")]);
        let received = pairs(&[("Event", "ringing")]);
        let signature = validator.sign("https://x.test/cb", &signed);

        let result = validator.validate("https://x.test/cb", &received, &signature);

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn debug_output_does_not_contain_the_auth_token() {
        let validator = RequestValidator::new("s3cr3t-auth-token");

        let printed = format!("{validator:?}");

        assert!(!printed.contains("s3cr3t"), "{printed}");
    }

    const JSON_BODY: &[u8] = br#"{"CallSid":"CA123","CallStatus":"completed"}"#;

    fn json_url(body: &[u8]) -> String {
        format!(
            "https://example.com/events?bodySHA256={}",
            hex::encode(Sha256::digest(body))
        )
    }

    #[test]
    fn validate_json_accepts_a_matching_signature_and_body_hash() {
        let validator = RequestValidator::new(TOKEN);
        let url = json_url(JSON_BODY);
        let signature = validator.sign(&url, &[]);

        let result = validator.validate_json(&url, JSON_BODY, &signature);

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn validate_json_rejects_a_body_that_differs_from_the_signed_hash() {
        let validator = RequestValidator::new(TOKEN);
        let url = json_url(JSON_BODY);
        let signature = validator.sign(&url, &[]);

        let result = validator.validate_json(&url, br#"{"CallSid":"CA999"}"#, &signature);

        assert_eq!(result, Err(SignatureError::BodyHashMismatch));
    }

    #[test]
    fn validate_json_rejects_a_url_without_a_body_hash() {
        let validator = RequestValidator::new(TOKEN);
        let url = "https://example.com/events";
        let signature = validator.sign(url, &[]);

        let result = validator.validate_json(url, JSON_BODY, &signature);

        assert_eq!(result, Err(SignatureError::BodyHashMismatch));
    }

    #[test]
    fn validate_json_rejects_a_bad_signature_even_with_a_good_body_hash() {
        let validator = RequestValidator::new(TOKEN);
        let url = json_url(JSON_BODY);

        let result = validator.validate_json(&url, JSON_BODY, EXPECTED);

        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn validate_json_reports_an_empty_signature_as_missing() {
        let validator = RequestValidator::new(TOKEN);

        let result = validator.validate_json(&json_url(JSON_BODY), JSON_BODY, "");

        assert_eq!(result, Err(SignatureError::Missing));
    }

    #[test]
    fn validate_json_accepts_the_default_port_variant() {
        let validator = RequestValidator::new(TOKEN);
        let url = json_url(JSON_BODY);
        let with_port = url.replacen("example.com", "example.com:443", 1);
        let signature = validator.sign(&with_port, &[]);

        let result = validator.validate_json(&url, JSON_BODY, &signature);

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn parse_form_decodes_plus_and_percent_escapes_in_order() {
        let body = b"From=%2B14158675309&Caller=Jane+Doe&Empty=&CallSid=CA1";

        let parsed = parse_form(body);

        assert_eq!(
            parsed,
            pairs(&[
                ("From", "+14158675309"),
                ("Caller", "Jane Doe"),
                ("Empty", ""),
                ("CallSid", "CA1"),
            ])
        );
    }

    #[test]
    fn parse_form_keeps_repeated_names() {
        let parsed = parse_form(b"E=a&E=b");

        assert_eq!(parsed, pairs(&[("E", "a"), ("E", "b")]));
    }

    #[test]
    fn default_port_variant_adds_the_port_before_the_path() {
        let variant = default_port_variant("https://h.test/p?q=1");

        assert_eq!(variant.as_deref(), Some("https://h.test:443/p?q=1"));
    }

    #[test]
    fn default_port_variant_adds_the_port_to_a_bare_host() {
        let variant = default_port_variant("http://h.test");

        assert_eq!(variant.as_deref(), Some("http://h.test:80"));
    }

    #[test]
    fn default_port_variant_removes_an_explicit_default_port_after_userinfo_and_ipv6() {
        let variant = default_port_variant("https://u:p@[::1]:443/x");

        assert_eq!(variant.as_deref(), Some("https://u:p@[::1]/x"));
    }

    #[test]
    fn default_port_variant_leaves_ipv6_colons_alone() {
        let variant = default_port_variant("https://[::1]/x");

        assert_eq!(variant.as_deref(), Some("https://[::1]:443/x"));
    }

    #[test]
    fn default_port_variant_is_none_for_unknown_schemes_and_other_ports() {
        let variants = [
            default_port_variant("ftp://h.test/x"),
            default_port_variant("https://h.test:8443/x"),
            default_port_variant("not a url"),
        ];

        assert_eq!(variants, [None, None, None]);
    }

    /// One case of `tests/fixtures/twilio_signatures.json`, computed by the official Python SDK.
    #[derive(serde::Deserialize)]
    struct FixtureCase {
        name: String,
        token: String,
        url: String,
        params: Vec<(String, String)>,
        signature: String,
    }

    #[test]
    fn sign_agrees_with_the_official_twilio_sdk_on_every_fixture_case() {
        let fixture = include_str!("../../tests/fixtures/twilio_signatures.json");
        let cases: Vec<FixtureCase> = serde_json::from_str(fixture).expect("fixture is valid JSON");
        assert!(cases.len() >= 10, "fixture has only {} cases", cases.len());

        let disagreements: Vec<&str> = cases
            .iter()
            .filter(|case| {
                RequestValidator::new(&case.token).sign(&case.url, &case.params) != case.signature
            })
            .map(|case| case.name.as_str())
            .collect();

        assert!(
            disagreements.is_empty(),
            "disagree with the SDK: {disagreements:?}"
        );
    }

    #[test]
    fn validate_accepts_every_fixture_case_signed_by_the_official_twilio_sdk() {
        let fixture = include_str!("../../tests/fixtures/twilio_signatures.json");
        let cases: Vec<FixtureCase> = serde_json::from_str(fixture).expect("fixture is valid JSON");

        let rejected: Vec<&str> = cases
            .iter()
            .filter(|case| {
                RequestValidator::new(&case.token)
                    .validate(&case.url, &case.params, &case.signature)
                    .is_err()
            })
            .map(|case| case.name.as_str())
            .collect();

        assert!(rejected.is_empty(), "rejected: {rejected:?}");
    }

    fn arbitrary_params() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec((any::<String>(), any::<String>()), 0..8)
    }

    proptest! {
        #[test]
        fn validate_never_panics_on_arbitrary_input(
            token in any::<String>(),
            url in any::<String>(),
            params in arbitrary_params(),
            signature in any::<String>(),
        ) {
            let validator = RequestValidator::new(token);

            let form = validator.validate(&url, &params, &signature);
            let json = validator.validate_json(&url, signature.as_bytes(), &signature);

            // Reaching this line is the point; an empty signature must read as missing, never as a mismatch.
            prop_assert_eq!(form == Err(SignatureError::Missing), signature.is_empty());
            prop_assert_eq!(json == Err(SignatureError::Missing), signature.is_empty());
        }

        #[test]
        fn validate_never_panics_on_arbitrary_url_shaped_input(
            scheme in prop_oneof![Just("https"), Just("http"), Just("wss"), Just("HTTPS")],
            authority in "[a-z@:\\[\\]0-9.]{0,20}",
            tail in "[/?#a-z0-9:=&]{0,20}",
            signature in any::<String>(),
        ) {
            let validator = RequestValidator::new(TOKEN);
            let url = format!("{scheme}://{authority}{tail}");

            let result = validator.validate(&url, &[], &signature);

            prop_assert_eq!(result == Err(SignatureError::Missing), signature.is_empty());
        }

        #[test]
        fn sign_then_validate_round_trips_for_arbitrary_params(
            token in any::<String>(),
            url in any::<String>(),
            params in arbitrary_params(),
        ) {
            let validator = RequestValidator::new(token);
            let signature = validator.sign(&url, &params);
            let mut shuffled = params.clone();
            shuffled.reverse();

            let result = validator.validate(&url, &shuffled, &signature);

            prop_assert_eq!(result, Ok(()));
        }

        #[test]
        fn sign_then_validate_round_trips_across_the_default_port(
            host in "[a-z]{1,12}\\.test",
            path in "(/[a-zA-Z0-9_-]{0,8}){0,3}",
            params in arbitrary_params(),
        ) {
            let validator = RequestValidator::new(TOKEN);
            let signature = validator.sign(&format!("https://{host}:443{path}"), &params);

            let result = validator.validate(&format!("https://{host}{path}"), &params, &signature);

            prop_assert_eq!(result, Ok(()));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_form_bodies_never_panic_and_never_validate_with_a_wrong_signature(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            url in any::<String>(),
        ) {
            let validator = RequestValidator::new(TOKEN);
            let params = parse_form(&body);
            let wrong = RequestValidator::new("another-token").sign(&url, &params);

            let result = validator.validate(&url, &params, &wrong);

            prop_assert_eq!(result, Err(SignatureError::Mismatch));
        }

        #[test]
        fn arbitrary_json_bodies_never_panic_and_validate_only_against_their_own_hash(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            other in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            prop_assume!(body != other);
            let validator = RequestValidator::new(TOKEN);
            let url = json_url(&body);
            let signature = validator.sign(&url, &[]);

            let own = validator.validate_json(&url, &body, &signature);
            let swapped = validator.validate_json(&url, &other, &signature);

            prop_assert_eq!(own, Ok(()));
            prop_assert_eq!(swapped, Err(SignatureError::BodyHashMismatch));
        }
    }
}
