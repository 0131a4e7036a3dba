//! OpenAI models announced for shutdown, as OpenAI's deprecations page lists them
//! (<https://developers.openai.com/api/docs/deprecations>, read 2026-11-30): the Realtime models and the input
//! transcription models callbridge can be configured with. `callbridge check-config` warns when a configured model is
//! on this list ([`deprecation`]).
//!
//! - 2026-08-26 notice: `whisper-1`, `gpt-4o-transcribe`, `gpt-4o-mini-transcribe` and `gpt-4o-transcribe-diarize`
//!   shut down on 2027-02-26; replacement `gpt-transcribe` (committed turns of a Realtime session, see
//!   <https://developers.openai.com/api/docs/models/gpt-transcribe>) or `gpt-live-transcribe`.
//! - `gpt-realtime` and `gpt-realtime-mini` shut down on 2027-01-20; replacements `gpt-realtime-2.1` and
//!   `gpt-realtime-2.1-mini`.
//! - Already shut down: the `gpt-4o-realtime-preview` and `gpt-4o-mini-realtime-preview` families (2026-05-07) and
//!   `gpt-realtime-mini-2025-10-06` (2026-07-23).

/// One model on OpenAI's deprecations page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecation {
    /// The model name; its dated snapshots (`name-2025-06-03`) are covered too.
    pub model: &'static str,
    /// When OpenAI shuts it down (or did), `YYYY-MM-DD`.
    pub shutdown: &'static str,
    /// What OpenAI recommends instead.
    pub replacement: &'static str,
}

/// The page the table follows.
pub const DEPRECATIONS_PAGE: &str = "https://developers.openai.com/api/docs/deprecations";

/// The deprecated Realtime and transcription models (see the module docs for the page and the date it was read).
pub const DEPRECATED_MODELS: &[Deprecation] = &[
    Deprecation {
        model: "whisper-1",
        shutdown: "2027-02-26",
        replacement: "gpt-transcribe",
    },
    Deprecation {
        model: "gpt-4o-transcribe",
        shutdown: "2027-02-26",
        replacement: "gpt-transcribe",
    },
    Deprecation {
        model: "gpt-4o-mini-transcribe",
        shutdown: "2027-02-26",
        replacement: "gpt-transcribe",
    },
    Deprecation {
        model: "gpt-4o-transcribe-diarize",
        shutdown: "2027-02-26",
        replacement: "gpt-transcribe",
    },
    Deprecation {
        model: "gpt-realtime",
        shutdown: "2027-01-20",
        replacement: "gpt-realtime-2.1",
    },
    Deprecation {
        model: "gpt-realtime-mini",
        shutdown: "2027-01-20",
        replacement: "gpt-realtime-2.1-mini",
    },
    Deprecation {
        model: "gpt-4o-realtime-preview",
        shutdown: "2026-05-07",
        replacement: "gpt-realtime-2.1",
    },
    Deprecation {
        model: "gpt-4o-mini-realtime-preview",
        shutdown: "2026-05-07",
        replacement: "gpt-realtime-2.1-mini",
    },
];

/// The deprecation of `model`, when it or the model it is a dated snapshot of (`gpt-realtime-2025-08-28`) is listed.
pub fn deprecation(model: &str) -> Option<&'static Deprecation> {
    DEPRECATED_MODELS.iter().find(|entry| {
        model == entry.model
            || model
                .strip_prefix(entry.model)
                .is_some_and(|rest| rest.starts_with("-20"))
    })
}

/// A one-line warning for `model` set as `setting`, when it is deprecated: whether it shuts down or already did
/// (compared with `today`, `YYYY-MM-DD`), the replacement and the page.
pub fn deprecation_warning(setting: &str, model: &str, today: &str) -> Option<String> {
    let entry = deprecation(model)?;
    let when = if today >= entry.shutdown {
        format!("was shut down on {}", entry.shutdown)
    } else {
        format!("shuts down on {}", entry.shutdown)
    };
    Some(format!(
        "{setting} = {model}: OpenAI deprecated this model; it {when} (use {} instead; {DEPRECATIONS_PAGE})",
        entry.replacement
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_model_and_its_dated_snapshots_are_deprecated_but_a_newer_family_is_not() {
        assert_eq!(
            deprecation("gpt-realtime").map(|d| d.shutdown),
            Some("2027-01-20")
        );
        assert!(deprecation("gpt-realtime-2025-08-28").is_some());
        assert!(deprecation("gpt-4o-realtime-preview-2024-12-17").is_some());
        assert_eq!(deprecation("gpt-realtime-2.1"), None);
        assert_eq!(deprecation("gpt-realtime-2.1-mini"), None);
        assert_eq!(deprecation("gpt-transcribe"), None);
    }

    #[test]
    fn the_warning_says_whether_the_shutdown_is_ahead_or_past() {
        let ahead = deprecation_warning(
            "transcription_model",
            "gpt-4o-mini-transcribe",
            "2026-11-30",
        )
        .expect("deprecated");
        let past = deprecation_warning("openai_model", "gpt-4o-realtime-preview", "2026-11-30")
            .expect("deprecated");

        assert!(ahead.contains("shuts down on 2027-02-26"), "{ahead}");
        assert!(ahead.contains("use gpt-transcribe instead"), "{ahead}");
        assert!(past.contains("was shut down on 2026-05-07"), "{past}");
    }

    #[test]
    fn the_defaults_are_not_deprecated() {
        assert_eq!(deprecation(crate::config::DEFAULT_OPENAI_MODEL), None);
        assert_eq!(
            deprecation(crate::config::keys::DEFAULT_TRANSCRIPTION_MODEL),
            None
        );
    }
}
