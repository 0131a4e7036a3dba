"""Conformance: the official twilio SDK signs voice webhooks, and a running `callbridge serve` must agree with it.

Two parts:

* Server tests start the real binary (`CALLBRIDGE_BIN`, default `target/debug/callbridge`) with a test auth token and
  a public URL of https://example.ngrok.test, sign realistic inbound-call webhooks with
  `twilio.request_validator.RequestValidator`, and check that correctly signed requests get `<Connect><Stream>` TwiML
  while every tampered one gets 403. The server must check the signature against PUBLIC_URL + path, not against the
  local address it listens on.
* Webhooks signed the newer way: the SDK signs with a SharedKey secret and HMAC-SHA256, and the request names the key
  and algorithm in `X-Twilio-Webhooks-Signature-Settings` (the SDK's `SIGNATURE_SETTINGS_HEADER`); the server is
  configured with that key in CALLBRIDGE_TWILIO_SIGNING_KEYS.
* A test that needs no server checks that tests/fixtures/twilio_signatures.json (read by the Rust unit tests in
  src/twilio/signature.rs) still matches what the installed SDK computes.

Run from the repository root:

    cargo build
    python -m pytest tests/conformance -v

HTTP goes through urllib from the standard library; the only third-party packages are twilio and pytest.
"""

import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from callbridge_process import free_port, resolve_binary, serving
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from make_signature_fixture import CASES, FIXTURE, MultiParams


PUBLIC_URL = "https://example.ngrok.test"
INCOMING_CALL_PATH = "/incoming-call"
SIGNED_URL = PUBLIC_URL + INCOMING_CALL_PATH
SIGNED_URL_WITH_PORT = "https://example.ngrok.test:443" + INCOMING_CALL_PATH
STREAM_URL_PREFIX = "wss://example.ngrok.test/media-stream/"

AUTH_TOKEN = "test-auth-token-" + "0123456789abcdef" * 2
OTHER_AUTH_TOKEN = "another-auth-token-" + "fedcba9876543210" * 2
SHARED_KEY_ID = "webhooks_sharedkey_" + "0123456789abcdefghijklmnop"
SHARED_KEY_SECRET = "shared-key-secret-" + "89abcdef01234567" * 2

