"""Headless Debian chromium driven by Playwright (never `playwright install`): skipped where it is
not installed (failing in CI, see `need`). PNGs are kept as test artifacts in `MONITOR_TEST_ARTIFACTS`,
default `build/test-artifacts/`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import need

FLAGS = ("--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        need("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=list(FLAGS))
        yield b
        b.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots are kept for a human to look at."""
    folder = Path(os.environ.get("MONITOR_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" /
                                 "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
