"""Conformance of the relay's OpenAI Realtime client events with the official `openai` Python SDK (3.x).

The integration tests record every event the relay sent to the fake Realtime server and write them, one JSON
object per line (`FakeRealtime::dump_for_conformance` in tests/integration/fake_realtime.rs). Where they are read
from, first match wins (relative paths are taken from the repository root):

* `REALTIME_EVENTS_JSONL`: one file;
* `REALTIME_EVENTS_DIR`: every `*.jsonl` file in that directory (the Makefile's choice: nextest runs each test in its
  own process, and each scenario writes its own file);
* otherwise the file `target/conformance/realtime-client-events.jsonl`.

Each line must:

1. validate, in pydantic strict mode, against the SDK's client event union
   `openai.types.realtime.RealtimeClientEvent` (GA event names and shapes; beta names such as
   `response.audio.delta` are not client events and fail);
2. carry no key the SDK does not declare, at any depth. The SDK's models accept unknown keys silently
   (`extra="allow"`), so this is checked here: for every nested SDK model, every key of the input object must be
   one of the model's fields (by name or alias).

The events must exist: the Makefile target runs the integration tests that write them first. A missing file or
directory, or a directory without `*.jsonl` files, is a failure, not a skip.

Run: `pip install -r tests/conformance/requirements.txt && pytest tests/conformance/test_realtime_events.py`.
"""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent
from openai.types.realtime.realtime_tools_config_union import Mcp as SdkMcpTool
from pydantic import BaseModel, TypeAdapter, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EVENTS_PATH = "target/conformance/realtime-client-events.jsonl"

# Client event types a full call through the relay must have produced (inbound call with speech, barge-in,
# a tool call answered with its output, and the responses around it).
REQUIRED_EVENT_TYPES = {
    "session.update",
    "input_audio_buffer.append",
    "conversation.item.truncate",
    "response.cancel",
    "conversation.item.create",
    "response.create",
}

CLIENT_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)


def _client_event_models() -> dict[str, type[BaseModel]]:
    """Maps each GA client event `type` to its SDK model, read from the union itself."""
    union = typing.get_args(RealtimeClientEvent)[0]  # Annotated[Union[...], PropertyInfo] -> Union[...]
    models: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        (event_type,) = typing.get_args(model.model_fields["type"].annotation)
        models[event_type] = model
    return models


CLIENT_EVENT_MODELS = _client_event_models()


def _unexpected_keys(validated: Any, raw: Any, path: str) -> list[str]:
    """Paths of keys in `raw` that the SDK model `validated` (built from `raw`) does not declare, recursively."""
    if isinstance(validated, BaseModel) and isinstance(raw, dict):
        declared: dict[str, str] = {}
        for name, field in type(validated).model_fields.items():
            declared[name] = name
            if field.alias:
                declared[field.alias] = name
        problems: list[str] = []
        for key, value in raw.items():
            if key not in declared:
                problems.append(f"{path}.{key}")
            else:
                problems += _unexpected_keys(getattr(validated, declared[key]), value, f"{path}.{key}")
        # Belt and braces: pydantic parks undeclared keys in model_extra.
        problems += [f"{path}.{key}" for key in (validated.model_extra or {}) if f"{path}.{key}" not in problems]
        return problems
    if isinstance(validated, (list, tuple)) and isinstance(raw, list):
        return [
            problem
            for index, (item, raw_item) in enumerate(zip(validated, raw))
            for problem in _unexpected_keys(item, raw_item, f"{path}[{index}]")
        ]
    if isinstance(validated, dict) and isinstance(raw, dict):
        # A mapping field (e.g. metadata) whose values may themselves be SDK models.
        return [
            problem
            for key, raw_value in raw.items()
            for problem in _unexpected_keys(validated.get(key), raw_value, f"{path}.{key}")
        ]
    return []


