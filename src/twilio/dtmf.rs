//! Keypad tones to send on a call: the digits string of TwiML `<Play digits="…"/>` and of the `SendDigits` parameter
//! of a call create, checked once into [`DtmfDigits`].
//!
//! Twilio plays `0-9`, `*` and `#` as DTMF tones and takes `w` as a half-second pause
//! (<https://www.twilio.com/docs/voice/twiml/play>, "digits";
//! <https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource>, `SendDigits`).

use std::fmt;

/// The most characters one [`DtmfDigits`] holds: a phone-menu path, an extension or a PIN, with pauses.
pub const MAX_DTMF_CHARS: usize = 32;

/// Keypad tones that passed the check: 1 to [`MAX_DTMF_CHARS`] characters of `0-9`, `*`, `#` and `w` (a half-second
/// pause), with at least one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfDigits(String);

/// Why a digits string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// No key to press (empty, or only pauses).
    #[error("digits must contain at least one key (0-9, *, #)")]
    NoKey,
    /// Longer than [`MAX_DTMF_CHARS`].
    #[error("digits must be at most {MAX_DTMF_CHARS} characters")]
    TooLong,
    /// A character outside `0-9*#w`.
    #[error("digits may contain only 0-9, *, # and w (a half-second pause)")]
    BadCharacter,
}

impl DtmfDigits {
    /// Checks `text` (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`DtmfError`] when it is empty, only pauses, too long, or has a character outside `0-9*#w`.
    pub fn parse(text: &str) -> Result<Self, DtmfError> {
        let text = text.trim();
        if text.chars().count() > MAX_DTMF_CHARS {
            return Err(DtmfError::TooLong);
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'w'))
        {
            return Err(DtmfError::BadCharacter);
        }
        if !text.bytes().any(|b| b != b'w') {
            return Err(DtmfError::NoKey);
        }
        Ok(DtmfDigits(text.to_owned()))
    }

    /// The digits as Twilio takes them.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How long Twilio takes to play them, roughly, in ms: 500 per pause and about 200 per key (tone and gap).
    pub fn play_ms(&self) -> u64 {
        self.0
            .bytes()
            .map(|b| if b == b'w' { 500 } else { 200 })
            .sum()
    }
}

impl fmt::Display for DtmfDigits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_pauses_are_accepted() {
        assert_eq!(
            DtmfDigits::parse(" 1w2#* ").map(|d| d.0),
            Ok("1w2#*".into())
        );
    }

    #[test]
    fn anything_but_keys_and_pauses_is_refused() {
        for bad in ["1a", "+14155550100", "1 2", "W", "1\u{0}", "١"] {
            assert_eq!(
                DtmfDigits::parse(bad),
                Err(DtmfError::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_or_pause_only_digits_are_refused() {
        assert_eq!(DtmfDigits::parse(""), Err(DtmfError::NoKey));
        assert_eq!(DtmfDigits::parse("www"), Err(DtmfError::NoKey));
    }

    #[test]
    fn digits_longer_than_the_maximum_are_refused() {
        assert!(DtmfDigits::parse(&"1".repeat(MAX_DTMF_CHARS)).is_ok());
        assert_eq!(
            DtmfDigits::parse(&"1".repeat(MAX_DTMF_CHARS + 1)),
            Err(DtmfError::TooLong)
        );
    }
}
