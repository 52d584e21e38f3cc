"""Copies of the packaged config/ for loader tests: copy, break one line, expect one clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from monitor.domain.errors import ProtocolError
from monitor.protocols import Library

CONFIG = Path(__file__).resolve().parents[2] / "config"
PROTOCOL_FILE = "protocols/aih-azathioprine.toml"
PROFILE_FILE = "safety/conservative-union.toml"


def copy_config(tmp_path: Path, *, only: str | None = None) -> Path:
    """The packaged config in `tmp_path`; with `only`, that protocol file alone."""
    copy = tmp_path / "config"
    shutil.copytree(CONFIG, copy)
    if only is not None:
        for other in (copy / "protocols").glob("*.toml"):
            if other.name != only:
                other.unlink()
    return copy


def edit(config: Path, old: str, new: str, file: str = PROTOCOL_FILE) -> Path:
    """Replace the first `old` in the file; fail loudly if the packaged file no longer has it."""
    path = config / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{file} no longer contains {old!r}: update this test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def rejection(config: Path) -> str:
    """The loader's one-line error for a broken config folder."""
    with pytest.raises(ProtocolError) as caught:
        Library(config)
    message = str(caught.value)
    assert "\n" not in message, "errors are one line"
    return message
