//! The session's `truncation` setting: what OpenAI drops from the conversation once it outgrows the model's input
//! limit, and so how many input tokens every response re-reads.
//!
//! Shapes follow the GA session (`RealtimeTruncation` in the `openai` Python SDK,
//! `openai.types.realtime.realtime_truncation`;
//! <https://platform.openai.com/docs/api-reference/realtime-client-events/session/update>):
//! the string `"auto"` or `"disabled"`, or `{"type":"retention_ratio","retention_ratio":0.8,
//! "token_limits":{"post_instructions":16000}}` (`token_limits` optional; without it the model's own limit applies).
//! `retention_ratio` is the fraction of the post-instruction conversation kept when a truncation happens, so one
//! truncation makes room for several turns and the cached prefix survives between them.

use std::fmt;

use serde::Serialize;
use serde::ser::{SerializeMap as _, Serializer};

/// The default `retention_ratio`: keep 80% of the conversation tokens when truncating (OpenAI's own example value).
pub const DEFAULT_RETENTION_RATIO: f64 = 0.8;
/// The default post-instruction token limit for phone calls: well under the window of a 32k-context Realtime model
/// (28,224 tokens with 4,096 output tokens, OpenAI's example), so a long call's every turn re-reads at most this
/// many conversation tokens.
pub const DEFAULT_POST_INSTRUCTIONS_TOKENS: u32 = 16_000;

/// `session.truncation`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Truncation {
    /// `"auto"`: OpenAI drops the oldest messages just enough when the model's input limit is reached (every turn
    /// past the limit truncates again, and each truncation busts the cached prefix).
    Auto,
    /// `"disabled"`: never truncate; a conversation over the limit gets an error instead.
    Disabled,
    /// `{"type":"retention_ratio",...}`: when over the limit, drop messages until `retention_ratio` of the limit is
    /// used.
    RetentionRatio {
        /// Fraction of the post-instruction conversation tokens kept, 0.0 to 1.0.
        retention_ratio: f64,
        /// `token_limits.post_instructions`: the limit on conversation tokens after the instructions (and tools);
        /// `None` omits `token_limits` (the model's default limit).
        post_instructions_tokens: Option<u32>,
    },
}

impl Default for Truncation {
    /// `retention_ratio` 0.8 with a 16,000-token limit after the instructions (see the constants).
    fn default() -> Self {
        Truncation::RetentionRatio {
            retention_ratio: DEFAULT_RETENTION_RATIO,
            post_instructions_tokens: Some(DEFAULT_POST_INSTRUCTIONS_TOKENS),
        }
    }
}

impl Truncation {
    /// The configured kind by name (`auto`, `disabled` or `retention_ratio`) with the ratio and token limit used by
    /// `retention_ratio`.
    ///
    /// # Errors
    /// A readable message for an unknown kind or a ratio outside 0.0 to 1.0.
    pub fn from_parts(
        kind: &str,
        retention_ratio: f64,
        post_instructions_tokens: Option<u32>,
    ) -> Result<Self, String> {
        match kind.trim() {
            "auto" => Ok(Truncation::Auto),
            "disabled" => Ok(Truncation::Disabled),
            "retention_ratio" => {
                if !(0.0..=1.0).contains(&retention_ratio) {
                    return Err(format!(
                        "retention ratio {retention_ratio} is not within 0.0 to 1.0"
                    ));
                }
                Ok(Truncation::RetentionRatio {
                    retention_ratio,
                    post_instructions_tokens,
                })
            }
            other => Err(format!(
                "unknown truncation {other:?}, expected one of: auto, disabled, retention_ratio"
            )),
        }
    }

    /// The kind's API name.
    pub fn kind(&self) -> &'static str {
        match self {
            Truncation::Auto => "auto",
            Truncation::Disabled => "disabled",
            Truncation::RetentionRatio { .. } => "retention_ratio",
        }
    }
}

impl fmt::Display for Truncation {
    /// `auto`, `disabled`, `retention_ratio 0.8` or `retention_ratio 0.8, post_instructions 16000 tokens`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Truncation::RetentionRatio {
                retention_ratio,
                post_instructions_tokens,
            } => {
                write!(f, "retention_ratio {retention_ratio}")?;
                if let Some(tokens) = post_instructions_tokens {
                    write!(f, ", post_instructions {tokens} tokens")?;
                }
                Ok(())
            }
            other => f.write_str(other.kind()),
        }
    }
}

impl Serialize for Truncation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct TokenLimits {
            post_instructions: u32,
        }
        match self {
            Truncation::Auto | Truncation::Disabled => serializer.serialize_str(self.kind()),
            Truncation::RetentionRatio {
                retention_ratio,
                post_instructions_tokens,
            } => {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("type", "retention_ratio")?;
                map.serialize_entry("retention_ratio", retention_ratio)?;
                if let Some(post_instructions) = post_instructions_tokens {
                    map.serialize_entry(
                        "token_limits",
                        &TokenLimits {
                            post_instructions: *post_instructions,
                        },
                    )?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auto_and_disabled_are_sent_as_plain_strings() {
        assert_eq!(
            serde_json::to_value(Truncation::Auto).expect("JSON"),
            json!("auto")
        );
        assert_eq!(
            serde_json::to_value(Truncation::Disabled).expect("JSON"),
            json!("disabled")
        );
    }

    #[test]
    fn retention_ratio_is_sent_as_an_object_with_its_token_limit_when_one_is_set() {
        let with_limit = Truncation::from_parts("retention_ratio", 0.5, Some(8000)).expect("valid");
        let without = Truncation::from_parts("retention_ratio", 0.5, None).expect("valid");

        assert_eq!(
            serde_json::to_value(with_limit).expect("JSON"),
            json!({"type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"post_instructions": 8000}})
        );
        assert_eq!(
            serde_json::to_value(without).expect("JSON"),
            json!({"type": "retention_ratio", "retention_ratio": 0.5})
        );
    }

    #[test]
    fn an_unknown_kind_or_a_ratio_outside_zero_to_one_is_refused() {
        assert!(Truncation::from_parts("sometimes", 0.8, None).is_err());
        assert!(Truncation::from_parts("retention_ratio", 1.5, None).is_err());
        assert!(Truncation::from_parts("retention_ratio", -0.1, None).is_err());
    }

    #[test]
    fn the_default_for_phone_calls_keeps_eighty_percent_under_a_sixteen_thousand_token_limit() {
        assert_eq!(
            Truncation::default().to_string(),
            "retention_ratio 0.8, post_instructions 16000 tokens"
        );
    }
}
