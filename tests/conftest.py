"""Suite-wide options. `--slow` also runs the long runs (e.g. the long fault-injection run)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False, help="also run the long (slow) runs")
