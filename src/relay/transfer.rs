//! Transfers under way, by id: what the whisper and `<Dial action>` webhooks need, kept on the server (never in a URL).
//!
//! A running call that transfers opens a leg ([`Transfers::open`]): the CallSid, the target, the summary to whisper,
//! and the call's stream `<Parameter>`s. Its id goes into the `<Number url>` (`/transfer/{id}/whisper`) and the
//! `<Dial action>` (`/transfer/{id}/action`). The whisper answers the summary as `<Say>` and reports the person
//! answered; the action reports how the dial ended and answers TwiML that is stored with the leg, so a retried
//! action gets the same answer and reports nothing twice. Legs expire after [`LEG_TTL`]; at most [`LEGS_KEPT`] are
//! kept. Follows <https://www.twilio.com/docs/voice/twiml/dial> and <https://www.twilio.com/docs/voice/twiml/number>.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::sync::Cache;
use rand::TryRng as _;
use rand::rngs::SysRng;

/// How long a transfer leg's id stays valid (the ring, the whisper, and Twilio's retries of the action).
pub const LEG_TTL: Duration = Duration::from_secs(3600);
/// Most transfer legs kept at once; the oldest go first.
pub const LEGS_KEPT: u64 = 10_000;

/// One transfer: what its webhooks need.
#[derive(Debug, Clone)]
pub struct TransferLeg {
    /// The call being transferred.
    pub call_sid: String,
    /// Who it goes to (`front desk (+14155550100)`).
    pub target: String,
    /// What the person hears first (already bounded).
    pub summary: String,
    /// The `<Parameter>`s of the call's stream, for the stream that brings the caller back.
    pub parameters: Vec<(String, String)>,
    /// True once the whisper was fetched.
    answered: bool,
    /// The action's answer, once the action came (a retry gets it again).
    action_twiml: Option<String>,
}

/// The answer to a transfer webhook, and whether this request was the first of its kind for the leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegAnswer {
    /// The call being transferred.
    pub call_sid: String,
    /// The TwiML to answer.
    pub twiml: String,
    /// False for a retry: nothing is reported to the call again.
    pub first: bool,
}

/// The transfer legs by id. Cheap to clone; all clones share one table.
#[derive(Clone)]
pub struct Transfers {
    legs: Cache<String, Arc<Mutex<TransferLeg>>>,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers")
            .field("legs", &self.legs.entry_count())
            .finish()
    }
}

impl Default for Transfers {
    fn default() -> Self {
        Self {
            legs: Cache::builder()
                .max_capacity(LEGS_KEPT)
                .time_to_live(LEG_TTL)
                .build(),
        }
    }
}

impl Transfers {
    /// Opens a leg for the call `call_sid` to `target` with `summary`; returns its id (unguessable, URL-safe).
    ///
    /// # Panics
    /// If the operating system cannot provide randomness (as [`crate::security::tokens::StreamTokens::issue`]).
    pub fn open(
        &self,
        call_sid: &str,
        target: &str,
        summary: &str,
        parameters: Vec<(String, String)>,
    ) -> String {
        let mut random = [0_u8; 16];
        SysRng
            .try_fill_bytes(&mut random)
            .expect("the operating system's random source is available");
        let id = URL_SAFE_NO_PAD.encode(random);
        self.legs.insert(
            id.clone(),
            Arc::new(Mutex::new(TransferLeg {
                call_sid: call_sid.to_owned(),
                target: target.to_owned(),
                summary: summary.to_owned(),
                parameters,
                answered: false,
                action_twiml: None,
            })),
        );
        id
    }

    /// A copy of the leg `id`, if it is known.
    pub fn get(&self, id: &str) -> Option<TransferLeg> {
        let leg = self.legs.get(id)?;
        let leg = leg
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(leg.clone())
    }

    /// The whisper of leg `id` was fetched (the person answered): its `<Say>` TwiML built by `twiml` from the summary.
    /// `None` for an unknown id.
    pub fn whisper(&self, id: &str, twiml: impl FnOnce(&str) -> String) -> Option<LegAnswer> {
        let leg = self.legs.get(id)?;
        let mut leg = leg
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = !leg.answered;
        leg.answered = true;
        Some(LegAnswer {
            call_sid: leg.call_sid.clone(),
            twiml: twiml(&leg.summary),
            first,
        })
    }

    /// The action of leg `id` came: the first time its answer is built by `twiml` from the leg and stored; a retry
    /// gets the stored answer with `first` false. `None` for an unknown id.
    pub fn action(
        &self,
        id: &str,
        twiml: impl FnOnce(&TransferLeg) -> String,
    ) -> Option<LegAnswer> {
        let leg = self.legs.get(id)?;
        let mut leg = leg
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(stored) = &leg.action_twiml {
            return Some(LegAnswer {
                call_sid: leg.call_sid.clone(),
                twiml: stored.clone(),
                first: false,
            });
        }
        let answer = twiml(&leg);
        leg.action_twiml = Some(answer.clone());
        Some(LegAnswer {
            call_sid: leg.call_sid.clone(),
            twiml: answer,
            first: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";

    #[test]
    fn a_retried_action_gets_the_first_answer_and_is_not_first() {
        let transfers = Transfers::default();
        let id = transfers.open(CALL_SID, "desk", "hi", Vec::new());

        let first = transfers.action(&id, |_| "<first/>".into()).expect("known");
        let retry = transfers
            .action(&id, |_| "<second/>".into())
            .expect("known");

        assert!(first.first);
        assert!(!retry.first);
        assert_eq!(retry.twiml, "<first/>");
        assert_eq!(retry.call_sid, CALL_SID);
    }

    #[test]
    fn unknown_ids_find_nothing_and_ids_differ() {
        let transfers = Transfers::default();
        let a = transfers.open(CALL_SID, "desk", "hi", Vec::new());
        let b = transfers.open(CALL_SID, "desk", "hi", Vec::new());

        assert_ne!(a, b);
        assert!(transfers.whisper("nope", str::to_owned).is_none());
        assert!(transfers.action("nope", |_| String::new()).is_none());
        let whisper = transfers.whisper(&a, str::to_owned).expect("known");
        assert_eq!(whisper.twiml, "hi");
        assert!(whisper.first);
        assert!(!transfers.whisper(&a, str::to_owned).expect("known").first);
    }
}
