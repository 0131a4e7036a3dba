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
