"""Conformance: the official Python MCP client (`mcp` on PyPI) drives callbridge's MCP server on both transports.

* stdio: `stdio_client` runs `callbridge mcp`, which forwards every tool to a running `callbridge serve` through its
  REST API (CALLBRIDGE_URL, CALLBRIDGE_API_KEY);
* Streamable HTTP: `streamable_http_client` talks to `/mcp` on that same server, with `Authorization: Bearer <key>`.

The server places calls through a fake Twilio REST API started here (`POST .../Calls.json` answers 201 with a fresh
CallSid, or Twilio's 400 error 21211 for one rejected number). Status callbacks are then posted to `/call-status` as
Twilio would, signed with the official `twilio` SDK's RequestValidator over PUBLIC_URL, so `get_call(wait_s)` can be
watched returning as the call goes initiated → ringing → in-progress → completed. One scenario runs a whole call:
a second server whose Realtime sessions go to a fake model here (`FakeRealtimeModel`), the media stream played from
here, and an `outcome_schema` the model first breaks, then meets; get_call's structured content carries the outcome.
One test (`say`) answers a relay-mode call and plays a minimal Twilio media stream (`websockets`) against a
minimal stand-in for the OpenAI Realtime API (`FakeRealtime`), so the tool's report comes back for real.
Speech, barge-in and the rest of the relay are the Rust end-to-end tests' job.

Run from the repository root:

    cargo build
    python -m pytest tests/conformance/test_mcp.py -v
"""

import contextlib
import datetime
import http.server
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import asyncio
import base64
import re

import anyio
import httpx2
import websockets
import pytest
from callbridge_process import free_port, resolve_binary, serving
from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from twilio.request_validator import RequestValidator


PUBLIC_URL = "https://example.ngrok.test"
AUTH_TOKEN = "test-auth-token-" + "0123456789abcdef" * 2
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TWILIO_NUMBER = "+15005550006"
API_KEY = "test-api-key-" + secrets.token_hex(16)

GOOD_NUMBER = "+14155552671"
REJECTED_NUMBER = "+14155552672"  # valid E.164; the fake Twilio refuses it with error 21211
BAD_NUMBER = "+1555"  # not a valid phone number

TOOLS = {"place_call", "get_call", "list_calls", "hang_up", "instruct_call", "send_dtmf", "transfer_call", "say"}
REFUSED_DESTINATION = "+33142685300"  # valid E.164, outside CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES
STATUS_STEPS = ["initiated", "ringing", "in-progress", "completed"]

REQUEST_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 10.0
SESSION_TIMEOUT_S = 60.0
WAIT_S = 10
SETTLE_S = 0.5  # lets a get_call reach the server and start waiting before the status changes


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def http_post(url, body, headers):
    """POST `body` (bytes) to `url`; returns (status, headers, body) whatever the status."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def initialize_body():
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw-http", "version": "1.0"},
            },
        }
    ).encode()


MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


# ---------------------------------------------------------------------------------------------------------------------
# A fake Twilio REST API


class FakeTwilio:
    """Answers `POST /2010-04-01/Accounts/{sid}/Calls.json` like Twilio and records every request."""

    def __init__(self):
        self.requests = []  # (path, form as a list of pairs)
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qsl(self.rfile.read(length).decode())
                with fake.lock:
                    fake.requests.append((self.path, form))
                fields = dict(form)
                if self.path.endswith("/Calls.json"):
                    if fields.get("To") == REJECTED_NUMBER:
                        self.reply(
                            400,
                            {
                                "code": 21211,
                                "message": f"The 'To' number {REJECTED_NUMBER} is not a valid phone number.",
                                "more_info": "https://www.twilio.com/docs/errors/21211",
                                "status": 400,
                            },
                        )
                    else:
                        sid = "CA" + secrets.token_hex(16)
                        self.reply(201, {"sid": sid, "status": "queued", "to": fields.get("To")})
                elif "/Calls/CA" in self.path:
                    self.reply(200, {"sid": self.path.rsplit("/", 1)[-1].removesuffix(".json"), "status": "completed"})
                else:
                    self.reply(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def creates_to(self, number):
        """The form of every create-call request to `number`."""
        with self.lock:
            creates = [dict(form) for path, form in self.requests if path.endswith("/Calls.json")]
        return [form for form in creates if form.get("To") == number]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------------------------------
# The server under test


class Server:
    """A running `callbridge serve`, where to reach it, and how to run `callbridge mcp` against it."""

    def __init__(self, process, base_url, workdir, binary):
        self.process = process
        self.base_url = base_url
        self.workdir = workdir
        self.binary = binary

    def log_tail(self, lines=40):
        text = ""
        for name in ("callbridge.log", "callbridge-mcp.log"):
            try:
                tail = (self.workdir / name).read_text(errors="replace").splitlines()[-lines:]
                text += f"--- {name}\n" + "\n".join(tail) + "\n"
            except OSError:
                pass
        return text or "<no log>"


def server_in(workdir, binary):
    """How `serving` makes this file's [`Server`] for a process started in `workdir` from `binary`."""
    return lambda process, base_url, _log_path: Server(process, base_url, workdir, binary)


