"""The Cloudflare tunnel pieces: the quick-tunnel script that finds the trycloudflare.com URL in cloudflared's output,
the named-tunnel config and script, and the install hint when cloudflared is missing.

cloudflared itself is never run: the live tests put a fake `cloudflared` (a shell script that replays a recorded log on
stderr and notes its arguments) in CLOUDFLARED, which the scripts honour. The recorded logs in fixtures/ follow what
cloudflared prints for a quick tunnel: a disclaimer, "Requesting new quick Tunnel on trycloudflare.com...", then the URL
in an ASCII box (cmd/cloudflared/tunnel/quick_tunnel.go), then connection lines; and, when the quick-tunnel API cannot
be reached, an error naming https://api.trycloudflare.com/tunnel.
"""

import re

import pytest
import yaml

from deploy_support import DEPLOY, FIXTURES, REPO_ROOT, clean_env, run

QUICK = DEPLOY / "scripts" / "tunnel-quick.sh"
NAMED = DEPLOY / "scripts" / "tunnel-named.sh"
REQUIRE = DEPLOY / "scripts" / "require-cloudflared.sh"
CLOUDFLARED_CONFIG = DEPLOY / "cloudflared" / "config.yml"

TUNNEL_LOG = FIXTURES / "cloudflared-quick-tunnel.log"
FAILED_LOG = FIXTURES / "cloudflared-quick-tunnel-failed.log"
TUNNEL_URL = "https://quiet-forest-lamp-river.trycloudflare.com"
NOT_INSTALLED = "cloudflared-is-not-installed-here"

# What the script must print for TUNNEL_URL: the webhook to paste and the .env line, each on a line of its own.
EXPECTED_WEBHOOK_LINE = f"    {TUNNEL_URL}/incoming-call"
EXPECTED_ENV_LINE = f"    PUBLIC_URL={TUNNEL_URL}"


def parse(text):
    return run(["bash", QUICK, "--parse"], input_text=text)


def fake_cloudflared(tmp_path, log, status=0, extra_stderr=""):
    """A `cloudflared` stand-in: writes its arguments to args.txt, replays `log` on stderr, exits with `status`."""
    script = tmp_path / "cloudflared"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" > "{tmp_path}/args.txt"\n'
        f'cat "{log}" >&2\n'
        f"printf '%s' '{extra_stderr}' >&2\n"
        f"exit {status}\n"
    )
    script.chmod(0o755)
    return script


# --- finding the URL --------------------------------------------------------------------------------------------------


def test_the_quick_tunnel_url_is_found_in_cloudflareds_real_output():
    result = parse(TUNNEL_LOG.read_text())

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert EXPECTED_WEBHOOK_LINE in lines
    assert EXPECTED_ENV_LINE in lines


def test_the_printed_instructions_say_http_post_for_the_webhook():
    result = parse(TUNNEL_LOG.read_text())

    webhook_at = result.stdout.splitlines().index(EXPECTED_WEBHOOK_LINE)
    assert "HTTP POST" in result.stdout.splitlines()[webhook_at - 1]


def test_the_url_is_found_through_colour_codes_and_docker_compose_log_prefixes():
    coloured = TUNNEL_LOG.read_text().replace(" INF ", " \x1b[32mINF\x1b[0m ")
    prefixed = "".join(f"cloudflared-1  | {line}\n" for line in coloured.splitlines())

    result = parse(prefixed)

    assert result.returncode == 0, result.stderr
    assert EXPECTED_ENV_LINE in result.stdout.splitlines()


def test_parsed_compose_logs_say_to_leave_public_url_empty_as_the_compose_section_does():
    result = parse(TUNNEL_LOG.read_text())

    assert "Under docker compose (deploy/compose.yaml) leave PUBLIC_URL empty" in result.stdout
    assert EXPECTED_ENV_LINE in result.stdout.splitlines(), "the line for running without compose is still printed"


def test_the_quick_tunnel_api_address_in_an_error_is_not_taken_for_the_tunnel_url():
    result = parse(FAILED_LOG.read_text())

    assert result.returncode == 1
    assert result.stdout == ""
    assert "no https://*.trycloudflare.com tunnel URL" in result.stderr


def test_only_the_first_tunnel_url_is_reported():
    later = TUNNEL_LOG.read_text() + "2026-11-21T12:00:00Z INF |  https://another-one.trycloudflare.com  |\n"

    result = parse(later)

    assert result.stdout.count("PUBLIC_URL=") == 1
    assert "another-one" not in result.stdout


def test_input_without_any_url_exits_1():
    result = parse("")

    assert result.returncode == 1


# --- running a quick tunnel -------------------------------------------------------------------------------------------


