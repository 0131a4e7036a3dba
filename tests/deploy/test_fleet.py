"""Several instances: deploy/compose.fleet.yml (two callbridge instances, Redis, PostgreSQL, HAProxy, a tunnel) and
deploy/haproxy/haproxy.cfg.

No Docker engine is available where the tests run, so the compose file is read as YAML (anchors and merge keys
resolved, as compose resolves them) and checked for what a fleet relies on: every instance gets the same Redis and
PostgreSQL, an instance id of its own, and no port of its own; HAProxy balances over exactly those instances. The
HAProxy configuration is checked by `haproxy -c` itself, with the addresses compose gives it and with the loopback
ones the integration tests (tests/integration/load_balancer.rs) run it with.
"""

import re
import shutil

import pytest
import yaml

from deploy_support import DEPLOY, clean_env, run

COMPOSE = DEPLOY / "compose.fleet.yml"
HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"
INSTANCES = ["callbridge-a", "callbridge-b"]
CONTAINER_PORT = 5050
# callbridge's default max_call_duration_s: a media stream may last this long.
MAX_CALL_DURATION_S = 1800


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def haproxy():
    path = shutil.which("haproxy") or ("/usr/sbin/haproxy" if shutil.which("/usr/sbin/haproxy") else None)
    if path is None:
        pytest.fail("haproxy is not installed: apt-get install haproxy (make test-prerequisites names it)")
    return path


def environment(service):
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is a mapping"
    return {key: str(value) for key, value in env.items()}


def seconds(text):
    """An HAProxy time (`30s`, `2h`, `150000` ms) in seconds."""
    match = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", text)
    assert match, text
    value, unit = int(match.group(1)), match.group(2) or "ms"
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def haproxy_lines():
    """The configuration's lines, comments and blank lines dropped, each split into words."""
    lines = []
    for line in HAPROXY_CFG.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line.split())
    return lines


def test_the_fleet_compose_file_names_two_instances_redis_postgresql_haproxy_and_the_tunnel(compose):
    assert set(compose["services"]) == {*INSTANCES, "redis", "postgres", "haproxy", "cloudflared"}


def test_every_instance_gets_the_same_redis_and_postgresql_urls(compose):
    envs = [environment(compose["services"][name]) for name in INSTANCES]

    redis_urls = {env["CALLBRIDGE_REDIS_URL"] for env in envs}
    database_urls = {env["CALLBRIDGE_DATABASE_URL"] for env in envs}
    assert redis_urls == {"redis://redis:6379/"}
    assert len(database_urls) == 1
    (database_url,) = database_urls
    assert database_url.startswith("postgres://callbridge:") and database_url.endswith("@postgres:5432/callbridge")


def test_the_database_url_uses_the_password_postgresql_is_started_with(compose):
    password = compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    database_url = environment(compose["services"]["callbridge-a"])["CALLBRIDGE_DATABASE_URL"]

    assert password.startswith("${POSTGRES_PASSWORD")
    assert f"callbridge:{password}@" in database_url


def test_every_instance_has_an_instance_id_of_its_own(compose):
    ids = [environment(compose["services"][name]).get("CALLBRIDGE_INSTANCE_ID") for name in INSTANCES]

    assert all(ids), ids
    assert len(set(ids)) == len(ids), ids


def test_every_instance_has_a_data_volume_of_its_own(compose):
    volumes = [compose["services"][name]["volumes"][0].split(":")[0] for name in INSTANCES]

    assert len(set(volumes)) == len(volumes), volumes
    assert all(volume in compose["volumes"] for volume in volumes)


def test_only_haproxy_publishes_a_port_and_only_on_loopback(compose):
    published = {name: service.get("ports", []) for name, service in compose["services"].items() if service.get("ports")}

    assert list(published) == ["haproxy"]
    assert all(port.startswith("127.0.0.1:") for port in published["haproxy"])


def test_the_instances_trust_forwarded_headers_only_because_nothing_but_haproxy_reaches_them(compose):
    for name in INSTANCES:
        service = compose["services"][name]
        assert environment(service)["CALLBRIDGE_TRUST_FORWARDED_HEADERS"] == "true"
        assert "ports" not in service


