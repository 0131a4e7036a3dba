//! [`LiveTranslator`]: GPT-Live's wire events to and from the vocabulary the conductor already speaks (the Realtime
//! events it decides on), so that one conductor drives either engine.
//!
//! GPT-Live is full duplex: the model listens while it speaks, decides itself when to yield to the caller, and has no
//! responses, items, `speech_started`, `response.cancel` or `truncate` on its primary WebSocket (GPT-Live event
//! reference; `openai.types.live`). Its output audio (`session.output_audio.delta`, no timestamps on the primary
//! WebSocket) is meant to be played in delivery order, so whatever the relay has queued at Twilio keeps playing after
//! the model stopped unless the relay clears it. The translator therefore builds the turns the conductor needs:
//!
//! - **Assistant turns.** The first output audio or transcript delta opens a synthetic response and item
//!   (`live_turn_N` / `live_item_N`: `response.created`, then the deltas). The turn closes (`output_audio.done`,
//!   `output_audio_transcript.done` with the accumulated transcript, `response.done` completed) when the caller is
//!   heard, or when no output came for [`TURN_GAP`] ([`LiveTranslator::on_tick`]).
//! - **Caller turns and barge-in.** The first non-blank `session.input_transcript.delta` closes the assistant turn and
//!   becomes `input_audio_buffer.speech_started`: the conductor clears Twilio's buffer when assistant audio is still
//!   unplayed and cuts the transcript to what was heard (its marks), exactly as for Realtime. The caller's turn ends
//!   (`speech_stopped`, `input_audio_transcription.completed`) when the assistant is heard again.
//! - **Tools.** A backend function call (`response.event` with a finished `function_call` item) becomes
//!   `response.function_call_arguments.done` in the open assistant turn (a farewell followed by `end_call`: the
//!   goodbye waits for that turn's last mark), or in a response of its own when no turn is open.
//!
//! Client events the conductor sends are rewritten by [`LiveTranslator::client_event`]: audio appends become
//! `session.input_audio.append`; a function output becomes `response.item.create` + `response.create`; a text message
//! becomes `session.commentary.append` when a `response.create` follows it (the greeting, a shutdown goodbye: words for
//! the caller) and `session.instructions.append` otherwise (an instruction, a keypress); `response.create` alone,
//! `response.cancel`, `conversation.item.truncate`, `input_audio_buffer.*` and `session.update` have no Live
//! counterpart and are dropped.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::live::client_events::{FunctionCallOutput, LiveClientEvent};
use crate::live::server_events::LiveServerEvent;
use crate::realtime::server_events::{ResponseSummary, ServerEvent};

/// No output from the model for this long ends its turn. Long enough to span the pauses between its sentences.
pub const TURN_GAP: Duration = Duration::from_millis(700);

/// GPT-Live's price per active session minute, in US dollars: $0.05, billed per second and not rounded up
/// (<https://developers.openai.com/api/docs/models/gpt-live-1>; the cost guide
/// <https://developers.openai.com/api/docs/guides/voice-latency-cost> counts the whole session, silences included).
pub const LIVE_USD_PER_ACTIVE_MINUTE: f64 = 0.05;

/// An open assistant turn.
#[derive(Debug)]
struct AssistantTurn {
    response_id: String,
    item_id: String,
    transcript: String,
    had_audio: bool,
    last_output: Instant,
}

/// An open caller turn.
#[derive(Debug)]
struct CallerTurn {
    item_id: String,
    transcript: String,
}

/// The per-call state of the mapping. See the module docs.
#[derive(Debug, Default)]
pub struct LiveTranslator {
    /// Synthetic ids handed out so far.
    sequence: u64,
    /// The model's turn in progress, if any.
    assistant: Option<AssistantTurn>,
    /// The caller's turn in progress, if any.
    caller: Option<CallerTurn>,
    /// The latest cumulative billable seconds Live reported (`session.usage.updated`, `session.closed`).
    billable_seconds: Option<f64>,
    /// A text message waiting to learn whether a `response.create` follows it.
    pending_text: Option<String>,
}

impl LiveTranslator {
    /// A translator for a new session.
    pub fn new() -> Self {
        Self::default()
    }

    /// The billable seconds Live reported last (cumulative), if it reported any.
    pub fn billable_seconds(&self) -> Option<f64> {
        self.billable_seconds
    }

