"""The container path: deploy/Dockerfile, .dockerignore, deploy/compose.yaml and the image's health check script.

No Docker engine is available where the tests run, so the image is never built here. Instead the files are read as
text (Dockerfile) or YAML (compose) and checked for what the deployment relies on: a non-root user, a HEALTHCHECK that
the runtime image can actually run, the data volume, the port, and a compose file whose services, volume and
tunnel wiring agree with each other. The health check script runs for real against `callbridge serve` and against
servers that answer wrong or not at all.
"""

import contextlib
import fnmatch
import http.server
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml

from deploy_support import DEPLOY, REPO_ROOT, clean_env, run

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
HEALTHCHECK = DEPLOY / "scripts" / "healthcheck.sh"

CONTAINER_PORT = 5050
DATA_DIR = "/var/lib/callbridge"
SERVER_START_TIMEOUT_S = 60.0


# --- Dockerfile -------------------------------------------------------------------------------------------------------


def instructions():
    """The Dockerfile as (INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    return found


def stages():
    """The Dockerfile's build stages: a list of instruction lists, one per FROM."""
    result = []
    for word, rest in instructions():
        if word == "FROM":
            result.append([(word, rest)])
        elif result:
            result[-1].append((word, rest))
    return result


def runtime_stage():
    return stages()[-1]


def args_of(stage, word):
    return [rest for (w, rest) in stage if w == word]


def test_the_dockerfile_builds_in_one_stage_and_runs_in_another():
    all_stages = stages()

    assert len(all_stages) >= 2
    assert any("--from=" in rest for rest in args_of(runtime_stage(), "COPY")), "the runtime copies the built binary"
    assert not any("cargo" in rest for rest in args_of(runtime_stage(), "RUN")), "no toolchain in the runtime image"


def test_the_builder_compiles_the_release_binary_with_the_lock_file():
    builder_runs = " ".join(args_of(stages()[0], "RUN"))

    assert "cargo build --release --locked" in builder_runs


def test_the_builder_compiles_the_dependencies_in_a_layer_of_their_own():
    builder = stages()[0]
    copies = args_of(builder, "COPY")
    runs = args_of(builder, "RUN")

    assert copies[0].split()[:-1] == ["Cargo.toml", "Cargo.lock"]
    assert "cargo build" in runs[0], "the dependency layer is built before the sources are copied"


def test_the_runtime_image_is_debian_slim_with_ca_certificates():
    runtime = runtime_stage()

    assert "debian:" in args_of(runtime, "FROM")[0] and "-slim" in args_of(runtime, "FROM")[0]
    assert "ca-certificates" in " ".join(args_of(runtime, "RUN"))


def test_the_runtime_image_runs_as_a_user_that_is_not_root():
    users = args_of(runtime_stage(), "USER")

    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user == "callbridge"


def test_the_callbridge_user_is_created_and_owns_the_data_directory():
    runs = " ".join(args_of(runtime_stage(), "RUN"))

    assert re.search(r"useradd\b.*\bcallbridge\b", runs)
    assert re.search(rf"-o callbridge -g callbridge {DATA_DIR}\b|chown [^ ]*callbridge[^ ]* {DATA_DIR}\b", runs)


def test_the_runtime_image_declares_the_data_volume_port_and_command():
    runtime = runtime_stage()

    assert any(DATA_DIR in rest for rest in args_of(runtime, "VOLUME"))
    assert args_of(runtime, "WORKDIR")[-1] == DATA_DIR
    assert args_of(runtime, "EXPOSE") == [str(CONTAINER_PORT)]
    assert args_of(runtime, "ENTRYPOINT") == ['["callbridge"]']
    assert args_of(runtime, "CMD") == ['["serve"]']


def test_the_healthcheck_runs_a_checker_that_the_runtime_image_contains():
    runtime = runtime_stage()
    healthchecks = args_of(runtime, "HEALTHCHECK")
    assert len(healthchecks) == 1
    command = re.search(r"CMD\s+\[\s*\"([^\"]+)\"", healthchecks[0])
    assert command, healthchecks[0]

    installed = [rest.split()[-1] for rest in args_of(runtime, "COPY")]
    assert f"/usr/local/bin/{command.group(1)}" in installed
    assert any(rest.split()[0] == "deploy/scripts/healthcheck.sh" for rest in args_of(runtime, "COPY"))


def dockerignore_patterns():
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]


def ignored(path):
    """Whether .dockerignore keeps `path` (relative to the repository root) out of the build context."""
    verdict = False
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, "*/" + pattern) for prefix in prefixes):
            verdict = not negated
    return verdict


@pytest.mark.parametrize("path", ["target", ".venv", ".env", ".git"])
def test_dockerignore_keeps_build_output_environments_and_secrets_out(path):
    assert ignored(path)


def test_every_file_the_dockerfile_copies_from_the_context_exists_and_is_not_ignored():
    sources = []
    for stage in stages():
        for rest in args_of(stage, "COPY"):
            if rest.startswith("--from="):
                continue
            words = [word for word in rest.split() if not word.startswith("--")]
            sources.extend(words[:-1])

    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert not ignored(source), f"{source} is excluded by .dockerignore"


# --- compose.yaml -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_runs_callbridge_and_cloudflared(compose):
    assert set(compose["services"]) == {"callbridge", "cloudflared"}


