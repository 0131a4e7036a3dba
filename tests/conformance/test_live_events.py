"""Conformance of the relay's GPT-Live client events with the official `openai` Python SDK (`openai.types.live`).

The integration tests in tests/integration/live.rs record every event the relay sent to the fake GPT-Live server and
write them, one JSON object per line (`FakeLive::dump_for_conformance`), to `$LIVE_EVENTS_DIR/*.jsonl` (the
Makefile's choice), else to `target/conformance/live-client-events.jsonl`.

Each line must validate, in pydantic strict mode, against the SDK's client event union
`openai.types.live.ClientEvent`, and carry no key the SDK does not declare, at any depth (the same check as
test_realtime_events.py: the SDK's models accept unknown keys silently, so every key is compared with the model's
fields). A missing file is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest
from openai.types.live import ClientEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

from test_realtime_events import _unexpected_keys

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EVENTS_PATH = "target/conformance/live-client-events.jsonl"

# Client event types the Live scenarios must have produced: the session start, caller audio, the greeting as
# commentary, a tool result for the Responses backend and its continuation, and the close.
REQUIRED_EVENT_TYPES = {
    "session.start",
    "session.input_audio.append",
    "session.commentary.append",
    "response.item.create",
    "response.create",
    "session.close",
}

CLIENT_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClientEvent)


def _client_event_models() -> dict[str, type[BaseModel]]:
    """Maps each Live client event `type` to its SDK model, read from the union itself."""
    union = typing.get_args(ClientEvent)[0]
    models: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        (event_type,) = typing.get_args(model.model_fields["type"].annotation)
        models[event_type] = model
    return models


CLIENT_EVENT_MODELS = _client_event_models()


def client_event_problems(event: Any) -> list[str]:
    """Everything wrong with one Live client event; an empty list means it conforms."""
    if not isinstance(event, dict):
        return [f"not a JSON object: {event!r:.120}"]
    event_type = event.get("type")
    if event_type not in CLIENT_EVENT_MODELS:
        return [f"type {event_type!r} is not a GPT-Live client event (known: {sorted(CLIENT_EVENT_MODELS)})"]
    try:
        validated = CLIENT_EVENT_ADAPTER.validate_python(event, strict=True)
    except ValidationError:
        try:
            TypeAdapter(CLIENT_EVENT_MODELS[event_type]).validate_python(event, strict=True)
        except ValidationError as member_error:
            return [f"{event_type}: {error['loc']}: {error['msg']}" for error in member_error.errors()]
        return [f"{event_type}: rejected by the client event union"]
    if validated.type != event_type:
        return [f"{event_type}: validated as {validated.type}"]
    return [f"{event_type}: unexpected key {path}" for path in _unexpected_keys(validated, event, "$")]


def events_files() -> list[Path]:
    if "LIVE_EVENTS_DIR" in os.environ:
        directory = Path(os.environ["LIVE_EVENTS_DIR"])
        directory = directory if directory.is_absolute() else REPO_ROOT / directory
        files = sorted(directory.glob("*.jsonl"))
        if not files:
            pytest.fail(f"no *.jsonl files in {directory}: run the integration tests first (the Makefile target does)")
        return files
    path = REPO_ROOT / DEFAULT_EVENTS_PATH
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run the integration tests first (the Makefile target does)")
    return [path]


def load_events() -> list[tuple[str, Any]]:
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


def test_the_recorded_live_events_exist_and_are_not_empty():
    assert load_events()


def test_every_recorded_live_client_event_conforms_to_the_sdk_union_with_no_unexpected_keys():
    problems = [f"{where}: {problem}" for where, event in load_events() for problem in client_event_problems(event)]
    assert not problems, "\n".join(problems[:50])


def test_the_recorded_live_events_include_every_event_type_a_call_needs():
    seen = {event.get("type") for _, event in load_events() if isinstance(event, dict)}
    missing = REQUIRED_EVENT_TYPES - seen
    assert not missing, f"the relay never sent: {sorted(missing)}"


# --- the validator itself ---------------------------------------------------------------------------------------

GOOD_EVENTS = [
    {
        "type": "session.start",
        "session": {
            "model": "gpt-live-1",
            "instructions": "You book tables.",
            "audio": {"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": "marin"}},
            "delegation": {
                "type": "responses",
                "responses": {
                    "model": "gpt-5.6-luna",
                    "tools": [{"type": "function", "name": "end_call", "description": "End.", "parameters": {}}],
                    "tool_choice": "auto",
                },
            },
        },
    },
    {"type": "session.input_audio.append", "audio": "//8="},
    {"type": "session.commentary.append", "content": "Greet the caller.", "delegation_id": None},
    {"type": "response.item.create", "item": {"type": "function_call_output", "call_id": "c1", "output": "{}"}},
    {"type": "session.close"},
]


@pytest.mark.parametrize("event", GOOD_EVENTS, ids=lambda e: e["type"])
def test_the_validator_accepts_a_well_formed_live_client_event(event):
    assert client_event_problems(event) == []


def test_the_validator_rejects_a_realtime_event_name():
    assert client_event_problems({"type": "input_audio_buffer.append", "audio": "//8="})


def test_the_validator_rejects_an_extra_key_inside_the_session():
    event = json.loads(json.dumps(GOOD_EVENTS[0]))
    event["session"]["audio"]["format"]["channels"] = 1
    assert any("channels" in problem for problem in client_event_problems(event))


def test_the_validator_rejects_an_unknown_audio_format():
    event = json.loads(json.dumps(GOOD_EVENTS[0]))
    event["session"]["audio"]["format"] = {"type": "audio/x-mulaw", "rate": 8000}
    assert client_event_problems(event)
