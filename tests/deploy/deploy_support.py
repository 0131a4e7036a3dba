"""Shared helpers for the deployment tests: where the repository is, and clean subprocess runs.

The tests in this folder check the files under deploy/, the Makefile's dev-loop targets and the tunnel scripts. They
run from `make test-deploy` (part of `make test`) with the .venv that `make venv` creates; PyYAML is their only extra
package. Nothing here touches system paths: systemd-analyze gets a throw-away root directory, cloudflared is a fake
script, and make runs with `-n` or against scripts that stop before any network use.
"""

import os
import pathlib
import subprocess

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DEPLOY = REPO_ROOT / "deploy"
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
DEFAULT_BIN = "target/debug/callbridge"

# Variables a parent `make` exports that would change how a nested `make` behaves.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR")


def clean_env(**extra):
    """The process environment without make's own variables and without callbridge settings, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in MAKE_VARIABLES
        and not key.startswith("CALLBRIDGE_")
        and key not in ("PORT", "PUBLIC_URL", "CLOUDFLARED", "VERBOSE", "TUNNEL_TOKEN")
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def run(args, *, cwd=REPO_ROOT, env=None, input_text=None, timeout_s=60):
    """Runs `args` and returns the CompletedProcess with text stdout and stderr (never raises on a non-zero exit)."""
    return subprocess.run(
        [str(arg) for arg in args],
        check=False,
        cwd=cwd,
        env=env if env is not None else clean_env(),
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
