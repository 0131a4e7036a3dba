//! Scheduled and retried outbound calls in the call service: a request with `retry`, `not_before` or
//! `call_window` is checked and stored `scheduled` (the destination policy and the settings are checked at once);
//! the scheduler ([`crate::calls::scheduler`]) then asks [`CallService::place_due_attempt`] to place each attempt
//! when it is due. Every attempt passes the destination policy, the daily budget and the concurrency cap when it is
//! placed: an attempt the cap refuses waits [`CAP_RETRY_DELAY`] and tries again; one the budget or the policy
//! refuses ends the call `failed` with the reason in its `error`. `hang_up` cancels a waiting call.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;

use super::{CallService, PlaceCall, STORE_DEADLINE, ServiceError};
use crate::calls::clock::SharedClock;
use crate::calls::model::{CallError, CallStatus, CallView, NewCall};
use crate::calls::schedule::{CallWindow, check_not_before, first_attempt_at};
use crate::calls::store::NewSchedule;
use crate::calls::writer::Write;
use crate::twilio::amd::{MachineDetection, MachinePolicy};
use crate::twilio::rest::CreateCall;
use crate::urls::{
    CALL_STATUS_PATH, amd_status_path, outbound_call_path, public_endpoint, recording_status_path,
};

/// How long an attempt the concurrency cap refused waits before it is tried again.
pub const CAP_RETRY_DELAY: Duration = Duration::from_secs(30);

/// A request's schedule field that cannot be used: a 400 `invalid_request` naming it.
fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidRequest(message.into())
}

impl CallService {
    /// The clock scheduled and retried calls are due by.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Now, by [`CallService::clock`].
    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Woken (`notify_one`) when a call is scheduled or the scheduler should look again at once.
    pub fn scheduler_wake(&self) -> Arc<Notify> {
        self.inner.scheduled.clone()
    }

    /// Asks the scheduler to look for due attempts now (after a test moved the clock forward, say).
    pub fn wake_scheduler(&self) {
        self.inner.scheduled.notify_one();
    }

    /// The schedule of a request with `retry`, `not_before` or `call_window` (empty strings count as absent);
    /// `None` for a call placed at once.
    ///
    /// # Errors
    /// [`ServiceError::InvalidRequest`] naming the field: a retry outside its limits, a `not_before` that is not
    /// RFC 3339 or is more than 30 days ahead, a `call_window` that does not parse.
    pub(super) fn schedule_of(
        &self,
        request: &PlaceCall,
    ) -> Result<Option<NewSchedule>, ServiceError> {
        let given = |field: &Option<String>| {
            field
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        let not_before_text = given(&request.not_before);
        let window_text = given(&request.call_window);
        if request.retry.is_none() && not_before_text.is_none() && window_text.is_none() {
            return Ok(None);
        }
        if let Some(plan) = &request.retry {
            plan.validate().map_err(|e| invalid(e.0))?;
        }
        let window = window_text
            .as_deref()
            .map(CallWindow::parse)
            .transpose()
            .map_err(|e| invalid(e.0))?;
        let now = self.now();
        let not_before = not_before_text
            .map(|text| {
                OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| {
                    invalid(format!(
                        "not_before {text:?} is not an RFC 3339 time such as 2026-01-15T09:30:00+01:00: {e}"
                    ))
                })
            })
            .transpose()?;
        if let Some(not_before) = not_before {
            check_not_before(not_before, now).map_err(|e| invalid(e.0))?;
        }
        Ok(Some(NewSchedule {
            retry: request.retry.clone(),
            not_before,
            call_window: window.as_ref().map(ToString::to_string),
            send_digits: None,
            first_attempt_at: first_attempt_at(now, not_before, window.as_ref()),
        }))
    }

