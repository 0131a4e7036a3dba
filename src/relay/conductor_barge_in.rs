//! The conductor's barge-in: the caller started speaking over the assistant. Twilio's playback is cleared, the
//! active response cancelled, every item with unplayed audio truncated at what was heard (and its transcript cut to
//! match), and a farewell under way is called off. A child module of the conductor, so that it shares the
//! conductor's state.

use std::time::Instant;

use super::{Action, Conductor, Farewell};
use crate::realtime::client_events::ClientEvent;
use crate::twilio::media::clear_message;

impl Conductor {
    /// When the `speech_started` of the last barge-in that cleared Twilio's audio arrived, once: the bridge times
    /// the `clear` from it ([`crate::relay::latency`]).
    pub fn take_clear(&mut self) -> Option<Instant> {
        self.probe.take_clear()
    }

    /// Barge-in: the caller started speaking.
    pub(super) fn on_speech_started(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.voicemail_from.is_some() {
            return; // an answering machine is recording: nobody to barge in
        }
        let unplayed = self.ledger.has_unplayed(now);
        let cancelled_mid_generation = self.responses.is_active();
        // While the farewell is on its way the caller's voice always counts: its final mark may not be echoed yet
        // even when the estimate says everything played.
        let farewell_underway = self.farewell != Farewell::None;
        if !unplayed && !cancelled_mid_generation && !farewell_underway {
            return;
        }
        tracing::info!(played_ms = self.ledger.played_ms(now), "barge-in");
        if (unplayed || farewell_underway)
            && let Some(stream_sid) = &self.stream_sid
        {
            out.push(Action::Twilio(clear_message(stream_sid)));
            self.probe.on_clear(now);
        }
        let cancelled = self.responses.cancel_active().map(str::to_owned);
        if let Some(response_id) = &cancelled {
            out.push(Action::OpenAi(
                ClientEvent::ResponseCancel {
                    response_id: Some(response_id.as_str()),
                }
                .to_json(),
            ));
        }
        let sent: Vec<(String, String, u64)> = self
            .items_in_generation
            .drain(..)
            .map(|(id, response_id)| {
                let sent = self.ledger.item_sent_ms(&id);
                (id, response_id, sent)
            })
            .collect();
        let truncations = self.ledger.barge_in(now);
        if cancelled_mid_generation {
            // Items of the cancelled response that played out entirely may still have a transcript that ran ahead
            // of their audio. Items of earlier, completed responses were heard in full.
            for (item_id, _, sent_ms) in sent
                .iter()
                .filter(|(_, response_id, _)| cancelled.as_ref() == Some(response_id))
            {
                if !truncations.iter().any(|t| t.item_id == *item_id) {
                    self.transcript.cut(
                        &mut self.record,
                        item_id.clone(),
                        *sent_ms,
                        *sent_ms,
                        true,
                    );
                }
            }
        }
        for truncation in truncations {
            out.push(Action::OpenAi(
                ClientEvent::ConversationItemTruncate {
                    item_id: &truncation.item_id,
                    content_index: 0,
                    audio_end_ms: truncation.audio_end_ms,
                }
                .to_json(),
            ));
            let sent_ms = sent
                .iter()
                .find(|(id, _, _)| *id == truncation.item_id)
                .map_or(truncation.audio_end_ms, |(_, _, ms)| *ms);
            self.transcript.cut(
                &mut self.record,
                truncation.item_id,
                truncation.audio_end_ms,
                sent_ms,
                cancelled_mid_generation,
            );
        }
        if self.farewell != Farewell::None {
            tracing::info!("barge-in during the farewell: hang-up cancelled");
            self.farewell = Farewell::None;
        }
        self.caller_said_goodbye = false;
        self.responses.drop_queued();
    }
}