@pytest.fixture(scope="module")
def twilio():
    fake = FakeTwilio()
    yield fake
    fake.close()


# ---------------------------------------------------------------------------------------------------------------------
# A minimal OpenAI Realtime stand-in


class FakeRealtime:
    """A WebSocket server on 127.0.0.1 that answers `session.update` and, for each `response.create`, speaks the
    words quoted in its instructions as one 100 ms audio delta (GA event names and shapes), then `response.done`."""

    def __init__(self):
        self.events = []  # every client event, parsed
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def handler(ws):
            await ws.send(json.dumps({"type": "session.created", "event_id": "event_1", "session": {}}))
            responses = 0
            async for text in ws:
                event = json.loads(text)
                self.events.append(event)
                if event["type"] == "session.update":
                    await ws.send(json.dumps({"type": "session.updated", "event_id": "event_2", "session": {}}))
                elif event["type"] == "response.create":
                    responses += 1
                    await self.speak(ws, responses, event["response"]["instructions"])

        async def serve():
            self.server = await websockets.serve(handler, "127.0.0.1", 0)
            self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/realtime"
            started.set()
            await self.server.wait_closed()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(serve(),), daemon=True)
        self.thread.start()
        started.wait(REQUEST_TIMEOUT_S)

    async def speak(self, ws, n, instructions):
        words = re.search(r"<<<\n(.*)\n>>>", instructions, re.S).group(1)
        response_id, item_id = f"resp_{n:020d}", f"item_{n:020d}"
        audio = base64.b64encode(b"\xff" * 800).decode()  # 100 ms of μ-law silence
        part = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        for event in [
            {"type": "response.created", "response": {"id": response_id, "object": "realtime.response",
                                                      "status": "in_progress", "output": []}},
            {"type": "response.output_audio.delta", **part, "delta": audio},
            {"type": "response.output_audio_transcript.done", **part, "transcript": words},
            {"type": "response.output_audio.done", **part},
            {"type": "response.done", "response": {"id": response_id, "object": "realtime.response",
                                                   "status": "completed", "output": [], "usage": None}},
        ]:
            await ws.send(json.dumps({"event_id": f"event_{n}", **event}))

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.thread.join(SHUTDOWN_TIMEOUT_S)


@pytest.fixture(scope="module")
def realtime():
    fake = FakeRealtime()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, twilio, realtime):
    binary = resolve_binary()
    workdir = tmp_path_factory.mktemp("callbridge-mcp")  # no stray .env or callbridge.toml; the database goes here
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PORT": str(port),
        "PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_PHONE_NUMBER": TWILIO_NUMBER,
        "TWILIO_API_BASE_URL": twilio.base_url,
        "OPENAI_API_KEY": "sk-test",
        # Only the relay-mode `say` test answers a call and opens a media stream.
        "OPENAI_REALTIME_URL": realtime.url,
        "CALLBRIDGE_API_KEY": API_KEY,
        "CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES": "+1",  # outbound calls go nowhere until allowed
        "CALLBRIDGE_MAX_CONCURRENT_CALLS": "100",  # the fake Twilio never completes most of these calls
        "CALLBRIDGE_DATA_DIR": str(workdir / "data"),
        "RUST_LOG": "info",
    }
    with serving(binary, workdir, env, port, make_server=server_in(workdir, binary)) as running:
        yield running