    /// Stores a checked request as a `scheduled` call and wakes the scheduler.
    ///
    /// # Errors
    /// [`ServiceError::StoreBusy`] when the record could not be written in time (it is then failed once written,
    /// and never placed); [`ServiceError::Store`].
    pub(super) async fn place_scheduled(
        &self,
        id: String,
        call: NewCall,
        schedule: NewSchedule,
    ) -> Result<CallView, ServiceError> {
        let due = schedule.first_attempt_at;
        let written = self
            .write(Write::CreateScheduled {
                id: id.clone(),
                call: Box::new(call),
                schedule: Box::new(schedule),
            })
            .await;
        if let Err(error) = written {
            if matches!(error, ServiceError::StoreBusy) {
                self.inner.writer.submit(Write::EndWaiting {
                    id: id.clone(),
                    status: CallStatus::Failed,
                    error: Some(CallError {
                        code: None,
                        message: "not placed: the call records database was busy".into(),
                    }),
                    at: self.now(),
                });
            }
            return Err(error);
        }
        tracing::info!(call_id = %id, %due, "outbound call scheduled");
        // Read before the scheduler is woken, so a call due now is answered `scheduled` (as stored) rather than in
        // whatever state its first attempt has reached.
        let view = self.get(&id);
        self.wake_scheduler();
        view
    }

    /// Cancels a call waiting for its next attempt: it ends `canceled` and no attempt follows. An attempt that
    /// started meanwhile is hung up as any call.
    ///
    /// # Errors
    /// [`ServiceError::StoreBusy`]; [`ServiceError::Store`]; [`ServiceError::NotFound`].
    pub(super) async fn cancel_waiting(&self, call: CallView) -> Result<CallView, ServiceError> {
        self.write(Write::EndWaiting {
            id: call.id.clone(),
            status: CallStatus::Canceled,
            error: None,
            at: self.now(),
        })
        .await?;
        let now = self.get(&call.id)?;
        if now.status.is_terminal() {
            tracing::info!(call_id = %call.id, "pending attempts canceled through the API");
            return Ok(now);
        }
        // An attempt started between the read and the write: hang it up like any call.
        Box::pin(self.hang_up(&call.id)).await
    }

