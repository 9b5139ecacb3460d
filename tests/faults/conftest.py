"""The `slow_enabled` fixture: long runs are skipped unless `--slow` (declared in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def slow_enabled(request: pytest.FixtureRequest) -> None:
    """Skip the test unless --slow was given."""
    if not request.config.getoption("--slow", default=False):
        pytest.skip("a long run: pass --slow (pytest tests/faults --slow)")
