"""Write tests/fixtures/twilio_signatures.json: X-Twilio-Signature values computed by the official twilio SDK.

The Rust unit tests in src/twilio/signature.rs read the fixture and check that `RequestValidator::sign` agrees with
`twilio.request_validator.RequestValidator.compute_signature` on every case, so the two implementations cannot drift
apart without a test failing. Re-run after changing the cases:

    python tests/conformance/make_signature_fixture.py

Each case: {"name", "token", "url", "params": [[name, value], ...], "signature"}. Parameters are kept as an ordered
list of pairs so that repeated names survive the trip; the SDK sees them through a multi-dict with `getall`.
"""

import json
import pathlib

from twilio.request_validator import RequestValidator

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "twilio_signatures.json"

PUBLISHED_TOKEN = "12345"
TOKEN = "0f4c2b9e8d7a6c5b4a3928172635f4e1"

INBOUND_CALL = [
    ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
    ("ApiVersion", "2010-04-01"),
    ("CallSid", "CA0123456789abcdef0123456789abcdef"),
    ("CallStatus", "ringing"),
    ("Called", "+18005551212"),
    ("CalledCity", "SAN FRANCISCO"),
    ("Caller", "+14158675309"),
    ("CallerName", "Jane Doe"),
    ("Direction", "inbound"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
]

# (name, token, url, [(param name, value), ...])
CASES = [
    (
        "published vector",
        PUBLISHED_TOKEN,
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ],
    ),
    ("no parameters (GET or WebSocket upgrade)", TOKEN, "https://example.ngrok.test/incoming-call", []),
    ("query string only", TOKEN, "https://example.ngrok.test/status?attempt=2&call_id=abc", []),
    ("realistic inbound call", TOKEN, "https://example.ngrok.test/incoming-call", INBOUND_CALL),
    ("realistic inbound call, url with :443", TOKEN, "https://example.ngrok.test:443/incoming-call", INBOUND_CALL),
    ("plain http with :80", TOKEN, "http://localhost:80/incoming-call", INBOUND_CALL),
    ("plain http without port", TOKEN, "http://localhost/incoming-call", INBOUND_CALL),
    ("non-default port", TOKEN, "https://example.test:8443/incoming-call", INBOUND_CALL),
    ("wss media stream upgrade", TOKEN, "wss://example.ngrok.test/media-stream/aGVsbG8td29ybGQ", []),
    (
        "unicode values",
        TOKEN,
        "https://example.test/incoming-call",
        [("CallerName", "Zoë Ümlaut"), ("CalledCity", "東京"), ("Note", "emoji 📞 and ß")],
    ),
    ("unicode names", TOKEN, "https://example.test/x", [("Ünïcode", "1"), ("Zebra", "2"), ("ascii", "3")]),
    (
        "unicode in the url path and query",
        TOKEN,
        "https://example.test/caf%C3%A9/é?q=日本",
        [("A", "b")],
    ),
    (
        "repeated names",
        TOKEN,
        "https://example.test/call-status",
        [
            ("StatusCallbackEvent", "ringing"),
            ("CallSid", "CA1"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
        ],
    ),
    (
        "repeated name with a repeated value",
        TOKEN,
        "https://example.test/call-status",
        [("Event", "b"), ("Event", "a"), ("Event", "b")],
    ),
    ("empty values", TOKEN, "https://example.test/x", [("Digits", ""), ("From", "+1"), ("SpeechResult", "")]),
    ("empty name", TOKEN, "https://example.test/x", [("", "orphan"), ("A", "1")]),
    (
        "case-sensitive byte-wise name order",
        TOKEN,
        "https://example.test/x",
        [("b", "1"), ("B", "2"), ("_", "3"), ("a", "4"), ("A", "5"), ("0", "6")],
    ),
    ("a name that prefixes another", TOKEN, "https://example.test/x", [("ToCity", "X"), ("To", "+1"), ("Tо", "cyrillic o")]),
    (
        "reserved characters in values",
        TOKEN,
        "https://example.test/x?a=1&b=%20",
        [("Body", "a&b=c+d%20e f"), ("Url", "https://e.test/?x=1&y=2"), ("Quote", "\"'<>")],
    ),
    ("whitespace and newlines in values", TOKEN, "https://example.test/x", [("SpeechResult", "line one\nline two\t end ")]),
    ("long value", TOKEN, "https://example.test/x", [("Transcript", "la " * 700)]),
    ("empty token", "", "https://example.test/x", [("A", "1")]),
    ("non-ascii token", "tökén", "https://example.test/x", [("A", "1")]),
    ("url with fragment", TOKEN, "https://example.test/x#frag", [("A", "1")]),
    (
        "json webhook url with bodySHA256",
        TOKEN,
        "https://example.test/events?bodySHA256=0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
        [],
    ),
]


class MultiParams(dict):
    """A dict of name -> [values] that the SDK reads through `getall`, like Flask's MultiDict."""

    def __init__(self, pairs):
        super().__init__()
        for name, value in pairs:
            self.setdefault(name, []).append(value)

    def getall(self, name):
        return self[name]


def main():
    cases = []
    for name, token, url, params in CASES:
        signature = RequestValidator(token).compute_signature(url, MultiParams(params))
        cases.append(
            {
                "name": name,
                "token": token,
                "url": url,
                "params": [[param_name, value] for param_name, value in params],
                "signature": signature,
            }
        )
    # One case per line: small diffs when a case changes.
    lines = ",\n".join(" " + json.dumps(case, ensure_ascii=False) for case in cases)
    FIXTURE.write_text("[\n" + lines + "\n]\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {FIXTURE}")


if __name__ == "__main__":
    main()
