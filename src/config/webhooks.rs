//! The signed webhooks' settings: the default destination (`CALLBRIDGE_WEBHOOK_URL`), the `whsec_` signing secret
//! (`CALLBRIDGE_WEBHOOK_SECRET`) and the retry schedule (`CALLBRIDGE_WEBHOOK_RETRY_BASE_MS`,
//! `CALLBRIDGE_WEBHOOK_MAX_ATTEMPTS`). See [`crate::webhooks`].

use std::time::Duration;

use url::Url;

use super::keys::Raw;
use crate::webhooks::destination::parse_webhook_url;
use crate::webhooks::schedule::RetrySchedule;
use crate::webhooks::signing::{GENERATE_HINT, WebhookSecret};

/// Most attempts a delivery may be given.
pub const MAX_ATTEMPTS_LIMIT: u32 = 20;

/// Where and how callbridge sends its signed webhooks.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// Where every call's webhooks go unless the call names its own `webhook_url` (inbound calls too).
    pub default_url: Option<Url>,
    /// The signing secret; webhooks are only sent when it is set.
    pub secret: Option<WebhookSecret>,
    /// When failed deliveries are tried again.
    pub schedule: RetrySchedule,
}

/// Reads the webhook settings, one error line per bad value. Serving with a webhook URL but no secret is refused
/// (`required`); a malformed secret always is.
pub(super) fn webhooks(errors: &mut Vec<String>, raw: &mut Raw, required: bool) -> WebhookSettings {
    let text = |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let secret = text(raw.webhook_secret.take()).and_then(|secret| {
        WebhookSecret::parse(&secret)
            .map_err(|e| errors.push(format!("CALLBRIDGE_WEBHOOK_SECRET is invalid: {e}")))
            .ok()
    });
    let default_url = text(raw.webhook_url.take()).and_then(|url| {
        parse_webhook_url(&url)
            .map_err(|e| errors.push(format!("CALLBRIDGE_WEBHOOK_URL is invalid: {e}")))
            .ok()
    });
    if required && default_url.is_some() && secret.is_none() {
        errors.push(format!(
            "CALLBRIDGE_WEBHOOK_URL is set but CALLBRIDGE_WEBHOOK_SECRET is not: webhooks are signed; \
             {GENERATE_HINT}"
        ));
    }
    let mut number = |name: &str, value: Option<String>, default: u64, min: u64, max: u64| {
        let Some(value) = text(value) else {
            return default;
        };
        match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                errors.push(format!(
                    "{name} is invalid: {value:?} (a whole number from {min} to {max})"
                ));
                default
            }
        }
    };
    let base_ms = number(
        "CALLBRIDGE_WEBHOOK_RETRY_BASE_MS",
        raw.webhook_retry_base_ms.take(),
        5_000,
        1,
        3_600_000,
    );
    let max_attempts = number(
        "CALLBRIDGE_WEBHOOK_MAX_ATTEMPTS",
        raw.webhook_max_attempts.take(),
        u64::from(crate::webhooks::schedule::DEFAULT_MAX_ATTEMPTS),
        1,
        u64::from(MAX_ATTEMPTS_LIMIT),
    );
    WebhookSettings {
        default_url,
        secret,
        schedule: RetrySchedule {
            base: Duration::from_millis(base_ms),
            max_attempts: u32::try_from(max_attempts).unwrap_or(MAX_ATTEMPTS_LIMIT),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{env, minimal};
    use crate::config::{ConfigError, Requirement, Settings};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn load(extra: &[(&str, &str)], requirement: Requirement) -> Result<Settings, ConfigError> {
        let mut pairs = minimal();
        pairs.extend_from_slice(extra);
        Settings::load(&env(&pairs), None, requirement)
    }

    fn problems(result: Result<Settings, ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid(lines)) => lines.join("\n"),
            other => panic!("expected invalid settings, got {other:?}"),
        }
    }

    #[test]
    fn webhooks_are_off_by_default_with_the_documented_schedule() {
        let settings = load(&[], Requirement::Serve).expect("valid");

        assert!(settings.webhooks.default_url.is_none());
        assert!(settings.webhooks.secret.is_none());
        assert_eq!(settings.webhooks.schedule.base.as_millis(), 5_000);
        assert_eq!(settings.webhooks.schedule.max_attempts, 8);
    }

    #[test]
    fn a_url_secret_and_schedule_are_read() {
        let settings = load(
            &[
                ("CALLBRIDGE_WEBHOOK_URL", "https://hooks.example.com/cb"),
                ("CALLBRIDGE_WEBHOOK_SECRET", SECRET),
                ("CALLBRIDGE_WEBHOOK_RETRY_BASE_MS", "200"),
                ("CALLBRIDGE_WEBHOOK_MAX_ATTEMPTS", "3"),
            ],
            Requirement::Serve,
        )
        .expect("valid");

        assert_eq!(
            settings.webhooks.default_url.map(String::from).as_deref(),
            Some("https://hooks.example.com/cb")
        );
        assert!(settings.webhooks.secret.is_some());
        assert_eq!(settings.webhooks.schedule.base.as_millis(), 200);
        assert_eq!(settings.webhooks.schedule.max_attempts, 3);
    }

    #[test]
    fn a_malformed_secret_is_refused_with_how_to_generate_one_and_without_the_secret() {
        let text = problems(load(
            &[("CALLBRIDGE_WEBHOOK_SECRET", "whsec_tooshort")],
            Requirement::Nothing,
        ));

        assert!(
            text.contains("CALLBRIDGE_WEBHOOK_SECRET is invalid"),
            "{text}"
        );
        assert!(text.contains("openssl rand -base64 32"), "{text}");
        assert!(!text.contains("tooshort"), "{text}");
    }

    #[test]
    fn serving_a_webhook_url_without_a_secret_or_over_plain_http_is_refused() {
        let without_secret = problems(load(
            &[("CALLBRIDGE_WEBHOOK_URL", "https://hooks.example.com/cb")],
            Requirement::Serve,
        ));
        let plain_http = problems(load(
            &[
                ("CALLBRIDGE_WEBHOOK_URL", "http://hooks.example.com/cb"),
                ("CALLBRIDGE_WEBHOOK_SECRET", SECRET),
            ],
            Requirement::Serve,
        ));

        assert!(
            without_secret.contains("CALLBRIDGE_WEBHOOK_SECRET is not"),
            "{without_secret}"
        );
        assert!(plain_http.contains("must be https://"), "{plain_http}");
    }

    #[test]
    fn a_zero_base_or_too_many_attempts_are_refused() {
        let text = problems(load(
            &[
                ("CALLBRIDGE_WEBHOOK_RETRY_BASE_MS", "0"),
                ("CALLBRIDGE_WEBHOOK_MAX_ATTEMPTS", "50"),
            ],
            Requirement::Nothing,
        ));

        assert!(
            text.contains("CALLBRIDGE_WEBHOOK_RETRY_BASE_MS is invalid"),
            "{text}"
        );
        assert!(
            text.contains("CALLBRIDGE_WEBHOOK_MAX_ATTEMPTS is invalid"),
            "{text}"
        );
    }
}
