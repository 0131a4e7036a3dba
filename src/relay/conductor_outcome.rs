//! The conductor's side of the call's outcome and of the voice's remote MCP tools.
//!
//! **Outcome.** Without an outcome schema, `end_call`'s `outcome` is free text, stored as given. With one
//! ([`OutcomeSchema`], from `place_call`'s `outcome_schema`), the outcome is checked: a valid one is stored as JSON
//! (`structured_outcome`, and its compact text in `outcome`) and the call ends as usual; an invalid or missing one is
//! answered with the validation errors (`{"ok":false,"error":..,"errors":[..]}` as the `function_call_output`), the
//! call does *not* end (a goodbye-phrase end armed for the same response is disarmed), and the model is asked for a
//! new response so it can call `end_call` again. After [`MAX_OUTCOME_REJECTIONS`] rejections the next `end_call`
//! ends the call whatever its outcome: the attempt is kept as text, `structured_outcome` stays empty.
//!
//! **Remote MCP tools.** The Realtime API runs the calls to the remote MCP servers in the session itself
//! (<https://developers.openai.com/api/docs/guides/realtime-mcp>); the relay only writes them into the transcript,
//! from `response.output_item.done` items: an `mcp_call` becomes an action turn `mcp calendar.find_slot({..}) → ..`
//! (arguments and result clipped to [`MCP_TURN_TEXT_MAX_CHARS`]), an `mcp_approval_request` becomes
//! `mcp calendar.delete_event: approval requested, not given` (nobody can approve during a phone call, so callbridge
//! answers no approval request and the tool does not run). `mcp_list_tools` items are logged only.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::{Conductor, Farewell};
use crate::calls::Speaker;
use crate::calls::outcome::{MAX_OUTCOME_REJECTIONS, OutcomeSchema};
use crate::realtime::server_events::OutputItem;
use crate::relay::budget::clip;

/// The longest an MCP tool call's arguments or result may be in its transcript turn, in characters.
pub const MCP_TURN_TEXT_MAX_CHARS: usize = 300;

/// What the conductor knows about the call's outcome.
#[derive(Debug, Default)]
pub(super) struct OutcomeState {
    /// The schema the outcome must match, when the call has one.
    schema: Option<Arc<OutcomeSchema>>,
    /// Invalid outcomes answered with their errors so far.
    rejections: u32,
}

impl Conductor {
    /// Sets the schema `end_call`'s outcome must match (a call placed with `outcome_schema`); `None` keeps the
    /// outcome free text.
    pub fn set_outcome_schema(&mut self, schema: Option<Arc<OutcomeSchema>>) {
        self.outcome.schema = schema;
    }

    /// Takes the outcome of an `end_call` of `response_id` with these `arguments` into the record. Returns the
    /// `function_call_output` to answer with when the outcome was refused (the call goes on), `None` when the call
    /// may end.
    pub(super) fn take_outcome(&mut self, arguments: &str, response_id: &str) -> Option<String> {
        let parsed = serde_json::from_str::<Value>(arguments).ok();
        let outcome = parsed.as_ref().and_then(|v| v.get("outcome"));
        let Some(schema) = self.outcome.schema.clone() else {
            if let Some(text) = outcome.and_then(Value::as_str) {
                self.record.outcome = Some(text.to_owned());
            }
            return None;
        };
        let checked = match (&parsed, outcome) {
            (None, _) => Err(vec!["the arguments are not a JSON object".to_owned()]),
            (Some(_), None) => Err(vec!["`outcome` is missing".to_owned()]),
            (Some(_), Some(outcome)) => schema.check(outcome),
        };
        let errors = match checked {
            Ok(()) => {
                let outcome = outcome.cloned().unwrap_or(Value::Null);
                self.record.outcome = Some(outcome.to_string());
                self.record.structured_outcome = Some(outcome);
                return None;
            }
            Err(errors) => errors,
        };
        if self.outcome.rejections >= MAX_OUTCOME_REJECTIONS {
            tracing::warn!(
                rejections = self.outcome.rejections,
                "end_call outcome still does not match the schema; ending the call without a structured outcome"
            );
            self.record.outcome =
                Some(outcome.map_or_else(|| arguments.to_owned(), Value::to_string));
            return None;
        }
        self.outcome.rejections += 1;
        let logged: Vec<&str> = errors.iter().map(|e| clip(e)).collect();
        tracing::info!(errors = ?logged, attempt = self.outcome.rejections, "end_call outcome does not match the schema; sent back to the model");
        // A goodbye phrase may have armed the end of this very response: the outcome comes first.
        if matches!(&self.farewell, Farewell::AfterResponse { response_id: armed, .. } if armed == response_id)
        {
            self.farewell = Farewell::None;
        }
        Some(
            serde_json::json!({
                "ok": false,
                "error": "The outcome does not match the schema, so the call was NOT ended. Call end_call again \
                          with a corrected outcome. Do not mention this to the person on the phone.",
                "errors": errors,
            })
            .to_string(),
        )
    }

    /// A remote MCP item finished (`response.output_item.done` of an `mcp_call`, `mcp_approval_request` or
    /// `mcp_list_tools` item) at `now`: the calls and approval requests go into the transcript.
    pub(super) fn on_mcp_item(&mut self, item: &OutputItem, now: Instant) {
        // Names come from the MCP server through OpenAI: cut like the rest of the turn.
        let server = shorten(item.server_label.as_deref().unwrap_or("?"));
        let tool = shorten(item.name.as_deref().unwrap_or("?"));
        let text = match item.kind.as_str() {
            "mcp_call" => {
                let arguments = shorten(item.arguments.as_deref().unwrap_or(""));
                let result = match (&item.error, &item.output) {
                    (Some(error), _) if !error.is_null() => format!(
                        "error: {}",
                        shorten(
                            error
                                .get("message")
                                .and_then(Value::as_str)
                                .unwrap_or("failed")
                        )
                    ),
                    (_, Some(output)) => shorten(output),
                    _ => "no result".to_owned(),
                };
                tracing::info!(server = %clip(&server), tool = %clip(&tool), "the voice called a remote MCP tool");
                format!("mcp {server}.{tool}({arguments}) → {result}")
            }
            "mcp_approval_request" => {
                tracing::info!(server = %clip(&server), tool = %clip(&tool), "remote MCP tool needs an approval; none given");
                format!("mcp {server}.{tool}: approval requested, not given")
            }
            other => {
                tracing::debug!(kind = %clip(other), server = %clip(&server), "remote MCP item");
                return;
            }
        };
        let offset = self.offset_ms(now);
        self.record
            .push_turn(Speaker::Action, &text, offset, false, None);
    }
}

/// `text` cut to [`MCP_TURN_TEXT_MAX_CHARS`] characters, with `…` when cut.
fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MCP_TURN_TEXT_MAX_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
