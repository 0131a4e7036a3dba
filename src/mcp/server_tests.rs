//! Tests of [`McpServer`]: a client speaking JSON-RPC lines to it over an in-memory pipe (rmcp's async read/write
//! transport, the one stdio uses), with a fake backend that records what the tools asked for.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ServiceExt as _;
use serde_json::{Value, json};
use time::macros::datetime;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, DuplexStream, Lines};
use tokio::io::{ReadHalf, WriteHalf};

use super::*;
use crate::calls::Turn;
use crate::calls::model::{CallStatus, CallView};
use crate::calls::service::PlaceCall;
use crate::realtime::usage::Usage;

/// How long a test waits for any one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the fake backend was asked, and what it answers.
#[derive(Default)]
struct FakeState {
    /// Calls it knows, newest first.
    calls: Vec<CallView>,
    /// Every `place_call` request.
    placed: Vec<PlaceCall>,
    /// Every `get_call` (id, wait_s).
    gets: Vec<(String, Option<u64>)>,
    /// Every `list_calls` limit.
    list_limits: Vec<usize>,
    /// Every `instruct_call` (id, text) that reached a live call.
    instructed: Vec<(String, String)>,
    /// When set, `place_call` fails with it.
    place_error: Option<BackendError>,
}

#[derive(Clone, Default)]
struct FakeBackend {
    state: Arc<Mutex<FakeState>>,
}

impl FakeBackend {
    fn with_calls(calls: Vec<CallView>) -> Self {
        let backend = FakeBackend::default();
        backend.state().calls = calls;
        backend
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .expect("the fake's lock is never poisoned")
    }

    fn find(&self, id: &str) -> Result<CallView, BackendError> {
        self.state()
            .calls
            .iter()
            .find(|call| call.id == id)
            .cloned()
            .ok_or_else(|| BackendError {
                code: "not_found".into(),
                message: format!("no call with id {id}"),
            })
    }
}

impl CallBackend for FakeBackend {
    async fn place_call(&self, request: PlaceCall) -> Result<CallView, BackendError> {
        let mut state = self.state();
        state.placed.push(request.clone());
        if let Some(error) = state.place_error.clone() {
            return Err(error);
        }
        let mut call = sample_call("call_placed", CallStatus::Queued);
        call.to = request.to;
        call.instructions = Some(request.instructions);
        state.calls.insert(0, call.clone());
        Ok(call)
    }

    async fn get_call(&self, id: String, wait_s: Option<u64>) -> Result<CallView, BackendError> {
        self.state().gets.push((id.clone(), wait_s));
        self.find(&id)
    }

    async fn list_calls(&self, limit: usize) -> Result<Vec<CallSummary>, BackendError> {
        let mut state = self.state();
        state.list_limits.push(limit);
        Ok(state
            .calls
            .iter()
            .take(limit)
            .map(CallView::summary)
            .collect())
    }

    async fn hang_up(&self, id: String) -> Result<CallView, BackendError> {
        let mut call = self.find(&id)?;
        call.status = CallStatus::Canceled;
        Ok(call)
    }

    async fn instruct_call(&self, id: String, text: String) -> Result<(), BackendError> {
        let call = self.find(&id)?;
        if call.status != CallStatus::InProgress {
            return Err(BackendError {
                code: "not_live".into(),
                message: format!("call {id} is not in progress"),
            });
        }
        self.state().instructed.push((id, text));
        Ok(())
    }

    async fn send_dtmf(&self, id: String, digits: String) -> Result<(), BackendError> {
        self.find(&id)?;
        self.state().instructed.push((id, format!("dtmf:{digits}")));
        Ok(())
    }

    async fn say(
        &self,
        id: String,
        request: crate::calls::service::SayCall,
    ) -> Result<crate::calls::say::SayReport, BackendError> {
        self.find(&id)?;
        self.state()
            .instructed
            .push((id, format!("say:{}", request.text)));
        Ok(crate::calls::say::SayReport {
            spoken: request.text.clone(),
            heard_text: request.text,
            reply: request.wait_for_reply.then(|| "Yes, please.".to_owned()),
            ..Default::default()
        })
    }

