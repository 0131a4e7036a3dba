"""Conformance: callbridge's signed webhooks, received by a test server and verified with the official Standard
Webhooks package (`standardwebhooks` on PyPI, the reference library of https://www.standardwebhooks.com/).

The real binary (`CALLBRIDGE_BIN`, default target/debug/callbridge) places calls through the fake Twilio REST API of
test_mcp.py with a `webhook_url` pointing at a receiver started here on loopback; status callbacks and answering
machine verdicts are posted as Twilio would (signed with the official `twilio` SDK). The receiver records every
delivery (headers, exact body bytes, arrival time) and answers as each test scripts it.

* every event (`call.status_changed`, `call.answered_by`, `call.completed`) verifies with `Webhook(secret).verify`,
  and `call.completed` carries exactly what `GET /api/calls/{id}` returns;
* a receiver that answers 500 twice then 200 gets the same event three times, spaced as the documented schedule says
  (`CALLBRIDGE_WEBHOOK_RETRY_BASE_MS`, then 5 times longer), checked in ratio, not to the millisecond;
* a restart of the server between two attempts loses nothing: the same webhook-id and body arrive from the new
  process;
* a tampered body, a stale or future timestamp, or a signature made with another secret is rejected by the verifier;
* a plain-http webhook_url to a non-loopback host is refused when the call is placed, and check-config refuses a
  malformed secret and says how to make one.
"""

import base64
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import http.server

import pytest
from callbridge_process import free_port, resolve_binary, wait_until_healthy
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from twilio.request_validator import RequestValidator

from test_mcp import FakeTwilio

PUBLIC_URL = "https://example.ngrok.test"
AUTH_TOKEN = "test-auth-token-" + "0123456789abcdef" * 2
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TWILIO_NUMBER = "+15005550006"
CALLEE = "+14155552671"
API_KEY = "test-api-key-" + secrets.token_hex(16)
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

REQUEST_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 15.0
DELIVERY_TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------------------------------------------------
# The receiver


class Delivery:
    """One POST the receiver got: its headers (lower-case names), exact body and arrival time (monotonic)."""

    def __init__(self, headers, body, at):
        self.headers = headers
        self.body = body
        self.at = at

    @property
    def id(self):
        return self.headers.get("webhook-id")

    def payload(self):
        return json.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every delivery and answers `answer(delivery, nth)` (the nth time this
    webhook-id arrives, from 1); 200 unless told otherwise."""

    def __init__(self):
        self.deliveries = []
        self.condition = threading.Condition()
        self.answer = lambda delivery, nth: 200
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                delivery = Delivery({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                with receiver.condition:
                    receiver.deliveries.append(delivery)
                    nth = sum(1 for d in receiver.deliveries if d.id == delivery.id)
                    status = receiver.answer(delivery, nth)
                    receiver.condition.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/callbridge"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout=DELIVERY_TIMEOUT_S):
        """Waits until `predicate(deliveries)` is true; returns the deliveries; fails the test on timeout."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while not predicate(self.deliveries):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"timed out waiting for webhooks; got {[d.payload() for d in self.deliveries]}")
                self.condition.wait(left)
            return list(self.deliveries)

    def of_call(self, call_id):
        with self.condition:
            return [d for d in self.deliveries if d.payload()["data"].get("call_id", d.payload()["data"].get("id")) == call_id]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------------------------------
# The server under test