def client_event_problems(event: Any) -> list[str]:
    """Everything wrong with one client event, as readable messages; an empty list means it conforms."""
    if not isinstance(event, dict):
        return [f"not a JSON object: {event!r:.120}"]
    event_type = event.get("type")
    if event_type not in CLIENT_EVENT_MODELS:
        return [f"type {event_type!r} is not a GA client event (known: {sorted(CLIENT_EVENT_MODELS)})"]
    try:
        validated = CLIENT_EVENT_ADAPTER.validate_python(event, strict=True)
    except ValidationError:
        # The union's error lists every member; the matching member's error is the readable one.
        try:
            TypeAdapter(CLIENT_EVENT_MODELS[event_type]).validate_python(event, strict=True)
        except ValidationError as member_error:
            return [f"{event_type}: {error['loc']}: {error['msg']}" for error in member_error.errors()]
        return [f"{event_type}: rejected by the client event union"]
    if validated.type != event_type:
        return [f"{event_type}: validated as {validated.type}"]
    return [f"{event_type}: unexpected key {path}" for path in _unexpected_keys(validated, event, "$")]


def events_files() -> list[Path]:
    """The JSON-lines files to check (see the module docstring); fails the test when there are none."""

    def from_root(raw: str) -> Path:
        path = Path(raw)
        return path if path.is_absolute() else REPO_ROOT / path

    if "REALTIME_EVENTS_JSONL" in os.environ:
        files = [from_root(os.environ["REALTIME_EVENTS_JSONL"])]
    elif "REALTIME_EVENTS_DIR" in os.environ:
        directory = from_root(os.environ["REALTIME_EVENTS_DIR"])
        files = sorted(directory.glob("*.jsonl"))
        if not files:
            pytest.fail(f"no *.jsonl files in {directory}: run the integration tests first (the Makefile target does)")
    else:
        files = [REPO_ROOT / DEFAULT_EVENTS_PATH]
    for path in files:
        if not path.is_file():
            pytest.fail(f"{path} does not exist: run the integration tests first (the Makefile target does)")
    return files


def load_events() -> list[tuple[str, Any]]:
    """("file:line", parsed JSON or the raw line when it is not JSON) for every non-blank line of every file."""
    events = []
    for path in events_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    event = line
                events.append((f"{path.name}:{number}", event))
    return events


# --- the relay's recorded events -------------------------------------------------------------------------------


def test_the_recorded_events_exist_and_are_not_empty():
    assert load_events(), f"{[str(path) for path in events_files()]} hold no events"


def test_every_recorded_client_event_conforms_to_the_sdk_union_with_no_unexpected_keys():
    problems = [f"{where}: {problem}" for where, event in load_events() for problem in client_event_problems(event)]
    assert not problems, "\n".join(problems[:50])


def test_the_recorded_events_include_every_event_type_a_call_needs():
    seen = {event.get("type") for _, event in load_events() if isinstance(event, dict)}
    missing = REQUIRED_EVENT_TYPES - seen
    assert not missing, f"the relay never sent: {sorted(missing)}"


def test_the_recorded_sessions_carry_remote_mcp_servers_that_validate_as_the_sdks_mcp_tool():
    """The outcome and voice-MCP scenarios (tests/integration/outcomes.rs) configure remote MCP servers: their
    session.update must carry them as `type: "mcp"` tool entries that the SDK parses as its `Mcp` tool model."""
    entries = []
    for where, event in load_events():
        if isinstance(event, dict) and event.get("type") == "session.update":
            for tool in event["session"].get("tools") or []:
                if isinstance(tool, dict) and tool.get("type") == "mcp":
                    entries.append((where, tool))
    if not entries and "REALTIME_EVENTS_JSONL" in os.environ:
        pytest.skip("a single events file without the remote MCP scenario")
    assert entries, "no recorded session.update carries a remote MCP server (run tests/integration/outcomes.rs)"
    for where, tool in entries:
        validated = TypeAdapter(SdkMcpTool).validate_python(tool, strict=True)
        assert validated.server_label and validated.server_url, where
        assert _unexpected_keys(validated, tool, "$") == [], where
        assert validated.require_approval is not None, where


# --- the validator itself ---------------------------------------------------------------------------------------

