//! The transcript of a call as the caller heard it: assistant turns built from OpenAI Realtime transcript events,
//! cut to what was heard when the caller barged in or hung up ([`cut_to_heard`]), and caller turns.
//!
//! The Realtime API sends an assistant item's transcript (`response.output_audio_transcript.delta` / `.done`,
//! <https://platform.openai.com/docs/api-reference/realtime-server-events>) independently of its audio, before or
//! after the audio is cut. [`Transcript`] remembers a cut that comes before the words, and the words that never get a
//! `.done`; the turns themselves go to the [`CallRecord`]. The
//! [`Conductor`](crate::relay::conductor::Conductor) decides when a turn is cut and by how much.

use std::collections::HashMap;

use crate::calls::{CallRecord, Speaker, cut_to_heard};

/// Where an assistant item was cut: `heard_ms` of its `sent_ms` played, and whether its transcript may run ahead of
/// its audio (the response was still generating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    heard_ms: u64,
    sent_ms: u64,
    text_ahead: bool,
}

/// Nothing of the item was heard.
const UNHEARD: Cut = Cut {
    heard_ms: 0,
    sent_ms: 0,
    text_ahead: true,
};

/// The transcript under construction: pending cuts and partial assistant transcripts, by item id. Plain state, no
/// I/O; every method that makes a turn writes it to the record it is given.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Items cut short whose transcript has not arrived yet.
    cuts: HashMap<String, Cut>,
    /// Assistant transcript deltas of items whose `.done` has not arrived yet.
    partial: HashMap<String, String>,
}

impl Transcript {
    /// An empty transcript.
    pub fn new() -> Self {
        Self::default()
    }

    /// A `response.output_audio_transcript.delta` of item `item_id`: kept until its `.done` (or the end of its
    /// response) makes it a turn.
    pub fn on_assistant_delta(&mut self, item_id: String, delta: &str) {
        self.partial.entry(item_id).or_default().push_str(delta);
    }

    /// A `response.output_audio_transcript.done`: the assistant turn of item `item_id`, `offset_ms` into the call,
    /// cut to what was heard if the item was cut. `cancelled`: its response was cancelled, so unless a cut was
    /// recorded for it nothing of it was played.
    pub fn on_assistant_done(
        &mut self,
        record: &mut CallRecord,
        item_id: &str,
        transcript: &str,
        cancelled: bool,
        offset_ms: u64,
    ) {
        self.partial.remove(item_id);
        if cancelled && !self.cuts.contains_key(item_id) {
            self.cuts.insert(item_id.to_owned(), UNHEARD);
        }
        push_assistant(&mut self.cuts, record, item_id, transcript, offset_ms);
    }

    /// A caller turn (`conversation.item.input_audio_transcription.completed`) `offset_ms` into the call.
    pub fn on_caller(&mut self, record: &mut CallRecord, transcript: &str, offset_ms: u64) {
        record.push_turn(Speaker::Caller, transcript, offset_ms, false, None);
    }

    /// The caller heard `heard_ms` of the `sent_ms` of item `item_id`: its turn is cut now if it is recorded
    /// already (and removed if nothing of it remains), else when its transcript arrives. `text_ahead`: the response
    /// was still generating, so its transcript may run ahead of its audio.
    pub fn cut(
        &mut self,
        record: &mut CallRecord,
        item_id: String,
        heard_ms: u64,
        sent_ms: u64,
        text_ahead: bool,
    ) {
        let recorded = record
            .turns
            .iter_mut()
            .rev()
            .find(|t| t.item_id.as_deref() == Some(item_id.as_str()));
        match recorded {
            Some(turn) => {
                turn.text = cut_to_heard(&turn.text, heard_ms, sent_ms, text_ahead);
                turn.interrupted = true;
                if turn.text.is_empty() {
                    // Nothing of it was heard: no turn, as when the cut comes before the transcript.
                    record
                        .turns
                        .retain(|t| t.item_id.as_deref() != Some(item_id.as_str()));
                }
            }
            None => {
                self.cuts.insert(
                    item_id,
                    Cut {
                        heard_ms,
                        sent_ms,
                        text_ahead,
                    },
                );
            }
        }
    }

    /// A response ended cancelled: the partial transcripts of items with no cut recorded had no audio played, so
    /// nothing of them was heard.
    pub fn on_response_cancelled(&mut self) {
        for item_id in self.partial.keys() {
            if !self.cuts.contains_key(item_id) {
                self.cuts.insert(item_id.clone(), UNHEARD);
            }
        }
    }

    /// Partial transcripts whose `.done` will not come (their response is done, or the call ends) become turns,
    /// `offset_ms` into the call, cut as recorded.
    pub fn flush(&mut self, record: &mut CallRecord, offset_ms: u64) {
        for (item_id, text) in self.partial.drain() {
            push_assistant(&mut self.cuts, record, &item_id, &text, offset_ms);
        }
    }
}

