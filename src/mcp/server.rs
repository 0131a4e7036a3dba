//! [`McpServer`]: the MCP server over a [`CallBackend`] — its tools, the transcript resources and the
//! `make-restaurant-reservation` prompt.
//!
//! Tools (arguments in [`crate::mcp::args`]):
//! - `place_call {to, instructions, greeting?, voice?, language?, max_duration_s?, metadata?}` → the call, `queued`;
//! - `get_call {call_id, wait_s?}` → the call (status, timeline, transcript, outcome), after waiting up to `wait_s`
//!   (≤ 120) seconds for its status to change or for it to end;
//! - `list_calls {limit?}` → `{"calls": [summary...]}`, newest first;
//! - `hang_up {call_id}` → the call;
//! - `instruct_call {call_id, text}` → `{"ok": true, "call_id": ...}`;
//! - `send_dtmf {call_id, digits}` → `{"ok": true, "call_id": ...}`;
//! - `say {call_id, text, wait_for_reply?, timeout_s?, hang_up_after?}` (relay-mode calls) → `{"spoken",
//!   "interrupted", "heard_text", "reply", "reply_timed_out", "call_ended"}` once the words were spoken (and
//!   answered).
//!
//! A result is the JSON (the REST API's shapes, [`crate::calls::model`]) as text content and as structured content.
//! A failure of the backend (an invalid number, Twilio's refusal with its code, an unknown call, ...) is a tool
//! result with `isError: true`, whose text says what went wrong and whose structured content is
//! `{"error": {"code", "message"}}`, so the model can read it and correct itself; only malformed arguments are
//! protocol errors. Tools: <https://modelcontextprotocol.io/specification/2025-11-25/server/tools>.
//!
//! The backend is either fixed ([`McpServer::new`]: `callbridge mcp` over stdio with the REST API client) or comes
//! with each request ([`McpServer::per_request`]: the `/mcp` endpoint, whose transport puts the server's
//! [`crate::calls::service::CallService`] in every request's extensions, see [`crate::http::mcp`]).

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    PaginatedRequestParams, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler, prompt, prompt_handler, prompt_router, tool,
    tool_handler, tool_router,
};
use serde::Serialize;
use serde_json::json;

use crate::calls::Direction;
use crate::calls::backend::{BackendError, CallBackend};
use crate::calls::model::CallSummary;
use crate::mcp::args::{
    GetCallArgs, HangUpArgs, InstructCallArgs, ListCallsArgs, PlaceCallArgs, ReservationArgs,
    SayArgs, SendDtmfArgs, TransferCallArgs,
};
use crate::mcp::prompt::{RESERVATION_PROMPT_DESCRIPTION, reservation_message};
use crate::mcp::transcript::{
    TRANSCRIPT_MIME_TYPE, TRANSCRIPT_URI_TEMPLATE, call_id_from_uri, render_transcript,
    transcript_uri,
};

/// How many recent calls `resources/list` offers transcripts of.
pub const RESOURCE_LIST_LIMIT: usize = 50;

/// What the server tells the client about itself (`initialize` → `instructions`).
pub const SERVER_INSTRUCTIONS: &str = "callbridge places real phone calls through Twilio; an OpenAI voice model \
     holds the conversation on your behalf and records what was achieved. Start a call with place_call (E.164 \
     numbers; calls cost money and reach real people), then follow it with get_call and wait_s until it ends, and \
     read its outcome and transcript. Transcripts are also resources at \
     callbridge://calls/{call_id}/transcript.";

/// `place_call`'s description.
pub const PLACE_CALL_DESCRIPTION: &str = "Phone someone on the user's behalf: callbridge dials `to` from its \
     Twilio number and an OpenAI voice model holds the whole conversation, following `instructions` (and saying \
     `greeting` first, if given); it hangs up when the task is done and records the outcome. `to` must be in \
     E.164 form: a plus sign, the country code and the number, digits only, no spaces (e.g. +14155550100). Calls \
     cost money and reach real people: place one only when the user asked for it, to a number the user gave. \
     Returns at once with the call's id and status `queued`; then follow the call with get_call(call_id, \
     wait_s=60), again and again, until its status is completed, busy, no-answer, failed or canceled, and read \
     its outcome and transcript. To call later or try again: `not_before` (RFC 3339), `call_window` (local hours \
     and an IANA time zone, e.g. \"09:00-18:00 Europe/Berlin\") and `retry` (busy, no-answer, failed) make the call \
     `scheduled` (then `retry-pending` between attempts) with its next_attempt_at; hang_up cancels it.";

