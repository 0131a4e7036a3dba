//! The call service's errors: [`ServiceError`], one variant per refusal or failure, each with the stable `code` that
//! JSON errors and MCP tool errors carry, and the conversions from the destination policy's and Twilio's REST
//! client's errors. A child module of the service.

use crate::calls::model::CallStatus;
use crate::calls::store::StoreError;
use crate::security::policy::PolicyError;
use crate::twilio::rest::RestError;

/// What can go wrong; each has a stable `code` for JSON errors and MCP tool errors.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `to` is not a valid E.164 number.
    #[error("{0}")]
    InvalidNumber(String),
    /// A request field is wrong (empty instructions, a too long wait, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// No call has that id.
    #[error("no call with id {0}")]
    NotFound(String),
    /// The call is not in progress on this server (for `instruct`).
    #[error("call {0} is not in progress")]
    NotLive(String),
    /// Outbound calls need settings that are missing; the message names them.
    #[error("{0}")]
    NotConfigured(String),
    /// Twilio refused; its code and message are kept.
    #[error("Twilio refused: {message}{}", code.map(|c| format!(" (Twilio error {c})")).unwrap_or_default())]
    Twilio {
        /// Twilio's error code (21211 invalid `To`, 21219 unverified number on a trial account, ...).
        code: Option<u32>,
        /// Twilio's message.
        message: String,
    },
    /// Twilio could not be reached (network failure, no answer in time): it refused nothing.
    #[error("{0}")]
    TwilioUnreachable(String),
    /// The destination policy refuses `to`; the message says which setting would allow it.
    #[error("{0}")]
    DestinationNotAllowed(String),
    /// The daily outbound-call budget is used up.
    #[error(
        "the daily budget of {budget} outbound calls (CALLBRIDGE_DAILY_OUTBOUND_BUDGET) is used up; it renews at \
         00:00 UTC"
    )]
    DailyBudgetExhausted {
        /// The budget: most outbound calls placed per UTC day.
        budget: u32,
    },
    /// The daily cost budget is spent: the calls of the UTC day have cost this much already (estimated).
    #[error(
        "the daily cost budget of ${budget_usd} (CALLBRIDGE_DAILY_COST_BUDGET_USD) is spent: today's calls cost an \
         estimated ${spent_usd:.4}; it renews at 00:00 UTC"
    )]
    DailyCostBudgetExhausted {
        /// The budget, USD per UTC day.
        budget_usd: f64,
        /// What today's calls cost, estimated, USD.
        spent_usd: f64,
    },
    /// The server already has as many calls in progress (or ringing) as it takes at once.
    #[error(
        "{max} calls are already in progress or ringing, the most this server takes at once \
         (CALLBRIDGE_MAX_CONCURRENT_CALLS); try again when one has ended"
    )]
    TooManyCalls {
        /// The cap.
        max: u32,
    },
    /// The call records database failed.
    #[error("the call store failed: {0}")]
    Store(#[from] StoreError),
    /// A write the request needs did not get through within [`STORE_DEADLINE`](super::STORE_DEADLINE): another process holds the database
    /// locked. Retryable.
    #[error(
        "the call records database is busy (another process holds a lock on it); try again in a few seconds"
    )]
    StoreBusy,
    /// The call has already ended (for `hang_up`): nothing to hang up.
    #[error("call {id} has already ended ({status}{}); there is nothing to hang up", end_reason.as_deref().map(|r| format!(", end reason {r}")).unwrap_or_default())]
    AlreadyEnded {
        /// The call's id.
        id: String,
        /// Its terminal status.
        status: CallStatus,
        /// Why it ended, when known.
        end_reason: Option<String>,
    },
    /// The fleet's Redis (`CALLBRIDGE_REDIS_URL`) failed or did not answer in time, so the fleet-wide cap and
    /// budget could not be checked (the call is refused), or a control for a call held by another instance could
    /// not be routed there. Retryable.
    #[error("the fleet's shared state (Redis) is unavailable: {0}; try again in a few seconds")]
    FleetUnavailable(String),
    /// The live call did not take the `say` (another one under way, the call ending, ...), or did not answer it.
    #[error("{0}")]
    SayRefused(String),
}

impl ServiceError {
    /// A stable machine-readable code: `invalid_number`, `invalid_request`, `not_found`, `not_live`,
    /// `not_configured`, `twilio_error`, `destination_not_allowed`, `daily_budget_exhausted`, `too_many_calls`,
    /// `call_ended`, `store_busy`, `say_refused`, `fleet_unavailable`, `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::DestinationNotAllowed(_) => "destination_not_allowed",
            ServiceError::DailyBudgetExhausted { .. } => "daily_budget_exhausted",
            ServiceError::DailyCostBudgetExhausted { .. } => "daily_cost_budget_exhausted",
            ServiceError::TooManyCalls { .. } => "too_many_calls",
            ServiceError::InvalidNumber(_) => "invalid_number",
            ServiceError::InvalidRequest(_) => "invalid_request",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::NotLive(_) => "not_live",
            ServiceError::NotConfigured(_) => "not_configured",
            ServiceError::Twilio { .. } => "twilio_error",
            ServiceError::TwilioUnreachable(_) => "twilio_unreachable",
            ServiceError::Store(_) => "internal",
            ServiceError::StoreBusy => "store_busy",
            ServiceError::AlreadyEnded { .. } => "call_ended",
            ServiceError::SayRefused(_) => "say_refused",
            ServiceError::FleetUnavailable(_) => "fleet_unavailable",
        }
    }
}

impl From<crate::webhooks::destination::WebhookRefusal> for ServiceError {
    fn from(error: crate::webhooks::destination::WebhookRefusal) -> Self {
        match error {
            crate::webhooks::destination::WebhookRefusal::Invalid(_) => {
                ServiceError::InvalidRequest(error.to_string())
            }
            crate::webhooks::destination::WebhookRefusal::NoSecret => {
                ServiceError::NotConfigured(error.to_string())
            }
        }
    }
}

impl From<PolicyError> for ServiceError {
    fn from(error: PolicyError) -> Self {
        match error {
            PolicyError::NotE164 { .. } => ServiceError::InvalidNumber(error.to_string()),
            other => ServiceError::DestinationNotAllowed(other.to_string()),
        }
    }
}

impl From<RestError> for ServiceError {
    fn from(error: RestError) -> Self {
        match error {
            RestError::Twilio { code, message, .. } => ServiceError::Twilio { code, message },
            RestError::Timeout | RestError::Network(_) => {
                ServiceError::TwilioUnreachable(error.to_string())
            }
            other @ RestError::InvalidResponse(_) => ServiceError::Twilio {
                code: None,
                message: other.to_string(),
            },
        }
    }
}
