"""Alembic environment. The app hands in a Connection; pytest-alembic hands in an Engine;
the `alembic` command line uses the configured database URL."""

from __future__ import annotations

from sqlalchemy import Connection, Engine
from sqlmodel import SQLModel

import monitor.db.tables  # noqa: F401  (registers the tables on the metadata)
from alembic import context

target_metadata = SQLModel.metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        run(given)
        return
    if isinstance(given, Engine):
        engine = given
    else:
        from monitor.config import load_settings
        from monitor.db.session import make_engine

        engine = make_engine(load_settings().database.url)
    with engine.begin() as connection:
        run(connection)


main()
