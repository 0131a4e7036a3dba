//! Who may call in and where calls may go out: the server-side caller allowlist ([`CallerAllowlist`]) and the
//! outbound destination policy against toll fraud ([`DestinationPolicy`]).
//!
//! Both are plain values built from [`crate::config::SecuritySettings`]; the webhook handler and the call service
//! ask them and act on the answer.
//!
//! **The destination policy.** An outbound call may go to a number listed exactly in
//! `CALLBRIDGE_OUTBOUND_ALLOWED_NUMBERS`, or to a number under one of the E.164 prefixes in
//! `CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES` (`+1` covers the whole North American Numbering Plan, Caribbean countries
//! included; use longer prefixes such as `+1415` to narrow it). With neither set, no call may go anywhere, and the
//! error names both settings. Under an allowed prefix, ranges that cost far more than an ordinary call are still
//! refused unless the number is listed exactly:
//!
//! - numbers libphonenumber (the `phonenumber` crate's metadata) types as **premium rate** or **shared cost**. Shared
//!   cost is refused too: those ranges (UK 084x, the international +808 range, ...) pay the callee a share of the
//!   charge, which is what toll fraud harvests;
//! - the prefixes of [`HIGH_COST_PREFIXES`]: satellite networks and the ITU's international network codes, which
//!   bill several dollars a minute and are not all typed by libphonenumber, and premium ranges it might miss;
//! - NANP numbers whose exchange is `976` (`+1 NPA 976 XXXX`), the legacy pay-per-call exchanges.
//!
//! Follows Twilio's guidance on toll fraud:
//! <https://www.twilio.com/docs/glossary/what-is-toll-fraud> and the ITU-T E.164 list of assigned country codes.

use crate::config::SecuritySettings;
use crate::phone::E164;

/// The setting that lists the allowed prefixes.
pub const PREFIXES_SETTING: &str = "CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES";
/// The setting that lists the exact numbers allowed (also premium-rate or satellite ones).
pub const NUMBERS_SETTING: &str = "CALLBRIDGE_OUTBOUND_ALLOWED_NUMBERS";

/// E.164 prefixes refused even under an allowed prefix unless the number is listed exactly: `(prefix, what it is)`.
///
/// | prefix | range |
/// |---|---|
/// | `+870` | Inmarsat satellite (SNAC) |
/// | `+871`–`+874` | former Inmarsat ocean-region satellite codes |
/// | `+878` | Universal Personal Telecommunications |
/// | `+881` | Global Mobile Satellite System (Iridium, Globalstar, ...) |
/// | `+882`, `+883` | international networks (Thuraya satellite, carriers' global networks) |
/// | `+888` | international network (telecommunications for disaster relief) |
/// | `+979` | International Premium Rate Service |
/// | `+991` | international public correspondence trial (ITPCS) |
/// | `+1900` | NANP premium rate (900 area code) |
/// | `+449` | UK premium rate (09) |
/// | `+4484`, `+4487` | UK service-charge, revenue-sharing ranges (084, 087) |
/// | `+4470` | UK personal numbers (070), charged like premium rate and a toll-fraud favourite |
pub const HIGH_COST_PREFIXES: &[(&str, &str)] = &[
    ("+870", "satellite (Inmarsat)"),
    ("+871", "satellite (former Inmarsat code)"),
    ("+872", "satellite (former Inmarsat code)"),
    ("+873", "satellite (former Inmarsat code)"),
    ("+874", "satellite (former Inmarsat code)"),
    (
        "+878",
        "international network (Universal Personal Telecommunications)",
    ),
    ("+881", "satellite (Global Mobile Satellite System)"),
    (
        "+882",
        "international network (satellite and global carriers)",
    ),
    ("+883", "international network (global carriers)"),
    ("+888", "international network (disaster relief)"),
    ("+979", "premium rate (International Premium Rate Service)"),
    ("+991", "international network (ITPCS trial)"),
    ("+1900", "premium rate (NANP 900)"),
    ("+449", "premium rate (UK 09)"),
    ("+4484", "revenue-sharing service number (UK 084)"),
    ("+4487", "revenue-sharing service number (UK 087)"),
    ("+4470", "personal number (UK 070)"),
];

