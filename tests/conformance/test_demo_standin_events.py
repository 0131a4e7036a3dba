"""Conformance of `callbridge demo`'s local stand-in for OpenAI Realtime with the official `openai` Python SDK (3.x).

The stand-in (src/demo/session.rs) is not OpenAI, but it must speak the GA server events the relay reads as OpenAI
does. The Rust unit test `a_whole_scripted_session_is_written_for_the_sdk_conformance_check` plays a whole scripted
session (greeting, the caller's turn, an answer cut by a barge-in, a late cancel, truncates, the goodbye with
`end_call`) and writes every server event the stand-in sent to `target/conformance/demo-standin-server-events.jsonl`
(`STANDIN_EVENTS_JSONL` overrides the path). Each line must validate, in pydantic strict mode, against the SDK's
server event union `openai.types.realtime.RealtimeServerEvent` and carry no key the SDK does not declare, at any
depth. A missing file is a failure: `make test` runs the Rust tests first.
"""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

from test_realtime_events import _unexpected_keys

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = "target/conformance/demo-standin-server-events.jsonl"

SERVER_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)


def _server_event_models() -> dict[str, type[BaseModel]]:
    """Maps each GA server event `type` to its SDK model, read from the union itself."""
    union = typing.get_args(RealtimeServerEvent)[0]
    return {typing.get_args(model.model_fields["type"].annotation)[0]: model for model in typing.get_args(union)}


SERVER_EVENT_MODELS = _server_event_models()


def server_event_problems(event: Any) -> list[str]:
    """Everything wrong with one server event; an empty list means it conforms."""
    if not isinstance(event, dict):
        return [f"not a JSON object: {event!r:.120}"]
    event_type = event.get("type")
    model = SERVER_EVENT_MODELS.get(event_type)
    if model is None:
        return [f"type {event_type!r} is not a GA server event"]
    try:
        validated = TypeAdapter(model).validate_python(event, strict=True)
    except ValidationError as error:
        return [f"{event_type}: {e['loc']}: {e['msg']}" for e in error.errors()]
    return [f"{event_type}: unexpected key {path}" for path in _unexpected_keys(validated, event, "$")]


def load_events() -> list[tuple[int, Any]]:
    raw = os.environ.get("STANDIN_EVENTS_JSONL", DEFAULT_PATH)
    path = Path(raw) if Path(raw).is_absolute() else REPO_ROOT / raw
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run the Rust tests first (make test does)")
    return [(n, json.loads(line)) for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if line.strip()]


def test_every_server_event_of_the_stand_in_conforms_to_the_sdk_with_no_unexpected_keys():
    events = load_events()
    assert len(events) > 20, events
    problems = [f"line {n}: {p}" for n, event in events for p in server_event_problems(event)]
    assert not problems, "\n".join(problems[:50])


def test_the_validator_refuses_a_beta_event_name_and_an_unknown_key():
    beta = {"type": "response.audio.delta", "event_id": "e", "response_id": "r", "item_id": "i",
            "output_index": 0, "content_index": 0, "delta": ""}
    extra = dict(beta, type="response.output_audio.delta", surprise=1)
    assert server_event_problems(beta)
    assert any("surprise" in p for p in server_event_problems(extra))
