//! Twilio answering machine detection (AMD): the `AnsweredBy` verdict, the create-call parameters that ask for
//! asynchronous detection, and what callbridge does when a machine answers ([`MachinePolicy`]).
//!
//! callbridge always asks for `MachineDetection=DetectMessageEnd` with `AsyncAmd=true`: the TwiML (our
//! `<Connect><Stream>`) runs at once and Twilio POSTs the verdict to `AsyncAmdStatusCallback` later, after a person
//! said hello or after a machine's greeting ended (so a message can start after the beep). The callback carries
//! `CallSid`, `AccountSid`, `AnsweredBy` and `MachineDetectionDuration` (ms) and is signed like every webhook.
//! Follows <https://www.twilio.com/docs/voice/answering-machine-detection> (parameters, tuning ranges and the
//! `AnsweredBy` values) and <https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource>.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Who or what answered, as Twilio's `AnsweredBy` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    /// A person.
    Human,
    /// A machine, detected at the start of its greeting (only with `MachineDetection=Enable`).
    MachineStart,
    /// A machine whose greeting ended with a beep (`DetectMessageEnd`).
    MachineEndBeep,
    /// A machine whose greeting ended in silence (`DetectMessageEnd`).
    MachineEndSilence,
    /// A machine whose greeting ended some other way (`DetectMessageEnd`).
    MachineEndOther,
    /// A fax machine.
    Fax,
    /// Twilio could not tell before `MachineDetectionTimeout`.
    Unknown,
}

impl AnsweredBy {
    /// Every value, in Twilio's documentation order.
    pub const ALL: [AnsweredBy; 7] = [
        AnsweredBy::Human,
        AnsweredBy::MachineStart,
        AnsweredBy::MachineEndBeep,
        AnsweredBy::MachineEndSilence,
        AnsweredBy::MachineEndOther,
        AnsweredBy::Fax,
        AnsweredBy::Unknown,
    ];

    /// Twilio's spelling (`machine_end_beep`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Human => "human",
            AnsweredBy::MachineStart => "machine_start",
            AnsweredBy::MachineEndBeep => "machine_end_beep",
            AnsweredBy::MachineEndSilence => "machine_end_silence",
            AnsweredBy::MachineEndOther => "machine_end_other",
            AnsweredBy::Fax => "fax",
            AnsweredBy::Unknown => "unknown",
        }
    }

    /// True for an answering machine whose greeting is over: a message may start now.
    pub fn is_machine_end(self) -> bool {
        matches!(
            self,
            AnsweredBy::MachineEndBeep
                | AnsweredBy::MachineEndSilence
                | AnsweredBy::MachineEndOther
        )
    }
}

impl fmt::Display for AnsweredBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of Twilio's `AnsweredBy` values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown AnsweredBy {0:?}; expected one of human, machine_start, machine_end_beep, machine_end_silence, \
     machine_end_other, fax, unknown"
)]
pub struct UnknownAnsweredBy(pub String);

impl FromStr for AnsweredBy {
    type Err = UnknownAnsweredBy;

    /// Parses Twilio's spelling exactly.
    ///
    /// # Errors
    /// [`UnknownAnsweredBy`] naming the string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AnsweredBy::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAnsweredBy(s.to_owned()))
    }
}

/// What an outbound call does when an answering machine picks up: `hang_up`, `leave_message` or `ignore` (no
/// detection at all: the model talks to whoever answers, as on a call without AMD). A fax is always hung up on.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MachinePolicy {
    /// Hang up as soon as a machine is detected (end reason `machine_hung_up`).
    HangUp,
    /// Wait for the end of the greeting, leave the voicemail message, hang up once it has played (end reason
    /// `voicemail_left`).
    LeaveMessage,
    /// No detection (no AMD charge): the call behaves as one without it.
    #[default]
    Ignore,
}

impl MachinePolicy {
    /// The spelling of settings and the API (`hang_up`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MachinePolicy::HangUp => "hang_up",
            MachinePolicy::LeaveMessage => "leave_message",
            MachinePolicy::Ignore => "ignore",
        }
    }
}