/// Why an outbound destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The number is not E.164 (`+`, country code, number, digits only).
    #[error("{number:?} is not a phone number in E.164 form (e.g. +14155550100)")]
    NotE164 {
        /// The number as given.
        number: String,
    },
    /// Nothing is allowed: neither setting is configured (the default).
    #[error(
        "outbound calls are not allowed to any number yet: set {PREFIXES_SETTING} (E.164 prefixes, e.g. +1,+44) or \
         {NUMBERS_SETTING} (exact numbers) on the server"
    )]
    NoneAllowed,
    /// The number is under no allowed prefix and not listed exactly.
    #[error(
        "{number} is not an allowed destination (allowed prefixes: {prefixes}): add its prefix to \
         {PREFIXES_SETTING} or the number to {NUMBERS_SETTING} on the server"
    )]
    NotAllowed {
        /// The number.
        number: String,
        /// The allowed prefixes, comma-separated (`none` when only exact numbers are allowed).
        prefixes: String,
    },
    /// The number is under an allowed prefix but in a premium-rate, shared-cost or satellite range.
    #[error(
        "{number} is a {range} number: it is refused even under an allowed prefix unless it is listed exactly in \
         {NUMBERS_SETTING} on the server"
    )]
    HighCost {
        /// The number.
        number: String,
        /// What kind of range it is in (`premium rate (UK 09)`, `satellite (Inmarsat)`, ...).
        range: String,
    },
}

/// Where outbound calls may go (see the module docs for the rules).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// Allowed E.164 prefixes (`+1`, `+4420`); a number starting with one is allowed unless it is high-cost.
    pub prefixes: Vec<String>,
    /// Exact E.164 numbers allowed whatever their range.
    pub exact: Vec<String>,
}

impl DestinationPolicy {
    /// A policy allowing `prefixes` (E.164 prefixes) and `exact` numbers. Surrounding whitespace is ignored.
    pub fn new(prefixes: Vec<String>, exact: Vec<String>) -> Self {
        let clean = |list: Vec<String>| {
            list.into_iter()
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect()
        };
        DestinationPolicy {
            prefixes: clean(prefixes),
            exact: clean(exact),
        }
    }

    /// The policy of `CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES` and `CALLBRIDGE_OUTBOUND_ALLOWED_NUMBERS`.
    pub fn from_settings(security: &SecuritySettings) -> Self {
        DestinationPolicy::new(
            security.outbound_allowed_prefixes.clone(),
            security.outbound_allowed_numbers.clone(),
        )
    }

    /// Whether an outbound call may go to `e164`.
    ///
    /// # Errors
    /// [`PolicyError::NotE164`] for a number that is not E.164; [`PolicyError::NoneAllowed`] when nothing is
    /// configured; [`PolicyError::NotAllowed`] when the number is under no allowed prefix and not listed;
    /// [`PolicyError::HighCost`] when it is under an allowed prefix but premium-rate, shared-cost or satellite and
    /// not listed exactly.
    pub fn check(&self, e164: &str) -> Result<(), PolicyError> {
        if E164::parse(e164).is_err() {
            return Err(PolicyError::NotE164 {
                number: e164.to_owned(),
            });
        }
        if self.exact.iter().any(|listed| listed == e164) {
            return Ok(());
        }
        if self.prefixes.is_empty() && self.exact.is_empty() {
            return Err(PolicyError::NoneAllowed);
        }
        if !self.prefixes.iter().any(|prefix| e164.starts_with(prefix)) {
            return Err(PolicyError::NotAllowed {
                number: e164.to_owned(),
                prefixes: if self.prefixes.is_empty() {
                    "none".to_owned()
                } else {
                    self.prefixes.join(", ")
                },
            });
        }
        match high_cost_range(e164) {
            Some(range) => Err(PolicyError::HighCost {
                number: e164.to_owned(),
                range,
            }),
            None => Ok(()),
        }
    }
}

/// The kind of high-cost range `e164` is in (premium rate, shared cost, satellite, ...), or `None` for an
/// ordinary number. `e164` must be E.164.
pub fn high_cost_range(e164: &str) -> Option<String> {
    if let Some((_, what)) = HIGH_COST_PREFIXES
        .iter()
        .find(|(prefix, _)| e164.starts_with(prefix))
    {
        return Some((*what).to_owned());
    }
    // +1 NPA 976 XXXX: the legacy pay-per-call exchange in any NANP area code.
    if e164.len() == 12 && e164.starts_with("+1") && e164.get(5..8) == Some("976") {
        return Some("premium rate (NANP 976 exchange)".to_owned());
    }
    let parsed = phonenumber::parse(None, e164).ok()?;
    match parsed.number_type(&phonenumber::metadata::DATABASE) {
        phonenumber::Type::PremiumRate => Some("premium rate".to_owned()),
        phonenumber::Type::SharedCost => Some("shared cost".to_owned()),
        _ => None,
    }
}

/// Callers allowed to call in (`CALLBRIDGE_ALLOWED_CALLERS`): defense in depth for numbers without the Twilio
/// Function allowlist in front. Empty allows everyone; otherwise only a `From` equal to a listed E.164 number is
/// allowed, so anonymous or withheld callers (`anonymous`, `+266696687`, an empty `From`), SIP and client callers
/// are refused. See <https://www.twilio.com/docs/voice/twiml#request-parameters> for `From`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerAllowlist {
    /// The allowed E.164 numbers; empty allows everyone.
    pub numbers: Vec<String>,
}