@contextlib.asynccontextmanager
async def stdio_session(server, api_key=API_KEY):
    """An initialized MCP session with `callbridge mcp` forwarding to `server`."""
    params = StdioServerParameters(
        command=str(server.binary),
        args=["mcp"],
        env={"CALLBRIDGE_URL": server.base_url, "CALLBRIDGE_API_KEY": api_key, "HOME": str(server.workdir)},
        cwd=str(server.workdir),
    )
    with open(server.workdir / "callbridge-mcp.log", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


@contextlib.asynccontextmanager
async def http_session(server, api_key=API_KEY):
    """An initialized MCP session with `server`'s `/mcp`, sending `api_key` as the bearer key."""
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0)) as client:
        async with streamable_http_client(server.base_url + "/mcp", http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


SESSIONS = {"stdio": stdio_session, "http": http_session}


def run_with_session(server, transport, body):
    """Runs `await body(session)` in a fresh MCP session over `transport`, with a deadline."""

    async def main():
        with anyio.fail_after(SESSION_TIMEOUT_S):
            async with SESSIONS[transport](server) as session:
                return await body(session)

    try:
        return anyio.run(main)
    except BaseException:
        print(server.log_tail())
        raise


def text_of(result):
    return "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")


def post_status_callback(server, call_sid, status):
    """Posts a status callback for `call_sid` as Twilio would: signed over PUBLIC_URL/call-status, with a fresh
    I-Twilio-Idempotency-Token."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": status,
        "CallbackSource": "call-progress-events",
        "Direction": "outbound-api",
        "From": TWILIO_NUMBER,
        "To": GOOD_NUMBER,
        "SequenceNumber": str(STATUS_STEPS.index(status)),
        "Timestamp": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
    }
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + "/call-status", form)
    status_code, _, body = http_post(
        server.base_url + "/call-status",
        urllib.parse.urlencode(form).encode(),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        },
    )
    assert status_code in (200, 204), (status_code, body)


# ---------------------------------------------------------------------------------------------------------------------
# Both transports


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_the_eight_tools_are_listed_with_their_input_schemas(server, transport):
    async def body(session):
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in run_with_session(server, transport, body)}

    assert set(tools) == TOOLS
    place_call = tools["place_call"]
    assert set(place_call.input_schema["required"]) == {"to", "instructions"}
    assert {"to", "instructions", "greeting", "voice", "language", "max_duration_s", "metadata"} <= set(
        place_call.input_schema["properties"]
    )
    assert {"outcome_schema", "mcp_servers"} <= set(place_call.input_schema["properties"])
    assert "E.164" in place_call.description
    assert "E.164" in place_call.input_schema["properties"]["to"]["description"]
    assert "cost money" in place_call.description
    assert tools["get_call"].input_schema["required"] == ["call_id"]
    assert tools["get_call"].input_schema["properties"]["wait_s"]["maximum"] == 120
    assert set(tools["instruct_call"].input_schema["required"]) == {"call_id", "text"}
    assert set(tools["send_dtmf"].input_schema["required"]) == {"call_id", "digits"}
    assert set(tools["transfer_call"].input_schema["required"]) == {"call_id", "to", "summary"}
    assert "E.164" in tools["transfer_call"].input_schema["properties"]["to"]["description"]
    say = tools["say"]
    assert set(say.input_schema["required"]) == {"call_id", "text"}
    assert {"wait_for_reply", "timeout_s", "hang_up_after"} <= set(say.input_schema["properties"])
    assert "relay" in say.description
    assert "relay" in place_call.input_schema["properties"]["mode"]["description"]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_transfer_to_a_destination_the_policy_refuses_is_a_tool_error_and_nothing_is_dialed(
    server, twilio, transport
):
    async def body(session):
        return await session.call_tool(
            "transfer_call", {"call_id": "call_unknown", "to": REFUSED_DESTINATION, "summary": "Billing question."}
        )

    result = run_with_session(server, transport, body)

    assert result.is_error is True
    assert result.structured_content["error"]["code"] == "destination_not_allowed", text_of(result)
    assert twilio.creates_to(REFUSED_DESTINATION) == []


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_bad_number_is_a_tool_error_saying_e164_and_nothing_is_dialed(server, twilio, transport):
    async def body(session):
        return await session.call_tool("place_call", {"to": BAD_NUMBER, "instructions": "Say hello."})

    result = run_with_session(server, transport, body)

    assert result.is_error is True
    assert "E.164" in text_of(result), text_of(result)
    assert result.structured_content["error"]["code"] == "invalid_number"
    assert twilio.creates_to(BAD_NUMBER) == []


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_twilio_refusal_is_a_tool_error_keeping_twilios_code_and_message(server, transport):
    async def body(session):
        return await session.call_tool("place_call", {"to": REJECTED_NUMBER, "instructions": "Say hello."})

    result = run_with_session(server, transport, body)

    assert result.is_error is True
    text = text_of(result)
    assert "21211" in text and "is not a valid phone number" in text, text
    assert result.structured_content["error"]["code"] == "twilio_error"


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_bad_call_window_is_a_tool_error_and_a_later_call_is_scheduled_until_hung_up(server, twilio, transport):
    not_before = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()

    async def body(session):
        bad = await session.call_tool(
            "place_call",
            {"to": GOOD_NUMBER, "instructions": "Say hello.", "call_window": "09:00-18:00 Mars/Olympus_Mons"},
        )
        later = await session.call_tool(
            "place_call",
            {
                "to": GOOD_NUMBER,
                "instructions": "Say hello.",
                "not_before": not_before,
                "retry": {"max_attempts": 2, "retry_on": ["busy"]},
            },
        )
        assert later.is_error is not True, text_of(later)
        hung_up = await session.call_tool("hang_up", {"call_id": later.structured_content["id"]})
        return bad, later, hung_up

    bad, later, hung_up = run_with_session(server, transport, body)

    assert bad.is_error is True
    assert bad.structured_content["error"]["code"] == "invalid_request"
    assert "not an IANA time zone" in text_of(bad), text_of(bad)
    call = later.structured_content
    assert call["status"] == "scheduled"
    assert call["retry"] == {"max_attempts": 2, "backoff_s": 300, "retry_on": ["busy"]}
    assert datetime.datetime.fromisoformat(call["next_attempt_at"]) >= datetime.datetime.fromisoformat(not_before)
    assert hung_up.structured_content["status"] == "canceled"
    assert [form for form in twilio.creates_to(GOOD_NUMBER) if form["Url"].endswith(call["id"])] == []


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_say_reaches_the_call_service_and_refuses_a_call_not_in_relay_mode_or_not_answered(server, transport):
    async def body(session):
        plain = await session.call_tool("place_call", {"to": GOOD_NUMBER, "instructions": "Say hello."})
        relay = await session.call_tool(
            "place_call", {"to": GOOD_NUMBER, "instructions": "Context: a booking.", "mode": "relay"}
        )
        on_plain = await session.call_tool(
            "say", {"call_id": plain.structured_content["id"], "text": "Hello.", "wait_for_reply": True}
        )
        on_ringing = await session.call_tool("say", {"call_id": relay.structured_content["id"], "text": "Hello."})
        return plain, relay, on_plain, on_ringing

    plain, relay, on_plain, on_ringing = run_with_session(server, transport, body)

    assert plain.structured_content["mode"] == "autonomous"
    assert relay.structured_content["mode"] == "relay"
    assert on_plain.is_error is True
    assert on_plain.structured_content["error"]["code"] == "invalid_request"
    assert "relay" in text_of(on_plain)
    assert on_ringing.is_error is True
    assert on_ringing.structured_content["error"]["code"] == "not_live"


async def play_twilio_media_stream(url, call_sid, marks_echoed):
    """Twilio's side of a media stream: `connected`, `start`, 20 ms of silence every 20 ms, every mark echoed."""
    stream_sid = "MZ" + secrets.token_hex(16)
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
            "start": {"accountSid": ACCOUNT_SID, "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"],
                      "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                              "channels": 1}},
        }))

        async def pump():
            silence = base64.b64encode(b"\xff" * 160).decode()
            for chunk in range(1, 100_000):
                await ws.send(json.dumps({"event": "media", "streamSid": stream_sid, "sequenceNumber": str(chunk + 1),
                                          "media": {"track": "inbound", "chunk": str(chunk),
                                                    "timestamp": str(chunk * 20), "payload": silence}}))
                await asyncio.sleep(0.02)

        pumping = asyncio.ensure_future(pump())
        try:
            async for text in ws:
                frame = json.loads(text)
                if frame.get("event") == "mark":
                    marks_echoed.append(frame["mark"]["name"])
                    await ws.send(json.dumps({"event": "mark", "streamSid": stream_sid, "mark": frame["mark"]}))
        except websockets.ConnectionClosed:
            pass
        finally:
            pumping.cancel()


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_say_speaks_on_a_relay_mode_call_and_reports_what_was_heard(server, realtime, transport):
    line = "Hi, this is Sam calling to book a table for four."
    marks_echoed = []
    events_before = len(realtime.events)

    async def body(session):
        placed = await session.call_tool(
            "place_call", {"to": GOOD_NUMBER, "instructions": "Context: a booking.", "mode": "relay"}
        )
        call_id, call_sid = placed.structured_content["id"], placed.structured_content["call_sid"]
        url = answer_outbound_call(server, call_id, call_sid)
        stream = asyncio.ensure_future(play_twilio_media_stream(url, call_sid, marks_echoed))
        said = await session.call_tool("say", {"call_id": call_id, "text": line, "hang_up_after": True})
        with anyio.fail_after(REQUEST_TIMEOUT_S):
            await stream  # the final line ends the call: the server closes the stream
        record = await session.call_tool("get_call", {"call_id": call_id})
        return said, record

    said, record = run_with_session(server, transport, body)

    assert said.is_error is not True, text_of(said)
    report = said.structured_content
    assert report["spoken"] == line
    assert report["heard_text"] == line
    assert report["interrupted"] is False
    assert report["call_ended"] is True and report["reply"] is None
    assert marks_echoed, "the line's audio was followed by a mark"
    creates = [e for e in realtime.events[events_before:] if e["type"] == "response.create"]
    assert len(creates) == 1 and line in creates[0]["response"]["instructions"], creates
    assert record.structured_content["end_reason"] == "goodbye"
    assert [(t["speaker"], t["text"]) for t in record.structured_content["transcript"]] == [("assistant", line)]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_placed_call_is_followed_with_get_call_waits_until_completed(server, twilio, transport):
    async def body(session):
        placed = await session.call_tool(
            "place_call",
            {
                "to": GOOD_NUMBER,
                "instructions": "Book a table for 4 at 19:30 under Rivera.",
                "greeting": "Hello, I'd like to book a table.",
                "metadata": {"transport": transport},
            },
        )
        assert placed.is_error is not True, text_of(placed)
        call = placed.structured_content
        seen = []
        for status in STATUS_STEPS:
            waited = {}

            async def wait_for_change():
                waited["result"] = await session.call_tool("get_call", {"call_id": call["id"], "wait_s": WAIT_S})

            async with anyio.create_task_group() as group:
                group.start_soon(wait_for_change)
                await anyio.sleep(SETTLE_S)
                await anyio.to_thread.run_sync(post_status_callback, server, call["call_sid"], status)
            result = waited["result"]
            assert result.is_error is not True, text_of(result)
            seen.append(result.structured_content["status"])
        resources = await session.list_resources()
        transcript = await session.read_resource(f"callbridge://calls/{call['id']}/transcript")
        return call, seen, resources, transcript

    call, seen, resources, transcript = run_with_session(server, transport, body)

    assert call["status"] == "queued"
    assert call["id"].startswith("call_")
    assert call["call_sid"].startswith("CA")
    assert call["metadata"] == {"transport": transport}
    created = [form for form in twilio.creates_to(GOOD_NUMBER) if form["Url"].endswith(call["id"])]
    assert len(created) == 1, twilio.creates_to(GOOD_NUMBER)
    assert created[0]["From"] == TWILIO_NUMBER
    assert seen == STATUS_STEPS
    uris = [str(resource.uri) for resource in resources.resources]
    assert f"callbridge://calls/{call['id']}/transcript" in uris
    assert "Status: completed" in transcript.contents[0].text, transcript.contents[0].text


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_the_reservation_prompt_asks_for_place_call_with_the_booking(server, transport):
    async def body(session):
        prompts = await session.list_prompts()
        prompt = await session.get_prompt(
            "make-restaurant-reservation",
            {
                "restaurant_number": GOOD_NUMBER,
                "party_size": "4",
                "date": "Saturday",
                "time": "19:30",
                "name": "Rivera",
            },
        )
        return prompts, prompt

    prompts, prompt = run_with_session(server, transport, body)

    listed = {p.name: p for p in prompts.prompts}
    assert {a.name for a in listed["make-restaurant-reservation"].arguments} == {
        "restaurant_number",
        "party_size",
        "date",
        "time",
        "name",
    }
    message = prompt.messages[0]
    assert message.role == "user"
    assert "place_call" in message.content.text
    assert "for 4 people on Saturday at 19:30, under the name Rivera" in message.content.text
    assert "get_call" in message.content.text


