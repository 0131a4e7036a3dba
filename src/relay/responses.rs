//! The "one response in flight" tracker: which OpenAI Realtime response is active, which were cancelled, and
//! whether a `response.create` waits for the server to be free.
//!
//! The Realtime API refuses a second `response.create` while a response is in flight
//! (`conversation_already_has_active_response`; <https://platform.openai.com/docs/api-reference/realtime-client-events/response/create>).
//! A response is in flight from our `response.create` (or its `response.created`) until its `response.done`; a
//! cancelled response stays in flight until its `response.done`. [`Responses`] keeps that state and says when a
//! request may go out; the [`Conductor`](crate::relay::conductor::Conductor) decides when to ask and writes the
//! events.

use std::collections::VecDeque;

/// How many cancelled response ids are remembered to drop their late deltas.
pub const CANCELLED_RESPONSES_KEPT: usize = 8;

/// The responses of one call, from `response.created` to `response.done`. Plain state, no I/O.
#[derive(Debug, Default)]
pub struct Responses {
    /// The response between `response.created` and `response.done` that was not cancelled.
    active: Option<String>,
    /// Whether the response last created sent audio while it was active.
    active_had_audio: bool,
    /// Recently cancelled responses (at most [`CANCELLED_RESPONSES_KEPT`], oldest first): their late deltas are
    /// dropped.
    cancelled: VecDeque<String>,
    /// A `response.create` waits until the server has no response in flight (a tool answer or a keypress needs a
    /// reply).
    create_queued: bool,
    /// The server has a response in flight (see the module docs).
    busy: bool,
}

impl Responses {
    /// No response yet, nothing queued.
    pub fn new() -> Self {
        Self::default()
    }

    /// `response.created` named `response_id`: it is the active response, with no audio yet, and the server is busy.
    pub fn on_created(&mut self, response_id: &str) {
        self.busy = true;
        match &mut self.active {
            Some(active) => {
                active.clear();
                active.push_str(response_id);
            }
            None => self.active = Some(response_id.to_owned()),
        }
        self.active_had_audio = false;
    }

    /// `response.done` for `response_id`: it is no longer active and the server is free.
    pub fn on_done(&mut self, response_id: &str) {
        if self.active.as_deref() == Some(response_id) {
            self.active = None;
        }
        self.busy = false;
    }

    /// Audio of `response_id` is being played: remembered when it is the active response. Allocates nothing.
    pub fn on_audio(&mut self, response_id: &str) {
        if self.active.as_deref() == Some(response_id) {
            self.active_had_audio = true;
        }
    }

    /// Whether `response_id` was cancelled recently (its late deltas and transcripts are not the caller's to hear).
    /// Allocates nothing.
    pub fn is_cancelled(&self, response_id: &str) -> bool {
        self.cancelled.iter().any(|c| c == response_id)
    }

