"""Tools the tests need from the machine (chromium, redis-server, curl, node): a test that cannot
find one is skipped on a developer's machine but fails in CI (`CI` set, as `.ci/run` does), so a
missing tool never turns into a silently skipped test there."""

from __future__ import annotations

import os

import pytest


def missing_tool(message: str, *, module_level: bool = False) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI needs it: a missing tool fails the run)", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)