class Server:
    """A running `callbridge serve`."""

    def __init__(self, binary, workdir, env):
        self.binary = binary
        self.workdir = workdir
        self.env = env
        self.base_url = f"http://127.0.0.1:{env['PORT']}"
        self.log_path = workdir / "callbridge.log"
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "serve"], cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until_healthy(self)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def api(self, method, path, body=None):
        """The REST API with the bearer key; returns (status, JSON body)."""
        request = urllib.request.Request(
            self.base_url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
                return reply.status, json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def cli(self, *args):
        """Runs `callbridge ARGS` against this server (CALLBRIDGE_URL, CALLBRIDGE_API_KEY)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "CALLBRIDGE_URL": self.base_url,
            "CALLBRIDGE_API_KEY": API_KEY,
        }
        return subprocess.run(
            [str(self.binary), *args], cwd=self.workdir, env=env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def twilio():
    fake = FakeTwilio()
    yield fake
    fake.close()


@pytest.fixture
def receiver():
    receiving = Receiver()
    yield receiving
    receiving.close()


@pytest.fixture
def make_server(tmp_path, twilio):
    """Builds (not starts) servers with the webhook secret and `retry_base_ms`; stops them all at the end."""
    binary = resolve_binary()
    servers = []

    def make(retry_base_ms=5000):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "PORT": str(free_port()),
            "PUBLIC_URL": PUBLIC_URL,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_PHONE_NUMBER": TWILIO_NUMBER,
            "TWILIO_API_BASE_URL": twilio.base_url,
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime",
            "CALLBRIDGE_API_KEY": API_KEY,
            "CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES": "+1",
            "CALLBRIDGE_DATA_DIR": str(tmp_path / "data"),
            "CALLBRIDGE_WEBHOOK_SECRET": SECRET,
            "CALLBRIDGE_WEBHOOK_RETRY_BASE_MS": str(retry_base_ms),
            "RUST_LOG": "info",
        }
        server = Server(binary, tmp_path, env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def place_call(server, receiver, **extra):
    status, call = server.api(
        "POST",
        "/api/calls",
        {"to": CALLEE, "instructions": "Book a table for 4.", "webhook_url": receiver.url, **extra},
    )
    assert status == 201, f"{call}\n{server.log_tail()}"
    return call


def post_signed(server, path, form):
    """POSTs `form` to `path` signed as Twilio would, over PUBLIC_URL + path."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + path, form)
    request = urllib.request.Request(
        server.base_url + path,
        data=urllib.parse.urlencode(form).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
        assert reply.status in (200, 204), reply.status


def post_status(server, call_sid, status):
    post_signed(
        server,
        "/call-status",
        {
            "AccountSid": ACCOUNT_SID,
            "CallSid": call_sid,
            "CallStatus": status,
            "Direction": "outbound-api",
            "From": TWILIO_NUMBER,
            "To": CALLEE,
        },
    )


def verified(delivery, secret=SECRET):
    """The payload as the official verifier returns it (raises WebhookVerificationError when it refuses)."""
    return Webhook(secret).verify(delivery.body, delivery.headers)


def events(deliveries):
    return [d.payload()["type"] for d in deliveries]


# ---------------------------------------------------------------------------------------------------------------------
# Tests


def test_every_event_verifies_with_the_official_package_and_call_completed_is_the_record_get_call_returns(
    make_server, receiver
):
    server = make_server()
    server.start()
    answered = place_call(server, receiver, answering_machine="hang_up")
    busy = place_call(server, receiver)

    for status in ("initiated", "ringing", "in-progress"):
        post_status(server, answered["call_sid"], status)
    post_signed(
        server,
        f"/amd-status/{answered['id']}",
        {"AccountSid": ACCOUNT_SID, "AnsweredBy": "human", "CallSid": answered["call_sid"]},
    )
    for status in ("initiated", "ringing", "busy"):
        post_status(server, busy["call_sid"], status)
    receiver.wait_for(lambda ds: len(ds) >= 8)
    record_status, record = server.api("GET", f"/api/calls/{busy['id']}")

    of_answered = receiver.of_call(answered["id"])
    of_busy = receiver.of_call(busy["id"])
    for delivery in of_answered + of_busy:
        payload = verified(delivery)
        assert payload == delivery.payload()
        assert delivery.id.startswith("msg_")
        assert delivery.headers["content-type"] == "application/json"
        assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 60
        assert delivery.headers["webhook-signature"].startswith("v1,")
    assert events(of_answered) == ["call.status_changed"] * 3 + ["call.answered_by"]
    assert [d.payload()["data"]["status"] for d in of_answered[:3]] == ["initiated", "ringing", "in-progress"]
    assert of_answered[3].payload()["data"]["answered_by"] == "human"
    assert events(of_busy) == ["call.status_changed"] * 3 + ["call.completed"]
    assert record_status == 200
    completed = of_busy[3].payload()
    assert completed["data"] == record
    assert completed["data"]["status"] == "busy"
    assert completed["data"]["webhook_url"] == receiver.url
    assert len({d.id for d in of_answered + of_busy}) == 8, "one webhook-id per event"


def test_a_receiver_answering_500_twice_gets_the_event_three_times_spaced_as_the_schedule_says(make_server, receiver):
    base_s = 1.0
    server = make_server(retry_base_ms=int(base_s * 1000))
    server.start()
    receiver.answer = lambda delivery, nth: 500 if nth <= 2 else 200
    call = place_call(server, receiver)

    post_status(server, call["call_sid"], "initiated")
    attempts = receiver.wait_for(lambda ds: len(ds) >= 3, timeout=60)
    listed = server.cli("webhooks", "list", "--json")

    first, second, third = attempts[:3]
    assert first.id == second.id == third.id
    assert first.body == second.body == third.body, "the same bytes on every attempt"
    for attempt in (first, second, third):
        verified(attempt)
    gap_1 = second.at - first.at
    gap_2 = third.at - second.at
    # The schedule: base, then 5 × base. Never early; the ratio within a loose band (no wall-clock tightness).
    assert gap_1 >= base_s * 0.95, gap_1
    assert gap_2 >= 5 * base_s * 0.95, gap_2
    assert 3.0 <= gap_2 / gap_1 <= 7.0, (gap_1, gap_2)
    assert listed.returncode == 0, listed.stderr
    row = next(d for d in json.loads(listed.stdout) if d["id"] == first.id)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 3, 200)


def test_a_restart_between_attempts_loses_nothing(make_server, receiver):
    server = make_server(retry_base_ms=4000)
    server.start()
    receiver.answer = lambda delivery, nth: 500 if nth == 1 else 200
    call = place_call(server, receiver)

    post_status(server, call["call_sid"], "initiated")
    first = receiver.wait_for(lambda ds: len(ds) >= 1)[0]
    server.stop()
    stopped_at = time.monotonic()
    pending_while_down = len(receiver.deliveries)
    restarted = make_server(retry_base_ms=4000)
    restarted.env["CALLBRIDGE_DATA_DIR"] = server.env["CALLBRIDGE_DATA_DIR"]
    restarted.start()
    # The retry of the first event (the restart may report more, e.g. the call it closed as canceled).
    retries = receiver.wait_for(lambda ds: any(d.id == first.id for d in ds[1:]))
    second = next(d for d in retries[1:] if d.id == first.id)
    # The receiver sees the retry before the server has read its 200 and stored the delivery: list until it has
    # (bounded). Other events the restart delivered may be listed too.
    deadline = time.monotonic() + 10
    while True:
        delivered_list = restarted.cli("webhooks", "list", "--status", "delivered", "--json")
        assert delivered_list.returncode == 0, delivered_list.stderr
        delivered = {d["id"]: d for d in json.loads(delivered_list.stdout)}
        if first.id in delivered or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    assert pending_while_down == 1
    assert second.at > stopped_at, "sent by the new process"
    assert second.id == first.id
    assert second.body == first.body
    assert verified(second)["type"] == "call.status_changed"
    assert first.id in delivered, delivered
    row = delivered[first.id]
    assert (row["status"], row["last_status_code"]) == ("delivered", 200)
    # 2 when the first process stored its attempt's 500 before it stopped; 1 when the stop came first (the attempt
    # whose answer was never stored is not counted, and the new process sends at once).
    assert row["attempts"] in (1, 2), row


def test_a_tampered_body_a_stale_or_future_timestamp_or_another_secret_is_rejected(make_server, receiver):
    server = make_server()
    server.start()
    call = place_call(server, receiver)
    post_status(server, call["call_sid"], "initiated")
    delivery = receiver.wait_for(lambda ds: len(ds) >= 1)[0]
    assert verified(delivery)["data"]["status"] == "initiated"

    tampered_body = delivery.body.replace(b'"initiated"', b'"completed"')
    stale = dict(delivery.headers, **{"webhook-timestamp": str(int(time.time()) - 10 * 60)})
    future = dict(delivery.headers, **{"webhook-timestamp": str(int(time.time()) + 10 * 60)})
    other_id = dict(delivery.headers, **{"webhook-id": "msg_someoneelse"})

    assert tampered_body != delivery.body
    for body, headers, secret in [
        (tampered_body, delivery.headers, SECRET),
        (delivery.body, stale, SECRET),
        (delivery.body, future, SECRET),
        (delivery.body, other_id, SECRET),
        (delivery.body, delivery.headers, OTHER_SECRET),
    ]:
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, headers)


def test_a_plain_http_webhook_url_elsewhere_than_loopback_is_refused_and_nothing_is_dialed(make_server, twilio):
    server = make_server()
    server.start()

    status, body = server.api(
        "POST",
        "/api/calls",
        {"to": "+14155552699", "instructions": "Book a table.", "webhook_url": "http://hooks.example.com/cb"},
    )

    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert "https" in body["error"]["message"]
    assert twilio.creates_to("+14155552699") == []


def test_check_config_refuses_a_malformed_secret_and_says_how_to_generate_one(tmp_path):
    binary = resolve_binary()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "CALLBRIDGE_WEBHOOK_SECRET": "whsec_c2hvcnQ=",
    }

    result = subprocess.run(
        [str(binary), "check-config"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "CALLBRIDGE_WEBHOOK_SECRET is invalid" in result.stderr
    assert "openssl rand -base64 32" in result.stderr
