"""deploy/systemd/callbridge.service: systemd itself accepts it, and it keeps the hardening the README promises.

`systemd-analyze verify` loads the unit the way PID 1 would and checks that ExecStart's binary exists. To keep system
paths untouched, every check runs against a throw-away root (`--root=`): the unit goes to etc/systemd/system, the host's
stock units (sysinit.target, network-online.target, ...) are copied to usr/lib/systemd/system, and
usr/local/bin/callbridge is a tiny wrapper that execs the built binary. verify exits 0 even for an unknown key or an
unparsable value, so the tests fail on any line it prints about the unit, not only on its exit code.

Needs systemd-analyze (Debian: `apt-get install systemd`; .ci/run installs it). Tested with systemd 252 (bookworm).
"""

import os
import pathlib
import re
import shutil
import sys

import pytest

from deploy_support import DEFAULT_BIN, DEPLOY, REPO_ROOT, clean_env, run

UNIT_NAME = "callbridge.service"
UNIT = DEPLOY / "systemd" / UNIT_NAME
SYSTEM_UNITS = pathlib.Path("/usr/lib/systemd/system")
# `systemd-analyze security` scores exposure from 0.0 (locked down) to 10.0; up to 2.0 is its "OK" band.
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def systemd_analyze():
    """Path of systemd-analyze; skipped off Linux, a failure on Linux where it should be installed."""
    if not sys.platform.startswith("linux"):
        pytest.skip("systemd only exists on Linux")
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: install it (Debian/Ubuntu: apt-get install systemd)")
    return path


def built_binary():
    """Where the built binary is (it need not exist: verify only looks at the wrapper)."""
    return pathlib.Path(os.environ.get("CALLBRIDGE_BIN") or REPO_ROOT / DEFAULT_BIN)


def make_root(tmp_path, unit_text):
    """A throw-away root holding `unit_text` as the unit, the stock system units and a callbridge wrapper."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / UNIT_NAME).write_text(unit_text)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    wrapper = root / "usr/local/bin/callbridge"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nexec "{built_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    return root


def verify(systemd_analyze, root):
    """Runs `systemd-analyze verify` on the unit inside `root`; returns (exit code, every line it printed)."""
    result = run([systemd_analyze, "verify", f"--root={root}", UNIT_NAME], env=clean_env(SYSTEMD_PAGER="cat"))
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return result.returncode, lines


def directives(unit_text):
    """(section, key, value) for every assignment in a unit file, in order; repeated keys are all kept."""
    section = None
    found = []
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def values(unit_text, section, key):
    return [value for (sec, k, value) in directives(unit_text) if sec == section and k == key]


# ---------------------------------------------------------------------------------------------------------------------


def test_systemd_analyze_verify_accepts_the_unit_without_a_single_warning(systemd_analyze, tmp_path):
    root = make_root(tmp_path, UNIT.read_text())

    code, lines = verify(systemd_analyze, root)

    assert (code, lines) == (0, []), "\n".join(lines)


@pytest.mark.parametrize(
    ("description", "original", "broken"),
    [
        ("a misspelt key", "Type=simple", "Typ=simple"),
        ("an invalid value", "ProtectSystem=strict", "ProtectSystem=very"),
        ("an unknown system call group", "SystemCallFilter=@system-service", "SystemCallFilter=@system-servic"),
        ("a missing dependency", "Wants=network-online.target", "Requires=no-such-thing.service"),
    ],
)
def test_verify_reports_a_unit_broken_by(systemd_analyze, tmp_path, description, original, broken):
    # The check above can fail: the same harness flags each of these breakages in a copy of the unit.
    text = UNIT.read_text()
    assert original in text, f"the unit no longer contains {original!r}; update this test"
    root = make_root(tmp_path, text.replace(original, broken, 1))

    code, lines = verify(systemd_analyze, root)

    assert code != 0 or lines, f"{description} went unnoticed"


def test_verify_reports_a_missing_executable(systemd_analyze, tmp_path):
    root = make_root(tmp_path, UNIT.read_text())
    (root / "usr/local/bin/callbridge").unlink()

    code, lines = verify(systemd_analyze, root)

    assert code != 0
    assert any("/usr/local/bin/callbridge" in line for line in lines), lines


def test_systemd_analyze_security_rates_the_unit_ok_or_better(systemd_analyze, tmp_path):
    root = make_root(tmp_path, UNIT.read_text())

    result = run(
        [systemd_analyze, "security", "--offline=yes", f"--root={root}", "--no-pager", UNIT_NAME],
        env=clean_env(SYSTEMD_PAGER="cat", SYSTEMD_COLORS="0"),
    )

    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_unit_runs_callbridge_serve_as_its_own_user_from_its_state_directory():
    text = UNIT.read_text()

    assert values(text, "Service", "Type") == ["simple"]
    assert values(text, "Service", "User") == ["callbridge"]
    assert values(text, "Service", "Group") == ["callbridge"]
    assert values(text, "Service", "ExecStart") == ["/usr/local/bin/callbridge serve"]
    assert values(text, "Service", "EnvironmentFile") == ["/etc/callbridge/callbridge.env"]
    assert values(text, "Service", "StateDirectory") == ["callbridge"]
    assert values(text, "Service", "WorkingDirectory") == ["/var/lib/callbridge"]
    assert values(text, "Service", "Restart") == ["on-failure"]
    assert values(text, "Install", "WantedBy") == ["multi-user.target"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
    ],
)
def test_the_unit_sets_the_hardening_option(key, expected):
    assert values(UNIT.read_text(), "Service", key) == [expected]


def test_the_unit_filters_system_calls_to_the_system_service_set():
    filters = values(UNIT.read_text(), "Service", "SystemCallFilter")

    assert filters[0] == "@system-service"
    assert all(rule.startswith("~") for rule in filters[1:]), "later filters may only take calls away"


def test_systemd_waits_longer_than_the_drain_timeout_before_killing(callbridge_bin, tmp_path):
    # The drain timeout's default comes from the binary itself, so a changed default cannot slip past the unit.
    text = UNIT.read_text()
    shown = run([callbridge_bin, "check-config"], cwd=tmp_path, env=clean_env(HOME=tmp_path))
    drain = re.search(r"^drain_timeout_s\s*=\s*(\d+)", shown.stdout, re.MULTILINE)
    assert drain, shown.stdout + shown.stderr
    stop = re.fullmatch(r"(\d+)s?", values(text, "Service", "TimeoutStopSec")[0])

    assert values(text, "Service", "KillSignal") == ["SIGTERM"]
    assert stop and int(stop.group(1)) >= int(drain.group(1)) + 10


def test_the_unit_allows_enough_open_files_for_thousands_of_connections():
    # 1,024 (systemd's soft default) is about a thousand connections: a slow-client flood would lock everyone out.
    limits = values(UNIT.read_text(), "Service", "LimitNOFILE")

    assert len(limits) == 1, limits
    soft, _, hard = limits[0].partition(":")
    assert int(soft) >= 16384, limits
    assert not hard or int(hard) >= int(soft), limits
