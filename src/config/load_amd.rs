//! The answering machine detection section: the default policy, Twilio's AMD tuning and how long the assistant
//! waits for a verdict, read like the rest of [`super`]: one line per invalid value.

use std::time::Duration;

use super::{nonempty, parse_at_least, parse_or};
use crate::config::AmdSettings;
use crate::config::keys::Raw;
use crate::twilio::amd::{AmdTuning, MachinePolicy};

/// Answering machine detection: the default policy, Twilio's tuning (each within the range Twilio takes, see
/// <https://www.twilio.com/docs/voice/answering-machine-detection>) and how long the assistant waits for a verdict.
pub(super) fn amd(errors: &mut Vec<String>, raw: &mut Raw) -> AmdSettings {
    let policy = parse_or(
        errors,
        "CALLBRIDGE_ANSWERING_MACHINE",
        raw.answering_machine.take(),
        MachinePolicy::Ignore,
    );
    let timeout_s = in_range(
        errors,
        "CALLBRIDGE_AMD_TIMEOUT_S",
        raw.amd_timeout_s.take(),
        3..=59,
    );
    let speech_threshold_ms = in_range(
        errors,
        "CALLBRIDGE_AMD_SPEECH_THRESHOLD_MS",
        raw.amd_speech_threshold_ms.take(),
        1000..=6000,
    );
    let speech_end_threshold_ms = in_range(
        errors,
        "CALLBRIDGE_AMD_SPEECH_END_THRESHOLD_MS",
        raw.amd_speech_end_threshold_ms.take(),
        500..=5000,
    );
    let silence_timeout_ms = in_range(
        errors,
        "CALLBRIDGE_AMD_SILENCE_TIMEOUT_MS",
        raw.amd_silence_timeout_ms.take(),
        2000..=10000,
    );
    let verdict_wait_s = parse_at_least(
        errors,
        "CALLBRIDGE_AMD_VERDICT_WAIT_S",
        raw.amd_verdict_wait_s.take(),
        DEFAULT_AMD_VERDICT_WAIT_S,
        1u64,
    );
    AmdSettings {
        policy,
        tuning: AmdTuning {
            timeout_s: timeout_s.unwrap_or(AmdTuning::default().timeout_s),
            speech_threshold_ms,
            speech_end_threshold_ms,
            silence_timeout_ms,
        },
        verdict_wait: Duration::from_secs(verdict_wait_s),
    }
}

/// The default of `amd_verdict_wait_s`: Twilio's 30 s detection timeout and 10 s for a greeting's end and the
/// callback's way to us.
pub const DEFAULT_AMD_VERDICT_WAIT_S: u64 = 40;

/// An optional number that Twilio takes only within `range`; `None` when unset.
fn in_range(
    errors: &mut Vec<String>,
    name: &str,
    raw: Option<String>,
    range: std::ops::RangeInclusive<u32>,
) -> Option<u32> {
    let text = nonempty(raw)?;
    match text.parse::<u32>() {
        Ok(value) if range.contains(&value) => Some(value),
        Ok(value) => {
            errors.push(format!(
                "{name} is invalid: {value} (Twilio takes {} to {})",
                range.start(),
                range.end()
            ));
            None
        }
        Err(e) => {
            errors.push(format!("{name} is invalid: {text:?} ({e})"));
            None
        }
    }
}