    async fn transfer_call(
        &self,
        id: String,
        to: String,
        summary: String,
    ) -> Result<(), BackendError> {
        self.find(&id)?;
        self.state()
            .instructed
            .push((id, format!("transfer:{to}:{summary}")));
        Ok(())
    }
}

fn sample_call(id: &str, status: CallStatus) -> CallView {
    CallView {
        engine: None,
        id: id.into(),
        direction: Direction::OutboundApi,
        from: "+15550100".into(),
        to: "+14155550100".into(),
        call_sid: Some("CA0123".into()),
        status,
        instructions: Some("Book a table for 4".into()),
        greeting: None,
        voice: None,
        language: None,
        max_duration_s: Some(300),
        metadata: None,
        outcome: None,
        end_reason: None,
        error: None,
        created_at: datetime!(2025-01-02 03:04:05 UTC),
        answered_at: None,
        ended_at: None,
        duration_ms: None,
        status_timeline: Vec::new(),
        transcript: Vec::new(),
        stream_sid: None,
        skipped_frames: 0,
        dropped: Default::default(),
        handovers: Vec::new(),
        transfers: Vec::new(),
        record: false,
        recordings: Vec::new(),
        webhook_url: None,
        schedule: Default::default(),
        rollovers: Vec::new(),
        usage: Usage::default(),
        answering: Default::default(),
        outcome_schema: None,
        structured_outcome: None,
        mcp_servers: None,
        mode: Default::default(),
        cost: None,
        max_cost_usd: None,
    }
}

/// A client of the server under test, speaking newline-delimited JSON-RPC.
struct Client {
    /// Lines from the server.
    lines: Lines<BufReader<ReadHalf<DuplexStream>>>,
    /// To the server.
    writer: WriteHalf<DuplexStream>,
    /// The next request id.
    next_id: u64,
}

impl Client {
    /// Starts `server` on a pipe and completes the MCP handshake.
    async fn connect(server: McpServer<FakeBackend>) -> Self {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            if let Ok(running) = server.serve(tokio::io::split(theirs)).await {
                let _ = running.waiting().await;
            }
        });
        let (reader, writer) = tokio::io::split(ours);
        let mut client = Client {
            lines: BufReader::new(reader).lines(),
            writer,
            next_id: 1,
        };
        let initialized = client
            .call(
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1.0"}
                }),
            )
            .await;
        assert!(initialized.get("result").is_some(), "{initialized}");
        client
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        client
    }

    async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .expect("the pipe is open");
    }

    /// Sends a request and returns the whole response (`result` or `error`), skipping notifications.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        loop {
            let line = tokio::time::timeout(ANSWER_TIMEOUT, self.lines.next_line())
                .await
                .expect("the server answers in time")
                .expect("the pipe reads")
                .expect("the server did not close the pipe");
            let message: Value = serde_json::from_str(&line).expect("the server writes JSON");
            if message["id"] == json!(id) {
                return message;
            }
        }
    }

    /// Calls a tool and returns its result (a protocol error fails the test).
    async fn tool(&mut self, name: &str, arguments: Value) -> Value {
        let response = self
            .call("tools/call", json!({"name": name, "arguments": arguments}))
            .await;
        response
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("a tool result, got {response}"))
    }
}

/// The JSON in a tool result's first text content.
fn text_json(result: &Value) -> Value {
    let text = result["content"][0]["text"].as_str().expect("text content");
    serde_json::from_str(text).expect("the text is JSON")
}

