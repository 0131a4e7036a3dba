"""The Makefile's dev-loop targets: they exist, follow the server's port, and the tunnel targets check for cloudflared.

`make -n TARGET` prints a target's recipe without running it, and fails when the target does not exist. The port tests
point ENV_FILE at a scratch .env so a developer's own .env cannot change the outcome; the tunnel targets run for real
with CLOUDFLARED set to a command that is not installed, or to a fake cloudflared, so nothing reaches the network.
"""

import pytest

from deploy_support import FIXTURES, clean_env, run

TARGETS = ["dev", "tunnel-quick", "tunnel", "simulate", "test", "lint", "release"]


def make(*args, env=None):
    return run(["make", "--no-print-directory", *args], env=env if env is not None else clean_env())


def scratch_env_file(tmp_path, text):
    path = tmp_path / "scratch.env"
    path.write_text(text)
    return f"ENV_FILE={path}"


@pytest.mark.parametrize("target", TARGETS)
def test_the_makefile_has_the_target(target):
    result = make("-n", target)

    assert result.returncode == 0, result.stderr


def test_make_n_fails_for_a_target_that_does_not_exist():
    # The check above can fail: make refuses a target it does not know.
    result = make("-n", "no-such-target")

    assert result.returncode != 0


def test_make_test_runs_the_deployment_tests():
    result = make("-n", "test")

    assert "pytest -q tests/deploy" in result.stdout


def test_make_release_builds_with_the_lock_file_and_reports_the_binary():
    result = make("-n", "release")

    assert "cargo build --release --locked" in result.stdout
    assert "target/release/callbridge" in result.stdout


def test_the_quick_tunnel_port_defaults_to_5050(tmp_path):
    result = make("-n", "tunnel-quick", scratch_env_file(tmp_path, "OPENAI_API_KEY=sk-x\n"))

    assert result.stdout.split() == ["bash", "deploy/scripts/tunnel-quick.sh", "5050"]


def test_the_quick_tunnel_port_follows_port_in_the_env_file(tmp_path):
    result = make("-n", "tunnel-quick", scratch_env_file(tmp_path, 'PORT="6001"\n'))

    assert result.stdout.split()[-1] == "6001"


def test_callbridge_port_in_the_env_file_wins_over_port_as_it_does_for_the_server(tmp_path):
    result = make("-n", "tunnel-quick", scratch_env_file(tmp_path, "PORT=6001\nexport CALLBRIDGE_PORT=6002\n"))

    assert result.stdout.split()[-1] == "6002"


def test_port_in_the_environment_wins_over_the_env_file(tmp_path):
    env = clean_env(PORT=6003)

    result = make("-n", "tunnel-quick", scratch_env_file(tmp_path, "PORT=6001\n"), env=env)

    assert result.stdout.split()[-1] == "6003"


def test_port_on_the_make_command_line_wins_over_everything(tmp_path):
    env = clean_env(CALLBRIDGE_PORT=6004)

    result = make("-n", "tunnel-quick", scratch_env_file(tmp_path, "CALLBRIDGE_PORT=6002\n"), "PORT=7000", env=env)

    assert result.stdout.split()[-1] == "7000"


@pytest.mark.parametrize("target", ["tunnel-quick", "tunnel"])
def test_the_tunnel_targets_say_how_to_install_cloudflared_when_it_is_missing(tmp_path, target):
    # `tunnel` checks its config first; give it one without placeholders so it gets as far as cloudflared.
    config = tmp_path / "config.yml"
    config.write_text("tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef\ningress:\n  - service: http_status:404\n")

    result = make(target, f"TUNNEL_CONFIG={config}", env=clean_env(CLOUDFLARED="cloudflared-is-not-installed-here"))

    assert result.returncode != 0
    assert "brew install cloudflared" in result.stderr
    assert "pkg.cloudflare.com" in result.stderr


def test_make_tunnel_quick_prints_the_webhook_and_public_url_from_cloudflared(tmp_path):
    fake = tmp_path / "cloudflared"
    fake.write_text(f'#!/bin/sh\ncat "{FIXTURES / "cloudflared-quick-tunnel.log"}" >&2\n')
    fake.chmod(0o755)

    result = make("tunnel-quick", scratch_env_file(tmp_path, "PORT=6001\n"), env=clean_env(CLOUDFLARED=fake))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "    https://quiet-forest-lamp-river.trycloudflare.com/incoming-call" in lines
    assert "    PUBLIC_URL=https://quiet-forest-lamp-river.trycloudflare.com" in lines


def test_make_dev_runs_the_binary_of_the_build_make_test_uses():
    # One build for both: `make dev` must not compile a second profile (release) or a second feature set (bin only).
    dev = make("-n", "dev").stdout.splitlines()
    build = make("-n", "build").stdout.splitlines()

    assert dev == build + ["target/debug/callbridge serve"], dev
    assert "--release" not in " ".join(dev)


def test_make_install_copies_the_build_into_bindir(tmp_path):
    result = make("-n", "install", f"BINDIR={tmp_path}/bin")

    assert f'install -m 0755 target/debug/callbridge "{tmp_path}/bin/callbridge"' in result.stdout


def test_make_test_names_each_missing_prerequisite_with_how_to_install_it():
    result = make("test-prerequisites", "CARGO=no-such-cargo", "PYTHON=no-such-python")

    assert result.returncode != 0
    assert "make test needs cargo-nextest: cargo install cargo-nextest --locked" in result.stdout
    assert "make test needs Python 3 with venv: apt-get install python3-venv" in result.stdout
