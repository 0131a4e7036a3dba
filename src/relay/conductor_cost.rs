//! The conductor's cost meter: the call's estimated cost ([`crate::cost`]) from the usage of every `response.done`
//! and the time since the call began, and its cap. When a response completes and the estimate has reached the cap,
//! the call is wrapped up the way a shutdown is: the model is told (a system message, [`COST_CAP_INSTRUCTION`]) and
//! asked for a goodbye, and the call ends once the goodbye has played (or [`COST_CAP_GOODBYE_TIMEOUT`] later at the
//! latest) with [`EndReason::CostCap`]. A child module of the conductor, so that it shares the conductor's state.

use std::time::{Duration, Instant};

use super::{Action, Conductor, Farewell};
use crate::calls::EndReason;
use crate::cost::{CallCost, CallRates};
use crate::realtime::client_events::{ClientEvent, ConversationItem};

/// What the model is told when the call reaches its cost cap.
pub const COST_CAP_INSTRUCTION: &str = "This call has reached its cost limit and must end now. Wrap up: tell the \
other person briefly that you have to end the call, and say goodbye.";
/// How long a call at its cost cap gets to say goodbye before it is hung up anyway.
pub const COST_CAP_GOODBYE_TIMEOUT: Duration = Duration::from_secs(15);

/// A call's cost meter: its rates and, when it has one, its cap.
#[derive(Debug, Clone, PartialEq)]
pub struct CostMeter {
    /// The prices that apply to this call.
    pub rates: CallRates,
    /// At this estimated cost the call is wrapped up, USD.
    pub cap_usd: Option<f64>,
}

impl Conductor {
    /// Meters the call: its cost is estimated at the end (into the record) and checked against the cap after every
    /// completed response.
    pub fn set_cost_meter(&mut self, meter: CostMeter) {
        self.cost = Some(meter);
    }

    /// The call's estimated cost so far (`None` without a meter).
    pub fn cost_so_far(&self, now: Instant) -> Option<CallCost> {
        let meter = self.cost.as_ref()?;
        Some(
            meter
                .rates
                .estimate(&self.record.usage, self.offset_ms(now)),
        )
    }

    /// After a response's usage was added: at the cap, the call wraps up (see the module docs); once is enough.
    pub(super) fn check_cost_cap(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(cap_usd) = self.cost.as_ref().and_then(|m| m.cap_usd) else {
            return;
        };
        if self.shutdown_deadline.is_some() {
            return; // already wrapping up (a shutdown, or the cap reached before)
        }
        let Some(cost) = self.cost_so_far(now) else {
            return;
        };
        if cost.total_usd < cap_usd {
            return;
        }
        tracing::info!(
            cost_usd = cost.total_usd,
            cap_usd,
            "the call reached its cost cap; asking the assistant to wrap up"
        );
        self.shutdown_deadline = Some(now + COST_CAP_GOODBYE_TIMEOUT);
        self.wrap_up_reason = Some(EndReason::CostCap);
        if self.farewell != Farewell::None {
            return; // a goodbye is already on its way
        }
        out.push(Action::OpenAi(
            ClientEvent::ConversationItemCreate {
                item: ConversationItem::system_text(COST_CAP_INSTRUCTION),
            }
            .to_json(),
        ));
        self.farewell = Farewell::Speaking { response_id: None };
        self.request_response(out);
    }

    /// Sets the record's estimated cost for a call that lasted `duration_ms`.
    pub(super) fn price_record(&mut self, duration_ms: u64) {
        if let Some(meter) = &self.cost {
            self.record.cost = Some(meter.rates.estimate(&self.record.usage, duration_ms));
        }
    }
}