REQUEST_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def inbound_call_form():
    """The form fields Twilio posts to the voice webhook when a call comes in (a fresh CallSid each time)."""
    return [
        ("AccountSid", "AC" + secrets.token_hex(16)),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CA" + secrets.token_hex(16)),
        ("CallStatus", "ringing"),
        ("Called", "+18005551212"),
        ("Caller", "+14158675309"),
        ("Direction", "inbound"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]


def sign(url, form, token=AUTH_TOKEN):
    """X-Twilio-Signature for `form` posted to `url`, computed by the official SDK."""
    return RequestValidator(token).compute_signature(url, MultiParams(form))


class Response:
    """What came back from the server: status, headers, body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"Response(status={self.status}, body={self.body[:300]!r})"


def sign_with_shared_key(url, form, secret=SHARED_KEY_SECRET, algorithm=HMAC_SHA256):
    """X-Twilio-Signature for `form` posted to `url`, signed by the official SDK with a SharedKey secret."""
    return RequestValidator(secret).compute_signature(url, MultiParams(form), algorithm)


def post_form(base_url, form, signature=None, settings=None):
    """POST `form` urlencoded to base_url + /incoming-call, with X-Twilio-Signature when `signature` is given and
    X-Twilio-Webhooks-Signature-Settings when `settings` is."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    if settings is not None:
        headers[SIGNATURE_SETTINGS_HEADER] = settings
    request = urllib.request.Request(
        base_url + INCOMING_CALL_PATH,
        data=urllib.parse.urlencode(form).encode("utf-8"),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
            return Response(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())


def stream_url_of(response):
    """The Stream url of a `<Response><Connect><Stream url=...>` document; fails the test on any other shape."""
    root = ET.fromstring(response.body)
    assert root.tag == "Response", response
    stream = root.find("./Connect/Stream")
    assert stream is not None, response
    return stream.get("url")


# ---------------------------------------------------------------------------------------------------------------------
# The server under test


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = resolve_binary()
    workdir = tmp_path_factory.mktemp("callbridge")  # no stray .env or callbridge.toml, and scratch for any files
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PORT": str(port),
        "PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "CALLBRIDGE_TWILIO_SIGNING_KEYS": f"{SHARED_KEY_ID}={SHARED_KEY_SECRET}",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime",  # nothing listens: the pre-connect fails harmlessly
        "RUST_LOG": "info",
    }
    with serving(binary, workdir, env, port) as running:
        yield running


# ---------------------------------------------------------------------------------------------------------------------
# Correctly signed webhooks


def test_a_signed_inbound_call_is_answered_with_connect_stream_twiml(server):
    form = inbound_call_form()

    response = post_form(server.base_url, form, sign(SIGNED_URL, form))

    assert response.status == 200, f"{response}\n{server.log_tail()}"
    content_type = response.headers.get("Content-Type", "")
    assert content_type.split(";")[0].strip() in ("text/xml", "application/xml"), content_type
    url = stream_url_of(response)
    assert url.startswith(STREAM_URL_PREFIX), url


def test_the_stream_url_carries_a_token_in_the_path_and_no_query_string(server):
    form = inbound_call_form()

    response = post_form(server.base_url, form, sign(SIGNED_URL, form))

    assert response.status == 200, response
    url = urllib.parse.urlsplit(stream_url_of(response))
    token = url.path.removeprefix("/media-stream/")
    assert url.query == "" and url.fragment == "", url
    assert len(token) >= 22 and "/" not in token, token  # >= 128 bits as base64url


def test_two_calls_get_different_stream_tokens(server):
    first_form, second_form = inbound_call_form(), inbound_call_form()

    first = post_form(server.base_url, first_form, sign(SIGNED_URL, first_form))
    second = post_form(server.base_url, second_form, sign(SIGNED_URL, second_form))

    assert first.status == 200 and second.status == 200, (first, second)
    assert stream_url_of(first) != stream_url_of(second)


def test_a_signature_over_the_url_with_port_443_is_accepted(server):
    form = inbound_call_form()

    response = post_form(server.base_url, form, sign(SIGNED_URL_WITH_PORT, form))

    assert response.status == 200, f"{response}\n{server.log_tail()}"
    assert stream_url_of(response).startswith(STREAM_URL_PREFIX)


# ---------------------------------------------------------------------------------------------------------------------
# Tampered or unsigned webhooks: 403, and no TwiML


def assert_forbidden(response):
    assert response.status == 403, response
    assert b"<Stream" not in response.body, response


def test_a_parameter_changed_after_signing_is_forbidden(server):
    form = inbound_call_form()
    signature = sign(SIGNED_URL, form)
    tampered = [(name, "+19005550000" if name == "From" else value) for name, value in form]

    response = post_form(server.base_url, tampered, signature)

    assert_forbidden(response)


def test_a_parameter_added_after_signing_is_forbidden(server):
    form = inbound_call_form()
    signature = sign(SIGNED_URL, form)

    response = post_form(server.base_url, form + [("Digits", "1234")], signature)

    assert_forbidden(response)


def test_a_parameter_removed_after_signing_is_forbidden(server):
    form = inbound_call_form()
    signature = sign(SIGNED_URL, form)
    without_caller = [(name, value) for name, value in form if name != "Caller"]

    response = post_form(server.base_url, without_caller, signature)

    assert_forbidden(response)


def test_a_signature_made_with_another_auth_token_is_forbidden(server):
    form = inbound_call_form()

    response = post_form(server.base_url, form, sign(SIGNED_URL, form, token=OTHER_AUTH_TOKEN))

    assert_forbidden(response)


def test_a_request_without_a_signature_header_is_forbidden(server):
    form = inbound_call_form()

    response = post_form(server.base_url, form, signature=None)

    assert_forbidden(response)


def test_a_signature_over_the_local_address_instead_of_the_public_url_is_forbidden(server):
    form = inbound_call_form()
    local_url = server.base_url + INCOMING_CALL_PATH

    response = post_form(server.base_url, form, sign(local_url, form))

    assert_forbidden(response)


def test_a_garbage_signature_is_forbidden(server):
    form = inbound_call_form()

    response = post_form(server.base_url, form, "not-a-signature")

    assert_forbidden(response)


# ---------------------------------------------------------------------------------------------------------------------
# The answering machine detection callback (AsyncAmdStatusCallback) of an outbound call

AMD_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AMD_API_KEY = "test-api-key-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def outbound_server(tmp_path_factory):
    """A server that places outbound calls through a fake Twilio REST API (the one of test_mcp.py)."""
    from test_mcp import FakeTwilio

    twilio = FakeTwilio()
    binary = resolve_binary()
    workdir = tmp_path_factory.mktemp("callbridge-amd")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PORT": str(port),
        "PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": AMD_ACCOUNT_SID,
        "TWILIO_PHONE_NUMBER": "+15005550006",
        "TWILIO_API_BASE_URL": twilio.base_url,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime",
        "CALLBRIDGE_API_KEY": AMD_API_KEY,
        "CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES": "+1",
        "CALLBRIDGE_DATA_DIR": str(workdir / "data"),
        "RUST_LOG": "info",
    }
    try:
        with serving(binary, workdir, env, port) as running:
            running.twilio = twilio
            yield running
    finally:
        twilio.close()