impl CallerAllowlist {
    /// An allowlist of `numbers` (E.164); surrounding whitespace is ignored, empty entries dropped.
    pub fn new(numbers: Vec<String>) -> Self {
        CallerAllowlist {
            numbers: numbers
                .into_iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
        }
    }

    /// The allowlist of `CALLBRIDGE_ALLOWED_CALLERS`.
    pub fn from_settings(security: &SecuritySettings) -> Self {
        CallerAllowlist::new(security.allowed_callers.clone())
    }

    /// True when the list is empty (everyone may call) or `from` (Twilio's `From`) is on it.
    pub fn allows(&self, from: &str) -> bool {
        let from = from.trim();
        self.numbers.is_empty() || (!from.is_empty() && self.numbers.iter().any(|n| n == from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How a destination should fare.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Allowed,
        NoneAllowed,
        NotAllowed,
        HighCost,
        NotE164,
    }

    fn outcome(result: &Result<(), PolicyError>) -> Expect {
        match result {
            Ok(()) => Expect::Allowed,
            Err(PolicyError::NoneAllowed) => Expect::NoneAllowed,
            Err(PolicyError::NotAllowed { .. }) => Expect::NotAllowed,
            Err(PolicyError::HighCost { .. }) => Expect::HighCost,
            Err(PolicyError::NotE164 { .. }) => Expect::NotE164,
        }
    }

    fn policy(prefixes: &[&str], exact: &[&str]) -> DestinationPolicy {
        DestinationPolicy::new(
            prefixes.iter().map(|s| (*s).to_owned()).collect(),
            exact.iter().map(|s| (*s).to_owned()).collect(),
        )
    }

    #[test]
    fn destinations_are_allowed_or_refused_as_the_table_says() {
        use Expect::*;
        let none = policy(&[], &[]);
        let us_uk = policy(&["+1", "+44"], &[]);
        let us_uk_and_listed = policy(
            &["+1", "+44"],
            &["+19005550100", "+870772123456", "+33892123456"],
        );
        let sf_only = policy(&["+1415"], &[]);
        let exact_only = policy(&[], &["+14155552671"]);
        let cases: &[(&str, &DestinationPolicy, &str, Expect)] = &[
            // Ordinary numbers under an allowed prefix.
            ("US landline under +1", &us_uk, "+14155552671", Allowed),
            ("UK landline under +44", &us_uk, "+442071838750", Allowed),
            ("UK mobile under +44", &us_uk, "+447911123456", Allowed),
            ("US toll-free under +1", &us_uk, "+18005550100", Allowed),
            ("SF number under +1415", &sf_only, "+14155552671", Allowed),
            (
                "listed number, no prefixes",
                &exact_only,
                "+14155552671",
                Allowed,
            ),
            // The default allows nothing.
            (
                "default policy, US number",
                &none,
                "+14155552671",
                NoneAllowed,
            ),
            (
                "default policy, UK number",
                &none,
                "+442071838750",
                NoneAllowed,
            ),
            // Not under an allowed prefix.
            (
                "French number under +1,+44",
                &us_uk,
                "+33612345678",
                NotAllowed,
            ),
            (
                "German number under +1,+44",
                &us_uk,
                "+493012345678",
                NotAllowed,
            ),
            (
                "NY number under +1415",
                &sf_only,
                "+12125550123",
                NotAllowed,
            ),
            (
                "unlisted number, no prefixes",
                &exact_only,
                "+14155552672",
                NotAllowed,
            ),
            (
                "satellite not under a prefix",
                &us_uk,
                "+870772123456",
                NotAllowed,
            ),
            // Premium-rate, shared-cost and satellite ranges under an allowed prefix.
            ("US 900 premium under +1", &us_uk, "+19005550100", HighCost),
            ("US 976 exchange under +1", &us_uk, "+12129765555", HighCost),
            ("UK 09 premium under +44", &us_uk, "+449098790000", HighCost),
            ("UK 087 under +44", &us_uk, "+448712345678", HighCost),
            (
                "UK 070 personal under +44",
                &us_uk,
                "+447000000000",
                HighCost,
            ),
            (
                "French 089 premium under +33",
                &policy(&["+33"], &[]),
                "+33892123456",
                HighCost,
            ),
            (
                "German 0900 premium under +49",
                &policy(&["+49"], &[]),
                "+4990012345678",
                HighCost,
            ),
            (
                "Inmarsat under +8",
                &policy(&["+8"], &[]),
                "+870772123456",
                HighCost,
            ),
            (
                "Iridium under +8",
                &policy(&["+8"], &[]),
                "+8816123456789",
                HighCost,
            ),
            (
                "+882 network under +8",
                &policy(&["+8"], &[]),
                "+8821234567890",
                HighCost,
            ),
            (
                "+883 network under +8",
                &policy(&["+8"], &[]),
                "+883510012345",
                HighCost,
            ),
            (
                "+808 shared cost under +8",
                &policy(&["+8"], &[]),
                "+80812345678",
                HighCost,
            ),
            (
                "+979 premium under +9",
                &policy(&["+9"], &[]),
                "+97912345678",
                HighCost,
            ),
            // Listed exactly: allowed whatever the range.
            (
                "listed US 900 premium",
                &us_uk_and_listed,
                "+19005550100",
                Allowed,
            ),
            (
                "listed Inmarsat",
                &us_uk_and_listed,
                "+870772123456",
                Allowed,
            ),
            (
                "listed French premium, no +33",
                &us_uk_and_listed,
                "+33892123456",
                Allowed,
            ),
            (
                "another US 900 is still refused",
                &us_uk_and_listed,
                "+19005550101",
                HighCost,
            ),
            // Garbage.
            ("empty", &us_uk, "", NotE164),
            ("no plus", &us_uk, "14155552671", NotE164),
            ("spaces", &us_uk, "+1 415 555 2671", NotE164),
            ("letters", &us_uk, "+1415CALLME", NotE164),
            ("too long", &us_uk, "+1415555267112345", NotE164),
            ("leading zero", &us_uk, "+0123456789", NotE164),
            (
                "garbage under the default policy",
                &none,
                "anonymous",
                NotE164,
            ),
        ];
        for (name, policy, number, expected) in cases {
            let result = policy.check(number);

            assert_eq!(outcome(&result), *expected, "{name}: {number} → {result:?}");
        }
    }

    #[test]
    fn the_default_policy_error_names_both_settings() {
        let error = DestinationPolicy::default()
            .check("+14155552671")
            .expect_err("nothing is allowed by default");

        let message = error.to_string();
        assert!(message.contains(PREFIXES_SETTING), "{message}");
        assert!(message.contains(NUMBERS_SETTING), "{message}");
    }

    #[test]
    fn a_refused_destination_says_which_setting_allows_it() {
        let error = policy(&["+1"], &[])
            .check("+33612345678")
            .expect_err("not under +1");

        let message = error.to_string();
        assert!(message.contains("+33612345678"), "{message}");
        assert!(message.contains("allowed prefixes: +1"), "{message}");
        assert!(message.contains(PREFIXES_SETTING), "{message}");
    }

    #[test]
    fn a_high_cost_refusal_names_the_range_and_the_exact_number_setting() {
        let error = policy(&["+44"], &[])
            .check("+449098790000")
            .expect_err("UK premium rate");

        let message = error.to_string();
        assert!(message.contains("premium rate (UK 09)"), "{message}");
        assert!(message.contains(NUMBERS_SETTING), "{message}");
    }

    #[test]
    fn settings_whitespace_and_empty_entries_are_ignored() {
        let policy = DestinationPolicy::new(
            vec![" +44 ".into(), String::new()],
            vec![" +14155552671".into()],
        );

        assert_eq!(policy.prefixes, ["+44"]);
        assert_eq!(policy.exact, ["+14155552671"]);
        assert_eq!(policy.check("+14155552671"), Ok(()));
    }

    #[test]
    fn an_empty_caller_allowlist_lets_everyone_call() {
        let allowlist = CallerAllowlist::default();

        assert!(allowlist.allows("+15550100001"));
        assert!(allowlist.allows("anonymous"));
    }

    #[test]
    fn a_caller_allowlist_lets_only_listed_callers_call() {
        let allowlist = CallerAllowlist::new(vec!["+15550100001".into(), " +442071838750 ".into()]);

        assert!(allowlist.allows("+15550100001"));
        assert!(allowlist.allows("+442071838750"));
        assert!(!allowlist.allows("+15550100002"), "another number");
        assert!(!allowlist.allows("anonymous"), "withheld");
        assert!(!allowlist.allows("+266696687"), "Twilio's anonymous");
        assert!(!allowlist.allows(""), "no From");
        assert!(!allowlist.allows("client:alice"), "a Voice SDK client");
        assert!(
            !allowlist.allows("+1555010000"),
            "a prefix of a listed number"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_string_is_checked_without_panicking(number in ".{0,40}") {
            let _ = policy(&["+1", "+44", "+8"], &["+870772123456"]).check(&number);
        }

        #[test]
        fn a_listed_number_is_always_allowed(digits in "[1-9][0-9]{6,13}") {
            let number = format!("+{digits}");
            let policy = policy(&[], &[&number]);

            proptest::prop_assert_eq!(policy.check(&number), Ok(()));
        }
    }
}
