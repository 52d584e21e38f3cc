"""Where the packaged config/, templates/ and alembic/ folders are.

In a source checkout they sit at the top of the repository; an installed wheel carries copies
under monitor/_data/ (see pyproject.toml force-include).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the packaged {name}/ folder is missing; reinstall monitor")


def config_dir() -> Path:
    return data_dir("config")


def templates_dir() -> Path:
    return data_dir("templates")


def alembic_dir() -> Path:
    return data_dir("alembic")
