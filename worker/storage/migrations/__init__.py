"""Schema migrations: Alembic, configured in code (no alembic.ini)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from worker.storage.engine import WRITE_OPTION, make_engine

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic (with Mako and Pygments) is imported when a migration runs, not with the store: a
# worker or a web process that never migrates saves its import time and its memory.

SCRIPT_LOCATION = str(Path(__file__).parent)


def alembic_config(
    *, connection: Connection | None = None, database_url: str | None = None
) -> Config:
    """An Alembic `Config` for our scripts; env.py uses `connection` if given, else the URL.

    For authoring a revision: ``command.revision(alembic_config(database_url=url),
    message="...", autogenerate=True)``.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    # Split version_locations on os.pathsep (the non-deprecated way since Alembic 1.16).
    config.set_main_option("path_separator", "os")
    if database_url is not None:
        # Config is a ConfigParser: a literal "%" (URL-escaped passwords) must be doubled.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind `engine` to `revision`; safe to run twice (a no-op then)."""
    from alembic import command

    with engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            command.upgrade(alembic_config(connection=connection), revision)


def migrate(database_url: str) -> None:
    """Upgrade the database at `database_url` to the latest schema; safe to run twice."""
    engine = make_engine(database_url)
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()
