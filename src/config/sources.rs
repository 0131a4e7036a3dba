//! Where each setting came from, and the checks that need to know it: the name a value was actually given under
//! (so `CALLBRIDGE_PORT=abc` is reported as `CALLBRIDGE_PORT`, not `PORT`), keys in `callbridge.toml` that are not
//! settings (with a "did you mean"), and the placeholders of `.env.example` left in place.
//!
//! Every error line of the loader opens with the setting's documented environment name (its well-known name such as
//! `PORT`, else `CALLBRIDGE_` + the key); [`Sources::rename`] rewrites that first word to the name the value really
//! came from.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::keys::SETTINGS;

/// Which layer a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Nothing set it: the built-in default.
    Default,
    /// A line of the `.env` file (loaded into the environment at start-up, never over a variable already set).
    DotEnv,
    /// The process environment.
    Environment,
    /// The TOML settings file (`callbridge.toml`, or the path in `CALLBRIDGE_CONFIG`).
    File,
}

/// Where one setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The layer.
    pub origin: Origin,
    /// The name it was given under: an environment name (`CALLBRIDGE_PORT`, `PORT`), the key in the file, or the
    /// documented environment name for a default.
    pub name: String,
}

/// The source of every setting in [`SETTINGS`], and the settings file's path.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Flat key → where its value came from; keys left at their default are absent.
    by_key: HashMap<&'static str, Source>,
    /// The settings file as it was given (`callbridge.toml`), if one was read.
    file: Option<String>,
}

/// The documented environment name of a key: its well-known name (`PORT`), else `CALLBRIDGE_` + the key upper-cased.
pub fn env_name(key: &str) -> String {
    SETTINGS
        .iter()
        .find(|(k, _, _)| *k == key)
        .and_then(|(_, alias, _)| *alias)
        .map_or_else(
            || format!("CALLBRIDGE_{}", key.to_ascii_uppercase()),
            str::to_owned,
        )
}

impl Sources {
    /// Works out, for every setting, which layer won: `CALLBRIDGE_<KEY>`, then the well-known name (both from the
    /// environment, or from `.env` when `dotenv_names` holds the name), then the file's keys, else the default.
    pub fn resolve(
        env: &HashMap<String, String>,
        dotenv_names: &HashSet<String>,
        file: Option<(&str, &HashSet<String>)>,
    ) -> Self {
        let from_env = |name: String| {
            env.contains_key(&name).then(|| Source {
                origin: if dotenv_names.contains(&name) {
                    Origin::DotEnv
                } else {
                    Origin::Environment
                },
                name,
            })
        };
        let mut by_key = HashMap::new();
        for (key, alias, _) in SETTINGS {
            let source = from_env(format!("CALLBRIDGE_{}", key.to_ascii_uppercase()))
                .or_else(|| alias.and_then(|alias| from_env(alias.to_owned())))
                .or_else(|| {
                    file.filter(|(_, keys)| keys.contains(*key))
                        .map(|_| Source {
                            origin: Origin::File,
                            name: (*key).to_owned(),
                        })
                });
            if let Some(source) = source {
                by_key.insert(*key, source);
            }
        }
        Self {
            by_key,
            file: file.map(|(path, _)| path.to_owned()),
        }
    }

    /// Where `key`'s value came from.
    pub fn of(&self, key: &str) -> Source {
        self.by_key.get(key).cloned().unwrap_or_else(|| Source {
            origin: Origin::Default,
            name: env_name(key),
        })
    }

    /// Where `key`'s value came from, for `check-config`: `default`, `.env: PORT`, `environment: CALLBRIDGE_PORT`
    /// or `callbridge.toml`.
    pub fn describe(&self, key: &str) -> String {
        let source = self.of(key);
        match source.origin {
            Origin::Default => "default".to_owned(),
            Origin::DotEnv => format!(".env: {}", source.name),
            Origin::Environment => format!("environment: {}", source.name),
            Origin::File => self.file_name().to_owned(),
        }
    }

    /// One error line with its first word (a documented environment name) replaced by the name the value was
    /// given under: `CALLBRIDGE_PORT is invalid: ...`, `port in callbridge.toml is invalid: ...`,
    /// `PORT in .env is invalid: ...`. Lines about a setting left at its default are kept as they are.
    pub fn rename(&self, line: String) -> String {
        let Some((first, rest)) = line.split_once(' ') else {
            return line;
        };
        let Some((key, _, _)) = SETTINGS.iter().find(|(key, _, _)| env_name(key) == first) else {
            return line;
        };
        let source = self.of(key);
        match source.origin {
            Origin::Default => line,
            Origin::Environment => format!("{} {rest}", source.name),
            Origin::DotEnv => format!("{} in .env {rest}", source.name),
            Origin::File => format!("{key} in {} {rest}", self.file_name()),
        }
    }

    fn file_name(&self) -> &str {
        self.file.as_deref().unwrap_or("callbridge.toml")
    }
}

/// One line for each key of the settings file that is not a setting, with the closest setting's name when one is
/// close enough to be a typo: `voise in callbridge.toml is not a setting (did you mean voice?)`.
pub fn unknown_file_keys<'a>(
    file: &str,
    keys: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let mut unknown: Vec<&String> = keys
        .into_iter()
        .filter(|key| !SETTINGS.iter().any(|(k, _, _)| k == key))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(
            |key| match closest(key, SETTINGS.iter().map(|(k, _, _)| *k)) {
                Some(near) => format!("{key} in {file} is not a setting (did you mean {near}?)"),
                None => format!(
                    "{key} in {file} is not a setting (`callbridge check-config` lists them all)"
                ),
            },
        )
        .collect()
}

/// The candidate closest to `word` by Damerau-Levenshtein distance, if it is within a third of `word`'s length
/// (at least 1, at most 3 edits): a typo, not a different word.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(&word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// The settings checked for placeholders: the secrets, the URLs and the account's identifiers (free text such as
/// `system_message` may well contain `...`).
pub const PLACEHOLDER_CHECKED: [&str; 8] = [
    "openai_api_key",
    "twilio_auth_token",
    "api_key",
    "public_url",
    "twilio_account_sid",
    "twilio_phone_number",
    "openai_realtime_url",
    "twilio_api_base_url",
];

/// The `.env.example` value of a setting, or another stand-in for one, that cannot work: a value with `...` or `…`
/// in it (`sk-...`), a `your-...` / `your_...` word (`your-key`, `https://your-tunnel.trycloudflare.com`,
/// `https://YOUR-PUBLIC-URL`), or `changeme`.
pub fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    lower.contains("...")
        || lower.contains('…')
        || lower == "changeme"
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
            .any(|word| word.starts_with("your-") || word.starts_with("your_"))
}

/// What to put in place of a placeholder, per setting that has one in `.env.example` or README.
pub fn placeholder_hint(key: &str) -> &'static str {
    match key {
        "openai_api_key" => "put your OpenAI API key here (https://platform.openai.com/api-keys)",
        "public_url" => {
            "put your tunnel's https URL here (`make tunnel-quick` prints it), e.g. https://quiet-forest-1234.trycloudflare.com"
        }
        "twilio_auth_token" => {
            "put your Twilio auth token here (Console > Account > API keys & tokens)"
        }
        "api_key" => "put a long random string here (openssl rand -hex 32)",
        _ => "replace it with your own value",
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Default => "default",
            Origin::DotEnv => ".env",
            Origin::Environment => "environment",
            Origin::File => "callbridge.toml",
        })
    }
}
