"""Shared test helpers: fixture paths and a Snapshot built from the recorded host1 fixture."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

FIXTURES = Path(__file__).parent / "fixtures"

# Fuzz tests judge what a decoder does with an input, not how fast a shared 2-core CI machine runs it:
# no per-example deadline (a busy host made 200 ms examples fail as "flaky"), same example count.
settings.register_profile("loopscope", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loopscope")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip root/linux tests where they cannot run, with the reason."""
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    for item in items:
        if "root" in item.keywords and not is_root:
            item.add_marker(pytest.mark.skip(reason="needs root"))
        if "linux" in item.keywords and not sys.platform.startswith("linux"):
            item.add_marker(pytest.mark.skip(reason="needs Linux"))


@pytest.fixture(scope="session")
def host1_expected() -> dict[str, int]:
    return json.loads((FIXTURES / "host1" / "expected.json").read_text())
