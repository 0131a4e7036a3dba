//! The delivery task of the webhook outbox: a thread of its own (awc's client is not `Send`; a current-thread
//! runtime with a `LocalSet`, as in [`crate::awc_worker`]) that reads the pending deliveries due from the store,
//! POSTs each one signed ([`crate::webhooks::signing`]) and records what came back through the store writer.
//!
//! Nothing here is on a call's path: a call only queues its events in the store (inside the write that stores the
//! change, [`crate::calls::store`]'s outbox). A slow receiver meets [`REQUEST_TIMEOUT`]; at most [`MAX_IN_FLIGHT`]
//! deliveries run at once, and one call's events go out one at a time, oldest first. A delivery is a success on a
//! 2xx answer; anything else (another status, a redirect, a timeout, no connection) is tried again on the
//! [`RetrySchedule`], and a 410 Gone gives up at once (the Standard Webhooks spec's "Delivery success and
//! failure"). Pending deliveries survive a restart: the task starts by reading them.
//!
//! The task wakes when the store changes (a new event, a `callbridge webhooks retry`), when a delivery finishes,
//! when the next retry is due, and at least every [`MAX_IDLE`]. Time is read from a [`Clock`], so tests can set it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::calls::store::{AttemptOutcome, CallStore, DueDelivery, OutboxWrite};
use crate::calls::writer::{StoreWriter, Write};
use crate::webhooks::schedule::RetrySchedule;
use crate::webhooks::signing::{
    WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, WebhookSecret,
};

/// How long one attempt may take, answer head included (the spec recommends 15 to 30 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Most deliveries in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// The longest the task sleeps without looking at the store.
pub const MAX_IDLE: Duration = Duration::from_secs(30);
/// How long after its end an answered call whose record never came gets its `call.completed` anyway.
pub const COMPLETION_GRACE: Duration = Duration::from_secs(120);
/// How long a delivery waits for its attempt to be recorded before the task moves on (the database is locked by
/// another process; the write stays queued).
const RECORD_DEADLINE: Duration = Duration::from_secs(5);

/// Where the task reads the time (the timestamps it signs and the due times it compares).
pub trait Clock: Send + Sync + 'static {
    /// Now, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// What the task needs besides the store.
#[derive(Clone)]
pub struct DeliveryConfig {
    /// The signing secret (`CALLBRIDGE_WEBHOOK_SECRET`).
    pub secret: WebhookSecret,
    /// When failed deliveries are tried again.
    pub schedule: RetrySchedule,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryConfig")
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// Starts the delivery thread. It stops when `stop` is cancelled (a delivery in flight is then dropped: it stays
/// pending and is sent again by the next start).
///
/// # Errors
/// When the OS cannot start the thread or its runtime.
pub fn spawn(
    store: CallStore,
    writer: StoreWriter,
    changed: Arc<Notify>,
    config: DeliveryConfig,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("callbridge-webhooks".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, run(store, writer, changed, config, stop));
        })
}

