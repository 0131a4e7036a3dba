//! The conductor's side of moving a call to a new OpenAI Realtime session: the planned rollover before OpenAI's
//! session limit, and the recovery of a session OpenAI closed mid-call. A child module of the conductor, so that it
//! shares the conductor's state; the bridge does the I/O ([`Action::OpenSession`], [`Action::SwitchSession`]).
//!
//! Phases: *serving* (one session) → *opening* (the bridge opens a second session in the background, with the
//! call's own `session.update`) → *ready* (it is open; the old one still serves) → the switch, at the first quiet
//! moment: no assistant audio unheard per the playback ledger, no response in flight or asked for, the caller not
//! speaking (server VAD's `speech_started` without its `speech_stopped`), no goodbye or stream handover under way.
//! A call that finds no quiet moment for [`MAX_QUIET_WAIT`] switches anyway. At the switch the new session is seeded
//! ([`crate::relay::session_seed`]) and becomes the call's only session; the record gets a
//! [`SessionRollover`].
//!
//! When OpenAI closes the session (a close frame or a dropped socket without a fatal `error` first), the call is not
//! ended: a session already open is switched to at once; otherwise a new one is opened, up to
//! `reconnect_attempts` times (each bounded by the connector's deadline, [`RECONNECT_BACKOFF`] × attempt apart),
//! then seeded with an apology and a `response.create`. No caller audio is forwarded while no session serves. When
//! every attempt failed the call ends `error:openai_reconnect_failed`.
//!
//! The gap is measured from the old session's last use (the switch, or the close) to the first caller frame
//! forwarded to the new session, logged and stored in the rollover.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Action, Conductor, Farewell};
use crate::calls::{CallFailure, EndReason, SessionRollover};
use crate::config::SessionLifetime;
use crate::realtime::session::turn_detection_update;
use crate::relay::responses::Responses;
use crate::relay::session_seed::{SeedReason, seed_events};

/// A session that is ready waits at most this long for a quiet moment before the call switches to it anyway (OpenAI's
/// limit is 60 minutes; the default rollover starts at 55).
pub const MAX_QUIET_WAIT: Duration = Duration::from_secs(240);
/// While a session is ready and the call is not quiet, it looks again this often.
pub const QUIET_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// Wait before reopening attempt `n` (counting from 1): `n` times this.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// Instructions added mid-call that a new session is given again (the newest ones).
const INJECTED_KEPT: usize = 8;

/// Where the call is with its Realtime sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// One session serves the call.
    Serving,
    /// A new session is being opened; `lost_at` is when the old one closed, if it did.
    Opening { lost_at: Option<Instant> },
    /// The next opening attempt is due at `until`.
    Backoff {
        until: Instant,
        lost_at: Option<Instant>,
    },
    /// A new session is open; the old one still serves until a quiet moment (checked at `check_at`), or `force_at`.
    Ready {
        check_at: Instant,
        force_at: Instant,
    },
    /// The session is gone and none will be opened: the call only waits for its farewell to play out.
    Gone,
}

/// The conductor's session state.
#[derive(Debug)]
pub(super) struct SessionState {
    /// The session limit and the reopening attempts.
    lifetime: SessionLifetime,
    /// When the serving session started (the conductor's creation, then each switch).
    started: Instant,
    /// The phase.
    phase: Phase,
    /// Attempts made for the opening under way.
    attempts: u32,
    /// Planned rollovers stop after their attempts all failed (a close will still be recovered).
    planned_given_up: bool,
    /// Server VAD heard the caller start speaking and not stop yet.
    pub(super) caller_speaking: bool,
    /// Instructions added mid-call, newest last.
    injected: VecDeque<String>,
    /// The last rollover (its index in the record) and the instant its gap started, until caller audio reaches the
    /// new session.
    gap: Option<(usize, Instant)>,
}

impl SessionState {
    pub(super) fn new(now: Instant) -> Self {
        SessionState {
            lifetime: SessionLifetime {
                session_limit: Duration::from_secs(3300),
                reconnect_attempts: 3,
            },
            started: now,
            phase: Phase::Serving,
            attempts: 0,
            planned_given_up: false,
            caller_speaking: false,
            injected: VecDeque::new(),
            gap: None,
        }
    }

