"""deploy/callbridge.toml, the production example of the config file: callbridge loads it, every key is a real
setting, and it holds no secrets.

The list of settings comes from SETTINGS in src/config/keys.rs, the list `check-config` and the README follow. Loading goes
through the built binary's `check-config`, so the example is checked by the same code that reads it in production. The
commented-out examples in the file are checked too, by loading a copy with them switched on.
"""

import re
import tomllib

import pytest

from deploy_support import DEPLOY, REPO_ROOT, clean_env, run

EXAMPLE = DEPLOY / "callbridge.toml"
CONFIG_RS = REPO_ROOT / "src" / "config" / "keys.rs"
SECRET_KEYS = {"openai_api_key", "twilio_auth_token", "api_key"}
# What `serve` needs besides the file: the secrets, which belong in the environment file.
SECRETS_ENV = {"OPENAI_API_KEY": "sk-test", "TWILIO_AUTH_TOKEN": "test-auth-token"}


def known_settings():
    """The flat keys listed in SETTINGS in src/config/keys.rs."""
    source = CONFIG_RS.read_text()
    block = source[source.index("pub const SETTINGS") :]
    block = block[: block.index("];")]
    keys = re.findall(r'\(\s*"([a-z0-9_]+)",\s*(?:None|Some\()', block)
    assert len(keys) > 20, "could not read SETTINGS from src/config/keys.rs"
    return set(keys)


def check_config(binary, toml_path, tmp_path, **extra_env):
    env = clean_env(HOME=tmp_path, CALLBRIDGE_CONFIG=toml_path, **SECRETS_ENV, **extra_env)
    return run([binary, "check-config"], cwd=tmp_path, env=env)


def shown(output, key):
    """The value check-config shows for `key`, without the `  (source)` that follows it."""
    match = re.search(rf"^{key}\s*=\s*(.*?)  \(([^()]*)\)$", output, re.MULTILINE)
    assert match, f"{key} not in check-config output:\n{output}"
    return match.group(1).strip()


def source(output, key):
    """Where check-config says `key`'s value came from."""
    match = re.search(rf"^{key}\s*=\s*(.*?)  \(([^()]*)\)$", output, re.MULTILINE)
    assert match, f"{key} not in check-config output:\n{output}"
    return match.group(2)


def test_the_example_is_valid_toml_with_only_known_settings():
    settings = tomllib.loads(EXAMPLE.read_text())

    assert set(settings) <= known_settings(), set(settings) - known_settings()


def test_the_example_holds_no_secrets():
    settings = tomllib.loads(EXAMPLE.read_text())

    assert not SECRET_KEYS & set(settings)
    assert "sk-" not in EXAMPLE.read_text().replace("OPENAI_API_KEY=sk-...", "")


def test_the_example_tells_where_the_secrets_go():
    text = EXAMPLE.read_text()

    for name in ("OPENAI_API_KEY", "TWILIO_AUTH_TOKEN"):
        assert name in text
    assert "/etc/callbridge/callbridge.env" in text


def test_callbridge_loads_the_example_and_would_serve_with_the_secrets_from_the_environment(callbridge_bin, tmp_path):
    result = check_config(callbridge_bin, EXAMPLE, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: `callbridge serve` has everything it needs." in result.stdout


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("host", "127.0.0.1"),
        ("port", "5050"),
        ("public_url", "https://voice.example.com/"),
        ("log_format", "json"),
        ("drain_timeout_s", "30"),
        ("data_dir", "/var/lib/callbridge"),
        ("voice", "marin"),
        ("max_call_duration_s", "1800"),
    ],
)
def test_callbridge_takes_the_value_from_the_example(callbridge_bin, tmp_path, key, expected):
    result = check_config(callbridge_bin, EXAMPLE, tmp_path)

    assert shown(result.stdout, key) == expected


def test_the_environment_wins_over_the_example(callbridge_bin, tmp_path):
    result = check_config(callbridge_bin, EXAMPLE, tmp_path, CALLBRIDGE_HOST="0.0.0.0")

    assert shown(result.stdout, "host") == "0.0.0.0"
    assert source(result.stdout, "host") == "environment: CALLBRIDGE_HOST"


def test_the_commented_out_examples_are_valid_too(callbridge_bin, tmp_path):
    known = known_settings()
    lines = []
    switched_on = []
    for line in EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"# ([a-z0-9_]+) = (.+)", line)
        if match and match.group(1) in known:
            switched_on.append(match.group(1))
            line = f"{match.group(1)} = {match.group(2)}"
        lines.append(line)
    copy = tmp_path / "callbridge.toml"
    copy.write_text("\n".join(lines) + "\n")

    result = check_config(callbridge_bin, copy, tmp_path)

    assert {"twilio_account_sid", "twilio_phone_number", "goodbye_phrases"} <= set(switched_on)
    assert result.returncode == 0, result.stdout + result.stderr
    assert shown(result.stdout, "twilio_phone_number") == "+15550100002"