/// `get_call`'s description.
pub const GET_CALL_DESCRIPTION: &str = "Read a call: its status (queued, initiated, ringing, in-progress, then \
     completed, busy, no-answer, failed or canceled; scheduled or retry-pending while a scheduled or retried call \
     waits for next_attempt_at, with each attempt's CallSid and result in attempts), the status timeline, the transcript so far and, once it \
     ended, its outcome and end reason (or Twilio's error); a call placed with outcome_schema has its outcome as \
     JSON in structured_outcome. With wait_s (at most 120 seconds) it first waits for \
     the call's status to change or for the call to end, so you can follow a call without your client timing \
     out: call get_call again with wait_s until the status is final.";

/// `list_calls`'s description.
pub const LIST_CALLS_DESCRIPTION: &str = "List recent calls, newest first: id, direction, numbers, status, \
     creation time, outcome, end reason and duration. Use get_call for a call's transcript.";

/// `hang_up`'s description.
pub const HANG_UP_DESCRIPTION: &str = "Hang up a call now: a call in progress ends at once, a call still \
     ringing is canceled, a scheduled or retry-pending call is canceled with no further attempt. Returns the call; a call that has already ended is returned unchanged.";

/// `send_dtmf`'s description.
pub const SEND_DTMF_DESCRIPTION: &str = "Press keys on the keypad of a call in progress, to get through a phone menu \
     the voice model cannot (\"press 1 for reservations\"). digits: 0-9, * and #; w waits half a second; at most 32. \
     The voice model usually presses menu keys itself; use this when you know better. The call moves to a new audio \
     stream for the tones (a short gap). Fails with not_live when the call is not in progress.";

/// `transfer_call`'s description.
pub const TRANSFER_CALL_DESCRIPTION: &str = "Transfer a call in progress to a person: Twilio dials `to` (E.164; it \
     must be an allowed outbound destination, else destination_not_allowed), whispers `summary` to them when they \
     answer, then connects them with the callee and the voice model leaves the call (end reason transferred). If \
     nobody answers, the callee comes back to the voice model, which is told. At most 2 transfers per call. Fails \
     with not_live when the call is not in progress.";

/// `instruct_call`'s description.
pub const INSTRUCT_CALL_DESCRIPTION: &str = "Give the voice model a new instruction during a call in progress \
     (e.g. something more to ask, or a changed request); it follows it from then on. The callee does not hear \
     the instruction itself. Fails with not_live when the call is not in progress.";

/// `say`'s description.
pub const SAY_DESCRIPTION: &str = "Speak through a call placed with mode \"relay\": the voice says exactly text, \
     word for word, and never answers the callee on its own, so you hold the conversation turn by turn. Returns \
     once the words were spoken: heard_text is what the callee heard (cut short, with interrupted true, when they \
     talked over it). With wait_for_reply it also waits (timeout_s, default 30) for the callee's answer and \
     returns their words as reply (null and reply_timed_out true if they said nothing). hang_up_after ends the call \
     after a final line. Use get_call for the whole transcript.";

/// The MCP server. Cheap to clone; generic over where the calls are: [`crate::calls::service::CallService`] in
/// the server process, or the REST API client in `callbridge mcp`.
pub struct McpServer<B: CallBackend> {
    /// The backend, when fixed; `None` reads it from each request's extensions (see [`McpServer::per_request`]).
    backend: Option<B>,
    /// The tools.
    tool_router: ToolRouter<Self>,
    /// The one prompt.
    prompt_router: PromptRouter<Self>,
}

impl<B: CallBackend> Clone for McpServer<B> {
    fn clone(&self) -> Self {
        McpServer {
            backend: self.backend.clone(),
            tool_router: self.tool_router.clone(),
            prompt_router: self.prompt_router.clone(),
        }
    }
}

