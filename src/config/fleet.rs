//! The fleet settings: several callbridge instances sharing one Redis (`CALLBRIDGE_REDIS_URL`), the prefix of every
//! key they write there (`CALLBRIDGE_REDIS_KEY_PREFIX`), this instance's name in the fleet (`CALLBRIDGE_INSTANCE_ID`)
//! and how long its lease lasts without a heartbeat (`CALLBRIDGE_INSTANCE_LEASE_S`). Without a Redis URL callbridge
//! keeps everything in process, as one instance. See [`crate::fleet`].

use rand::TryRng as _;
use rand::rngs::SysRng;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::keys::Raw;
use super::load::nonempty;

/// The default key prefix: every key callbridge writes in Redis starts with it.
pub const DEFAULT_KEY_PREFIX: &str = "callbridge:";
/// The default instance lease, seconds: an instance not heard from for this long is taken for dead.
pub const DEFAULT_LEASE_S: u32 = 15;
/// The shortest lease accepted, seconds (the heartbeat runs every third of it).
pub const MIN_LEASE_S: u32 = 3;
/// The longest lease accepted, seconds.
pub const MAX_LEASE_S: u32 = 3_600;
/// The longest instance id accepted, characters.
pub const MAX_INSTANCE_ID_LEN: usize = 64;

/// How this instance takes part in a fleet ([`crate::config::Settings::fleet`]).
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// `redis://[user:password@]host[:port][/db]` (or `rediss://` for TLS); `None` runs without a fleet. Secret: it
    /// may hold the password (shown redacted by `check-config` and in errors, see [`redacted_redis_url`]).
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key (default [`DEFAULT_KEY_PREFIX`]), so that several fleets can share one Redis.
    pub key_prefix: String,
    /// This instance's name in the fleet: `[A-Za-z0-9._-]`, at most [`MAX_INSTANCE_ID_LEN`] characters (default:
    /// the hostname, `-` and 8 random hex digits, new at every start).
    pub instance_id: String,
    /// How long the instance's lease lasts, seconds; the heartbeat renews it every third of that.
    pub lease_s: u32,
}

impl Default for FleetSettings {
    /// No Redis, the default prefix and lease, a fresh instance id.
    fn default() -> Self {
        FleetSettings {
            redis_url: None,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            instance_id: default_instance_id(),
            lease_s: DEFAULT_LEASE_S,
        }
    }
}

/// `url` with its password (if any) replaced by `********`, for logs, errors and `check-config`; a value that is
/// not a URL at all is shown as `(not a URL)`, since it could be a password pasted in the wrong place.
pub fn redacted_redis_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("********"));
            }
            parsed.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// The hostname (from `/proc/sys/kernel/hostname`, else `HOSTNAME`, else `callbridge`), cut to what an instance id
/// may hold, then `-` and 8 random hex digits.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let mut host: String = host
        .trim()
        .chars()
        .filter(|c| is_id_char(*c))
        .take(MAX_INSTANCE_ID_LEN - 9)
        .collect();
    if host.is_empty() {
        host = "callbridge".to_owned();
    }
    let mut random = [0_u8; 4];
    SysRng
        .try_fill_bytes(&mut random)
        .expect("the operating system's random source is available");
    format!("{host}-{}", hex::encode(random))
}

/// Whether `c` may appear in an instance id (it is part of Redis keys and log lines).
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Reads the fleet section, one error line per bad value.
pub(super) fn fleet(errors: &mut Vec<String>, raw: &mut Raw) -> FleetSettings {
    let redis_url = nonempty(raw.redis_url.take()).and_then(|text| match Url::parse(&text) {
        Ok(url) if matches!(url.scheme(), "redis" | "rediss") && url.host().is_some() => {
            Some(SecretString::from(text))
        }
        Ok(_) => {
            errors.push(format!(
                "CALLBRIDGE_REDIS_URL is invalid: {} (use redis://host:port or rediss://host:port)",
                redacted_redis_url(&text)
            ));
            None
        }
        Err(e) => {
            errors.push(format!(
                "CALLBRIDGE_REDIS_URL is invalid: {e} (use redis://host:port or rediss://host:port)"
            ));
            None
        }
    });
    let key_prefix = match raw.redis_key_prefix.take() {
        None => DEFAULT_KEY_PREFIX.to_owned(),
        Some(prefix) if prefix.trim().is_empty() => DEFAULT_KEY_PREFIX.to_owned(),
        Some(prefix) if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            errors.push(format!(
                "CALLBRIDGE_REDIS_KEY_PREFIX is invalid: {prefix:?} (no spaces or control characters)"
            ));
            DEFAULT_KEY_PREFIX.to_owned()
        }
        Some(prefix) => prefix,
    };
    let instance_id = match nonempty(raw.instance_id.take()) {
        None => default_instance_id(),
        Some(id) if id.len() <= MAX_INSTANCE_ID_LEN && id.chars().all(is_id_char) => id,
        Some(id) => {
            errors.push(format!(
                "CALLBRIDGE_INSTANCE_ID is invalid: {id:?} (letters, digits, '.', '_' and '-', at most \
                 {MAX_INSTANCE_ID_LEN} characters)"
            ));
            default_instance_id()
        }
    };
    let lease_s = match nonempty(raw.instance_lease_s.take()) {
        None => DEFAULT_LEASE_S,
        Some(text) => match text.parse::<u32>() {
            Ok(s) if (MIN_LEASE_S..=MAX_LEASE_S).contains(&s) => s,
            _ => {
                errors.push(format!(
                    "CALLBRIDGE_INSTANCE_LEASE_S is invalid: {text:?} (a whole number of seconds from \
                     {MIN_LEASE_S} to {MAX_LEASE_S})"
                ));
                DEFAULT_LEASE_S
            }
        },
    };
    FleetSettings {
        redis_url,
        key_prefix,
        instance_id,
        lease_s,
    }
}

