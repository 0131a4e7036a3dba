"""Helpers shared by the conformance tests that start the real `callbridge serve` binary."""

import contextlib
import os
import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DEFAULT_BIN = "target/debug/callbridge"
HEALTH_TIMEOUT_S = 60.0
# How long `callbridge serve` gets to stop after SIGTERM before it is killed.
SHUTDOWN_TIMEOUT_S = 15.0


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resolve_binary():
    """The callbridge binary to test; skips when the default build is absent, fails when an explicit one is."""
    configured = os.environ.get("CALLBRIDGE_BIN")
    path = pathlib.Path(configured or DEFAULT_BIN)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        if configured:
            pytest.fail(f"CALLBRIDGE_BIN={configured} does not exist")
        pytest.skip(f"{path} not built; run `cargo build` or set CALLBRIDGE_BIN")
    return path


def wait_until_healthy(server):
    """Waits for `GET /health` on `server.base_url`; fails with `server.log_tail()` if the process exits or times out."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"callbridge exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.base_url + "/health", timeout=1.0) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    pytest.fail(f"callbridge was not healthy within {HEALTH_TIMEOUT_S} s:\n{server.log_tail()}")


class Server:
    """A running `callbridge serve` and where to reach it."""

    def __init__(self, process, base_url, log_path):
        self.process = process
        self.base_url = base_url
        self.log_path = log_path

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


@contextlib.contextmanager
def serving(binary, workdir, env, port, make_server=None):
    """Runs `binary serve` in `workdir` with exactly `env`, its output in `workdir/callbridge.log`, and yields it once
    `GET /health` answers on `port`: as a [`Server`], or as `make_server(process, base_url, log_path)` returns it.
    On exit it is stopped with SIGTERM, and killed after `SHUTDOWN_TIMEOUT_S`."""
    log_path = workdir / "callbridge.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(binary), "serve"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    running = (make_server or Server)(process, base_url, log_path)
    try:
        wait_until_healthy(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
