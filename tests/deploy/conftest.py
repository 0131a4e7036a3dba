"""pytest fixtures for the deployment tests (helpers live in deploy_support.py)."""

import os
import pathlib

import pytest

from deploy_support import DEFAULT_BIN, REPO_ROOT


@pytest.fixture(scope="session")
def callbridge_bin():
    """The callbridge binary: CALLBRIDGE_BIN (must exist) or target/debug/callbridge (skip when not built)."""
    configured = os.environ.get("CALLBRIDGE_BIN")
    path = pathlib.Path(configured or DEFAULT_BIN)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        if configured:
            pytest.fail(f"CALLBRIDGE_BIN={configured} does not exist")
        pytest.skip(f"{path} not built; run `cargo build` or set CALLBRIDGE_BIN")
    return path