def test_the_instances_listen_where_haproxy_sends_requests(compose):
    lb = environment(compose["services"]["haproxy"])
    servers = {lb["CALLBRIDGE_LB_SERVER_A"], lb["CALLBRIDGE_LB_SERVER_B"]}

    assert servers == {f"{name}:{CONTAINER_PORT}" for name in INSTANCES}
    for name in INSTANCES:
        env = environment(compose["services"][name])
        assert env["CALLBRIDGE_PORT"] == str(CONTAINER_PORT)
        assert env["CALLBRIDGE_HOST"] == "0.0.0.0"


def test_haproxy_runs_the_configuration_in_deploy(compose):
    volumes = compose["services"]["haproxy"]["volumes"]

    assert "./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in volumes


def test_the_instances_wait_for_redis_and_postgresql_to_be_healthy(compose):
    for name in INSTANCES:
        depends = compose["services"][name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in compose["services"]["redis"]
    assert "healthcheck" in compose["services"]["postgres"]


def test_compose_waits_for_each_instance_to_drain_before_killing_it(compose):
    for name in INSTANCES:
        service = compose["services"][name]
        assert service["stop_signal"] == "SIGTERM"
        assert int(service["stop_grace_period"].rstrip("s")) > 30


def test_the_tunnel_forwards_to_haproxy(compose):
    assert "--url http://haproxy:5050" in compose["services"]["cloudflared"]["command"]


def test_haproxy_accepts_the_configuration_with_the_addresses_compose_gives_it(compose, haproxy):
    env = clean_env(**environment(compose["services"]["haproxy"]))

    result = run([haproxy, "-c", "-f", HAPROXY_CFG], env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_haproxy_accepts_the_configuration_with_loopback_addresses_as_the_tests_run_it(haproxy):
    env = clean_env(
        CALLBRIDGE_LB_BIND="127.0.0.1:15050",
        CALLBRIDGE_LB_STATS_BIND="127.0.0.1:15051",
        CALLBRIDGE_LB_SERVER_A="127.0.0.1:15052",
        CALLBRIDGE_LB_SERVER_B="127.0.0.1:15053",
        CALLBRIDGE_LB_CHECK_INTER="200ms",
    )

    result = run([haproxy, "-c", "-f", HAPROXY_CFG], env=env)

    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_refuses_a_broken_configuration(haproxy, tmp_path):
    # The two checks above can fail: haproxy -c does reject a configuration.
    broken = tmp_path / "broken.cfg"
    broken.write_text(HAPROXY_CFG.read_text().replace("balance roundrobin", "balance no-such-algorithm"))

    result = run([haproxy, "-c", "-f", broken])

    assert result.returncode != 0


def test_haproxy_health_checks_the_instances_on_ready():
    lines = haproxy_lines()

    assert ["http-check", "send", "meth", "GET", "uri", "/ready"] in lines
    assert ["http-check", "expect", "status", "200"] in lines
    default_server = next(line for line in lines if line[0] == "default-server")
    assert "check" in default_server


def test_haproxy_keeps_a_media_stream_open_longer_than_the_longest_call():
    tunnel = next(line for line in haproxy_lines() if line[:2] == ["timeout", "tunnel"])

    assert seconds(tunnel[2]) > MAX_CALL_DURATION_S


def test_haproxy_waits_longer_than_the_api_s_longest_wait_for_an_answer():
    # GET /api/calls/{id}?wait_s=120 holds its answer up to 120 s.
    server = next(line for line in haproxy_lines() if line[:2] == ["timeout", "server"])

    assert seconds(server[2]) > 120


def test_haproxy_balances_round_robin_over_every_instance():
    lines = haproxy_lines()

    assert ["balance", "roundrobin"] in lines
    servers = [line for line in lines if line[0] == "server"]
    assert [line[1] for line in servers] == ["a", "b"]


def test_haproxy_adds_x_forwarded_for_only_when_the_tunnel_did_not():
    assert ["option", "forwardfor", "if-none"] in haproxy_lines()