impl<B: CallBackend> std::fmt::Debug for McpServer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("fixed_backend", &self.backend.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: CallBackend> McpServer<B> {
    /// A server whose every request goes to `backend` (stdio: one client, one backend).
    pub fn new(backend: B) -> Self {
        McpServer {
            backend: Some(backend),
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
        }
    }

    /// A server that takes the backend from each request: the `B` that the HTTP transport's `on_request` hook put in
    /// the request's extensions (`rmcp_actix_web::transport::on_request_extensions`). A request without one fails
    /// with an internal error.
    pub fn per_request() -> Self {
        McpServer {
            backend: None,
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
        }
    }

    /// The backend for the request in `context`.
    ///
    /// # Errors
    /// An internal protocol error when the server takes its backend from the request and the request has none (a
    /// wiring mistake, not something a client can cause).
    fn backend(&self, context: &RequestContext<RoleServer>) -> Result<B, McpError> {
        if let Some(backend) = &self.backend {
            return Ok(backend.clone());
        }
        rmcp_actix_web::transport::on_request_extensions(&context.extensions)
            .and_then(|extensions| extensions.get::<B>())
            .cloned()
            .ok_or_else(|| {
                tracing::error!("an MCP request reached the server without a call backend");
                McpError::internal_error("the call backend is not available", None)
            })
    }
}

/// A tool result for `outcome`: its JSON as text and structured content, or the error as a tool error.
fn tool_result<T: Serialize>(tool: &str, outcome: Result<T, BackendError>) -> CallToolResult {
    let error = match outcome {
        Ok(value) => match serde_json::to_value(value) {
            Ok(json) => return CallToolResult::structured(json),
            Err(e) => {
                tracing::error!(tool, error = %e, "a tool result did not serialize");
                BackendError {
                    code: "internal".into(),
                    message: "internal error while encoding the result".into(),
                }
            }
        },
        Err(error) => error,
    };
    tracing::info!(tool, code = %error.code, message = %error.message, "MCP tool failed");
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "{tool} failed: {} [{}]",
        error.message, error.code
    ))]);
    result.structured_content = Some(json!({
        "error": {"code": error.code, "message": error.message}
    }));
    result
}

/// The transcript resource of a listed call.
fn transcript_resource(call: &CallSummary) -> Resource {
    let (direction, title) = match call.direction {
        Direction::Inbound => ("inbound", format!("Call from {}", call.from)),
        Direction::OutboundApi => ("outbound", format!("Call to {}", call.to)),
    };
    Resource::new(transcript_uri(&call.id), format!("{}-transcript", call.id))
        .with_title(format!("{title} ({})", call.status))
        .with_description(format!(
            "Transcript of the {direction} call {} from {} to {}, status {}{}",
            call.id,
            call.from,
            call.to,
            call.status,
            call.outcome
                .as_deref()
                .map(|outcome| format!("; outcome: {outcome}"))
                .unwrap_or_default()
        ))
        .with_mime_type(TRANSCRIPT_MIME_TYPE)
}