# ---------------------------------------------------------------------------------------------------------------------
# The bearer key and the Host allowlist


BOOKING_SCHEMA = {
    "type": "object",
    "properties": {
        "booked": {"type": "boolean"},
        "time": {"type": "string"},
        "party_size": {"type": "integer"},
    },
    "required": ["booked", "party_size"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_an_outcome_schema_that_is_not_a_json_schema_is_a_tool_error_and_nothing_is_dialed(server, twilio, transport):
    async def body(session):
        before = len(twilio.creates_to(GOOD_NUMBER))
        result = await session.call_tool(
            "place_call",
            {"to": GOOD_NUMBER, "instructions": "Ask something.", "outcome_schema": {"type": "objekt"}},
        )
        return before, result

    before, result = run_with_session(server, transport, body)

    assert result.is_error is True
    assert result.structured_content["error"]["code"] == "invalid_request"
    assert "outcome_schema is not a valid JSON Schema" in text_of(result), text_of(result)
    assert len(twilio.creates_to(GOOD_NUMBER)) == before


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_an_mcp_server_url_not_in_the_setting_is_a_tool_error_and_nothing_is_dialed(server, twilio, transport):
    async def body(session):
        before = len(twilio.creates_to(GOOD_NUMBER))
        result = await session.call_tool(
            "place_call",
            {"to": GOOD_NUMBER, "instructions": "Ask something.", "mcp_servers": ["https://evil.example.net/mcp"]},
        )
        return before, result

    before, result = run_with_session(server, transport, body)

    assert result.is_error is True
    assert result.structured_content["error"]["code"] == "invalid_request"
    assert "https://evil.example.net/mcp" in text_of(result), text_of(result)
    assert len(twilio.creates_to(GOOD_NUMBER)) == before


# ---------------------------------------------------------------------------------------------------------------------
# A whole call with a structured outcome: a fake OpenAI Realtime model and a media stream played from here


INVALID_OUTCOME = {"booked": True, "time": "19:30", "party_size": "four"}
VALID_OUTCOME = {"booked": True, "time": "19:30", "party_size": 4}


class FakeRealtimeModel:
    """A WebSocket server playing OpenAI's Realtime side of one call (GA event shapes): once caller audio arrives it
    calls end_call with an outcome that breaks the booking schema, on the next response.create with a valid one,
    then says nothing more (an empty farewell response). It records the client events of each connection."""

    def __init__(self):
        self.connections = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "the fake Realtime server did not start"

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.server = await websockets.serve(self._connection, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _connection(self, socket):
        responses = 0
        events = []
        self.connections.append(events)
        await socket.send(json.dumps({"type": "session.created", "event_id": "event_0", "session": {}}))
        async for text in socket:
            event = json.loads(text)
            events.append(event)
            kind = event.get("type")
            if kind == "session.update":
                await socket.send(json.dumps({"type": "session.updated", "event_id": "event_1", "session": {}}))
            elif (kind == "input_audio_buffer.append" and responses == 0) or kind == "response.create":
                responses += 1
                await self._respond(socket, responses)

    async def _respond(self, socket, n):
        response_id = f"resp_{n}"
        await socket.send(json.dumps({"type": "response.created", "event_id": f"event_c{n}",
                                      "response": {"id": response_id, "object": "realtime.response",
                                                   "status": "in_progress", "output": []}}))
        if n <= 2:
            outcome = INVALID_OUTCOME if n == 1 else VALID_OUTCOME
            await socket.send(json.dumps({"type": "response.function_call_arguments.done", "event_id": f"event_f{n}",
                                          "response_id": response_id, "item_id": f"item_{n}", "output_index": 0,
                                          "call_id": f"call_{n}", "name": "end_call",
                                          "arguments": json.dumps({"outcome": outcome})}))
        await socket.send(json.dumps({"type": "response.done", "event_id": f"event_d{n}",
                                      "response": {"id": response_id, "object": "realtime.response",
                                                   "status": "completed", "output": []}}))

    def close(self):
        async def stop():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def model():
    fake = FakeRealtimeModel()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def talking_server(tmp_path_factory, twilio, model):
    """A second `callbridge serve` whose Realtime sessions go to the fake model."""
    binary = resolve_binary()
    workdir = tmp_path_factory.mktemp("callbridge-mcp-outcome")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PORT": str(port),
        "PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_PHONE_NUMBER": TWILIO_NUMBER,
        "TWILIO_API_BASE_URL": twilio.base_url,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{model.port}/v1/realtime",
        "CALLBRIDGE_API_KEY": API_KEY,
        "CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES": "+1",
        "CALLBRIDGE_DATA_DIR": str(workdir / "data"),
        "CALLBRIDGE_FAREWELL_GRACE_MS": "500",
        "RUST_LOG": "info",
    }
    with serving(binary, workdir, env, port, make_server=server_in(workdir, binary)) as running:
        yield running


def answer_outbound_call(server, call_id, call_sid):
    """Twilio's webhook when the callee answers, signed over PUBLIC_URL; returns the stream URL on this server."""
    path = f"/outbound-call/{call_id}"
    form = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid, "CallStatus": "in-progress", "Direction": "outbound-api",
            "From": TWILIO_NUMBER, "To": GOOD_NUMBER}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + path, form)
    status, _, body = http_post(
        server.base_url + path,
        urllib.parse.urlencode(form).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    assert status == 200, (status, body)
    stream = re.search(r'<Stream url="wss://[^/"]+(/media-stream/[^"]+)"', body.decode())
    assert stream, body
    return server.base_url.replace("http://", "ws://") + stream.group(1)


async def play_media_stream(url, call_sid):
    """Plays Twilio's side of the media stream: start, silence every 20 ms, marks echoed; returns when the server
    closes the stream."""
    stream_sid = "MZ" + secrets.token_hex(16)
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await socket.send(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
            "start": {"accountSid": ACCOUNT_SID, "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"],
                      "customParameters": {},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
        }))
        silence = base64.b64encode(b"\xff" * 160).decode()

        async def send_audio():
            for chunk in range(1, 1500):
                await socket.send(json.dumps({
                    "event": "media", "sequenceNumber": str(chunk + 1), "streamSid": stream_sid,
                    "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                              "payload": silence},
                }))
                await asyncio.sleep(0.02)

        sender = asyncio.ensure_future(send_audio())
        try:
            async for text in socket:
                message = json.loads(text)
                if message.get("event") == "mark":
                    await socket.send(json.dumps({"event": "mark", "streamSid": stream_sid, "mark": message["mark"]}))
        except websockets.ConnectionClosed:
            pass
        finally:
            sender.cancel()


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_call_whose_model_corrects_its_outcome_returns_it_as_structured_content(talking_server, model, transport):
    async def body(session):
        placed = await session.call_tool(
            "place_call",
            {"to": GOOD_NUMBER, "instructions": "Book a table for 4 at 19:30.", "outcome_schema": BOOKING_SCHEMA},
        )
        assert placed.is_error is not True, text_of(placed)
        call = placed.structured_content
        url = await anyio.to_thread.run_sync(answer_outbound_call, talking_server, call["id"], call["call_sid"])
        await play_media_stream(url, call["call_sid"])
        await anyio.to_thread.run_sync(post_status_callback, talking_server, call["call_sid"], "completed")
        return await session.call_tool("get_call", {"call_id": call["id"], "wait_s": WAIT_S})

    got = run_with_session(talking_server, transport, body)

    assert got.is_error is not True, text_of(got)
    assert got.structured_content["structured_outcome"] == VALID_OUTCOME
    assert got.structured_content["end_reason"] == "goodbye"
    assert got.structured_content["outcome_schema"] == BOOKING_SCHEMA
    assert json.loads(text_of(got))["structured_outcome"] == VALID_OUTCOME  # the text content, for text-only clients
    outputs = [
        json.loads(event["item"]["output"])
        for event in model.connections[-1]
        if event.get("type") == "conversation.item.create" and event["item"]["type"] == "function_call_output"
    ]
    assert [output["ok"] for output in outputs] == [False, True], outputs
    assert any(error.startswith("/party_size") for error in outputs[0]["errors"]), outputs[0]


