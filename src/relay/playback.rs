//! The playback ledger: what assistant audio Twilio has queued, what the caller has heard, and how to truncate the
//! model's items on barge-in.
//!
//! Twilio plays the outbound audio of a Media Stream as one queue, in order, at real time (8 kHz μ-law: 8 bytes per
//! ms). The bridge forwards each `response.output_audio.delta` as a Twilio `media` message followed by a `mark`; Twilio
//! echoes the mark when playback reaches it, and on `clear` drops the queued audio and echoes every pending mark at once
//! (those marks did *not* play). See <https://www.twilio.com/docs/voice/media-streams/websocket-messages>.
//!
//! The ledger owns the timeline of one *generation* (the audio sent since the last barge-in): which assistant `item_id`
//! each span of bytes belongs to, the marks still pending, and an estimate of the playback position. Marks are named
//! `g{generation}:s{sequence}` ([`MarkName`], a `Copy` value written straight into the outgoing JSON, so a mark costs
//! no allocation of its own) so that echoes caused by a `clear` (older generation) can be told apart and ignored.
//! On barge-in it produces the `conversation.item.truncate` arguments the OpenAI Realtime API expects
//! (<https://platform.openai.com/docs/api-reference/realtime-client-events/conversation/item/truncate>): `audio_end_ms`
//! never exceeds the audio the item produced, or the API rejects the truncate.
//!
//! Pure synchronous logic: no I/O, time is passed in as [`Instant`] arguments that must not go backwards.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// μ-law at 8 kHz mono is one byte per sample: 8 bytes per ms.
const MULAW_BYTES_PER_MS: u64 = 8;

/// Pending marks kept at most; beyond this the oldest is forgotten (a later echo still confirms the position past it).
/// At 20 ms per delta this is over five minutes of queued audio.
const MAX_PENDING_MARKS: usize = 16_384;

/// Items tracked at most in one generation; beyond this, items whose audio has fully played are forgotten, oldest
/// first (they can never be truncated any more).
const MAX_TRACKED_ITEMS: usize = 32;

/// The name of a mark the ledger issued: generation `g` and sequence number `s`, written `g{g}:s{s}` (e.g. `g3:s41`,
/// at most 33 bytes) by its [`Display`](fmt::Display) and read back by [`MarkName::parse`].
///
/// `Copy` and allocation-free: pass it to [`crate::twilio::media::mark_message`], which writes it straight into the
/// outgoing JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkName {
    /// The ledger generation the mark was issued in (the `g` part).
    generation: u32,
    /// The mark's sequence number, unique across generations (the `s` part).
    sequence: u64,
}

impl MarkName {
    /// Parses `g{generation}:s{sequence}` exactly as [`Display`](fmt::Display) writes it: decimal, no sign, no leading
    /// zero, nothing before or after.
    ///
    /// Returns `None` for any other text, including numbers that overflow (`u32` generation, `u64` sequence). Never
    /// panics and never allocates; `MarkName::parse(&name.to_string()) == Some(name)` for every name.
    pub fn parse(text: &str) -> Option<Self> {
        let (generation, sequence) = text.strip_prefix('g')?.split_once(":s")?;
        Some(Self {
            generation: parse_decimal(generation)?,
            sequence: parse_decimal(sequence)?,
        })
    }

    /// The ledger generation the mark was issued in (the `g` part).
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// The mark's sequence number (the `s` part): increasing in issue order, unique across generations.
    pub fn sequence(self) -> u64 {
        self.sequence
    }
}

impl fmt::Display for MarkName {
    /// Writes `g{generation}:s{sequence}`, e.g. `g3:s41`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "g{}:s{}", self.generation, self.sequence)
    }
}

/// What an echoed Twilio `mark` meant, as told by [`PlaybackLedger::on_mark`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkEcho {
    /// A pending mark of the current generation: playback reached it.
    Played {
        /// The echoed mark, as [`PlaybackLedger::record_sent`] or [`PlaybackLedger::record_mark`] returned it.
        mark: MarkName,
        /// The assistant item whose audio the mark followed (shared with the ledger, no copy); `None` for a bare mark
        /// from [`PlaybackLedger::record_mark`] (e.g. the end of the farewell).
        item_id: Option<Arc<str>>,
    },
    /// A mark of an older generation, echoed because of a `clear`: its audio did not play. Nothing changed.
    Stale,
    /// A name the ledger never issued, or a mark of the current generation that is no longer pending (echoed twice).
    /// Nothing changed.
    Unknown,
}