#[tool_router]
impl<B: CallBackend> McpServer<B> {
    #[tool(
        name = "place_call",
        description = PLACE_CALL_DESCRIPTION,
        annotations(
            title = "Place a phone call",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn place_call(
        &self,
        Parameters(args): Parameters<PlaceCallArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let backend = self.backend(&context)?;
        Ok(tool_result(
            "place_call",
            backend.place_call(args.into()).await,
        ))
    }

    #[tool(
        name = "get_call",
        description = GET_CALL_DESCRIPTION,
        annotations(title = "Read a call", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_call(
        &self,
        Parameters(args): Parameters<GetCallArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let backend = self.backend(&context)?;
        let wait_s = args.capped_wait_s();
        Ok(tool_result(
            "get_call",
            backend.get_call(args.call_id, wait_s).await,
        ))
    }

    #[tool(
        name = "list_calls",
        description = LIST_CALLS_DESCRIPTION,
        annotations(title = "List calls", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_calls(
        &self,
        Parameters(args): Parameters<ListCallsArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let backend = self.backend(&context)?;
        let listed = backend
            .list_calls(args.effective_limit())
            .await
            .map(|calls| json!({ "calls": calls }));
        Ok(tool_result("list_calls", listed))
    }

    #[tool(
        name = "hang_up",
        description = HANG_UP_DESCRIPTION,
        annotations(
            title = "Hang up a call",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn hang_up(
        &self,
        Parameters(args): Parameters<HangUpArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let backend = self.backend(&context)?;
        Ok(tool_result("hang_up", backend.hang_up(args.call_id).await))
    }

    #[tool(
        name = "instruct_call",
        description = INSTRUCT_CALL_DESCRIPTION,
        annotations(
            title = "Instruct a live call",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn instruct_call(
        &self,
        Parameters(args): Parameters<InstructCallArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let backend = self.backend(&context)?;
        let call_id = args.call_id;
        let instructed = backend
            .instruct_call(call_id.clone(), args.text)
            .await
            .map(|()| json!({ "ok": true, "call_id": call_id }));
        Ok(tool_result("instruct_call", instructed))
    }

    #[tool(
        name = "say",
        description = SAY_DESCRIPTION,
        annotations(
            title = "Speak on a relay-mode call",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn say(
        &self,
        Parameters(args): Parameters<SayArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let backend = self.backend(&context)?;
        let call_id = args.call_id.clone();
        Ok(tool_result("say", backend.say(call_id, args.into()).await))
    }

    #[tool(
        name = "send_dtmf",
        description = SEND_DTMF_DESCRIPTION,
        annotations(
            title = "Press keys on a live call",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn send_dtmf(
        &self,
        Parameters(args): Parameters<SendDtmfArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let backend = self.backend(&context)?;
        let call_id = args.call_id;
        let sent = backend
            .send_dtmf(call_id.clone(), args.digits)
            .await
            .map(|()| json!({ "ok": true, "call_id": call_id }));
        Ok(tool_result("send_dtmf", sent))
    }

    #[tool(
        name = "transfer_call",
        description = TRANSFER_CALL_DESCRIPTION,
        annotations(
            title = "Transfer a live call to a person",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn transfer_call(
        &self,
        Parameters(args): Parameters<TransferCallArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let backend = self.backend(&context)?;
        let call_id = args.call_id;
        let transferred = backend
            .transfer_call(call_id.clone(), args.to, args.summary)
            .await
            .map(|()| json!({ "ok": true, "call_id": call_id }));
        Ok(tool_result("transfer_call", transferred))
    }
}

// `#[prompt]` adds an undocumented `pub fn make_restaurant_reservation_prompt_attr()`.
#[allow(missing_docs)]
#[prompt_router]
impl<B: CallBackend> McpServer<B> {
    /// The `make-restaurant-reservation` prompt: one user message asking the agent to book the table by phone.
    #[prompt(
        name = "make-restaurant-reservation",
        description = RESERVATION_PROMPT_DESCRIPTION
    )]
    async fn make_restaurant_reservation(
        &self,
        Parameters(args): Parameters<ReservationArgs>,
    ) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            reservation_message(&args),
        )]
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl<B: CallBackend> ServerHandler for McpServer<B> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_server_info(
            Implementation::new("callbridge", env!("CARGO_PKG_VERSION")).with_title("callbridge"),
        )
        .with_instructions(SERVER_INSTRUCTIONS)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let backend = self.backend(&context)?;
        let calls = backend
            .list_calls(RESOURCE_LIST_LIMIT)
            .await
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        Ok(ListResourcesResult::with_all_items(
            calls.iter().map(transcript_resource).collect(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(TRANSCRIPT_URI_TEMPLATE, "call-transcript")
                .with_title("Call transcript")
                .with_description(
                    "The transcript of a call (header with status, outcome and end reason, then one line per \
                     turn), by the call's id.",
                )
                .with_mime_type(TRANSCRIPT_MIME_TYPE),
        ]))
    }

    async fn read_resource(
        &self,
        ReadResourceRequestParams { uri, .. }: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let not_found = |message: String, uri: &str| {
            McpError::resource_not_found(message, Some(json!({ "uri": uri })))
        };
        let Some(call_id) = call_id_from_uri(&uri) else {
            return Err(not_found(
                format!("no resource {uri:?}: transcripts are at {TRANSCRIPT_URI_TEMPLATE}"),
                &uri,
            ));
        };
        let backend = self.backend(&context)?;
        match backend.get_call(call_id.to_owned(), None).await {
            Ok(call) => Ok(ReadResourceResult::new(vec![ResourceContents::text(
                render_transcript(&call),
                uri,
            )])
            .into()),
            Err(error) if error.code == "not_found" => Err(not_found(error.message, &uri)),
            Err(error) => Err(McpError::internal_error(error.to_string(), None)),
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
