//! The Standard Webhooks signature (symmetric, `v1`): the `whsec_` secret from the settings and the three headers
//! of a delivery. <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>
//! ("Signature scheme", "Webhook headers").
//!
//! `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, `{webhook-id}.{webhook-timestamp}.{body}`)), the key being
//! the base64-decoded part of the secret after `whsec_`. The spec asks for 24 to 64 random bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64_STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header naming the event (the same on every attempt): the receiver's idempotency key.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// The header with the attempt's time, integer Unix seconds: receivers refuse one too far from their clock.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header with the signature(s), space-delimited `v1,<base64>` entries.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";
/// The prefix that marks a Standard Webhooks symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest key bytes the spec allows (192 bits).
pub const MIN_KEY_BYTES: usize = 24;
/// Most key bytes the spec allows (512 bits).
pub const MAX_KEY_BYTES: usize = 64;
/// How to make a secret, for error messages and docs.
pub const GENERATE_HINT: &str = "generate one with: echo \"whsec_$(openssl rand -base64 32)\"";

/// A `whsec_` secret, decoded: the HMAC key. Its `Debug` shows no byte of it.
#[derive(Clone)]
pub struct WebhookSecret {
    /// The key bytes (24 to 64).
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecret").finish_non_exhaustive()
    }
}

/// Why a webhook secret is refused. The message never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("it must start with whsec_ followed by base64 ({GENERATE_HINT})")]
    NoPrefix,
    /// What follows `whsec_` is not standard base64.
    #[error("what follows whsec_ is not base64 ({GENERATE_HINT})")]
    NotBase64,
    /// The key is shorter or longer than the spec allows.
    #[error(
        "the key is {0} bytes; Standard Webhooks asks for {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes \
         ({GENERATE_HINT})"
    )]
    BadLength(usize),
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`.
    ///
    /// # Errors
    /// [`SecretError`] when the prefix is missing, the rest is not base64, or the key is not 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::NoPrefix)?;
        let key = BASE64_STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(WebhookSecret { key })
    }

    /// The `webhook-signature` value for `body` sent as `webhook_id` at `timestamp_s` (Unix seconds): `v1,` and
    /// the base64 of the HMAC-SHA256.
    pub fn sign(&self, webhook_id: &str, timestamp_s: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_s.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64_STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known secret, id, timestamp and body, and the signature the official Python `standardwebhooks` package
    /// (1.1) computes for them.
    #[test]
    fn the_reference_libraries_example_signs_to_their_signature() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");

        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );

        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_changed_body_id_or_timestamp_changes_the_signature() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let base = secret.sign("msg_1", 1_700_000_000, b"{}");

        assert_ne!(secret.sign("msg_2", 1_700_000_000, b"{}"), base);
        assert_ne!(secret.sign("msg_1", 1_700_000_001, b"{}"), base);
        assert_ne!(secret.sign("msg_1", 1_700_000_000, b"{ }"), base);
    }

    #[test]
    fn malformed_secrets_are_refused_and_the_message_says_how_to_make_one() {
        let cases = [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretError::NoPrefix),
            ("whsec_not base64!", SecretError::NotBase64),
            ("whsec_c2hvcnQ=", SecretError::BadLength(5)),
        ];
        for (text, expected) in cases {
            let error = WebhookSecret::parse(text).expect_err(text);
            assert_eq!(error, expected, "{text}");
            assert!(error.to_string().contains("openssl rand"), "{error}");
        }
    }

    #[test]
    fn a_secrets_debug_shows_none_of_it() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");

        let shown = format!("{secret:?}");

        assert!(!shown.contains("MfKQ"), "{shown}");
    }
}