/// The arguments of one `conversation.item.truncate{item_id, content_index: 0, audio_end_ms}` client event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The assistant item whose audio the caller did not hear in full.
    pub item_id: String,
    /// Milliseconds of the item's audio the caller heard (floored); never more than the ms sent for the item.
    pub audio_end_ms: u64,
}

/// The audio of one assistant item within a generation.
#[derive(Debug)]
struct ItemAudio {
    /// The Realtime `item_id`; shared with the pending marks that follow its deltas, so a mark costs no allocation.
    item_id: Arc<str>,
    /// Total bytes sent for this item in this generation (the sum of its spans).
    sent_bytes: u64,
    /// `[start, end)` byte ranges of the generation's timeline holding this item's audio, in timeline order.
    /// Normally a single span; a new one starts only when another item's delta came in between.
    spans: Vec<(u64, u64)>,
}

impl ItemAudio {
    /// Bytes of this item inside `[0, played_bytes)` of the timeline.
    fn heard_bytes(&self, played_bytes: u64) -> u64 {
        self.spans
            .iter()
            .map(|&(start, end)| end.min(played_bytes).saturating_sub(start))
            .fold(0, u64::saturating_add)
            .min(self.sent_bytes)
    }

    /// True when every byte of this item lies before `played_bytes`.
    fn fully_played(&self, played_bytes: u64) -> bool {
        self.spans
            .last()
            .is_none_or(|&(_, end)| end <= played_bytes)
    }
}

/// A mark sent to Twilio and not yet echoed.
#[derive(Debug)]
struct PendingMark {
    /// The `s{sequence}` part of its name; increasing along the queue.
    sequence: u64,
    /// Timeline position (bytes sent in the generation) the mark sits at.
    position_bytes: u64,
    /// The item whose delta the mark followed; `None` for a bare mark.
    item_id: Option<Arc<str>>,
}

/// A point where the playback position is taken as known: from there on playback advances in real time.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// Timeline position, in bytes, at `at`.
    position_bytes: u64,
    /// When the position held.
    at: Instant,
}

/// The mark queue and playback estimate for one Twilio media stream.
///
/// Drive it with [`record_sent`](Self::record_sent) for every audio delta forwarded, [`on_mark`](Self::on_mark) for
/// every `mark` Twilio echoes, and [`barge_in`](Self::barge_in) when the caller starts speaking over the assistant.
///
/// The playback estimate is `min(sent, max(floor, anchor position + (now - anchor time)))`. Anchors are taken at the
/// first send of a generation, at any send into a drained queue (audio cannot play before it was sent), and at every
/// current-generation mark echo. The floor is the estimate at the moment of the last re-anchoring: it keeps the
/// estimate monotonic within a generation when an echo reveals that playback started later than assumed (the estimate
/// then holds still until real playback catches up, instead of moving backwards).
#[derive(Debug)]
pub struct PlaybackLedger {
    /// The current generation; bumped by every barge-in, it is the `g` part of mark names.
    generation: u32,
    /// `generation_first_sequences[g]` is the first sequence number issued in generation `g`; tells a stale echo of an
    /// older generation from a name never issued.
    generation_first_sequences: Vec<u64>,
    /// The sequence number the next mark gets; unique across generations.
    next_sequence: u64,
    /// Bytes sent in this generation: the length of its timeline.
    sent_bytes: u64,
    /// The items of this generation, in the order their first audio was sent.
    items: Vec<ItemAudio>,
    /// Marks of this generation sent and not yet echoed, oldest first.
    pending_marks: VecDeque<PendingMark>,
    /// The last anchor of the playback estimate; `None` until the generation's first send or echo.
    anchor: Option<Anchor>,
    /// The estimate never goes below this within a generation (see the type's docs).
    floor_bytes: u64,
}

impl Default for PlaybackLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl PlaybackLedger {
    /// An empty ledger at generation 0.
    pub fn new() -> Self {
        Self {
            generation: 0,
            generation_first_sequences: vec![0],
            next_sequence: 0,
            sent_bytes: 0,
            items: Vec::new(),
            pending_marks: VecDeque::new(),
            anchor: None,
            floor_bytes: 0,
        }
    }