    /// Whether a response is active (created, not done, not cancelled).
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Whether the response last created sent audio while it was active (a tool call in a response that spoke
    /// needs no further words).
    pub fn active_had_audio(&self) -> bool {
        self.active_had_audio
    }

    /// Cancels the active response, if any: it is remembered as cancelled (the oldest of
    /// [`CANCELLED_RESPONSES_KEPT`] forgotten) and its id returned for the `response.cancel`. It stays in flight until
    /// its `response.done`.
    pub fn cancel_active(&mut self) -> Option<&str> {
        let response_id = self.active.take()?;
        if self.cancelled.len() == CANCELLED_RESPONSES_KEPT {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(response_id);
        self.cancelled.back().map(String::as_str)
    }

    /// A response is wanted: returns `true` when `response.create` may be sent now (the server is then busy), `false`
    /// when it is queued until the response in flight is done.
    pub fn request(&mut self) -> bool {
        if self.busy {
            self.create_queued = true;
            false
        } else {
            self.busy = true;
            true
        }
    }

    /// A response is wanted once the response in flight is done (see [`Responses::take_queued`]).
    pub fn queue(&mut self) {
        self.create_queued = true;
    }

    /// Whether a `response.create` waits for the server to be free.
    pub fn is_queued(&self) -> bool {
        self.create_queued
    }

    /// Forgets a queued request (the caller barged in, or the goodbye is under way).
    pub fn drop_queued(&mut self) {
        self.create_queued = false;
    }

    /// `response.create` is sent now whatever the state (it also serves a queued request): the server is busy.
    pub fn create_now(&mut self) {
        self.create_queued = false;
        self.busy = true;
    }

    /// Returns `true` when a queued request may go out now (the server is free); it is then no longer queued and the
    /// server is busy.
    pub fn take_queued(&mut self) -> bool {
        if self.create_queued && !self.busy {
            self.create_queued = false;
            self.busy = true;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_nothing_in_flight_may_be_sent_at_once() {
        let mut responses = Responses::new();
        assert!(responses.request());
        assert!(!responses.is_queued());
    }

    #[test]
    fn a_request_while_our_create_is_unanswered_is_queued_until_its_response_is_done() {
        let mut responses = Responses::new();
        assert!(responses.request());
        assert!(!responses.request());
        assert!(responses.is_queued());
        assert!(!responses.take_queued(), "still in flight");
        responses.on_created("resp_1");
        responses.on_done("resp_1");
        assert!(responses.take_queued());
        assert!(!responses.is_queued());
        assert!(!responses.request(), "the queued request is now in flight");
    }

    #[test]
    fn a_response_the_server_created_on_its_own_makes_a_request_wait() {
        let mut responses = Responses::new();
        responses.on_created("resp_1");
        assert!(!responses.request());
        responses.on_done("resp_1");
        assert!(responses.take_queued());
    }

    #[test]
    fn a_cancelled_response_stays_in_flight_until_its_response_done() {
        let mut responses = Responses::new();
        responses.on_created("resp_1");
        assert_eq!(responses.cancel_active(), Some("resp_1"));
        assert!(!responses.is_active());
        assert!(!responses.request(), "cancelled but not done");
        responses.on_done("resp_1");
        assert!(responses.take_queued());
    }

    #[test]
    fn cancel_with_no_active_response_cancels_nothing() {
        let mut responses = Responses::new();
        assert_eq!(responses.cancel_active(), None);
        responses.on_created("resp_1");
        responses.on_done("resp_1");
        assert_eq!(responses.cancel_active(), None);
        assert!(!responses.is_cancelled("resp_1"));
    }

    #[test]
    fn only_the_last_eight_cancelled_responses_are_remembered() {
        let mut responses = Responses::new();
        for n in 0..=CANCELLED_RESPONSES_KEPT {
            responses.on_created(&format!("resp_{n}"));
            responses.cancel_active();
        }
        assert!(!responses.is_cancelled("resp_0"));
        for n in 1..=CANCELLED_RESPONSES_KEPT {
            assert!(responses.is_cancelled(&format!("resp_{n}")), "resp_{n}");
        }
    }

    #[test]
    fn audio_counts_only_for_the_active_response_and_resets_with_the_next() {
        let mut responses = Responses::new();
        responses.on_created("resp_1");
        responses.on_audio("resp_0");
        assert!(!responses.active_had_audio());
        responses.on_audio("resp_1");
        assert!(responses.active_had_audio());
        responses.on_done("resp_1");
        responses.on_audio("resp_1");
        assert!(
            responses.active_had_audio(),
            "kept until the next response is created"
        );
        responses.on_created("resp_2");
        assert!(!responses.active_had_audio());
    }

    #[test]
    fn a_dropped_request_is_not_sent_when_the_server_is_free() {
        let mut responses = Responses::new();
        responses.on_created("resp_1");
        responses.queue();
        responses.drop_queued();
        responses.on_done("resp_1");
        assert!(!responses.take_queued());
    }

    #[test]
    fn create_now_serves_a_queued_request_and_makes_the_next_one_wait() {
        let mut responses = Responses::new();
        responses.queue();
        responses.create_now();
        assert!(!responses.is_queued());
        assert!(!responses.request());
    }
}
