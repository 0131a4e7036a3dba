//! What a fresh OpenAI Realtime session is told about the call it joins (a session rollover, or a session reopened
//! after OpenAI closed it): plain functions from the call's transcript to the client events that seed the session.
//!
//! The new session already got the call's own `session.update` (the same instructions, voice, tools and turn
//! detection) when it was opened. The seed adds, as `conversation.item.create` events
//! (<https://platform.openai.com/docs/api-reference/realtime-client-events/conversation/item/create>):
//! 1. a system message saying the call goes on, with a summary of the earlier conversation built from the transcript
//!    (the turns before the recent ones, each clipped, the whole kept under [`SUMMARY_MAX_CHARS`], newest kept);
//! 2. the instructions added mid-call (`instruct_call`), as system messages;
//! 3. the most recent [`RECENT_TURNS`] turns as items of their own: the caller's as `user` messages with
//!    `input_text`, the assistant's as `assistant` messages with `output_text`, keypresses and transfers as system
//!    notes;
//! 4. after an unexpected close, a system message asking the assistant to apologise briefly and go on (the caller
//!    heard silence); the conductor then asks for a response.
//!
//! Text only: the old session's audio is not replayed (that would cost audio input tokens and time).

use crate::calls::{Speaker, Turn};
use crate::realtime::client_events::{ClientEvent, ConversationItem};

/// Turns given to the new session as items of their own, newest last.
pub const RECENT_TURNS: usize = 10;
/// The summary of the earlier turns keeps at most this many characters (the newest ones).
pub const SUMMARY_MAX_CHARS: usize = 4000;
/// One earlier turn contributes at most this many characters to the summary.
pub const SUMMARY_TURN_MAX_CHARS: usize = 240;

/// What the assistant is told after a session OpenAI closed was reopened.
pub const APOLOGY_INSTRUCTION: &str = "The line to you dropped for a moment and the caller heard silence. Apologise \
in one short sentence (for example: \"Sorry, I lost you for a second.\") and go on with the conversation where it \
left off. Do not greet the caller again.";

/// Why the session is seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedReason {
    /// The planned rollover before the session limit, at a quiet moment: the caller noticed nothing.
    SessionLimit,
    /// OpenAI closed the session unexpectedly; the caller heard silence.
    SessionClosed,
}

impl SeedReason {
    /// The name stored with the call (`session_limit`, `session_closed`).
    pub fn as_str(self) -> &'static str {
        match self {
            SeedReason::SessionLimit => "session_limit",
            SeedReason::SessionClosed => "session_closed",
        }
    }
}

/// The `conversation.item.create` events (JSON) that seed a new session for a call whose transcript so far is
/// `turns`, with `injected` instructions added mid-call. See the module docs for the order.
pub fn seed_events(turns: &[Turn], injected: &[String], reason: SeedReason) -> Vec<String> {
    let recent_from = turns.len().saturating_sub(RECENT_TURNS);
    let (earlier, recent) = turns.split_at(recent_from);
    let mut items = Vec::with_capacity(recent.len() + injected.len() + 2);
    items.push(ConversationItem::system_text(context_text(earlier)));
    items.extend(
        injected
            .iter()
            .map(|text| ConversationItem::system_text(text.clone())),
    );
    for turn in recent {
        items.push(match turn.speaker {
            Speaker::Caller => ConversationItem::user_text(turn.text.clone()),
            Speaker::Assistant => ConversationItem::assistant_text(turn.text.clone()),
            Speaker::Action => {
                ConversationItem::system_text(format!("(On the phone line: {}.)", turn.text))
            }
        });
    }
    if reason == SeedReason::SessionClosed {
        items.push(ConversationItem::system_text(APOLOGY_INSTRUCTION));
    }
    items
        .into_iter()
        .map(|item| ClientEvent::ConversationItemCreate { item }.to_json())
        .collect()
}

/// The opening system message: the call goes on, and what was said before the recent turns.
fn context_text(earlier: &[Turn]) -> String {
    let mut text = String::from(
        "This phone call is already in progress: you are continuing it in a new session. The caller is still on \
         the line. Do not greet them again and do not mention the new session; continue naturally from the last \
         turn.",
    );
    let summary = summary(earlier);
    if !summary.is_empty() {
        text.push_str("\n\nEarlier in this call (oldest first):\n");
        text.push_str(&summary);
    }
    text
}