impl FleetSettings {
    /// The Redis URL as `check-config` shows it: redacted, or `(not set: one instance, state in process)`.
    pub fn describe_redis_url(&self) -> String {
        self.redis_url.as_ref().map_or(
            "(not set: one instance, state in process)".to_owned(),
            |url| redacted_redis_url(url.expose_secret()),
        )
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::tests::{env, minimal};
    use crate::config::{Requirement, Settings};

    fn load(extra: &[(&'static str, &'static str)]) -> Result<Settings, String> {
        let mut pairs = minimal();
        pairs.extend_from_slice(extra);
        Settings::load(&env(&pairs), None, Requirement::Serve).map_err(|e| e.to_string())
    }

    #[test]
    fn without_a_redis_url_there_is_no_fleet_and_the_defaults_apply() {
        let settings = load(&[]).expect("valid");

        assert!(settings.fleet.redis_url.is_none());
        assert_eq!(settings.fleet.key_prefix, "callbridge:");
        assert_eq!(settings.fleet.lease_s, 15);
    }

    #[test]
    fn the_default_instance_id_is_the_hostname_and_eight_hex_digits_new_each_time() {
        let first = default_instance_id();
        let second = default_instance_id();

        let (host, suffix) = first.rsplit_once('-').expect("a dash");
        assert!(!host.is_empty());
        assert_eq!(suffix.len(), 8);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{first}");
        assert_ne!(first, second);
    }

    #[test]
    fn the_fleet_settings_are_read_from_the_environment() {
        let settings = load(&[
            ("CALLBRIDGE_REDIS_URL", "redis://:pw@127.0.0.1:6379/2"),
            ("CALLBRIDGE_REDIS_KEY_PREFIX", "cb-test:"),
            ("CALLBRIDGE_INSTANCE_ID", "node-a"),
            ("CALLBRIDGE_INSTANCE_LEASE_S", "6"),
        ])
        .expect("valid");

        let fleet = &settings.fleet;
        assert_eq!(
            fleet
                .redis_url
                .as_ref()
                .map(|u| u.expose_secret().to_owned()),
            Some("redis://:pw@127.0.0.1:6379/2".to_owned())
        );
        assert_eq!(fleet.key_prefix, "cb-test:");
        assert_eq!(fleet.instance_id, "node-a");
        assert_eq!(fleet.lease_s, 6);
    }

    #[test]
    fn bad_fleet_settings_are_each_refused_naming_the_setting() {
        let error = load(&[
            ("CALLBRIDGE_REDIS_URL", "http://:hunter2@redis.example:6379"),
            ("CALLBRIDGE_INSTANCE_ID", "a b"),
            ("CALLBRIDGE_INSTANCE_LEASE_S", "1"),
            ("CALLBRIDGE_REDIS_KEY_PREFIX", "a b"),
        ])
        .expect_err("invalid");

        assert!(
            error.contains("CALLBRIDGE_REDIS_URL is invalid: http://:********@redis.example:6379"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
        assert!(
            error.contains("CALLBRIDGE_INSTANCE_ID is invalid"),
            "{error}"
        );
        assert!(
            error.contains("CALLBRIDGE_INSTANCE_LEASE_S is invalid"),
            "{error}"
        );
        assert!(
            error.contains("CALLBRIDGE_REDIS_KEY_PREFIX is invalid"),
            "{error}"
        );
    }

    #[test]
    fn check_config_shows_the_redis_url_without_its_password() {
        let settings = load(&[(
            "CALLBRIDGE_REDIS_URL",
            "redis://user:s3cretpass@10.0.0.5:6380/1",
        )])
        .expect("valid");

        let text = settings.describe();

        assert!(!text.contains("s3cretpass"), "{text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("redis_url"))
            .expect("a redis_url line");
        assert!(
            line.contains(
                "= redis://user:********@10.0.0.5:6380/1  (environment: CALLBRIDGE_REDIS_URL)"
            ),
            "{line}"
        );
    }

    #[test]
    fn a_url_without_a_password_is_shown_as_is_and_a_non_url_is_not_shown() {
        assert_eq!(
            redacted_redis_url("redis://127.0.0.1:6401"),
            "redis://127.0.0.1:6401"
        );
        assert_eq!(redacted_redis_url("hunter2"), "(not a URL)");
    }
}