/// Records the assistant turn of item `item_id`, cut as `cuts` says (the cut is then forgotten).
fn push_assistant(
    cuts: &mut HashMap<String, Cut>,
    record: &mut CallRecord,
    item_id: &str,
    transcript: &str,
    offset_ms: u64,
) {
    match cuts.remove(item_id) {
        Some(cut) => {
            let heard = cut_to_heard(transcript, cut.heard_ms, cut.sent_ms, cut.text_ahead);
            record.push_turn(Speaker::Assistant, &heard, offset_ms, true, Some(item_id));
        }
        None => record.push_turn(
            Speaker::Assistant,
            transcript,
            offset_ms,
            false,
            Some(item_id),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::Direction;

    fn record() -> CallRecord {
        CallRecord::new(
            "CA9e8d7c6b5a49382716f5e4d3c2b1a0f9".to_owned(),
            Direction::Inbound,
            "+15551230001".to_owned(),
            "+15551230002".to_owned(),
        )
    }

    fn texts(record: &CallRecord) -> Vec<(Speaker, &str, bool)> {
        record
            .turns
            .iter()
            .map(|t| (t.speaker, t.text.as_str(), t.interrupted))
            .collect()
    }

    const FOUR_WORDS: &str = "one two three four";

    #[test]
    fn an_assistant_transcript_that_was_not_cut_is_recorded_whole() {
        let mut record = record();
        let mut transcript = Transcript::new();
        transcript.on_assistant_delta("item_1".into(), "one two");
        transcript.on_assistant_done(&mut record, "item_1", FOUR_WORDS, false, 500);
        assert_eq!(texts(&record), [(Speaker::Assistant, FOUR_WORDS, false)]);
        assert_eq!(record.turns[0].offset_ms, 500);
        assert_eq!(record.turns[0].item_id.as_deref(), Some("item_1"));
        transcript.flush(&mut record, 600);
        assert_eq!(record.turns.len(), 1, "the delta was replaced by the done");
    }

    #[test]
    fn a_cut_before_the_transcript_cuts_it_when_it_arrives() {
        let mut record = record();
        let mut transcript = Transcript::new();
        transcript.cut(&mut record, "item_1".into(), 500, 1000, false);
        assert!(record.turns.is_empty());
        transcript.on_assistant_done(&mut record, "item_1", FOUR_WORDS, false, 900);
        assert_eq!(texts(&record), [(Speaker::Assistant, "one two", true)]);
    }

    #[test]
    fn a_cut_after_the_transcript_cuts_the_recorded_turn() {
        let mut record = record();
        let mut transcript = Transcript::new();
        transcript.on_assistant_done(&mut record, "item_1", FOUR_WORDS, false, 900);
        transcript.cut(&mut record, "item_1".into(), 750, 1000, false);
        assert_eq!(
            texts(&record),
            [(Speaker::Assistant, "one two three", true)]
        );
    }

    #[test]
    fn a_recorded_turn_cut_to_nothing_is_removed() {
        let mut record = record();
        let mut transcript = Transcript::new();
        transcript.on_caller(&mut record, "hello", 100);
        transcript.on_assistant_done(&mut record, "item_1", FOUR_WORDS, false, 900);
        transcript.cut(&mut record, "item_1".into(), 0, 1000, false);
        assert_eq!(texts(&record), [(Speaker::Caller, "hello", false)]);
    }

    #[test]
    fn the_transcript_of_a_cancelled_response_with_no_cut_is_not_recorded() {
        let mut record = record();
        let mut transcript = Transcript::new();
        transcript.on_assistant_done(&mut record, "item_1", FOUR_WORDS, true, 900);
        assert!(record.turns.is_empty(), "{:?}", record.turns);
    }

    #[test]
    fn the_transcript_of_a_cancelled_response_keeps_the_cut_recorded_for_it() {
        let mut record = record();
        let mut transcript = Transcript::new();
        transcript.cut(&mut record, "item_1".into(), 500, 1000, false);
        transcript.on_assistant_done(&mut record, "item_1", FOUR_WORDS, true, 900);
        assert_eq!(texts(&record), [(Speaker::Assistant, "one two", true)]);
    }

    #[test]
    fn partial_transcripts_become_turns_when_flushed() {
        let mut record = record();
        let mut transcript = Transcript::new();
        transcript.on_assistant_delta("item_1".into(), "one ");
        transcript.on_assistant_delta("item_1".into(), "two");
        transcript.flush(&mut record, 700);
        assert_eq!(texts(&record), [(Speaker::Assistant, "one two", false)]);
        assert_eq!(record.turns[0].offset_ms, 700);
        transcript.flush(&mut record, 800);
        assert_eq!(record.turns.len(), 1, "flushed once");
    }

    #[test]
    fn partial_transcripts_of_a_cancelled_response_are_not_recorded_unless_cut() {
        let mut record = record();
        let mut transcript = Transcript::new();
        transcript.on_assistant_delta("item_1".into(), FOUR_WORDS);
        transcript.on_assistant_delta("item_2".into(), FOUR_WORDS);
        transcript.cut(&mut record, "item_2".into(), 250, 1000, false);
        transcript.on_response_cancelled();
        transcript.flush(&mut record, 700);
        assert_eq!(texts(&record), [(Speaker::Assistant, "one", true)]);
        assert_eq!(record.turns[0].item_id.as_deref(), Some("item_2"));
    }

    #[test]
    fn a_transcript_running_ahead_of_its_audio_keeps_no_more_words_than_could_be_spoken() {
        let mut record = record();
        let mut transcript = Transcript::new();
        let long = "word ".repeat(100);
        transcript.cut(&mut record, "item_1".into(), 1000, 1000, true);
        transcript.on_assistant_done(&mut record, "item_1", &long, false, 1000);
        let kept = record.turns[0].text.split_whitespace().count();
        assert!(kept < 100, "{kept} words kept of 100 after 1 s");
        assert_eq!(
            kept,
            cut_to_heard(&long, 1000, 1000, true)
                .split_whitespace()
                .count()
        );
    }

    #[test]
    fn caller_turns_are_recorded_as_said_and_empty_ones_skipped() {
        let mut record = record();
        let mut transcript = Transcript::new();
        transcript.on_caller(&mut record, "  goodbye  ", 300);
        transcript.on_caller(&mut record, "   ", 400);
        assert_eq!(texts(&record), [(Speaker::Caller, "goodbye", false)]);
        assert_eq!(record.turns[0].item_id, None);
    }
}
