//! [`CallBackend`]: what the MCP tools need, implemented by the in-process [`CallService`] (the `/mcp` endpoint of a
//! running server) and by the REST API client (`callbridge mcp` over stdio, which forwards to a running server).

use std::future::Future;

use serde::Serialize;

use crate::calls::model::{CallSummary, CallView};
use crate::calls::service::{CallService, PlaceCall, ServiceError};

/// A failed backend call: a stable code (see [`ServiceError::code`]) and a message for the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct BackendError {
    /// `invalid_number`, `invalid_request`, `destination_not_allowed`, `daily_budget_exhausted`, `too_many_calls`,
    /// `not_found`, `not_live`, `not_configured`, `twilio_error`, `unauthorized`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong, in words an agent can act on.
    pub message: String,
}

impl From<ServiceError> for BackendError {
    fn from(error: ServiceError) -> Self {
        let code = error.code().to_owned();
        let message = match &error {
            // Never leak database details to a network peer.
            ServiceError::Store(_) => "internal error while storing the call".to_owned(),
            other => other.to_string(),
        };
        BackendError { code, message }
    }
}

/// The call operations behind the MCP tools. Every future is `Send`.
pub trait CallBackend: Clone + Send + Sync + 'static {
    /// Places an outbound call.
    fn place_call(
        &self,
        request: PlaceCall,
    ) -> impl Future<Output = Result<CallView, BackendError>> + Send;
    /// Reads a call, waiting up to `wait_s` for its status to change or for it to end.
    fn get_call(
        &self,
        id: String,
        wait_s: Option<u64>,
    ) -> impl Future<Output = Result<CallView, BackendError>> + Send;
    /// The most recent calls, newest first.
    fn list_calls(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<CallSummary>, BackendError>> + Send;
    /// Hangs up a call.
    fn hang_up(&self, id: String) -> impl Future<Output = Result<CallView, BackendError>> + Send;
    /// Adds an instruction to a live call.
    fn instruct_call(
        &self,
        id: String,
        text: String,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Presses keys on a live call's keypad.
    fn send_dtmf(
        &self,
        id: String,
        digits: String,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Makes the voice of a relay-mode call speak `request.text` verbatim; returns what was heard and, when asked,
    /// the callee's reply.
    fn say(
        &self,
        id: String,
        request: crate::calls::service::SayCall,
    ) -> impl Future<Output = Result<crate::calls::say::SayReport, BackendError>> + Send;
    /// Transfers a live call to a person at `to` (E.164, within the destination policy), who hears `summary` first.
    fn transfer_call(
        &self,
        id: String,
        to: String,
        summary: String,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

impl CallBackend for CallService {
    async fn place_call(&self, request: PlaceCall) -> Result<CallView, BackendError> {
        Ok(CallService::place_call(self, request).await?)
    }

    async fn get_call(&self, id: String, wait_s: Option<u64>) -> Result<CallView, BackendError> {
        Ok(CallService::get_call(self, &id, wait_s).await?)
    }

    async fn list_calls(&self, limit: usize) -> Result<Vec<CallSummary>, BackendError> {
        Ok(CallService::list_calls(self, limit)?)
    }

    async fn hang_up(&self, id: String) -> Result<CallView, BackendError> {
        Ok(CallService::hang_up(self, &id).await?)
    }

    async fn instruct_call(&self, id: String, text: String) -> Result<(), BackendError> {
        Ok(CallService::instruct(self, &id, &text).await?)
    }

    async fn send_dtmf(&self, id: String, digits: String) -> Result<(), BackendError> {
        Ok(CallService::send_dtmf(self, &id, &digits).await?)
    }

    async fn say(
        &self,
        id: String,
        request: crate::calls::service::SayCall,
    ) -> Result<crate::calls::say::SayReport, BackendError> {
        Ok(CallService::say(self, &id, request).await?)
    }

    async fn transfer_call(
        &self,
        id: String,
        to: String,
        summary: String,
    ) -> Result<(), BackendError> {
        Ok(CallService::transfer(self, &id, &to, &summary).await?)
    }
}