def test_http_without_a_key_is_refused_with_401(server):
    status, headers, body = http_post(server.base_url + "/mcp", initialize_body(), MCP_HEADERS)

    assert status == 401, body
    assert headers.get("WWW-Authenticate", "").lower().startswith("bearer")
    assert json.loads(body)["error"]["code"] == "unauthorized"


def test_http_with_a_wrong_key_is_refused_with_401(server):
    headers = dict(MCP_HEADERS, Authorization="Bearer wrong-" + API_KEY)

    status, _, body = http_post(server.base_url + "/mcp", initialize_body(), headers)

    assert status == 401, body


def test_the_official_client_cannot_open_a_session_with_a_wrong_key(server):
    async def main():
        with anyio.fail_after(SESSION_TIMEOUT_S):
            async with http_session(server, api_key="wrong-key"):
                pass

    # The client reports the 401 as an MCPError ("Server returned an error response"), inside its task groups.
    with pytest.raises(BaseExceptionGroup) as refused:
        anyio.run(main)

    assert refused.group_contains(MCPError), repr(refused.value)
    assert not refused.group_contains(TimeoutError), repr(refused.value)


def test_http_with_the_right_key_answers_initialize(server):
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {API_KEY}")

    status, _, body = http_post(server.base_url + "/mcp", initialize_body(), headers)

    assert status == 200, body
    assert b'"serverInfo"' in body and b"callbridge" in body