def test_the_quick_tunnel_runs_cloudflared_against_the_local_port_and_prints_the_url(tmp_path):
    fake = fake_cloudflared(tmp_path, TUNNEL_LOG, extra_stderr="2026-11-21T11:41:00Z WRN Connection lost\n")

    result = run(["bash", QUICK, "6123"], env=clean_env(CLOUDFLARED=fake))

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "args.txt").read_text().split() == [
        "tunnel",
        "--no-autoupdate",
        "--url",
        "http://localhost:6123",
    ]
    assert EXPECTED_WEBHOOK_LINE in result.stdout.splitlines()
    assert EXPECTED_ENV_LINE in result.stdout.splitlines()


def test_the_quick_tunnel_hides_cloudflareds_info_lines_but_passes_warnings_through(tmp_path):
    fake = fake_cloudflared(tmp_path, TUNNEL_LOG, extra_stderr="2026-11-21T11:41:00Z WRN Connection lost\n")

    result = run(["bash", QUICK, "6123"], env=clean_env(CLOUDFLARED=fake))

    assert "WRN Connection lost" in result.stderr
    assert "Registered tunnel connection" not in result.stderr + result.stdout


def test_a_quick_tunnel_that_never_gets_a_url_fails_with_a_hint(tmp_path):
    fake = fake_cloudflared(tmp_path, FAILED_LOG, status=1)

    result = run(["bash", QUICK, "6123"], env=clean_env(CLOUDFLARED=fake))

    assert result.returncode == 1
    assert "failed to request quick Tunnel" in result.stderr
    assert "before printing a trycloudflare.com URL" in result.stderr


def test_the_quick_tunnel_refuses_a_port_that_is_not_a_number():
    result = run(["bash", QUICK, "50x0"])

    assert result.returncode == 2
    assert "PORT must be 1-65535" in result.stderr


# --- cloudflared missing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hint",
    [
        "https://pkg.cloudflare.com/cloudflared any main",
        "apt-get install cloudflared",
        "brew install cloudflared",
        "https://github.com/cloudflare/cloudflared/releases",
    ],
)
def test_a_missing_cloudflared_is_reported_with_how_to_install_it(hint):
    result = run(["bash", REQUIRE], env=clean_env(CLOUDFLARED=NOT_INSTALLED))

    assert result.returncode == 1
    assert hint in result.stderr


def test_an_installed_cloudflared_passes_the_check(tmp_path):
    fake = fake_cloudflared(tmp_path, TUNNEL_LOG)

    result = run(["bash", REQUIRE], env=clean_env(CLOUDFLARED=fake))

    assert (result.returncode, result.stderr) == (0, "")


def test_the_quick_tunnel_stops_before_anything_else_when_cloudflared_is_missing():
    result = run(["bash", QUICK, "5050"], env=clean_env(CLOUDFLARED=NOT_INSTALLED))

    assert result.returncode == 1
    assert "brew install cloudflared" in result.stderr
    assert result.stdout == ""


# --- the named tunnel -------------------------------------------------------------------------------------------------


def load_cloudflared_config():
    return yaml.safe_load(CLOUDFLARED_CONFIG.read_text())


def test_the_cloudflared_config_names_a_tunnel_and_its_credentials_file():
    config = load_cloudflared_config()

    assert isinstance(config["tunnel"], str) and config["tunnel"]
    assert config["credentials-file"].endswith(".json")
    assert config["tunnel"] in config["credentials-file"], "the credentials file is named after the tunnel UUID"


def test_the_cloudflared_config_sends_its_hostname_to_callbridge_and_refuses_everything_else():
    ingress = load_cloudflared_config()["ingress"]

    assert len(ingress) >= 2
    assert ingress[0]["hostname"]
    assert ingress[0]["service"] == "http://localhost:5050"
    assert ingress[-1] == {"service": "http_status:404"}, "cloudflared requires a last rule that matches everything"


def test_the_named_tunnel_refuses_to_start_while_the_config_has_placeholders():
    result = run(["bash", NAMED, CLOUDFLARED_CONFIG], env=clean_env(CLOUDFLARED=NOT_INSTALLED))

    assert result.returncode == 1
    assert "placeholders" in result.stderr
    assert "cloudflared tunnel create" in result.stderr


def test_the_named_tunnel_runs_cloudflared_with_the_config_once_it_is_filled_in(tmp_path):
    filled = tmp_path / "config.yml"
    filled.write_text(
        re.sub(r"REPLACE-WITH-[A-Z-]+", "6ff42ae2-765d-4adf-8112-31c55c1551ef", CLOUDFLARED_CONFIG.read_text())
    )
    fake = fake_cloudflared(tmp_path, FAILED_LOG)

    result = run(["bash", NAMED, filled], env=clean_env(CLOUDFLARED=fake))

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "args.txt").read_text().split() == ["tunnel", "--config", str(filled), "run"]


def test_the_deploy_scripts_are_executable():
    for script in (QUICK, NAMED, REQUIRE, DEPLOY / "scripts" / "healthcheck.sh"):
        assert script.stat().st_mode & 0o111, f"{script.relative_to(REPO_ROOT)} is not executable"