#[tokio::test]
async fn initialize_advertises_tools_resources_prompts_and_instructions() {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let server = McpServer::new(FakeBackend::default());
    tokio::spawn(async move {
        if let Ok(running) = server.serve(tokio::io::split(theirs)).await {
            let _ = running.waiting().await;
        }
    });
    let (reader, writer) = tokio::io::split(ours);
    let mut client = Client {
        lines: BufReader::new(reader).lines(),
        writer,
        next_id: 1,
    };

    let response = client
        .call(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;

    let result = &response["result"];
    assert_eq!(result["serverInfo"]["name"], "callbridge");
    for capability in ["tools", "resources", "prompts"] {
        assert!(result["capabilities"].get(capability).is_some(), "{result}");
    }
    assert!(
        result["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("place_call") && i.contains("get_call")),
        "{result}"
    );
}

#[tokio::test]
async fn the_eight_tools_are_listed_with_their_input_schemas() {
    let mut client = Client::connect(McpServer::new(FakeBackend::default())).await;

    let response = client.call("tools/list", json!({})).await;

    let tools = response["result"]["tools"].as_array().expect("a tool list");
    let mut names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "get_call",
            "hang_up",
            "instruct_call",
            "list_calls",
            "place_call",
            "say",
            "send_dtmf",
            "transfer_call"
        ]
    );
    let place_call = tools
        .iter()
        .find(|t| t["name"] == "place_call")
        .expect("place_call is listed");
    let mut required: Vec<&str> = place_call["inputSchema"]["required"]
        .as_array()
        .expect("required fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["instructions", "to"]);
    let description = place_call["description"].as_str().expect("a description");
    for phrase in [
        "E.164",
        "+14155550100",
        "cost money",
        "real people",
        "queued",
        "get_call",
    ] {
        assert!(description.contains(phrase), "{phrase:?} in {description}");
    }
}

#[tokio::test]
async fn a_placed_call_comes_back_as_json_text_and_structured_content() {
    let backend = FakeBackend::default();
    let mut client = Client::connect(McpServer::new(backend.clone())).await;

    let result = client
        .tool(
            "place_call",
            json!({"to": "+14155550100", "instructions": "Book a table for 4", "greeting": "Hello!"}),
        )
        .await;

    assert_eq!(result["isError"], json!(false));
    assert_eq!(result["structuredContent"]["status"], "queued");
    assert_eq!(result["structuredContent"]["id"], "call_placed");
    assert_eq!(text_json(&result), result["structuredContent"]);
    let placed = backend.state().placed.clone();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].to, "+14155550100");
    assert_eq!(placed[0].instructions, "Book a table for 4");
    assert_eq!(placed[0].greeting.as_deref(), Some("Hello!"));
}

#[tokio::test]
async fn a_backend_error_is_a_tool_error_the_model_can_read() {
    let backend = FakeBackend::default();
    backend.state().place_error = Some(BackendError {
        code: "twilio_error".into(),
        message: "Twilio refused: Invalid 'To' Phone Number (Twilio error 21211)".into(),
    });
    let mut client = Client::connect(McpServer::new(backend)).await;

    let result = client
        .tool(
            "place_call",
            json!({"to": "+14155550100", "instructions": "Book a table"}),
        )
        .await;

    assert_eq!(result["isError"], json!(true));
    let text = result["content"][0]["text"].as_str().expect("text content");
    assert!(
        text.contains("Invalid 'To' Phone Number (Twilio error 21211)"),
        "{text}"
    );
    assert!(text.contains("twilio_error"), "{text}");
    assert_eq!(result["structuredContent"]["error"]["code"], "twilio_error");
}

#[tokio::test]
async fn missing_required_arguments_are_a_tool_error_naming_the_field() {
    let backend = FakeBackend::default();
    let mut client = Client::connect(McpServer::new(backend.clone())).await;

    let result = client
        .tool("place_call", json!({"instructions": "no number"}))
        .await;

    assert_eq!(result["isError"], json!(true));
    let text = result["content"][0]["text"].as_str().expect("text content");
    assert!(text.contains("`to`"), "{text}");
    assert!(backend.state().placed.is_empty());
}

