"""Fixtures of the unit tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.config_files import copy_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of the packaged config with the AIH protocol only."""
    return copy_config(tmp_path, only="aih-azathioprine.toml")
