//! Where a webhook may go: `https://` anywhere, or `http://` to a loopback host (`localhost`, `127.0.0.0/8`, `::1`)
//! for development. No credentials in the URL, no fragment. The Standard Webhooks spec advises https ("Enforcing
//! HTTPS"); the signature proves who sent the body, but only TLS keeps the transcript from being read on the way.

use url::Url;

/// Longest webhook URL accepted, bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// Not a URL at all.
    #[error("webhook_url {0:?} is not a URL")]
    NotAUrl(String),
    /// Longer than [`MAX_URL_BYTES`].
    #[error("webhook_url is longer than {MAX_URL_BYTES} bytes")]
    TooLong,
    /// Neither https nor loopback http.
    #[error(
        "webhook_url {0:?} must be https:// (http:// only to a loopback host such as http://127.0.0.1:8080, for \
         development)"
    )]
    NotHttps(String),
    /// User name or password in the URL.
    #[error("webhook_url must not carry a user name or password")]
    Credentials,
    /// A fragment (`#...`), which HTTP never sends.
    #[error("webhook_url must not have a fragment (#...)")]
    Fragment,
}

/// Checks `text` as a webhook destination and returns it parsed.
///
/// # Errors
/// [`DestinationError`] saying what is wrong (the URL is repeated except for credentials).
pub fn parse_webhook_url(text: &str) -> Result<Url, DestinationError> {
    let text = text.trim();
    if text.len() > MAX_URL_BYTES {
        return Err(DestinationError::TooLong);
    }
    let url = Url::parse(text).map_err(|_| DestinationError::NotAUrl(text.to_owned()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(DestinationError::Credentials);
    }
    let allowed = match url.scheme() {
        "https" => url.host().is_some(),
        "http" => is_loopback(&url),
        _ => false,
    };
    if !allowed {
        return Err(DestinationError::NotHttps(text.to_owned()));
    }
    if url.fragment().is_some() {
        return Err(DestinationError::Fragment);
    }
    Ok(url)
}

/// Why a call's webhook URL is refused when the call is placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRefusal {
    /// The URL itself is not acceptable.
    #[error(transparent)]
    Invalid(#[from] DestinationError),
    /// The server has no signing secret, so it sends no webhooks.
    #[error(
        "webhook_url needs the server to have a signing secret (CALLBRIDGE_WEBHOOK_SECRET); webhooks are always signed"
    )]
    NoSecret,
}

/// Which webhook URL a new call gets: the server's default, and whether webhooks can be signed at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// `CALLBRIDGE_WEBHOOK_URL`: where calls that name no URL send their webhooks (inbound calls too).
    pub default_url: Option<Url>,
    /// Whether `CALLBRIDGE_WEBHOOK_SECRET` is set (without it no webhook is sent).
    pub signing: bool,
}

impl WebhookPolicy {
    /// The URL a call's webhooks go to: `requested` (checked) when given and not blank, else the default; `None`
    /// when neither, or when the server cannot sign.
    ///
    /// # Errors
    /// [`WebhookRefusal::Invalid`] for a URL that is not https (or loopback http); [`WebhookRefusal::NoSecret`]
    /// when a URL is asked for but the server has no secret.
    pub fn resolve(&self, requested: Option<&str>) -> Result<Option<String>, WebhookRefusal> {
        match requested.map(str::trim).filter(|url| !url.is_empty()) {
            Some(url) => {
                let url = parse_webhook_url(url)?;
                if !self.signing {
                    return Err(WebhookRefusal::NoSecret);
                }
                Ok(Some(url.to_string()))
            }
            None => Ok(self
                .default_url
                .as_ref()
                .filter(|_| self.signing)
                .map(Url::to_string)),
        }
    }
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_to_loopback_are_accepted() {
        for text in [
            "https://hooks.example.com/callbridge",
            "https://hooks.example.com:8443/a?b=c",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:9000/",
        ] {
            assert!(parse_webhook_url(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn plain_http_elsewhere_and_other_schemes_are_refused() {
        for text in [
            "http://hooks.example.com/callbridge",
            "http://10.0.0.5/hook",
            "ftp://hooks.example.com/",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(parse_webhook_url(text), Err(DestinationError::NotHttps(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn a_call_gets_its_own_url_else_the_default_and_none_without_a_secret() {
        let policy = WebhookPolicy {
            default_url: Some(Url::parse("https://default.example.com/hook").expect("url")),
            signing: true,
        };
        let unsigned = WebhookPolicy {
            signing: false,
            ..policy.clone()
        };

        assert_eq!(
            policy.resolve(Some("https://mine.example.com/h")),
            Ok(Some("https://mine.example.com/h".to_owned()))
        );
        assert_eq!(
            policy.resolve(Some("  ")),
            Ok(Some("https://default.example.com/hook".to_owned()))
        );
        assert!(matches!(
            policy.resolve(Some("http://mine.example.com/h")),
            Err(WebhookRefusal::Invalid(DestinationError::NotHttps(_)))
        ));
        assert_eq!(
            unsigned.resolve(Some("https://mine.example.com/h")),
            Err(WebhookRefusal::NoSecret)
        );
        assert_eq!(unsigned.resolve(None), Ok(None));
    }

    #[test]
    fn credentials_fragments_garbage_and_huge_urls_are_refused() {
        assert_eq!(
            parse_webhook_url("https://user:pw@hooks.example.com/"),
            Err(DestinationError::Credentials)
        );
        assert_eq!(
            parse_webhook_url("https://hooks.example.com/#x"),
            Err(DestinationError::Fragment)
        );
        assert!(matches!(
            parse_webhook_url("not a url"),
            Err(DestinationError::NotAUrl(_))
        ));
        let huge = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(parse_webhook_url(&huge), Err(DestinationError::TooLong));
    }
}