def test_compose_builds_callbridge_from_the_repository_with_the_deploy_dockerfile(compose):
    build = compose["services"]["callbridge"]["build"]

    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO_ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_gives_callbridge_the_env_file_and_a_named_data_volume(compose):
    service = compose["services"]["callbridge"]

    assert (COMPOSE.parent / service["env_file"][0]).resolve() == REPO_ROOT / ".env"
    volume, _, target = service["volumes"][0].partition(":")
    assert target == DATA_DIR
    assert volume in compose["volumes"], "the data volume is a named volume"


def test_compose_restarts_both_services(compose):
    for name, service in compose["services"].items():
        assert service["restart"] in ("always", "unless-stopped", "on-failure"), name


def test_compose_health_checks_callbridge_with_the_images_checker(compose):
    test = compose["services"]["callbridge"]["healthcheck"]["test"]

    assert test[0] == "CMD"
    assert test[1] == "callbridge-healthcheck"


def test_compose_waits_for_the_drain_before_killing_callbridge(compose):
    grace = re.fullmatch(r"(\d+)s", compose["services"]["callbridge"]["stop_grace_period"])

    assert grace and int(grace.group(1)) >= 45


def test_compose_pins_callbridge_to_the_port_cloudflared_forwards_to(compose):
    environment = compose["services"]["callbridge"]["environment"]
    command = compose["services"]["cloudflared"]["command"]

    assert environment["CALLBRIDGE_HOST"] == "0.0.0.0"
    assert environment["CALLBRIDGE_PORT"] == str(CONTAINER_PORT)
    assert f"--url http://callbridge:{CONTAINER_PORT}" in command


def test_compose_keeps_the_call_records_in_the_data_volume(compose):
    assert compose["services"]["callbridge"]["environment"]["CALLBRIDGE_DATA_DIR"] == DATA_DIR


def test_the_image_keeps_the_call_records_in_the_data_volume():
    env = " ".join(args_of(runtime_stage(), "ENV"))

    assert f"CALLBRIDGE_DATA_DIR={DATA_DIR}" in env


def test_compose_starts_the_tunnel_only_once_callbridge_is_healthy(compose):
    depends_on = compose["services"]["cloudflared"]["depends_on"]

    assert depends_on["callbridge"]["condition"] == "service_healthy"


@pytest.mark.parametrize(
    ("tunnel_token", "expected"),
    [
        ("", "tunnel --no-autoupdate --url http://callbridge:5050"),
        ("eyJhIjoi", "tunnel --no-autoupdate --url http://callbridge:5050 run"),
    ],
)
def test_compose_runs_a_quick_tunnel_unless_a_tunnel_token_is_set(compose, tunnel_token, expected):
    # Compose's ${VAR:+word}: `word` when VAR is set and non-empty, else nothing. Applied here as compose does.
    service = compose["services"]["cloudflared"]
    command = re.sub(r"\$\{TUNNEL_TOKEN:\+([^}]*)\}", lambda m: m.group(1) if tunnel_token else "", service["command"])

    assert command.split() == expected.split()
    assert service["environment"]["TUNNEL_TOKEN"] == "${TUNNEL_TOKEN:-}"


# --- the health check script ------------------------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthcheck(port, timeout_s=3):
    return run(["bash", HEALTHCHECK], env=clean_env(PORT=port, HEALTHCHECK_TIMEOUT_S=timeout_s), timeout_s=30)


@contextlib.contextmanager
def http_server(status):
    """A local HTTP server that answers every GET with `status`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def running_callbridge(callbridge_bin, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("callbridge")
    port = free_port()
    env = clean_env(
        HOME=workdir,
        PORT=port,
        PUBLIC_URL="https://callbridge.example.test",
        TWILIO_AUTH_TOKEN="test-auth-token",
        OPENAI_API_KEY="sk-test",
        OPENAI_REALTIME_URL="ws://127.0.0.1:9/v1/realtime",
    )
    process = subprocess.Popen(
        [str(callbridge_bin), "serve"], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"callbridge exited with {process.returncode}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1.0):
                    break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, "callbridge did not come up"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_healthcheck_passes_against_a_running_callbridge(running_callbridge):
    result = healthcheck(running_callbridge)

    assert (result.returncode, result.stderr) == (0, "")


def test_the_healthcheck_fails_when_nothing_listens():
    result = healthcheck(free_port())

    assert result.returncode == 1
    assert "not healthy: no answer" in result.stderr


def test_the_healthcheck_fails_on_a_503():
    with http_server(503) as port:
        result = healthcheck(port)

    assert result.returncode == 1
    assert "503" in result.stderr


def test_the_healthcheck_gives_up_on_a_server_that_never_answers():
    # run() raises TimeoutExpired after 30 s, so a check that hangs fails this test rather than stalling it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)

        result = healthcheck(silent.getsockname()[1], timeout_s=1)

    assert result.returncode == 1
    assert "not healthy: no answer" in result.stderr


def test_the_healthcheck_follows_callbridge_port_over_port(running_callbridge):
    env = clean_env(PORT=free_port(), CALLBRIDGE_PORT=running_callbridge)

    result = run(["bash", HEALTHCHECK], env=env)

    assert result.returncode == 0, result.stderr
