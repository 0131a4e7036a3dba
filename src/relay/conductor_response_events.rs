//! The conductor's handlers for what the model's responses send: assistant audio deltas (forwarded to Twilio, each
//! followed by a mark), function calls (`end_call`, `send_dtmf`, `transfer_call`, answered with a
//! `function_call_output`) and `response.done` (usage, the transcript flushed, the goodbye's final mark, a queued
//! `response.create`).

use std::time::{Duration, Instant};

use super::{Action, Conductor, Farewell, base64_decoded_len};
use crate::realtime::client_events::{ClientEvent, ConversationItem};
use crate::twilio::media::{mark_message, media_message};

impl Conductor {
    /// Forwards an assistant audio delta unless its response was cancelled; a mark follows it.
    pub(super) fn on_audio_delta(
        &mut self,
        response_id: &str,
        item_id: &str,
        delta: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.responses.is_cancelled(response_id) {
            tracing::debug!(%response_id, "late delta of a cancelled response dropped");
            return;
        }
        self.say_on_item(response_id, item_id);
        let Some(stream_sid) = self.stream_sid.as_deref() else {
            tracing::debug!("assistant audio before the stream started dropped");
            return;
        };
        self.responses.on_audio(response_id);
        if !self.items_in_generation.iter().any(|(i, _)| i == item_id) {
            self.items_in_generation
                .push((item_id.to_owned(), response_id.to_owned()));
        }
        let mark = self
            .ledger
            .record_sent(item_id, base64_decoded_len(delta), now);
        out.push(Action::Twilio(media_message(stream_sid, delta)));
        out.push(Action::Twilio(mark_message(stream_sid, mark)));
        self.probe.on_assistant_audio(now);
    }

    pub(super) fn on_function_call(
        &mut self,
        response_id: String,
        call_id: &str,
        name: &str,
        arguments: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let tool_output;
        let output = if name == crate::realtime::session::SEND_DTMF_TOOL_NAME {
            tool_output = self.on_send_dtmf_call(arguments, now, out);
            tool_output.as_str()
        } else if name == crate::realtime::session::TRANSFER_CALL_TOOL_NAME {
            tool_output = self.on_transfer_call(arguments, now, out);
            tool_output.as_str()
        } else if name == "end_call" {
            if let Some(rejection) = self.take_outcome(arguments, &response_id) {
                tool_output = rejection;
                self.responses.queue();
                return self.answer_tool(call_id, &tool_output, out);
            }
            tracing::info!("the model called end_call");
            if self.farewell == Farewell::None {
                self.farewell = Farewell::AfterResponse {
                    ask_for_words: !self.responses.active_had_audio(),
                    response_id,
                };
            }
            r#"{"ok":true,"note":"The call ends after your goodbye has played. If you have not said goodbye yet, say it now, briefly."}"#
        } else {
            tracing::warn!(%name, "the model called an unknown tool");
            self.responses.queue();
            r#"{"ok":false,"error":"unknown tool"}"#
        };
        self.answer_tool(call_id, output, out);
    }

    /// Answers the function call `call_id` with `output` (`function_call_output`).
    fn answer_tool(&self, call_id: &str, output: &str, out: &mut Vec<Action>) {
        out.push(Action::OpenAi(
            ClientEvent::ConversationItemCreate {
                item: ConversationItem::function_call_output(call_id, output),
            }
            .to_json(),
        ));
    }

    pub(super) fn on_response_done(
        &mut self,
        response: crate::realtime::server_events::ResponseSummary,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Some(usage) = &response.usage {
            self.record.usage += *usage;
        }
        self.responses.on_done(&response.id);
        let completed = response.status != "cancelled";
        if !completed {
            // Transcripts of a cancelled response that had no audio played: nothing of them was heard.
            self.transcript.on_response_cancelled();
        }
        let offset = self.offset_ms(now);
        self.transcript.flush(&mut self.record, offset);
        self.say_on_response_done(&response.id, completed, now, out);
        match &self.farewell {
            Farewell::AfterResponse {
                response_id,
                ask_for_words,
            } if *response_id == response.id => {
                if !completed {
                    self.farewell = Farewell::None;
                } else if *ask_for_words {
                    // This request also serves any deferred one: nothing else is asked for after the goodbye.
                    self.farewell = Farewell::Speaking { response_id: None };
                    self.responses.create_now();
                    out.push(Action::OpenAi(
                        ClientEvent::ResponseCreate { response: None }.to_json(),
                    ));
                    return;
                } else {
                    self.send_final_mark(now, out);
                }
            }
            Farewell::Speaking {
                response_id: Some(response_id),
            } if *response_id == response.id => {
                if completed {
                    self.send_final_mark(now, out);
                } else {
                    self.farewell = Farewell::None;
                }
            }
            _ => {}
        }
        let awaiting_goodbye_request = self.farewell == Farewell::Speaking { response_id: None };
        if self.farewell != Farewell::None && !awaiting_goodbye_request {
            // The goodbye is under way: the model is not asked to say anything more.
            self.responses.drop_queued();
        } else if self.responses.take_queued() {
            out.push(Action::OpenAi(
                ClientEvent::ResponseCreate { response: None }.to_json(),
            ));
        }
        self.check_cost_cap(now, out);
    }

    /// Queues the final mark behind the farewell audio; the call ends when Twilio echoes it.
    fn send_final_mark(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(stream_sid) = self.stream_sid.as_deref() else {
            out.push(Action::HangUp(self.goodbye_reason()));
            return;
        };
        let unplayed_ms = self
            .ledger
            .sent_ms()
            .saturating_sub(self.ledger.played_ms(now));
        let mark = self.ledger.record_mark(now);
        out.push(Action::Twilio(mark_message(stream_sid, mark)));
        let deadline = now + Duration::from_millis(unplayed_ms) + self.config.farewell_grace;
        self.farewell = Farewell::MarkSent { mark, deadline };
    }
}