def api(server, method, path, body=None):
    """The REST API with the bearer key; returns (status, JSON body)."""
    request = urllib.request.Request(
        server.base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {AMD_API_KEY}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def post_amd(server, url, form, signature):
    """POST Twilio's AMD callback `form` to the path of `url` (the callback URL given to Twilio)."""
    path = urllib.parse.urlsplit(url).path
    request = urllib.request.Request(
        server.base_url + path,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def amd_form(call_sid, answered_by):
    """The fields Twilio posts to AsyncAmdStatusCallback."""
    return [
        ("AccountSid", AMD_ACCOUNT_SID),
        ("AnsweredBy", answered_by),
        ("CallSid", call_sid),
        ("MachineDetectionDuration", "4210"),
    ]


def test_the_amd_callback_signed_by_the_sdk_is_accepted_and_a_forged_one_changes_nothing(outbound_server):
    status, call = api(
        outbound_server,
        "POST",
        "/api/calls",
        {"to": "+14155552671", "instructions": "Book a table for 4.", "answering_machine": "leave_message"},
    )
    assert status == 201, call
    create = outbound_server.twilio.creates_to("+14155552671")[-1]
    callback = create["AsyncAmdStatusCallback"]
    assert callback == f"{PUBLIC_URL}/amd-status/{call['id']}"
    assert (create["MachineDetection"], create["AsyncAmd"]) == ("DetectMessageEnd", "true")
    beep = amd_form(call["call_sid"], "machine_end_beep")

    forged = post_amd(outbound_server, callback, beep, sign(callback, beep, OTHER_AUTH_TOKEN))
    after_forged = api(outbound_server, "GET", f"/api/calls/{call['id']}")[1]
    accepted = post_amd(outbound_server, callback, beep, sign(callback, beep))
    human = amd_form(call["call_sid"], "human")
    repeated = post_amd(outbound_server, callback, human, sign(callback, human))
    unknown_url = f"{PUBLIC_URL}/amd-status/call_doesnotexist"
    unknown = post_amd(outbound_server, unknown_url, beep, sign(unknown_url, beep))
    stored = None
    for _ in range(50):
        stored = api(outbound_server, "GET", f"/api/calls/{call['id']}")[1]
        if stored["answered_by"] is not None:
            break
        time.sleep(0.1)

    assert forged == 403
    assert after_forged["answered_by"] is None
    assert accepted == 204
    assert repeated == 204
    assert unknown == 404
    assert stored["answered_by"] == "machine_end_beep", stored
    assert stored["answering_machine"] == "leave_message"


# Signed with a SharedKey (X-Twilio-Webhooks-Signature-Settings)


def test_a_webhook_the_sdk_signs_with_a_shared_key_and_hmac_sha256_is_answered(server):
    form = inbound_call_form()
    settings = f"key={SHARED_KEY_ID},algorithm={HMAC_SHA256}"
    signature = sign_with_shared_key(SIGNED_URL, form)
    # The SDK itself reads the header as HMAC_SHA256 and accepts its own signature.
    assert get_signature_algorithm(settings) == HMAC_SHA256
    assert RequestValidator(SHARED_KEY_SECRET).validate(SIGNED_URL, MultiParams(form), signature, HMAC_SHA256)

    response = post_form(server.base_url, form, signature, settings)

    assert response.status == 200, f"{response}\n{server.log_tail()}"
    assert stream_url_of(response).startswith(STREAM_URL_PREFIX)


def test_a_shared_key_signature_over_the_url_with_port_443_is_accepted(server):
    form = inbound_call_form()

    response = post_form(
        server.base_url,
        form,
        sign_with_shared_key(SIGNED_URL_WITH_PORT, form),
        f"algorithm={HMAC_SHA256}, key={SHARED_KEY_ID}",
    )

    assert response.status == 200, f"{response}\n{server.log_tail()}"


def test_settings_without_an_algorithm_mean_hmac_sha1_with_the_shared_key(server):
    form = inbound_call_form()
    settings = f"key={SHARED_KEY_ID}"
    assert get_signature_algorithm(settings) == HMAC_SHA1

    response = post_form(server.base_url, form, sign_with_shared_key(SIGNED_URL, form, algorithm=HMAC_SHA1), settings)

    assert response.status == 200, f"{response}\n{server.log_tail()}"


def test_an_hmac_sha256_signature_made_with_another_secret_is_forbidden(server):
    form = inbound_call_form()
    signature = sign_with_shared_key(SIGNED_URL, form, secret="not-the-shared-key-secret")

    response = post_form(server.base_url, form, signature, f"key={SHARED_KEY_ID},algorithm={HMAC_SHA256}")

    assert_forbidden(response)


def test_the_auth_token_signature_is_forbidden_when_the_settings_name_a_shared_key(server):
    form = inbound_call_form()

    response = post_form(server.base_url, form, sign(SIGNED_URL, form), f"key={SHARED_KEY_ID},algorithm={HMAC_SHA1}")

    assert_forbidden(response)


def test_an_unknown_shared_key_is_forbidden(server):
    form = inbound_call_form()
    signature = sign_with_shared_key(SIGNED_URL, form)

    response = post_form(server.base_url, form, signature, f"key=webhooks_sharedkey_unknown,algorithm={HMAC_SHA256}")

    assert_forbidden(response)


def test_an_algorithm_the_server_does_not_support_is_forbidden(server):
    form = inbound_call_form()
    signature = sign_with_shared_key(SIGNED_URL, form)

    response = post_form(server.base_url, form, signature, f"key={SHARED_KEY_ID},algorithm=HMAC_SHA512")

    assert_forbidden(response)


# ---------------------------------------------------------------------------------------------------------------------
# No server needed


def test_the_rust_signature_fixture_matches_the_installed_sdk():
    stored = json.loads(FIXTURE.read_text(encoding="utf-8"))

    recomputed = [
        RequestValidator(token).compute_signature(url, MultiParams(params)) for _, token, url, params in CASES
    ]

    assert [case["signature"] for case in stored] == recomputed, "re-run make_signature_fixture.py"
    assert [case["name"] for case in stored] == [name for name, *_ in CASES]


# ---------------------------------------------------------------------------------------------------------------------
# Transfer webhooks: the <Number url> whisper and the <Dial action>, signed like every other webhook. No transfer is
# under way on this server, so a correctly signed request passes the signature check and reaches the lookup of its
# transfer id (404), while a tampered or unsigned one stops at the check (403).

TRANSFER_ID = "AAAAAAAAAAAAAAAAAAAAAA"
WHISPER_PATH = f"/transfer/{TRANSFER_ID}/whisper"
ACTION_PATH = f"/transfer/{TRANSFER_ID}/action"


def dial_action_form(status="no-answer"):
    """The form Twilio posts to a <Dial action> when the dial ends (twilio.com/docs/voice/twiml/dial#action)."""
    return inbound_call_form()[:-3] + [
        ("CallStatus", "in-progress"),
        ("DialCallDuration", "0"),
        ("DialCallSid", "CA" + secrets.token_hex(16)),
        ("DialCallStatus", status),
        ("Direction", "inbound"),
    ]


def post_to(base_url, path, form, signature=None):
    """POST `form` urlencoded to base_url + path, with X-Twilio-Signature when `signature` is given."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    request = urllib.request.Request(
        base_url + path, data=urllib.parse.urlencode(form).encode("utf-8"), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
            return Response(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())


@pytest.mark.parametrize("path", [WHISPER_PATH, ACTION_PATH])
def test_an_sdk_signed_transfer_webhook_passes_the_signature_check(server, path):
    form = dial_action_form()

    response = post_to(server.base_url, path, form, sign(PUBLIC_URL + path, form))

    assert response.status == 404, response


@pytest.mark.parametrize("path", [WHISPER_PATH, ACTION_PATH])
def test_an_unsigned_transfer_webhook_is_forbidden(server, path):
    response = post_to(server.base_url, path, dial_action_form())

    assert response.status == 403, response


def test_a_dial_action_whose_status_was_changed_after_signing_is_forbidden(server):
    form = dial_action_form("no-answer")
    signature = sign(PUBLIC_URL + ACTION_PATH, form)
    tampered = [(k, "completed" if k == "DialCallStatus" else v) for k, v in form]

    response = post_to(server.base_url, ACTION_PATH, tampered, signature)

    assert response.status == 403, response


def test_a_dial_action_signed_for_another_transfer_or_with_another_token_is_forbidden(server):
    form = dial_action_form()
    other_transfer = sign(PUBLIC_URL + "/transfer/BBBBBBBBBBBBBBBBBBBBBB/action", form)
    other_token = sign(PUBLIC_URL + ACTION_PATH, form, token=OTHER_AUTH_TOKEN)

    assert post_to(server.base_url, ACTION_PATH, form, other_transfer).status == 403
    assert post_to(server.base_url, ACTION_PATH, form, other_token).status == 403


# ---------------------------------------------------------------------------------------------------------------------
# Call recording: the inbound TwiML's <Start><Recording> is what the SDK's VoiceResponse writes, and the recording
# status callback the SDK signs is accepted (a forged one is not).

from twilio.twiml.voice_response import VoiceResponse  # noqa: E402

RECORDING_NOTICE = "This call is recorded."


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory):
    """`callbridge serve` recording inbound calls, with the default recording notice."""
    workdir = tmp_path_factory.mktemp("callbridge-recording")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PORT": str(port),
        "PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime",
        "CALLBRIDGE_RECORDING_INBOUND": "on",
        "RUST_LOG": "info",
    }
    with serving(resolve_binary(), workdir, env, port) as running:
        yield running


def shape(element):
    """An element as (tag, attributes, text, children), for comparing two TwiML documents."""
    return (
        element.tag,
        dict(element.attrib),
        (element.text or "").strip(),
        [shape(child) for child in element],
    )


def test_the_inbound_recording_twiml_is_what_the_sdks_voice_response_writes(recording_server):
    form = inbound_call_form()

    response = post_form(recording_server.base_url, form, sign(SIGNED_URL, form))

    assert response.status == 200, f"{response}\n{recording_server.log_tail()}"
    served = ET.fromstring(response.body)
    recording = served.find("./Start/Recording")
    assert recording is not None, response
    callback = recording.get("recordingStatusCallback")
    assert callback.startswith(PUBLIC_URL + "/recording-status/call_"), callback
    stream = served.find("./Connect/Stream")
    expected = VoiceResponse()
    expected.start().recording(
        channels="dual",
        recording_status_callback=callback,
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
    )
    expected.say(RECORDING_NOTICE)
    connect = expected.connect()
    sdk_stream = connect.stream(url=stream.get("url"))
    for parameter in stream.findall("./Parameter"):
        sdk_stream.parameter(name=parameter.get("name"), value=parameter.get("value"))
    assert shape(served) == shape(ET.fromstring(expected.to_xml())), response


def test_a_recording_callback_the_sdk_signs_is_accepted_and_a_forged_one_is_forbidden(recording_server):
    call = inbound_call_form()
    answered = post_form(recording_server.base_url, call, sign(SIGNED_URL, call))
    assert answered.status == 200, answered
    callback = ET.fromstring(answered.body).find("./Start/Recording").get("recordingStatusCallback")
    path = callback.removeprefix(PUBLIC_URL)
    account_sid, call_sid = dict(call)["AccountSid"], dict(call)["CallSid"]
    recording_sid = "RE" + secrets.token_hex(16)
    form = [
        ("AccountSid", account_sid),
        ("CallSid", call_sid),
        ("ErrorCode", "0"),
        ("RecordingChannels", "2"),
        ("RecordingDuration", "42"),
        ("RecordingSid", recording_sid),
        ("RecordingSource", "StartCallRecordingAPI"),
        ("RecordingStatus", "completed"),
        ("RecordingUrl", f"https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}"),
    ]
    # The call record is written off the request path: give it a moment before the callback looks it up.
    deadline = time.monotonic() + REQUEST_TIMEOUT_S

    forged = post_to(recording_server.base_url, path, form, sign(callback, form, token=OTHER_AUTH_TOKEN))
    signed = post_to(recording_server.base_url, path, form, sign(callback, form))
    while signed.status == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
        signed = post_to(recording_server.base_url, path, form, sign(callback, form))

    assert forged.status == 403, forged
    assert signed.status == 204, f"{signed}\n{recording_server.log_tail()}"
