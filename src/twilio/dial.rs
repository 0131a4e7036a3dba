//! Transfers to a person with TwiML `<Dial>`: the configured targets (name → E.164), the summary whispered to the
//! person, and the `DialCallStatus` Twilio reports to the `<Dial action>` URL.
//!
//! Follows <https://www.twilio.com/docs/voice/twiml/dial> (`action`, `timeout`, `callerId`, and the action request's
//! `DialCallStatus`: `completed`, `answered`, `busy`, `no-answer`, `failed`, `canceled`) and
//! <https://www.twilio.com/docs/voice/twiml/number> (`url`: TwiML run for the called party when it answers, before
//! the two are connected).

use std::time::Duration;

use crate::phone::E164;

/// How long the person's phone rings before the transfer counts as `no-answer`, seconds (`<Dial timeout>`).
pub const DIAL_TIMEOUT_S: u32 = 20;
/// What a transfer may take beyond [`DIAL_TIMEOUT_S`] before the call gives up waiting (the call update, Twilio's
/// set-up, the action request).
pub const TRANSFER_MARGIN: Duration = Duration::from_secs(15);
/// Transfers one call may attempt (each failed attempt brings the caller back to the assistant).
pub const MAX_TRANSFERS_PER_CALL: u32 = 2;
/// The longest summary whispered to the person, characters; a longer one is cut at a word.
pub const SUMMARY_MAX_CHARS: usize = 300;

/// Where a call may be transferred: a configured name and its number, or (from an agent) a number alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferTarget {
    /// The configured name (`front desk`); `None` for a number an agent gave.
    pub name: Option<String>,
    /// The number dialled.
    pub number: E164,
}

impl TransferTarget {
    /// How the record, the transcript and the log name it: `front desk (+14155550100)` or `+14155550100`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.number),
            None => self.number.to_string(),
        }
    }
}

/// Parses `name=+E164` items (`CALLBRIDGE_TRANSFER_TARGETS`); names are trimmed and must be unique
/// (case-insensitive).
///
/// # Errors
/// A message naming the first bad item: no `=`, an empty name, a number that is not E.164, a repeated name.
pub fn parse_targets(items: &[String]) -> Result<Vec<TransferTarget>, String> {
    let mut targets: Vec<TransferTarget> = Vec::with_capacity(items.len());
    for item in items {
        let Some((name, number)) = item.split_once('=') else {
            return Err(format!(
                "{item:?} is not name=+E164 (e.g. front desk=+14155550100)"
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{item:?} has no name before '='"));
        }
        let number = E164::parse(number.trim())
            .map_err(|e| format!("{item:?}: the number is not E.164 ({e})"))?;
        if find_target(&targets, name).is_some() {
            return Err(format!("{name:?} is listed twice"));
        }
        targets.push(TransferTarget {
            name: Some(name.to_owned()),
            number,
        });
    }
    Ok(targets)
}

/// The configured target called `name` (trimmed, case-insensitive). A number, or any name not configured, finds
/// nothing: the model can only pick from the list.
pub fn find_target<'a>(targets: &'a [TransferTarget], name: &str) -> Option<&'a TransferTarget> {
    let name = name.trim();
    targets.iter().find(|t| {
        t.name
            .as_deref()
            .is_some_and(|configured| configured.eq_ignore_ascii_case(name))
    })
}

/// The summary as whispered: whitespace collapsed, control characters dropped, at most [`SUMMARY_MAX_CHARS`]
/// characters (cut at a word, with `…`).
pub fn clip_summary(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = String::new();
    for word in words {
        let word: String = word.chars().filter(|c| !c.is_control()).collect();
        let needed = usize::from(!out.is_empty()) + word.chars().count();
        if out.chars().count() + needed > SUMMARY_MAX_CHARS {
            out.push('…');
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word);
    }
    out
}

/// How the `<Dial>` ended, as the action request's `DialCallStatus` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialStatus {
    /// The person answered and the bridged call has ended.
    Completed,
    /// The person answered (Twilio reports it for some call flows).
    Answered,
    /// The line was busy.
    Busy,
    /// Nobody answered within the dial timeout.
    NoAnswer,
    /// The call could not be placed (a bad number, a carrier error).
    Failed,
    /// The dial was cancelled before it was answered.
    Canceled,
}

impl DialStatus {
    /// Parses Twilio's value; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "completed" => DialStatus::Completed,
            "answered" => DialStatus::Answered,
            "busy" => DialStatus::Busy,
            "no-answer" => DialStatus::NoAnswer,
            "failed" => DialStatus::Failed,
            "canceled" => DialStatus::Canceled,
            _ => return None,
        })
    }

    /// Twilio's value (`no-answer`).
    pub fn as_str(self) -> &'static str {
        match self {
            DialStatus::Completed => "completed",
            DialStatus::Answered => "answered",
            DialStatus::Busy => "busy",
            DialStatus::NoAnswer => "no-answer",
            DialStatus::Failed => "failed",
            DialStatus::Canceled => "canceled",
        }
    }

    /// True when the person was reached: the caller stays with them and the assistant leaves the call.
    pub fn connected(self) -> bool {
        matches!(self, DialStatus::Completed | DialStatus::Answered)
    }
}

/// What Twilio reports about a transfer under way, passed to the running call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEvent {
    /// The person answered: Twilio fetched the `<Number url>` to whisper the summary.
    Answered,
    /// The `<Dial>` ended with this `DialCallStatus` (the action request).
    Ended(DialStatus),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn targets_parse_names_and_numbers_and_are_found_by_name_only() {
        let targets = parse_targets(&items(&[
            "front desk=+14155550100",
            " Billing = +14155550111",
        ]))
        .expect("valid");

        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1].name.as_deref(), Some("Billing"));
        assert_eq!(
            find_target(&targets, "FRONT DESK").map(|t| t.number.as_str()),
            Some("+14155550100")
        );
        assert!(find_target(&targets, "+14155550100").is_none());
        assert!(find_target(&targets, "sales").is_none());
    }

    #[test]
    fn a_target_without_a_name_or_with_a_bad_number_or_twice_is_refused() {
        assert!(parse_targets(&items(&["+14155550100"])).is_err());
        assert!(parse_targets(&items(&["=+14155550100"])).is_err());
        assert!(parse_targets(&items(&["desk=4155550100"])).is_err());
        assert!(parse_targets(&items(&["desk=+14155550100", "Desk=+14155550111"])).is_err());
    }

    #[test]
    fn a_long_summary_is_cut_at_a_word_within_the_bound() {
        let long = "word ".repeat(200);

        let clipped = clip_summary(&long);

        assert!(clipped.chars().count() <= SUMMARY_MAX_CHARS + 1);
        assert!(clipped.ends_with("word…"));
        assert_eq!(
            clip_summary("  a\n\tcaller  wants\u{7} billing "),
            "a caller wants billing"
        );
    }

    #[test]
    fn dial_statuses_parse_and_only_completed_and_answered_count_as_connected() {
        for text in [
            "completed",
            "answered",
            "busy",
            "no-answer",
            "failed",
            "canceled",
        ] {
            let status = DialStatus::parse(text).expect("known");
            assert_eq!(status.as_str(), text);
            assert_eq!(
                status.connected(),
                text == "completed" || text == "answered"
            );
        }
        assert_eq!(DialStatus::parse("ringing"), None);
    }
}