    /// The next instant the session state has something to do.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Serving if !self.planned_given_up => {
                Some(self.started + self.lifetime.session_limit)
            }
            Phase::Backoff { until, .. } => Some(until),
            Phase::Ready { check_at, force_at } => Some(check_at.min(force_at)),
            _ => None,
        }
    }

    /// True while no session serves the call (OpenAI closed it and no new one is open yet).
    pub(super) fn is_lost(&self) -> bool {
        matches!(
            self.phase,
            Phase::Opening { lost_at: Some(_) }
                | Phase::Backoff {
                    lost_at: Some(_),
                    ..
                }
                | Phase::Gone
        )
    }
}

impl Conductor {
    /// Sets the session limit and the reopening attempts (`realtime_session_limit_s`,
    /// `realtime_reconnect_attempts`); the defaults are 55 minutes and 3.
    pub fn set_session_lifetime(&mut self, lifetime: SessionLifetime) {
        self.session.lifetime = lifetime;
    }

    /// An instruction was added mid-call: a new session gets it again.
    pub(super) fn remember_instruction(&mut self, text: &str) {
        if self.session.injected.len() == INJECTED_KEPT {
            self.session.injected.pop_front();
        }
        self.session.injected.push_back(text.to_owned());
    }

    /// Caller audio was forwarded at `now`: it closes the gap of the last rollover, if open.
    pub(super) fn on_audio_forwarded(&mut self, now: Instant) {
        if let Some((index, from)) = self.session.gap.take() {
            let gap_ms = now.saturating_duration_since(from).as_millis() as u64;
            if let Some(rollover) = self.record.rollovers.get_mut(index) {
                rollover.gap_ms = Some(gap_ms);
                tracing::info!(
                    gap_ms,
                    reason = %rollover.reason,
                    "the new Realtime session takes the caller's audio"
                );
            }
        }
    }