    /// An audio delta of `audio_bytes` μ-law bytes for assistant item `item_id` was forwarded to Twilio at `now`.
    ///
    /// Returns the name of the mark to send right after it (`g{generation}:s{sequence}`, e.g. `g3:s41`). The delta
    /// occupies the next `audio_bytes` of the generation's timeline. Allocates only for an item not seen before in
    /// this generation.
    pub fn record_sent(&mut self, item_id: &str, audio_bytes: usize, now: Instant) -> MarkName {
        if self.played_bytes(now) >= self.sent_bytes {
            // Drained queue (or first send): the new audio starts playing no earlier than now.
            self.anchor_at(self.sent_bytes, now);
        }
        let audio_bytes = u64::try_from(audio_bytes).unwrap_or(u64::MAX);
        let start_bytes = self.sent_bytes;
        let end_bytes = start_bytes.saturating_add(audio_bytes);

        let index = match self
            .items
            .iter()
            .rposition(|item| &*item.item_id == item_id)
        {
            Some(index) => index,
            None => {
                self.items.push(ItemAudio {
                    item_id: Arc::from(item_id),
                    sent_bytes: 0,
                    spans: Vec::new(),
                });
                self.items.len() - 1
            }
        };
        let item = &mut self.items[index];
        item.sent_bytes = item.sent_bytes.saturating_add(audio_bytes);
        if audio_bytes > 0 {
            match item.spans.last_mut() {
                Some(span) if span.1 == start_bytes => span.1 = end_bytes,
                _ => item.spans.push((start_bytes, end_bytes)),
            }
        }
        let item_id = Arc::clone(&item.item_id);
        self.sent_bytes = end_bytes;
        self.issue_mark(Some(item_id))
    }

    /// A bare mark (no audio) queued at `now` behind everything sent so far, used to learn when the farewell has
    /// finished playing. Returns its name; its echo is [`MarkEcho::Played`] with `item_id: None`.
    pub fn record_mark(&mut self, _now: Instant) -> MarkName {
        self.issue_mark(None)
    }

    /// Twilio echoed mark `name` at `now`.
    ///
    /// A pending mark of the current generation re-anchors the playback estimate at the mark's position (and the
    /// marks queued before it are taken as played too). Marks of an older generation (echoed because of a `clear`)
    /// are [`MarkEcho::Stale`] and change nothing; anything else, including malformed names, is
    /// [`MarkEcho::Unknown`] and changes nothing. Never panics and never allocates, whatever the peer sends.
    pub fn on_mark(&mut self, name: &str, now: Instant) -> MarkEcho {
        let Some(mark_name) = MarkName::parse(name) else {
            return MarkEcho::Unknown;
        };
        let MarkName {
            generation,
            sequence,
        } = mark_name;
        if generation != self.generation {
            return if self.was_issued_in_older_generation(generation, sequence) {
                MarkEcho::Stale
            } else {
                MarkEcho::Unknown
            };
        }
        let Ok(index) = self
            .pending_marks
            .binary_search_by_key(&sequence, |mark| mark.sequence)
        else {
            return MarkEcho::Unknown;
        };
        self.pending_marks.drain(..index);
        let Some(mark) = self.pending_marks.pop_front() else {
            return MarkEcho::Unknown;
        };
        self.anchor_at(mark.position_bytes, now);
        self.forget_played_items(now);
        MarkEcho::Played {
            mark: mark_name,
            item_id: mark.item_id,
        }
    }

    /// Estimated ms of assistant audio the caller has heard in this generation at `now` (floored):
    /// `min(sent, max(floor, anchor position + (now - anchor time)))`, see the type's docs.
    pub fn played_ms(&self, now: Instant) -> u64 {
        bytes_to_ms(self.played_bytes(now))
    }

    /// Ms of audio sent in this generation (floored bytes / 8).
    pub fn sent_ms(&self) -> u64 {
        bytes_to_ms(self.sent_bytes)
    }

    /// True when audio sent in this generation is estimated not yet played at `now`.
    pub fn has_unplayed(&self, now: Instant) -> bool {
        self.played_bytes(now) < self.sent_bytes
    }

    /// Ms of audio sent for `item_id` in this generation (floored); 0 for an item the ledger does not track.
    pub fn item_sent_ms(&self, item_id: &str) -> u64 {
        self.item(item_id)
            .map_or(0, |item| bytes_to_ms(item.sent_bytes))
    }