impl fmt::Display for MachinePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`MachinePolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown answering_machine {0:?}; expected hang_up, leave_message or ignore")]
pub struct UnknownMachinePolicy(pub String);

impl FromStr for MachinePolicy {
    type Err = UnknownMachinePolicy;

    /// Parses `hang_up`, `leave_message` or `ignore` (case-insensitive, surrounding spaces ignored).
    ///
    /// # Errors
    /// [`UnknownMachinePolicy`] naming the string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hang_up" => Ok(MachinePolicy::HangUp),
            "leave_message" => Ok(MachinePolicy::LeaveMessage),
            "ignore" => Ok(MachinePolicy::Ignore),
            _ => Err(UnknownMachinePolicy(s.to_owned())),
        }
    }
}

/// Twilio's AMD tuning, as configured. Ranges from the AMD page's "Optional API tuning parameters".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdTuning {
    /// `MachineDetectionTimeout`: seconds Twilio tries before answering `unknown` (3–59, Twilio's default 30).
    pub timeout_s: u32,
    /// `MachineDetectionSpeechThreshold`, ms of speech that count as a machine (1000–6000, default 2400); `None`
    /// leaves Twilio's default.
    pub speech_threshold_ms: Option<u32>,
    /// `MachineDetectionSpeechEndThreshold`, ms of silence that end a greeting (500–5000, default 1200).
    pub speech_end_threshold_ms: Option<u32>,
    /// `MachineDetectionSilenceTimeout`, ms of initial silence before `unknown` (2000–10000, default 5000).
    pub silence_timeout_ms: Option<u32>,
}

impl Default for AmdTuning {
    /// Twilio's defaults: a 30 s timeout and no tuning parameter sent.
    fn default() -> Self {
        AmdTuning {
            timeout_s: 30,
            speech_threshold_ms: None,
            speech_end_threshold_ms: None,
            silence_timeout_ms: None,
        }
    }
}

/// Asynchronous AMD on a new call: where the verdict goes and how detection is tuned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDetection {
    /// `AsyncAmdStatusCallback`: our signed webhook for this call (`PUBLIC_URL/amd-status/{call_id}`).
    pub callback_url: String,
    /// The tuning.
    pub tuning: AmdTuning,
}

impl MachineDetection {
    /// The form fields of a create-call request: `MachineDetection=DetectMessageEnd`, `AsyncAmd=true`,
    /// `AsyncAmdStatusCallback`, `AsyncAmdStatusCallbackMethod=POST`, `MachineDetectionTimeout` and each tuning
    /// parameter that is set.
    pub fn form_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("MachineDetection", "DetectMessageEnd".to_owned()),
            ("AsyncAmd", "true".to_owned()),
            ("AsyncAmdStatusCallback", self.callback_url.clone()),
            ("AsyncAmdStatusCallbackMethod", "POST".to_owned()),
            ("MachineDetectionTimeout", self.tuning.timeout_s.to_string()),
        ];
        let optional = [
            (
                "MachineDetectionSpeechThreshold",
                self.tuning.speech_threshold_ms,
            ),
            (
                "MachineDetectionSpeechEndThreshold",
                self.tuning.speech_end_threshold_ms,
            ),
            (
                "MachineDetectionSilenceTimeout",
                self.tuning.silence_timeout_ms,
            ),
        ];
        fields.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| (name, v.to_string()))),
        );
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answered_by_value_parses_from_and_prints_as_twilios_spelling() {
        for value in AnsweredBy::ALL {
            assert_eq!(value.as_str().parse::<AnsweredBy>(), Ok(value));
            assert_eq!(
                serde_json::to_value(value).expect("serializes"),
                value.as_str()
            );
        }
        assert!("Human".parse::<AnsweredBy>().is_err());
        assert!("machine".parse::<AnsweredBy>().is_err());
    }

    #[test]
    fn only_the_machine_end_values_say_a_greeting_is_over() {
        let ends: Vec<AnsweredBy> = AnsweredBy::ALL
            .into_iter()
            .filter(|a| a.is_machine_end())
            .collect();
        assert_eq!(
            ends,
            [
                AnsweredBy::MachineEndBeep,
                AnsweredBy::MachineEndSilence,
                AnsweredBy::MachineEndOther
            ]
        );
    }

    #[test]
    fn policies_parse_their_names_and_refuse_others() {
        assert_eq!("hang_up".parse(), Ok(MachinePolicy::HangUp));
        assert_eq!(" Leave_Message ".parse(), Ok(MachinePolicy::LeaveMessage));
        assert_eq!("ignore".parse(), Ok(MachinePolicy::Ignore));
        let error = "voicemail"
            .parse::<MachinePolicy>()
            .expect_err("not a policy");
        assert!(error.to_string().contains("leave_message"), "{error}");
    }

    #[test]
    fn the_create_fields_ask_for_async_detection_of_the_message_end_with_the_tuning_that_is_set() {
        let detection = MachineDetection {
            callback_url: "https://cb.example/amd-status/call_1".into(),
            tuning: AmdTuning {
                timeout_s: 45,
                speech_end_threshold_ms: Some(1500),
                ..AmdTuning::default()
            },
        };

        let fields = detection.form_fields();

        assert_eq!(
            fields,
            [
                ("MachineDetection", "DetectMessageEnd".to_owned()),
                ("AsyncAmd", "true".to_owned()),
                (
                    "AsyncAmdStatusCallback",
                    "https://cb.example/amd-status/call_1".to_owned()
                ),
                ("AsyncAmdStatusCallbackMethod", "POST".to_owned()),
                ("MachineDetectionTimeout", "45".to_owned()),
                ("MachineDetectionSpeechEndThreshold", "1500".to_owned()),
            ]
        );
    }
}