/// The task's loop (see the module docs).
async fn run(
    store: CallStore,
    writer: StoreWriter,
    changed: Arc<Notify>,
    config: DeliveryConfig,
    stop: CancellationToken,
) {
    let client = awc::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .disable_redirects()
        .finish();
    // The calls with a delivery in flight.
    let in_flight: Rc<RefCell<HashSet<String>>> = Rc::default();
    let finished = Rc::new(Notify::new());
    let mut last_sweep: Option<OffsetDateTime> = None;
    tracing::info!(
        retry_base_ms = config.schedule.base.as_millis() as u64,
        max_attempts = config.schedule.max_attempts,
        "webhook delivery started"
    );
    loop {
        let store_changed = changed.notified();
        tokio::pin!(store_changed);
        store_changed.as_mut().enable();
        let one_finished = finished.notified();
        tokio::pin!(one_finished);
        one_finished.as_mut().enable();

        let now = config.clock.now();
        if last_sweep.is_none_or(|at| now - at >= MAX_IDLE) {
            writer.submit(Write::Webhook(OutboxWrite::QueueOverdueCompletions {
                ended_before: now - COMPLETION_GRACE,
            }));
            last_sweep = Some(now);
        }
        // As many as there are free slots: on PostgreSQL reading them claims them for this instance.
        let free = MAX_IN_FLIGHT.saturating_sub(in_flight.borrow().len());
        let due = if free == 0 {
            Vec::new()
        } else {
            store.due_webhooks(now, free).unwrap_or_else(|error| {
                tracing::error!(%error, "cannot read the webhooks due");
                Vec::new()
            })
        };
        // Held back: its call has a delivery in flight (whose attempt is recorded but not yet noted here), or the
        // cap is reached. On PostgreSQL reading it claimed it, so the claim is given back.
        let mut held = Vec::new();
        for delivery in due {
            let mut calls = in_flight.borrow_mut();
            if calls.len() >= MAX_IN_FLIGHT || !calls.insert(delivery.call_id.clone()) {
                held.push(delivery.id);
                continue;
            }
            drop(calls);
            tokio::task::spawn_local(deliver_and_record(
                client.clone(),
                delivery,
                config.clone(),
                writer.clone(),
                in_flight.clone(),
                finished.clone(),
            ));
        }
        for id in held {
            if let Err(error) = store.release_webhook(&id) {
                tracing::warn!(webhook_id = %id, %error, "cannot give back a webhook's claim; it is sent after the claim expires");
            }
        }
        let wait = match store.next_webhook_due() {
            Ok(Some(next)) if next > now => {
                Duration::try_from(next - now).map_or(MAX_IDLE, |d| d.min(MAX_IDLE))
            }
            // Due now but held back (its call has a delivery in flight, or the cap is reached): a delivery
            // finishing wakes the loop.
            Ok(Some(_)) | Ok(None) => MAX_IDLE,
            Err(error) => {
                tracing::error!(%error, "cannot read when the next webhook is due");
                MAX_IDLE
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = &mut store_changed => {}
            () = &mut one_finished => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("webhook delivery stopped");
}

/// One attempt, then its outcome recorded; frees the call's slot and wakes the loop.
async fn deliver_and_record(
    client: awc::Client,
    delivery: DueDelivery,
    config: DeliveryConfig,
    writer: StoreWriter,
    in_flight: Rc<RefCell<HashSet<String>>>,
    finished: Rc<Notify>,
) {
    let outcome = attempt(&client, &delivery, &config).await;
    match &outcome {
        AttemptOutcome::Delivered { status_code } => tracing::info!(
            webhook_id = %delivery.id,
            call_id = %delivery.call_id,
            status_code,
            "webhook delivered"
        ),
        AttemptOutcome::Failed { status_code, error } => tracing::warn!(
            webhook_id = %delivery.id,
            call_id = %delivery.call_id,
            status_code = status_code.unwrap_or(0),
            %error,
            "webhook attempt failed"
        ),
    }
    let recorded = writer
        .write(
            Write::Webhook(OutboxWrite::Attempt {
                id: delivery.id.clone(),
                outcome,
                at: config.clock.now(),
                schedule: config.schedule,
            }),
            RECORD_DEADLINE,
        )
        .await;
    if let Err(error) = recorded {
        tracing::warn!(
            webhook_id = %delivery.id,
            error = error.map(|e| e.to_string()).unwrap_or_else(|| "the database is busy".into()),
            "webhook attempt not recorded yet; the event may be sent again"
        );
    }
    in_flight.borrow_mut().remove(&delivery.call_id);
    finished.notify_one();
}

/// POSTs the delivery, signed now.
async fn attempt(
    client: &awc::Client,
    delivery: &DueDelivery,
    config: &DeliveryConfig,
) -> AttemptOutcome {
    let timestamp_s = config.clock.now().unix_timestamp();
    let signature = config
        .secret
        .sign(&delivery.id, timestamp_s, delivery.body.as_bytes());
    let request = client
        .post(delivery.url.as_str())
        .insert_header(("content-type", "application/json"))
        .insert_header((
            "user-agent",
            concat!("callbridge/", env!("CARGO_PKG_VERSION")),
        ))
        .insert_header((WEBHOOK_ID_HEADER, delivery.id.as_str()))
        .insert_header((WEBHOOK_TIMESTAMP_HEADER, timestamp_s.to_string()))
        .insert_header((WEBHOOK_SIGNATURE_HEADER, signature))
        .send_body(delivery.body.clone());
    match tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), request).await {
        Ok(Ok(response)) => {
            let status = response.status();
            if status.is_success() {
                AttemptOutcome::Delivered {
                    status_code: status.as_u16(),
                }
            } else {
                AttemptOutcome::Failed {
                    status_code: Some(status.as_u16()),
                    error: format!("the receiver answered {status}"),
                }
            }
        }
        Ok(Err(awc::error::SendRequestError::Timeout)) | Err(_) => AttemptOutcome::Failed {
            status_code: None,
            error: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        },
        Ok(Err(error)) => AttemptOutcome::Failed {
            status_code: None,
            error: error.to_string(),
        },
    }
}