    /// Estimated ms of `item_id`'s audio the caller has heard at `now` (floored): the overlap of the item's spans with
    /// the played part of the timeline. 0 for an item the ledger does not track. Never more than
    /// [`item_sent_ms`](Self::item_sent_ms).
    pub fn item_played_ms(&self, item_id: &str, now: Instant) -> u64 {
        let played_bytes = self.played_bytes(now);
        self.item(item_id)
            .map_or(0, |item| bytes_to_ms(item.heard_bytes(played_bytes)))
    }

    /// The caller barged in at `now`.
    ///
    /// Returns one [`Truncation`] per assistant item of this generation with unplayed audio, in the order their audio
    /// was sent, with `audio_end_ms` = ms of that item heard (0 if none), never more than the item's ms sent. Then
    /// starts a new generation: the queue is empty and every mark issued before is now [`MarkEcho::Stale`]. The bridge
    /// sends Twilio `clear` and drops any late delta of the truncated items.
    pub fn barge_in(&mut self, now: Instant) -> Vec<Truncation> {
        let played_bytes = self.played_bytes(now);
        let truncations = self
            .items
            .iter()
            .filter_map(|item| {
                let heard_bytes = item.heard_bytes(played_bytes);
                (heard_bytes < item.sent_bytes).then(|| Truncation {
                    item_id: item.item_id.to_string(),
                    audio_end_ms: bytes_to_ms(heard_bytes),
                })
            })
            .collect();
        self.start_generation();
        truncations
    }

    /// Starts a new generation without truncating anything (e.g. after the stream restarts): the queue is empty and
    /// every mark issued before is now [`MarkEcho::Stale`].
    pub fn start_generation(&mut self) {
        // 2^32 barge-ins cannot happen within one call; saturating only rules out an overflow panic.
        self.generation = self.generation.saturating_add(1);
        self.generation_first_sequences.push(self.next_sequence);
        self.sent_bytes = 0;
        self.items.clear();
        self.pending_marks.clear();
        self.anchor = None;
        self.floor_bytes = 0;
    }

    /// The current generation (the `g` of the mark names issued now); starts at 0, bumped by each barge-in.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The playback estimate in bytes of the timeline.
    fn played_bytes(&self, now: Instant) -> u64 {
        let Some(anchor) = self.anchor else {
            return 0;
        };
        let elapsed_bytes = duration_to_bytes(now.saturating_duration_since(anchor.at));
        anchor
            .position_bytes
            .saturating_add(elapsed_bytes)
            .max(self.floor_bytes)
            .min(self.sent_bytes)
    }

    /// Re-anchors the estimate at `position_bytes` at `now`, keeping it from moving backwards.
    fn anchor_at(&mut self, position_bytes: u64, now: Instant) {
        self.floor_bytes = self.played_bytes(now);
        self.anchor = Some(Anchor {
            position_bytes,
            at: now,
        });
    }

    /// Queues a mark at the end of the timeline and returns its name.
    fn issue_mark(&mut self, item_id: Option<Arc<str>>) -> MarkName {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.saturating_add(1);
        if self.pending_marks.len() >= MAX_PENDING_MARKS {
            self.pending_marks.pop_front();
        }
        self.pending_marks.push_back(PendingMark {
            sequence,
            position_bytes: self.sent_bytes,
            item_id,
        });
        MarkName {
            generation: self.generation,
            sequence,
        }
    }

    /// True when `g{generation}:s{sequence}` was issued in a generation before the current one.
    fn was_issued_in_older_generation(&self, generation: u32, sequence: u64) -> bool {
        if generation >= self.generation {
            return false;
        }
        let Ok(index) = usize::try_from(generation) else {
            return false;
        };
        match (
            self.generation_first_sequences.get(index),
            self.generation_first_sequences.get(index.saturating_add(1)),
        ) {
            (Some(&first), Some(&next)) => (first..next).contains(&sequence),
            _ => false,
        }
    }

