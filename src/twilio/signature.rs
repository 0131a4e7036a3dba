//! `X-Twilio-Signature`: checking that a webhook (or a Media Streams WebSocket upgrade) really comes from Twilio.
//!
//! Owns the signing algorithm (HMAC-SHA1 keyed with the account auth token, over the URL followed by the sorted
//! form parameters), the default-port leniency of the official SDKs, the `bodySHA256` check for JSON-body
//! webhooks, and the form-body parser that yields the parameters in the shape the algorithm needs.
//!
//! Twilio's newer signing ([`WebhookSigning`]): when a Webhook Rule matches the URL, Twilio signs with the Setting's
//! SharedKey secret and algorithm instead of the auth token and HMAC-SHA1, and says so in
//! `X-Twilio-Webhooks-Signature-Settings: key=<SharedKey id>,algorithm=HMAC_SHA256`. Only the MAC changes: the signed
//! string is the same, and the signature is still the base64 of the MAC. Follows
//! <https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys> and
//! <https://www.twilio.com/docs/usage/webhooks/webhook-settings>, and the official `twilio` Python SDK 9.13
//! (`get_signature_algorithm`, `RequestValidator.validate(..., algorithm)`).
//!
//! It does not know which URL to check against: the caller rebuilds it from the configured public base URL
//! (Twilio signs the URL it was configured with), never from the `Host` header of a request it cannot trust.
//!
//! Follows <https://www.twilio.com/docs/usage/webhooks/webhooks-security> and the reference implementation in the
//! official `twilio` Python SDK (`twilio/request_validator.py`, version 9.x).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64_STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// HMAC-SHA1, the MAC Twilio signs webhooks with when they are signed with the account auth token.
type HmacSha1 = Hmac<Sha1>;
/// HMAC-SHA256, the MAC of a Webhook Setting whose signature names `HMAC_SHA256`.
type HmacSha256 = Hmac<Sha256>;

/// The header Twilio adds to a webhook signed with a SharedKey: `key=<SharedKey id>,algorithm=<algorithm>`.
pub const SIGNATURE_SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";

/// The longest part of a peer-sent key id or algorithm name kept in an error (and so in a log line), bytes.
const NAME_IN_ERROR_MAX_BYTES: usize = 64;

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
    /// `X-Twilio-Webhooks-Signature-Settings` is not text, or names no `key`.
    #[error("the X-Twilio-Webhooks-Signature-Settings header names no signing key")]
    NoSigningKey,
    /// `X-Twilio-Webhooks-Signature-Settings` names a SharedKey id that is not configured (the id, clipped).
    #[error(
        "the webhook is signed with SharedKey {0:?}, which is not in CALLBRIDGE_TWILIO_SIGNING_KEYS"
    )]
    UnknownSigningKey(String),
    /// `X-Twilio-Webhooks-Signature-Settings` names an algorithm other than `HMAC_SHA1` and `HMAC_SHA256` (the name,
    /// clipped).
    #[error(
        "the webhook is signed with algorithm {0:?}; only HMAC_SHA1 and HMAC_SHA256 are supported"
    )]
    UnsupportedAlgorithm(String),
}

/// The MAC a webhook is signed with: HMAC-SHA1 by default, or the algorithm its
/// `X-Twilio-Webhooks-Signature-Settings` names. See <https://www.twilio.com/docs/usage/webhooks/webhook-settings>.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureAlgorithm {
    /// `HMAC_SHA1`: 20-byte MAC, 28 base64 characters. Twilio's default, keyed with the auth token.
    #[default]
    HmacSha1,
    /// `HMAC_SHA256`: 32-byte MAC, 44 base64 characters.
    HmacSha256,
}

impl SignatureAlgorithm {
    /// The algorithm Twilio names `name` (`HMAC_SHA1`, `HMAC_SHA256`; ASCII case ignored, as the official SDKs do);
    /// `None` for any other name.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("HMAC_SHA1") {
            Some(SignatureAlgorithm::HmacSha1)
        } else if name.eq_ignore_ascii_case("HMAC_SHA256") {
            Some(SignatureAlgorithm::HmacSha256)
        } else {
            None
        }
    }

    /// Twilio's name of the algorithm: `HMAC_SHA1` or `HMAC_SHA256`.
    pub fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::HmacSha1 => "HMAC_SHA1",
            SignatureAlgorithm::HmacSha256 => "HMAC_SHA256",
        }
    }
}