    /// Places the next attempt of the waiting call `id`, due now: checks the destination policy, the daily budget
    /// and the concurrency cap, starts the attempt (the call goes back to `queued`) and asks Twilio to dial. A call
    /// that no longer waits (hung up) is left alone. The cap defers the attempt by [`CAP_RETRY_DELAY`]; the budget,
    /// the policy or missing settings end the call `failed` with the reason; Twilio refusing ends the attempt
    /// `failed` (retried if its `retry` counts `failed`).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`]; [`ServiceError::Store`]; [`ServiceError::StoreBusy`] when the attempt's start
    /// was not written in time (it is not dialled).
    pub async fn place_due_attempt(&self, id: &str) -> Result<(), ServiceError> {
        let call = self.get(id)?;
        if !call.status.is_waiting() {
            return Ok(());
        }
        let outbound = &self.inner.outbound;
        if let Err(refused) = outbound.destinations.check(&call.to) {
            tracing::warn!(call_id = %id, to = %call.to, reason = %refused, "attempt refused by the destination policy");
            return self.refuse(id, &ServiceError::from(refused)).await;
        }
        let (Some(rest), Some(public_url)) = (&self.inner.rest, &outbound.public_url) else {
            let missing = ServiceError::NotConfigured(
                "outbound calls need TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and PUBLIC_URL to be set on the server"
                    .into(),
            );
            return self.refuse(id, &missing).await;
        };
        let now = self.now();
        let (begun_tx, begun) = tokio::sync::oneshot::channel();
        if self.fleet().is_some() {
            // The fleet counts the cap and the budget in Redis, as for a call placed at once.
            match self.admit_in_fleet(id, true).await {
                Ok(()) => {}
                Err(refused @ ServiceError::DailyBudgetExhausted { .. }) => {
                    return self.refuse(id, &refused).await;
                }
                Err(ServiceError::TooManyCalls { .. }) => {
                    let until = now + CAP_RETRY_DELAY;
                    tracing::info!(call_id = %id, %until, "attempt deferred: the fleet's concurrency cap is reached");
                    self.inner.writer.submit(Write::DeferAttempt {
                        id: id.to_owned(),
                        until,
                    });
                    return Ok(());
                }
                Err(other) => return Err(other),
            }
            self.inner.writer.submit_then(
                Write::BeginAttempt {
                    id: id.to_owned(),
                    at: now,
                },
                Box::new(move |result| {
                    let _ = begun_tx.send(result);
                }),
            );
        } else {
            // Counting and starting the attempt under one admission, as for a call placed at once.
            let _admission = self.lock_admission();
            match self.check_daily_budget() {
                Ok(()) => {}
                Err(refused @ ServiceError::DailyBudgetExhausted { .. }) => {
                    drop(_admission);
                    return self.refuse(id, &refused).await;
                }
                Err(other) => return Err(other),
            }
            if self.check_capacity().is_err() {
                let until = now + CAP_RETRY_DELAY;
                tracing::info!(call_id = %id, %until, "attempt deferred: the concurrency cap is reached");
                self.inner.writer.submit(Write::DeferAttempt {
                    id: id.to_owned(),
                    until,
                });
                return Ok(());
            }
            self.inner.reserved.fetch_add(1, Ordering::SeqCst);
            let reserved = self.inner.reserved.clone();
            self.inner.writer.submit_then(
                Write::BeginAttempt {
                    id: id.to_owned(),
                    at: now,
                },
                Box::new(move |result| {
                    reserved.fetch_sub(1, Ordering::SeqCst);
                    let _ = begun_tx.send(result);
                }),
            );
        }
        match tokio::time::timeout(STORE_DEADLINE, begun).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => return Err(error.into()),
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(call_id = %id, "attempt not dialled: the call store is busy");
                return Err(ServiceError::StoreBusy);
            }
        }
        let call = self.get(id)?;
        let started = call.schedule.attempts.last().map(|a| a.started_at);
        if call.status != CallStatus::Queued || call.call_sid.is_some() || started != Some(now) {
            return Ok(()); // hung up between the read and the write
        }
        let max_duration_s = call
            .max_duration_s
            .unwrap_or(outbound.max_call_duration_s)
            .min(outbound.max_call_duration_s);
        let answering_machine = call
            .answering
            .answering_machine
            .unwrap_or(outbound.answering_machine);
        let created = rest
            .create_call(CreateCall {
                to: call.to.clone(),
                from: call.from.clone(),
                url: public_endpoint(public_url, &outbound_call_path(&call.id)),
                status_callback: public_endpoint(public_url, CALL_STATUS_PATH),
                ring_timeout_s: outbound.ring_timeout_s,
                time_limit_s: max_duration_s,
                machine_detection: (answering_machine != MachinePolicy::Ignore).then(|| {
                    MachineDetection {
                        callback_url: public_endpoint(public_url, &amd_status_path(&call.id)),
                        tuning: outbound.amd_tuning,
                    }
                }),
                send_digits: self.store().scheduled_send_digits(id)?,
                recording_callback: call
                    .record
                    .then(|| public_endpoint(public_url, &recording_status_path(&call.id))),
            })
            .await;
        let attempt = call.schedule.attempts.len();
        match created {
            Ok(created) => {
                tracing::info!(call_id = %id, call_sid = %created.sid, attempt, "outbound call attempt placed");
                self.inner.writer.submit(Write::SetCallSid {
                    id: id.to_owned(),
                    call_sid: created.sid,
                });
            }
            Err(error) => {
                let error = ServiceError::from(error);
                tracing::warn!(call_id = %id, attempt, %error, "Twilio refused the outbound call attempt");
                let error = match error {
                    ServiceError::Twilio { code, message } => CallError { code, message },
                    other => CallError {
                        code: None,
                        message: other.to_string(),
                    },
                };
                self.inner.writer.submit(Write::AttemptRefused {
                    id: id.to_owned(),
                    error,
                    at: self.now(),
                });
            }
        }
        Ok(())
    }

    /// Ends the waiting call `id` `failed` because `why` refused its attempt.
    async fn refuse(&self, id: &str, why: &ServiceError) -> Result<(), ServiceError> {
        tracing::warn!(call_id = %id, reason = %why, "scheduled call ended: its attempt was refused");
        self.write(Write::EndWaiting {
            id: id.to_owned(),
            status: CallStatus::Failed,
            error: Some(CallError {
                code: None,
                message: format!("not placed: {why}"),
            }),
            at: self.now(),
        })
        .await
    }
}