    /// When [`Self::on_tick`] has something to do: the open assistant turn's quiet deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.assistant
            .as_ref()
            .map(|turn| turn.last_output + TURN_GAP)
    }

    /// Time passed: closes the assistant turn after [`TURN_GAP`] without output.
    pub fn on_tick<'a>(&mut self, now: Instant, out: &mut Vec<ServerEvent<'a>>) {
        if self.deadline().is_some_and(|deadline| now >= deadline) {
            self.close_assistant(out);
        }
    }

    /// Maps one Live server event received at `now` to the conductor's events, in order.
    pub fn on_server_event<'a>(
        &'a mut self,
        event: LiveServerEvent<'a>,
        now: Instant,
        out: &mut Vec<ServerEvent<'a>>,
    ) {
        match event {
            LiveServerEvent::OutputAudioDelta { delta } => {
                self.close_caller(out);
                self.open_assistant(now, out);
                if let Some(turn) = &mut self.assistant {
                    turn.had_audio = true;
                }
                let this: &'a Self = self;
                if let Some(turn) = &this.assistant {
                    out.push(ServerEvent::OutputAudioDelta {
                        response_id: &turn.response_id,
                        item_id: &turn.item_id,
                        delta,
                    });
                }
            }
            LiveServerEvent::OutputTranscriptDelta { delta } => {
                self.close_caller(out);
                self.open_assistant(now, out);
                if let Some(turn) = &mut self.assistant {
                    turn.transcript.push_str(&delta);
                    out.push(ServerEvent::OutputAudioTranscriptDelta {
                        item_id: turn.item_id.clone(),
                        delta,
                    });
                }
            }
            LiveServerEvent::InputTranscriptDelta { delta } => {
                if self.caller.is_none() {
                    if delta.trim().is_empty() {
                        return;
                    }
                    self.close_assistant(out);
                    let item_id = self.next_id("live_in");
                    out.push(ServerEvent::SpeechStarted {
                        audio_start_ms: 0,
                        item_id: item_id.clone(),
                    });
                    self.caller = Some(CallerTurn {
                        item_id,
                        transcript: String::new(),
                    });
                }
                if let Some(turn) = &mut self.caller {
                    turn.transcript.push_str(&delta);
                }
            }
            LiveServerEvent::FunctionCall {
                call_id,
                name,
                arguments,
            } => {
                self.close_caller(out);
                let item_id = format!("live_call_{call_id}");
                match &self.assistant {
                    Some(turn) => out.push(ServerEvent::FunctionCallArgumentsDone {
                        response_id: turn.response_id.clone(),
                        item_id,
                        call_id,
                        name,
                        arguments,
                    }),
                    None => {
                        let response_id = self.next_id("live_tool");
                        out.push(ServerEvent::ResponseCreated {
                            response_id: response_id.clone(),
                        });
                        out.push(ServerEvent::FunctionCallArgumentsDone {
                            response_id: response_id.clone(),
                            item_id,
                            call_id,
                            name,
                            arguments,
                        });
                        out.push(done(response_id));
                    }
                }
            }
            LiveServerEvent::UsageUpdated { seconds } => self.billable_seconds = Some(seconds),
            LiveServerEvent::SessionClosed { reason, seconds } => {
                self.billable_seconds = Some(seconds);
                self.close_caller(out);
                self.close_assistant(out);
                tracing::info!(%reason, billable_seconds = seconds, "GPT-Live session closed");
            }
            LiveServerEvent::SessionStarted => out.push(ServerEvent::SessionUpdated),
            LiveServerEvent::Error { error } => out.push(ServerEvent::Error { error }),
            LiveServerEvent::Unknown { event_type } => {
                out.push(ServerEvent::Unknown { event_type })
            }
        }
    }

    /// Rewrites one client event of the conductor (Realtime JSON) into the Live events to send, appended to `out`
    /// (none when it has no Live counterpart). Call [`Self::flush`] after the last event of a batch.
    pub fn client_event(&mut self, realtime_json: &str, out: &mut Vec<String>) {
        let Ok(event) = serde_json::from_str::<Outgoing<'_>>(realtime_json) else {
            tracing::warn!("client event the Live translator cannot read dropped");
            return;
        };
        if event.event_type != "response.create" {
            self.flush(out);
        }
        match (event.event_type.as_ref(), event.audio, event.item) {
            ("input_audio_buffer.append", Some(audio), _) => {
                out.push(LiveClientEvent::InputAudioAppend { audio: &audio }.to_json())
            }
            (
                "conversation.item.create",
                _,
                Some(OutgoingItem::FunctionCallOutput { call_id, output }),
            ) => {
                out.push(
                    LiveClientEvent::ResponseItemCreate {
                        item: FunctionCallOutput {
                            call_id: &call_id,
                            output: &output,
                        },
                    }
                    .to_json(),
                );
                out.push(LiveClientEvent::ResponseCreate.to_json());
            }
            ("conversation.item.create", _, Some(OutgoingItem::Message { content })) => {
                let text: Vec<&str> = content.iter().map(|part| part.text.as_ref()).collect();
                self.pending_text = Some(text.join("\n"));
            }
            ("response.create", _, _) => {
                if let Some(text) = self.pending_text.take() {
                    out.push(
                        LiveClientEvent::CommentaryAppend {
                            content: &text,
                            delegation_id: None,
                        }
                        .to_json(),
                    );
                }
            }
            (other, _, _) => tracing::debug!(
                event = other,
                "client event with no GPT-Live counterpart dropped"
            ),
        }
    }

    /// Sends a text message still waiting for a `response.create` as silent instructions.
    pub fn flush(&mut self, out: &mut Vec<String>) {
        if let Some(text) = self.pending_text.take() {
            out.push(
                LiveClientEvent::InstructionsAppend {
                    content: &text,
                    delegation_id: None,
                }
                .to_json(),
            );
        }
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.sequence += 1;
        format!("{prefix}_{}", self.sequence)
    }

    fn open_assistant<'a>(&mut self, now: Instant, out: &mut Vec<ServerEvent<'a>>) {
        if let Some(turn) = &mut self.assistant {
            turn.last_output = now;
            return;
        }
        let n = {
            self.sequence += 1;
            self.sequence
        };
        let turn = AssistantTurn {
            response_id: format!("live_turn_{n}"),
            item_id: format!("live_item_{n}"),
            transcript: String::new(),
            had_audio: false,
            last_output: now,
        };
        out.push(ServerEvent::ResponseCreated {
            response_id: turn.response_id.clone(),
        });
        self.assistant = Some(turn);
    }

    fn close_assistant<'a>(&mut self, out: &mut Vec<ServerEvent<'a>>) {
        let Some(turn) = self.assistant.take() else {
            return;
        };
        if turn.had_audio {
            out.push(ServerEvent::OutputAudioDone {
                response_id: turn.response_id.clone(),
                item_id: turn.item_id.clone(),
            });
        }
        if !turn.transcript.trim().is_empty() {
            out.push(ServerEvent::OutputAudioTranscriptDone {
                response_id: turn.response_id.clone(),
                item_id: turn.item_id,
                transcript: turn.transcript.trim().to_owned(),
            });
        }
        out.push(done(turn.response_id));
    }

    fn close_caller<'a>(&mut self, out: &mut Vec<ServerEvent<'a>>) {
        let Some(turn) = self.caller.take() else {
            return;
        };
        out.push(ServerEvent::SpeechStopped {
            audio_end_ms: 0,
            item_id: turn.item_id.clone(),
        });
        out.push(ServerEvent::InputTranscriptionCompleted {
            item_id: turn.item_id,
            transcript: turn.transcript.trim().to_owned(),
        });
    }
}

/// A completed `response.done` for a synthetic response.
fn done<'a>(response_id: String) -> ServerEvent<'a> {
    ServerEvent::ResponseDone {
        response: ResponseSummary {
            id: response_id,
            status: "completed".to_owned(),
            status_details: None,
            usage: None,
        },
    }
}

/// The parts of a Realtime client event the translator reads.
#[derive(Deserialize)]
struct Outgoing<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    audio: Option<Cow<'a, str>>,
    #[serde(default)]
    item: Option<OutgoingItem>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutgoingItem {
    FunctionCallOutput { call_id: String, output: String },
    Message { content: Vec<OutgoingText> },
}

#[derive(Deserialize)]
struct OutgoingText {
    text: String,
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