/// What an `X-Twilio-Webhooks-Signature-Settings` value names: `key=<SharedKey id>,algorithm=<name>`, parts in any
/// order, names and values trimmed; the first non-empty value of each name counts, unknown names are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignatureSettings<'a> {
    /// The SharedKey id (`key=`), when given.
    pub key: Option<&'a str>,
    /// The algorithm name (`algorithm=`), when given; absent means `HMAC_SHA1`, as in the official SDKs.
    pub algorithm: Option<&'a str>,
}

impl<'a> SignatureSettings<'a> {
    /// Parses a header value. Never fails: what it cannot read it leaves out.
    pub fn parse(header: &'a str) -> Self {
        let mut settings = SignatureSettings::default();
        for part in header.split(',') {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match name.trim() {
                "key" if settings.key.is_none() => settings.key = Some(value),
                "algorithm" if settings.algorithm.is_none() => settings.algorithm = Some(value),
                _ => {}
            }
        }
        settings
    }
}

/// At most [`NAME_IN_ERROR_MAX_BYTES`] of a peer-sent name, cut at a character boundary.
fn clipped(name: &str) -> String {
    let mut end = name.len().min(NAME_IN_ERROR_MAX_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// Every secret Twilio may sign a webhook with: the auth token (HMAC-SHA1, the default) and the configured SharedKey
/// secrets by id. [`WebhookSigning::validator`] picks the one a request's `X-Twilio-Webhooks-Signature-Settings`
/// names.
///
/// Cheap to clone; `Debug` prints the key ids, no secret.
/// See <https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys>.
#[derive(Clone)]
pub struct WebhookSigning {
    /// HMAC-SHA1 keyed with the auth token.
    auth_token: RequestValidator,
    /// SharedKey id → its secret.
    shared_keys: Arc<HashMap<String, String>>,
}

impl fmt::Debug for WebhookSigning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.shared_keys.keys().collect();
        ids.sort();
        f.debug_struct("WebhookSigning")
            .field("auth_token", &"<redacted>")
            .field("shared_keys", &ids)
            .finish()
    }
}

impl WebhookSigning {
    /// Signing with `auth_token` by default, and with the SharedKey secrets `shared_keys` (id, secret) when a
    /// webhook names one.
    pub fn new(auth_token: &str, shared_keys: &[(String, String)]) -> Self {
        Self {
            auth_token: RequestValidator::new(auth_token),
            shared_keys: Arc::new(shared_keys.iter().cloned().collect()),
        }
    }

    /// The validator for a request whose `X-Twilio-Webhooks-Signature-Settings` is `settings` (`None` when the
    /// header is absent; an empty value counts as absent, as in the official SDKs): the auth token with HMAC-SHA1
    /// without it, else the named SharedKey's secret with the named algorithm (HMAC-SHA1 when none is named).
    ///
    /// # Errors
    ///
    /// - [`SignatureError::NoSigningKey`] when the header names no `key`;
    /// - [`SignatureError::UnknownSigningKey`] when the key id is not configured;
    /// - [`SignatureError::UnsupportedAlgorithm`] when the algorithm is neither `HMAC_SHA1` nor `HMAC_SHA256`.
    pub fn validator(
        &self,
        settings: Option<&str>,
    ) -> Result<Cow<'_, RequestValidator>, SignatureError> {
        let Some(header) = settings.filter(|h| !h.trim().is_empty()) else {
            return Ok(Cow::Borrowed(&self.auth_token));
        };
        let settings = SignatureSettings::parse(header);
        let algorithm = match settings.algorithm {
            None => SignatureAlgorithm::HmacSha1,
            Some(name) => SignatureAlgorithm::from_name(name)
                .ok_or_else(|| SignatureError::UnsupportedAlgorithm(clipped(name)))?,
        };
        let key = settings.key.ok_or(SignatureError::NoSigningKey)?;
        let secret = self
            .shared_keys
            .get(key)
            .ok_or_else(|| SignatureError::UnknownSigningKey(clipped(key)))?;
        Ok(Cow::Owned(RequestValidator::with_algorithm(
            secret.as_str(),
            algorithm,
        )))
    }
}

