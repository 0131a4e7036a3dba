"""`GET /metrics` of the real `callbridge serve`, parsed with the official `prometheus_client` text parser
(`prometheus_client.parser.text_string_to_metric_families`): refused without the bearer key, and its counters and
histograms move as calls did.

The calls are played by `callbridge simulate` (signed webhook, TwiML, media stream). No Realtime server listens, so
each call ends `error:openai_unavailable` right after its stream starts: what the metrics must show is two inbound
calls ended that way, two webhooks answered with TwiML, and no call live.
"""

import os
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callbridge_process import REPO_ROOT, free_port, resolve_binary, serving

API_KEY = "metrics-test-key-0123456789abcdef"
AUTH_TOKEN = "metrics-test-auth-token"
SIMULATE_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = resolve_binary()
    workdir = tmp_path_factory.mktemp("callbridge-metrics")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PORT": str(port),
        "CALLBRIDGE_HOST": "127.0.0.1",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "CALLBRIDGE_API_KEY": API_KEY,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime",  # nothing listens: every call ends openai_unavailable
        "RUST_LOG": "info",
    }
    with serving(binary, workdir, env, port) as running:
        running.binary = binary
        running.env = env
        yield running


def scrape(server, key=API_KEY):
    """(status, text) of `GET /metrics` with the bearer `key` (none when `None`)."""
    request = urllib.request.Request(server.base_url + "/metrics")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode(errors="replace")


def families(text):
    """The parsed metric families, by name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(parsed, family, sample_name, **labels):
    """The value of `sample_name` with exactly `labels` in `family`, 0 when absent."""
    if family not in parsed:
        return 0.0
    for sample in parsed[family].samples:
        if sample.name == sample_name and sample.labels == labels:
            return sample.value
    return 0.0


def simulate_call(server):
    """Plays one call against the server with `callbridge simulate`; returns its exit code."""
    result = subprocess.run(
        [
            str(server.binary),
            "simulate",
            "--audio",
            str(REPO_ROOT / "tests" / "fixtures" / "caller-hello.ulaw"),
            "--server",
            server.base_url,
            "--max-duration",
            "20",
        ],
        env=server.env,
        cwd=server.env["HOME"],  # no stray .env or callbridge.toml
        capture_output=True,
        timeout=SIMULATE_TIMEOUT_S,
    )
    return result


def test_metrics_are_refused_without_the_bearer_key(server):
    assert scrape(server, key=None)[0] == 401
    assert scrape(server, key="not-the-key")[0] == 401


def test_counters_and_histograms_move_as_the_calls_did(server):
    status, before_text = scrape(server)
    assert status == 200, before_text
    before = families(before_text)
    ended = {"direction": "inbound", "end_reason": "error:openai_unavailable"}

    runs = [simulate_call(server) for _ in range(2)]

    for run in runs:
        assert run.returncode == 1, f"{run.stdout.decode()}\n{run.stderr.decode()}\n{server.log_tail()}"
    after = families(scrape(server)[1])
    assert value(before, "callbridge_calls", "callbridge_calls_total", **ended) == 0
    assert value(after, "callbridge_calls", "callbridge_calls_total", **ended) == 2
    assert after["callbridge_calls"].type == "counter"  # the counter family, read from its _total samples
    webhook = after["callbridge_webhook_twiml_seconds"]
    assert webhook.type == "histogram"
    count = value(after, "callbridge_webhook_twiml_seconds", "callbridge_webhook_twiml_seconds_count", route="incoming-call")
    infinite = value(
        after, "callbridge_webhook_twiml_seconds", "callbridge_webhook_twiml_seconds_bucket", route="incoming-call", le="+Inf"
    )
    assert count == 2 and infinite == 2
    assert value(after, "callbridge_calls_live", "callbridge_calls_live") == 0
    assert after["callbridge_calls_live"].type == "gauge"