    /// Forgets the oldest fully played items once more than [`MAX_TRACKED_ITEMS`] are tracked.
    fn forget_played_items(&mut self, now: Instant) {
        let Some(mut excess) = self.items.len().checked_sub(MAX_TRACKED_ITEMS) else {
            return;
        };
        let played_bytes = self.played_bytes(now);
        self.items.retain(|item| {
            if excess > 0 && item.fully_played(played_bytes) {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }

    /// The tracked item `item_id`, if any.
    fn item(&self, item_id: &str) -> Option<&ItemAudio> {
        self.items
            .iter()
            .rev()
            .find(|item| &*item.item_id == item_id)
    }
}

/// Floored ms of μ-law audio in `bytes`.
fn bytes_to_ms(bytes: u64) -> u64 {
    bytes / MULAW_BYTES_PER_MS
}

/// Bytes of μ-law audio that play in `duration` (floored).
fn duration_to_bytes(duration: Duration) -> u64 {
    let bytes = duration.as_nanos() * u128::from(MULAW_BYTES_PER_MS) / 1_000_000;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// Parses a canonical decimal number: ASCII digits only, no leading zero except for "0"; `None` on overflow.
fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes of μ-law audio in `ms` milliseconds.
    fn ms(ms: usize) -> usize {
        ms * 8
    }

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn mark_names_carry_the_generation_and_a_sequence_number() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();

        let first = ledger.record_sent("item_a", ms(20), base);
        let second = ledger.record_mark(base);
        ledger.barge_in(base);
        let third = ledger.record_sent("item_b", ms(20), base);

        assert_eq!(first.to_string(), "g0:s0");
        assert_eq!(second.to_string(), "g0:s1");
        assert_eq!(third.to_string(), "g1:s2");
        assert_eq!((third.generation(), third.sequence()), (1, 2));
        assert_eq!(ledger.generation(), 1);
    }

    #[test]
    fn sent_ms_counts_eight_bytes_per_ms_and_floors() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();

        ledger.record_sent("item_a", 805, base);
        ledger.record_sent("item_a", 2, base);

        assert_eq!(ledger.sent_ms(), 100);
        assert_eq!(ledger.item_sent_ms("item_a"), 100);
    }

    #[test]
    fn a_mark_echo_ahead_of_the_estimate_advances_played_ms_to_the_mark() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(100), base);
        let second_mark = ledger.record_sent("item_a", ms(100), base);
        ledger.record_sent("item_a", ms(100), base);

        let echo = ledger.on_mark(&second_mark.to_string(), at(base, 50));

