"""`make services`: the private redis-server and PostgreSQL cluster the tests run against (tests/services/start.sh).

`make test` starts them before the Rust and conformance steps, which source target/services/env. Here the script runs
for real (twice: the second run must find both running and leave them be) and the URLs it writes must reach a Redis
that answers PING and a PostgreSQL in which the test role can create a schema.
"""

import os
import re
import shutil

import pytest

from deploy_support import REPO_ROOT, clean_env, run

START = REPO_ROOT / "tests" / "services" / "start.sh"
ENV_FILE = REPO_ROOT / "target" / "services" / "env"


def services_env():
    """The environment without callbridge settings, but with the ports a developer chose for `make services`."""
    return clean_env(**{key: value for key, value in os.environ.items() if key.startswith("CALLBRIDGE_SERVICES_")})


def make(*args):
    return run(["make", "--no-print-directory", *args])


def exported(text):
    return dict(re.findall(r"^export (CALLBRIDGE_TEST_[A-Z_]+)=(\S+)$", text, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def started():
    """Runs the script twice; returns both results and the variables of the env file."""
    first = run(["bash", START], env=services_env(), timeout_s=120)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run(["bash", START], env=services_env(), timeout_s=120)
    assert second.returncode == 0, second.stdout + second.stderr
    return first, second, exported(ENV_FILE.read_text())


def test_make_test_starts_the_services_before_the_rust_and_conformance_steps():
    lines = make("-n", "test").stdout.splitlines()

    start = lines.index("bash tests/services/start.sh")
    nextest = next(i for i, line in enumerate(lines) if "cargo nextest run" in line)
    conformance = next(i for i, line in enumerate(lines) if "pytest -q tests/conformance" in line)
    assert start < nextest and start < conformance


def test_the_rust_and_conformance_steps_see_the_services_urls():
    text = make("-n", "test").stdout.replace("\\\n", " ")
    steps = [line for line in text.splitlines() if "cargo nextest run" in line or "pytest -q tests/conformance" in line]

    assert len(steps) == 2, steps
    assert all(line.startswith(". ./target/services/env && ") for line in steps), steps


def test_make_services_stop_runs_the_stop_script():
    assert make("-n", "services-stop").stdout.split() == ["bash", "tests/services/stop.sh"]


def test_a_second_start_finds_both_services_running_and_leaves_them(started):
    _, second, _ = started

    assert "redis-server already running" in second.stdout, second.stdout
    assert "PostgreSQL already running" in second.stdout, second.stdout


def test_the_env_file_names_a_loopback_redis_and_postgresql(started):
    _, _, variables = started

    assert set(variables) == {"CALLBRIDGE_TEST_DATABASE_URL", "CALLBRIDGE_TEST_REDIS_URL"}
    assert re.fullmatch(r"postgres://callbridge_test:[0-9a-f]+@127\.0\.0\.1:\d+/callbridge_test",
                        variables["CALLBRIDGE_TEST_DATABASE_URL"])
    assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/", variables["CALLBRIDGE_TEST_REDIS_URL"])


def test_the_redis_url_reaches_a_redis_that_answers_ping(started):
    _, _, variables = started

    result = run(["redis-cli", "-u", variables["CALLBRIDGE_TEST_REDIS_URL"], "ping"])

    assert result.stdout.strip() == "PONG", result.stdout + result.stderr


def test_the_test_role_can_create_and_drop_a_schema_of_its_own(started):
    _, _, variables = started
    assert shutil.which("psql"), "psql is installed with postgresql"

    result = run(
        ["psql", "-X", "-tA", "-v", "ON_ERROR_STOP=1", variables["CALLBRIDGE_TEST_DATABASE_URL"],
         "-c", "CREATE SCHEMA services_check", "-c", "DROP SCHEMA services_check", "-c", "SELECT current_user"],
        env=clean_env(),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "callbridge_test"