def test_http_for_another_host_is_refused_with_403(server):
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {API_KEY}", Host="attacker.example")

    status, _, body = http_post(server.base_url + "/mcp", initialize_body(), headers)

    assert status == 403, body


def test_http_for_the_public_url_host_is_served(server):
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {API_KEY}", Host=urllib.parse.urlsplit(PUBLIC_URL).hostname)

    status, _, body = http_post(server.base_url + "/mcp", initialize_body(), headers)

    assert status == 200, body


def test_stdio_with_a_wrong_key_answers_tool_errors_naming_the_key(server):
    async def main():
        with anyio.fail_after(SESSION_TIMEOUT_S):
            async with stdio_session(server, api_key="wrong-key") as session:
                return await session.call_tool("list_calls", {})

    result = anyio.run(main)

    assert result.is_error is True
    assert "CALLBRIDGE_API_KEY" in text_of(result), text_of(result)


# ---------------------------------------------------------------------------------------------------------------------
# `callbridge mcp config`: what it prints connects the official client, with the key from the settings


def mcp_config(server, *flags):
    """Runs `callbridge mcp config FLAGS` as a user would, the key only in the settings (here the environment)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(server.workdir),
        "CALLBRIDGE_URL": server.base_url,
        "CALLBRIDGE_API_KEY": API_KEY,
    }
    result = subprocess.run(
        [str(server.binary), "mcp", "config", *flags],
        cwd=server.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=REQUEST_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_claude_desktop_block_from_mcp_config_starts_a_stdio_server_that_reaches_the_running_one(server):
    entry = json.loads(mcp_config(server, "--claude-desktop"))["mcpServers"]["callbridge"]
    params = StdioServerParameters(
        command=entry["command"],
        args=entry["args"],
        env={**entry["env"], "HOME": str(server.workdir)},
        cwd=str(server.workdir),
    )

    async def main():
        with anyio.fail_after(SESSION_TIMEOUT_S):
            with open(server.workdir / "callbridge-mcp.log", "a") as errlog:
                async with stdio_client(params, errlog=errlog) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        return await session.call_tool("list_calls", {})

    result = anyio.run(main)

    assert result.is_error is not True, text_of(result)
    assert "CALLBRIDGE_API_KEY" not in text_of(result)


def test_the_claude_code_command_from_mcp_config_opens_an_http_session_with_the_key(server):
    import shlex

    words = shlex.split(mcp_config(server, "--claude-code"))
    assert words[:6] == ["claude", "mcp", "add", "--transport", "http", "callbridge"]
    endpoint = words[6]
    header_name, _, header_value = words[words.index("--header") + 1].partition(": ")

    async def main():
        with anyio.fail_after(SESSION_TIMEOUT_S):
            headers = {header_name: header_value}
            async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as client:
                async with streamable_http_client(endpoint, http_client=client) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        return (await session.list_tools()).tools

    tools = anyio.run(main)

    assert endpoint == server.base_url + "/mcp"
    assert {tool.name for tool in tools} == TOOLS