        assert_eq!(
            echo,
            MarkEcho::Played {
                mark: second_mark,
                item_id: Some(Arc::from("item_a"))
            }
        );
        assert_eq!(ledger.played_ms(at(base, 50)), 200);
        assert_eq!(ledger.played_ms(at(base, 80)), 230);
    }

    #[test]
    fn a_late_mark_echo_holds_the_estimate_until_real_playback_catches_up() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        let first_mark = ledger.record_sent("item_a", ms(100), base);
        ledger.record_sent("item_a", ms(900), base);

        // Playback started 200 ms after the send: the 100 ms mark is echoed at 300 ms.
        ledger.on_mark(&first_mark.to_string(), at(base, 300));

        assert_eq!(ledger.played_ms(at(base, 300)), 300);
        assert_eq!(ledger.played_ms(at(base, 400)), 300);
        assert_eq!(ledger.played_ms(at(base, 600)), 400);
    }

    #[test]
    fn played_ms_extrapolates_in_real_time_and_never_exceeds_sent_ms() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(500), base);

        let before = ledger.played_ms(base);
        let midway = ledger.played_ms(at(base, 120));
        let long_after = ledger.played_ms(at(base, 10_000));

        assert_eq!(before, 0);
        assert_eq!(midway, 120);
        assert_eq!(long_after, 500);
        assert!(!ledger.has_unplayed(at(base, 10_000)));
        assert!(ledger.has_unplayed(at(base, 120)));
    }

    #[test]
    fn a_send_into_a_drained_queue_is_not_counted_as_played_before_it_was_sent() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(100), base);

        // The first 100 ms have played by 100 ms; the next reply starts at 5 s.
        ledger.record_sent("item_b", ms(300), at(base, 5_000));

        assert_eq!(ledger.played_ms(at(base, 5_000)), 100);
        assert_eq!(ledger.item_played_ms("item_b", at(base, 5_000)), 0);
        assert_eq!(ledger.played_ms(at(base, 5_050)), 150);
        assert_eq!(ledger.item_played_ms("item_b", at(base, 5_050)), 50);
    }

    #[test]
    fn a_send_into_a_busy_queue_keeps_the_running_estimate() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(100), base);

        ledger.record_sent("item_a", ms(100), at(base, 60));

        assert_eq!(ledger.played_ms(at(base, 150)), 150);
    }

    #[test]
    fn a_bare_mark_echo_is_played_with_no_item() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(100), base);
        let farewell_end = ledger.record_mark(base);

        let echo = ledger.on_mark(&farewell_end.to_string(), at(base, 150));

        assert_eq!(
            echo,
            MarkEcho::Played {
                mark: farewell_end,
                item_id: None
            }
        );
        assert_eq!(ledger.played_ms(at(base, 150)), 100);
    }

    #[test]
    fn an_echo_also_confirms_the_marks_queued_before_it() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        let first = ledger.record_sent("item_a", ms(100), base);
        let second = ledger.record_sent("item_a", ms(100), base);

        ledger.on_mark(&second.to_string(), at(base, 200));
        let late_first = ledger.on_mark(&first.to_string(), at(base, 200));

        assert_eq!(late_first, MarkEcho::Unknown);
    }

    #[test]
    fn a_mark_echoed_twice_is_unknown_the_second_time_and_changes_nothing() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        let first = ledger.record_sent("item_a", ms(100), base);
        ledger.record_sent("item_a", ms(900), base);
        ledger.on_mark(&first.to_string(), at(base, 100));
        let before = ledger.played_ms(at(base, 400));

        let echo = ledger.on_mark(&first.to_string(), at(base, 400));

        assert_eq!(echo, MarkEcho::Unknown);
        assert_eq!(ledger.played_ms(at(base, 400)), before);
    }

    #[test]
    fn stale_generation_marks_are_ignored_after_barge_in() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        let old_first = ledger.record_sent("item_a", ms(1_000), base);
        let old_second = ledger.record_sent("item_a", ms(1_000), base);
        ledger.barge_in(at(base, 300));
        ledger.record_sent("item_b", ms(1_000), at(base, 400));
        let before = ledger.played_ms(at(base, 450));

        let echoes = [
            ledger.on_mark(&old_first.to_string(), at(base, 450)),
            ledger.on_mark(&old_second.to_string(), at(base, 450)),
        ];

        assert_eq!(echoes, [MarkEcho::Stale, MarkEcho::Stale]);
        assert_eq!(before, 50);
        assert_eq!(ledger.played_ms(at(base, 450)), 50);
        assert_eq!(ledger.sent_ms(), 1_000);
    }

    #[test]
    fn unknown_or_garbage_mark_names_are_ignored() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(1_000), base);
        ledger.barge_in(base);
        ledger.record_sent("item_b", ms(1_000), base);
        let garbage = [
            "",
            "g",
            "gx:s1",
            "g1:s99999999999999999999",
            "g99999999999:s1",
            "g1:s",
            "g1s1",
            "g1:s+1",
            "g+1:s1",
            "g01:s1",
            "g1:s01",
            "g1:s-1",
            "g1:s1 ",
            "g0:s7",
            "g2:s1",
            "g1:s500",
            "farewell",
            "g1:s1:s1",
            "ǵ1:s1",
        ];

        for name in garbage {
            let echo = ledger.on_mark(name, at(base, 100));

            assert_eq!(echo, MarkEcho::Unknown, "mark name {name:?}");
        }
        assert_eq!(ledger.played_ms(at(base, 100)), 100);
    }

    #[test]
    fn barge_in_truncates_the_current_item_at_the_heard_ms_and_later_items_at_zero() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(1_000), base);
        ledger.record_sent("item_b", ms(500), base);

        let truncations = ledger.barge_in(at(base, 640));

        assert_eq!(
            truncations,
            vec![
                Truncation {
                    item_id: "item_a".to_owned(),
                    audio_end_ms: 640
                },
                Truncation {
                    item_id: "item_b".to_owned(),
                    audio_end_ms: 0
                },
            ]
        );
    }

    #[test]
    fn barge_in_does_not_truncate_items_that_fully_played() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(200), base);
        ledger.record_sent("item_b", ms(500), base);

        let truncations = ledger.barge_in(at(base, 300));

        assert_eq!(
            truncations,
            vec![Truncation {
                item_id: "item_b".to_owned(),
                audio_end_ms: 100
            }]
        );
    }

    #[test]
    fn barge_in_with_nothing_unplayed_returns_no_truncations_and_still_bumps_the_generation() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(200), base);

        let truncations = ledger.barge_in(at(base, 1_000));

        assert!(truncations.is_empty());
        assert_eq!(ledger.generation(), 1);
    }

    #[test]
    fn barge_in_starts_an_empty_generation() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(1_000), base);

        ledger.barge_in(at(base, 100));

        assert_eq!(ledger.sent_ms(), 0);
        assert_eq!(ledger.played_ms(at(base, 2_000)), 0);
        assert!(!ledger.has_unplayed(at(base, 100)));
        assert_eq!(ledger.item_sent_ms("item_a"), 0);
    }

    #[test]
    fn heard_ms_of_an_item_is_floored_and_capped_by_its_sent_ms() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", 807, base);
        ledger.record_sent("item_b", ms(100), base);

        // At 100 ms, 800 of item_a's 807 bytes have played: 7 bytes are unplayed.
        let truncations = ledger.barge_in(at(base, 100));

        assert_eq!(
            truncations[0],
            Truncation {
                item_id: "item_a".to_owned(),
                audio_end_ms: 100
            }
        );
    }

    #[test]
    fn interleaved_items_count_each_delta_towards_its_own_item() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        // Timeline: a[0,100) b[100,200) a[200,300) b[300,400)
        ledger.record_sent("item_a", ms(100), base);
        ledger.record_sent("item_b", ms(100), base);
        ledger.record_sent("item_a", ms(100), base);
        ledger.record_sent("item_b", ms(100), base);

        let a_heard = ledger.item_played_ms("item_a", at(base, 250));
        let b_heard = ledger.item_played_ms("item_b", at(base, 250));
        let truncations = ledger.barge_in(at(base, 250));

        assert_eq!((a_heard, b_heard), (150, 100));
        assert_eq!(
            truncations,
            vec![
                Truncation {
                    item_id: "item_a".to_owned(),
                    audio_end_ms: 150
                },
                Truncation {
                    item_id: "item_b".to_owned(),
                    audio_end_ms: 100
                },
            ]
        );
    }

    #[test]
    fn per_item_figures_are_zero_for_an_unknown_item() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        ledger.record_sent("item_a", ms(100), base);

        assert_eq!(ledger.item_sent_ms("item_z"), 0);
        assert_eq!(ledger.item_played_ms("item_z", at(base, 50)), 0);
    }

    #[test]
    fn fully_played_items_are_forgotten_once_many_are_tracked() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        let mut last_mark = ledger.record_sent("item_0", ms(10), base);
        for index in 1..100 {
            last_mark = ledger.record_sent(&format!("item_{index}"), ms(10), base);
        }
        ledger.record_sent("item_last", ms(10), base);

        ledger.on_mark(&last_mark.to_string(), at(base, 1_000));

        assert_eq!(ledger.items.len(), MAX_TRACKED_ITEMS);
        assert_eq!(ledger.item_sent_ms("item_last"), 10);
        assert_eq!(ledger.item_sent_ms("item_0"), 0);
    }

    #[test]
    fn pending_marks_are_capped_and_an_echo_removes_the_earlier_ones() {
        let mut ledger = PlaybackLedger::new();
        let base = Instant::now();
        let mut names = Vec::new();
        for _ in 0..MAX_PENDING_MARKS + 10 {
            names.push(ledger.record_sent("item_a", 160, base));
        }
        let capped = ledger.pending_marks.len();

        let echo = ledger.on_mark(&names[100].to_string(), at(base, 1));

        assert_eq!(capped, MAX_PENDING_MARKS);
        assert_eq!(
            echo,
            MarkEcho::Played {
                mark: names[100],
                item_id: Some(Arc::from("item_a"))
            }
        );
        assert_eq!(ledger.pending_marks.len(), MAX_PENDING_MARKS + 10 - 101);
    }

    #[test]
    fn mark_names_of_the_largest_generation_and_sequence_fit_in_33_bytes_and_parse_back() {
        let largest = MarkName {
            generation: u32::MAX,
            sequence: u64::MAX,
        };

        let text = largest.to_string();

        assert_eq!(text, "g4294967295:s18446744073709551615");
        assert_eq!(text.len(), 33);
        assert_eq!(MarkName::parse(&text), Some(largest));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Send {
            item: u8,
            audio_bytes: usize,
        },
        BareMark,
        /// Echo the issued mark at this index (modulo how many were issued), current or stale.
        Echo(usize),
        EchoGarbage(String),
        Advance {
            ms: u64,
        },
        BargeIn,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..4, 0usize..2_000).prop_map(|(item, audio_bytes)| Step::Send { item, audio_bytes }),
            1 => Just(Step::BareMark),
            3 => any::<usize>().prop_map(Step::Echo),
            1 => ".{0,12}".prop_map(Step::EchoGarbage),
            3 => (0u64..400).prop_map(|ms| Step::Advance { ms }),
            1 => Just(Step::BargeIn),
        ]
    }

    proptest! {
        #[test]
        fn a_mark_name_parses_back_from_its_display(generation in any::<u32>(), sequence in any::<u64>()) {
            let name = MarkName { generation, sequence };

            let parsed = MarkName::parse(&name.to_string());

            prop_assert_eq!(parsed, Some(name));
        }

        #[test]
        fn text_parses_as_a_mark_name_only_when_it_is_exactly_what_display_writes(
            text in "(g[0-9+-]{0,12}(:s[0-9+-]{0,22})?|.{0,40})"
        ) {
            let parsed = MarkName::parse(&text);

            if let Some(name) = parsed {
                prop_assert_eq!(name.to_string(), text);
            }
        }

        #[test]
        fn ledger_invariants_hold_for_any_sequence_of_events(steps in prop::collection::vec(step(), 0..80)) {
            let mut ledger = PlaybackLedger::new();
            let base = Instant::now();
            let mut now = base;
            let mut issued: Vec<(u32, MarkName)> = Vec::new();
            let mut last_played = (ledger.generation(), 0u64);

            for step in steps {
                match step {
                    Step::Send { item, audio_bytes } => {
                        let name = ledger.record_sent(&format!("item_{item}"), audio_bytes, now);
                        issued.push((ledger.generation(), name));
                    }
                    Step::BareMark => {
                        let name = ledger.record_mark(now);
                        issued.push((ledger.generation(), name));
                    }
                    Step::Echo(pick) if !issued.is_empty() => {
                        let (generation, name) = issued[pick % issued.len()];
                        let before = (ledger.played_ms(now), ledger.sent_ms());
                        let echo = ledger.on_mark(&name.to_string(), now);
                        if generation < ledger.generation() {
                            prop_assert_eq!(echo, MarkEcho::Stale);
                            prop_assert_eq!((ledger.played_ms(now), ledger.sent_ms()), before);
                        } else {
                            prop_assert_ne!(&echo, &MarkEcho::Stale);
                            if let MarkEcho::Played { mark, .. } = echo {
                                prop_assert_eq!(mark, name);
                            }
                        }
                    }
                    Step::Echo(_) => {}
                    Step::EchoGarbage(name) => {
                        let before = (ledger.played_ms(now), ledger.sent_ms());
                        let echo = ledger.on_mark(&name, now);
                        if !issued.iter().any(|(_, issued_name)| issued_name.to_string() == name) {
                            prop_assert_eq!(echo, MarkEcho::Unknown);
                            prop_assert_eq!((ledger.played_ms(now), ledger.sent_ms()), before);
                        }
                    }
                    Step::Advance { ms } => now += Duration::from_millis(ms),
                    Step::BargeIn => {
                        let sent_per_item: Vec<(String, u64)> = (0..4)
                            .map(|item| {
                                let item_id = format!("item_{item}");
                                let sent_ms = ledger.item_sent_ms(&item_id);
                                (item_id, sent_ms)
                            })
                            .collect();
                        for truncation in ledger.barge_in(now) {
                            let (_, sent_ms) = sent_per_item
                                .iter()
                                .find(|(item_id, _)| *item_id == truncation.item_id)
                                .expect("truncations name items that were sent");
                            prop_assert!(truncation.audio_end_ms <= *sent_ms);
                        }
                    }
                }

                let played_ms = ledger.played_ms(now);
                prop_assert!(played_ms <= ledger.sent_ms());
                if last_played.0 == ledger.generation() {
                    prop_assert!(played_ms >= last_played.1, "played_ms went from {} to {}", last_played.1, played_ms);
                }
                last_played = (ledger.generation(), played_ms);
                for item in 0..4 {
                    let item_id = format!("item_{item}");
                    prop_assert!(ledger.item_played_ms(&item_id, now) <= ledger.item_sent_ms(&item_id));
                }
            }
        }
    }
}