/// The earlier turns, one line each (`Caller: ...`, `You: ...`, `Phone line: ...`), each clipped to
/// [`SUMMARY_TURN_MAX_CHARS`], the oldest lines dropped first to stay within [`SUMMARY_MAX_CHARS`]; empty without
/// earlier turns.
pub fn summary(earlier: &[Turn]) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut chars = 0;
    for turn in earlier.iter().rev() {
        let who = match turn.speaker {
            Speaker::Caller => "Caller",
            Speaker::Assistant => "You",
            Speaker::Action => "Phone line",
        };
        let mut said: String = turn.text.chars().take(SUMMARY_TURN_MAX_CHARS).collect();
        if said.len() < turn.text.len() {
            said.push('…');
        }
        let line = format!("{who}: {said}");
        let line_chars = line.chars().count() + 1;
        if chars + line_chars > SUMMARY_MAX_CHARS {
            lines.push("(older turns left out)".to_owned());
            break;
        }
        chars += line_chars;
        lines.push(line);
    }
    lines.reverse();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn turn(speaker: Speaker, text: &str) -> Turn {
        Turn {
            speaker,
            text: text.to_owned(),
            at: time::OffsetDateTime::UNIX_EPOCH,
            offset_ms: 0,
            interrupted: false,
            item_id: None,
        }
    }

    fn items(events: &[String]) -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                let event: Value = serde_json::from_str(e).expect("JSON");
                assert_eq!(event["type"], "conversation.item.create");
                event["item"].clone()
            })
            .collect()
    }

    #[test]
    fn the_recent_turns_become_user_and_assistant_messages_after_the_context() {
        let turns = [
            turn(Speaker::Caller, "I'd like a table for two."),
            turn(Speaker::Assistant, "For which evening?"),
            turn(Speaker::Action, "pressed 1"),
        ];

        let items = items(&seed_events(&turns, &[], SeedReason::SessionLimit));

        assert_eq!(items.len(), 4);
        assert_eq!(items[0]["role"], "system");
        assert_eq!(items[1]["role"], "user");
        assert_eq!(items[1]["content"][0]["type"], "input_text");
        assert_eq!(items[1]["content"][0]["text"], "I'd like a table for two.");
        assert_eq!(items[2]["role"], "assistant");
        assert_eq!(items[2]["content"][0]["type"], "output_text");
        assert_eq!(items[2]["content"][0]["text"], "For which evening?");
        assert_eq!(items[3]["role"], "system");
        assert!(
            items[3]["content"][0]["text"]
                .as_str()
                .expect("text")
                .contains("pressed 1")
        );
    }

    #[test]
    fn turns_before_the_recent_ones_are_summarised_in_the_context_message() {
        let mut turns: Vec<Turn> = (0..RECENT_TURNS)
            .map(|n| turn(Speaker::Caller, &format!("recent {n}")))
            .collect();
        turns.insert(0, turn(Speaker::Assistant, "Welcome to the Blue Door."));
        turns.insert(0, turn(Speaker::Caller, "My name is Ada."));

        let items = items(&seed_events(&turns, &[], SeedReason::SessionLimit));

        let context = items[0]["content"][0]["text"].as_str().expect("text");
        assert!(
            context.contains("Caller: My name is Ada.\nYou: Welcome to the Blue Door."),
            "{context}"
        );
        assert!(!context.contains("recent 0"));
        assert_eq!(items.len(), 1 + RECENT_TURNS);
    }

    #[test]
    fn the_summary_keeps_the_newest_earlier_turns_within_its_bound() {
        let long = "x".repeat(1000);
        let turns: Vec<Turn> = (0..100).map(|_| turn(Speaker::Caller, &long)).collect();

        let summary = summary(&turns);

        assert!(
            summary.chars().count() <= SUMMARY_MAX_CHARS + 40,
            "{}",
            summary.len()
        );
        assert!(summary.starts_with("(older turns left out)"));
    }

    #[test]
    fn a_session_reopened_after_a_close_is_asked_to_apologise_and_instructions_are_kept() {
        let injected = ["The caller is a VIP.".to_owned()];

        let items = items(&seed_events(&[], &injected, SeedReason::SessionClosed));

        assert_eq!(items.len(), 3);
        assert_eq!(items[1]["content"][0]["text"], "The caller is a VIP.");
        assert_eq!(items[2]["content"][0]["text"], APOLOGY_INSTRUCTION);
    }
}