GOOD_EVENTS = [
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime-2.1",
            "output_modalities": ["audio"],
            "instructions": "You book tables.",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "noise_reduction": {"type": "near_field"},
                    "transcription": {"model": "gpt-4o-mini-transcribe"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 500,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0},
            },
            "tools": [
                {
                    "type": "function",
                    "name": "end_call",
                    "description": "Hang up.",
                    "parameters": {"type": "object", "properties": {}},
                },
                {
                    "type": "mcp",
                    "server_label": "calendar",
                    "server_url": "https://mcp.example.com/calendar",
                    "allowed_tools": ["find_slot"],
                    "headers": {"Authorization": "Bearer x"},
                    "require_approval": {"always": {"tool_names": ["delete_event"]}},
                },
            ],
            "tool_choice": "auto",
        },
    },
    {"type": "input_audio_buffer.append", "audio": "//////8="},
    {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 1200},
    {"type": "response.cancel"},
    {"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "call_1", "output": "{}"}},
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "The caller pressed 3"}],
        },
    },
    {"type": "response.create"},
    {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "For when?"}]},
    },
]

# Every `session.truncation` the relay can send (src/realtime/truncation.rs; CALLBRIDGE_TRUNCATION and its ratio and
# token limit settings).
TRUNCATIONS = [
    "auto",
    "disabled",
    {"type": "retention_ratio", "retention_ratio": 0.8},
    {"type": "retention_ratio", "retention_ratio": 0.8, "token_limits": {"post_instructions": 16000}},
]


@pytest.mark.parametrize("event", GOOD_EVENTS, ids=lambda e: e["type"])
def test_the_validator_accepts_a_well_formed_ga_client_event(event):
    assert client_event_problems(event) == []


def test_the_validator_rejects_an_unknown_key_in_a_remote_mcp_tool_entry():
    event = {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "tools": [{"type": "mcp", "server_label": "calendar", "server_url": "https://x.example", "default": True}],
        },
    }

    problems = client_event_problems(event)

    assert problems == ["session.update: unexpected key $.session.tools[0].default"]


@pytest.mark.parametrize("truncation", TRUNCATIONS, ids=lambda t: t if isinstance(t, str) else json.dumps(t))
def test_every_truncation_the_relay_can_send_conforms_to_the_sdk_session(truncation):
    event = {"type": "session.update", "session": {"type": "realtime", "truncation": truncation}}

    assert client_event_problems(event) == []


def test_the_validator_rejects_a_truncation_the_sdk_does_not_know():
    for truncation in ["sometimes", {"type": "retention_ratio", "retention_ratio": "0.8"}]:
        event = {"type": "session.update", "session": {"type": "realtime", "truncation": truncation}}

        assert client_event_problems(event), truncation


def test_every_recorded_full_session_update_carries_the_truncation_setting():
    full_updates = [
        event["session"]
        for _, event in load_events()
        if isinstance(event, dict) and event.get("type") == "session.update" and "instructions" in event.get("session", {})
    ]

    assert full_updates, "no full session.update recorded"
    assert all("truncation" in session for session in full_updates), [s.get("truncation") for s in full_updates]


def test_the_validator_rejects_an_extra_top_level_key():
    event = {"type": "response.cancel", "reason": "barge-in"}

    problems = client_event_problems(event)

    assert problems == ["response.cancel: unexpected key $.reason"]


def test_the_validator_rejects_an_extra_key_deep_inside_the_session():
    event = {
        "type": "session.update",
        "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu", "rate": 8000}}}},
    }

    problems = client_event_problems(event)

    assert problems == ["session.update: unexpected key $.session.audio.input.format.rate"]


def test_the_validator_rejects_a_beta_session_key():
    event = {"type": "session.update", "session": {"type": "realtime", "temperature": 0.8}}

    problems = client_event_problems(event)

    assert problems == ["session.update: unexpected key $.session.temperature"]


def test_the_validator_rejects_a_beta_event_name():
    event = {"type": "response.audio.delta", "delta": "AAAA"}

    problems = client_event_problems(event)

    assert len(problems) == 1 and "not a GA client event" in problems[0]


def test_the_validator_rejects_a_wrong_value_type():
    event = {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": "1200"}

    problems = client_event_problems(event)

    assert len(problems) == 1 and "audio_end_ms" in problems[0]


def test_the_validator_rejects_a_beta_session_without_type():
    event = {"type": "session.update", "session": {"input_audio_format": "g711_ulaw", "voice": "alloy"}}

    problems = client_event_problems(event)

    assert problems and all(problem.startswith("session.update:") for problem in problems)


def test_the_validator_rejects_a_line_that_is_not_a_json_object():
    assert client_event_problems("{not json") == ["not a JSON object: '{not json'"]
