//! E.164 phone numbers, parsed once: a value of type [`E164`] carries the proof that it passed the check.
//!
//! E.164 (ITU-T) writes a number as `+`, the country code and the national number: at most 15 digits, the first not
//! `0`, no spaces or punctuation (`+14155550100`). Twilio expects and sends every number in this form
//! (<https://www.twilio.com/docs/glossary/what-e164>).
//!
//! Two levels of checking, both here:
//! - [`E164::parse`] checks the form only. Settings (`TWILIO_PHONE_NUMBER`, the allow-lists) and the destination
//!   policy use it, so a test number such as `+15550100` is accepted there.
//! - [`E164::parse_dialable`] also asks libphonenumber's metadata (the `phonenumber` crate) whether the number is
//!   valid for its country. Placing an outbound call uses it, so a call is never attempted to a number that cannot
//!   exist.
//!
//! This module depends on nothing in the crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a text is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E164Error {
    /// The text does not start with `+`.
    #[error("does not start with +")]
    NoPlus,
    /// Something other than a digit follows the `+` (a space, a dash, a letter).
    #[error("has something other than digits after the +")]
    NotDigits,
    /// Fewer than 2 or more than 15 digits.
    #[error("has {0} digits (E.164 has 2 to 15)")]
    Length(usize),
    /// The country code starts with `0`, which no country code does.
    #[error("starts with +0 (no country code starts with 0)")]
    LeadingZero,
    /// Well formed, but not a number of its country's numbering plan (libphonenumber's metadata).
    #[error("is not a number of its country's numbering plan")]
    NotInNumberingPlan,
}

/// A phone number in E.164 form: `+`, then 2 to 15 digits, the first not `0`.
///
/// Built only through [`E164::parse`] or [`E164::parse_dialable`] (or deserialized from a string, which parses);
/// serialized as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

impl E164 {
    /// Checks the form of `text` (no trimming: a space is an error).
    ///
    /// # Errors
    /// [`E164Error::NoPlus`], [`E164Error::NotDigits`], [`E164Error::Length`] or [`E164Error::LeadingZero`].
    pub fn parse(text: &str) -> Result<Self, E164Error> {
        let digits = text.strip_prefix('+').ok_or(E164Error::NoPlus)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E164Error::NotDigits);
        }
        if !(2..=15).contains(&digits.len()) {
            return Err(E164Error::Length(digits.len()));
        }
        if digits.starts_with('0') {
            return Err(E164Error::LeadingZero);
        }
        Ok(Self(text.to_owned()))
    }

    /// As [`E164::parse`], and the number must also be valid for its country per libphonenumber's metadata (the
    /// `phonenumber` crate): an existing country code and a national number of a length and range that country uses.
    ///
    /// # Errors
    /// As [`E164::parse`], and [`E164Error::NotInNumberingPlan`].
    pub fn parse_dialable(text: &str) -> Result<Self, E164Error> {
        let number = Self::parse(text)?;
        let dialable = phonenumber::parse(None, number.as_str())
            .is_ok_and(|parsed| phonenumber::is_valid(&parsed));
        if dialable {
            Ok(number)
        } else {
            Err(E164Error::NotInNumberingPlan)
        }
    }

    /// The number as text, `+` included (`+14155550100`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for E164 {
    type Error = E164Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<E164> for String {
    fn from(number: E164) -> Self {
        number.0
    }
}

impl std::str::FromStr for E164 {
    type Err = E164Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// True for an E.164 prefix as the outbound allow-list takes it: `+`, then 1 to 15 digits (`+1`, `+4420`).
pub fn is_e164_prefix(prefix: &str) -> bool {
    prefix.strip_prefix('+').is_some_and(|digits| {
        !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_plus_and_digits_only() {
        assert!(E164::parse("+15550100").is_ok());
        assert!(E164::parse("+442071838750").is_ok());
        assert_eq!(E164::parse("15550100"), Err(E164Error::NoPlus));
        assert_eq!(E164::parse("+0123"), Err(E164Error::LeadingZero));
        assert_eq!(E164::parse("+1 555 0100"), Err(E164Error::NotDigits));
        assert_eq!(E164::parse("+1234567890123456"), Err(E164Error::Length(16)));
        assert_eq!(E164::parse("+1"), Err(E164Error::Length(1)));
    }

    #[test]
    fn e164_validation_uses_real_numbering_plans() {
        assert!(E164::parse_dialable("+14155552671").is_ok());
        assert!(E164::parse_dialable("+442071838750").is_ok());
        assert!(E164::parse_dialable("4155552671").is_err(), "no plus");
        assert!(E164::parse_dialable("+1 415 555 2671").is_err(), "spaces");
        assert_eq!(
            E164::parse_dialable("+1415"),
            Err(E164Error::NotInNumberingPlan),
            "too short for its country"
        );
        assert_eq!(
            E164::parse_dialable("+999123456789"),
            Err(E164Error::NotInNumberingPlan),
            "no such country code"
        );
    }

    #[test]
    fn a_parsed_number_displays_and_serializes_as_the_text_it_was_parsed_from() {
        let number = E164::parse("+14155550100").expect("valid");
        assert_eq!(number.as_str(), "+14155550100");
        assert_eq!(number.to_string(), "+14155550100");
        assert_eq!(
            serde_json::to_string(&number).expect("serializes"),
            "\"+14155550100\""
        );
    }

    #[test]
    fn deserializing_a_number_parses_it() {
        let number: E164 = serde_json::from_str("\"+14155550100\"").expect("valid");
        assert_eq!(number.as_str(), "+14155550100");
        assert!(serde_json::from_str::<E164>("\"555-0100\"").is_err());
    }

    #[test]
    fn prefixes_are_a_plus_and_one_to_fifteen_digits() {
        assert!(is_e164_prefix("+1"));
        assert!(is_e164_prefix("+4420"));
        assert!(!is_e164_prefix("+"));
        assert!(!is_e164_prefix("44"));
        assert!(!is_e164_prefix("+44 20"));
        assert!(!is_e164_prefix("+1234567890123456"));
    }
}