#[tokio::test]
async fn get_call_passes_the_wait_on_capped_at_120_seconds() {
    let backend = FakeBackend::with_calls(vec![sample_call("call_a", CallStatus::Ringing)]);
    let mut client = Client::connect(McpServer::new(backend.clone())).await;

    let result = client
        .tool("get_call", json!({"call_id": "call_a", "wait_s": 600}))
        .await;

    assert_eq!(result["structuredContent"]["status"], "ringing");
    assert_eq!(backend.state().gets, [("call_a".to_owned(), Some(120))]);
}

#[tokio::test]
async fn an_unknown_call_is_a_tool_error_saying_not_found() {
    let mut client = Client::connect(McpServer::new(FakeBackend::default())).await;

    let result = client
        .tool("get_call", json!({"call_id": "call_nope"}))
        .await;

    assert_eq!(result["isError"], json!(true));
    assert_eq!(result["structuredContent"]["error"]["code"], "not_found");
}

#[tokio::test]
async fn list_calls_wraps_the_summaries_and_asks_for_20_by_default() {
    let backend = FakeBackend::with_calls(vec![
        sample_call("call_b", CallStatus::Completed),
        sample_call("call_a", CallStatus::Busy),
    ]);
    let mut client = Client::connect(McpServer::new(backend.clone())).await;

    let result = client.tool("list_calls", json!({})).await;

    let ids: Vec<&str> = result["structuredContent"]["calls"]
        .as_array()
        .expect("a calls array")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["call_b", "call_a"]);
    assert_eq!(backend.state().list_limits, [20]);
}

#[tokio::test]
async fn hang_up_returns_the_call() {
    let backend = FakeBackend::with_calls(vec![sample_call("call_a", CallStatus::Ringing)]);
    let mut client = Client::connect(McpServer::new(backend)).await;

    let result = client.tool("hang_up", json!({"call_id": "call_a"})).await;

    assert_eq!(result["structuredContent"]["status"], "canceled");
}

#[tokio::test]
async fn an_instruction_reaches_a_live_call_and_a_finished_one_says_not_live() {
    let backend = FakeBackend::with_calls(vec![
        sample_call("call_live", CallStatus::InProgress),
        sample_call("call_done", CallStatus::Completed),
    ]);
    let mut client = Client::connect(McpServer::new(backend.clone())).await;

    let live = client
        .tool(
            "instruct_call",
            json!({"call_id": "call_live", "text": "Ask about a window seat."}),
        )
        .await;
    let done = client
        .tool(
            "instruct_call",
            json!({"call_id": "call_done", "text": "Too late."}),
        )
        .await;

    assert_eq!(
        live["structuredContent"],
        json!({"ok": true, "call_id": "call_live"})
    );
    assert_eq!(done["isError"], json!(true));
    assert_eq!(done["structuredContent"]["error"]["code"], "not_live");
    assert_eq!(
        backend.state().instructed,
        [(
            "call_live".to_owned(),
            "Ask about a window seat.".to_owned()
        )]
    );
}

#[tokio::test]
async fn each_recent_call_has_a_transcript_resource() {
    let backend = FakeBackend::with_calls(vec![sample_call("call_a", CallStatus::Completed)]);
    let mut client = Client::connect(McpServer::new(backend.clone())).await;

    let response = client.call("resources/list", json!({})).await;

    let resources = response["result"]["resources"]
        .as_array()
        .expect("a resource list");
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0]["uri"], "callbridge://calls/call_a/transcript");
    assert_eq!(resources[0]["mimeType"], "text/plain");
    assert_eq!(backend.state().list_limits, [RESOURCE_LIST_LIMIT]);
}

