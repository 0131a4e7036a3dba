//! The bridge's side of the engine seam: when a call runs on GPT-Live, its server events reach the conductor through
//! the [`LiveTranslator`] and the conductor's client events leave through it; on the Realtime API they pass as they
//! are. The conductor keeps every decision; this file only moves events between it and the translator.

use std::time::Instant;

use crate::live::server_events::parse_live_event;
use crate::live::translate::LiveTranslator;
use crate::realtime::server_events::ServerEvent;
use crate::relay::budget::clip;
use crate::relay::conductor::{Action, Conductor};

/// One text frame from GPT-Live, received at `now`: parsed, translated, handed to the conductor.
pub fn on_live_text(
    translator: &mut LiveTranslator,
    text: &str,
    now: Instant,
    conductor: &mut Conductor,
    actions: &mut Vec<Action>,
) {
    match parse_live_event(text) {
        Ok(event) => {
            let mut events: Vec<ServerEvent<'_>> = Vec::with_capacity(4);
            translator.on_server_event(event, now, &mut events);
            for event in events {
                conductor.on_openai(event, now, actions);
            }
            conductor.set_live_billable_seconds(translator.billable_seconds());
        }
        Err(e) => {
            if let Some(suppressed) = conductor.on_malformed_openai_event(now) {
                tracing::warn!(
                    error = clip(&e.to_string()),
                    event_bytes = text.len(),
                    suppressed,
                    "malformed GPT-Live event skipped"
                );
            }
        }
    }
}

/// Time passed: the translator may close the model's turn.
pub fn on_live_tick(
    translator: &mut LiveTranslator,
    now: Instant,
    conductor: &mut Conductor,
    actions: &mut Vec<Action>,
) {
    let mut events: Vec<ServerEvent<'_>> = Vec::new();
    translator.on_tick(now, &mut events);
    for event in events {
        conductor.on_openai(event, now, actions);
    }
}

/// Rewrites the conductor's client events in `actions` (Realtime JSON) into GPT-Live's, in place and in order;
/// events with no Live counterpart disappear.
pub fn translate_actions(translator: &mut LiveTranslator, actions: &mut Vec<Action>) {
    if !actions.iter().any(|a| matches!(a, Action::OpenAi(_))) {
        return;
    }
    let mut texts = Vec::new();
    let mut rewritten = Vec::with_capacity(actions.len());
    for action in actions.drain(..) {
        match action {
            Action::OpenAi(text) => {
                translator.client_event(&text, &mut texts);
                rewritten.extend(texts.drain(..).map(Action::OpenAi));
            }
            other => rewritten.push(other),
        }
    }
    translator.flush(&mut texts);
    rewritten.extend(texts.drain(..).map(Action::OpenAi));
    *actions = rewritten;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::client_events::{ClientEvent, ConversationItem};

    fn kind(action: &Action) -> String {
        match action {
            Action::OpenAi(text) => serde_json::from_str::<serde_json::Value>(text).expect("json")
                ["type"]
                .as_str()
                .expect("type")
                .to_owned(),
            Action::Twilio(_) => "twilio".to_owned(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_barge_in_batch_keeps_its_twilio_clear_and_loses_its_cancel_and_truncate() {
        let mut translator = LiveTranslator::new();
        let mut actions = vec![
            Action::Twilio("{\"event\":\"clear\"}".into()),
            Action::OpenAi(
                ClientEvent::ResponseCancel {
                    response_id: Some("r"),
                }
                .to_json(),
            ),
            Action::OpenAi(
                ClientEvent::ConversationItemTruncate {
                    item_id: "i",
                    content_index: 0,
                    audio_end_ms: 100,
                }
                .to_json(),
            ),
        ];

        translate_actions(&mut translator, &mut actions);

        assert_eq!(actions.iter().map(kind).collect::<Vec<_>>(), ["twilio"]);
    }

    #[test]
    fn an_instruction_at_the_end_of_a_batch_is_flushed_as_silent_instructions() {
        let mut translator = LiveTranslator::new();
        let mut actions = vec![Action::OpenAi(
            ClientEvent::ConversationItemCreate {
                item: ConversationItem::system_text("Ask for a callback number."),
            }
            .to_json(),
        )];

        translate_actions(&mut translator, &mut actions);

        assert_eq!(
            actions.iter().map(kind).collect::<Vec<_>>(),
            ["session.instructions.append"]
        );
    }
}