    /// Time passed (from [`Conductor::on_tick`]): starts the planned rollover, the next reopening attempt, or the
    /// switch to a ready session.
    pub(super) fn on_session_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.session.phase {
            Phase::Serving
                if !self.session.planned_given_up
                    && now >= self.session.started + self.session.lifetime.session_limit =>
            {
                tracing::info!(
                    session_age_s = now
                        .saturating_duration_since(self.session.started)
                        .as_secs(),
                    "Realtime session limit near: opening a new session"
                );
                self.open_session(None, out);
            }
            Phase::Backoff { until, lost_at } if now >= until => self.open_session(lost_at, out),
            Phase::Ready { force_at, .. } => {
                if self.is_quiet(now) {
                    self.switch_session(SeedReason::SessionLimit, now, now, out);
                } else if now >= force_at {
                    tracing::warn!("no quiet moment for the session rollover; switching anyway");
                    self.switch_session(SeedReason::SessionLimit, now, now, out);
                } else {
                    self.session.phase = Phase::Ready {
                        check_at: now + QUIET_CHECK_INTERVAL,
                        force_at,
                    };
                }
            }
            _ => {}
        }
    }

    /// The session the bridge opened for [`Action::OpenSession`] is ready at `now`.
    pub fn on_session_opened(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.session.phase {
            Phase::Opening {
                lost_at: Some(lost_at),
            } => {
                self.switch_session(SeedReason::SessionClosed, lost_at, now, out);
            }
            Phase::Opening { lost_at: None } => {
                tracing::info!(
                    attempts = self.session.attempts,
                    "new Realtime session ready; switching at the next quiet moment"
                );
                self.session.phase = Phase::Ready {
                    check_at: now,
                    force_at: now + MAX_QUIET_WAIT,
                };
                self.on_session_tick(now, out);
            }
            _ => tracing::debug!("a session opened that the call no longer waits for"),
        }
    }

    /// The session the bridge tried to open for [`Action::OpenSession`] could not be opened (`error`, for the log).
    pub fn on_session_open_failed(&mut self, error: &str, now: Instant, out: &mut Vec<Action>) {
        let Phase::Opening { lost_at } = self.session.phase else {
            return;
        };
        let attempts = self.session.attempts;
        let allowed = self.session.lifetime.reconnect_attempts.max(1);
        tracing::warn!(
            error,
            attempts,
            allowed,
            "opening a new Realtime session failed"
        );
        if attempts < allowed {
            self.session.phase = Phase::Backoff {
                until: now + RECONNECT_BACKOFF * attempts,
                lost_at,
            };
        } else if lost_at.is_some() {
            tracing::error!(
                attempts,
                "cannot reopen the Realtime session; ending the call"
            );
            out.push(Action::HangUp(EndReason::Error(
                CallFailure::OpenAiReconnectFailed,
            )));
        } else {
            // The old session still serves; when OpenAI closes it, the recovery tries again.
            self.session.phase = Phase::Serving;
            self.session.planned_given_up = true;
        }
    }

    /// OpenAI closed the serving session at `now` (close `code`, if any, and `reason`, for the log), without a
    /// fatal `error` first.
    pub fn on_session_closed(
        &mut self,
        code: Option<u16>,
        reason: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        tracing::warn!(?code, reason, "OpenAI Realtime closed the session");
        if self.session.lifetime.reconnect_attempts == 0 {
            out.push(Action::HangUp(EndReason::Error(CallFailure::OpenAiClosed)));
            return;
        }
        if matches!(self.farewell, Farewell::MarkSent { .. }) {
            // The farewell is at Twilio already: the call ends when it has played.
            self.session.phase = Phase::Gone;
            return;
        }
        if self.shutdown_deadline.is_some() {
            out.push(Action::HangUp(EndReason::Shutdown));
            return;
        }
        // Whatever the old session was generating is gone with it.
        self.responses = Responses::new();
        self.farewell = Farewell::None;
        self.session.caller_speaking = false;
        match self.session.phase {
            Phase::Ready { .. } => self.switch_session(SeedReason::SessionClosed, now, now, out),
            Phase::Opening { lost_at: None } => {
                self.session.phase = Phase::Opening { lost_at: Some(now) }
            }
            Phase::Backoff {
                until,
                lost_at: None,
            } => {
                self.session.phase = Phase::Backoff {
                    until,
                    lost_at: Some(now),
                }
            }
            Phase::Serving => {
                self.session.attempts = 0;
                self.open_session(Some(now), out);
            }
            _ => {}
        }
    }

    /// Asks the bridge for a new session (one more attempt).
    fn open_session(&mut self, lost_at: Option<Instant>, out: &mut Vec<Action>) {
        self.session.attempts += 1;
        self.session.phase = Phase::Opening { lost_at };
        out.push(Action::OpenSession);
    }

    /// Nobody is speaking and nothing is on its way: a switch goes unnoticed.
    fn is_quiet(&self, now: Instant) -> bool {
        !self.ledger.has_unplayed(now)
            && !self.responses.is_active()
            && !self.responses.is_queued()
            && !self.session.caller_speaking
            && self.farewell == Farewell::None
            && self.handover.deadline().is_none()
    }

    /// Switches the call to the session that opened: seeds it, records the rollover, and (after a close) asks the
    /// assistant to apologise. `gap_from` is when the old session was last usable.
    fn switch_session(
        &mut self,
        reason: SeedReason,
        gap_from: Instant,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let offset_ms = self.offset_ms(now);
        // Partial assistant transcripts of the old session become turns now: its `.done` events will not come.
        self.transcript.flush(&mut self.record, offset_ms);
        out.push(Action::SwitchSession);
        let injected: Vec<String> = self.session.injected.iter().cloned().collect();
        // The answering machine step already taken is the new session's starting point too.
        if let Some(plan) = self.machine.as_ref().map(|m| m.plan().clone())
            && !self.is_holding()
        {
            let update = if self.voicemail_from.is_some() {
                turn_detection_update(None)
            } else {
                plan.release_update
            };
            out.push(Action::OpenAi(update));
        }
        let seed = seed_events(&self.record.turns, &injected, reason);
        let seed_items = seed.len();
        out.extend(seed.into_iter().map(Action::OpenAi));
        // The old session's responses and items are not the new session's.
        self.responses = Responses::new();
        self.items_in_generation.clear();
        self.session.caller_speaking = false;
        self.record.rollovers.push(SessionRollover {
            at_s: offset_ms / 1000,
            gap_ms: None,
            reason: reason.as_str().to_owned(),
            attempts: self.session.attempts,
        });
        self.session.gap = Some((self.record.rollovers.len() - 1, gap_from));
        tracing::info!(
            reason = reason.as_str(),
            attempts = self.session.attempts,
            seed_items,
            session_age_s = now
                .saturating_duration_since(self.session.started)
                .as_secs(),
            "switched the call to a new Realtime session"
        );
        self.session.started = now;
        self.session.phase = Phase::Serving;
        self.session.attempts = 0;
        if reason == SeedReason::SessionClosed && self.stream_sid.is_some() {
            self.request_response(out);
        }
    }
}
