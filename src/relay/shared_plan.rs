//! A call's stream plan as JSON, carried with its stream token's grant in Redis, so that an instance other than the
//! one that answered the webhook can run the stream: it finds no pending call of its own, rebuilds the
//! [`StreamPlan`] from the grant ([`SharedPlan::into_plan`]) and opens its own OpenAI session (Realtime or GPT-Live,
//! per the plan's engine). Plain types: no Redis here.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::calls::Direction;
use crate::calls::outcome::OutcomeSchema;
use crate::calls::say::CallMode;
use crate::config::Engine;
use crate::relay::call::StreamPlan;
use crate::relay::machine::MachinePlan;
use crate::twilio::amd::MachinePolicy;

/// The version of [`SharedPlan`] this build writes and reads.
pub const PLAN_VERSION: u32 = 1;

/// [`StreamPlan`] as JSON: every field, durations in ms, the outcome schema as the agent gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedPlan {
    /// [`PLAN_VERSION`].
    pub v: u32,
    /// The call's id in the store, when stored.
    pub call_id: Option<String>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Caller number.
    pub from: String,
    /// Called number.
    pub to: String,
    /// Whether the assistant speaks first.
    pub assistant_speaks_first: bool,
    /// Its first words.
    pub greeting: String,
    /// The call's maximum duration, ms.
    pub max_call_duration_ms: u64,
    /// The first client event of the call's session (`session.update` or GPT-Live's `session.start`), as sent.
    pub session_update: String,
    /// The OpenAI voice API.
    pub engine: Engine,
    /// Answering machine detection, for outbound calls that asked for it.
    pub machine: Option<SharedMachinePlan>,
    /// The public base URL the webhook was addressed to.
    pub public_base: String,
    /// The outcome JSON Schema, as given with `place_call`.
    pub outcome_schema: Option<serde_json::Value>,
    /// `autonomous` or `relay`.
    pub mode: CallMode,
    /// The call's own cost cap, USD.
    pub max_cost_usd: Option<f64>,
}

/// [`MachinePlan`] as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedMachinePlan {
    /// `hang_up` or `leave_message`.
    pub policy: MachinePolicy,
    /// What to say after the beep.
    pub voicemail_message: Option<String>,
    /// How long to hold the model back for a verdict, ms.
    pub verdict_wait_ms: u64,
    /// The `session.update` that turns automatic responses back on.
    pub release_update: String,
}

/// Why a shared plan cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Another version than [`PLAN_VERSION`].
    #[error("stream plan of version {0}; this instance reads version {PLAN_VERSION}")]
    Version(u32),
    /// The outcome schema no longer compiles.
    #[error("the stream plan's outcome schema: {0}")]
    OutcomeSchema(String),
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl SharedPlan {
    /// The shareable form of `plan`.
    pub fn from_plan(plan: &StreamPlan) -> Self {
        SharedPlan {
            v: PLAN_VERSION,
            call_id: plan.call_id.clone(),
            direction: plan.direction,
            from: plan.from.clone(),
            to: plan.to.clone(),
            assistant_speaks_first: plan.assistant_speaks_first,
            greeting: plan.greeting.clone(),
            max_call_duration_ms: millis(plan.max_call_duration),
            session_update: plan.session_update.to_string(),
            engine: plan.engine,
            machine: plan.machine.as_ref().map(|m| SharedMachinePlan {
                policy: m.policy,
                voicemail_message: m.voicemail_message.clone(),
                verdict_wait_ms: millis(m.verdict_wait),
                release_update: m.release_update.clone(),
            }),
            public_base: plan.public_base.clone(),
            outcome_schema: plan.outcome_schema.as_ref().map(|s| s.schema().clone()),
            mode: plan.mode,
            max_cost_usd: plan.max_cost_usd,
        }
    }

    /// The plan again, its outcome schema compiled anew.
    ///
    /// # Errors
    /// [`PlanError`] for another version, or an outcome schema that does not compile.
    pub fn into_plan(self) -> Result<StreamPlan, PlanError> {
        if self.v != PLAN_VERSION {
            return Err(PlanError::Version(self.v));
        }
        let outcome_schema = self
            .outcome_schema
            .map(|schema| {
                OutcomeSchema::parse(schema)
                    .map(Arc::new)
                    .map_err(|e| PlanError::OutcomeSchema(e.to_string()))
            })
            .transpose()?;
        Ok(StreamPlan {
            call_id: self.call_id,
            direction: self.direction,
            from: self.from,
            to: self.to,
            assistant_speaks_first: self.assistant_speaks_first,
            greeting: self.greeting,
            max_call_duration: Duration::from_millis(self.max_call_duration_ms),
            session_update: self.session_update.into(),
            engine: self.engine,
            machine: self.machine.map(|m| MachinePlan {
                policy: m.policy,
                voicemail_message: m.voicemail_message,
                verdict_wait: Duration::from_millis(m.verdict_wait_ms),
                release_update: m.release_update,
            }),
            public_base: self.public_base,
            outcome_schema,
            mode: self.mode,
            max_cost_usd: self.max_cost_usd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> StreamPlan {
        StreamPlan {
            call_id: Some("call_1".into()),
            direction: Direction::OutboundApi,
            from: "+15550100002".into(),
            to: "+15550100001".into(),
            assistant_speaks_first: true,
            greeting: "Hello, this is the restaurant.".into(),
            max_call_duration: Duration::from_secs(600),
            session_update: r#"{"type":"session.update"}"#.into(),
            engine: Engine::Live,
            machine: Some(MachinePlan {
                policy: MachinePolicy::LeaveMessage,
                voicemail_message: Some("Call us back".into()),
                verdict_wait: Duration::from_millis(4_500),
                release_update: r#"{"type":"session.update","session":{}}"#.into(),
            }),
            public_base: "https://cb.example".into(),
            outcome_schema: Some(Arc::new(
                OutcomeSchema::parse(serde_json::json!({"type":"object"})).expect("schema"),
            )),
            mode: CallMode::Relay,
            max_cost_usd: Some(0.5),
        }
    }

    fn same(a: &StreamPlan, b: &StreamPlan) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn a_plan_comes_back_from_its_json_as_it_was() {
        let original = plan();
        let json = serde_json::to_string(&SharedPlan::from_plan(&original)).expect("JSON");

        let back: SharedPlan = serde_json::from_str(&json).expect("parses");
        let rebuilt = back.into_plan().expect("a plan");

        assert!(same(&rebuilt, &original), "{rebuilt:?}\n{original:?}");
    }

    #[test]
    fn a_plan_of_another_version_or_with_a_broken_schema_is_refused() {
        let mut newer = SharedPlan::from_plan(&plan());
        newer.v = PLAN_VERSION + 1;
        let mut broken = SharedPlan::from_plan(&plan());
        broken.outcome_schema = Some(serde_json::json!({"type": 12}));

        assert_eq!(
            newer.into_plan().err(),
            Some(PlanError::Version(PLAN_VERSION + 1))
        );
        assert!(matches!(
            broken.into_plan(),
            Err(PlanError::OutcomeSchema(_))
        ));
    }
}
