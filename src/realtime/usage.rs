//! Token usage of Realtime responses (`response.done.response.usage`) and its sum over a call, as the call record
//! keeps it. Follows <https://platform.openai.com/docs/api-reference/realtime-server-events/response/done> and the
//! `openai` SDK's `RealtimeResponseUsage`.

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Deserializer, Serialize};

/// Token usage of a response (`response.done.response.usage`), or a sum of them over a call.
///
/// Missing or `null` counts read as 0. Sums saturate at `u64::MAX` rather than overflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input plus output tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_tokens: u64,
    /// Input tokens, text and audio, cached included.
    #[serde(default, deserialize_with = "null_as_default")]
    pub input_tokens: u64,
    /// Output tokens, text and audio.
    #[serde(default, deserialize_with = "null_as_default")]
    pub output_tokens: u64,
    /// Input tokens by kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub input_token_details: InputTokenDetails,
    /// Output tokens by kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub output_token_details: OutputTokenDetails,
    /// GPT-Live calls: billable (active) session seconds as GPT-Live reported them last (`session.usage.updated`,
    /// `session.closed`); GPT-Live bills per active minute, per second, not by tokens
    /// (<https://developers.openai.com/api/docs/models/gpt-live-1>). 0 and absent for Realtime calls.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub live_active_seconds: u64,
}

/// Serde's `skip_serializing_if` for an absent count.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Input tokens by kind (`usage.input_token_details`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokenDetails {
    /// Text input tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub text_tokens: u64,
    /// Audio input tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub audio_tokens: u64,
    /// Input tokens served from the cache (a subset of the input tokens, billed lower).
    #[serde(default, deserialize_with = "null_as_default")]
    pub cached_tokens: u64,
}

/// Output tokens by kind (`usage.output_token_details`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTokenDetails {
    /// Text output tokens (the transcript).
    #[serde(default, deserialize_with = "null_as_default")]
    pub text_tokens: u64,
    /// Audio output tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub audio_tokens: u64,
}

impl AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.input_token_details += other.input_token_details;
        self.output_token_details += other.output_token_details;
        self.live_active_seconds = self
            .live_active_seconds
            .saturating_add(other.live_active_seconds);
    }
}

impl Add for Usage {
    type Output = Usage;

    fn add(mut self, other: Usage) -> Usage {
        self += other;
        self
    }
}

impl AddAssign for InputTokenDetails {
    fn add_assign(&mut self, other: InputTokenDetails) {
        self.text_tokens = self.text_tokens.saturating_add(other.text_tokens);
        self.audio_tokens = self.audio_tokens.saturating_add(other.audio_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
    }
}

impl AddAssign for OutputTokenDetails {
    fn add_assign(&mut self, other: OutputTokenDetails) {
        self.text_tokens = self.text_tokens.saturating_add(other.text_tokens);
        self.audio_tokens = self.audio_tokens.saturating_add(other.audio_tokens);
    }
}

/// Reads a field that may be missing (with `#[serde(default)]`) or `null` as the type's default.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_with_missing_and_null_counts_reads_them_as_zero() {
        let text = r#"{"total_tokens":10,"input_tokens":null,"input_token_details":null,"output_token_details":{"audio_tokens":4}}"#;

        let usage: Usage = serde_json::from_str(text).expect("lenient usage");

        assert_eq!(
            usage,
            Usage {
                total_tokens: 10,
                output_token_details: OutputTokenDetails {
                    text_tokens: 0,
                    audio_tokens: 4
                },
                ..Usage::default()
            }
        );
    }

    #[test]
    fn usage_adds_every_count() {
        let one = Usage {
            live_active_seconds: 0,
            total_tokens: 1,
            input_tokens: 2,
            output_tokens: 3,
            input_token_details: InputTokenDetails {
                text_tokens: 4,
                audio_tokens: 5,
                cached_tokens: 6,
            },
            output_token_details: OutputTokenDetails {
                text_tokens: 7,
                audio_tokens: 8,
            },
        };
        let mut sum = one;

        sum += one;

        assert_eq!(
            sum,
            Usage {
                live_active_seconds: 0,
                total_tokens: 2,
                input_tokens: 4,
                output_tokens: 6,
                input_token_details: InputTokenDetails {
                    text_tokens: 8,
                    audio_tokens: 10,
                    cached_tokens: 12,
                },
                output_token_details: OutputTokenDetails {
                    text_tokens: 14,
                    audio_tokens: 16,
                },
            }
        );
        assert_eq!(one + one, sum);
    }

    #[test]
    fn usage_sum_saturates_instead_of_overflowing() {
        let huge = Usage {
            total_tokens: u64::MAX,
            ..Usage::default()
        };

        let sum = huge + huge;

        assert_eq!(sum.total_tokens, u64::MAX);
    }

    #[test]
    fn usage_serializes_every_count_for_the_call_record() {
        let usage = Usage {
            total_tokens: 3,
            input_tokens: 2,
            output_tokens: 1,
            ..Usage::default()
        };

        let value = serde_json::to_value(usage).expect("usage serializes");

        assert_eq!(
            value,
            json!({
                "total_tokens": 3, "input_tokens": 2, "output_tokens": 1,
                "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
                "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
            })
        );
    }
}
