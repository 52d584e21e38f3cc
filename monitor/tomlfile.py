"""Reading the TOML files people write (settings, protocols, analytes, drugs): a missing file, a
syntax error or an invalid value is one error line naming the file and the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from monitor.domain.errors import UserError


def read_toml(path: Path, error: type[UserError] = UserError, *, hint: str = "") -> dict[str, Any]:
    """The file's tables, or `error` saying what is wrong with it (`hint`: what to check)."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"{path}: file not found{hint}") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML: {e}") from None


def first_problem(e: ValidationError) -> tuple[str, str]:
    """(key, what is wrong) of a validation error's first problem, e.g. ("thresholds[0].below", ...)."""
    first = e.errors()[0]
    where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in first["loc"])
    return where.replace(".[", "["), first["msg"]