/// Signs and validates Twilio webhook requests with one account's auth token.
///
/// Cheap to clone; `Debug` prints no part of the token.
///
/// See <https://www.twilio.com/docs/usage/webhooks/webhooks-security>.
#[derive(Clone)]
pub struct RequestValidator {
    /// The account auth token (or SharedKey secret) Twilio signs with: the HMAC key. A secret: never printed or
    /// logged.
    auth_token: String,
    /// The MAC: HMAC-SHA1 for the auth token.
    algorithm: SignatureAlgorithm,
}

impl fmt::Debug for RequestValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestValidator")
            .field("auth_token", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl RequestValidator {
    /// A validator for requests signed with `auth_token` (the Twilio account auth token) and HMAC-SHA1.
    pub fn new(auth_token: impl Into<String>) -> Self {
        Self::with_algorithm(auth_token, SignatureAlgorithm::HmacSha1)
    }

    /// A validator for requests signed with `secret` (a SharedKey secret) and `algorithm`.
    pub fn with_algorithm(secret: impl Into<String>, algorithm: SignatureAlgorithm) -> Self {
        Self {
            auth_token: secret.into(),
            algorithm,
        }
    }

    /// The signature Twilio would send for a request to `url` with these form `params`:
    /// `base64(HMAC-SHA1(key = auth token, message = url + name1 + value1 + name2 + value2 ...))`, or HMAC-SHA256
    /// for a validator made with [`SignatureAlgorithm::HmacSha256`].
    ///
    /// `url` is used byte for byte (scheme, host, port if any, path, query string). Parameters are sorted by name,
    /// byte-wise, and for a repeated name by value, byte-wise; a pair that occurs more than once counts once, as in
    /// the official SDKs. Pass no parameters for a GET, a WebSocket upgrade or a JSON-body webhook.
    ///
    /// The result is standard base64 with padding: 28 characters (44 for HMAC-SHA256).
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

    /// The raw HMAC (20 bytes SHA-1, 32 bytes SHA-256) over `url` followed by the sorted, de-duplicated
    /// `name + value` pairs.
    fn mac(&self, url: &str, params: &[(String, String)]) -> Vec<u8> {
        match self.algorithm {
            SignatureAlgorithm::HmacSha1 => self.mac_with::<HmacSha1>(url, params),
            SignatureAlgorithm::HmacSha256 => self.mac_with::<HmacSha256>(url, params),
        }
    }

    /// [`RequestValidator::mac`] with the MAC type `M`.
    fn mac_with<M: Mac + KeyInit>(&self, url: &str, params: &[(String, String)]) -> Vec<u8> {
        let mut sorted: Vec<(&str, &str)> = params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        // `str` orders byte-wise, which for UTF-8 is code-point order: the order Python's `sorted` gives.
        sorted.sort_unstable();
        sorted.dedup();

        let mut mac = <M as KeyInit>::new_from_slice(self.auth_token.as_bytes())
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

    // ---- HMAC-SHA256 and X-Twilio-Webhooks-Signature-Settings ----

    /// The published parameters and URL signed with secret `12345` and `HMAC_SHA256` by the official `twilio`
    /// Python SDK 9.13 (`RequestValidator("12345").compute_signature(URL, params, "HMAC_SHA256")`).
    const EXPECTED_SHA256: &str = "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=";

    fn sha256(secret: &str) -> RequestValidator {
        RequestValidator::with_algorithm(secret, SignatureAlgorithm::HmacSha256)
    }

    #[test]
    fn sign_with_hmac_sha256_reproduces_the_official_sdks_signature_of_the_published_request() {
        assert_eq!(
            sha256(TOKEN).sign(URL, &published_params()),
            EXPECTED_SHA256
        );
    }

    #[test]
    fn sign_with_hmac_sha256_is_the_base64_of_the_rfc_hmac_sha256() {
        // HMAC-SHA256(key = "key", "The quick brown fox jumps over the lazy dog") =
        // f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8.
        let signature = sha256("key").sign("The quick brown fox jumps over the lazy dog", &[]);

        assert_eq!(signature, "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=");
    }

    #[test]
    fn an_hmac_sha256_validator_accepts_its_signature_across_the_default_port_and_refuses_the_sha1_one()
     {
        let validator = sha256(TOKEN);

        assert_eq!(
            validator.validate(URL_WITH_PORT, &published_params(), EXPECTED_SHA256),
            Ok(())
        );
        assert_eq!(
            validator.validate(URL, &published_params(), EXPECTED),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn algorithm_names_are_twilios_in_any_ascii_case() {
        assert_eq!(
            SignatureAlgorithm::from_name("HMAC_SHA256"),
            Some(SignatureAlgorithm::HmacSha256)
        );
        assert_eq!(
            SignatureAlgorithm::from_name("hmac_sha1"),
            Some(SignatureAlgorithm::HmacSha1)
        );
        assert_eq!(SignatureAlgorithm::from_name("HMAC_SHA512"), None);
        assert_eq!(SignatureAlgorithm::HmacSha256.name(), "HMAC_SHA256");
    }

    #[test]
    fn signature_settings_read_key_and_algorithm_in_any_order_with_spaces() {
        assert_eq!(
            SignatureSettings::parse("key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"),
            SignatureSettings {
                key: Some("webhooks_sharedkey_1"),
                algorithm: Some("HMAC_SHA256")
            }
        );
        assert_eq!(
            SignatureSettings::parse(" algorithm = HMAC_SHA1 , key = k2 ,other=x"),
            SignatureSettings {
                key: Some("k2"),
                algorithm: Some("HMAC_SHA1")
            }
        );
        assert_eq!(
            SignatureSettings::parse("garbage,,=,key="),
            SignatureSettings::default()
        );
    }

    fn signing() -> WebhookSigning {
        WebhookSigning::new(
            "auth-token",
            &[
                ("key1".to_owned(), TOKEN.to_owned()),
                ("key2".to_owned(), "other".to_owned()),
            ],
        )
    }

    #[test]
    fn without_the_settings_header_the_auth_token_and_hmac_sha1_check_the_request() {
        let signing = signing();
        let expected = RequestValidator::new("auth-token").sign(URL, &published_params());

        for header in [None, Some(""), Some("  ")] {
            let validator = signing.validator(header).expect("the default validator");
            assert_eq!(
                validator.validate(URL, &published_params(), &expected),
                Ok(())
            );
        }
    }

    #[test]
    fn the_settings_header_selects_the_named_shared_key_and_algorithm() {
        let signing = signing();

        let validator = signing
            .validator(Some("key=key1,algorithm=HMAC_SHA256"))
            .expect("a known key and algorithm");

        assert_eq!(
            validator.validate(URL, &published_params(), EXPECTED_SHA256),
            Ok(())
        );
        let other = signing
            .validator(Some("key=key2,algorithm=HMAC_SHA256"))
            .expect("a known key");
        assert_eq!(
            other.validate(URL, &published_params(), EXPECTED_SHA256),
            Err(SignatureError::Mismatch),
            "another key's secret does not validate it"
        );
    }

    #[test]
    fn a_settings_header_without_an_algorithm_means_hmac_sha1_with_the_shared_key() {
        let signing = signing();
        let validator = signing.validator(Some("key=key1")).expect("a known key");

        assert_eq!(
            validator.validate(URL, &published_params(), EXPECTED),
            Ok(())
        );
    }

    #[test]
    fn an_unknown_key_an_unknown_algorithm_or_no_key_is_refused_by_name() {
        let signing = signing();

        assert_eq!(
            signing
                .validator(Some("key=key9,algorithm=HMAC_SHA256"))
                .err(),
            Some(SignatureError::UnknownSigningKey("key9".into()))
        );
        assert_eq!(
            signing
                .validator(Some("key=key1,algorithm=HMAC_SHA512"))
                .err(),
            Some(SignatureError::UnsupportedAlgorithm("HMAC_SHA512".into()))
        );
        assert_eq!(
            signing.validator(Some("algorithm=HMAC_SHA256")).err(),
            Some(SignatureError::NoSigningKey)
        );
        let long = format!("key={}", "k".repeat(10_000));
        assert!(matches!(
            signing.validator(Some(&long)).err(),
            Some(SignatureError::UnknownSigningKey(id)) if id.len() == NAME_IN_ERROR_MAX_BYTES
        ));
    }

    #[test]
    fn webhook_signing_debug_shows_key_ids_and_no_secret() {
        let text = format!("{:?}", signing());

        assert!(text.contains("key1") && text.contains("key2"), "{text}");
        assert!(
            !text.contains("auth-token") && !text.contains(TOKEN) && !text.contains("other"),
            "{text}"
        );
    }

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