#[tokio::test]
async fn reading_a_transcript_resource_renders_the_call() {
    let mut call = sample_call("call_a", CallStatus::Completed);
    call.outcome = Some("Booked 4 at 19:30".into());
    call.transcript.push(Turn {
        speaker: crate::calls::Speaker::Caller,
        text: "Bella Roma, how can I help?".into(),
        at: datetime!(2025-01-02 03:04:16 UTC),
        offset_ms: 1_000,
        interrupted: false,
        item_id: None,
    });
    let mut client = Client::connect(McpServer::new(FakeBackend::with_calls(vec![call]))).await;

    let response = client
        .call(
            "resources/read",
            json!({"uri": "callbridge://calls/call_a/transcript"}),
        )
        .await;

    let contents = &response["result"]["contents"][0];
    assert_eq!(contents["uri"], "callbridge://calls/call_a/transcript");
    assert_eq!(contents["mimeType"], "text/plain");
    let text = contents["text"].as_str().expect("text");
    assert!(text.contains("Outcome: Booked 4 at 19:30"), "{text}");
    assert!(
        text.contains("[00:01.0] Caller: Bella Roma, how can I help?"),
        "{text}"
    );
}

#[tokio::test]
async fn reading_the_transcript_of_an_unknown_call_is_resource_not_found() {
    let mut client = Client::connect(McpServer::new(FakeBackend::default())).await;

    let unknown = client
        .call(
            "resources/read",
            json!({"uri": "callbridge://calls/call_nope/transcript"}),
        )
        .await;
    let malformed = client
        .call("resources/read", json!({"uri": "file:///etc/passwd"}))
        .await;

    assert_eq!(unknown["error"]["code"], json!(-32002), "{unknown}");
    assert_eq!(malformed["error"]["code"], json!(-32002), "{malformed}");
}

#[tokio::test]
async fn the_transcript_template_is_listed() {
    let mut client = Client::connect(McpServer::new(FakeBackend::default())).await;

    let response = client.call("resources/templates/list", json!({})).await;

    assert_eq!(
        response["result"]["resourceTemplates"][0]["uriTemplate"],
        "callbridge://calls/{call_id}/transcript"
    );
}

#[tokio::test]
async fn the_reservation_prompt_takes_five_required_arguments() {
    let mut client = Client::connect(McpServer::new(FakeBackend::default())).await;

    let response = client.call("prompts/list", json!({})).await;

    let prompt = &response["result"]["prompts"][0];
    assert_eq!(prompt["name"], "make-restaurant-reservation");
    let mut arguments: Vec<(&str, bool)> = prompt["arguments"]
        .as_array()
        .expect("arguments")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default(),
                a["required"] == json!(true),
            )
        })
        .collect();
    arguments.sort_unstable();
    assert_eq!(
        arguments,
        [
            ("date", true),
            ("name", true),
            ("party_size", true),
            ("restaurant_number", true),
            ("time", true)
        ]
    );
}

#[tokio::test]
async fn the_reservation_prompt_is_a_user_message_asking_for_place_call() {
    let mut client = Client::connect(McpServer::new(FakeBackend::default())).await;

    let response = client
        .call(
            "prompts/get",
            json!({"name": "make-restaurant-reservation", "arguments": {
                "restaurant_number": "+14155550100", "party_size": "4", "date": "Saturday",
                "time": "19:30", "name": "Rivera"
            }}),
        )
        .await;

    let message = &response["result"]["messages"][0];
    assert_eq!(message["role"], "user");
    let text = message["content"]["text"].as_str().expect("text");
    assert!(text.contains("place_call"), "{text}");
    assert!(
        text.contains("for 4 people on Saturday at 19:30, under the name Rivera"),
        "{text}"
    );
}

#[tokio::test]
async fn a_per_request_server_without_a_backend_fails_with_an_internal_error() {
    let mut client = Client::connect(McpServer::<FakeBackend>::per_request()).await;

    let response = client
        .call("tools/call", json!({"name": "list_calls", "arguments": {}}))
        .await;

    assert_eq!(response["error"]["code"], json!(-32603), "{response}");
}
