"""Reading a config file into its schema: one error line naming the file and the key."""


from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from monitor.domain.errors import ProtocolError
from monitor.tomlfile import first_problem, read_toml

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], path: Path) -> M:
    try:
        return model.model_validate(read_toml(path, ProtocolError))
    except ValidationError as e:
        where, what = first_problem(e)
        raise ProtocolError(f"{path.name}: {where}: {what} (fix it in {path})") from None
