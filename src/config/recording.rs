//! The call recording settings: whether Twilio records calls (outbound by default, inbound), the consent line a
//! recorded call hears first, and how long recordings are kept at Twilio before they are deleted.
//!
//! Recording is off unless turned on. `CALLBRIDGE_RECORDING` is the default of every call (`place_call`'s `record`
//! overrides it per outbound call); `CALLBRIDGE_RECORDING_INBOUND` sets inbound calls apart and follows
//! `CALLBRIDGE_RECORDING` when unset. See <https://www.twilio.com/docs/voice/api/recording>.

use std::time::Duration;

use super::keys::Raw;
use super::load::{nonempty, parse_or};

/// The consent line a recorded call hears first unless `CALLBRIDGE_RECORDING_CONSENT_MESSAGE` says otherwise.
pub const DEFAULT_CONSENT_MESSAGE: &str = "This call is recorded.";

/// The value of `CALLBRIDGE_RECORDING_CONSENT_MESSAGE` that turns the consent line off.
pub const NO_CONSENT_MESSAGE: &str = "none";

/// The longest retention accepted, days (a hundred years: longer is a mistake, and would not fit a timestamp).
pub const MAX_RETENTION_DAYS: u64 = 36_500;

/// Call recording ([`crate::config::Settings::recording`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSettings {
    /// Whether an outbound call is recorded when `place_call` does not say (`CALLBRIDGE_RECORDING`).
    pub outbound: bool,
    /// Whether inbound calls are recorded (`CALLBRIDGE_RECORDING_INBOUND`, else `CALLBRIDGE_RECORDING`).
    pub inbound: bool,
    /// What a recorded call hears before the assistant (TwiML `<Say>`); `None` says nothing.
    pub consent_message: Option<String>,
    /// How long after Twilio reports a recording completed it is deleted at Twilio; `None` keeps recordings.
    pub retention: Option<Duration>,
}

impl Default for RecordingSettings {
    /// Recording off, the default consent line, recordings kept.
    fn default() -> Self {
        RecordingSettings {
            outbound: false,
            inbound: false,
            consent_message: Some(DEFAULT_CONSENT_MESSAGE.to_owned()),
            retention: None,
        }
    }
}

/// Reads the recording section: `on`/`off` switches (also `true`/`false`), the consent line, the retention (days,
/// or seconds which win).
pub(super) fn recording(errors: &mut Vec<String>, raw: &mut Raw) -> RecordingSettings {
    let outbound = switch(errors, "CALLBRIDGE_RECORDING", raw.recording.take()).unwrap_or(false);
    let inbound = switch(
        errors,
        "CALLBRIDGE_RECORDING_INBOUND",
        raw.recording_inbound.take(),
    )
    .unwrap_or(outbound);
    let consent_message = match nonempty(raw.recording_consent_message.take()) {
        None => Some(DEFAULT_CONSENT_MESSAGE.to_owned()),
        Some(text) if text.eq_ignore_ascii_case(NO_CONSENT_MESSAGE) => None,
        Some(text) => Some(text),
    };
    let days = parse_or(
        errors,
        "CALLBRIDGE_RECORDING_RETENTION_DAYS",
        raw.recording_retention_days.take(),
        0u64,
    );
    let seconds = parse_or(
        errors,
        "CALLBRIDGE_RECORDING_RETENTION_S",
        raw.recording_retention_s.take(),
        0u64,
    );
    if days > MAX_RETENTION_DAYS {
        errors.push(format!(
            "CALLBRIDGE_RECORDING_RETENTION_DAYS is invalid: {days} (at most {MAX_RETENTION_DAYS})"
        ));
    }
    if seconds > MAX_RETENTION_DAYS * 24 * 3600 {
        errors.push(format!(
            "CALLBRIDGE_RECORDING_RETENTION_S is invalid: {seconds} (at most {} s)",
            MAX_RETENTION_DAYS * 24 * 3600
        ));
    }
    let retention_s = if seconds > 0 {
        seconds
    } else {
        days.saturating_mul(24 * 3600)
    };
    RecordingSettings {
        outbound,
        inbound,
        consent_message,
        retention: (retention_s > 0).then(|| Duration::from_secs(retention_s)),
    }
}

/// An `on`/`off` switch (`true`/`false`, `yes`/`no`, `1`/`0` too); `None` when unset, an error line when neither.
fn switch(errors: &mut Vec<String>, name: &str, raw: Option<String>) -> Option<bool> {
    let text = nonempty(raw)?;
    match text.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => {
            errors.push(format!("{name} is invalid: {text:?} (use on or off)"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<RecordingSettings, Vec<String>> {
        let mut raw = Raw::default();
        for (key, value) in pairs {
            let value = Some((*value).to_owned());
            match *key {
                "recording" => raw.recording = value,
                "recording_inbound" => raw.recording_inbound = value,
                "recording_consent_message" => raw.recording_consent_message = value,
                "recording_retention_days" => raw.recording_retention_days = value,
                "recording_retention_s" => raw.recording_retention_s = value,
                other => panic!("not a recording key: {other}"),
            }
        }
        let mut errors = Vec::new();
        let settings = recording(&mut errors, &mut raw);
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }

    #[test]
    fn recording_is_off_by_default_with_the_default_consent_line_and_no_retention() {
        assert_eq!(load(&[]), Ok(RecordingSettings::default()));
        assert_eq!(
            RecordingSettings::default().consent_message.as_deref(),
            Some(DEFAULT_CONSENT_MESSAGE)
        );
    }

    #[test]
    fn inbound_recording_follows_the_general_switch_unless_set_apart() {
        let on = load(&[("recording", "on")]).expect("valid");
        let outbound_only =
            load(&[("recording", "on"), ("recording_inbound", "off")]).expect("valid");
        let inbound_only = load(&[("recording_inbound", "on")]).expect("valid");

        assert!(on.outbound && on.inbound);
        assert!(outbound_only.outbound && !outbound_only.inbound);
        assert!(!inbound_only.outbound && inbound_only.inbound);
    }

    #[test]
    fn a_switch_that_is_neither_on_nor_off_is_refused_by_name() {
        let errors = load(&[("recording", "sometimes")]).expect_err("invalid");

        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("CALLBRIDGE_RECORDING is invalid"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_consent_line_can_be_changed_or_turned_off_with_none() {
        let changed = load(&[(
            "recording_consent_message",
            "Calls are recorded for quality.",
        )])
        .expect("valid");
        let off = load(&[("recording_consent_message", "None")]).expect("valid");

        assert_eq!(
            changed.consent_message.as_deref(),
            Some("Calls are recorded for quality.")
        );
        assert_eq!(off.consent_message, None);
    }

    #[test]
    fn retention_is_given_in_days_or_in_seconds_which_win() {
        let days = load(&[("recording_retention_days", "30")]).expect("valid");
        let seconds = load(&[
            ("recording_retention_days", "30"),
            ("recording_retention_s", "5"),
        ])
        .expect("valid");
        let zero = load(&[("recording_retention_days", "0")]).expect("valid");

        assert_eq!(days.retention, Some(Duration::from_secs(30 * 24 * 3600)));
        assert_eq!(seconds.retention, Some(Duration::from_secs(5)));
        assert_eq!(zero.retention, None);
    }

    #[test]
    fn a_retention_over_a_hundred_years_is_refused() {
        let errors = load(&[("recording_retention_days", "1000000000000")]).expect_err("too long");

        assert!(
            errors[0].starts_with("CALLBRIDGE_RECORDING_RETENTION_DAYS is invalid"),
            "{errors:?}"
        );
    }
}
